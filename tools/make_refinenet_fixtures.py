"""Reference outputs of the official NCSN / NCSNv2 code → tests/fixtures/refinenet_torch.npz.

tests/test_refinenet_parity.py converts the stored official weights with
models/convert_refinenet.py, runs our Flax model and compares (no torch needed there).

Sources (read from local checkouts made with the `fetch` tool; nothing is copied into the repo):
- PyTorch, the code that trained the published checkpoints, run as is:
    ermongroup/ncsn   models/cond_refinenet_dilated.py CondRefineNetDilated → `ncsn_torch`
    ermongroup/ncsnv2 models/ncsnv2.py NCSNv2 / NCSNv2Deeper / NCSNv2Deepest
                      → `ncsnv2_64_torch` / `ncsnv2_128` / `ncsnv2_256`
- yang-song/score_sde_pytorch, cross-checked only: its NCSN/NCSNv2 cannot run as released
  (`ncsn_conv3x3(bias=False)` scales a None bias; dilated 3×3 convs get padding 1 instead of
  the dilation, so the residual shapes disagree; NCSN builds unconditional norms into conditional
  blocks and compares `dilation=None > 1`). With those four fixed by monkeypatching, loading the
  same state dict into it must give the ermongroup output (asserted), so its checkpoints use the
  same converter.
- yang-song/score_sde (Flax) → `ncsn`, `ncsnv2_64`, `ncsnv2_128`, `ncsnv2_256` (score_sde's
  layout: refine3 of the 64 px body has 2nf channels). Run from a copy in a temporary directory
  with a stub `models/utils.py` and three patches: bias initializers accept the `dtype`
  argument of current Flax; NCSN's `self.normalization(h, y)` becomes
  `self.normalization()(h, y)` and `config.model.num_classes` is set to `num_scales` (its two
  bugs); the variance of the channel means in InstanceNorm++ takes ddof=1, the PyTorch
  numerics we follow. These cases use
  `interpolation='nearest_neighbor'` because score_sde's bilinear resize is half-pixel while the
  PyTorch code (and ours) aligns corners. They check the Flax converter's naming exactly.

Weights: every parameter, normalizations included, is drawn by `fill_weights` from a seed
(γ, α ~ 1 + 0.2·N, β ~ 0.2·N, so no layer is the identity); the file stores only the seed and
the official names and shapes, and the test regenerates the same float32 values. References
are computed in float64 from float32 weights and inputs. Tiny models: nf 8, 16–32 px.

Usage (torch in its own venv: pip install torch==2.13.0, the CPU wheel):
  python tools/make_refinenet_fixtures.py --torch_python /tmp/torchvenv_rn/bin/python \
      --ncsn DIR --ncsnv2 DIR --score_sde_pytorch DIR --score_sde DIR \
      --out tests/fixtures/refinenet_torch.npz
where each DIR is a checkout (e.g. `git --git-dir=MIRROR archive HEAD | tar -x -C DIR`).
"""
import argparse
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

BATCH = 3
# case: (layout class, nf, image size, num_scales, sigma_max)
TORCH_CASES = {
    'ncsn_torch': ('CondRefineNetDilated', 8, 16, 5, 1.),
    'ncsnv2_64_torch': ('NCSNv2', 8, 16, 6, 50.),
    'ncsnv2_128': ('NCSNv2Deeper', 8, 16, 6, 50.),
    'ncsnv2_256': ('NCSNv2Deepest', 8, 32, 6, 50.),
}
FLAX_CASES = {
    'ncsn': ('NCSN', 8, 16, 5, 1.),
    'ncsnv2_64': ('NCSNv2', 8, 16, 6, 50.),
    'ncsnv2_128': ('NCSNv2_128', 8, 16, 6, 50.),
    'ncsnv2_256': ('NCSNv2_256', 8, 32, 6, 50.),
}


def our_config(name, nf, size, num_scales, sigma_max, interpolation='bilinear'):
  """The scoreflow config fields of one case (stored as JSON beside the arrays)."""
  return {'data': {'image_size': size, 'num_channels': 3, 'centered': False},
          'model': {'name': name, 'nf': nf, 'normalization': 'InstanceNorm++',
                    'nonlinearity': 'elu', 'sigma_min': 0.01, 'sigma_max': sigma_max,
                    'num_scales': num_scales, 'scale_by_sigma': name.startswith('ncsnv2'),
                    'interpolation': interpolation, 'patch_coords': False}}


def _ns(**groups):
  return types.SimpleNamespace(**{k: types.SimpleNamespace(**v) for k, v in groups.items()})


def _load_package(alias, directory):
  """Import `directory` (a package with relative imports) under the module name `alias`."""
  spec = importlib.util.spec_from_file_location(
      alias, os.path.join(directory, '__init__.py'), submodule_search_locations=[directory])
  module = importlib.util.module_from_spec(spec)
  sys.modules[alias] = module
  spec.loader.exec_module(module)
  return module


def fill_weights(shapes, seed):
  """Deterministic weights {name: float32 array} for {name: shape}; tests regenerate them.

  Names are visited in sorted order with one NumPy PCG64 stream. Conv weights (PyTorch
  [O, I, kh, kw] 'weight' or Flax [kh, kw, I, O] 'kernel') ~ N(0, 1/fan_in); biases ~ 0.1·N;
  norm scales γ, α ~ 1 + 0.2·N, shifts β ~ 0.2·N; embedding rows [γ | α | β] alike.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for name in sorted(shapes):
    shape = tuple(shapes[name])
    leaf = name.replace('/', '.').rsplit('.', 1)[-1]
    z = rng.standard_normal(shape)
    if leaf in ('weight', 'kernel') and len(shape) == 4:
      fan_in = np.prod(shape[1:]) if leaf == 'weight' else np.prod(shape[:3])
      v = z / np.sqrt(fan_in)
    elif leaf in ('weight', 'embedding') and len(shape) == 2:   # [num_classes, 3C]
      v = 0.2 * z
      v[:, :2 * shape[1] // 3] += 1.
    elif leaf in ('alpha', 'gamma'):
      v = 1. + 0.2 * z
    elif leaf in ('beta', 'bias'):
      v = (0.2 if leaf == 'beta' else 0.1) * z
    else:
      raise ValueError(f'no rule for weight {name!r} {shape}')
    out[name] = v.astype(np.float32)
  return out


def _torch_part(args):
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  cond = _load_file('erm_ncsn', os.path.join(args.ncsn, 'models', 'cond_refinenet_dilated.py'))
  _load_package('erm_ncsnv2', os.path.join(args.ncsnv2, 'models'))
  erm = importlib.import_module('erm_ncsnv2.ncsnv2')
  sspt = _load_score_sde_pytorch(args.score_sde_pytorch, torch)
  out = {}
  for i, (case, (cls, nf, size, n, smax)) in enumerate(TORCH_CASES.items()):
    torch.manual_seed(i)   # inputs and labels
    cfg = _ns(data=dict(channels=3, image_size=size, logit_transform=False, rescaled=False),
              model=dict(ngf=nf, num_classes=n, normalization='InstanceNorm++', nonlinearity='elu',
                         sigma_begin=smax, sigma_end=0.01, sigma_dist='geometric'))
    cfg.device = 'cpu'
    model = (cond if cls == 'CondRefineNetDilated' else erm).__dict__[cls](cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items() if k != 'sigmas'}
    state = fill_weights(shapes, seed=i)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    x = torch.rand(BATCH, 3, size, size)
    labels = torch.randint(0, n, (BATCH,))
    torch.set_default_dtype(torch.float64)   # the official MSF sums start from torch.zeros
    with torch.no_grad():
      ref = model.double()(x.double(), labels).numpy()
      twin = _score_sde_pytorch_twin(sspt, cls, nf, size, n, smax, state, torch)
      got = twin(x.double(), labels).numpy()
    torch.set_default_dtype(torch.float32)
    err = np.abs(got - ref).max() / np.abs(ref).max()   # ermongroup rounds σ to float32
    assert err < 1e-6, f'score_sde_pytorch differs from ermongroup on {case}: {err}'
    print(f'{case}: {sum(np.prod(v) for v in shapes.values())} params; score_sde_pytorch agrees')
    conf = our_config(case, nf, size, n, smax)
    _store(out, f'torch.{case}', conf, x.numpy().transpose(0, 2, 3, 1), labels.numpy(),
           ref.transpose(0, 2, 3, 1), {'module.' + k: v for k, v in shapes.items()}, i)
  return out


def _load_file(alias, path):
  spec = importlib.util.spec_from_file_location(alias, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _load_score_sde_pytorch(root, torch):
  """score_sde_pytorch's models/ncsnv2.py with its conv bugs monkeypatched (see docstring)."""
  sys.path.insert(0, root)   # for its top-level `sde_lib`
  _load_package('sspt_models', os.path.join(root, 'models'))
  layers = importlib.import_module('sspt_models.layers')
  ncsnv2 = importlib.import_module('sspt_models.ncsnv2')

  def conv3x3(in_planes, out_planes, stride=1, bias=True, dilation=1, init_scale=1., padding=1):
    del init_scale, padding
    return torch.nn.Conv2d(in_planes, out_planes, 3, stride=stride, bias=bias,
                           dilation=dilation, padding=dilation)
  layers.ncsn_conv3x3 = conv3x3
  ncsnv2.ncsn_conv3x3 = ncsnv2.conv3x3 = conv3x3
  ncsnv2.ConditionalResidualBlock = functools.partial(layers.ConditionalResidualBlock, dilation=1)
  return ncsnv2


def _score_sde_pytorch_twin(ncsnv2, cls, nf, size, n, smax, state, torch):
  """score_sde_pytorch's model of the same layout, loaded with `state`, in float64."""
  norm = sys.modules['sspt_models.normalization']
  if cls == 'CondRefineNetDilated':   # its NCSN must get conditional norms
    ncsnv2.get_normalization = lambda config: norm.ConditionalInstanceNorm2dPlus
  else:
    ncsnv2.get_normalization = norm.get_normalization
  name = {'CondRefineNetDilated': 'NCSN', 'NCSNv2': 'NCSNv2', 'NCSNv2Deeper': 'NCSNv2_128',
          'NCSNv2Deepest': 'NCSNv2_256'}[cls]
  cfg = _ns(data=dict(channels=3, image_size=size, centered=False),
            model=dict(nf=nf, normalization='InstanceNorm++', nonlinearity='elu',
                       sigma_min=0.01, sigma_max=smax, num_scales=n))
  model = getattr(ncsnv2, name)(cfg)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
  return model.double()


def _store(out, case, conf, x, labels, ref, shapes, seed):
  """One case: config, inputs, reference output, weight shapes and the `fill_weights` seed."""
  out[f'{case}/config'] = np.array(json.dumps(conf))
  out[f'{case}/weights'] = np.array(json.dumps({'seed': seed, 'shapes': shapes}))
  out[f'{case}/x'] = x.astype(np.float32)
  out[f'{case}/labels'] = labels.astype(np.int32)
  out[f'{case}/out'] = ref.astype(np.float64)


_FLAX_PATCHES = {
    'layers.py': [('bias_init = lambda key, shape: ',
                   'bias_init = lambda key, shape, dtype=None: ', 2),
                  ('h = self.normalization(h, y)', 'h = self.normalization()(h, y)', 1)],
    'normalization.py': [('v = jnp.var(means, axis=-1, keepdims=True)',
                          'v = jnp.var(means, axis=-1, keepdims=True, ddof=1)', 2)],
}
_STUB_UTILS = '''import numpy as np
_MODELS = {}
def register_model(cls=None, *, name=None):
  def wrap(c):
    _MODELS[name] = c
    return c
  return wrap if cls is None else wrap(cls)
def get_sigmas(config):
  return np.exp(np.linspace(np.log(config.model.sigma_max), np.log(config.model.sigma_min),
                            config.model.num_scales))
'''


def _official_flax_package(score_sde, tmp):
  pkg = os.path.join(tmp, 'models')
  os.makedirs(pkg)
  for name in ('layers.py', 'normalization.py', 'ncsnv2.py'):
    with open(os.path.join(score_sde, 'models', name)) as f:
      text = f.read()
    for old, new, count in _FLAX_PATCHES.get(name, []):
      assert text.count(old) == count, (name, old)
      text = text.replace(old, new)
    with open(os.path.join(pkg, name), 'w') as f:
      f.write(text)
  with open(os.path.join(pkg, 'utils.py'), 'w') as f:
    f.write(_STUB_UTILS)
  open(os.path.join(pkg, '__init__.py'), 'w').close()
  return _load_package('sd_flax_models', pkg)


def _flax_part(args):
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update('jax_enable_x64', True)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  tmp = tempfile.mkdtemp()
  try:
    _official_flax_package(args.score_sde, tmp)
    ncsnv2 = importlib.import_module('sd_flax_models.ncsnv2')
    out = {}
    for i, (case, (cls, nf, size, n, smax)) in enumerate(FLAX_CASES.items()):
      conf = our_config(case, nf, size, n, smax, interpolation='nearest_neighbor')
      cfg = ml_collections.ConfigDict(conf)
      cfg.model.num_classes = n
      model = getattr(ncsnv2, cls)(config=cfg)
      rng = np.random.default_rng(200 + i)
      x = rng.uniform(size=(BATCH, size, size, 3)).astype(np.float32)
      labels = rng.integers(0, n, BATCH).astype(np.int32)
      shapes = model.init(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(labels))['params']
      shapes = {'/'.join(k): list(v.shape)
                for k, v in traverse_util.flatten_dict(shapes).items()}
      seed = 100 + i
      params = traverse_util.unflatten_dict(
          {tuple(k.split('/')): jnp.asarray(v, jnp.float64)
           for k, v in fill_weights(shapes, seed).items()})
      ref = np.asarray(model.apply({'params': params}, jnp.asarray(x, jnp.float64),
                                   jnp.asarray(labels), train=False))
      print(f'{case}: {sum(np.prod(v) for v in shapes.values())} params (score_sde Flax)')
      _store(out, f'flax.{case}', conf, x, labels, ref, shapes, seed)
    return out
  finally:
    shutil.rmtree(tmp)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--part', choices=('all', 'torch', 'flax'), default='all')
  parser.add_argument('--torch_python', default=sys.executable)
  for repo in ('ncsn', 'ncsnv2', 'score_sde_pytorch', 'score_sde'):
    parser.add_argument(f'--{repo}', required=True, help=f'checkout of the official {repo}')
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  if args.part == 'torch':
    np.savez(args.out, **_torch_part(args))
  elif args.part == 'flax':
    np.savez(args.out, **_flax_part(args))
  else:
    merged = {}
    with tempfile.TemporaryDirectory() as tmp:
      for part, python in (('torch', args.torch_python), ('flax', sys.executable)):
        path = os.path.join(tmp, f'{part}.npz')
        argv = [a for a in sys.argv[1:] if not a.startswith('--part')]
        argv[argv.index('--out') + 1] = path
        subprocess.run([python, os.path.abspath(__file__), '--part', part] + argv, check=True)
        with np.load(path) as f:
          merged.update({k: f[k] for k in f.files})
    np.savez_compressed(args.out, **merged)
    print(f'wrote {args.out}: {os.path.getsize(args.out) / 1e6:.2f} MB, {len(merged)} arrays')


if __name__ == '__main__':
  main()
