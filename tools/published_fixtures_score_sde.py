"""The score_sde cases of make_published_fixtures.py: yang-song/score_sde_pytorch's networks
(shrunk), trained by its run_lib loop to their first snapshot, sampled by its run_lib.evaluate paths
(Song+21, arXiv:2011.13456): score_sde_ode, VP DDPM++ and the probability-flow ODE; the
predictor-corrector sampler (Song+21 Alg. 2, App. G) with every Gaussian draw replayed from the
fixture: score_sde_pc (VE NCSN++, reverse diffusion + Langevin), score_sde_pc_vp (score_sde_ode's
file, ancestral + Langevin), score_sde_smld / score_sde_ddpm (discrete-time VE NCSN++ and VP DDPM++
as configs/ve/cifar10_ncsnpp.py and configs/vp/cifar10_ddpmpp.py), score_sde_subvp_em
(score_sde_ode's file as sub-VP, Euler-Maruyama). The ODE case's reference x, a solve at rtol = atol
= 1e-5, moves with the host's rounding (its steps do: 8e-3 between two hosts), so its check
re-solves at 1e-8 and compares x_tight to 1e-5."""
import argparse
import importlib
import os
import sys
import types

import numpy as np
import torch

from fixture_common import SEEDS, nchw, nhwc, randomize, replayer, stub

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
  from models import ncsnpp, utils as mutils  # pylint: disable=import-outside-toplevel,W0611
  from models.ema import ExponentialMovingAverage
  bases = {name: importlib.import_module('configs.' + name.replace('/', '.'))
           for name in {base for base, _ in SETUPS.values()}}
  PEER.__dict__.update(datasets=datasets, losses=losses, sampling=sampling, sde_lib=sde_lib,
                       utils=utils, mutils=mutils, EMA=ExponentialMovingAverage, bases=bases)


def fixture_main(doc, out, cases, write_case, module):
  """main() of a fixture tool on the published-checkpoint files (make_likelihood_fixture.py,
  make_controllable_fixture.py): flags --score_sde, --published, --out, --cases; the peer's
  `module` imported as PEER.<module>; write_case(case, published, out) per case."""
  parser = argparse.ArgumentParser(description=doc.split('\n', 1)[0])
  parser.add_argument('--score_sde', required=True, help='checkout of yang-song/score_sde_pytorch')
  parser.add_argument('--published', default='tests/fixtures/published')
  parser.add_argument('--out', default=out)
  parser.add_argument('--cases', default=','.join(cases))
  args = parser.parse_args()
  torch.set_num_threads(1)
  import_peer(os.path.abspath(args.score_sde))
  setattr(PEER, module, importlib.import_module(module))     # the peer's, on sys.path now
  os.makedirs(args.out, exist_ok=True)
  for case in args.cases.split(','):
    write_case(case, args.published, args.out)


SDE_SHRINK = {'data.image_size': 8, 'model.nf': 8, 'model.ch_mult': [1, 2],
              'model.num_res_blocks': 1, 'model.attn_resolutions': [4]}
SDE_TRAIN = {'training.batch_size': 16, 'training.snapshot_freq': 1500, 'optim.lr': 2e-3,
             'optim.warmup': 0}
PC_STEPS = 50        # model.num_scales of the PC cases (the paper's 1000; at 20 VE's samples fail)
SETUPS = {   # setup -> (official config, as configs/<it>.py here too; fields over it)
    'vp_ode': ('vp/cifar10_ddpmpp_continuous', {'sampling.method': 'ode'}),
    've_pc': ('ve/cifar10_ncsnpp_continuous', {'model.num_scales': PC_STEPS}),
    'vp_pc': ('vp/cifar10_ddpmpp_continuous',
              {'model.num_scales': PC_STEPS, 'sampling.method': 'pc',
               'sampling.predictor': 'ancestral_sampling', 'sampling.corrector': 'langevin'}),
    've_smld': ('ve/cifar10_ncsnpp', {'model.num_scales': PC_STEPS,       # discrete time
                                      'model.sigma_max': 5}),
    'vp_ddpm': ('vp/cifar10_ddpmpp', {'model.num_scales': PC_STEPS}),      # discrete time
    'subvp_em': ('subvp/cifar10_ddpmpp_continuous', {'model.num_scales': PC_STEPS}),
}
SAMPLING_EPS = {'vpsde': 1e-3, 'subvpsde': 1e-3, 'vesde': 1e-5}   # run_lib.evaluate's per SDE


def base_config(setup):
  return f'configs/{SETUPS[setup][0]}.py'


def state_of_the_loop(setup='vp_ode'):
  """The setup's official config shrunk; run_lib.train's model, EMA, optimizer and SDE."""
  base, fields = SETUPS[setup]
  config = PEER.bases[base].get_config()
  for key, value in dict(SDE_SHRINK, **SDE_TRAIN, **fields).items():
    group, field = key.split('.')
    config[group][field] = tuple(value) if isinstance(value, list) else value
  config.device = torch.device('cpu')
  torch.manual_seed(0)
  model = PEER.mutils.create_model(config)          # torch.nn.DataParallel(NCSNpp)
  ema = PEER.EMA(model.parameters(), decay=config.model.ema_rate)
  optimizer = PEER.losses.get_optimizer(config, model.parameters())
  m = config.model
  sde = (PEER.sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
         if config.training.sde == 'vesde' else
         {'vpsde': PEER.sde_lib.VPSDE, 'subvpsde': PEER.sde_lib.subVPSDE}[config.training.sde](
             beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales))
  return config, sde, dict(optimizer=optimizer, model=model, ema=ema, step=0)


def train_to_first_snapshot(out, setup, seed):
  """Random weights (output conv x 0.1), then run_lib.train's loop (official step_fn) up to its
  first snapshot, saved as checkpoint_1.pth; images N(1/2, 1/16) per pixel in [0, 1] units, fed
  in the data's units (data.centered: 2 x - 1, N(0, 1/4)) as the data scaler gives them."""
  config, sde, state = state_of_the_loop(setup)
  randomize(state['model'], seed, out_gain=0.1)
  state['ema'] = PEER.EMA(state['model'].parameters(), decay=config.model.ema_rate)
  step_fn = PEER.losses.get_step_fn(sde, train=True,
                                    optimize_fn=PEER.losses.optimization_manager(config),
                                    reduce_mean=config.training.reduce_mean,
                                    continuous=config.training.continuous,
                                    likelihood_weighting=config.training.likelihood_weighting)
  gen = torch.Generator().manual_seed(1)
  torch.manual_seed(2)
  for _ in range(config.training.snapshot_freq + 1):   # run_lib.train's loop steps 0..freq
    z = torch.randn([config.training.batch_size, 3, 8, 8], generator=gen)
    step_fn(state, 0.5 * z if config.data.centered else 0.5 + 0.25 * z)
  PEER.utils.save_checkpoint(os.path.join(out, 'checkpoint_1.pth'), state)
  return config, sde, state


CHECKPOINT_NOTES = (
    'checkpoint_1.pth (utils.save_checkpoint): optimizer, model (DataParallel: keys "module.*"), '
    'ema {decay, num_updates, shadow_params in parameters() order}, step. Weights: all random '
    '(output conv x 0.1), then run_lib.train\'s loop (official step_fn, the config\'s EMA rate) on '
    'N(1/2, 1/16) images in [0, 1] units (fed as the data scaler gives them: VP centered N(0, '
    '1/4)), batch 16, lr 2e-3, no warm-up, '
    'snapshot_freq 1500: checkpoint_1 at loop step 1500 (state step 1501).')


def build(out):
  """score_sde_ode: VP DDPM++ trained to its first snapshot, sampled by the ODE path."""
  config, sde, state = train_to_first_snapshot(out, 'vp_ode', 107)
  torch.manual_seed(0)
  latents, extra = sde.prior_sampling((len(SEEDS), 3, 8, 8)), {}     # x_T
  model_x = sample(state['model'], latents, {})
  state['ema'].copy_to(state['model'].parameters())
  x = sample(state['model'], latents, extra)
  x_tight, nfe_tight = tight(state['model'], latents)
  solver_error = (x_tight - x).abs()
  settings = dict(
      base_config=base_config('vp_ode'),
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
            + CHECKPOINT_NOTES + ' EMA 0.9999. A random VP eps-net makes the ODE grow x '
            '~150-fold (exp(0.5 int beta)); this trained one does not.')
  return state['model'], latents, settings, dict(x_tight=nhwc(x_tight).astype(np.float32))


def tight(model, latents):
  """(x, nfe): the same ODE path solved at rtol = atol = 1e-8 (the ODE solution to ~1e-4)."""
  config, sde, _ = state_of_the_loop()
  solve = PEER.sampling.get_ode_sampler(sde, tuple(latents.shape), lambda z: z, denoise=True,
                                        rtol=1e-8, atol=1e-8, eps=SAMPLING_EPS['vpsde'],
                                        device=config.device)
  with torch.no_grad():
    return solve(model, latents)


def sample(model, latents, extra):
  """sampling.get_sampling_fn(...)(model, z=x_T); x captured before the inverse scaler."""
  config, sde, _ = state_of_the_loop()
  official_inverse = PEER.datasets.get_data_inverse_scaler(config)
  captured = []
  def inverse_scaler(x):
    captured.append(x)
    return official_inverse(x)
  sampling_fn = PEER.sampling.get_sampling_fn(config, sde, tuple(latents.shape), inverse_scaler,
                                              SAMPLING_EPS['vpsde'])
  with torch.no_grad():
    _, nfe = sampling_fn(model, z=latents)
  extra['nfe'] = np.int64(nfe)
  return captured[0]


def load(case_dir, setup='vp_ode', resample=None):
  """run_lib.evaluate: a fresh state, restore_checkpoint, ema.copy_to(model.parameters()); the
  model's and the EMA's samples compared (`resample(model, latents)`: the case's sampler)."""
  config, _, state = state_of_the_loop(setup)
  state = PEER.utils.restore_checkpoint(os.path.join(case_dir, 'checkpoint_1.pth'), state,
                                        config.device)
  model = state['model']
  latents = nchw(np.load(os.path.join(case_dir, 'latents.npy')))
  resample = resample or (lambda net, z: sample(net, z, {}))
  wrong = resample(model, latents)
  state['ema'].copy_to(model.parameters())
  right = resample(model, latents)
  print(f'  step {state["step"]}; max |x(model weights) - x(ema weights)| = '
        f'{(wrong - right).abs().max().item():.3g}')
  return model


# --- score_sde_pc*: the PC sampler --------------------------------------------------------------

PC_NOTES = {
    've_pc': 'VE NCSN++ (continuous time: labels sigma(t)) trained to its first snapshot. Each '
             'step the Langevin corrector (alpha = 1 for VE), then the reverse-diffusion predictor '
             '(sigma of the previous index int(t (N - 1)), 0 at index 0).',
    'vp_pc': 'The VP DDPM++ of score_sde_ode (its checkpoint_1.pth), restored with its training '
             'config (model.num_scales 1000: the sigmas buffer) and sampled with VPSDE(N=50) and '
             'this config\'s sampling fields. Each step the Langevin corrector (alpha = 1 - beta_i '
             'of the DDPM betas at index int(t (N - 1))), then DDPM\'s ancestral step (Song+21 Eq. '
             '47).',
    've_smld': 'VE NCSN++ in discrete time (SMLD: training.continuous False, positional '
               'embedding of the level index, output / sigmas[index]) trained with 50 levels '
               'from sigma_max 5 (at 50 its samples diverge) to its first snapshot; labels '
               'round((1 - t)(N - 1)). Each step the Langevin corrector '
               '(alpha = 1), then the reverse-diffusion predictor. Workaround: the model\'s '
               '`sigmas` buffer is float64 (torch.tensor of get_sigmas\' NumPy array), so its '
               'output / sigmas[index] turns x into float64 after the first step and the next '
               'convolution refuses it (float32 weights); the buffer is cast to float32 before '
               'sampling (the checkpoint keeps it as saved): sigma rounded to float32, as ours.',
    'vp_ddpm': 'VP DDPM++ in discrete time (DDPM: training.continuous False, labels t (N - 1), '
               'score = -model / sqrt(1 - alphas_cumprod)[int(t (N - 1))]) trained with 50 levels '
               'to its first snapshot. Each step DDPM\'s ancestral step (Song+21 Eq. 47), no '
               'corrector.',
    'subvp_em': 'The VP DDPM++ file of score_sde_ode (restored with its training config) '
                'sampled as the sub-VP config does (label 999 t, score = -model / std of the '
                'sub-VP marginal, 1 - exp(-int beta)): Euler-Maruyama steps of the reverse SDE '
                '(Song+21 Eq. 6, dt = -1/N), no corrector. A sub-VP file is read the same way.',
}


def pc_noise_draws(config, batch):
  """The PC sampler's Gaussian draws [N, 1 + corrector steps, B, H, W, C] (NHWC), indexed as our
  sampling.step_normal: [i, 0] the predictor's of step i, [i, 1 + j] its j-th corrector step's."""
  gen = torch.Generator().manual_seed(3)
  steps = config.sampling.n_steps_each if config.sampling.corrector != 'none' else 0
  return torch.randn([config.model.num_scales, 1 + steps, batch, 8, 8, 3], generator=gen).numpy()


def pc(model, latents, extra, setup='ve_pc'):
  """run_lib.evaluate's PC path: sampling.get_sampling_fn(config, sde, shape, inverse_scaler,
  sampling_eps)(model), x_T = sde.prior_sampling = latents * the prior's std, and every
  torch.randn_like of its corrector (first, n_steps draws) and predictor (then one) per step
  replaying extra['pc_noise'] in that order. Returns 2 image - 1 (the output is the image in
  [0, 1], here in reference.npz's [-1, 1] units)."""
  config, sde, _ = state_of_the_loop(setup)
  noise = extra['pc_noise']
  order = list(range(1, noise.shape[1])) + [0]          # corrector draws, then the predictor's
  replay, drawn = replayer(noise[:, order].reshape(-1, *noise.shape[2:]))
  sampling_fn = PEER.sampling.get_sampling_fn(
      config, sde, tuple(latents.shape), PEER.datasets.get_data_inverse_scaler(config),
      SAMPLING_EPS[config.training.sde])
  real, torch.randn_like = torch.randn_like, replay
  sde.prior_sampling = lambda shape: latents * getattr(sde, 'sigma_max', 1.)
  if model.module.sigmas.dtype == torch.float64:   # see PC_NOTES['ve_smld']
    model.module.sigmas = model.module.sigmas.float()
  try:
    with torch.no_grad():
      image, nfe = sampling_fn(model)
  finally:
    torch.randn_like = real
  assert len(drawn) == noise.shape[0] * noise.shape[1], len(drawn)
  extra['nfe'] = np.int64(nfe)
  return 2. * image - 1.


def build_pc(out, setup, seed=None, checkpoint_case=None, trained_as=None):
  """A PC case: the setup's network trained here from `seed`, or `checkpoint_case`'s file
  (restored with setup `trained_as`), sampled by the PC path with the setup's fields."""
  if checkpoint_case:
    state = PEER.utils.restore_checkpoint(
        os.path.join(os.path.dirname(out), checkpoint_case, 'checkpoint_1.pth'),
        state_of_the_loop(trained_as)[2], 'cpu')
    config, sde, _ = state_of_the_loop(setup)
  else:
    config, sde, state = train_to_first_snapshot(out, setup, seed)
  torch.manual_seed(0)
  latents = torch.randn(len(SEEDS), 3, 8, 8)
  extra = dict(pc_noise=pc_noise_draws(config, len(SEEDS)))
  model_x = pc(state['model'], latents, dict(extra), setup)
  state['ema'].copy_to(state['model'].parameters())
  x = pc(state['model'], latents, dict(extra), setup)
  s, eps = config.sampling, SAMPLING_EPS[config.training.sde]
  settings = dict(
      base_config=base_config(setup), overrides=dict(SDE_SHRINK, **SETUPS[setup][1]),
      official="score_sde_pytorch run_lib.evaluate's PC path: restore_checkpoint("
               "checkpoint_1.pth), ema.copy_to(model.parameters()), sampling.get_sampling_fn("
               f"config, {type(sde).__name__}(N={sde.N}), (4, 3, 8, 8), inverse_scaler, "
               f"eps={eps}) = get_pc_sampler({s.predictor}, {s.corrector}, snr={s.snr}, "
               f"n_steps={s.n_steps_each}, continuous={config.training.continuous}, "
               f"denoise={s.noise_removal}); sample, nfe = sampling_fn(model)",
      notes=PC_NOTES[setup] + f' EMA {config.model.ema_rate}. x_T = sde.prior_sampling(shape) = '
            f'latents times the prior std. {sde.N} steps at t = linspace(1, {eps}, N) (run_lib\'s '
            'sampling_eps); Langevin step size 2 alpha (snr mean|z| / mean|score|)^2 with the '
            'means over the batch; denoise: the last step\'s x_mean. Every Gaussian draw is '
            'reference.npz\'s pc_noise [step, 0: predictor | 1 + j: corrector step j, N, H, W, C], '
            'replayed into the official torch.randn_like calls (corrector, then predictor). x = '
            '2 image - 1 of the official [0, 1] output (centered data: the sampler\'s x). Model '
            f'instead of EMA weights: max |dx| = {(model_x - x).abs().max().item():.3g}.'
            + ('' if checkpoint_case else ' ' + CHECKPOINT_NOTES))
  if checkpoint_case:
    settings['checkpoint_case'] = checkpoint_case
  return state['model'], latents, settings, extra


def pc_case(setup, seed=None, checkpoint_case=None, trained_as=None):
  """(peer, build, load, sample) of a PC case (see build_pc)."""
  def load_pc(case_dir):
    folder = os.path.join(os.path.dirname(case_dir), checkpoint_case or os.path.basename(case_dir))
    draws = pc_noise_draws(state_of_the_loop(setup)[0], len(SEEDS))
    return load(folder, trained_as or setup,
                lambda net, z: pc(net, z, dict(pc_noise=draws), setup))
  return ('score_sde', lambda out: build_pc(out, setup, seed, checkpoint_case, trained_as),
          load_pc, lambda net, z, extra: pc(net, z, extra, setup))


CASES = {   # case -> (peer flag, build, load as the official sampler loads, sample(net, z, extra))
    'score_sde_ode': ('score_sde', build, load, sample),
    'score_sde_pc': pc_case('ve_pc', 108),
    'score_sde_pc_vp': pc_case('vp_pc', checkpoint_case='score_sde_ode', trained_as='vp_ode'),
    'score_sde_smld': pc_case('ve_smld', 109),
    'score_sde_ddpm': pc_case('vp_ddpm', 110),
    'score_sde_subvp_em': pc_case('subvp_em', checkpoint_case='score_sde_ode', trained_as='vp_ode'),
}
