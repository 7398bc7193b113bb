"""The KL autoencoder of latent diffusion (Rombach+22), as diffusers' `AutoencoderKL` lays it out.

Papers:
  Rombach+22  High-Resolution Image Synthesis with Latent Diffusion Models, arXiv:2112.10752
    (§3: x ≈ D(E(x)); z = E(x) downsampled by f = 2^(levels − 1), the diffusion model runs on z).
  Wang+23  Patch Diffusion, arXiv:2304.12526 (its 256-px models: ADM on z of Stable Diffusion's
    `sd-vae-ft-ema`, z scaled by 0.18215 to about unit variance).

Encoder: conv_in, per level `layers` residual blocks and (but the last level) a stride-2
convolution padded (0, 1) on each spatial axis, a middle block (residual, one-head self-attention,
residual), GroupNorm, SiLU, conv_out to 2·latent channels (mean, log-variance), then quant_conv
(1×1). Decoder: post_quant_conv (1×1), conv_in, the middle block, per level (widest first)
`layers + 1` residual blocks and (but the last) nearest-neighbour ×2 upsampling and a 3×3
convolution, GroupNorm, SiLU, conv_out to RGB in [-1, 1]. GroupNorm: 32 groups, ε = 1e-6.
Parameter names follow diffusers' (`down_blocks_0/resnets_1/conv2`), so
`foreign/autoencoder.py` maps a diffusers file onto them by renaming alone.
"""
from typing import NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers


class Arch(NamedTuple):
  """What a diffusers AutoencoderKL file fixes (foreign/autoencoder.py reads it off the shapes)."""
  channels: Tuple[int, ...]       # block_out_channels, one per level
  layers: int                     # layers_per_block
  latent_channels: int
  quant_convs: bool = True        # quant_conv / post_quant_conv present (Stable Diffusion: yes)
  image_channels: int = 3

  @property
  def factor(self):
    """Pixels per latent along each axis."""
    return 2 ** (len(self.channels) - 1)


def _norm(name):
  return layers.GroupNorm(num_groups=32, epsilon=1e-6, name=name)   # = nn.GroupNorm, faster on CPU


class Resnet(nn.Module):
  """diffusers ResnetBlock2D without a time embedding: x + conv(silu(gn(conv(silu(gn(x))))))."""
  out: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.out, (3, 3), padding=1, name='conv1')(nn.silu(_norm('norm1')(x)))
    h = nn.Conv(self.out, (3, 3), padding=1, name='conv2')(nn.silu(_norm('norm2')(h)))
    if x.shape[-1] != self.out:
      x = nn.Conv(self.out, (1, 1), name='conv_shortcut')(x)
    return x + h


class Attention(nn.Module):
  """One-head self-attention over the H·W positions after GroupNorm, residual (Rombach+22's
  mid-block AttnBlock)."""

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = _norm('group_norm')(x).reshape(b, h * w, c)
    q, k, v = (nn.Dense(c, name=n)(y) for n in ('to_q', 'to_k', 'to_v'))
    out = nn.Dense(c, name='to_out_0')(layers.attention(q, k, v))
    return x + out.reshape(b, h, w, c)


class MidBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = Resnet(c, name='resnets_0')(x)
    x = Attention(name='attentions_0')(x)
    return Resnet(c, name='resnets_1')(x)


class Encoder(nn.Module):
  arch: Arch

  @nn.compact
  def __call__(self, x):
    a = self.arch
    x = nn.Conv(a.channels[0], (3, 3), padding=1, name='conv_in')(x)
    for level, ch in enumerate(a.channels):
      block = f'down_blocks_{level}'
      for i in range(a.layers):
        x = Resnet(ch, name=f'{block}_resnets_{i}')(x)
      if level < len(a.channels) - 1:   # diffusers Downsample2D(padding=0): pad right/bottom by 1
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        x = nn.Conv(ch, (3, 3), strides=2, padding='VALID', name=f'{block}_downsamplers_0_conv')(x)
    x = MidBlock(name='mid_block')(x)
    x = nn.silu(_norm('conv_norm_out')(x))
    return nn.Conv(2 * a.latent_channels, (3, 3), padding=1, name='conv_out')(x)


class Decoder(nn.Module):
  arch: Arch

  @nn.compact
  def __call__(self, z):
    a = self.arch
    x = nn.Conv(a.channels[-1], (3, 3), padding=1, name='conv_in')(z)
    x = MidBlock(name='mid_block')(x)
    for i, ch in enumerate(reversed(a.channels)):
      block = f'up_blocks_{i}'
      for j in range(a.layers + 1):
        x = Resnet(ch, name=f'{block}_resnets_{j}')(x)
      if i < len(a.channels) - 1:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')
        x = nn.Conv(ch, (3, 3), padding=1, name=f'{block}_upsamplers_0_conv')(x)
    x = nn.silu(_norm('conv_norm_out')(x))
    return nn.Conv(a.image_channels, (3, 3), padding=1, name='conv_out')(x)


class AutoencoderKL(nn.Module):
  """`encode(x)` -> (mean, log-variance) of q(z | x); `decode(z)` -> image. x, z: [B, H, W, C]."""
  arch: Arch

  def setup(self):
    a = self.arch
    self.encoder, self.decoder = Encoder(a), Decoder(a)
    if a.quant_convs:
      self.quant_conv = nn.Conv(2 * a.latent_channels, (1, 1))
      self.post_quant_conv = nn.Conv(a.latent_channels, (1, 1))

  def encode(self, x):
    moments = self.encoder(x)
    if self.arch.quant_convs:
      moments = self.quant_conv(moments)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30., 20.)      # diffusers DiagonalGaussianDistribution

  def decode(self, z):
    return self.decoder(self.post_quant_conv(z) if self.arch.quant_convs else z)

  def __call__(self, x):
    return self.decode(self.encode(x)[0])
