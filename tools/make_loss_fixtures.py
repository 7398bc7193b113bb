"""Write tests/fixtures/losses/<case>.npz: the official training losses on stored networks, with
every random draw they make recorded, so that ours can be fed the same draws and compared.

  python tools/make_loss_fixtures.py --edm=<NVlabs/edm> --score_sde=<yang-song/score_sde_pytorch> \
      --stf=<Newbeeer/stf> --patch=<Zhendong-Wang/Patch-Diffusion> --pfgmpp=<Newbeeer/pfgmpp> \
      [--published=tests/fixtures/published] [--out=tests/fixtures/losses] [--cases=a,b]

Cases (each network: a published-checkpoint fixture, read as the official code reads it):
  edm, edm_vp, edm_ve  NVlabs/edm training/loss.py EDMLoss / VPLoss / VELoss (Karras+22 Table 1,
                       arXiv:2206.00364) on edm_uncond_heun's, baseline_vp_heun's and
                       baseline_ve_heun_ve's snapshot networks; loss.sum() / B as training_loop.py.
  stf                  Newbeeer/stf's EDMLoss with stf=True (Xu+23b, arXiv:2302.00670) on
                       edm_es_euler's network: a batch of 4, the reference batch of 16 whose first
                       4 are the batch (training_loop.py: batch_images = images[:B]),
                       AugmentPipe(p=0) (without a pipe the loop's STF branch overwrites the
                       reference with the batch).
  patch                Zhendong-Wang/Patch-Diffusion's Patch_EDMLoss (Wang+23, arXiv:2304.12526)
                       on patch_heun's network, 8 x 8 crops of 16 x 16 images with their
                       coordinate channels.
  pfgmpp               Newbeeer/pfgmpp's EDMLoss(D=128, N=768) with pfgmpp=True (Xu+23,
                       arXiv:2302.04265) on pfgmpp_D128's training-state 'ema' network: the
                       perturbation R u, R = sigma sqrt(D) sqrt(beta/(1 - beta)) (its beta from
                       numpy, clipped to [1e-3, 1 - 1e-3]: inactive here, beta ~ 0.86), u a
                       normalised torch.randn(B, N); stored as the direction 'pfgmpp_direction'
                       (the Gaussian, NHWC) and 'pfgmpp_radius' R / sigma.
  dsm_ve, dsm_vp, dsm_vp_lw, smld, ddpm
                       score_sde_pytorch losses.py (Song+21, arXiv:2011.13456): get_sde_loss_fn
                       (continuous DSM; VE ½·sum, VP mean; with likelihood weighting),
                       get_smld_loss_fn, get_ddpm_loss_fn on score_sde_pc's, score_sde_ode's,
                       score_sde_smld's and score_sde_ddpm's checkpoint_1.pth (EMA weights).
Networks in eval mode (no dropout: its masks cannot be shared); images: N(0, 1/4) per pixel in
model space, 4 per case; the official draws from torch's generator seeded 6. A case file: images
[B, H, W, C], the draws by what our losses ask jax.random for, in our layout ('normal_b' [B],
'normal_image' (the noise), 'uniform' [B] (t or u), 'randint' (levels [B] or patch corners
[B, 2])), 'loss' (the scalar the official training step differentiates) and, for the EDM family,
'per_element' (the loss tensor, NHWC). Each peer runs in its own interpreter (several have a
`training` package).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

from fixture_common import nhwc

EDM_CASES = {'edm': ('edm_uncond_heun', 'training.loss.EDMLoss'),    # case -> (network, loss)
             'edm_vp': ('baseline_vp_heun', 'training.loss.VPLoss'),
             'edm_ve': ('baseline_ve_heun_ve', 'training.loss.VELoss'),
             'stf': ('edm_es_euler', 'training.loss.EDMLoss'),       # Newbeeer/stf's
             'patch': ('patch_heun', 'training.patch_loss.Patch_EDMLoss'),
             'pfgmpp': ('pfgmpp_D128', 'training.loss.EDMLoss')}     # Newbeeer/pfgmpp's
OTHER_PEERS = {'stf': 'stf', 'patch': 'patch', 'pfgmpp': 'pfgmpp'}   # cases not of NVlabs/edm
STF_BATCH, STF_REF = 4, 16
PATCH_DIVISOR = 2              # the patch case's crops: resolution / 2
SCORE_SDE_CASES = {   # case -> (setup of published_fixtures_score_sde, checkpoint case, loss)
    'dsm_ve': ('ve_pc', 'score_sde_pc', 'sde'), 'dsm_vp': ('vp_ode', 'score_sde_ode', 'sde'),
    'dsm_vp_lw': ('vp_ode', 'score_sde_ode', 'sde_lw'),
    'smld': ('ve_smld', 'score_sde_smld', 'smld'), 'ddpm': ('vp_ddpm', 'score_sde_ddpm', 'ddpm')}


class Recorder:
  """Wraps torch.randn / randn_like / rand / randint: each call runs as usual, its result kept."""

  def __init__(self):
    self.calls, self.real = [], {}

  def __enter__(self):
    for name in ('randn', 'randn_like', 'rand', 'randint'):
      real = self.real[name] = getattr(torch, name)
      setattr(torch, name,
              lambda *a, _real=real, _name=name, **k: self._keep(_name, _real(*a, **k)))
    return self

  def _keep(self, name, value):
    self.calls.append((name, value.detach().clone()))
    return value

  def __exit__(self, *exc):
    for name, real in self.real.items():
      setattr(torch, name, real)


def images(resolution, n=4):
  gen = torch.Generator().manual_seed(5)
  return 0.5 * torch.randn([n, 3, resolution, resolution], generator=gen)


def stf_reference(resolution):
  """STF_REF images, four families of near copies (per-pixel spread 0.03, so that at the drawn
  sigmas the stable target weighs several references, not only the image itself)."""
  gen = torch.Generator().manual_seed(7)
  base = images(resolution).repeat(STF_REF // 4, 1, 1, 1)
  return base + 0.03 * torch.randn(base.shape, generator=gen)


def official_call(case, net, pipe_class):
  """(images, extra call arguments) of the case: the plain batch, STF's reference batch (and an
  AugmentPipe(p=0)), or Patch Diffusion's patch size and full resolution."""
  resolution = net.img_resolution
  if case == 'stf':
    reference = stf_reference(resolution)
    pipe = pipe_class(p=0)
    return reference[:STF_BATCH].clone(), dict(stf=True, ref_images=reference, augment_pipe=pipe)
  if case == 'patch':
    return images(resolution), dict(patch_size=resolution // PATCH_DIVISOR, resolution=resolution)
  return images(resolution), dict(augment_pipe=None)


def edm_case(case, published):
  """EDM-family loss on the snapshot's network: (arrays, notes)."""
  import pickle  # pylint: disable=import-outside-toplevel
  from fixture_edm import PEER  # pylint: disable=import-outside-toplevel
  folder, loss_class = EDM_CASES[case]
  with open(os.path.join(published, folder, 'network-snapshot-000000.pkl'), 'rb') as f:
    net = pickle.load(f)['ema'].eval()
  loss_fn = PEER.dnnlib.util.construct_class_by_name(class_name=loss_class)
  pipe_class = lambda **k: PEER.dnnlib.util.construct_class_by_name(
      class_name='training.augment.AugmentPipe', **k)
  y, call = official_call(case, net, pipe_class)
  reference = nhwc(call['ref_images']) if 'ref_images' in call else None
  torch.manual_seed(6)
  with Recorder() as draws, torch.no_grad():
    loss = loss_fn(net, y, labels=None, **call)
  *corner, (_, sigma_draw), (_, n) = draws.calls    # (patch: rows, columns), σ [B, 1, 1, 1], noise
  kind = 'normal_b' if 'EDMLoss' in loss_class else 'uniform'
  draw = sigma_draw.flatten().numpy()
  if loss_class.endswith('VPLoss'):                         # t = 1 + u (eps_t - 1), as ours draws t
    draw = (1 + sigma_draw * (loss_fn.epsilon_t - 1)).flatten().numpy()
  arrays = {'images': nhwc(y), kind: draw, 'normal_image': nhwc(n),
            'loss': np.float64(loss.sum().item() / len(y)), 'per_element': nhwc(loss)}
  if reference is not None:
    arrays['stf_reference'] = reference      # [R, H, W, C], its first B the batch
  if corner:                                 # our random_patches' [B, 2] (row, column) corners
    arrays['randint'] = np.stack([c.numpy() for _, c in corner], axis=1).astype(np.int32)
    arrays['patch_divisor'] = np.int64(PATCH_DIVISOR)
  args = ', '.join(f'{k}={v!r}' if isinstance(v, (int, float, bool, type(None)))
                   else f'{k}=<{type(v).__name__}>' for k, v in call.items())
  notes = (f'{loss_class}()(net, images, labels=None, {args}) with net = '
           f'pickle.load({folder}/network-snapshot-000000.pkl)["ema"].eval(); loss = the returned '
           'tensor\'s sum / B (training_loop.py: loss.sum().mul(loss_scaling / batch_gpu_total)). '
           f'{kind}: the sigma draw (VPLoss: t = 1 + u (epsilon_t - 1)); normal_image: randn_like '
           '(for patches: of the crops); randint: the crops\' top-left (row, column).')
  return arrays, dict(checkpoint_case=folder, notes=notes)


def pfgmpp_case(case, published):
  """Newbeeer/pfgmpp's EDMLoss(pfgmpp=True) on pfgmpp_D128's network, as its generate.py loads
  it: (arrays, notes)."""
  import types  # pylint: disable=import-outside-toplevel
  from fixture_edm import PEER  # pylint: disable=import-outside-toplevel
  from make_published_fixtures import load_pfgmpp  # pylint: disable=import-outside-toplevel
  folder, loss_class = EDM_CASES[case]
  net = load_pfgmpp(os.path.join(published, folder))
  y = images(net.img_resolution)
  loss_fn = PEER.dnnlib.util.construct_class_by_name(
      class_name=loss_class, D=net.D, N=y[0].numel(), opts=types.SimpleNamespace(lsun=False))
  torch.manual_seed(6)
  np.random.seed(6)
  betas, real_beta = [], np.random.beta
  np.random.beta = lambda *a, **k: betas.append(real_beta(*a, **k)) or betas[-1]
  try:
    with Recorder() as draws, torch.no_grad():
      loss = loss_fn(net, y, labels=None, augment_pipe=None, pfgmpp=True)
  finally:
    np.random.beta = real_beta
  (_, rnd_normal), (_, gaussian) = draws.calls        # sigma's, then the direction [B, N]
  beta = np.clip(betas[0], 1e-3, 1 - 1e-3)
  assert np.all((beta > 1e-3) & (beta < 1 - 1e-3)), beta      # the clip is inactive here
  radius = np.sqrt(net.D) * np.sqrt(beta / (1 - beta + 1e-8) + 1e-8)     # R / sigma
  arrays = {'images': nhwc(y), 'normal_b': rnd_normal.numpy(),
            'pfgmpp_direction': nhwc(gaussian.view_as(y)), 'pfgmpp_radius': radius,
            'loss': np.float64(loss.sum().item() / len(y)), 'per_element': nhwc(loss)}
  notes = (f'{loss_class}(D={net.D}, N={y[0].numel()})(net, images, pfgmpp=True) with net = '
           f'torch.load({folder}/training-state-000000.pt)["ema"].eval(); loss = the tensor\'s '
           'sum / B. normal_b: sigma\'s randn(B); pfgmpp_direction: randn(B, N) as NHWC images; '
           'pfgmpp_radius: sqrt(D) sqrt(beta / (1 - beta + 1e-8) + 1e-8), the official R over '
           'sigma (beta: numpy.random.beta(N/2, D/2), seeded 6).')
  return arrays, dict(checkpoint_case=folder, notes=notes)


def score_sde_case(case, published):
  """score_sde_pytorch's loss_fn(model, batch) (train=False: eval mode) on the file's EMA net."""
  import published_fixtures_score_sde as sds  # pylint: disable=import-outside-toplevel
  setup, folder, kind = SCORE_SDE_CASES[case]
  config, sde, state = sds.state_of_the_loop(setup)
  state = sds.PEER.utils.restore_checkpoint(os.path.join(published, folder, 'checkpoint_1.pth'),
                                            state, 'cpu')
  model = state['model']
  state['ema'].copy_to(model.parameters())
  losses = sds.PEER.losses
  reduce_mean = config.training.reduce_mean
  loss_fn = {'sde': lambda: losses.get_sde_loss_fn(sde, False, reduce_mean, True, False),
             'sde_lw': lambda: losses.get_sde_loss_fn(sde, False, reduce_mean, True, True),
             'smld': lambda: losses.get_smld_loss_fn(sde, False, reduce_mean),
             'ddpm': lambda: losses.get_ddpm_loss_fn(sde, False, reduce_mean)}[kind]()
  y = images(config.data.image_size)
  torch.manual_seed(6)
  with Recorder() as draws, torch.no_grad():
    loss = loss_fn(model, y)
  (first_name, first), (_, z) = draws.calls
  arrays = {'images': nhwc(y), 'normal_image': nhwc(z), 'loss': np.float64(loss.item())}
  if first_name == 'randint':
    arrays['randint'] = first.numpy().astype(np.int32)
  else:                                 # t = rand * (T - eps) + eps, as ours draws t
    arrays['uniform'] = (first * (sde.T - 1e-5) + 1e-5).numpy()
  notes = (f'score_sde_pytorch losses: {kind} loss_fn(model, images) of a train=False step '
           f'(eval mode), reduce_mean={reduce_mean}, on {folder}/checkpoint_1.pth restored as '
           'run_lib.evaluate restores it (EMA weights); the draws: t = rand(B) (T - 1e-5) + 1e-5 '
           'or labels = randint(0, N, (B,)), then randn_like(batch).')
  return arrays, dict(checkpoint_case=folder, setup=setup, notes=notes)


def worker(case, repo, published, out):
  torch.set_num_threads(1)
  if case in EDM_CASES:    # NVlabs/edm, or Newbeeer/stf
    from fixture_edm import import_edm_family  # pylint: disable=import-outside-toplevel
    import_edm_family(repo)
    arrays, info = (pfgmpp_case if case == 'pfgmpp' else edm_case)(case, published)
  else:
    import published_fixtures_score_sde as sds  # pylint: disable=import-outside-toplevel
    sds.import_peer(repo)
    arrays, info = score_sde_case(case, published)
  np.savez(os.path.join(out, f'{case}.npz'), **arrays)
  with open(os.path.join(out, f'{case}.json'), 'w') as f:
    json.dump(info, f, indent=1)
  print(f'{case}: loss {arrays["loss"]:.6g}')


def peer_of(case):
  """The flag naming the checkout whose code makes `case`."""
  return OTHER_PEERS.get(case, 'edm' if case in EDM_CASES else 'score_sde')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--edm', help='checkout of NVlabs/edm')
  parser.add_argument('--score_sde', help='checkout of yang-song/score_sde_pytorch')
  parser.add_argument('--stf', help='checkout of Newbeeer/stf')
  parser.add_argument('--patch', help='checkout of Zhendong-Wang/Patch-Diffusion')
  parser.add_argument('--pfgmpp', help='checkout of Newbeeer/pfgmpp')
  parser.add_argument('--published', default='tests/fixtures/published')
  parser.add_argument('--out', default='tests/fixtures/losses')
  parser.add_argument('--cases', default=','.join([*EDM_CASES, *SCORE_SDE_CASES]))
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    peer = peer_of(args.worker)
    worker(args.worker, os.path.abspath(getattr(args, peer)), os.path.abspath(args.published),
           os.path.abspath(args.out))
    return
  os.makedirs(args.out, exist_ok=True)
  for case in args.cases.split(','):
    peer = peer_of(case)
    if not getattr(args, peer):
      parser.error(f'case {case} runs the official code of --{peer}: give its checkout')
    subprocess.run([sys.executable, os.path.abspath(__file__), f'--worker={case}',
                    *[f'--{k}={getattr(args, k)}' for k in ('edm', 'score_sde', 'stf', 'patch',
                                                            'pfgmpp', 'published', 'out')
                      if getattr(args, k)]], check=True)


if __name__ == '__main__':
  main()
