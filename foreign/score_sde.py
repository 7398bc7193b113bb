"""Load official score_sde checkpoints (PyTorch `.pth` or Flax msgpack) into our parameter trees.

Papers: Song+21, Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (the checkpoints).

Dispatch: `foreign.converters.CONVERTERS` maps `config.model.name` to a `Converter(pytorch=..., flax=...)`; each
function takes the old weights and `config` and returns our `params` dict.
  - PyTorch (yang-song/score_sde_pytorch): a flat state dict `all_modules.{i}.<sub>.<leaf>` (an
    optional `module.` prefix is stripped); `i` counts every module of the official `nn.ModuleList`.
  - Flax (yang-song/score_sde): the old linen tree, auto-named per class in creation order
    (`Conv_0`, `ResnetBlockBigGANpp_3`, `GroupNorm_1`, ...).
For the U-Nets (`ncsnpp`, `ddpm`) the mapping is derived, not tabulated: our model is traced once
(abstractly) and its top-level submodules are listed in call order, which is the official creation
order; each gets its old Flax name from a per-class counter and its PyTorch index from a running
counter. Every leaf of the result is checked against our shapes and every old leaf must be used.
"""
import collections

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from evaluation import unflatten_params
from foreign import score_sde_refinenet  # pylint: disable=unused-import   # registers ncsn*
from foreign import torch_pickle
from foreign.converters import CONVERTERS, Converter, register_converter, strip_prefix
from models import layers, layerspp
from models.utils import get_model


def convert_pytorch(state_dict, config):
  """Our params for `config.model.name` from an official PyTorch state dict (arrays or tensors)."""
  state_dict = {strip_prefix(k): np.asarray(v) for k, v in state_dict.items()}
  return CONVERTERS.get(config.model.name).pytorch(state_dict, config)


def convert_flax(old_params, config):
  """Our params for `config.model.name` from an official score_sde Flax params tree."""
  if set(old_params) == {'params'}:
    old_params = old_params['params']
  return CONVERTERS.get(config.model.name).flax(old_params, config)


def load_pytorch_checkpoint(path, ema=True):
  """State dict {name: np.ndarray} of an official `.pth` (read as data, no torch needed); with
  `ema`, its EMA weights."""
  ckpt = torch_pickle.read(path)
  state = {strip_prefix(k): np.asarray(v) for k, v in dict(ckpt['model']).items()}
  if not ema:
    return state
  return ema_state_dict(state, [np.asarray(p) for p in dict(ckpt['ema'])['shadow_params']])


def ema_state_dict(state, shadow):
  """Lay score_sde_pytorch's EMA `shadow_params` onto the model state dict.

  The shadow list follows the model's *trainable* parameters in order; buffers (`sigmas`) and
  frozen parameters (the Fourier W) are absent from it and are told apart by shape.
  """
  out, j = dict(state), 0
  for key, value in state.items():
    if j < len(shadow) and not key.endswith('sigmas') and shadow[j].shape == value.shape:
      out[key], j = shadow[j], j + 1
  if j != len(shadow):
    raise ValueError(f'only {j} of {len(shadow)} EMA parameters matched the model state dict')
  return out


def recorded_levels(state, config):
  """{config field: value} that the file's `sigmas` buffer fixes (score_sde's get_sigmas: N
  levels geometric from model.sigma_max down to model.sigma_min): σ_max and σ_min where the SDE
  is VE (they are its noise scale), N where the model was trained in discrete time (its labels
  index the levels). Nothing where the state has no such buffer."""
  sigmas = state.get('sigmas')
  if sigmas is None or np.ndim(sigmas) != 1 or not len(sigmas):
    return {}
  out = {}
  if config.training.sde == 'vesde':
    out['model.sigma_max'], out['model.sigma_min'] = (   # exp(log σ) is 49.99999999999999
        float(f'{float(sigmas[0]):.7g}'), float(f'{float(sigmas[-1]):.7g}'))
  if not config.training.continuous:
    out['model.num_scales'] = len(sigmas)
  return out


def load_flax_checkpoint(path, ema=True):
  """Params tree of an official score_sde Flax checkpoint (msgpack of its `State`)."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  with open(path, 'rb') as f:
    state = flax.serialization.msgpack_restore(f.read())
  return state['params_ema'] if ema else state['optimizer']['target']


# --- U-Nets (ncsnpp, ddpm) -------------------------------------------------------------------

_RES = {'norm_0': 'GroupNorm_0', 'conv_0': 'Conv_0', 'temb': 'Dense_0', 'norm_1': 'GroupNorm_1',
        'conv_1': 'Conv_1', 'skip': 'NIN_0'}
_ATTN = {'norm': 'GroupNorm_0', 'qkv': ('NIN_0', 'NIN_1', 'NIN_2'), 'out': 'NIN_3'}
_RESAMPLE = {'conv': 'Conv_0', 'fir_conv': 'Conv2d_0'}
INNER_NAMES = {  # our submodule name -> official name, per block class
    'ResnetBlockDDPM': _RES, 'ResnetBlockDDPMpp': _RES,
    'ResnetBlockBigGANpp': dict(_RES, skip='Conv_2'),
    'AttnBlock': _ATTN, 'AttnBlockpp': _ATTN,
    'Upsample': _RESAMPLE, 'Downsample': _RESAMPLE, 'Combine': {'conv': 'Conv_0'},
}
_PRIMITIVES = {nn.Dense: 'Dense', nn.Conv: 'Conv', layers.GroupNorm: 'GroupNorm'}


def _trace(config):
  """Our top-level submodules in call order [(name, module)] and our param shapes."""
  model = get_model(config)
  x = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.num_channels))
  calls = {}

  def record(next_fun, args, kwargs, context):
    path = context.module.scope.path if context.module.scope is not None else ()
    if len(path) == 1 and path[0] not in calls:
      calls[path[0]] = context.module
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, jnp.ones((1,)))['params'])
  return list(calls.items()), shapes


def _torch_skips(name, module):
  """The official PyTorch net keeps param-free pyramid resamplers outside its ModuleList."""
  return (isinstance(module, (layerspp.Upsample, layerspp.Downsample)) and not module.with_conv
          and 'pyramid' in name)


def _old_locations(config):
  """[(our name, module, old Flax name, PyTorch ModuleList index or None)] in call order."""
  calls, shapes = _trace(config)
  per_class, index, out = collections.Counter(), 0, []
  for name, module in calls:
    cls = _PRIMITIVES.get(type(module), type(module).__name__)
    old_name = f'{cls}_{per_class[cls]}'
    per_class[cls] += 1
    torch_index = None
    if not _torch_skips(name, module):
      torch_index, index = index, index + 1
    out.append((name, module, old_name, torch_index))
  return out, shapes


def _canonical(old, from_torch):
  """Old leaves of one layer -> {kernel, bias, scale, W} in Flax layout (HWIO / [in, out])."""
  out = {}
  for key, v in old.items():
    v = np.asarray(v, np.float32)
    if key == 'W' and v.ndim == 1:          # Fourier features
      out['W'] = v
    elif key in ('W', 'kernel') or (key == 'weight' and v.ndim > 1):
      if from_torch and key == 'weight':    # torch: conv [O, I, kh, kw], linear [O, I]
        v = v.transpose(2, 3, 1, 0) if v.ndim == 4 else v.T
      out['kernel'] = v
    elif key == 'weight' or key == 'scale':  # GroupNorm
      out['scale'] = v
    elif key in ('b', 'bias'):
      out['bias'] = v
    else:
      raise KeyError(f'unexpected leaf {key!r} in an official checkpoint')
  return out


def _fit(ours, old, where):
  """Reshape 1×1-conv kernels for our Dense layers and check every shape."""
  if set(ours) != set(old):
    raise ValueError(f'{where}: leaves {sorted(old)} do not match ours {sorted(ours)}')
  out = {}
  for key, shape in ours.items():
    v = old[key]
    if v.ndim == 4 and len(shape.shape) == 2 and v.shape[:2] == (1, 1):
      v = v.reshape(v.shape[2:])
    if v.shape != shape.shape:
      raise ValueError(f'{where}/{key}: official shape {v.shape} != ours {shape.shape}')
    out[key] = v
  return out


class _Source:
  """Old weights addressed by (module, submodule) with bookkeeping of what was used."""

  def __init__(self, tree, from_torch):
    self.tree, self.from_torch, self.used = tree, from_torch, set()

  def layer(self, top, sub=None):
    node = self.tree[top] if sub is None else self.tree[top][sub]
    self.used.add((top, sub))
    return _canonical(node, self.from_torch)

  def check_all_used(self, unused_ok=()):
    """Raise unless every old layer was read (submodules named in `unused_ok` may be left)."""
    left = []
    for top, node in self.tree.items():
      subs = [None] if not isinstance(next(iter(node.values())), dict) else list(node)
      left += [f'{top}/{s}' if s else str(top) for s in subs
               if (top, s) not in self.used and s not in unused_ok]
    if left:
      raise ValueError(f'official weights not used by our model: {", ".join(left)}')


def _build(config, source, key_of):
  """Our params from `source`, with `key_of(old_name, torch_index)` giving the top-level key."""
  locations, shapes = _old_locations(config)
  params = {}
  for name, module, old_name, torch_index in locations:
    if name not in shapes:
      continue  # a param-free module
    top = key_of(old_name, torch_index)
    inner = INNER_NAMES.get(type(module).__name__)
    if inner is None:
      params[name] = _fit(shapes[name], source.layer(top), f'{name} <- {top}')
      continue
    params[name] = {}
    for sub, sub_shapes in shapes[name].items():
      old_sub = inner[sub]
      if isinstance(old_sub, tuple):  # fused q, k, v
        parts = [source.layer(top, s) for s in old_sub]
        old = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
      else:
        old = source.layer(top, old_sub)
      params[name][sub] = _fit(sub_shapes, old, f'{name}/{sub} <- {top}/{old_sub}')
  return params


def unet_from_pytorch(state_dict, config):
  """ncsnpp / ddpm params from a score_sde_pytorch state dict (`all_modules.{i}...`)."""
  tree = unflatten_params(state_dict, sep='.')
  source = _Source(tree['all_modules'], from_torch=True)
  params = _build(config, source, lambda old_name, index: str(index))
  # Unconditional official PyTorch blocks still hold a temb Dense that their forward never uses.
  source.check_all_used(unused_ok=() if config.model.conditional else ('Dense_0',))
  return params


def unet_from_flax(old_params, config):
  """ncsnpp / ddpm params from a score_sde Flax params tree (`Conv_0`, `ResnetBlockDDPM_2`...)."""
  source = _Source(old_params, from_torch=False)
  params = _build(config, source, lambda old_name, index: old_name)
  source.check_all_used()
  return params


register_converter('ncsnpp')(Converter(unet_from_pytorch, unet_from_flax))
register_converter('ddpm')(Converter(unet_from_pytorch, unet_from_flax))
