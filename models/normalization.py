"""Normalization layers of NCSN / NCSNv2 (NHWC), chosen by `config.model.normalization`.

Papers:
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution,
                arXiv:1907.05600 (App. A: conditional instance normalization ++).
  Song&Ermon20  Improved Techniques for Training Score-Based Generative Models (NCSNv2),
                arXiv:2006.09011 (Technique 3 drops the conditioning from the normalization).
  Ulyanov+16    Instance Normalization, arXiv:1607.08022.
  Wu&He18       Group Normalization, arXiv:1803.08494.
  Dumoulin+17   A Learned Representation for Artistic Style, arXiv:1610.07629 (conditional IN).

Every layer keeps its parameters as vectors [C] (or an embedding table [num_classes, k*C]); there
are no running statistics, so a model needs no mutable collection.

Numerics follow the original PyTorch code (ermongroup/ncsn, ermongroup/ncsnv2, carried into
score_sde_pytorch), where every published NCSN/NCSNv2 checkpoint was trained: the per-image
variance over H, W is the biased one (as `torch.nn.InstanceNorm2d`), while the variance of the
channel means in InstanceNorm++ and the variance in VarianceNorm are unbiased (`torch.var`).
score_sde's Flax port used the biased variance there; see foreign/score_sde_refinenet.py.
Every layer computes in float32 (statistics and affine parameters) and returns its input's dtype
(`in_float32`; mixed precision: precision.py).
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from utils import Registry

EPS = 1e-5   # added to every variance, as torch.nn.InstanceNorm2d

NORMALIZATIONS = Registry('normalization')
CONDITIONAL_NORMALIZATIONS = Registry('conditional normalization')


def get_normalization(config, conditional=False):
  """The normalization module class for `config.model.normalization`.

  Unconditional layers are called as `norm()(x)`; conditional ones (NCSN v1) as
  `norm()(x, labels)` with integer noise indices `labels` [B] and one embedding row per noise
  level (num_classes = config.model.num_scales).
  """
  name = config.model.normalization
  if conditional:
    cls = CONDITIONAL_NORMALIZATIONS.get(name)
    return functools.partial(cls, num_classes=config.model.num_scales)
  return NORMALIZATIONS.get(name)


def in_float32(call):
  """A normalization's `__call__(self, x, *labels)` run on float32 x, its result cast back to
  x's dtype (mixed precision: statistics in float32, precision.py)."""
  @functools.wraps(call)
  def wrapped(self, x, *labels):
    return call(self, x.astype(jnp.float32), *labels).astype(x.dtype)
  return wrapped


def one_plus_normal(key, shape, dtype=jnp.float32):
  """N(1, 0.02²) initializer for scales, as the original code."""
  return 1. + 0.02 * jax.random.normal(key, shape, dtype)


def _instance_normalize(x):
  """(x − μ_k) / √(s_k² + ε) per image and channel over H, W (Ulyanov+16)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.var(x, axis=(1, 2), keepdims=True)
  return (x - mean) / jnp.sqrt(var + EPS)


def _standardized_channel_means(x):
  """(μ_k − m) / √(v + ε), m and v the mean and unbiased variance of the channel means μ_k.

  This is the term that InstanceNorm++ adds back so that the relative means of the feature maps
  survive the normalization (Song&Ermon19 App. A). Returns [B, 1, 1, C].
  """
  means = jnp.mean(x, axis=(1, 2))
  m = jnp.mean(means, axis=-1, keepdims=True)
  v = jnp.var(means, axis=-1, keepdims=True, ddof=1)
  return ((means - m) / jnp.sqrt(v + EPS))[:, None, None, :]


def _rows(table, labels):
  """Embedding rows for integer `labels` [B], shaped [B, 1, 1, D] to broadcast over H, W."""
  return table[labels.astype(jnp.int32)][:, None, None, :]


@NORMALIZATIONS.register('InstanceNorm++')
class InstanceNorm2dPlus(nn.Module):
  """InstanceNorm++: γ ⊙ (IN(x) + α ⊙ standardized channel means) + β (Song&Ermon19 App. A)."""
  bias: bool = True   # learn β

  @in_float32
  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    alpha = self.param('alpha', one_plus_normal, (c,))
    gamma = self.param('gamma', one_plus_normal, (c,))
    h = _instance_normalize(x) + _standardized_channel_means(x) * alpha  # Song&Ermon19 App. A
    h = gamma * h
    if self.bias:
      h = h + self.param('beta', nn.initializers.zeros, (c,))
    return h


@CONDITIONAL_NORMALIZATIONS.register('InstanceNorm++')
class ConditionalInstanceNorm2dPlus(nn.Module):
  """InstanceNorm++ with γ, α, β looked up per noise index (Song&Ermon19 App. A).

  The embedding row is [γ | α | β] (PyTorch's `embed.weight` layout), initialised N(1, 0.02²)
  for γ, α and 0 for β.
  """
  num_classes: int    # number of noise levels
  bias: bool = True   # learn β

  @in_float32
  @nn.compact
  def __call__(self, x, labels):
    c = x.shape[-1]
    k = 3 if self.bias else 2

    def init(key, shape, dtype=jnp.float32):
      return jnp.concatenate([one_plus_normal(key, (shape[0], 2 * c), dtype),
                              jnp.zeros((shape[0], shape[1] - 2 * c), dtype)], axis=-1)

    table = nn.Embed(self.num_classes, k * c, embedding_init=init, name='embed').embedding
    rows = jnp.split(_rows(table, labels), k, axis=-1)
    gamma, alpha = rows[0], rows[1]
    h = _instance_normalize(x) + _standardized_channel_means(x) * alpha  # Song&Ermon19 App. A
    h = gamma * h
    return h + rows[2] if self.bias else h


@NORMALIZATIONS.register('InstanceNorm')
class InstanceNorm2d(nn.Module):
  """Affine instance normalization γ ⊙ IN(x) + β (Ulyanov+16)."""
  bias: bool = True

  @in_float32
  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = _instance_normalize(x) * self.param('scale', nn.initializers.ones, (c,))
    if self.bias:
      h = h + self.param('bias', nn.initializers.zeros, (c,))
    return h


@CONDITIONAL_NORMALIZATIONS.register('InstanceNorm')
class ConditionalInstanceNorm2d(nn.Module):
  """Conditional instance normalization γ_i ⊙ IN(x) + β_i (Dumoulin+17; NCSN's ablation).

  Row layout [γ | β]; γ ~ N(1, 0.02²) (the original comment's intent; its code drew U[0, 1)).
  """
  num_classes: int
  bias: bool = True

  @in_float32
  @nn.compact
  def __call__(self, x, labels):
    c = x.shape[-1]
    k = 2 if self.bias else 1

    def init(key, shape, dtype=jnp.float32):
      return jnp.concatenate([one_plus_normal(key, (shape[0], c), dtype),
                              jnp.zeros((shape[0], shape[1] - c), dtype)], axis=-1)

    table = nn.Embed(self.num_classes, k * c, embedding_init=init, name='embed').embedding
    rows = jnp.split(_rows(table, labels), k, axis=-1)
    h = rows[0] * _instance_normalize(x)
    return h + rows[1] if self.bias else h


def _variance_normalize(x):
  """x / √(s² + ε) with s² the unbiased variance over H, W: the mean is kept."""
  return x / jnp.sqrt(jnp.var(x, axis=(1, 2), keepdims=True, ddof=1) + EPS)


@NORMALIZATIONS.register('VarianceNorm')
class VarianceNorm2d(nn.Module):
  """Variance-only normalization α ⊙ x / s (ablation of Song&Ermon19 App. A)."""

  @in_float32
  @nn.compact
  def __call__(self, x):
    return _variance_normalize(x) * self.param('alpha', one_plus_normal, (x.shape[-1],))


@CONDITIONAL_NORMALIZATIONS.register('VarianceNorm')
class ConditionalVarianceNorm2d(nn.Module):
  """Variance-only normalization with a scale per noise index."""
  num_classes: int

  @in_float32
  @nn.compact
  def __call__(self, x, labels):
    table = nn.Embed(self.num_classes, x.shape[-1], embedding_init=one_plus_normal,
                     name='embed').embedding
    return _rows(table, labels) * _variance_normalize(x)


@NORMALIZATIONS.register('GroupNorm')
class GroupNorm2d(nn.Module):
  """Group normalization (Wu&He18) with min(C // 4, 32) groups: Flax's 32 for C ≥ 128."""
  epsilon: float = 1e-6   # Flax's default, which score_sde's GroupNorm used

  @in_float32
  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    return layers.group_norm_fn(x, self.param('scale', nn.initializers.ones, (c,)),
                                self.param('bias', nn.initializers.zeros, (c,)),
                                max(1, min(c // 4, 32)), self.epsilon)
