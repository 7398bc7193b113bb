"""FIR up/down-sampling ("upfirdn") and the fused resampling convolutions of StyleGAN2.

Papers:
  Karras+20  Analyzing and Improving the Image Quality of StyleGAN (StyleGAN2), arXiv:1912.04958.
  Zhang19   Making Convolutional Networks Shift-Invariant Again, arXiv:1904.11486 (FIR kernels).
  Song+21   Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. H: NCSN++ uses
            the [1, 3, 3, 1] kernel for every resampling).
  Aitken+17 Checkerboard artifact free sub-pixel convolution, arXiv:1707.02937 (nearest-neighbour
            resize then convolution == a sub-pixel convolution with tied weights).

All arrays are NHWC. The FIR kernels used here are separable (`fir_kernel` is a 1-D list), so each
2-D filter is applied as two 1-D passes, each a short sum of shifted (and strided) slices that XLA
fuses into one elementwise loop: no depthwise convolution and no zero-stuffed intermediate.
The semantics (padding, kernel flip, normalisation) are those of StyleGAN2's `upfirdn_2d`.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def fir_kernel_1d(k, gain=1.):
  """The 1-D factor of the normalised separable FIR kernel: outer(k, k)/sum(k)² · gain."""
  k = np.asarray(k, np.float64)
  assert k.ndim == 1 and k.size, k       # configs/rules.py: fir_kernel_is_a_1d_filter
  return k / k.sum() * np.sqrt(gain)


def _upfirdn_1d(x, k, axis, up, down, pad0, pad1):
  """Zero-insert by `up`, pad by (pad0, pad1) (negative crops), convolve with k, keep every `down`."""
  n = x.shape[axis]
  if up > 1:  # put up−1 zeros after every sample
    x = jnp.expand_dims(x, axis + 1)
    zeros = [(0, 0, 0)] * x.ndim
    zeros[axis + 1] = (0, up - 1, 0)
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), zeros)
    shape = list(x.shape)
    x = x.reshape(shape[:axis] + [n * up] + shape[axis + 2:])
  config = [(0, 0, 0)] * x.ndim
  config[axis] = (pad0, pad1, 0)
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
  taps = len(k)
  out = (x.shape[axis] - taps) // down + 1
  kf = k[::-1]  # upfirdn convolves (flipped kernel) rather than correlates
  y = None
  for j in range(taps):
    if kf[j] == 0:
      continue
    term = jax.lax.slice_in_dim(x, j, j + down * (out - 1) + 1, down, axis) * float(kf[j])
    y = term if y is None else y + term
  return y


def upfirdn_2d(x, k, up=1, down=1, pad0=0, pad1=0):
  """StyleGAN2 upfirdn on both spatial axes of x [N, H, W, C] with the separable 1-D factor k."""
  for axis in (1, 2):
    x = _upfirdn_1d(x, k, axis, up, down, pad0, pad1)
  return x


def upsample_2d(x, k=(1, 3, 3, 1), factor=2, gain=1.):
  """FIR upsampling [N, H, W, C] -> [N, fH, fW, C] (Karras+20 App. B, `upsample_2d`)."""
  k1 = fir_kernel_1d(k, gain * factor ** 2)
  p = len(k1) - factor
  return upfirdn_2d(x, k1, up=factor, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2)


def downsample_2d(x, k=(1, 3, 3, 1), factor=2, gain=1.):
  """FIR downsampling [N, H, W, C] -> [N, H/f, W/f, C] (Karras+20 App. B, `downsample_2d`)."""
  k1 = fir_kernel_1d(k, gain)
  p = len(k1) - factor
  return upfirdn_2d(x, k1, down=factor, pad0=(p + 1) // 2, pad1=p // 2)


def naive_upsample_2d(x, factor=2):
  """Nearest-neighbour upsampling [N, H, W, C] -> [N, fH, fW, C]."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, h * factor, w * factor, c)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def naive_downsample_2d(x, factor=2):
  """Mean pooling over factor×factor blocks [N, H, W, C] -> [N, H/f, W/f, C], as a sum of the f²
  strided views: one elementwise kernel. As a mean over the blocks' axes it is a reduction, which
  XLA:CPU hands to YNNPACK together with the convolution that follows (EDM's down blocks: that
  convolution then ran on YNNPACK at ~half Eigen's rate; docs/performance.md, "Slow kernels off
  the path"). Differentiated, it is the mean over the blocks' axes, as before: its transpose is
  a broadcast, and the train step was 1.6% slower with the views inside it."""
  views = [x[:, i::factor, j::factor] for i in range(factor) for j in range(factor)]
  while len(views) > 1:      # pairwise, as a tree
    views = [a + b for a, b in zip(views[::2], views[1::2])] + views[len(views) // 2 * 2:]
  return views[0] / factor ** 2


def _block_mean(x, factor):
  n, h, w, c = x.shape
  return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


@naive_downsample_2d.defjvp
def _naive_downsample_2d_jvp(factor, primals, tangents):
  return _block_mean(primals[0], factor), _block_mean(tangents[0], factor)


def _conv_valid(x, w, stride=1):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# Nearest ×2 upsampling then a 3×3 'SAME' conv, per output phase: output row 2i + a sees upsampled
# rows 2i + a − 1 .. 2i + a + 1, i.e. input rows i − 1, i, i (a = 0) or i, i, i + 1 (a = 1), so
# each phase is a 2-tap filter on the input grid whose taps are sums of W's: _PHASE_TAPS[a][r]
# lists W's taps that land on the phase's tap r (r = 0: row i − 1 + a; r = 1: row i + a).
_PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))
# The same as one 0/1 matrix: _PHASE_SUMS[(a, b, r, s), (p, q)] = 1 where W[p, q] lands on tap
# (r, s) of phase (a, b); the four phases' 2×2 kernels are _PHASE_SUMS @ W over W's 9 taps.
_PHASE_SUMS = np.array([[float(p in _PHASE_TAPS[a][r] and q in _PHASE_TAPS[b][s])
                         for p in range(3) for q in range(3)]
                        for a in (0, 1) for b in (0, 1) for r in (0, 1) for s in (0, 1)], np.float32)


def nearest_upsample_conv_2d(x, w):
  """conv3×3_SAME(naive_upsample_2d(x), w): x [N, H, W, C], w [3, 3, C, O] -> [N, 2H, 2W, O],
  computed on the input grid as four 2×2 convolutions, one per output phase (resize-convolution
  as a sub-pixel convolution, Aitken+17): 4·4 instead of 4·9 multiply-adds per input pixel and
  channel pair, exactly the same sums up to float rounding (the taps are added first, by one
  product with `_PHASE_SUMS`, whose transpose gathers the phases' weight gradients in one small
  product; as sums of W's slices, XLA fused that gather into one slow kernel, 0.3 ms per layer
  on one core for EDM's 64 channels)."""
  n, h, wd, c = x.shape
  kernels = jnp.dot(_PHASE_SUMS, w.astype(jnp.float32).reshape(9, -1),   # exact sums on TPUs too
                    precision=jax.lax.Precision.HIGHEST).reshape(2, 2, 2, 2, c, -1)

  def phase(a, b):        # pad before for phase 0 (rows i − 1, i), after for phase 1 (i, i + 1)
    return jax.lax.conv_general_dilated(x, kernels[a, b].astype(w.dtype), (1, 1),
                                        ((1 - a, a), (1 - b, b)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y = jnp.stack([jnp.stack([phase(a, b) for b in (0, 1)], axis=3) for a in (0, 1)], axis=2)
  return y.reshape(n, 2 * h, 2 * wd, w.shape[-1])


def upsample_conv_2d(x, w, k=(1, 3, 3, 1), factor=2):
  """Fused transposed conv (stride f) + FIR filter == StyleGAN2 `upsample_conv_2d`.

  Both operators are linear and shift-invariant on the upsampled grid, so they commute: we FIR-
  upsample first (a cheap fused elementwise pass, padded to the conv's full support) and then run a
  plain stride-1 VALID convolution on the fH+kw−1 grid, which equals the reference exactly. A box
  kernel ([1, 1]: nearest-neighbour upsampling, EDM's resample_filter) with a 3×3 conv runs on the
  input grid instead (`nearest_upsample_conv_2d`).
  """
  kw = w.shape[0]
  if factor == 2 and len(k) == 2 and k[0] == k[1] and w.shape[:2] == (3, 3):
    return nearest_upsample_conv_2d(x, w)
  k1 = fir_kernel_1d(k, factor ** 2)
  total = len(k1) + kw - 2  # padding so that the VALID conv returns fH × fW
  pad0 = (total + factor) // 2
  x = upfirdn_2d(x, k1, up=factor, pad0=pad0, pad1=total - pad0)
  return _conv_valid(x, w)


def conv_downsample_2d(x, w, k=(1, 3, 3, 1), factor=2):
  """Fused FIR filter + strided conv == StyleGAN2 `conv_downsample_2d` (Karras+20 App. B)."""
  kw = w.shape[0]
  k1 = fir_kernel_1d(k)
  p = (len(k1) - factor) + (kw - 1)
  x = upfirdn_2d(x, k1, pad0=(p + 1) // 2, pad1=p // 2)
  return _conv_valid(x, w, stride=factor)


class Conv2d(nn.Module):
  """Conv layer with optional fused FIR up- or down-sampling (StyleGAN2), params kernel/bias."""
  features: int
  kernel_size: int = 3
  up: bool = False
  down: bool = False
  resample_kernel: Sequence[int] = (1, 3, 3, 1)
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None       # compute dtype (None: x's and the float32 kernel's promoted dtype)

  @nn.compact
  def __call__(self, x):
    if self.up and self.down:
      raise ValueError('Conv2d: up and down are exclusive')
    shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
    w = self.param('kernel', self.kernel_init, shape)
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    x, w, bias = nn.dtypes.promote_dtype(x, w, bias, dtype=self.dtype)
    if self.up:
      x = upsample_conv_2d(x, w, self.resample_kernel)
    elif self.down:
      x = conv_downsample_2d(x, w, self.resample_kernel)
    else:
      x = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return x + bias
