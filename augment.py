"""EDM's non-leaky geometric augmentation in pure JAX: a port of NVlabs/edm `training/augment.py`
(class `AugmentPipe`) restricted to the six transforms EDM's train.py enables.

Ported, in EDM's order and with EDM's random variables and gating (a transform acts on a sample
iff u < multiplier·p, u ~ U(0, 1), i.e. with probability min(1, multiplier·p)):
  pixel blitting   x-flip (multiplier 1e8: always on for p > 0), y-flip;
  geometric        isotropic scaling, fractional rotation, anisotropic scaling, fractional
                   translation, composed into one inverse matrix G⁻¹ per sample and executed as
                   EDM does: reflect padding, 2× upsampling with the sym6 wavelet, bilinear sampling
                   with zero padding (torch `grid_sample`, align_corners=False), 2× downsampling.
The 9 labels are EDM's: [xflip, yflip, scale w, cos θ − 1, sin θ, aniso w cos r, aniso w sin r,
translate x, translate y] (Karras+22 App. F.2: the network is conditioned on them, so the
augmentations do not leak into generated images).

Left out: integer rotation and translation, the colour transforms (brightness, contrast, luma
flip, hue, saturation), whose multipliers EDM's train.py leaves at 0, and EDM's data-dependent
padding margin (a max over the batch, so one sample's output depends on the others). Shapes
are static here: every image is reflect-padded by EDM's largest margin, W − 1 and H − 1 pixels.
Outputs then agree with EDM's to float rounding, except when EDM's batch margin is too tight
for a sample that zooms out (its edge pixels then see EDM's zero padding: up to 3.8e-5 in 300
single-image trials against EDM's torch code).

Kept from EDM as is: sym6 is not linear-phase (its centroid is at tap 5.098) and EDM's
half-sample framing of the 2× upsampled image (T(−½) below) does not account for it, so every
transform acts about a point ≈ 0.05 px up-left of the image centre (measured on linear ramps, in
EDM's torch code and here): a quarter turn is np.rot90 shifted by ≈ 0.1 px along one axis.
Identity and translations are unaffected.

Papers:
  Karras+22      Elucidating the Design Space of Diffusion-Based Generative Models,
                 arXiv:2206.00364 (App. F.2: non-leaky augmentation, p = 0.12 on CIFAR-10).
  Karras+20 ADA  Training Generative Adversarial Networks with Limited Data, arXiv:2006.06676
                 (App. B: the pipeline, its distributions and its matrix forms).
"""
import jax
import jax.numpy as jnp
import numpy as np

EDM_MULTIPLIERS = dict(xflip=1e8, yflip=1., scale=1., rotate_frac=1., aniso=1., translate_frac=1.)
AUGMENT_DIM = 9                  # length of the label vector (EDM's augment_dim)
SCALE_STD = 0.2                  # log2 standard deviation of isotropic scaling
ROTATE_FRAC_MAX = 1.             # range of fractional rotation, 1 = full circle
ANISO_STD = 0.2                  # log2 standard deviation of anisotropic scaling
ANISO_ROTATE_PROB = 0.5          # probability that anisotropic scaling acts in a rotated frame
TRANSLATE_FRAC_STD = 0.125       # standard deviation of translation, in image widths / heights

# Low-pass decomposition filter of the Symlet-6 wavelet (public constant, as in PyWavelets'
# `pywt.Wavelet('sym6').dec_lo`); Karras+20 ADA App. B resamples with it.
SYM6 = np.array([
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])
_HZ_PAD = len(SYM6) // 4         # EDM's Hz_pad: output border kept for the downsampling filter

# EDM's random draws, in the order AugmentPipe makes them: (name, sampler kind). `bit` is
# torch.randint(2), `uniform` torch.rand, `normal` torch.randn; `normal2` is [B, 2] (x, y).
DRAWS = (
    ('xflip_bit', 'bit'), ('xflip_u', 'uniform'),
    ('yflip_bit', 'bit'), ('yflip_u', 'uniform'),
    ('scale_z', 'normal'), ('scale_u', 'uniform'),
    ('rotate_v', 'uniform'), ('rotate_u', 'uniform'),
    ('aniso_z', 'normal'), ('aniso_v', 'uniform'), ('aniso_u', 'uniform'),
    ('aniso_frame_u', 'uniform'),
    ('translate_z', 'normal2'), ('translate_u', 'uniform'),
)
_SAMPLERS = {
    'bit': lambda key, n: jax.random.randint(key, (n,), 0, 2),
    'uniform': lambda key, n: jax.random.uniform(key, (n,)),
    'normal': lambda key, n: jax.random.normal(key, (n,)),
    'normal2': lambda key, n: jax.random.normal(key, (n, 2)),
}
_HI = jax.lax.Precision.HIGHEST  # full float32 dots on every backend (no TF32 / bf16 passes)


def draw(rng, batch):
  """EDM's per-sample random variates, before gating: a dict name -> [batch] (or [batch, 2]).

  Args:
    rng: a PRNG key.
    batch: the number of images B.
  Returns:
    {name: array} for every name in `DRAWS`: int32 bits in {0, 1}, U(0, 1) or N(0, 1) floats.
    `apply` gates them with p; feeding EDM's own recorded draws reproduces EDM's output.
  """
  keys = jax.random.split(rng, len(DRAWS))
  return {name: _SAMPLERS[kind](key, batch) for key, (name, kind) in zip(keys, DRAWS)}


def gate(draws, p):
  """EDM's gated transform parameters w: zero where a sample's transform is off.

  Args:
    draws: the dict of `draw`.
    p: the overall augmentation probability (float or traced scalar).
  Returns:
    {'xflip', 'yflip'} int32 [B] in {0, 1}; {'scale', 'aniso'} N(0, 1) log2-scale variates [B];
    'rotate' θ [B] (radians); 'aniso_frame' r [B] (radians); 'translate' [B, 2] N(0, 1);
    'active' {transform: bool [B]}, transform i on iff u_i < multiplier_i · p. The
    multipliers are EDM's; Karras+20 ADA App. B applies each transform with probability p.
  """
  m = EDM_MULTIPLIERS
  active = {name: draws[f'{key}_u'] < m[name] * p   # EDM augment.py: P(on) = min(1, m·p)
            for name, key in (('xflip', 'xflip'), ('yflip', 'yflip'), ('scale', 'scale'),
                              ('rotate_frac', 'rotate'), ('aniso', 'aniso'),
                              ('translate_frac', 'translate'))}
  theta = (draws['rotate_v'] * 2 - 1) * (np.pi * ROTATE_FRAC_MAX)  # Karras+20 ADA: θ ~ U(-π, π)
  frame = (draws['aniso_v'] * 2 - 1) * np.pi                       # EDM augment.py: r ~ U(-π, π)
  return dict(
      xflip=jnp.where(active['xflip'], draws['xflip_bit'], 0),    # Karras+20 ADA: i ~ U{0, 1}
      yflip=jnp.where(active['yflip'], draws['yflip_bit'], 0),
      scale=jnp.where(active['scale'], draws['scale_z'], 0.),      # log2 s / 0.2 ~ N(0, 1)
      rotate=jnp.where(active['rotate_frac'], theta, 0.),
      aniso=jnp.where(active['aniso'], draws['aniso_z'], 0.),      # log2 λ / 0.2 ~ N(0, 1)
      aniso_frame=jnp.where(draws['aniso_frame_u'] < ANISO_ROTATE_PROB, frame, 0.),  # EDM
      translate=jnp.where(active['translate_frac'][:, None], draws['translate_z'], 0.),
      active=active)


def labels(params):
  """EDM's augmentation labels [B, 9] float32 from the gated parameters of `gate`."""
  theta, w, r = params['rotate'], params['aniso'], params['aniso_frame']
  columns = (params['xflip'], params['yflip'], params['scale'],
             jnp.cos(theta) - 1, jnp.sin(theta),          # EDM augment.py: (cos θ − 1, sin θ)
             w * jnp.cos(r), w * jnp.sin(r),              # EDM augment.py: w (cos r, sin r)
             params['translate'][:, 0], params['translate'][:, 1])
  return jnp.stack([c.astype(jnp.float32) for c in columns], axis=1)


def _affine(a, b, tx, c, d, ty):
  """Per-sample 2-D homogeneous matrices [B, 3, 3] with rows [a b tx], [c d ty], [0 0 1]."""
  a, b, tx, c, d, ty = jnp.broadcast_arrays(
      *(jnp.asarray(v, jnp.float32) for v in (a, b, tx, c, d, ty)))
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack([a, b, tx, c, d, ty, zero, zero, one], axis=-1).reshape(a.shape + (3, 3))


def _scale(sx, sy):
  return _affine(sx, 0., 0., 0., sy, 0.)                      # Karras+20 ADA App. B: S(sx, sy)


def _rotate(theta):
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  return _affine(cos, -sin, 0., sin, cos, 0.)                 # Karras+20 ADA App. B: R(θ)


def _translate(tx, ty):
  return _affine(1., 0., tx, 0., 1., ty)                      # Karras+20 ADA App. B: T(tx, ty)


def _matmul(*matrices):
  out = matrices[0]
  for m in matrices[1:]:
    out = jnp.matmul(out, m, precision=_HI)
  return out


def inverse_matrix(params, height, width):
  """G⁻¹ [B, 3, 3]: output pixel → input pixel, both centred on the image, as EDM composes it.

  The forward map scales, rotates, scales anisotropically and translates, in that order
  (Karras+20 ADA App. B), G = T · A · R · S; EDM accumulates G⁻¹ = S⁻¹ · R⁻¹ · A⁻¹ · T⁻¹.
  """
  s = jnp.exp2(params['scale'] * SCALE_STD)                    # Karras+20 ADA: s = 2^(0.2 w)
  g_inv = _scale(1 / s, 1 / s)                                 # S(s, s)⁻¹
  g_inv = _matmul(g_inv, _rotate(params['rotate']))            # EDM: rotate2d_inv(−θ) = R(θ)
  lam, r = jnp.exp2(params['aniso'] * ANISO_STD), params['aniso_frame']  # λ = 2^(0.2 w)
  g_inv = _matmul(g_inv, _rotate(-r), _scale(1 / lam, 1 / (1 / lam)),    # EDM: R(r)⁻¹ S(λ, 1/λ)⁻¹
                  _rotate(r))                                            #      R(−r)⁻¹
  tx = params['translate'][:, 0] * (width * TRANSLATE_FRAC_STD)          # Karras+20 ADA: t ~ N(0,
  ty = params['translate'][:, 1] * (height * TRANSLATE_FRAC_STD)         # 0.125²) · (W, H)
  return _matmul(g_inv, _translate(-tx, -ty))                            # T(tx, ty)⁻¹


def _pad_upsample_matrix(n):
  """[2(3n − 2), n]: reflect-pad n samples by n − 1 on both sides, then EDM's sym6 2× upsampling.

  EDM interleaves zeros (z[2q] = padded[q]) and correlates with the reversed filter, padding 6:
  out[i] = Σ_k h[11 − k] z[i + k − 6], i.e. out[i] = Σ_q h[5 + i − 2q] padded[q].
  """
  m = n - 1
  src = np.abs(np.arange(-m, n + m))                            # reflect at 0 (torch 'reflect')
  src = np.where(src > n - 1, 2 * (n - 1) - src, src)           # ... and at n − 1
  pad = np.zeros((n + 2 * m, n))
  pad[np.arange(n + 2 * m), src] = 1.
  length = n + 2 * m
  tap = 5 + np.arange(2 * length)[:, None] - 2 * np.arange(length)[None, :]
  up = np.where((tap >= 0) & (tap < len(SYM6)), SYM6[np.clip(tap, 0, len(SYM6) - 1)], 0.)
  return (up @ pad).astype(np.float32)


def _downsample_crop_matrix(n):
  """[n, 2n + 4 Hz_pad]: EDM's sym6 2× downsampling (stride 2, padding 5) and crop by Hz_pad.

  out[j] = Σ_k h[k] y[2(j + Hz_pad) + k − 5], i.e. out[j] = Σ_s h[s − 2j − 1] y[s].
  """
  tap = np.arange(2 * n + 4 * _HZ_PAD)[None, :] - 2 * np.arange(n)[:, None] - 1
  down = np.where((tap >= 0) & (tap < len(SYM6)), SYM6[np.clip(tap, 0, len(SYM6) - 1)], 0.)
  return down.astype(np.float32)


def _sample_points(g_inv, in_shape, out_shape):
  """Input pixel coordinates (x, y) [B, Ho·Wo] of the output grid of the upsampled image.

  G⁻¹ is conjugated to the 2× upsampled frame, which the sym6 upsampling shifts by half a
  sample (EDM augment.py: T(−½) S(2) G⁻¹ S(2)⁻¹ T(−½)⁻¹), then applied to centred pixel
  coordinates: torch affine_grid + grid_sample with align_corners=False map output pixel j to
  j − (Wo − 1)/2 and a centred input x to pixel x + (Wi − 1)/2.
  """
  (hi, wi), (ho, wo) = in_shape, out_shape
  g_up = _matmul(_translate(-.5, -.5), _scale(2., 2.), g_inv, _scale(.5, .5), _translate(.5, .5))
  v, u = jnp.meshgrid(jnp.arange(ho, dtype=jnp.float32) - (ho - 1) / 2,
                      jnp.arange(wo, dtype=jnp.float32) - (wo - 1) / 2, indexing='ij')
  u, v = u.reshape(-1), v.reshape(-1)
  x = g_up[:, 0, 0, None] * u + g_up[:, 0, 1, None] * v + g_up[:, 0, 2, None] + (wi - 1) / 2
  y = g_up[:, 1, 0, None] * u + g_up[:, 1, 1, None] * v + g_up[:, 1, 2, None] + (hi - 1) / 2
  return x, y


def _bilinear(images, x, y):
  """torch grid_sample(mode='bilinear', padding_mode='zeros') at pixel coordinates x, y [B, P].

  Returns [B, P, C]: the four neighbours' values weighted by the bilinear tent, zero outside.
  """
  b, h, w, c = images.shape
  flat = images.reshape(b, h * w, c)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = jnp.zeros((b, x.shape[1], c), images.dtype)
  for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
    for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
      inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
      index = (jnp.clip(yy, 0, h - 1) * w + jnp.clip(xx, 0, w - 1)).astype(jnp.int32)
      values = jnp.take_along_axis(flat, index[:, :, None], axis=1)
      out = out + values * jnp.where(inside, wx * wy, 0.)[:, :, None]
  return out


def resample(images, g_inv):
  """Execute G⁻¹ [B, 3, 3] on images [B, H, W, C] as EDM does (Karras+20 ADA App. B): pad,
  2× sym6 upsampling, bilinear sampling with zero padding, 2× sym6 downsampling and crop."""
  b, h, w, c = images.shape
  x = jnp.einsum('ih,bhwc->biwc', _pad_upsample_matrix(h), images, precision=_HI)
  x = jnp.einsum('jw,biwc->bijc', _pad_upsample_matrix(w), x, precision=_HI)
  out_shape = (2 * (h + 2 * _HZ_PAD), 2 * (w + 2 * _HZ_PAD))   # EDM: (H + 2 Hz_pad) · 2
  px, py = _sample_points(g_inv, x.shape[1:3], out_shape)
  x = _bilinear(x, px, py).reshape((b,) + out_shape + (c,))
  x = jnp.einsum('ih,bhwc->biwc', _downsample_crop_matrix(h), x, precision=_HI)
  return jnp.einsum('jw,biwc->bijc', _downsample_crop_matrix(w), x, precision=_HI)


def apply(images, draws, p):
  """EDM's AugmentPipe(p, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1).

  Args:
    images: [B, H, W, C] float32, in [-1, 1].
    draws: the random variates of `draw` (or EDM's own, recorded).
    p: the augmentation probability, a float or a traced scalar in [0, 1].
  Returns:
    (augmented images [B, H, W, C], labels [B, 9] float32). The geometric stage runs even at
    p = 0, as in EDM, so the images are then the input up to float rounding.
  """
  _, h, w, _ = images.shape
  params = gate(draws, p)
  # EDM's x-flip then y-flip, as one four-way select (0: none, 1: x, 2: y, 3: both). Two chained
  # `where`s let XLA on CPU, with utils' unrolled threefry, recompute the random bits per pixel
  # (jitted `augment`, batch 64 at 32×32×3: 23–26 ms instead of 6).
  blit = (params['xflip'] + 2 * params['yflip']).astype(jnp.int32)[:, None, None, None]
  images = jax.lax.select_n(jnp.broadcast_to(blit, images.shape), images, images[:, :, ::-1],
                            images[:, ::-1], images[:, ::-1, ::-1])
  images = resample(images, inverse_matrix(params, h, w))
  return images, labels(params)


def augment(rng, images, p):
  """`apply(images, draw(rng, B), p)`: augmented images [B, H, W, C] and labels [B, 9]."""
  return apply(images, draw(rng, images.shape[0]), p)
