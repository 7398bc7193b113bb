"""Official NCSN / NCSNv2 weights → scoreflow params for `ncsn*` and `ncsnv2_*` models.

Two sources:
- PyTorch state dicts of ermongroup/ncsn (CondRefineNetDilated), ermongroup/ncsnv2 (NCSNv2,
  NCSNv2Deeper, NCSNv2Deepest) and score_sde_pytorch (same attribute names), with or without
  the `module.` prefix of `nn.DataParallel`, as NumPy arrays: `torch_to_params(sd, config)`.
  Their 64 px body is the `*_torch` layout (`ncsn_torch`, `ncsnv2_64_torch`); the 128 and 256 px
  bodies are shared with score_sde. An ermongroup checkpoint is a list: `states[0]` is the
  state dict and, when saved with EMA, `states[4]` the EMA weights under the same names.
- Flax param trees of score_sde (auto-named `ResidualBlock_3/Conv_1/kernel`, ...):
  `flax_to_params(tree, config)`.

Numerics: our layers follow the PyTorch code (align-corners bilinear upsampling; unbiased
variance of the channel means in InstanceNorm++; see models/normalization.py). score_sde's
Flax port used half-pixel bilinear resizing and the biased variance, so a Flax-trained tree
maps exactly onto our parameters, but our output differs slightly from score_sde's; with
`interpolation='nearest_neighbor'` only the variance term differs (tests/test_refinenet_parity.py
checks the mapping with that term aligned).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from models import utils as mutils
from foreign.converters import Converter, register_converter

# score_sde's Flax class names of the normalization layers (models/normalization.py there).
_FLAX_NORMS = {'InstanceNorm++': 'InstanceNorm2dPlus', 'InstanceNorm': 'InstanceNorm2d',
               'VarianceNorm': 'VarianceNorm2d', 'GroupNorm': 'GroupNorm'}
_FLAX_COND_NORMS = {'InstanceNorm++': 'ConditionalInstanceNorm2dPlus'}
_TORCH_IGNORED = ('sigmas',)   # registered buffer: recomputed from the config


def _target(config):
  """Flat {path: ShapeDtypeStruct} of the params of `config`'s model."""
  model = mutils.get_model(config)
  shape = (1, config.data.image_size, config.data.image_size, config.data.num_channels)
  tree = jax.eval_shape(
      lambda k: model.init(k, jnp.zeros(shape), jnp.zeros((1,), jnp.int32))['params'],
      jax.random.key(0))
  return traverse_util.flatten_dict(tree)


def _finish(flat, config, source):
  """Check `flat` against the model's params (names and shapes) and unflatten it."""
  target = _target(config)
  missing = sorted('/'.join(k) for k in set(target) - set(flat))
  unexpected = sorted('/'.join(k) for k in set(flat) - set(target))
  wrong = sorted(f'{"/".join(k)}: {flat[k].shape} vs {target[k].shape}'
                 for k in set(flat) & set(target) if flat[k].shape != target[k].shape)
  if missing or unexpected or wrong:
    hint = ''
    if config.model.name in ('ncsn', 'ncsnv2_64'):
      hint = (f" PyTorch checkpoints of the 64 px body need model.name = "
              f"'{config.model.name}_torch' (refine3 with nf channels).")
    raise ValueError(
        f'{source} weights do not fit model {config.model.name!r}: missing {missing[:5]}, '
        f'unexpected {unexpected[:5]}, shape mismatches {wrong[:5]} '
        f'({len(missing)}/{len(unexpected)}/{len(wrong)} in all).{hint}')
  return traverse_util.unflatten_dict(
      {k: np.asarray(v, np.float32) for k, v in flat.items()})


def _torch_key_to_path(key):
  """'module.res1.0.conv1.weight' → (('res1_0', 'conv1'), 'weight')."""
  parts = key.split('.')
  if parts[0] == 'module':
    parts = parts[1:]
  path = []
  for p in parts[:-1]:
    if p.isdigit():
      path[-1] = f'{path[-1]}_{p}'   # nn.ModuleList index → our `name_i`
    else:
      path.append(p)
  return tuple(path), parts[-1]


def torch_to_params(state_dict, config):
  """Params of `config`'s model from an official PyTorch state dict of NumPy arrays.

  Conv weights [O, I, kh, kw] become kernels [kh, kw, I, O]; `embed.weight` becomes the
  embedding table as is ([num_classes, k·C], rows [γ | α | β]); norm vectors keep their names.
  """
  flat = {}
  for key, value in state_dict.items():
    value = np.asarray(value)
    path, leaf = _torch_key_to_path(key)
    if not path and leaf in _TORCH_IGNORED:
      continue
    if leaf == 'weight' and value.ndim == 4:
      leaf, value = 'kernel', value.transpose(2, 3, 1, 0)
    elif leaf == 'weight' and path[-1] == 'embed':
      leaf = 'embedding'
    elif leaf == 'weight':
      leaf = 'scale'   # affine InstanceNorm / GroupNorm
    flat[path + (leaf,)] = value
  return _finish(flat, config, 'PyTorch')


def _flax_norm_names(config, conditional):
  name = config.model.normalization
  table = _FLAX_COND_NORMS if conditional else _FLAX_NORMS
  if name not in table:
    raise ValueError(f"score_sde's Flax code has no {'conditional ' if conditional else ''}"
                     f"normalization {name!r}; it has: {', '.join(sorted(table))}")
  return table[name]


def _flax_block_child(name, block, stage_resample, dilation, norm):
  """Official auto-name of a residual-block child (creation order of score_sde's blocks)."""
  if name in ('normalize1', 'normalize2'):
    return f'{norm}_{int(name[-1]) - 1}'
  if stage_resample == 'down':
    if dilation > 1:
      return {'conv1': 'Conv_0', 'conv2': 'Conv_1', 'shortcut': 'Conv_2'}[name]
    return {'conv1': 'Conv_0', 'conv2': 'ConvMeanPool_0', 'shortcut': 'ConvMeanPool_1'}[name]
  order = (['shortcut'] if 'shortcut' in block else []) + ['conv1', 'conv2']
  return f'Conv_{order.index(name)}'


def _flax_refine_child(head, child, n_inputs, conditional, norm):
  """Official names of (RCU / MSF / CRP, conv or norm) below a RefineBlock, in creation order."""
  pre = 'Cond' if conditional else ''
  if head.startswith('adapt_convs_'):
    block = f'{pre}RCUBlock_{head.rsplit("_", 1)[1]}'
  elif head == 'output_convs':
    block = f'{pre}RCUBlock_{n_inputs}'
  else:
    block = {'msf': f'{pre}MSFBlock_0', 'crp': f'{pre}CRPBlock_0'}[head]
  rcu = re.fullmatch(r'(\d+)_(\d+)_(conv|norm)', child)
  if rcu:
    index, kind = 2 * (int(rcu.group(1)) - 1) + int(rcu.group(2)) - 1, rcu.group(3)
  else:
    kind, index = child.rsplit('_', 1)
  return [block, f'Conv_{index}' if kind in ('conv', 'convs') else f'{norm}_{index}']


def _flax_path(path, model_cls, target_tree, norm):
  """Official Flax path of our leaf `path` (a tuple of names)."""
  conditional = model_cls.conditional
  blocks = {f'{name}_{j}': (i, j) for i, (name, *_) in enumerate(model_cls.stages)
            for j in range(2)}
  refines = [name for name, _ in model_cls.refines]
  head, rest = path[0], path[1:]
  if head in ('begin_conv', 'end_conv', 'normalizer'):
    names = [{'begin_conv': 'Conv_0', 'end_conv': 'Conv_1', 'normalizer': f'{norm}_0'}[head]]
  elif head in blocks:
    stage, j = blocks[head]
    _, _, resample, dilation = model_cls.stages[stage]
    prefix = 'ConditionalResidualBlock' if conditional else 'ResidualBlock'
    names = [f'{prefix}_{2 * stage + j}',
             _flax_block_child(rest[0], target_tree[head], resample if j == 0 else None,
                               dilation, norm)]
    rest = rest[1:]
    if rest[0] == 'conv':   # the conv inside ConvMeanPool
      names, rest = names + ['Conv_0'], rest[1:]
  else:
    k = refines.index(head)
    prefix = 'CondRefineBlock' if conditional else 'RefineBlock'
    names = [f'{prefix}_{k}'] + _flax_refine_child(rest[0], rest[1], 1 if k == 0 else 2,
                                                   conditional, norm)
    rest = rest[2:]
  return tuple('Embed_0' if p == 'embed' else p for p in names + list(rest))


def flax_to_params(tree, config):
  """Params of `config`'s model from a score_sde Flax param tree of the same architecture.

  Names follow the creation order of score_sde's modules; norm vectors stored as [1, 1, 1, C]
  become [C]; VarianceNorm's `scale` is our `alpha`.
  """
  model_cls = mutils.MODELS.get(config.model.name)
  norm = (_flax_norm_names(config, True) if model_cls.conditional
          else _flax_norm_names(config, False))
  source = traverse_util.flatten_dict(dict(tree))
  target = _target(config)
  target_tree = traverse_util.unflatten_dict(target)
  flat = {}
  for path, spec in target.items():
    official = list(_flax_path(path, model_cls, target_tree, norm))
    if config.model.normalization == 'VarianceNorm' and official[-1] == 'alpha':
      official[-1] = 'scale'
    official = tuple(official)
    if official not in source:
      raise ValueError(f'score_sde Flax tree lacks {"/".join(official)} (for our '
                       f'{"/".join(path)}) of model {config.model.name!r}')
    value = np.asarray(source.pop(official))
    flat[path] = value.reshape(spec.shape) if value.size == np.prod(spec.shape) else value
  if source:
    raise ValueError(f'score_sde Flax tree has {len(source)} unused leaves, e.g. '
                     f'{["/".join(k) for k in list(source)[:5]]}')
  return _finish(flat, config, 'score_sde Flax')


for _name in ('ncsn', 'ncsn_torch', 'ncsnv2_64', 'ncsnv2_64_torch', 'ncsnv2_128', 'ncsnv2_256'):
  register_converter(_name)(Converter(torch_to_params, flax_to_params))
