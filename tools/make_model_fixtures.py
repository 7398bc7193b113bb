"""Write tests/fixtures/models_torch.npz: tiny official score_sde nets with random weights, run on
fixed inputs, for the parity test of `models.convert` + our `ncsnpp` / `ddpm` (tests/test_models_parity.py).

Nothing is downloaded here: point --official at a checkout of the official code, e.g.
  git --git-dir=<mirror of yang-song/score_sde_pytorch> archive HEAD | tar x -C /tmp/sdept
Two runs, two interpreters (each replaces only its own `<backend>/...` entries in the file):
  /tmp/torchvenv/bin/python tools/make_model_fixtures.py --backend=torch --official=/tmp/sdept
      (a venv with torch==2.13.0 numpy ml_collections; score_sde_pytorch's CUDA `op` build is
      disabled and its pure-PyTorch FIR path is used)
  python tools/make_model_fixtures.py --backend=flax --official=/tmp/sdejax
      (yang-song/score_sde run under today's JAX/Flax with a `flax.optim` shim; its params are the
      old-style tree `Conv_0`, `ResnetBlockBigGANpp_3`, ... that `convert_flax` must read)
Every weight is randomised (zero-initialised layers included) and rounded to float16 so that it
can be stored as float16 exactly; the test casts back to float32.

Known official bugs worked around here (documented, not copied into the library):
  - score_sde_pytorch `upsample_conv_2d` slices `w[..., ::-1, ::-1]`, which torch rejects; it is
    replaced by the same computation with `torch.flip` (the JAX original is cross-checked by the
    flax cases, which include progressive='residual' with FIR).
  - score_sde_pytorch `DDPM` with conditional=False fails (`modules` undefined); that case is
    covered by the flax backend only.
  - score_sde_pytorch `layerspp.Upsample` (fir=False) calls `F.interpolate(x, size, 'nearest')`,
    which today's torch reads as a scale_factor; the call is redirected to `mode='nearest'`.
"""
import argparse
import json
import os
import sys
import types

import ml_collections
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'tests', 'fixtures', 'models_torch.npz')

BASE_MODEL = dict(
    name='ncsnpp', sigma_min=0.01, sigma_max=50., num_scales=1000, beta_min=0.1, beta_max=20.,
    dropout=0.1, embedding_type='fourier', fourier_scale=16., scale_by_sigma=True,
    normalization='GroupNorm', nonlinearity='swish', nf=8, ch_mult=(1, 2), num_res_blocks=1,
    attn_resolutions=(4,), resamp_with_conv=True, conditional=True, fir=True,
    fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type='biggan', progressive='none',
    progressive_input='residual', progressive_combine='sum', init_scale=0., ema_rate=0.999,
    patch_coords=False)

# case -> (data overrides, model overrides)
TORCH_CASES = {
    'ncsnpp_ve': ({}, {}),
    'ncsnpp_ve_3level': (dict(image_size=16), dict(ch_mult=(1, 2, 2), num_res_blocks=2,
                                                   attn_resolutions=(8,))),
    'biggan_outskip_inskip_cat_positional': (dict(centered=True), dict(
        fir=False, progressive='output_skip', progressive_input='input_skip',
        progressive_combine='cat', embedding_type='positional', scale_by_sigma=False)),
    'biggan_fir_residual_both': ({}, dict(progressive='residual', nonlinearity='elu')),
    'ddpmblock_fir_outskip_inskip_sum': ({}, dict(
        resblock_type='ddpm', progressive='output_skip', progressive_input='input_skip',
        skip_rescale=False)),
    'ddpmpp_positional': (dict(centered=True), dict(
        resblock_type='ddpm', fir=False, progressive_input='none', embedding_type='positional',
        scale_by_sigma=False, nonlinearity='relu')),
    'ddpmblock_nofir_residual_noconv_uncond': ({}, dict(
        resblock_type='ddpm', fir=False, progressive='residual', resamp_with_conv=False,
        conditional=False, embedding_type='positional', nonlinearity='lrelu')),
    'ddpm_sigma': ({}, dict(name='ddpm', nf=32, ch_mult=(1, 1), scale_by_sigma=True,
                            embedding_type='positional')),
}
FLAX_CASES = {
    'ncsnpp_ve': ({}, {}),
    'biggan_fir_residual_both_cat': ({}, dict(progressive='residual', progressive_input='input_skip',
                                              progressive_combine='cat')),
    'ddpmblock_fir_outskip': (dict(centered=True), dict(
        resblock_type='ddpm', progressive='output_skip', embedding_type='positional',
        scale_by_sigma=False)),
    'ddpm_uncond': ({}, dict(name='ddpm', nf=32, ch_mult=(1, 1), conditional=False,
                             scale_by_sigma=False, resamp_with_conv=False)),
}


def make_config(data, model):
  config = ml_collections.ConfigDict()
  config.training = ml_collections.ConfigDict(dict(continuous=True, sde='vesde'))
  config.data = ml_collections.ConfigDict(dict(image_size=8, num_channels=3, centered=False))
  config.data.update(data)
  config.model = ml_collections.ConfigDict(dict(BASE_MODEL, **model))
  return config


def integer_labels(config):
  """Labels must be integer indices where the official net indexes `sigmas` with them."""
  return config.model.name == 'ddpm' and config.model.scale_by_sigma


def make_inputs(config, rng, batch=2):
  size, c = config.data.image_size, config.data.num_channels
  x = rng.uniform(size=(batch, size, size, c)).astype(np.float32)
  if config.data.centered:
    x = 2 * x - 1
  if config.model.embedding_type == 'fourier' and config.model.name == 'ncsnpp':
    labels = np.exp(rng.uniform(np.log(0.01), np.log(50.), size=batch))
  elif integer_labels(config):
    labels = rng.integers(0, config.model.num_scales, size=batch).astype(np.float64)
  else:
    labels = rng.uniform(0, 999, size=batch)
  return x, labels.astype(np.float32)


def random_weight(rng, name, shape, fan_in, fourier_scale):
  """Random values (float16-exact) for every leaf, so that no path is switched off."""
  leaf = name.split('.')[-1].split('/')[-1]
  if len(shape) >= 2:
    v = rng.standard_normal(shape) / np.sqrt(fan_in)
  elif leaf == 'W':                      # Fourier features
    v = rng.standard_normal(shape) * fourier_scale
  elif leaf in ('scale', 'weight'):      # GroupNorm scale
    v = 1 + 0.2 * rng.standard_normal(shape)
  else:
    v = 0.2 * rng.standard_normal(shape)
  return v.astype(np.float16)


# --- PyTorch (score_sde_pytorch) --------------------------------------------------------------

def torch_modules(official):
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  import torch.utils.cpp_extension  # pylint: disable=import-outside-toplevel
  torch.utils.cpp_extension.load = lambda *a, **k: None  # no CUDA build; pure-PyTorch FIR path
  sys.path.insert(0, official)
  from models import ddpm, layerspp, ncsnpp, up_or_down_sampling as uds  # pylint: disable=import-outside-toplevel

  def upsample_conv_2d(x, w, k=None, factor=2, gain=1):
    """The official fused up-conv, with torch.flip instead of a negative-step slice."""
    kernel = uds._setup_kernel(k if k is not None else [1] * factor) * (gain * factor ** 2)  # pylint: disable=protected-access
    p = (kernel.shape[0] - factor) - (w.shape[-1] - 1)
    x = F.conv_transpose2d(x, torch.flip(w, [2, 3]).transpose(0, 1), stride=factor)
    return uds.upfirdn2d(x, torch.tensor(kernel), pad=((p + 1) // 2 + factor - 1, p // 2 + 1))

  class PatchedF:  # layerspp.Upsample passes 'nearest' where torch now expects scale_factor
    interpolate = staticmethod(lambda x, size, mode: F.interpolate(x, size=size, mode=mode))

    def __getattr__(self, name):
      return getattr(F, name)

  uds.upsample_conv_2d = upsample_conv_2d
  layerspp.F = PatchedF()
  return torch, {'ncsnpp': ncsnpp.NCSNpp, 'ddpm': ddpm.DDPM}


def run_torch(official, rng):
  torch, classes = torch_modules(official)
  torch.set_num_threads(2)
  out = {}
  for case, (data, model) in TORCH_CASES.items():
    config = make_config(data, model)
    net = classes[config.model.name](config).eval()
    params = {}
    for name, p in net.named_parameters():
      fan_in = p.shape[0] if name.endswith('.W') else int(np.prod(p.shape[1:]))
      v = random_weight(rng, name, tuple(p.shape), fan_in, config.model.fourier_scale)
      p.data = torch.from_numpy(v.astype(np.float32))
      params[name] = v
    x, labels = make_inputs(config, rng)
    t_labels = torch.from_numpy(labels)
    if integer_labels(config):
      t_labels = t_labels.long()
    with torch.no_grad():
      y = net(torch.from_numpy(x).permute(0, 3, 1, 2), t_labels).permute(0, 2, 3, 1)
    out.update(pack('torch', case, config, params, x, labels, y.double().numpy()))
    print(f'torch/{case}: {sum(v.size for v in params.values())} params')
  return out


# --- Flax (score_sde) -------------------------------------------------------------------------

def run_flax(official, rng):
  import flax  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  flax.optim = types.SimpleNamespace(Optimizer=object)  # removed in Flax 0.6; only a type hint
  sys.path.insert(0, official)
  from models import ddpm, ncsnpp  # pylint: disable=import-outside-toplevel
  classes = {'ncsnpp': ncsnpp.NCSNpp, 'ddpm': ddpm.DDPM}
  out = {}
  for case, (data, model) in FLAX_CASES.items():
    config = make_config(data, model)
    net = classes[config.model.name](config=config)
    x, labels = make_inputs(config, rng)
    key = jax.random.PRNGKey(0)
    shapes = net.init({'params': key, 'dropout': key}, x, labels, train=False)['params']
    flat = flax.traverse_util.flatten_dict(shapes, sep='/')
    params = {}
    for name, p in flat.items():
      fan_in = int(np.prod(p.shape[:-1])) if p.ndim > 1 else 1
      params[name] = random_weight(rng, name, p.shape, fan_in, config.model.fourier_scale)
    tree = flax.traverse_util.unflatten_dict({k: v.astype(np.float32) for k, v in params.items()},
                                             sep='/')
    y = net.apply({'params': tree}, x, labels, train=False)
    out.update(pack('flax', case, config, params, x, labels, np.asarray(y, np.float64)))
    print(f'flax/{case}: {sum(v.size for v in params.values())} params')
  return out


def pack(backend, case, config, params, x, labels, y):
  prefix = f'{backend}/{case}'
  arrays = {f'{prefix}/config': np.array(config.to_json()), f'{prefix}/x': x,
            f'{prefix}/labels': labels, f'{prefix}/out': y.astype(np.float32)}
  arrays.update({f'{prefix}/param/{k}': v for k, v in params.items()})
  return arrays


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--backend', choices=('torch', 'flax'), required=True)
  parser.add_argument('--official', required=True, help='checkout of the official repository')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args()
  rng = np.random.default_rng(20210101 if args.backend == 'torch' else 20210102)
  arrays = run_torch(args.official, rng) if args.backend == 'torch' else run_flax(args.official, rng)
  if os.path.exists(args.out):
    with np.load(args.out) as old:
      arrays.update({k: old[k] for k in old.files if not k.startswith(args.backend + '/')})
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  np.savez_compressed(args.out, **arrays)
  print(f'{args.out}: {os.path.getsize(args.out) / 2 ** 20:.2f} MiB, {len(arrays)} arrays')


if __name__ == '__main__':
  main()
