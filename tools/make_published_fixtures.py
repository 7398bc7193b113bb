"""Write tests/fixtures/published/<case>/: end-to-end parity fixtures made with the official code.

Each case: a tiny random-weight network saved exactly as the official training code saves it,
4 given latents and the official sampler's result for them (Karras+22 EDM, arXiv:2206.00364;
Ning+24 EDM-ES, arXiv:2308.15321; Xu+23 PFGM++, arXiv:2302.04265; Wang+23 Patch Diffusion,
arXiv:2304.12526; Song+21 score SDE, arXiv:2011.13456). Nothing is downloaded:
  python tools/make_published_fixtures.py --edm=<NVlabs/edm> \
      --edm_es=<forever208/EDM-ES> --pfgmpp=<Newbeeer/pfgmpp> --patch=<Zhendong-Wang/Patch-Diffusion> \
      --score_sde=<yang-song/score_sde_pytorch> --out=tests/fixtures/published [--cases=a,b]
(torch==2.13.0 CPU, numpy, scipy, ml_collections, click, tqdm, pillow, requests; diffusers 0.42.1
for the latent case patch_latent_cfg, whose VAE is tools/make_autoencoder_fixture.py's). The peers share
package names (training, torch_utils, dnnlib): each case is built in its own interpreter and
checked in another that loads the files as the official samplers do, samples again, compares.

A case directory: the checkpoint (name and content as the official loop writes them), latents.npy
(float32 N(0, I) [4, H, W, C], channels last), reference.npz ('images' = clip((x + 1)/2, 0, 1) of
the sampler's final x, 'x' = that x, [4, H, W, C] float32; PFGM++ adds 'radii', score_sde 'nfe'
and 'x_tight', the noise-injection cases 'perturb', the PC case 'pc_noise' and x = 2 image - 1; patch_latent_cfg:
x the VAE's decoding of the sampler's latents [4, 8, 8, 4]), settings.json (our base config and overrides,
the official call, notes; 'checkpoint_case' where the case samples another case's checkpoint). Every
parameter is random: N(0, 1/fan_in) weights, 1 + 0.2 N norm scales, 0.2 N biases. Workarounds
that touch no computation: modules only unused paths need are stubbed where missing (torchvision:
pfgmpp --save_images; diffusers, where missing: Patch-Diffusion --on_latents; tensorflow, tensorflow_datasets,
jax: score_sde_pytorch utils.py / datasets.py, gfile -> os.path); score_sde_pytorch's CUDA `op`
build gives way to its pure-PyTorch FIR path. The EDM-family helpers (networks, snapshots, seeds)
are in fixture_edm.py; the cases of EDM's baseline networks with generate.py's sampler axes
(--solver --disc --schedule --scaling) in published_fixtures_baseline.py; score_sde's in
published_fixtures_score_sde.py.
"""
import argparse
import ast
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

from fixture_common import SEEDS, nchw, nhwc, randomize, replayer
from fixture_edm import (AUGMENT, CLASS, EDM_NOTES, EDM_SAMPLER, PEER, RES, build_net,
                         dataset_kwargs, first_iteration, import_edm_family, load_snapshot,
                         one_hot, quiet, rnd, save_snapshot, snapshot_case)
import published_fixtures_baseline as baseline
import published_fixtures_score_sde as score_sde

# --- EDM-family cases ---------------------------------------------------------------------------

def edm_heun(net, latents, label_dim, steps=18):
  """NVlabs/edm generate.py: edm_sampler with its defaults (Karras+22 Alg. 2, S_churn = 0)."""
  return quiet(PEER.generate.edm_sampler, net, latents, one_hot(label_dim),
               randn_like=rnd().randn_like, num_steps=steps)


def build_edm_uncond(out):
  net, kwargs = build_net('training.networks.EDMPrecond', 'ddpmpp', 0, augment=True)
  randomize(net, 101)
  loss_fn = PEER.dnnlib.util.construct_class_by_name(class_name='training.loss.EDMLoss')
  augment_pipe = PEER.dnnlib.util.construct_class_by_name(**AUGMENT)
  ema, optimizer, cur_nimg = first_iteration(net, loss_fn, augment_pipe, 0)
  save_snapshot(os.path.join(out, 'network-snapshot-000000.pkl'), ema, loss_fn, augment_pipe,
                dataset_kwargs(RES, False))
  torch.save(dict(net=net, optimizer_state=optimizer.state_dict()),
             os.path.join(out, f'training-state-{cur_nimg // 1000:06d}.pt'))
  settings = dict(
      base_config='configs/edm/cifar10_ddpmpp.py', overrides=dict(EDM_SAMPLER),
      official="NVlabs/edm generate.py: edm_sampler(net, latents, None, randn_like=rnd.randn_like)"
               " with its defaults (18 steps, sigma 0.002..80, rho 7, S_churn 0); net = "
               "pickle.load(network-snapshot-000000.pkl)['ema']",
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' --augment=0.12: augment_dim 9 (map_augment, unused when sampling), '
            'an AugmentPipe in the pickle. training-state-000000.pt: after one training_loop.py '
            'iteration at cur_nimg 0 (EDMLoss, 4 random images), whose lr ramp-up gives lr 0: net '
            '(train mode) == snapshot ema, Adam step 1, exp_avg = 0.1 g, exp_avg_sq = 0.001 g^2. '
            '(The loop skips the dump at tick 0; the call is the same.)')
  return ema, rnd().randn([len(SEEDS), 3, RES, RES]), settings, {}


def build_edm_cond(out):
  net, latents, kwargs = snapshot_case(out, 102, 'ncsnpp', label_dim=10)
  settings = dict(
      base_config='configs/edm/cifar10_ncsnpp.py',
      overrides=dict(EDM_SAMPLER, **{'sampling.class_label': CLASS}),
      official="NVlabs/edm generate.py --class=3: edm_sampler(net, latents, class_labels, "
               "randn_like=rnd.randn_like) with its defaults (18 steps); class_labels = one-hot "
               "[4, 10] with a 1 at index 3",
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' label_dim 10 (our model.class_conditional=True). NCSN++: Fourier '
            'embedding (buffer map_noise.freqs), residual encoder, FIR [1, 3, 3, 1].')
  return net, latents, settings, {}


def es_euler(net, latents, eps_scaler=1.0048):
  """EDM-ES generate.py --steps=13 --solver=euler --eps_scaler=1.0048: ablation_sampler."""
  return quiet(PEER.generate.ablation_sampler, net, latents, None, randn_like=rnd().randn_like,
               num_steps=13, solver='euler', rho=7, S_churn=0, S_min=0, S_max=float('inf'),
               S_noise=1, eps_scaler=eps_scaler)


def build_edm_es(out):
  net, latents, kwargs = snapshot_case(out, 103, 'ddpmpp')
  effect = (es_euler(net, latents) - es_euler(net, latents, 1.0)).abs().max().item()
  overrides = dict(EDM_SAMPLER, **{'sampling.steps': 13, 'sampling.solver': 'euler',
                                   'sampling.eps_scaler': 1.0048})
  settings = dict(
      base_config='configs/edm/cifar10_ddpmpp.py', overrides=overrides,
      official="forever208/EDM-ES generate.py --steps=13 --solver=euler --eps_scaler=1.0048 "
               "(README value): ablation_sampler(net, latents, None, randn_like, num_steps=13, "
               "solver='euler', eps_scaler=1.0048), disc 'edm', schedule 'linear', scaling 'none'",
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' Epsilon Scaling: each evaluation eps = (x_hat - D)/sigma is divided by '
            'the constant lambda = eps_scaler (every step, the last to 0 too), so d = eps/lambda; '
            '13 Euler steps = 13 NFE. (ablation_sampler does not scale its Heun correction; '
            f'edm_sampler scales both.) Effect: max |x(1.0048) - x(1.0)| = {effect:.3g}.')
  return net, latents, settings, {}


def pfgmpp_prior(net):
  """pfgmpp generate.py: rnd.rand_beta_prime (per seed: torch.manual_seed(seed), Beta(N/2, D/2)
  draw, then torch.randn(N)); also the Gaussians and radii that draw used, replayed."""
  n_dims, d = 3 * RES * RES, net.D
  x_t = rnd().rand_beta_prime([len(SEEDS), 3, RES, RES], N=n_dims, D=d, pfgmpp=True,
                              device=torch.device('cpu'), sigma_max=80)
  beta = torch.distributions.Beta(torch.FloatTensor([n_dims / 2.]), torch.FloatTensor([d / 2.]))
  gaussians, radii = [], []
  for seed in SEEDS:
    torch.manual_seed(seed)
    b = beta.sample().double()
    radii.append((torch.sqrt(b / (1 - b)) * 80 * np.sqrt(d)).item())   # Xu+23: R = r sqrt(b/(1-b))
    gaussians.append(torch.randn(n_dims).reshape(3, RES, RES))
  return x_t, torch.stack(gaussians), np.array(radii)


def prior_from_latents(latents, radii):
  """x_T = latents / ||latents|| * radius (norm over all C·H·W entries, in float32), float64."""
  unit = latents / torch.norm(latents.reshape(len(latents), -1), p=2, dim=1).reshape(-1, 1, 1, 1)
  return unit.double() * torch.as_tensor(radii, dtype=torch.float64).reshape(-1, 1, 1, 1)


def pfgmpp_heun(net, latents, extra):
  """pfgmpp generate.py --pfgmpp=1 --aug_dim=128: its edm_sampler with its CLI defaults, from the
  official x_T while building, from (latents, radii) when checking."""
  x_t = extra['x_t'] if 'x_t' in extra else prior_from_latents(latents, extra['radii'])
  return quiet(PEER.generate.edm_sampler, net, x_t, None, randn_like=rnd().randn_like,
               num_steps=18, rho=7, S_churn=0, S_min=0, S_max=0, S_noise=0, pfgmpp=True)[0]


def build_pfgmpp(out):
  interface = dict(img_resolution=RES, img_channels=3, label_dim=0, pfgmpp=True, D=128)
  net, kwargs = build_net('training.networks.EDMPrecond', 'ncsnpp', 0, True, interface)
  randomize(net, 104)
  loss_fn = PEER.dnnlib.util.construct_class_by_name(
      class_name='training.loss.EDMLoss', opts=PEER.dnnlib.EasyDict(lsun=False), D=128,
      N=3 * RES * RES)
  augment_pipe = PEER.dnnlib.util.construct_class_by_name(**AUGMENT)
  np.random.seed(3)                                  # the loss draws its Beta radii with numpy
  with contextlib.redirect_stdout(io.StringIO()):   # its loss prints per call
    ema, optimizer, cur_nimg = first_iteration(net, loss_fn, augment_pipe, 0, stf=False,
                                               pfgmpp=True, ref_images=None)
  torch.save(dict(optimizer_state=optimizer.state_dict(), step=cur_nimg, ema=ema, net=net),
             os.path.join(out, f'training-state-{cur_nimg // 1000:06d}.pt'))
  x_t, latents, radii = pfgmpp_prior(net)
  rebuilt = (prior_from_latents(latents, radii) - x_t).abs().max().item()
  print(f'pfgmpp: |x_T(latents, radii) - official x_T| = {rebuilt:.3g}')
  assert rebuilt < 1e-9 * 80 * np.sqrt(128)
  overrides = dict(EDM_SAMPLER, **{'training.pfgmpp_D': 128.0})
  settings = dict(
      base_config='configs/pfgmpp/cifar10_ncsnpp.py', overrides=overrides,
      official="Newbeeer/pfgmpp generate.py --pfgmpp=1 --aug_dim=128 --seeds=0-3: x_T = "
               "rnd.rand_beta_prime([4, 3, 16, 16], N=768, D=128, sigma_max=80); edm_sampler(net, "
               "x_T, None, randn_like, num_steps=18, rho=7, S_churn=0, S_min=0, S_max=0, "
               "S_noise=0, pfgmpp=True)[0]; net = torch.load(training-state-000000.pt)['ema']",
      network_kwargs=kwargs,
      notes='Prior (Xu+23), per seed s: torch.manual_seed(s); b ~ Beta(N/2, D/2) (float32; N = '
            '768, D = 128); radii[i] = R = sqrt(b/(1-b)) * 80 * sqrt(D) (float64); latents[i] = '
            'g = torch.randn(N) (as [C, H, W]); x_T = g/||g||_2 * R (norm over all N entries, in '
            'float32), NOT times sigma_max again; in our units (x_T = sigma_max z) z = g/||g|| * '
            'R/80. Then EDM\'s float64 Heun, 18 steps, sigma 0.002..80 (D is not in the precond '
            'or the ODE). Checkpoint: what PFGM++\'s training_loop.py writes (no snapshot pkl), '
            'torch.save(dict(optimizer_state, step=cur_nimg=4, ema, net)) after one iteration at '
            'cur_nimg 0 (its EDMLoss, pfgmpp=True, --augment=0.12): lr 0, so ema == net. ema is '
            'EDMPrecond(pfgmpp=True, D=128) with attributes D, N = 768.')
  return ema, latents, settings, dict(radii=radii, x_t=x_t)


ALPHA = 0.1                    # generate_alpha.py's alpha_list = [0, 0.1, 0.2]
BITS = 6                       # generate_quant.py's bits_list = [5, 6, 7, 8, 9]


def pfgmpp_alpha_heun(net, latents, extra):
  """pfgmpp generate_alpha.py (Xu+23 §6 robustness, alpha = 0.1): its edm_sampler, which adds
  alpha * t_i * torch.randn_like(x) to x before every step; that draw (torch's global generator in
  the script) replays extra['perturb'][i] here, every call checked."""
  import generate_alpha  # pylint: disable=import-outside-toplevel
  x_t = prior_from_latents(latents, extra['radii'])
  (replay, drawn), real = replayer(extra['perturb']), torch.randn_like
  torch.randn_like = replay
  try:
    x = quiet(generate_alpha.edm_sampler, net, x_t, None, randn_like=rnd().randn_like, num_steps=18,
              rho=7, S_churn=0, S_min=0, S_max=0, S_noise=0, pfgmpp=True, D=128, alpha=ALPHA)
  finally:
    torch.randn_like = real
  assert len(drawn) == len(extra['perturb']) and all(d == x_t.shape for d in drawn), drawn
  return x


def official_quant_weight():
  """generate_quant.py's quant_weight(model, num_bits): the script defines it (with QTensor,
  quantize_tensor, dequantize_tensor) inside main(), so those statements of main are compiled
  from the script's own source, unchanged."""
  import generate_quant  # pylint: disable=import-outside-toplevel
  path = generate_quant.__file__
  with open(path, encoding='utf-8') as f:
    main_def = next(n for n in ast.parse(f.read()).body
                    if isinstance(n, ast.FunctionDef) and n.name == 'main')
  wanted = [n for n in main_def.body if isinstance(n, ast.FunctionDef) or (
      isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'QTensor')]
  namespace = dict(vars(generate_quant))
  code = compile(ast.Module(body=wanted, type_ignores=[]), path, 'exec')
  exec(code, namespace)  # pylint: disable=exec-used
  return generate_quant, namespace['quant_weight']


def pfgmpp_quant_heun(net, latents, extra):
  """generate_quant.py (Xu+23 §6 robustness, 6 bits): quant_weight(net, num_bits=6) on a copy of
  the ema net, then its edm_sampler as pfgmpp_D128's."""
  generate_quant, quant_weight = official_quant_weight()
  quantized = quant_weight(copy.deepcopy(net), num_bits=BITS)
  x_t = prior_from_latents(latents, extra['radii'])
  return quiet(generate_quant.edm_sampler, quantized, x_t, None, randn_like=rnd().randn_like,
               num_steps=18, rho=7, S_churn=0, S_min=0, S_max=0, S_noise=0, pfgmpp=True, D=128)


def build_pfgmpp_variant(out, field, value, official, notes, **extra):
  """A case on the pfgmpp_D128 case's checkpoint, latents and radii (read from there, not copied),
  with one more sampling field; its settings say so ('checkpoint_case')."""
  source = os.path.join(os.path.dirname(out), 'pfgmpp_D128')
  net = load_pfgmpp(source)
  latents = nchw(np.load(os.path.join(source, 'latents.npy')))
  radii = np.load(os.path.join(source, 'reference.npz'))['radii']
  with open(os.path.join(source, 'settings.json')) as f:
    settings = json.load(f)
  settings.update(checkpoint_case='pfgmpp_D128', official=official, notes=notes,
                  overrides=dict(settings['overrides'], **{field: value}))
  return net, latents, settings, dict(radii=radii, **extra)


def build_pfgmpp_alpha(out):
  """generate_alpha.py with 18 steps of standard-normal perturb[i] [18, 4, H, W, C] (float32)."""
  perturb = np.random.default_rng(5).standard_normal([18, len(SEEDS), RES, RES, 3])
  perturb = perturb.astype(np.float32)
  return build_pfgmpp_variant(
      out, 'sampling.perturb_alpha', ALPHA, perturb=perturb,
      official=f"Newbeeer/pfgmpp generate_alpha.py, alpha = {ALPHA}: edm_sampler(net, x_T, None, "
               "randn_like, num_steps=18, rho=7, S_churn=0, S_min=0, S_max=0, S_noise=0, "
               f"pfgmpp=True, D=128, alpha={ALPHA}); x_T and net as in pfgmpp_D128",
      notes='Before every step i (also the first, at sigma_max, and the last): x_i += alpha * t_i '
            '* torch.randn_like(x_i), t_i = sigma_i; the script draws from torch\'s global '
            'generator, replayed here from perturb[i] (reference.npz, NHWC; our side feeds the '
            'same arrays in place of its PERTURB stream). Otherwise as pfgmpp_D128.')


def build_pfgmpp_quant(out):
  return build_pfgmpp_variant(
      out, 'sampling.quantize_bits', BITS,
      official=f"Newbeeer/pfgmpp generate_quant.py, {BITS} bits: net = quant_weight(net, "
               f"num_bits={BITS}) (its own code, from its main()); edm_sampler(net, x_T, None, "
               "randn_like, num_steps=18, rho=7, S_churn=0, S_min=0, S_max=0, S_noise=0, "
               "pfgmpp=True, D=128); x_T and net as in pfgmpp_D128",
      notes="Every parameter named *weight* without 'norm', 'affine', 'map', '32' in its name "
            '(here every conv, qkv, proj and skip weight: a 16-px net has no 32x32 layers) per '
            'tensor to 6 bits, min-max (scale = (max - min) / 63, integer zero point), '
            'dequantized to float32; biases untouched. Otherwise as pfgmpp_D128.')



def build_adm(out):
  net, latents, kwargs = snapshot_case(out, 105, 'adm', label_dim=10, dropout=0.10)
  overrides = dict(EDM_SAMPLER, **{'sampling.steps': 10, 'sampling.class_label': CLASS})
  settings = dict(
      base_config='configs/edm/cifar10_ddpmpp_cond.py', overrides=overrides,
      official="NVlabs/edm generate.py --class=3 --steps=10: edm_sampler(net, latents, "
               "class_labels, randn_like=rnd.randn_like, num_steps=10) (19 NFE)",
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' DhariwalUNet (--arch=adm), model_channels 16, channel_mult [1, 4]: '
            'the 8x8 level has 64 channels, one attention head of 64 (channels_per_head is fixed); '
            'no config of ours describes it (base: the nearest conditional EDM config).')
  return net, latents, settings, {}


def patch_grid(batch, res=RES):
  """Patch-Diffusion generate.py's full-image coordinates: channel 0 x_pos (column), channel 1
  y_pos (row), 2 (k/(R - 1) - 1/2) in [-1, 1]; [B, 2, R, R] (--on_latents: R the latents')."""
  pos = (torch.arange(res) / (res - 1) - 0.5) * 2.
  grid = torch.stack([pos.view(1, -1).repeat(res, 1), pos.view(-1, 1).repeat(1, res)], dim=0)
  return grid.unsqueeze(0).repeat(batch, 1, 1, 1)


def patch_heun(net, latents):
  """Patch-Diffusion generate.py (mask_pos=False, cfg=None): its edm_sampler, 18 steps."""
  return quiet(PEER.generate.edm_sampler, net, latents, patch_grid(len(latents)), False, None,
               None, randn_like=rnd().randn_like, num_steps=18)


def build_patch(out):
  interface = dict(img_resolution=RES, img_channels=3 + 2, out_channels=3, label_dim=0)
  net, latents, kwargs = snapshot_case(out, 106, 'ddpmpp', interface=interface,
                                       precond='training.networks.Patch_EDMPrecond',
                                       loss='training.patch_loss.Patch_EDMLoss')
  settings = dict(
      base_config='configs/patch/celeba64_ddpmpp.py', overrides=dict(EDM_SAMPLER),
      official="Zhendong-Wang/Patch-Diffusion generate.py --resolution=16 (mask_pos, embed_fq, "
               "cfg off): edm_sampler(net, latents, latents_pos, False, None, None, randn_like) "
               "with 18 steps",
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' Patch_EDMPrecond with img_channels 5 (3 + 2), out_channels 3: F(cat[c_in '
            'x, pos]; c_noise), pos unscaled, the full grid: channel 0 = 2 (col/(R-1) - 1/2) (along '
            'W), channel 1 = 2 (row/(R-1) - 1/2) (along H). loss_fn: patch_loss.Patch_EDMLoss.')
  return net, latents, settings, {}


LATENT_RES = 8                 # the latent case: 8x8x4 latents, the f = 2 fixture VAE -> 16 px
VAE_DIR = 'tests/fixtures/autoencoder'   # tools/make_autoencoder_fixture.py (diffusers' files)
LATENT_CHURN = dict(num_steps=10, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)


def build_patch_latent(out):
  """Patch Diffusion's 256-px models (--arch=adm --train_on_latents=1 --cond=1): Patch_EDMPrecond
  around a DhariwalUNet on 4 + 2 latent channels, 4 out; sampled with cfg 1.3 and churn, then
  decoded by the VAE (generate.py --on_latents=1 --cfg=1.3)."""
  interface = dict(img_resolution=LATENT_RES, img_channels=4 + 2, out_channels=4, label_dim=10)
  net, kwargs = build_net('training.networks.Patch_EDMPrecond', 'adm', 10, False, interface, 0.1)
  randomize(net, 110)
  loss_fn = PEER.dnnlib.util.construct_class_by_name(class_name='training.patch_loss.Patch_EDMLoss')
  save_snapshot(os.path.join(out, 'network-snapshot-000000.pkl'), net, loss_fn, None,
                dataset_kwargs(2 * LATENT_RES, True))
  perturb = np.random.default_rng(7).standard_normal([10, len(SEEDS), LATENT_RES, LATENT_RES, 4])
  overrides = dict(EDM_SAMPLER, **{
      'sampling.steps': 10, 'sampling.class_label': CLASS, 'sampling.guidance': 1.3,
      'sampling.S_churn': 40.0, 'sampling.S_min': 0.05, 'sampling.S_max': 50.0,
      'sampling.S_noise': 1.003, 'data.image_size': LATENT_RES, 'data.num_channels': 4,
      'data.autoencoder': f'{VAE_DIR}/diffusion_pytorch_model.safetensors'})
  settings = dict(
      base_config='configs/patch/imagenet256_adm_latent_cond.py', overrides=overrides,
      official='Zhendong-Wang/Patch-Diffusion generate.py --on_latents=1 --cfg=1.3 --class=3: '
               f'edm_sampler(net, latents, latents_pos, False, class_labels, 1.3, '
               f'randn_like=replay, **{LATENT_CHURN}), then AutoencoderKL.decode(x / 0.18215)',
      network_kwargs=kwargs,
      notes=EDM_NOTES + ' Latents [4, 8, 8, 4]; the VAE is diffusers AutoencoderKL read from '
            f'{VAE_DIR} (from_pretrained, as generate.py reads stabilityai/sd-vae-ft-ema), '
            'f = 2; reference x = its decode of the sampler\'s x / 0.18215 (float32). cfg: '
            'D_null + 1.3 (D_3 - D_null) with the null label a zero vector, both in one batch. '
            'Churn: the i-th randn_like returns perturb[i] [10, 4, 8, 8, 4] (NHWC).')
  latents = rnd().randn([len(SEEDS), 4, LATENT_RES, LATENT_RES])
  return net.eval(), latents, settings, dict(perturb=perturb.astype(np.float32))


def patch_latent_cfg(net, latents, extra):
  """generate.py --on_latents=1 --cfg=1.3: edm_sampler with churn, then the VAE's decode."""
  from diffusers import AutoencoderKL  # pylint: disable=import-outside-toplevel
  vae = AutoencoderKL.from_pretrained(os.path.abspath(VAE_DIR)).eval()
  replay, drawn = replayer(extra['perturb'])
  x = quiet(PEER.generate.edm_sampler, net, latents, patch_grid(len(latents), LATENT_RES), False,
            one_hot(10), 1.3, randn_like=replay, **LATENT_CHURN)
  assert len(drawn) == len(extra['perturb']), drawn
  with torch.no_grad():
    return vae.decode((1 / 0.18215 * x).float()).sample


def load_edm_uncond(case_dir):
  """The snapshot's ema, checked against training-state-000000.pt (pickled classes inside:
  torch >= 2.6 needs weights_only=False)."""
  net = load_snapshot(case_dir)
  state = torch.load(os.path.join(case_dir, 'training-state-000000.pt'), 'cpu', weights_only=False)
  same = all(torch.equal(a, b) for a, b in zip(net.parameters(), state['net'].parameters()))
  adam = state['optimizer_state']
  print(f'  training-state: net == ema {same}, Adam lr {adam["param_groups"][0]["lr"]}, steps '
        f'{sorted({float(v["step"]) for v in adam["state"].values()})}, {len(adam["state"])} tensors')
  assert same and len(adam['state']) == len(list(net.parameters()))
  return net


def load_pfgmpp(case_dir):
  """pfgmpp generate.py: torch.load(training-state-*.pt)['ema'].eval(), assert net.D == aug_dim."""
  data = torch.load(os.path.join(case_dir, 'training-state-000000.pt'), 'cpu', weights_only=False)
  net = data['ema'].eval()
  assert net.D == 128 and net.pfgmpp, (net.D, net.pfgmpp)
  print(f"  training-state: step {data['step']}, D {net.D}, N {net.N}")
  return net


CASES = {   # case -> (peer flag, build, load as the official sampler loads, sample(net, z, extra))
    'edm_uncond_heun': ('edm', build_edm_uncond, load_edm_uncond, lambda n, z, e: edm_heun(n, z, 0)),
    'edm_cond_ncsnpp_heun': ('edm', build_edm_cond, load_snapshot, lambda n, z, e: edm_heun(n, z, 10)),
    'edm_es_euler': ('edm_es', build_edm_es, load_snapshot, lambda n, z, e: es_euler(n, z)),
    'pfgmpp_D128': ('pfgmpp', build_pfgmpp, load_pfgmpp, pfgmpp_heun),
    'pfgmpp_D128_alpha': ('pfgmpp', build_pfgmpp_alpha,
                          lambda d: load_pfgmpp(os.path.join(os.path.dirname(d), 'pfgmpp_D128')),
                          pfgmpp_alpha_heun),
    'pfgmpp_D128_quant': ('pfgmpp', build_pfgmpp_quant,
                          lambda d: load_pfgmpp(os.path.join(os.path.dirname(d), 'pfgmpp_D128')),
                          pfgmpp_quant_heun),
    'adm_cond': ('edm', build_adm, load_snapshot, lambda n, z, e: edm_heun(n, z, 10, steps=10)),
    'patch_heun': ('patch', build_patch, load_snapshot, lambda n, z, e: patch_heun(n, z)),
    'patch_latent_cfg': ('patch', build_patch_latent, load_snapshot, patch_latent_cfg),
    **score_sde.CASES,
    **baseline.CASES,
}


# --- driver ---------------------------------------------------------------------------------

def write_case(case_dir, latents, x, settings, extra):
  """latents.npy, reference.npz and settings.json (with the fraction of unclipped pixels)."""
  np.save(os.path.join(case_dir, 'latents.npy'), nhwc(latents).astype(np.float32))
  x = nhwc(x).astype(np.float64)
  images = np.clip((x + 1) / 2, 0, 1).astype(np.float32)
  arrays = {k: v for k, v in extra.items() if k != 'x_t'}
  np.savez(os.path.join(case_dir, 'reference.npz'), images=images, x=x.astype(np.float32), **arrays)
  inside = float(((images > 0) & (images < 1)).mean())
  settings['unclipped_fraction'] = round(inside, 4)
  with open(os.path.join(case_dir, 'settings.json'), 'w') as f:
    json.dump(settings, f, indent=1)
  print(f'  x std {x.std():.3f}, |x| max {np.abs(x).max():.3f}, unclipped {inside:.3f}')
  assert 0.5 < inside, 'images mostly clipped: rescale the output layer'


def worker(mode, case, repo, out):
  torch.set_num_threads(1)
  peer, build, load, sample = CASES[case]
  (score_sde.import_peer if peer == 'score_sde' else import_edm_family)(repo)
  case_dir = os.path.join(out, case)
  if mode == 'build':
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    net, latents, settings, extra = build(case_dir)
    write_case(case_dir, latents, sample(net, latents, extra), settings, extra)
    return
  net = load(case_dir)
  ref = dict(np.load(os.path.join(case_dir, 'reference.npz')))
  latents = nchw(np.load(os.path.join(case_dir, 'latents.npy')))
  x = nhwc(sample(net, latents, ref)).astype(np.float64)
  diff = np.abs(x - ref['x']).max()
  image_diff = np.abs(np.clip((x + 1) / 2, 0, 1).astype(np.float32) - ref['images']).max()
  print(f'  reloaded + resampled: max |x - ref x| = {diff:.3g}, images {image_diff:.3g}')
  tolerance = 1e-5
  if 'x_tight' in ref:   # RK45 at 1e-5: its step choices, so x, move with the host's rounding
    tight_diff = np.abs(nhwc(score_sde.tight(net, latents)[0]) - ref['x_tight']).max()
    print(f'  the tight solve again: max |x_tight - ref x_tight| = {tight_diff:.3g}')
    assert tight_diff < 1e-5
    tolerance = 1e-2
  assert diff < tolerance and image_diff < tolerance


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  for flag in ('edm', 'edm_es', 'pfgmpp', 'patch', 'score_sde'):
    parser.add_argument(f'--{flag}', help=f'checkout of the official {flag} repository')
  parser.add_argument('--out', default='tests/fixtures/published')
  parser.add_argument('--cases', default=','.join(CASES), help='comma-separated subset')
  parser.add_argument('--worker', choices=('build', 'verify'), help=argparse.SUPPRESS)
  parser.add_argument('--repo', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args.worker, args.cases, args.repo, args.out)
    return
  for case in args.cases.split(','):
    repo = getattr(args, CASES[case][0])
    for mode in ('build', 'verify'):
      print(f'{case}: {mode}', flush=True)
      subprocess.run([sys.executable, os.path.abspath(__file__), f'--worker={mode}',
                      f'--cases={case}', f'--repo={os.path.abspath(repo)}',
                      f'--out={os.path.abspath(args.out)}'], check=True)


if __name__ == '__main__':
  main()
