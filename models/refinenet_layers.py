"""RefineNet layers and trunk of NCSN (v1) and NCSNv2, in Flax linen (NHWC).

Papers:
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution,
                arXiv:1907.05600 (§4.2, App. A: the dilated RefineNet "CondRefineNetDilated").
  Song&Ermon20  Improved Techniques for Training Score-Based Generative Models (NCSNv2),
                arXiv:2006.09011 (Technique 3: the same RefineNet, unconditional).
  Lin+17        RefineNet: Multi-Path Refinement Networks, arXiv:1611.06612 (RCU, MSF, CRP).
  He+16         Identity Mappings in Deep Residual Networks, arXiv:1603.05027 (pre-activation).

Submodules are named after the attributes of the original PyTorch modules (`res1_0/conv1`,
`refine2/adapt_convs_0/1_2_conv`, `crp/convs_1`, ...), so an official state dict converts by
renaming (foreign/score_sde_refinenet.py). Conditional layers take integer noise indices `labels`
[B] and pass them to every normalization.
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


INTERPOLATIONS = ('bilinear', 'nearest_neighbor')


def _uniform(bound):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _ncsn_conv(x, features, size, dilation, use_bias, name):
  """Conv with PyTorch's default init, which the NCSN models were trained from.

  Kernel ~ U(±1/√fan_in) = variance_scaling(1/3, 'fan_in', 'uniform'); bias ~ U(±1/√fan_in).
  'SAME' padding keeps H, W (PyTorch padding = dilation). It computes in x's dtype (the trunk's
  input is cast to `model.dtype`: precision.py); the float32 parameters are cast to it.
  """
  fan_in = size * size * x.shape[-1]
  return nn.Conv(features, (size, size), padding='SAME', kernel_dilation=(dilation, dilation),
                 use_bias=use_bias,
                 kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
                 bias_init=_uniform(1 / math.sqrt(fan_in)), name=name, dtype=x.dtype)(x)


def ncsn_conv1x1(x, features, use_bias=True, name=None):
  """1×1 convolution of `x` [B, H, W, C] with PyTorch-style init."""
  return _ncsn_conv(x, features, 1, 1, use_bias, name)


def ncsn_conv3x3(x, features, dilation=1, use_bias=True, name=None):
  """3×3 (optionally dilated) convolution of `x` [B, H, W, C] with PyTorch-style init."""
  return _ncsn_conv(x, features, 3, dilation, use_bias, name)


def _align_corners_matrix(n_in, n_out):
  """[n_out, n_in] linear-interpolation weights with aligned corners (PyTorch's choice)."""
  w = np.zeros((n_out, n_in), np.float32)
  if n_in == 1 or n_out == 1:
    w[:, 0] = 1.
    return w
  src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
  lo = np.minimum(np.floor(src).astype(int), n_in - 2)
  frac = (src - lo).astype(np.float32)
  w[np.arange(n_out), lo] = 1. - frac
  w[np.arange(n_out), lo + 1] += frac
  return w


def resize(x, shape, interpolation):
  """Resize `x` [B, H, W, C] to spatial `shape` (h, w).

  'bilinear' aligns the corners, as `F.interpolate(..., align_corners=True)` in the original
  NCSN/NCSNv2 code; 'nearest_neighbor' is `jax.image.resize(..., 'nearest')` as score_sde.
  """
  if tuple(x.shape[1:3]) == tuple(shape):
    return x
  if interpolation == 'nearest_neighbor':
    return jax.image.resize(x, (x.shape[0], *shape, x.shape[-1]), 'nearest')
  wh = jnp.asarray(_align_corners_matrix(x.shape[1], shape[0]), x.dtype)
  ww = jnp.asarray(_align_corners_matrix(x.shape[2], shape[1]), x.dtype)
  return jnp.einsum('ph,qw,bhwc->bpqc', wh, ww, x)


class CRPBlock(nn.Module):
  """Chained residual pooling (Lin+17 §3.2): x ← act(x); x += conv(maxpool₅(path)) per stage."""
  features: int
  n_stages: int = 2
  act: Any = nn.relu

  @nn.compact
  def __call__(self, x):
    x = self.act(x)
    path = x
    for i in range(self.n_stages):
      path = nn.max_pool(path, (5, 5), strides=(1, 1), padding='SAME')
      path = ncsn_conv3x3(path, self.features, use_bias=False, name=f'convs_{i}')
      x = x + path
    return x


class CondCRPBlock(nn.Module):
  """Noise-conditional chained residual pooling: norm → 5×5 average pool → conv per stage."""
  features: int
  normalizer: Any
  n_stages: int = 2
  act: Any = nn.relu

  @nn.compact
  def __call__(self, x, labels):
    x = self.act(x)
    path = x
    for i in range(self.n_stages):
      path = self.normalizer(name=f'norms_{i}')(path, labels)
      path = nn.avg_pool(path, (5, 5), strides=(1, 1), padding='SAME', count_include_pad=True)
      path = ncsn_conv3x3(path, self.features, use_bias=False, name=f'convs_{i}')
      x = x + path
    return x


class RCUBlock(nn.Module):
  """Residual conv units (Lin+17 §3.2): `n_blocks` × (n_stages × (act → conv3×3) + skip)."""
  features: int
  n_blocks: int
  n_stages: int = 2
  act: Any = nn.relu

  @nn.compact
  def __call__(self, x):
    for i in range(self.n_blocks):
      residual = x
      for j in range(self.n_stages):
        x = ncsn_conv3x3(self.act(x), self.features, use_bias=False, name=f'{i + 1}_{j + 1}_conv')
      x = x + residual
    return x


class CondRCUBlock(nn.Module):
  """Noise-conditional residual conv units: norm → act → conv3×3 per stage."""
  features: int
  n_blocks: int
  normalizer: Any
  n_stages: int = 2
  act: Any = nn.relu

  @nn.compact
  def __call__(self, x, labels):
    for i in range(self.n_blocks):
      residual = x
      for j in range(self.n_stages):
        x = self.normalizer(name=f'{i + 1}_{j + 1}_norm')(x, labels)
        x = ncsn_conv3x3(self.act(x), self.features, use_bias=False, name=f'{i + 1}_{j + 1}_conv')
      x = x + residual
    return x


class MSFBlock(nn.Module):
  """Multi-resolution fusion (Lin+17 §3.2): Σ_i resize(conv3×3(x_i)) at `shape`."""
  features: int
  shape: Sequence[int]
  interpolation: str = 'bilinear'

  @nn.compact
  def __call__(self, xs):
    out = 0.
    for i, x in enumerate(xs):
      h = ncsn_conv3x3(x, self.features, name=f'convs_{i}')
      out = out + resize(h, self.shape, self.interpolation)
    return out


class CondMSFBlock(nn.Module):
  """Noise-conditional multi-resolution fusion: Σ_i resize(conv3×3(norm(x_i)))."""
  features: int
  shape: Sequence[int]
  normalizer: Any
  interpolation: str = 'bilinear'

  @nn.compact
  def __call__(self, xs, labels):
    out = 0.
    for i, x in enumerate(xs):
      h = self.normalizer(name=f'norms_{i}')(x, labels)
      h = ncsn_conv3x3(h, self.features, name=f'convs_{i}')
      out = out + resize(h, self.shape, self.interpolation)
    return out


class RefineBlock(nn.Module):
  """RefineNet block (Lin+17 §3.2): RCU per input → MSF (if > 1 input) → CRP → RCU."""
  features: int
  output_shape: Sequence[int]
  act: Any = nn.relu
  interpolation: str = 'bilinear'
  end: bool = False      # last block: 3 output RCUs instead of 1

  @nn.compact
  def __call__(self, xs):
    hs = [RCUBlock(x.shape[-1], 2, act=self.act, name=f'adapt_convs_{i}')(x)
          for i, x in enumerate(xs)]
    h = hs[0]
    if len(hs) > 1:
      h = MSFBlock(self.features, self.output_shape, self.interpolation, name='msf')(hs)
    h = CRPBlock(self.features, act=self.act, name='crp')(h)
    return RCUBlock(self.features, 3 if self.end else 1, act=self.act, name='output_convs')(h)


class CondRefineBlock(nn.Module):
  """Noise-conditional RefineNet block of NCSN v1 (Song&Ermon19 App. A)."""
  features: int
  output_shape: Sequence[int]
  normalizer: Any
  act: Any = nn.relu
  interpolation: str = 'bilinear'
  end: bool = False

  @nn.compact
  def __call__(self, xs, labels):
    hs = [CondRCUBlock(x.shape[-1], 2, self.normalizer, act=self.act,
                       name=f'adapt_convs_{i}')(x, labels) for i, x in enumerate(xs)]
    h = hs[0]
    if len(hs) > 1:
      h = CondMSFBlock(self.features, self.output_shape, self.normalizer, self.interpolation,
                       name='msf')(hs, labels)
    h = CondCRPBlock(self.features, self.normalizer, act=self.act, name='crp')(h, labels)
    return CondRCUBlock(self.features, 3 if self.end else 1, self.normalizer, act=self.act,
                        name='output_convs')(h, labels)


class ConvMeanPool(nn.Module):
  """Conv (stride 1, 'SAME') followed by 2×2 mean pooling."""
  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x):
    h = _ncsn_conv(x, self.features, self.kernel_size, 1, True, 'conv')
    return (h[:, ::2, ::2] + h[:, 1::2, ::2] + h[:, ::2, 1::2] + h[:, 1::2, 1::2]) / 4.


def _residual_block(x, norm, act, features, resample, dilation):
  """Pre-activation residual block (He+16) shared by both variants; `norm(name, h)` normalizes.

  resample='down' halves H, W with ConvMeanPool when dilation == 1; with dilation > 1 it keeps
  H, W and the dilated convs widen the receptive field instead (Song&Ermon19 App. A).
  """
  c_in = x.shape[-1]
  h = act(norm('normalize1', x))
  if resample == 'down':
    h = ncsn_conv3x3(h, c_in, dilation, name='conv1')
    h = act(norm('normalize2', h))
    if dilation > 1:
      h = ncsn_conv3x3(h, features, dilation, name='conv2')
      shortcut = ncsn_conv3x3(x, features, dilation, name='shortcut')
    else:
      h = ConvMeanPool(features, name='conv2')(h)
      shortcut = ConvMeanPool(features, kernel_size=1, name='shortcut')(x)
    return h + shortcut
  if resample is not None:
    raise ValueError(f"unknown resample {resample!r}; valid: 'down', None")
  h = ncsn_conv3x3(h, features, dilation, name='conv1')
  h = act(norm('normalize2', h))
  h = ncsn_conv3x3(h, features, dilation, name='conv2')
  if features == c_in:
    return h + x
  if dilation > 1:
    return h + ncsn_conv3x3(x, features, dilation, name='shortcut')
  return h + ncsn_conv1x1(x, features, name='shortcut')


class ResidualBlock(nn.Module):
  """Residual block of the NCSNv2 backbone (unconditional normalization)."""
  features: int
  normalization: Any
  resample: Any = None   # None or 'down'
  act: Any = nn.elu
  dilation: int = 1

  @nn.compact
  def __call__(self, x):
    def norm(name, h):
      return self.normalization(name=name)(h)
    return _residual_block(x, norm, self.act, self.features, self.resample, self.dilation)


class ConditionalResidualBlock(nn.Module):
  """Residual block of the NCSN v1 backbone: every normalization sees the noise index."""
  features: int
  normalization: Any
  resample: Any = None
  act: Any = nn.elu
  dilation: int = 1

  @nn.compact
  def __call__(self, x, labels):
    def norm(name, h):
      return self.normalization(name=name)(h, labels)
    return _residual_block(x, norm, self.act, self.features, self.resample, self.dilation)
