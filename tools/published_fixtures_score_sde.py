"""The score_sde_ode case of make_published_fixtures.py: yang-song/score_sde_pytorch's VP
DDPM++ (shrunk), trained by its run_lib loop to its first snapshot, sampled by its ODE path."""
import os
import sys
import types

import numpy as np
import torch

from fixture_common import SEEDS, nchw, nhwc, randomize, stub

PEER = types.SimpleNamespace()  # score_sde_pytorch's modules, once imported


def import_peer(repo):
  """score_sde_pytorch's modules; CUDA `op` disabled (pure-PyTorch FIR), unused imports stubbed."""
  import torch.utils.cpp_extension  # pylint: disable=import-outside-toplevel
  torch.utils.cpp_extension.load = lambda *a, **k: None
  gfile = types.SimpleNamespace(exists=os.path.exists, makedirs=os.makedirs)
  for name, attrs in (('tensorflow', dict(io=types.SimpleNamespace(gfile=gfile))),
                      ('tensorflow_datasets', {}), ('jax', {})):
    stub(name, **attrs)
  sys.path.insert(0, repo)
  import datasets, losses, sampling, sde_lib, utils  # pylint: disable=import-outside-toplevel
  from configs.vp import cifar10_ddpmpp_continuous  # pylint: disable=import-outside-toplevel
  from models import ncsnpp, utils as mutils  # pylint: disable=import-outside-toplevel,unused-import
  from models.ema import ExponentialMovingAverage
  PEER.__dict__.update(datasets=datasets, losses=losses, sampling=sampling, sde_lib=sde_lib,
                       utils=utils, mutils=mutils, EMA=ExponentialMovingAverage,
                       base=cifar10_ddpmpp_continuous)


SDE_SHRINK = {'data.image_size': 8, 'model.nf': 8, 'model.ch_mult': [1, 2],
              'model.num_res_blocks': 1, 'model.attn_resolutions': [4]}
SDE_TRAIN = {'training.batch_size': 16, 'training.snapshot_freq': 1500, 'optim.lr': 2e-3,
             'optim.warmup': 0}


def state_of_the_loop():
  """configs/vp/cifar10_ddpmpp_continuous.py shrunk; run_lib.train's model, EMA, optimizer."""
  config = PEER.base.get_config()
  for key, value in dict(SDE_SHRINK, **SDE_TRAIN).items():
    group, field = key.split('.')
    config[group][field] = tuple(value) if isinstance(value, list) else value
  config.sampling.method, config.device = 'ode', torch.device('cpu')
  torch.manual_seed(0)
  model = PEER.mutils.create_model(config)          # torch.nn.DataParallel(NCSNpp)
  ema = PEER.EMA(model.parameters(), decay=config.model.ema_rate)
  optimizer = PEER.losses.get_optimizer(config, model.parameters())
  sde = PEER.sde_lib.VPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max,
                           N=config.model.num_scales)
  return config, sde, dict(optimizer=optimizer, model=model, ema=ema, step=0)


def build(out):
  """Random weights trained by run_lib.train's loop up to its first snapshot (see the notes)."""
  config, sde, state = state_of_the_loop()
  randomize(state['model'], 107, out_gain=0.1)
  state['ema'] = PEER.EMA(state['model'].parameters(), decay=config.model.ema_rate)
  step_fn = PEER.losses.get_step_fn(sde, train=True,
                                    optimize_fn=PEER.losses.optimization_manager(config),
                                    reduce_mean=config.training.reduce_mean, continuous=True,
                                    likelihood_weighting=False)
  gen = torch.Generator().manual_seed(1)
  torch.manual_seed(2)
  for _ in range(config.training.snapshot_freq + 1):   # run_lib.train's loop steps 0..freq
    step_fn(state, 0.5 * torch.randn([config.training.batch_size, 3, 8, 8], generator=gen))
  PEER.utils.save_checkpoint(os.path.join(out, 'checkpoint_1.pth'), state)
  torch.manual_seed(0)
  latents, extra = sde.prior_sampling((len(SEEDS), 3, 8, 8)), {}     # x_T
  model_x = sample(state['model'], latents, {})
  state['ema'].copy_to(state['model'].parameters())
  x = sample(state['model'], latents, extra)
  tight = PEER.sampling.get_ode_sampler(sde, tuple(latents.shape), lambda z: z, denoise=True,
                                        rtol=1e-8, atol=1e-8, eps=1e-3, device=config.device)
  with torch.no_grad():
    x_tight, nfe_tight = tight(state['model'], latents)
  solver_error = (x_tight - x).abs()
  settings = dict(
      base_config='configs/vp/cifar10_ddpmpp_continuous.py',
      overrides=dict(SDE_SHRINK, **{'sampling.method': 'ode', 'sampling.ode_rtol': 1e-5,
                                    'sampling.ode_atol': 1e-5, 'sampling.noise_removal': True}),
      official="score_sde_pytorch run_lib.evaluate's ODE path: restore_checkpoint("
               "checkpoint_1.pth), ema.copy_to(model.parameters()), sampling.get_sampling_fn("
               "config, VPSDE(0.1, 20, N=1000), (4, 3, 8, 8), inverse_scaler, eps=1e-3) = "
               "get_ode_sampler(denoise=config.sampling.noise_removal=True, rtol=atol=1e-5, "
               "method='RK45', eps=1e-3); sample, nfe = sampling_fn(model, z=x_T)",
      notes='x_T = latents (VP prior, unscaled). scipy RK45 from t = 1 to 1e-3 on the flat float64 '
            'state, the probability-flow drift (Song+21 Eq. 13) in float32 with labels 999 t and '
            'score = -model/std(t); then the denoising step, a noiseless reverse-diffusion step at '
            't = 1e-3 with the DDPM beta at index int(999 t) = 0, beta_0 = 1e-4: x <- x - '
            '(sqrt(1 - beta_0) - 1) x + beta_0 score(x, 1e-3). nfe = solution.nfev (denoising not '
            f'counted). x_tight: rtol = atol = 1e-8 ({nfe_tight} NFE, the ODE solution to ~1e-4); '
            f'x is off from it by max {solver_error.max().item():.3g}, mean '
            f'{solver_error.mean().item():.3g} (solver error): compare a tight solve with x_tight. '
            f'Model instead of EMA weights: max |dx| = {(model_x - x).abs().max().item():.3g}. '
            'checkpoint_1.pth (utils.save_checkpoint): optimizer, model (DataParallel: keys '
            '"module.*"), ema {decay, num_updates, shadow_params in parameters() order}, step. '
            'Weights: all random (output conv x 0.1), then run_lib.train\'s loop (official step_fn'
            ', EMA 0.9999) on N(0, 0.25 I) images, batch 16, lr 2e-3, no warm-up, snapshot_freq '
            '1500: checkpoint_1 at loop step 1500 (state step 1501). A random VP eps-net makes the '
            'ODE grow x ~150-fold (exp(0.5 int beta)); this trained one does not.')
  return state['model'], latents, settings, dict(x_tight=nhwc(x_tight).astype(np.float32))


def sample(model, latents, extra):
  """sampling.get_sampling_fn(...)(model, z=x_T); x captured before the inverse scaler."""
  config, sde, _ = state_of_the_loop()
  official_inverse = PEER.datasets.get_data_inverse_scaler(config)
  captured = []
  def inverse_scaler(x):
    captured.append(x)
    return official_inverse(x)
  sampling_fn = PEER.sampling.get_sampling_fn(config, sde, tuple(latents.shape), inverse_scaler,
                                              1e-3)
  with torch.no_grad():
    _, nfe = sampling_fn(model, z=latents)
  extra['nfe'] = np.int64(nfe)
  return captured[0]


def load(case_dir):
  """run_lib.evaluate: a fresh state, restore_checkpoint, ema.copy_to(model.parameters())."""
  config, _, state = state_of_the_loop()
  state = PEER.utils.restore_checkpoint(os.path.join(case_dir, 'checkpoint_1.pth'), state,
                                        config.device)
  model = state['model']
  latents = nchw(np.load(os.path.join(case_dir, 'latents.npy')))
  wrong = sample(model, latents, {})
  state['ema'].copy_to(model.parameters())
  right = sample(model, latents, {})
  print(f'  step {state["step"]}; max |x(model weights) - x(ema weights)| = '
        f'{(wrong - right).abs().max().item():.3g}')
  return model
