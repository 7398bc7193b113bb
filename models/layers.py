"""DDPM building blocks (NHWC), shared by `ddpm` and, through `layerspp`, by NCSN++/DDPM++.

Papers:
  Ho+20     Denoising Diffusion Probabilistic Models, arXiv:2006.11239 (App. B: the U-Net).
  Vaswani+17  Attention Is All You Need, arXiv:1706.03762 (sinusoidal embedding, §3.5).
  Wang+18   Non-local Neural Networks, arXiv:1711.07971 (the single-head spatial attention).
  Song+21   Score-Based Generative Modeling through SDEs, arXiv:2011.13456.

Parameter layout: convolutions are `nn.Conv` (kernel HWIO), 1×1 convolutions and the DDPM "NIN"
layers are `nn.Dense` over channels (kernel [in, out]); attention keeps q, k, v in one fused Dense.
"""
import functools
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from utils import Registry

ACTIVATIONS = Registry('config.model.nonlinearity')
ACTIVATIONS.register('elu')(nn.elu)
ACTIVATIONS.register('relu')(nn.relu)
ACTIVATIONS.register('lrelu')(lambda x: nn.leaky_relu(x, negative_slope=0.2))
ACTIVATIONS.register('swish')(nn.swish)


def get_act(config):
  """The activation named by `config.model.nonlinearity` (elu | relu | lrelu | swish)."""
  return ACTIVATIONS.get(config.model.nonlinearity.lower())


def check_option(field, value, valid):
  """`value.lower()` if it is one of `valid`, else a ValueError naming `config.<field>`."""
  if not isinstance(value, str) or value.lower() not in valid:
    raise ValueError(f'config.{field}={value!r} is not valid; choose one of {", ".join(valid)}')
  return value.lower()


class Dropout(nn.Module):
  """Inverted dropout (Srivastava+14) that draws 16 random bits per element instead of 32.

  An element is kept when its 16-bit draw u satisfies u ≥ t = round(rate·2¹⁶), i.e. with
  probability q = 1 − t/2¹⁶ (the rate rounded to a multiple of 2⁻¹⁶), and kept elements are
  scaled by 1/q, so E[output] = x exactly. Two draws share one 32-bit threefry word: half of
  `nn.Dropout`'s random-number work, which took ~10% of EDM's small DDPM++ train step on CPU.
  """
  rate: float

  @nn.compact
  def __call__(self, x, deterministic):
    t = round(self.rate * 2 ** 16)
    if deterministic or t == 0:
      return x
    if t >= 2 ** 16:
      return jnp.zeros_like(x)
    words = jax.random.bits(self.make_rng('dropout'), ((x.size + 1) // 2,), jnp.uint32)
    u = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:x.size].reshape(x.shape)
    return jnp.where(u >= t, x * (2 ** 16 / (2 ** 16 - t)), 0).astype(x.dtype)


def default_init(scale=1.):
  """DDPM's initializer: variance_scaling(scale, fan_avg, uniform); scale 0 means 1e-10 (Ho+20)."""
  return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, 'fan_avg', 'uniform')


def conv3x3(features, init_scale=1., stride=1, name=None):
  """3×3 'SAME' convolution with DDPM init; stride 2 pads (0, 1) like TF's SAME."""
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding='SAME',
                 kernel_init=default_init(init_scale), name=name)


def conv1x1(features, init_scale=1., name=None):
  """1×1 convolution with DDPM init, as a Dense over channels."""
  return nn.Dense(features, kernel_init=default_init(init_scale), name=name)


def nin(features, init_scale=0.1, name=None):
  """DDPM's "network in network" layer: a Dense over channels with init scale 0.1 (Ho+20)."""
  return nn.Dense(features, kernel_init=default_init(init_scale), name=name)


def ddpm_groups(channels):
  """GroupNorm groups in DDPM: always 32 (Ho+20)."""
  del channels
  return 32


def pp_groups(channels):
  """GroupNorm groups in NCSN++/DDPM++: min(C/4, 32) (Song+21 App. H)."""
  return min(channels // 4, 32)


def _group_stats(x, groups, eps, per_channel_first):
  """Per-(image, group) mean and 1/√(var + ε) of NHWC `x`, repeated to [N, 1, 1, C].

  var = E[x²] − E[x]² (clipped at 0), as flax's `nn.GroupNorm` computes it (Wu & He 2018, Eq. 1–2).
  Summing per channel first is faster inside a train step on XLA:CPU, summing over the grouped
  axes at once is faster in a forward pass (EDM small DDPM++: ~5% of the forward).
  """
  n, h, w, c = x.shape
  if per_channel_first:
    s1, s2 = (jnp.sum(v, axis=(1, 2)).reshape(n, groups, -1).sum(-1) for v in (x, x * x))
  else:
    x_g = x.reshape(n, h, w, groups, c // groups)
    s1, s2 = jnp.sum(x_g, axis=(1, 2, 4)), jnp.sum(x_g * x_g, axis=(1, 2, 4))
  k = h * w * (c // groups)                    # elements per group
  mean = s1 / k
  var = jnp.maximum(s2 / k - mean * mean, 0.)
  return _per_channel(mean, c), _per_channel(jax.lax.rsqrt(var + eps), c)


def _per_channel(v, c):
  """[N, G] group values -> [N, 1, 1, C] (each group's value on its C/G channels)."""
  return jnp.repeat(v, c // v.shape[1], axis=1)[:, None, None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm_fn(x, scale, bias, groups, eps):
  """GroupNorm of NHWC `x`: γ (x − μ_g)/σ_g + β, with a hand-written backward pass.

  The backward pass is the textbook one (x̂ = (x − μ)/σ, ĝ = γ·dy; dx = (ĝ − mean_g ĝ −
  x̂ · mean_g(ĝ x̂))/σ), built from two per-channel sums; autodiff of the statistics costs
  ~10 ms more per EDM small DDPM++ train step on the 2-core CPU.
  """
  mean, rstd = _group_stats(x, groups, eps, per_channel_first=False)
  return (x - mean) * (rstd * scale) + bias


def _group_norm_fwd(x, scale, bias, groups, eps):
  mean, rstd = _group_stats(x, groups, eps, per_channel_first=True)
  return (x - mean) * (rstd * scale) + bias, (x, scale, mean, rstd)


def _group_norm_bwd(groups, eps, residuals, dy):
  del eps
  x, scale, mean, rstd = residuals
  n, h, w, c = x.shape
  x_hat = (x - mean) * rstd
  sum_dy, sum_dy_x_hat = jnp.sum(dy, axis=(1, 2)), jnp.sum(dy * x_hat, axis=(1, 2))   # [N, C]
  k = h * w * (c // groups)
  mean_g = lambda v: _per_channel((v * scale).reshape(n, groups, -1).sum(-1) / k, c)  # noqa: E731
  dx = rstd * (dy * scale - mean_g(sum_dy) - x_hat * mean_g(sum_dy_x_hat))
  return dx, jnp.sum(sum_dy_x_hat, 0), jnp.sum(sum_dy, 0)


group_norm_fn.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nn.Module):
  """`nn.GroupNorm` for NHWC inputs (same parameters `scale`, `bias` and outputs; Wu & He 2018)
  through `group_norm_fn`."""
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


class AttnBlock(nn.Module):
  """Single-head spatial self-attention with a residual (Ho+20 App. B; Wang+18).

  out = x + NIN(softmax(q kᵀ / √C) v), with q, k, v = NIN(GroupNorm(x)); the sum is divided by √2
  when `skip_rescale` (Song+21 App. H).
  """
  groups_fn: Callable[[int], int] = ddpm_groups
  init_scale: float = 0.
  skip_rescale: bool = False

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    h = group_norm(c, self.groups_fn, name='norm')(x).reshape(b, hh * ww, c)
    qkv = nn.Dense(3 * c, kernel_init=_stacked_init(default_init(0.1), 3), name='qkv')(h)
    q, k, v = jnp.split(qkv, 3, axis=-1)
    w = jax.nn.softmax(jnp.einsum('bic,bjc->bij', q, k) * (c ** -0.5), axis=-1)
    h = jnp.einsum('bij,bjc->bic', w, v)
    h = nin(c, self.init_scale, name='out')(h).reshape(b, hh, ww, c)
    return (x + h) / math.sqrt(2.) if self.skip_rescale else x + h


def _stacked_init(init, n):
  """Initialise an [in, n·out] kernel as n independent [in, out] kernels (fused q, k, v)."""
  def init_fn(key, shape, dtype=jnp.float32):
    parts = [init(k, (shape[0], shape[1] // n), dtype) for k in jax.random.split(key, n)]
    return jnp.concatenate(parts, axis=1)
  return init_fn


class Upsample(nn.Module):
  """Nearest-neighbour ×2 upsampling, then an optional 3×3 conv (Ho+20)."""
  with_conv: bool = False

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)
    return conv3x3(c, name='conv')(x) if self.with_conv else x


class Downsample(nn.Module):
  """×2 downsampling by a stride-2 3×3 conv or 2×2 mean pooling (Ho+20)."""
  with_conv: bool = False

  @nn.compact
  def __call__(self, x):
    if self.with_conv:
      return conv3x3(x.shape[-1], stride=2, name='conv')(x)
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


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

  @nn.compact
  def __call__(self, x, temb=None, train=False):
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = self.act(group_norm(c, self.groups_fn, name='norm_0')(x))
    h = conv3x3(out_ch, name='conv_0')(h)
    if temb is not None:
      h = h + nn.Dense(out_ch, kernel_init=default_init(), name='temb')(self.act(temb))[:, None, None, :]
    h = self.act(group_norm(out_ch, self.groups_fn, name='norm_1')(h))
    h = Dropout(self.dropout)(h, deterministic=not train)
    h = conv3x3(out_ch, init_scale=self.init_scale, name='conv_1')(h)
    if c != out_ch:
      x = nin(out_ch, name='skip')(x)
    return (x + h) / math.sqrt(2.) if self.skip_rescale else x + h
