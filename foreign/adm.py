"""NVlabs/edm's DhariwalUNet (EDM's ADM) as our `adm`: its config fields and its weights.

Papers:
  Dhariwal&Nichol21  Diffusion Models Beat GANs on Image Synthesis, arXiv:2105.05233 (ADM).
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364
    (edm-imagenet-64x64-cond-adm.pkl: EDMPrecond around a DhariwalUNet).

`config_overrides(kwargs)` reads the constructor arguments an EDM pickle records (`_init_kwargs`
of its EDMPrecond: the precond's own plus those it passes to DhariwalUNet) and returns
{dotted config field: value}; the caller picks `model.precond` from the wrapper's class.
`to_params(state_dict, config)` lays DhariwalUNet's tensors (names relative to the network, e.g.
'map_layer0.weight', 'enc.64x64_conv.weight') out as our `models.adm` parameters. It only
transposes and slices, never computes, so Adam moments convert the same way; every tensor must
be used and every shape match. Both take plain data: nothing here unpickles or runs EDM code.
"""
import math
import numbers

import flax
import jax
import jax.numpy as jnp
import numpy as np

from models.utils import get_model

# DhariwalUNet's defaults (networks.py); img_resolution and img_channels have none.
DEFAULTS = dict(label_dim=0, augment_dim=0, model_channels=192, channel_mult=(1, 2, 3, 4),
                channel_mult_emb=4, num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.1,
                label_dropout=0.)
REQUIRED = ('img_resolution', 'img_channels')
# EDMPrecond's own arguments that `models.adm` + `models.precond` can represent, at these values.
PRECOND_FIXED = dict(model_type='DhariwalUNet', sigma_min=0, sigma_max=float('inf'))
_CONV_1X1 = ('skip', 'qkv', 'proj')         # Conv2d(kernel=1) in EDM, nn.Dense here
_BOX_FILTER = np.full((1, 1, 2, 2), 0.25)   # EDM's resample_filter [1, 1]: outer product / 4


def _int(kwargs, key, low):
  v = kwargs[key]
  if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
    raise ValueError(f'DhariwalUNet {key}={v!r}: expected an integer >= {low}')
  return int(v)


def _ints(kwargs, key, low, nonempty):
  v = kwargs[key]
  if (not isinstance(v, (list, tuple)) or (nonempty and not v) or any(
      isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < low for e in v)):
    raise ValueError(f'DhariwalUNet {key}={v!r}: expected a list of integers >= {low}')
  return tuple(int(e) for e in v)


def _probability(kwargs, key):
  v = kwargs[key]
  if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
    raise ValueError(f'DhariwalUNet {key}={v!r}: expected a probability in [0, 1]')
  return float(v)


def _check_precond_args(kwargs):
  """Validate EDMPrecond's own arguments; return σ_data. use_fp16 (compute dtype) is ignored."""
  for key, value in PRECOND_FIXED.items():
    if key in kwargs and kwargs[key] != value:
      raise ValueError(f'EDMPrecond {key}={kwargs[key]!r} cannot be represented (only {value!r})')
  sigma_data = kwargs.get('sigma_data', 0.5)
  if isinstance(sigma_data, bool) or not isinstance(sigma_data, numbers.Real) or not (
      0 < sigma_data < math.inf):
    raise ValueError(f'EDMPrecond sigma_data={sigma_data!r}: expected a positive number')
  return float(sigma_data)


def config_overrides(kwargs):
  """{dotted config field: value} for an EDMPrecond(DhariwalUNet) built with `kwargs`.

  Absent arguments take DhariwalUNet's defaults. Raises ValueError naming the argument for a
  missing img_resolution / img_channels, an unknown argument or a value
  `models.adm` cannot represent (channel_mult_emb other than 4, another model_type). Twice the
  image channels out (iDDPMPrecond's learned variance) is `model.learn_sigma`; two channels
  fewer out than in (Patch_EDMPrecond's coordinates) `model.patch_coords`.
  """
  kwargs = dict(kwargs)
  c_in, c_out = kwargs.pop('in_channels', None), kwargs.pop('out_channels', None)
  if c_in is not None and kwargs.setdefault('img_channels', c_in) != c_in:
    raise ValueError(f'DhariwalUNet in_channels={c_in!r} differs from img_channels='
                     f'{kwargs["img_channels"]!r}')
  img = kwargs.get('img_channels', -1)
  learn_sigma = c_out is not None and c_out == 2 * img       # iDDPM: twice the channels out
  coords = c_out is not None and c_out == img - 2            # Patch Diffusion: + 2 coordinates in
  if c_out not in (None, img) and not learn_sigma and not coords:
    raise ValueError(f'DhariwalUNet out_channels={c_out!r} with img_channels={img!r}: models.adm '
                     'maps images to images (or to 2x channels, or from images + 2 coordinates)')
  known = set(DEFAULTS) | set(REQUIRED) | set(PRECOND_FIXED) | {'sigma_data', 'use_fp16'}
  unknown = sorted(set(kwargs) - known)
  if unknown:
    raise ValueError(f'EDM argument(s) {", ".join(unknown)} cannot be represented by model.name='
                     "'adm' (DhariwalUNet inside EDMPrecond)")
  missing = [k for k in REQUIRED if k not in kwargs]
  if missing:
    raise ValueError(f'EDM argument(s) {", ".join(missing)} missing (DhariwalUNet has no default)')
  kw = {**DEFAULTS, **kwargs}
  if kw['channel_mult_emb'] != 4:
    raise ValueError(f'DhariwalUNet channel_mult_emb={kw["channel_mult_emb"]!r} cannot be '
                     'represented: models.adm embeds in 4·nf channels')
  label_dim = _int(kw, 'label_dim', 0)
  out = {
      'model.name': 'adm',
      'model.scale_by_sigma': False,
      'model.sigma_data': _check_precond_args(kw),
      'data.image_size': _int(kw, 'img_resolution', 1),
      'data.num_channels': _int(kw, 'img_channels', 1) - 2 * coords,
      'model.patch_coords': coords,
      'model.class_conditional': label_dim > 0,
      'model.augment_dim': _int(kw, 'augment_dim', 0),
      'model.nf': _int(kw, 'model_channels', 1),
      'model.ch_mult': _ints(kw, 'channel_mult', 1, nonempty=True),
      'model.num_res_blocks': _int(kw, 'num_blocks', 0),
      'model.attn_resolutions': _ints(kw, 'attn_resolutions', 1, nonempty=False),
      'model.dropout': _probability(kw, 'dropout'),
      'model.label_dropout': _probability(kw, 'label_dropout'),
      'model.learn_sigma': learn_sigma,
  }
  if label_dim:
    out['data.num_classes'] = label_dim
  return out


def _param_shapes(config):
  """Our `adm` parameter shapes for `config`, by abstract evaluation (nothing is allocated)."""
  if config.model.name != 'adm':
    raise ValueError(f"foreign.adm reads DhariwalUNet weights into model.name='adm', not "
                     f'{config.model.name!r}')
  channels = config.data.num_channels + 2 * config.model.patch_coords
  x = jnp.zeros((1, config.data.image_size, config.data.image_size, channels))
  cond = ({'class_labels': jnp.zeros((1, config.data.num_classes))}
          if config.model.class_conditional else None)
  init = lambda k: get_model(config).init(k, x, jnp.ones((1,)), cond=cond)['params']  # noqa: E731
  return flax.traverse_util.flatten_dict(jax.eval_shape(init, jax.random.key(0)))


def _torch_top(top):
  """Our top-level module name -> EDM's ('enc_16x16_block0' -> 'enc.16x16_block0')."""
  part, sep, rest = top.partition('_')
  return f'{part}.{rest}' if sep and part in ('enc', 'dec') else top


def _torch_name(path):
  """Our ('enc_16x16_block0', 'conv0', 'kernel') -> EDM's 'enc.16x16_block0.conv0.weight'."""
  top, *subs, leaf = path
  return '.'.join([_torch_top(top), *subs, 'bias' if leaf == 'bias' else 'weight'])


def _layout(path, shape):
  """(EDM's shape of our leaf, EDM tensor -> our array): transposes and slices only."""
  if len(shape) == 4:                                   # conv: [O, I, kh, kw] -> HWIO
    return (shape[3], shape[2], shape[0], shape[1]), lambda v: v.transpose(2, 3, 1, 0)
  if len(shape) == 2 and len(path) == 3 and path[1] in _CONV_1X1:   # 1×1 conv -> Dense [I, O]
    return (shape[1], shape[0], 1, 1), lambda v: v[:, :, 0, 0].T
  if len(shape) == 2:                                   # Linear [O, I] -> Dense [I, O]
    return (shape[1], shape[0]), lambda v: v.T
  return tuple(shape), lambda v: v                      # biases, GroupNorm weight -> scale


def _check_filters(state_dict, shapes):
  """Names of EDM's resample_filter buffers, each checked to be the [1, 1] box filter we use."""
  tops = {_torch_top(path[0]) for path in shapes if path[0].endswith(('_down', '_up'))}
  names = {f'{t}.{sub}.resample_filter' for t in tops for sub in ('conv0', 'skip')}
  for name in names & set(state_dict):
    v = np.asarray(state_dict[name])
    if v.shape != _BOX_FILTER.shape or not np.array_equal(v, _BOX_FILTER):
      raise ValueError(f'{name}: resample filter of shape {v.shape} is not the [1, 1] filter '
                       f'(shape {_BOX_FILTER.shape}) that models.adm implements')
  return names


def to_params(state_dict, config, moments=False):
  """Our `adm` params (nested dict of arrays) from DhariwalUNet tensors {name: array}.

  A pure re-layout: each of our leaves is one EDM tensor transposed / sliced, in its own dtype.
  Errors name the tensor and both shapes; EDM's [1, 1] resample_filter buffers may be present.
  `moments` (optimizer moments: parameters only) changes nothing here, as the buffers are
  optional and every parameter is trained; it keeps the signature of `foreign.songunet`'s.
  """
  del moments
  shapes = _param_shapes(config)
  params, used = {}, set()
  for path, ours in shapes.items():
    name = _torch_name(path)
    expected, relayout = _layout(path, ours.shape)
    if name not in state_dict:
      raise ValueError(f'{name}: missing from the checkpoint (expected shape {expected})')
    v = np.asarray(state_dict[name])
    if v.shape != expected:
      raise ValueError(f'{name}: checkpoint shape {v.shape} != expected {expected} '
                       f'(our {"/".join(path)} {tuple(ours.shape)})')
    params[path] = relayout(v)
    used.add(name)
  unused = sorted(set(state_dict) - used - _check_filters(state_dict, shapes))
  if unused:
    raise ValueError(f'checkpoint tensors not used by model.name=adm: {", ".join(unused)}')
  return flax.traverse_util.unflatten_dict(params)
