"""Reference outputs of NVlabs/edm's SongUNet (DDPM++, NCSN++): tests/fixtures/songunet_torch.npz.

tests/test_songunet_convert.py lays the stored SongUNet state dicts onto our `ncsnpp` with
foreign/songunet.py and compares its outputs with these (no torch needed there).

Sources (local checkouts, imported from there at run time; nothing is copied into the repo):
  --edm    NVlabs/edm                    training/networks.py SongUNet, EDMPrecond
  --patch  Zhendong-Wang/Patch-Diffusion training/networks.py SongUNet (+ coordinate channels),
                                         Patch_EDMPrecond
  --pfgmpp / --stf (optional)  Newbeeer/pfgmpp, Newbeeer/stf: their SongUNet, given the state dict
           of every EDM net here, must return the same output (asserted; nothing stored).

Nets (16 px, tiny): each is built through its preconditioner, as the training scripts do, so the
stored kwargs are the merged `_init_kwargs` a checkpoint holds. Every parameter is drawn from a
seed (weights N(0, 1/fan_in), biases 0.2·N, GroupNorm γ 1 + 0.2·N, β 0.2·N: EDM's zero-init
convolutions are no longer zero) and rounded to float16, stored exactly; buffers (Fourier
frequencies, resampling filters) keep EDM's values. Per net: `<net>/sd/<name>`, `<net>/kwargs`
(JSON), NCHW inputs `x`, `noise_labels`, `class_labels`, `augment_labels` and the eval-mode
network output `out`; for `ncsnpp` and `patch` also `precond/{x, sigma, pos, class_labels, D}`, the
preconditioned D(x; σ) (Patch_EDMPrecond on an 8×8 crop with its coordinates).

Usage (torch installed): python tools/make_songunet_fixture.py --edm=DIR --patch=DIR
"""
import argparse
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'tests', 'fixtures', 'songunet_torch.npz')
PEER_PACKAGES = ('training', 'torch_utils', 'dnnlib')
BATCH = 3

SMALL = dict(img_resolution=16, model_type='SongUNet', model_channels=8, channel_mult=[1, 2],
             num_blocks=1, attn_resolutions=[8], dropout=0.13)
# net -> (source, precond class, kwargs). ddpmpp / ncsnpp: EDM train.py's --arch presets (smaller);
# cond_skip and patch cover SongUNet's other options: skip encoder and decoder with FIR, and a
# residual encoder with the [1, 1] filter (our fir=True with a 2-tap kernel).
NETS = {
    'ddpmpp': ('edm', 'EDMPrecond', dict(
        SMALL, img_channels=3, model_channels=12, num_blocks=2, embedding_type='positional',
        encoder_type='standard', decoder_type='standard', channel_mult_noise=1,
        resample_filter=[1, 1])),
    'ncsnpp': ('edm', 'EDMPrecond', dict(
        SMALL, img_channels=3, embedding_type='fourier', encoder_type='residual',
        decoder_type='standard', channel_mult_noise=2, resample_filter=[1, 3, 3, 1])),
    'cond_skip': ('edm', 'EDMPrecond', dict(
        SMALL, img_channels=3, label_dim=10, augment_dim=9, channel_mult=[1, 2, 2],
        embedding_type='positional', encoder_type='skip', decoder_type='skip',
        channel_mult_noise=1, resample_filter=[1, 3, 3, 1], label_dropout=0.1)),
    'patch': ('patch', 'Patch_EDMPrecond', dict(
        SMALL, img_channels=3 + 2, out_channels=3, embedding_type='positional',
        encoder_type='residual', decoder_type='standard', channel_mult_noise=1,
        resample_filter=[1, 1])),
}
PRECOND = ('ncsnpp', 'patch')
ROOTS = []   # peer checkouts put on sys.path so far


def import_networks(root):
  """`training.networks` of the checkout at `root` (its packages replace any imported before)."""
  for name in list(sys.modules):
    if name.split('.')[0] in PEER_PACKAGES:
      del sys.modules[name]
  sys.path = [root] + [p for p in sys.path if p not in ROOTS]
  ROOTS.append(root)
  import training.networks  # pylint: disable=import-outside-toplevel
  return training.networks


def randomize(torch, networks, model, seed):
  """Every parameter from `seed` (see the module docstring), rounded to float16."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      weight, bias = getattr(module, 'weight', None), getattr(module, 'bias', None)
      if isinstance(module, networks.GroupNorm):
        weight.copy_(1 + 0.2 * torch.randn(weight.shape, generator=gen))
      elif isinstance(weight, torch.nn.Parameter):
        fan_in = int(np.prod(weight.shape[1:]))
        weight.copy_(torch.randn(weight.shape, generator=gen) / np.sqrt(fan_in))
      if isinstance(bias, torch.nn.Parameter):
        bias.copy_(0.2 * torch.randn(bias.shape, generator=gen))
    for p in model.parameters():
      p.copy_(p.half().float())


def inputs(torch, kwargs, seed):
  """Fixed NCHW inputs of one net: x, noise labels (¼ ln σ), one-hot classes, augment labels."""
  gen = torch.Generator().manual_seed(1000 + seed)
  res, channels = kwargs['img_resolution'], kwargs['img_channels']
  x = torch.randn([BATCH, channels, res, res], generator=gen)
  sigma = torch.tensor([0.02, 0.7, 30.])
  classes = torch.zeros([BATCH, kwargs.get('label_dim', 0)])
  if classes.shape[1]:
    classes[0, 2] = classes[1, 7] = 1.   # the last row has no class (guidance's null label)
  augment = 0.5 * torch.randn([BATCH, kwargs.get('augment_dim', 0)], generator=gen)
  return dict(x=x, noise_labels=sigma.log() / 4, class_labels=classes, augment_labels=augment)


def run_net(torch, networks, name, seed):
  """(fixture entries, (state dict, x, noise labels, label kwargs, output)) of net `name`."""
  _, precond_cls, kwargs = NETS[name]
  torch.manual_seed(seed)
  net = getattr(networks, precond_cls)(**kwargs).eval()
  randomize(torch, networks, net.model, seed)
  feed = inputs(torch, kwargs, seed)
  unet_kw = dict(class_labels=feed['class_labels'] if kwargs.get('label_dim') else None)
  if kwargs.get('augment_dim'):
    unet_kw['augment_labels'] = feed['augment_labels']
  with torch.no_grad():
    out = net.model(feed['x'], feed['noise_labels'], **unet_kw)
  entries = {f'{name}/{k}': v.numpy() for k, v in feed.items()}
  entries[f'{name}/out'] = out.numpy()
  entries[f'{name}/kwargs'] = np.array(json.dumps(net.init_kwargs))
  sd = {k: v.numpy() for k, v in net.model.state_dict().items()}
  for key, value in sd.items():
    entries[f'{name}/sd/{key}'] = value.astype(np.float16 if key.endswith(('weight', 'bias'))
                                               else np.float32)
  if name in PRECOND:
    entries.update(precond_entries(torch, net, name, kwargs, seed))
  print(f'{name}: {sum(v.size for v in sd.values())} values, |out| max '
        f'{float(out.abs().max()):.3f}')
  return entries, (sd, feed['x'], feed['noise_labels'], unet_kw, out)


def precond_entries(torch, net, name, kwargs, seed):
  """D(x; σ) of the wrapped net; Patch_EDMPrecond on an 8×8 crop with its coordinates."""
  gen = torch.Generator().manual_seed(2000 + seed)
  res, size = kwargs['img_resolution'], 8 if name == 'patch' else kwargs['img_resolution']
  channels = kwargs.get('out_channels', kwargs['img_channels'])
  sigma = torch.tensor([0.003, 0.4, 60.], dtype=torch.float64)
  x = 0.5 * torch.randn([BATCH, channels, size, size], generator=gen, dtype=torch.float64)
  x = x + sigma.reshape(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
  out = {f'{name}/precond/x': x.numpy(), f'{name}/precond/sigma': sigma.numpy()}
  call = {}
  if name == 'patch':   # crop offsets (row i, column j) per image, as patch_loss.py pachify
    i, j = torch.tensor([0, 5, 8]), torch.tensor([8, 2, 0])
    x_pos = (torch.arange(size)[None, None, :] + j[:, None, None]).expand(-1, size, -1)
    y_pos = (torch.arange(size)[None, :, None] + i[:, None, None]).expand(-1, -1, size)
    pos = torch.stack([x_pos, y_pos], 1).float()
    pos = (pos / (res - 1) - 0.5) * 2.
    call['x_pos'] = pos
    out[f'{name}/precond/pos'] = pos.numpy()
  with torch.no_grad():
    out[f'{name}/precond/D'] = net(x, sigma, **call).numpy()
  return out


def check_fork(torch, root, cases):
  """A fork's SongUNet (PFGM++ / STF) must give EDM's outputs from EDM's state dicts."""
  networks = import_networks(root)
  for name, (sd, x, labels, unet_kw, expected) in cases.items():
    kwargs = {k: v for k, v in NETS[name][2].items()
              if k not in ('img_channels', 'model_type')}
    model = networks.SongUNet(in_channels=3, out_channels=3, **kwargs).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.no_grad():
      diff = float((model(x, labels, **unet_kw) - expected).abs().max())
    print(f'{root}: {name} max |Δ| vs EDM {diff:.1e}')
    assert diff == 0., (root, name, diff)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--edm', required=True, help='checkout of NVlabs/edm')
  parser.add_argument('--patch', required=True, help='checkout of Zhendong-Wang/Patch-Diffusion')
  parser.add_argument('--pfgmpp', help='checkout of Newbeeer/pfgmpp (optional cross-check)')
  parser.add_argument('--stf', help='checkout of Newbeeer/stf (optional cross-check)')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  entries, edm_cases = {}, {}
  for source in ('edm', 'patch'):
    networks = import_networks(getattr(args, source))
    for seed, (name, (src, _, _)) in enumerate(NETS.items()):
      if src == source:
        new, case = run_net(torch, networks, name, seed)
        entries.update(new)
        if source == 'edm':
          edm_cases[name] = case
  for root in (args.pfgmpp, args.stf):
    if root:
      check_fork(torch, root, edm_cases)
  np.savez_compressed(args.out, **entries)
  print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)')


if __name__ == '__main__':
  main()
