"""NVlabs/edm `SongUNet` checkpoints (DDPM++ / NCSN++ as EDM rewrote them) as our `ncsnpp`.

Papers:
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364
             (App. F.2: SongUNet, the DDPM++ / NCSN++ of Song+21 behind its preconditioning).
  Song+21    Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. H).
  Wang+23    Patch Diffusion, arXiv:2304.12526 (two coordinate input channels).

Read (as data): the SongUNet of NVlabs/edm training/networks.py and the same class in
Patch-Diffusion (built with in_channels = img_channels + 2), PFGM++ and STF (Newbeeer/pfgmpp,
Newbeeer/stf: the same forward, checked by tools/make_songunet_fixture.py; their Conv2d's changed
fused upsampling is a path SongUNet never takes).

Every SongUNet is our `ncsnpp` with BigGAN blocks, √½ skips, SiLU (`FIXED`); its options map as
  embedding_type  positional (channel_mult_noise 1) | fourier (2)  -> model.embedding_type
  encoder_type    standard | skip | residual        -> model.progressive_input none | input_skip
                                                       (sum) | residual
  decoder_type    standard | skip                   -> model.progressive none | output_skip
  resample_filter [1, 1]                            -> model.fir=False (nearest / mean pooling),
                  else (or a residual encoder)      -> model.fir=True, fir_kernel=resample_filter
The embeddings agree as they are: SongUNet's positional frequencies (endpoint=True) and ours are
both ω_i = 10000^(−i/(D/2 − 1)), and its sin/cos swap gives our [sin, cos] order.
Names (SongUNet -> ours; r = img_resolution >> level):
  map_noise.freqs -> fourier/W; map_label, map_augment, map_layer0, map_layer1 -> label_embed,
  augment_embed, temb_0, temb_1; enc.{r}x{r}_conv -> conv_in; enc.{r}x{r}_block{i} ->
  down_{level}_res_{i} (+ down_{level}_attn_{i}); enc.{r}x{r}_down -> down_{level−1}_resample;
  enc.{r}x{r}_aux_skip / _aux_residual -> down_{level−1}_combine / _pyramid_down; dec.{r}x{r}_in0,
  _in1 -> mid_res_0 + mid_attn, mid_res_1; dec.{r}x{r}_up -> up_{level+1}_resample;
  dec.{r}x{r}_block{i} -> up_{level}_res_{i} (the last + up_{level}_attn); dec.{r}x{r}_aux_norm,
  _aux_conv -> out_norm, out_conv (standard decoder) or up_{level}_pyramid_norm, _pyramid_conv.
  In a UNetBlock: norm0, conv0, affine, norm1, conv1, skip -> norm_0, conv_0, temb, norm_1,
  conv_1, skip; its attention norm2, qkv, proj -> norm, qkv, out.
Layouts: Linear [out, in] -> Dense [in, out]; Conv2d OIHW -> HWIO; 1×1 Conv2d -> Dense; the fused
qkv rows, interleaved per channel (c, {q, k, v}), -> our [q | k | v] columns. Resampling filters
(buffers) are checked against the ones our model hard-codes.
"""
import functools

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

import models  # registers the networks  # pylint: disable=unused-import
from models import utils as mutils

DEFAULTS = dict(  # SongUNet's constructor defaults (NVlabs/edm training/networks.py)
    label_dim=0, augment_dim=0, model_channels=128, channel_mult=(1, 2, 2, 2),
    channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), dropout=0.1, label_dropout=0.,
    embedding_type='positional', channel_mult_noise=1, encoder_type='standard',
    decoder_type='standard', resample_filter=(1, 1))
CHANNEL_KWARGS = ('img_channels', 'in_channels', 'out_channels')
IGNORED = ('use_fp16', 'sigma_min', 'sigma_max')   # precision and σ clamp of the torch wrapper
PRECOND_KWARGS = ('sigma_data', 'model_type', 'implicit_mlp', 'pfgmpp', 'D')
ENCODERS = {'standard': 'none', 'skip': 'input_skip', 'residual': 'residual'}
DECODERS = {'standard': 'none', 'skip': 'output_skip'}
NOISE_MULT = {'positional': 1, 'fourier': 2}   # our noise embedding has nf·this channels
EMB_MULT = 4                                    # our embedding MLP is 4·nf wide
FIXED = {'model.name': 'ncsnpp', 'model.resblock_type': 'biggan', 'model.skip_rescale': True,
         'model.conditional': True, 'model.normalization': 'GroupNorm',
         'model.nonlinearity': 'swish', 'model.scale_by_sigma': False,
         'model.progressive_combine': 'sum', 'data.centered': True}


def _reject(name, value, why):
  raise ValueError(f'SongUNet kwarg {name}={value!r}: {why}')


def _channels(k):
  """(image channels, coordinate channels?) from EDM's img_channels / SongUNet's in/out_channels."""
  if 'in_channels' in k and 'img_channels' in k and k['in_channels'] != k['img_channels']:
    _reject('in_channels', k['in_channels'], f"differs from img_channels={k['img_channels']}")
  c_in = k.get('in_channels', k.get('img_channels'))
  if c_in is None:
    raise ValueError('SongUNet kwargs name no input channel count (img_channels or in_channels)')
  c_out = k.get('out_channels', c_in)
  if c_in - c_out not in (0, 2):
    _reject('out_channels', c_out, f'with {c_in} input channels; our networks take the image '
            'alone or with 2 Patch Diffusion coordinate channels')
  return int(c_out), c_in - c_out == 2


def _precond_overrides(k):
  """Fields from the preconditioner's kwargs (EDMPrecond, Patch_EDMPrecond, PFGM++'s)."""
  if k.get('model_type', 'SongUNet') != 'SongUNet':
    _reject('model_type', k['model_type'], 'only SongUNet is read here')
  if k.get('implicit_mlp'):
    _reject('implicit_mlp', k['implicit_mlp'], "Patch Diffusion's coordinate MLP before the "
            'first conv has no counterpart in our networks')
  out = {}
  if 'sigma_data' in k:
    out['model.sigma_data'] = float(k['sigma_data'])
  if 'pfgmpp' in k:   # PFGM++ (Xu+23): augmented dimension D, else the diffusion (D = ∞) limit
    out['training.pfgmpp_D'] = float(k.get('D', 128)) if k['pfgmpp'] else float('inf')
  return out


def _architecture(k):
  """model.* fields of SongUNet's architecture kwargs; ValueError for what we cannot build."""
  emb = k['embedding_type']
  if emb not in NOISE_MULT:
    _reject('embedding_type', emb, f'choose one of {", ".join(NOISE_MULT)}')
  if k['channel_mult_noise'] != NOISE_MULT[emb]:
    _reject('channel_mult_noise', k['channel_mult_noise'],
            f'our {emb} embedding has {NOISE_MULT[emb]}·model_channels channels')
  if k['channel_mult_emb'] != EMB_MULT:
    _reject('channel_mult_emb', k['channel_mult_emb'], f'our embedding MLP is {EMB_MULT}·nf wide')
  for name, table in (('encoder_type', ENCODERS), ('decoder_type', DECODERS)):
    if k[name] not in table:
      _reject(name, k[name], f'choose one of {", ".join(table)}')
  taps = [float(t) for t in k['resample_filter']]
  if len(taps) < 2 or len(taps) % 2:
    _reject('resample_filter', k['resample_filter'], 'SongUNet resamples with even-length filters')
  fir = taps != [1., 1.] or k['encoder_type'] == 'residual'   # fused conv+filter is FIR's
  out = {'model.embedding_type': emb, 'model.fourier_scale': 16., 'model.fir': fir,
         'model.nf': int(k['model_channels']), 'model.ch_mult': tuple(map(int, k['channel_mult'])),
         'model.num_res_blocks': int(k['num_blocks']),
         'model.attn_resolutions': tuple(map(int, k['attn_resolutions'])),
         'model.dropout': float(k['dropout']), 'model.label_dropout': float(k['label_dropout']),
         'model.progressive_input': ENCODERS[k['encoder_type']],
         'model.progressive': DECODERS[k['decoder_type']]}
  if fir:
    out['model.fir_kernel'] = [int(t) if t.is_integer() else t for t in taps]
  return out


def config_overrides(kwargs):
  """{dotted config field: value} that make our config the SongUNet of `kwargs`.

  Args:
    kwargs: SongUNet's constructor kwargs merged with its preconditioner's (EDM's `_init_kwargs`);
      missing ones take SongUNet's defaults (`DEFAULTS`). `use_fp16`, `sigma_min`, `sigma_max`
      are ignored (torch precision, the wrapper's σ clamp).
  Raises:
    ValueError naming the kwarg and its value when our networks cannot represent it.
  """
  known = set(DEFAULTS) | set(CHANNEL_KWARGS) | set(IGNORED) | set(PRECOND_KWARGS)
  for name in sorted(set(kwargs) - known - {'img_resolution'}):
    _reject(name, kwargs[name], 'not a SongUNet / EDM preconditioner option read here')
  if 'img_resolution' not in kwargs:
    raise ValueError('SongUNet kwargs lack img_resolution')
  k = {**DEFAULTS, **kwargs}
  channels, coords = _channels(k)
  out = dict(FIXED)
  out.update(_architecture(k))
  out.update({'data.image_size': int(k['img_resolution']), 'data.num_channels': channels,
              'model.patch_coords': coords, 'model.class_conditional': k['label_dim'] > 0,
              'model.augment_dim': int(k['augment_dim'])})
  if k['label_dim']:
    out['data.num_classes'] = int(k['label_dim'])
  out.update(_precond_overrides(k))
  return out


def check_config(config):
  """ValueError naming the field unless `config` is a network SongUNet weights can mean."""
  for field, value in FIXED.items():
    group, name = field.split('.')
    ours = config[group][name]
    if (ours.lower() if isinstance(ours, str) else ours) != (value.lower() if isinstance(
        value, str) else value):
      raise ValueError(f'config.{field}={ours!r}: a SongUNet is {value!r}')
  m = config.model
  for field, table in (('progressive_input', ENCODERS), ('progressive', DECODERS)):
    if m[field].lower() not in table.values():
      raise ValueError(f'config.model.{field}={m[field]!r} has no SongUNet counterpart')
  if m.progressive_input.lower() == 'residual' and not m.fir:
    raise ValueError("config.model.progressive_input='residual' needs model.fir=True (SongUNet's "
                     'fused conv + filter downsampling)')
  if m.embedding_type.lower() not in NOISE_MULT:
    raise ValueError(f'config.model.embedding_type={m.embedding_type!r} has no SongUNet '
                     'counterpart')


# --- the name plan ---------------------------------------------------------------------------

def _layer(plan, src, dst, kind, bias=True):
  plan.append((f'{src}.weight', dst + ('kernel',), kind))
  if bias:
    plan.append((f'{src}.bias', dst + ('bias',), 'copy'))


def _norm(plan, src, dst):
  plan += [(f'{src}.weight', dst + ('scale',), 'copy'), (f'{src}.bias', dst + ('bias',), 'copy')]


def _block(plan, filters, src, res, attn=None, skip=False, resample=False):
  """A SongUNet UNetBlock: our residual block `res` (+ our attention block `attn`)."""
  _norm(plan, f'{src}.norm0', (res, 'norm_0'))
  _layer(plan, f'{src}.conv0', (res, 'conv_0'), 'conv')
  _layer(plan, f'{src}.affine', (res, 'temb'), 'dense')
  _norm(plan, f'{src}.norm1', (res, 'norm_1'))
  _layer(plan, f'{src}.conv1', (res, 'conv_1'), 'conv')
  if skip:
    _layer(plan, f'{src}.skip', (res, 'skip'), 'nin')
  if resample:
    filters += [f'{src}.conv0.resample_filter', f'{src}.skip.resample_filter']
  if attn:
    _norm(plan, f'{src}.norm2', (attn, 'norm'))
    plan += [(f'{src}.qkv.weight', (attn, 'qkv', 'kernel'), 'qkv'),
             (f'{src}.qkv.bias', (attn, 'qkv', 'bias'), 'qkv_bias')]
    _layer(plan, f'{src}.proj', (attn, 'out'), 'nin')


def _plan(config):
  """([(SongUNet tensor, our leaf path, layout)], [filter buffers]), in SongUNet.__init__ order."""
  m, size = config.model, config.data.image_size
  nf, mults, n, attn_res = m.nf, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions)
  plan, filters = [], []
  block = functools.partial(_block, plan, filters)
  if m.embedding_type.lower() == 'fourier':
    plan.append(('map_noise.freqs', ('fourier', 'W'), 'buffer'))
  if m.class_conditional:
    _layer(plan, 'map_label', ('label_embed',), 'dense')
  if m.augment_dim:
    _layer(plan, 'map_augment', ('augment_embed',), 'dense', bias=False)
  _layer(plan, 'map_layer0', ('temb_0',), 'dense')
  _layer(plan, 'map_layer1', ('temb_1',), 'dense')
  skips = []
  for level, mult in enumerate(mults):
    r, prev = size >> level, level - 1
    p = f'enc.{r}x{r}'
    if level == 0:
      _layer(plan, f'{p}_conv', ('conv_in',), 'conv')
      cout = nf
    else:
      block(f'{p}_down', f'down_{prev}_resample', skip=True, resample=True)
      if m.progressive_input.lower() == 'input_skip':
        filters.append(f'{p}_aux_down.resample_filter')
        _layer(plan, f'{p}_aux_skip', (f'down_{prev}_combine', 'conv'), 'nin')
      elif m.progressive_input.lower() == 'residual':
        filters.append(f'{p}_aux_residual.resample_filter')
        _layer(plan, f'{p}_aux_residual', (f'down_{prev}_pyramid_down', 'fir_conv'), 'conv')
    skips.append(cout)
    for i in range(n):
      cin, cout = cout, nf * mult
      block(f'{p}_block{i}', f'down_{level}_res_{i}', f'down_{level}_attn_{i}' if r in attn_res
            else None, skip=cin != cout)
      skips.append(cout)
  for level in reversed(range(len(mults))):
    r = size >> level
    p = f'dec.{r}x{r}'
    if level == len(mults) - 1:
      block(f'{p}_in0', 'mid_res_0', 'mid_attn')
      block(f'{p}_in1', 'mid_res_1')
    else:
      block(f'{p}_up', f'up_{level + 1}_resample', skip=True, resample=True)
    for i in range(n + 1):
      cin, cout = cout + skips.pop(), nf * mults[level]
      block(f'{p}_block{i}', f'up_{level}_res_{i}', f'up_{level}_attn' if i == n and r in attn_res
            else None, skip=cin != cout)
    if m.progressive.lower() == 'output_skip':
      if level < len(mults) - 1:
        filters.append(f'{p}_aux_up.resample_filter')
      _norm(plan, f'{p}_aux_norm', (f'up_{level}_pyramid_norm',))
      _layer(plan, f'{p}_aux_conv', (f'up_{level}_pyramid_conv',), 'conv')
    elif level == 0:
      _norm(plan, f'{p}_aux_norm', ('out_norm',))
      _layer(plan, f'{p}_aux_conv', ('out_conv',), 'conv')
  return plan, filters


# --- PFGM++'s post-training quantization ------------------------------------------------------

QUANT_SKIP = ('norm', 'affine', 'map', '32')   # generate_quant.py: weights it leaves in float


def quantize_like_pfgmpp(params, config, bits):
  """Xu+23 §6's robustness probe (Newbeeer/pfgmpp generate_quant.py): each SongUNet weight whose
  name holds none of QUANT_SKIP (norms, block embeddings, the mapping network and, by the name
  '32', CIFAR-10's full-resolution layers) to `bits` bits per tensor: Δ = (max w − min w) / L,
  L = 2^bits − 1, z = ⌊clip(−min w / Δ, 0, L)⌋, w ← Δ (round(clip(z + w / Δ, 0, L)) − z).
  Biases stay float, and so does a constant tensor (Δ = 0, where the script divides by zero).
  `params`: our tree of `config`'s network (`check_config` passes; rules.py checks it)."""
  levels = 2. ** bits - 1.
  chosen = {dst for src, dst, _ in _plan(config)[0]
            if src.endswith('.weight') and not any(s in src for s in QUANT_SKIP)}

  def quantize(w):
    lo, hi = jnp.min(w), jnp.max(w)
    step = (hi - lo) / levels
    zero = jnp.floor(jnp.clip(-lo / step, 0., levels))
    q = step * (jnp.round(jnp.clip(zero + w / step, 0., levels)) - zero)
    return jnp.where(hi > lo, q, w)       # Δ = 0: q is NaN, w is kept
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: quantize(v) if k in chosen else v for k, v in flat.items()})


# --- re-layout -------------------------------------------------------------------------------

def _source_shape(kind, target):
  """The SongUNet shape that re-lays out to our `target` shape."""
  if kind in ('copy', 'buffer', 'qkv_bias'):
    return tuple(target)
  if kind == 'dense':
    return (target[1], target[0])
  if kind == 'conv':
    return (target[3], target[2], target[0], target[1])
  return (target[1], target[0], 1, 1)   # nin, qkv: 1×1 conv -> Dense


def _relayout(kind, v):
  """SongUNet array -> our layout: a transpose, slice or permutation (no arithmetic)."""
  if kind == 'dense':
    return v.T
  if kind == 'conv':
    return v.transpose(2, 3, 1, 0)
  if kind == 'nin':
    return v[:, :, 0, 0].T
  if kind == 'qkv':   # rows (c, j), j ∈ {q, k, v} -> columns (j, c)
    w = v[:, :, 0, 0]
    return w.reshape(-1, 3, w.shape[1]).transpose(1, 0, 2).reshape(w.shape).T
  if kind == 'qkv_bias':
    return v.reshape(-1, 3).T.reshape(-1)
  return v


def _resample_filter(config):
  """The [1, 1, n, n] filter buffer SongUNet stores for what our model hard-codes."""
  taps = np.asarray(config.model.fir_kernel if config.model.fir else (1, 1), np.float64)
  return (np.outer(taps, taps) / taps.sum() ** 2)[None, None]


def _verify_filters(state_dict, names, config, used):
  expected = _resample_filter(config)
  for name in names:
    if name not in state_dict:
      raise ValueError(f'SongUNet tensor {name!r} is missing')
    value = np.asarray(state_dict[name])
    if value.shape != expected.shape:
      raise ValueError(f'SongUNet tensor {name!r} has shape {value.shape}, our resampling filter '
                       f'{expected.shape}')
    if not np.allclose(value, expected, rtol=1e-6, atol=1e-8):
      raise ValueError(f'SongUNet tensor {name!r} is not the resampling filter our model '
                       f'hard-codes (outer product of {list(expected.shape[2:])}-tap '
                       f'{config.model.fir_kernel if config.model.fir else [1, 1]})')
    used.add(name)


def to_params(state_dict, config, moments=False):
  """Our params tree (as `models.utils.init_model(rng, config)[1]`) from a SongUNet state dict.

  Args:
    state_dict: {name: np.ndarray}, names relative to the SongUNet ('map_layer0.weight',
      'enc.32x32_conv.weight', ...; buffers 'map_noise.freqs' and '*.resample_filter' included).
    config: our config (`config_overrides` applied; `check_config` must pass).
    moments: the dict holds optimizer moments of SongUNet's parameters (no buffers): the Fourier
      frequencies, which our model keeps as a never-trained parameter, get zero moments, and the
      filters are not looked for.
  Every leaf is a pure re-layout of one tensor (`_relayout`), so the same call converts Adam
  moments. Raises ValueError naming the tensor: missing, wrong shape (both shapes given), a
  filter unlike ours, or a tensor our model does not use.
  """
  check_config(config)
  plan, filters = _plan(config)
  shapes = flax.traverse_util.flatten_dict(jax.eval_shape(
      lambda key: mutils.init_model(key, config)[1], jax.random.key(0)))
  flat, used = {}, set()
  for src, dst, kind in plan:
    if dst not in shapes:
      raise ValueError(f'SongUNet tensor {src!r} has no place in our model ({"/".join(dst)} '
                       'does not exist)')
    target = tuple(shapes[dst].shape)
    if moments and kind == 'buffer':
      flat[dst] = np.zeros(target, np.float32)
      continue
    if src not in state_dict:
      raise ValueError(f'SongUNet tensor {src!r} is missing (for our {"/".join(dst)})')
    value = np.asarray(state_dict[src])
    if value.shape != _source_shape(kind, target):
      raise ValueError(f'SongUNet tensor {src!r} has shape {value.shape}, but our '
                       f'{"/".join(dst)} {target} needs {_source_shape(kind, target)}')
    flat[dst] = np.ascontiguousarray(_relayout(kind, value), np.float32)
    used.add(src)
  if not moments:
    _verify_filters(state_dict, filters, config, used)
  left = sorted(set(shapes) - set(flat))
  if left:
    raise ValueError(f'our parameters {["/".join(p) for p in left]} have no SongUNet tensor')
  unused = sorted(set(state_dict) - used)
  if unused:
    raise ValueError(f'SongUNet tensors not used by our model: {", ".join(unused)}')
  return flax.traverse_util.unflatten_dict(flat)
