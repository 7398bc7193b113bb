"""Write tests/fixtures/adm_torch.npz: NVlabs/edm's DhariwalUNet (EDM's ADM) run on fixed inputs,
for tests/test_adm.py (our `models.adm` through `foreign.adm`; torch is not needed there).

Usage (torch 2.13 CPU in its own venv; --edm is a checkout of NVlabs/edm, imported from there):
  python tools/make_adm_fixture.py --edm=<NVlabs/edm checkout>   # with torch installed

Cases, each an EDMPrecond(model_type='DhariwalUNet') built as train.py builds it, in eval mode:
  uncond: 16 px, model_channels 32, channel_mult [1, 2], num_blocks 2, attn_resolutions [16, 8]
    (at 16 px the 32 channels give 0 heads, so EDM builds no attention there; 1 head at 8 px).
  cond:   label_dim 10, augment_dim 9, label_dropout 0.1, model_channels 32, channel_mult [1, 4],
    num_blocks 1, attn_resolutions [8] (2 heads of 64 channels at 8 px).
Stored per case: `_init_kwargs` (JSON), the state dict's names and shapes with the seed that
`fill_weights` draws the values from (every parameter, EDM's zero-initialised convs included;
the test regenerates them), the resample_filter buffers as they are, NHWC inputs and the raw
network output F(x; c_noise, class, augment) computed in float64 ('out'; for cond also without
augment labels, 'out_noaug'), and for cond the wrapped D(x; σ) in float32 ('denoised').
`official/num_params`: sum(p.numel() for p in net.parameters()) of the published ImageNet-64
network (README: --cond=1 --arch=adm --dropout=0.10 --augment=0 --fp16=1, so no augment_dim),
built on torch's meta device (nothing is allocated); `official/kwargs`: its `_init_kwargs`.
"""
import argparse
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'tests', 'fixtures', 'adm_torch.npz')
BATCH = 3
SIGMAS = (0.02, 0.7, 30.)   # c_noise = ln(σ)/4 (Karras+22 Table 1) spans the trained range
CASES = {
    'uncond': dict(img_resolution=16, img_channels=3, label_dim=0, model_type='DhariwalUNet',
                   model_channels=32, channel_mult=[1, 2], num_blocks=2, attn_resolutions=[16, 8],
                   dropout=0.1),
    'cond': dict(img_resolution=16, img_channels=3, label_dim=10, augment_dim=9,
                 model_type='DhariwalUNet', model_channels=32, channel_mult=[1, 4],
                 channel_mult_emb=4, num_blocks=1, attn_resolutions=[8], dropout=0.1,
                 label_dropout=0.1),
}
OFFICIAL = dict(model_type='DhariwalUNet', model_channels=192, channel_mult=[1, 2, 3, 4],
                dropout=0.1, use_fp16=True, img_resolution=64, img_channels=3, label_dim=1000)


def fill_weights(shapes, seed):
  """Deterministic float32 weights {name: array} for {name: shape}; tests regenerate them.

  Names are visited in sorted order with one NumPy PCG64 stream: matrices and conv kernels
  ('weight', ndim >= 2) ~ N(0, 1/fan_in), GroupNorm scales ('weight', ndim 1) ~ 1 + 0.2·N,
  biases ~ 0.1·N.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for name in sorted(shapes):
    shape = tuple(shapes[name])
    leaf = name.rsplit('.', 1)[-1]
    z = rng.standard_normal(shape)
    if leaf == 'weight' and len(shape) >= 2:
      v = z / np.sqrt(np.prod(shape[1:]))
    elif leaf == 'weight':
      v = 1. + 0.2 * z
    elif leaf == 'bias':
      v = 0.1 * z
    else:
      raise ValueError(f'no rule for weight {name!r} {shape}')
    out[name] = v.astype(np.float32)
  return out


def _inputs(kwargs, seed):
  """NHWC x ~ N(0, 1), c_noise of SIGMAS, one-hot classes (the last row none), augment labels."""
  rng = np.random.default_rng(seed)
  size, channels = kwargs['img_resolution'], kwargs['img_channels']
  x = rng.standard_normal((BATCH, size, size, channels)).astype(np.float32)
  classes = np.zeros((BATCH, kwargs['label_dim']), np.float32)
  if kwargs['label_dim']:
    classes[np.arange(BATCH - 1), rng.integers(0, kwargs['label_dim'], BATCH - 1)] = 1.
  augment = rng.standard_normal((BATCH, kwargs.get('augment_dim', 0))).astype(np.float32)
  return x, np.array(SIGMAS, np.float32), classes, augment


def _case(torch, networks, name, kwargs, seed):
  """The fixture entries of one case."""
  net = networks.EDMPrecond(**kwargs).eval()
  params = dict(net.model.named_parameters())
  shapes = {k: list(v.shape) for k, v in params.items()}
  state = fill_weights(shapes, seed)
  buffers = {k: v.numpy() for k, v in net.model.state_dict().items() if k not in params}
  net.model.load_state_dict({**{k: torch.from_numpy(v) for k, v in state.items()},
                             **{k: torch.from_numpy(v) for k, v in buffers.items()}})
  x, sigma, classes, augment = _inputs(kwargs, seed + 100)
  nchw = torch.from_numpy(x.transpose(0, 3, 1, 2))
  class_t = torch.from_numpy(classes) if kwargs['label_dim'] else None
  kwargs_json = json.dumps(net._init_kwargs)   # pylint: disable=protected-access
  out = {f'{name}/kwargs': np.array(kwargs_json),
         f'{name}/weights': np.array(json.dumps({'seed': seed, 'shapes': shapes})),
         f'{name}/x': x, f'{name}/sigma': sigma, f'{name}/class_labels': classes,
         f'{name}/augment_labels': augment}
  out.update({f'{name}/buffer/{k}': v for k, v in buffers.items()})
  nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)   # noqa: E731
  with torch.no_grad():
    if kwargs['label_dim']:
      out[f'{name}/denoised'] = nhwc(net(nchw, torch.from_numpy(sigma), class_t))
    model = net.model.double()
    c_noise = torch.from_numpy(sigma).double().log() / 4   # EDMPrecond's c_noise
    aug = torch.from_numpy(augment).double() if kwargs.get('augment_dim') else None
    dbl = class_t.double() if class_t is not None else None
    out[f'{name}/out'] = nhwc(model(nchw.double(), c_noise, dbl, aug))
    if aug is not None:
      out[f'{name}/out_noaug'] = nhwc(model(nchw.double(), c_noise, dbl, None))
  print(f'{name}: {sum(int(np.prod(s)) for s in shapes.values())} params, '
        f'|out| max {np.abs(out[f"{name}/out"]).max():.3f}')
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--edm', required=True, help='checkout of NVlabs/edm')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.edm))
  import torch  # pylint: disable=import-outside-toplevel
  from training import networks  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  out = {}
  for seed, (name, kwargs) in enumerate(CASES.items()):
    out.update(_case(torch, networks, name, kwargs, seed))
  with torch.device('meta'):
    official = networks.EDMPrecond(**OFFICIAL)
  out['official/num_params'] = np.array(sum(p.numel() for p in official.parameters()))
  official_kwargs = official._init_kwargs   # pylint: disable=protected-access
  out['official/kwargs'] = np.array(json.dumps(official_kwargs))
  print(f'official ImageNet-64 ADM: {int(out["official/num_params"])} params')
  np.savez(args.out, **out)
  print(f'wrote {args.out} ({os.path.getsize(args.out)} bytes)')


if __name__ == '__main__':
  main()
