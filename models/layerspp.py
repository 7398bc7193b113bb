"""NCSN++ / DDPM++ building blocks (NHWC).

Papers:
  Song+21   Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. H: NCSN++).
  Tancik+20 Fourier Features Let Networks Learn High Frequency Functions, arXiv:2006.10739.
  Brock+19  Large Scale GAN Training (BigGAN), arXiv:1809.11096 (up/down residual blocks).
  Karras+20 Analyzing and Improving the Image Quality of StyleGAN, arXiv:1912.04958 (FIR).
"""
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import layers
from models import up_or_down_sampling as uds
from models.layers import conv1x1, conv3x3, default_init, pp_groups


class GaussianFourierProjection(nn.Module):
  """[sin(2π W s), cos(2π W s)] with fixed W ~ N(0, scale²) (Tancik+20; Song+21 App. H).

  W is stored as a parameter (as in score_sde) but never trained: it sits behind stop_gradient.
  """
  embedding_size: int = 256
  scale: float = 1.

  @nn.compact
  def __call__(self, s):
    w = self.param('W', nn.initializers.normal(stddev=self.scale), (self.embedding_size,))
    proj = s[:, None] * jax.lax.stop_gradient(w)[None, :] * (2 * np.pi)
    return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class Combine(nn.Module):
  """Merge the input pyramid x into h: conv1×1(x) then concatenate ('cat') or add ('sum')."""
  method: str = 'cat'
  dtype: Any = None

  @nn.compact
  def __call__(self, x, h):
    x = conv1x1(h.shape[-1], name='conv', dtype=self.dtype)(x)
    return jnp.concatenate([x, h], axis=-1) if self.method == 'cat' else x + h


class AttnBlockpp(layers.AttnBlock):
  """DDPM attention with min(C/4, 32) GroupNorm groups, `init_scale` and `skip_rescale`."""
  groups_fn: Any = pp_groups


class Upsample(nn.Module):
  """×2 upsampling: nearest (+conv3×3) or FIR (+fused FIR conv) (Song+21 App. H)."""
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    out_ch = self.out_ch or x.shape[-1]
    if not self.fir:
      if self.with_conv:
        return layers.upsample_conv3x3(out_ch, name='conv', dtype=self.dtype)(x)
      return uds.naive_upsample_2d(x)
    if not self.with_conv:
      return uds.upsample_2d(x, self.fir_kernel)
    return uds.Conv2d(out_ch, 3, up=True, resample_kernel=self.fir_kernel,
                      kernel_init=default_init(), dtype=self.dtype, name='fir_conv')(x)


class Downsample(nn.Module):
  """×2 downsampling: stride-2 conv3×3 / mean pool, or FIR (+fused FIR conv) (Song+21 App. H)."""
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    out_ch = self.out_ch or x.shape[-1]
    if not self.fir:
      if not self.with_conv:
        return uds.naive_downsample_2d(x)
      return conv3x3(out_ch, stride=2, name='conv', dtype=self.dtype)(x)
    if not self.with_conv:
      return uds.downsample_2d(x, self.fir_kernel)
    return uds.Conv2d(out_ch, 3, down=True, resample_kernel=self.fir_kernel,
                      kernel_init=default_init(), dtype=self.dtype, name='fir_conv')(x)


class ResnetBlockDDPMpp(layers.ResnetBlockDDPM):
  """DDPM residual block with min(C/4, 32) groups, `init_scale` and `skip_rescale` (Song+21 App. H)."""
  groups_fn: Any = pp_groups


class ResnetBlockBigGANpp(nn.Module):
  """BigGAN-style residual block that resamples inside both branches (Brock+19; Song+21 App. H).

  h = conv3×3(resample(act(GN(x)))) + Dense(act(temb)); h = conv3×3(dropout(act(GN(h))));
  the shortcut is resample(x), through a 1×1 conv when channels change or when resampling.
  Resampling is FIR (`fir`) or nearest / mean pooling.
  """
  act: Any
  up: bool = False
  down: bool = False
  out_ch: Optional[int] = None
  dropout: float = 0.1
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  skip_rescale: bool = True
  init_scale: float = 0.
  dtype: Any = None

  def _resample(self, x):
    """FIR up, FIR or mean-pool down (nearest up is folded into the convolutions, below)."""
    if self.up:
      return uds.upsample_2d(x, self.fir_kernel)
    if self.down:
      return uds.downsample_2d(x, self.fir_kernel) if self.fir else uds.naive_downsample_2d(x)
    return x

  @nn.compact
  def __call__(self, x, temb=None, train=False):
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = self.act(layers.group_norm(c, pp_groups, name='norm_0')(x))
    if self.up and not self.fir:   # nearest upsampling commutes with convolutions: run them on
      h = layers.upsample_conv3x3(out_ch, name='conv_0', dtype=self.dtype)(h)   # the input grid
      x = uds.naive_upsample_2d(conv1x1(out_ch, name='skip', dtype=self.dtype)(x))
    else:
      h = conv3x3(out_ch, name='conv_0', dtype=self.dtype)(self._resample(h))
      x = self._resample(x)
      if c != out_ch or self.up or self.down:
        x = conv1x1(out_ch, name='skip', dtype=self.dtype)(x)
    if temb is not None:
      h = h + nn.Dense(out_ch, kernel_init=default_init(), name='temb',
                       dtype=self.dtype)(self.act(temb))[:, None, None, :]
    h = self.act(layers.group_norm(out_ch, pp_groups, name='norm_1')(h))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    h = conv3x3(out_ch, init_scale=self.init_scale, name='conv_1', dtype=self.dtype)(h)
    return (x + h) / math.sqrt(2.) if self.skip_rescale else x + h
