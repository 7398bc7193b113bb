"""DDPM building blocks (NHWC), shared by `ddpm` and, through `layerspp`, by NCSN++/DDPM++.

Papers:
  Ho+20     Denoising Diffusion Probabilistic Models, arXiv:2006.11239 (App. B: the U-Net).
  Vaswani+17  Attention Is All You Need, arXiv:1706.03762 (sinusoidal embedding, §3.5).
  Wang+18   Non-local Neural Networks, arXiv:1711.07971 (the single-head spatial attention).
  Song+21   Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Wu&He18   Group Normalization, arXiv:1803.08494 (Eq. 1-3).

Parameter layout: convolutions are `nn.Conv` (kernel HWIO), 1×1 convolutions and the DDPM "NIN"
layers are `ChannelDense` (an `nn.Dense` over channels, kernel [in, out]); attention keeps q, k, v
in one fused Dense.
Mixed precision (precision.py): blocks take `dtype`, the compute dtype of their convolutions and
dense layers (None: float32 here); parameters stay float32; GroupNorm and the attention softmax
compute in float32 and return their input's dtype.
"""
import functools
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from models import up_or_down_sampling as uds
from utils import Registry

ACTIVATIONS = Registry('config.model.nonlinearity')
ACTIVATIONS.register('elu')(nn.elu)
ACTIVATIONS.register('relu')(nn.relu)
ACTIVATIONS.register('lrelu')(lambda x: nn.leaky_relu(x, negative_slope=0.2))
ACTIVATIONS.register('swish')(nn.swish)


def get_act(config):
  """The activation named by `config.model.nonlinearity` (elu | relu | lrelu | swish)."""
  return ACTIVATIONS.get(config.model.nonlinearity.lower())


def default_init(scale=1.):
  """DDPM's initializer: variance_scaling(scale, fan_avg, uniform); scale 0 means 1e-10 (Ho+20)."""
  return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, 'fan_avg', 'uniform')


_FEW_CHANNELS = 4     # an image's channels


def conv3x3(features, init_scale=1., stride=1, name=None, dtype=None):
  """3×3 'SAME' convolution with DDPM init; stride 2 pads (0, 1) like TF's SAME. At stride 1, with
  at most `_FEW_CHANNELS` output or input channels it is computed by `_conv3x3_taps` or
  `_conv3x3_patches` (same parameters; `_conv3x3_for_flax` picks)."""
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding='SAME',
                 kernel_init=default_init(init_scale), name=name, dtype=dtype,
                 conv_general_dilated=_conv3x3_for_flax if stride == 1 else None)


def _conv3x3_for_flax(x, w, *args, **kwargs):
  """`lax.conv_general_dilated` as nn.Conv calls it (NHWC, HWIO; from `conv3x3` at stride 1,
  'SAME'), by `_conv3x3_taps` for an image's few output channels, by `_conv3x3_patches` for its
  few input channels, else by XLA's convolution."""
  if w.shape[3] <= _FEW_CHANNELS:
    return _conv3x3_taps(x, w)
  if w.shape[2] <= _FEW_CHANNELS:
    return _conv3x3_patches(x, w)
  return jax.lax.conv_general_dilated(x, w, *args, **kwargs)


def _conv3x3_taps(x, w):
  """NHWC x, HWIO w -> the 3×3 'SAME' convolution, as nine shifted 1×1 products: one
  [B·H·W, C] × [C, 9·D] dot, then each tap's share shifted into place (`_shifted`) and added.
  XLA:CPU's convolution kernel (Eigen) is slow for a handful of output channels D: EDM's output
  layer (32 → 3 channels at 32×32, batch 8, one Zen 5 core) forward 0.58 → 0.14 ms, and, its
  derivative being these same plain ops, forward + backward 1.16 → 0.65 ms (Eigen took the
  weight gradient at 17 GFLOP/s; docs/performance.md, "Slow kernels off the path").
  Values agree with the convolution's to float rounding."""
  b, h, wd, c = x.shape
  taps = jnp.dot(x.reshape(-1, c), w.transpose(2, 0, 1, 3).reshape(c, -1)).reshape(b, h, wd, 9, -1)
  return sum(_shifted(taps[:, :, :, 3 * i + j], i - 1, j - 1) for i in range(3) for j in range(3))


def _shifted(a, di, dj):
  """out[:, y, x] = a[:, y + di, x + dj], zero beyond a's edges: one pad (negative on one side),
  whose transpose is the opposite shift, so the backward pass gathers the nine shifted
  cotangents into one [B·H·W, 9·D] operand of two plain products (dx and dw)."""
  return jax.lax.pad(a, jnp.zeros((), a.dtype), ((0, 0, 0), (-di, di, 0), (-dj, dj, 0), (0, 0, 0)))


@jax.custom_jvp
def _conv3x3_patches(x, w):
  """NHWC x with few channels C, HWIO w -> the 3×3 'SAME' convolution as one product: the nine
  shifted copies of x side by side ([B·H·W, 9·C], 27 columns for an image) times w as [9·C, D].
  Eigen's convolution kernel is slow for so few input channels: EDM's input layer (3 → 32 at
  32×32, batch 8, one Zen 5 core) 0.32 → 0.21 ms. Differentiated, it is XLA's convolution (the
  JVP below): in a train step XLA fused the noise's random draws into each shifted copy (nine
  draws per pixel, ~1 ms on one core), and Eigen takes the weight gradient faster (0.13 ms)
  than the copies' product (0.23 ms)."""
  b, h, wd, c = x.shape
  patches = jnp.concatenate([_shifted(x, i - 1, j - 1) for i in range(3) for j in range(3)], -1)
  return jnp.dot(patches.reshape(-1, 9 * c), w.reshape(9 * c, -1)).reshape(b, h, wd, -1)


def _conv3x3_patches_jvp(primals, tangents):
  """XLA's convolution conv(x, w) and its tangent conv(dx, w) + conv(x, dw), a term dropped where
  its tangent is a symbolic zero (the likelihood's divergence: dx only; training: dw only)."""
  (x, w), (dx, dw) = primals, tangents
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1), padding='SAME',
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y = conv(x, w)
  zero = jax.custom_derivatives.SymbolicZero     # only tangents can be one
  terms = [conv(a, b) for a, b in ((dx, w), (x, dw))
           if not isinstance(a, zero) and not isinstance(b, zero)]
  return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


_conv3x3_patches.defjvp(_conv3x3_patches_jvp, symbolic_zeros=True)


def upsample_conv3x3(features, init_scale=1., name=None, dtype=None, kernel_init=None):
  """Nearest ×2 upsampling then a 3×3 'SAME' convolution; parameters as `conv3x3`'s (kernel
  HWIO, bias), computed on the input grid (`uds.nearest_upsample_conv_2d`, 4/9 of the work)."""
  return uds.Conv2d(features, 3, up=True, resample_kernel=(1, 1), name=name, dtype=dtype,
                    kernel_init=kernel_init or default_init(init_scale))


class ChannelDense(nn.Dense):
  """`nn.Dense` over the last axis, applied to its input flattened to [rows, channels].

  Same parameters and values as `nn.Dense`; the flat 2-D dot lets XLA:CPU take the weight
  gradient as one GEMM over all rows instead of a dot with three contracting axes
  (docs/performance.md, "Channel dots on flattened rows")."""

  def __call__(self, inputs):
    flat = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
    return flat.reshape(inputs.shape[:-1] + (self.features,))


def conv1x1(features, init_scale=1., name=None, dtype=None):
  """1×1 convolution with DDPM init, as a Dense over channels."""
  return ChannelDense(features, kernel_init=default_init(init_scale), name=name, dtype=dtype)


def nin(features, init_scale=0.1, name=None, dtype=None):
  """DDPM's "network in network" layer: a Dense over channels with init scale 0.1 (Ho+20)."""
  return ChannelDense(features, kernel_init=default_init(init_scale), name=name, dtype=dtype)


def ddpm_groups(channels):
  """GroupNorm groups in DDPM: always 32 (Ho+20)."""
  del channels
  return 32


def pp_groups(channels):
  """GroupNorm groups in NCSN++/DDPM++: min(C/4, 32) (Song+21 App. H)."""
  return min(channels // 4, 32)


def _same_group(groups, c, dtype):
  """[C, C]: 1 where channels i and j are in the same group (groups of C/G consecutive
  channels), a constant of the compiled program."""
  return np.kron(np.eye(groups), np.ones((c // groups, c // groups))).astype(dtype)


def _group_mean(v, groups):
  """[N, H, W, C] -> [N, 1, 1, C]: each channel's group mean, over H, W and its group's C/G
  channels. The channel sums go to the group sums, each on its group's channels, by one product
  with the 0/1 same-group matrix (exact but for the order of the group's sum; 16–64 channels: a
  negligible product): XLA:CPU fuses it with the sums into one YNNPACK kernel, and the fused
  consumers read an [N, C] array instead of computing each element's group index (EDM's small
  DDPM++ and config A forward 8–9% faster on the 2-core AMD EPYC Zen 5 than `jnp.repeat`); the
  backward pass spreads cotangents by a product too, not by index arithmetic fused into each
  elementwise pass (its train step 3–4% faster). One product, not a group sum and a spread:
  EDM's small DDPM++ has 44 group norms, each 2 such kernels each way instead of 4."""
  _, h, w, c = v.shape
  return jnp.dot(jnp.sum(v, axis=(1, 2)), _same_group(groups, c, v.dtype),
                 precision=jax.lax.Precision.HIGHEST)[:, None, None, :] / (h * w * (c // groups))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _group_norm(x, scale, bias, groups, eps):
  """γ (x − μ_g) / √(σ_g² + ε) + β over NHWC `x` (Wu&He18 Eq. 1-3), σ² = E[x²] − E[x]² as flax.

  The statistics sum over H and W per channel, then over each group's channels: reductions
  over a contiguous channel axis, which YNNPACK runs on all cores (utils.configure_cpu)."""
  mean = _group_mean(x, groups)
  var = jnp.maximum(_group_mean(x * x, groups) - mean * mean, 0.)
  return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


@_group_norm.defjvp
def _group_norm_jvp(groups, eps, primals, tangents):
  """x̂ = (x − μ)/σ; dy = γ/σ · (dx − mean_g dx − x̂ · mean_g(dx x̂)) + x̂ dγ + dβ (Wu&He18 Eq. 1-3
  differentiated). Written so that its transpose (the backward pass) needs only two per-channel
  sums, Σ_hw g and Σ_hw g x̂, shared by dx, dγ and dβ: autodiff of the forward needs four."""
  (x, scale, bias), (dx, dscale, dbias) = primals, tangents
  mean_g = lambda v: _group_mean(v, groups)  # noqa: E731
  mean = checkpoint_name(mean_g(x), 'group_norm_stats')
  rstd = checkpoint_name(jax.lax.rsqrt(jnp.maximum(mean_g(x * x) - mean * mean, 0.) + eps),
                         'group_norm_stats')
  x_hat = (x - mean) * rstd
  a = scale * rstd                                            # [N, 1, 1, C]
  t_scale = dscale - a * mean_g(dx * x_hat)                   # [N, 1, 1, C]: dγ's and x̂'s terms
  t_bias = dbias - a * mean_g(dx)                             # [N, 1, 1, C]: dβ's and μ's terms
  return x_hat * scale + bias, a * dx + x_hat * t_scale + t_bias


def _group_norm_float32(x, scale, bias, groups, eps):
  """`_group_norm` in float32 (statistics included), returned in x's dtype (precision.py)."""
  return _group_norm(x.astype(jnp.float32), scale, bias, groups, eps).astype(x.dtype)


# The backward pass recomputes x̂ from x and the saved statistics instead of storing it.
group_norm_fn = jax.checkpoint(
    _group_norm_float32, static_argnums=(3, 4),
    policy=jax.checkpoint_policies.save_only_these_names('group_norm_stats'))


class GroupNorm(nn.Module):
  """`nn.GroupNorm` for NHWC inputs (same parameters `scale`, `bias`; same outputs and
  derivatives, forward and reverse mode) with a cheaper backward pass: on the 2-core CPU the EDM
  small DDPM++ train step takes ~6% less time (bench/edm_sampler.py)."""
  num_groups: int
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
    bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
    return group_norm_fn(x, scale, bias, self.num_groups, self.epsilon)


def group_norm(channels, groups_fn, name=None):
  return GroupNorm(num_groups=groups_fn(channels), epsilon=1e-6, name=name)


def get_timestep_embedding(timesteps, embedding_dim, max_positions=10000):
  """Sinusoidal embedding [B] -> [B, D]: [sin(t ω_i), cos(t ω_i)], ω_i = M^(−i/(D/2−1)).

  Vaswani+17 §3.5 as used by Ho+20 (max_positions M = 10000); odd D is zero-padded.
  """
  half_dim = embedding_dim // 2
  freqs = jnp.exp(jnp.arange(half_dim, dtype=jnp.float32) * -(math.log(max_positions) / (half_dim - 1)))
  emb = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
  if embedding_dim % 2 == 1:
    emb = jnp.pad(emb, [[0, 0], [0, 1]])
  return emb


def class_onehot(module, config, cond, train, dtype):
  """The one-hot class labels of `cond` [B, K]; in training each row is zeroed with probability
  `model.label_dropout` (EDM's label dropout, for classifier-free guidance)."""
  if 'class_labels' not in cond:
    raise ValueError('model.class_conditional=True: the network needs class labels (cond='
                     "{'class_labels': one-hot [B, K]})")
  onehot = cond['class_labels'].astype(dtype)
  if train and config.model.label_dropout > 0:
    keep = (jax.random.uniform(module.make_rng('dropout'), onehot.shape[:1])
            >= config.model.label_dropout)
    onehot = onehot * keep[:, None]
  return onehot


def add_conditioning(module, temb, cond, config, train):
  """The noise embedding plus class and augmentation embeddings, as EDM's SongUNet (Karras+22
  App. F; NVlabs/edm networks.py): temb + W_c (√K · one-hot) + W_a a, before the embedding MLP.

  Args:
    module: the calling network (for the 'dropout' rng of label dropout).
    temb: [B, E] embedding of the noise label.
    cond: None or a dict with 'class_labels' [B, K] (one-hot rows; zeros = no class, the null
      label of classifier-free guidance) and/or 'augment_labels' [B, model.augment_dim] (the
      non-leaky augmentation's parameters, `augment.py`; absent or zeros when sampling).
  The layers exist only when `model.class_conditional` / `model.augment_dim` ask for them, so
  unconditional parameter trees are unchanged. During training, `model.label_dropout` zeroes
  each sample's class row with that probability (EDM's label_dropout, for guidance).
  """
  m, cond = config.model, cond or {}
  if m.class_conditional:
    onehot = class_onehot(module, config, cond, train, temb.dtype)
    temb = temb + nn.Dense(temb.shape[-1], kernel_init=default_init(), name='label_embed')(
        onehot * math.sqrt(onehot.shape[-1]))
  if m.augment_dim:   # no labels (sampling): zeros, as EDM passes none (the layer has no bias)
    aug = cond['augment_labels'] if 'augment_labels' in cond else jnp.zeros(
        temb.shape[:1] + (m.augment_dim,), temb.dtype)
    temb = temb + nn.Dense(temb.shape[-1], use_bias=False, kernel_init=default_init(),
                           name='augment_embed')(aug.astype(temb.dtype))
  return temb


class AttnBlock(nn.Module):
  """Single-head spatial self-attention with a residual (Ho+20 App. B; Wang+18).

  out = x + NIN(softmax(q kᵀ / √C) v), with q, k, v = NIN(GroupNorm(x)); the sum is divided by √2
  when `skip_rescale` (Song+21 App. H).
  """
  groups_fn: Callable[[int], int] = ddpm_groups
  init_scale: float = 0.
  skip_rescale: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    h = group_norm(c, self.groups_fn, name='norm')(x).reshape(b, hh * ww, c)
    qkv = ChannelDense(3 * c, kernel_init=_stacked_init(default_init(0.1), 3), name='qkv',
                       dtype=self.dtype)(h)
    h = attention(*jnp.split(qkv, 3, axis=-1))
    h = nin(c, self.init_scale, name='out', dtype=self.dtype)(h).reshape(b, hh, ww, c)
    return (x + h) / math.sqrt(2.) if self.skip_rescale else x + h


def attention(q, k, v):
  """softmax(q kᵀ / √C) v over the positions of [B, N, C] q, k, v (Vaswani+17 Eq. 1), logits and
  softmax in float32. 1/√C scales q ([B, N, C]), not the logits ([B, N, N]): XLA:CPU had
  materialised that constant as a [B, N, N] broadcast and multiplied it into every logit. The
  values are the same where C is a power of 4, as 64 (the scaling is exact either way). The
  softmax keeps its own normalisation: dividing the product's rows by its sums instead was
  faster, but moved the likelihood ODE's adaptive solve at rtol 1e-5 by up to 1e-3 bits/dim
  (docs/performance.md)."""
  logits = jnp.einsum('bic,bjc->bij', q.astype(jnp.float32) * (q.shape[-1] ** -0.5),
                      k.astype(jnp.float32))
  return jnp.einsum('bij,bjc->bic', jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)


def _stacked_init(init, n):
  """Initialise an [in, n·out] kernel as n independent [in, out] kernels (fused q, k, v)."""
  def init_fn(key, shape, dtype=jnp.float32):
    parts = [init(k, (shape[0], shape[1] // n), dtype) for k in jax.random.split(key, n)]
    return jnp.concatenate(parts, axis=1)
  return init_fn


class Upsample(nn.Module):
  """Nearest-neighbour ×2 upsampling, then an optional 3×3 conv (Ho+20)."""
  with_conv: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    if self.with_conv:
      return upsample_conv3x3(x.shape[-1], name='conv', dtype=self.dtype)(x)
    return uds.naive_upsample_2d(x)


class Downsample(nn.Module):
  """×2 downsampling by a stride-2 3×3 conv or 2×2 mean pooling (Ho+20)."""
  with_conv: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    if self.with_conv:
      return conv3x3(x.shape[-1], stride=2, name='conv', dtype=self.dtype)(x)
    return uds.naive_downsample_2d(x)


class ResnetBlockDDPM(nn.Module):
  """DDPM residual block: GN→act→conv3×3 (+Dense(act(temb))) → GN→act→dropout→conv3×3.

  The shortcut is a NIN when channels change; `skip_rescale` divides the sum by √2 (Ho+20 App. B,
  Song+21 App. H).
  """
  act: Any
  out_ch: Optional[int] = None
  dropout: float = 0.1
  groups_fn: Callable[[int], int] = ddpm_groups
  init_scale: float = 0.
  skip_rescale: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x, temb=None, train=False):
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = self.act(group_norm(c, self.groups_fn, name='norm_0')(x))
    h = conv3x3(out_ch, name='conv_0', dtype=self.dtype)(h)
    if temb is not None:
      h = h + nn.Dense(out_ch, kernel_init=default_init(), name='temb',
                       dtype=self.dtype)(self.act(temb))[:, None, None, :]
    h = self.act(group_norm(out_ch, self.groups_fn, name='norm_1')(h))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    h = conv3x3(out_ch, init_scale=self.init_scale, name='conv_1', dtype=self.dtype)(h)
    if c != out_ch:
      x = nin(out_ch, name='skip', dtype=self.dtype)(x)
    return (x + h) / math.sqrt(2.) if self.skip_rescale else x + h
