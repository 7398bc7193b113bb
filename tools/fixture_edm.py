"""NVlabs/edm-family helpers of the published-checkpoint fixture makers (make_published_fixtures.py,
published_fixtures_baseline.py): the small networks, train.py's and training_loop.py's way of
building and saving them, generate.py's per-seed generators, run inside one peer's interpreter
(PEER: the modules of the one peer this interpreter imported)."""
import contextlib
import copy
import io
import os
import pickle
import sys
import types

import torch

from fixture_common import SEEDS, randomize, stub

RES = 16                       # img_resolution of the EDM-family nets
CLASS = 3                      # --class=3 of the class-conditional cases
LR = 10e-4                     # train.py --lr default
SMALL = dict(model_channels=8, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])
ADM_SMALL = dict(model_channels=16, channel_mult=[1, 4], num_blocks=1, attn_resolutions=[8])
ARCH = {                       # train.py --arch presets (identical in all four EDM-family repos)
    'ddpmpp': dict(model_type='SongUNet', embedding_type='positional', encoder_type='standard',
                   decoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1], **SMALL),
    'ncsnpp': dict(model_type='SongUNet', embedding_type='fourier', encoder_type='residual',
                   decoder_type='standard', channel_mult_noise=2, resample_filter=[1, 3, 3, 1],
                   **SMALL),
    'adm': dict(model_type='DhariwalUNet', **ADM_SMALL),
}
AUGMENT = dict(class_name='training.augment.AugmentPipe', p=0.12, xflip=1e8, yflip=1, scale=1,
               rotate_frac=1, aniso=1, translate_frac=1)          # train.py --augment=0.12
EDM_SAMPLER = {'sampling.method': 'edm', 'sampling.steps': 18, 'sampling.solver': 'heun',
               'sampling.sigma_min': 0.002, 'sampling.sigma_max': 80.0, 'sampling.rho': 7.0,
               'sampling.S_churn': 0.0, 'sampling.float64': True, 'sampling.eps_scaler': 1.0,
               'sampling.eps_scaler_k': 0.0, 'sampling.guidance': 1.0, 'training.sde': 'edm',
               'data.image_size': RES, 'data.num_channels': 3, 'data.centered': True}
EDM_NOTES = ('x_T = latents * sigma_max; the sampler runs in float64, the net in float32 (its '
             'precond casts x to float32; D goes back to float64). Latents: the per-seed CPU draws '
             'of generate.py --seeds=0-3 (it draws on CUDA, other streams), no uint8 rounding.')
PEER = types.SimpleNamespace()  # the modules of the one peer this interpreter imported


def import_edm_family(repo):
  """dnnlib and the peer's generate.py (its sampler) from `repo`."""
  stub('torchvision')
  stub('torchvision.utils', make_grid=None, save_image=None)   # pfgmpp: --save_images only
  stub('diffusers', AutoencoderKL=None)                          # Patch-Diffusion: --on_latents only
  sys.path.insert(0, repo)
  import dnnlib  # pylint: disable=import-outside-toplevel
  import generate  # pylint: disable=import-outside-toplevel
  PEER.dnnlib, PEER.generate = dnnlib, generate


def rnd():
  """generate.py's per-seed generators (StackedRandomGenerator), on the CPU."""
  return PEER.generate.StackedRandomGenerator(torch.device('cpu'), SEEDS)


def one_hot(label_dim):
  return torch.eye(label_dim)[[CLASS] * len(SEEDS)] if label_dim else None   # --class=3


def dataset_kwargs(res, use_labels):
  """train.py's dataset_kwargs, made explicit as it does (resolution, max_size)."""
  return dict(class_name='training.dataset.ImageFolderDataset', path=f'datasets/fixture-{res}x{res}.zip',
              use_labels=use_labels, xflip=False, cache=True, resolution=res, max_size=len(SEEDS))


def build_net(precond, arch, label_dim, augment, interface=None, dropout=0.13):
  """train.py's network_kwargs + the loop's interface_kwargs, built as the loop builds them."""
  kwargs = dict(class_name=precond, **ARCH[arch], dropout=dropout, use_fp16=False)
  if augment:
    kwargs['augment_dim'] = 9
  interface = interface or dict(img_resolution=RES, img_channels=3, label_dim=label_dim)
  torch.manual_seed(0)
  net = PEER.dnnlib.util.construct_class_by_name(**kwargs, **interface)
  return net.train().requires_grad_(True), dict(kwargs, **interface)


def save_snapshot(path, ema, loss_fn, augment_pipe, data_kwargs):
  """training_loop.py's network-snapshot: modules deep-copied to eval / no grad / CPU, pickled."""
  data = dict(ema=ema, loss_fn=loss_fn, augment_pipe=augment_pipe, dataset_kwargs=dict(data_kwargs))
  for key, value in data.items():
    if isinstance(value, torch.nn.Module):
      data[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
  with open(path, 'wb') as f:
    pickle.dump(data, f)


def first_iteration(net, loss_fn, augment_pipe, label_dim, **loss_kwargs):
  """training_loop.py's iteration at cur_nimg = 0 on 4 random images: its lr ramp-up gives lr 0,
  its EMA ramp-up β = 0 (ema = net after the step). Returns (ema, optimizer, cur_nimg)."""
  batch = len(SEEDS)
  ema = copy.deepcopy(net).eval().requires_grad_(False)
  optimizer = torch.optim.Adam(net.parameters(), lr=LR, betas=[0.9, 0.999], eps=1e-8)
  gen = torch.Generator().manual_seed(1)
  images = torch.randint(0, 256, [batch, 3, RES, RES], generator=gen).to(torch.float32) / 127.5 - 1
  labels = torch.zeros([batch, label_dim])
  torch.manual_seed(2)
  optimizer.zero_grad(set_to_none=True)
  loss = loss_fn(net=net, images=images, labels=labels, augment_pipe=augment_pipe, **loss_kwargs)
  loss.sum().mul(1 / batch).backward()
  for group in optimizer.param_groups:
    group['lr'] = LR * min(0 / max(10000 * 1000, 1e-8), 1)
  for p in net.parameters():
    if p.grad is not None:
      torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
  optimizer.step()
  beta = 0.5 ** (batch / max(min(500 * 1000, 0 * 0.05), 1e-8))
  with torch.no_grad():
    for p_ema, p_net in zip(ema.parameters(), net.parameters()):
      p_ema.copy_(p_net.detach().lerp(p_ema, beta))
  return ema, optimizer, batch


def quiet(fn, *args, **kwargs):
  """Run without the samplers' per-step prints (EDM-ES's dist.print0)."""
  with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
    return fn(*args, **kwargs)


# The official loaders below run code the file names: only on the files this tool just wrote.
def load_snapshot(case_dir):
  """generate.py: pickle.load(f)['ema']."""
  with open(os.path.join(case_dir, 'network-snapshot-000000.pkl'), 'rb') as f:
    return pickle.load(f)['ema']


def snapshot_case(out, seed, arch, label_dim=0, interface=None, dropout=0.13,
                  precond='training.networks.EDMPrecond', loss='training.loss.EDMLoss',
                  out_gain=1.):
  """A random net (no augmentation) in network-snapshot-000000.pkl; (net, latents, kwargs).
  loss None: no loss_fn in the file (EDM has no iDDPM loss); out_gain scales the output conv."""
  net, kwargs = build_net(precond, arch, label_dim, False, interface, dropout)
  randomize(net, seed, out_gain)
  loss_fn = PEER.dnnlib.util.construct_class_by_name(class_name=loss) if loss else None
  save_snapshot(os.path.join(out, 'network-snapshot-000000.pkl'), net, loss_fn, None,
                dataset_kwargs(RES, bool(label_dim)))
  return net.eval(), rnd().randn([len(SEEDS), 3, RES, RES]), kwargs
