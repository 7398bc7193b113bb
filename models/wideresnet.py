"""The noise-conditional Wide ResNet classifier of Song+21 App. I.4 (score_sde's
models/wideresnet_noise_conditional.py): p_t(y | x) for class-conditional sampling (Eq. 14).

Papers:
  Zagoruyko&Komodakis16  Wide Residual Networks, arXiv:1605.07146 (WRN-28-10: 4 blocks per
                         group, width ×10; pre-activation blocks, §2).
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. I.4).

Conditioned on log σ, the marginal std of the perturbation (VE: σ(t)), through Gaussian Fourier
features (scale 16) and two dense layers; each block adds a projection of it after its first
convolution. Each image is standardised first (mean 0, std max(std, 1/√D)). Norms are GroupNorm with min(C/4, 32)
groups; the shortcut is the identity or, where the width changes, average pooling and zero
channels. Parameter names are score_sde's, so its classifier checkpoints load unchanged
(`foreign/classifier.py`). `dtype` is the compute dtype of the convolutions and the blocks' dense
layers (precision.py's policy: parameters float32, GroupNorm statistics, the noise embedding and
the logits float32).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models import layers
from models.layerspp import GaussianFourierProjection

EMBEDDING = 128          # Fourier features of log σ: 2 × 128, then dense layers of 4 × 128


def _norm_relu(x, name):
  return nn.relu(layers.GroupNorm(num_groups=layers.pp_groups(x.shape[-1]), epsilon=1e-5,
                                  name=name)(x.astype(jnp.float32)))


def _shortcut(x, out):
  """x to out's shape: average-pooled by the stride and zero-padded in channels where the width
  changes (the identity otherwise)."""
  if x.shape[-1] == out.shape[-1]:
    return x
  stride = x.shape[-2] // out.shape[-2]
  x = nn.avg_pool(x, (stride, stride), (stride, stride))
  return jnp.pad(x, [(0, 0)] * 3 + [(0, out.shape[-1] - x.shape[-1])])


class WideResnetBlock(nn.Module):
  """Pre-activation block: GroupNorm-ReLU, 3×3 conv (strided), + dense(swish(temb)),
  GroupNorm-ReLU, 3×3 conv. The first block of the network activates its shortcut too."""
  channels: int
  stride: int = 1
  activate_before_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb):
    h = _norm_relu(x, 'init_bn')
    if self.activate_before_residual:
      x = h
    h = nn.Conv(self.channels, (3, 3), (self.stride, self.stride), padding='SAME',
                use_bias=False, dtype=self.dtype, name='conv1')(h)
    h = h + nn.Dense(self.channels, dtype=self.dtype, name='Dense_0')(
        nn.swish(temb))[:, None, None, :]
    h = nn.Conv(self.channels, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype,
                name='conv2')(_norm_relu(h, 'bn_2'))
    return h + _shortcut(x, h).astype(h.dtype)


class WideResnetGroup(nn.Module):
  blocks: int
  channels: int
  stride: int = 1
  first: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb):
    for i in range(self.blocks):
      x = WideResnetBlock(self.channels, self.stride if i == 0 else 1, self.first and i == 0,
                          self.dtype, name=f'WideResnetBlock_{i}')(x, temb)
    return x


class NoiseConditionalWideResNet(nn.Module):
  """Logits [B, num_classes] of images x [B, H, W, C] perturbed with noise of std sigma [B]."""
  blocks_per_group: int = 4
  widen: int = 10
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, sigma):
    d = np.prod(x.shape[1:])
    axes = (1, 2, 3)
    mean, std = jnp.mean(x, axis=axes, keepdims=True), jnp.std(x, axis=axes, keepdims=True)
    x = (x - mean) / jnp.maximum(std, 1. / np.sqrt(d))
    temb = GaussianFourierProjection(EMBEDDING, 16.)(jnp.log(sigma))
    temb = nn.Dense(4 * EMBEDDING, name='Dense_0')(temb)
    temb = nn.Dense(4 * EMBEDDING, name='Dense_1')(nn.swish(temb))
    x = nn.Conv(16, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype,
                name='init_conv')(x)
    for g, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
      x = WideResnetGroup(self.blocks_per_group, width * self.widen, stride, g == 0, self.dtype,
                          name=f'WideResnetGroup_{g}')(x, temb)
    x = jnp.mean(_norm_relu(x, 'pre-pool-bn'), axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=jnp.float32, name='Dense_2')(x)
