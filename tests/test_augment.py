"""`augment.py` (EDM's non-leaky geometric augmentation) against NVlabs/edm and exact geometry.

Truth we did not write: tests/fixtures/augment_edm.npz holds NVlabs/edm's own AugmentPipe
(training/augment.py at commit 008a4e5316c8e3bfe61a62f874bddba254295afb, torch 2.13 CPU) with
train.py's settings (xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1,
default stds) run by a throwaway script outside the repository on fixed images in [-1, 1]
(NumPy seed 0: 16×16×3 ×12, 8×8×1 ×2, 32×32×3 ×2, even-indexed smooth sinusoids, odd-indexed
U(-1, 1) pixels), NCHW in torch and stored NHWC. During each call torch.rand / randn / randint
were wrapped so that every random tensor (14, in EDM's order, = `augment.DRAWS`) was recorded;
the file stores those draws, p, EDM's output images and its labels. Cases (name: images, p,
torch seed): p1_16: 16² ×6, 1, 1 · p012_16: 16² ×12, 0.12, 2 (seed picked so that every
transform acts on at least one image) · p0_16: 16² ×6, 0, 3 · p1_8: 8² ×2, 1, 4 ·
p1_32: 32² ×2, 1, 5. The same script ran EDM's class with its batch margin forced to
W − 1 / H − 1 (this port's fixed padding): at most 7.7e-6 from EDM's output on these cases.
Also exact geometry: flips and whole-pixel translations map the pixel grid to itself; a
fractional translation of a reflect-symmetric cosine has a closed form. (Rotations are checked
against EDM only: EDM turns about a point ≈ 0.05 px off the image centre, see augment.py, so a
quarter turn is np.rot90 shifted by ≈ 0.1 px along one axis, not np.rot90.)
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import augment

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'augment_edm.npz')
CASES = {'p1_16': ('images16', 6), 'p012_16': ('images16', 12), 'p0_16': ('images16', 6),
         'p1_8': ('images8', 2), 'p1_32': ('images32', 2)}
ROUNDING = 1e-5   # float32 rounding of the pad/upsample/sample/downsample chain on [-1, 1]
_apply = jax.jit(augment.apply)       # one compilation per image shape keeps the file fast
_augment = jax.jit(augment.augment)


@pytest.fixture(scope='module')
def edm():
  with np.load(FIXTURE) as f:
    return dict(f)


def _inactive(batch, **on):
  """Draws with every transform off (u = 1 is not < m·p for m = 1, p ≤ 1; the x-flip, m = 1e8,
  is gated on with bit 0) except for the `on` overrides."""
  draws = {}
  for name, kind in augment.DRAWS:
    shape = (batch, 2) if kind == 'normal2' else (batch,)
    value = 1. if name.endswith('_u') else 0.
    draws[name] = jnp.full(shape, value, jnp.int32 if kind == 'bit' else jnp.float32)
  draws.update({k: jnp.broadcast_to(jnp.asarray(v), draws[k].shape).astype(draws[k].dtype)
                for k, v in on.items()})
  return draws


def _random_images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1., maxval=1.)


@pytest.mark.parametrize('case', sorted(CASES))
def test_matches_edm_augment_pipe(edm, case):
  """EDM's recorded draws through `apply` give EDM's images (max error 6.1e-6, p1_32) and
  labels (bit-exact), in every case: all transforms at p = 1, EDM's CIFAR-10 p = 0.12, and p = 0."""
  key, n = CASES[case]
  draws = {name: jnp.asarray(edm[f'{case}/{name}']) for name, _ in augment.DRAWS}
  images, labels = _apply(jnp.asarray(edm[key][:n]), draws, float(edm[f'{case}/p']))
  np.testing.assert_allclose(np.asarray(images), edm[f'{case}/out'], rtol=0, atol=ROUNDING)
  np.testing.assert_allclose(np.asarray(labels), edm[f'{case}/labels'], rtol=0, atol=1e-6)
  assert labels.shape == (n, augment.AUGMENT_DIM) and labels.dtype == jnp.float32


def test_p0_is_identity_with_zero_labels():
  """At p = 0 nothing is gated on; the sym6 up/down pair is orthogonal and the sample points
  land on the upsampled pixels, so the output is the input to float rounding (max 2.4e-7;
  EDM's own p = 0 output is 3.2e-6 from its input, fixture p0_16)."""
  x = _random_images((8, 16, 16, 3))
  images, labels = _augment(jax.random.key(1), x, 0.)
  np.testing.assert_allclose(np.asarray(images), np.asarray(x), rtol=0, atol=ROUNDING)
  assert not np.any(np.asarray(labels))


@pytest.mark.parametrize('axis', ['x', 'y'])
def test_flip_alone_mirrors_the_image(axis):
  x = _random_images((2, 8, 12, 3), seed=2)
  draws = _inactive(2, **{f'{axis}flip_u': 0., f'{axis}flip_bit': [1, 0]})
  images, labels = _apply(x, draws, 1.)
  mirrored = np.flip(np.asarray(x[0]), axis=1 if axis == 'x' else 0)
  np.testing.assert_allclose(np.asarray(images[0]), mirrored, rtol=0, atol=ROUNDING)
  np.testing.assert_allclose(np.asarray(images[1]), np.asarray(x[1]), rtol=0, atol=ROUNDING)
  expected = np.zeros((2, 9), np.float32)
  expected[0, 0 if axis == 'x' else 1] = 1.
  np.testing.assert_array_equal(np.asarray(labels), expected)


def test_whole_pixel_translation_shifts_the_reflect_padded_image():
  """t = w · 0.125 · (W, H) with w = (1, −0.5) on 16×16 is (2, −1) pixels: out(x) = in(x − t),
  with EDM's reflect padding filling the uncovered border (np.pad 'reflect')."""
  x = _random_images((1, 16, 16, 3), seed=4)
  images, labels = _apply(x, _inactive(1, translate_u=0., translate_z=[[1., -.5]]), 1.)
  padded = np.pad(np.asarray(x[0]), ((2, 2), (2, 2), (0, 0)), mode='reflect')
  expected = padded[2 + 1:2 + 1 + 16, 2 - 2:2 - 2 + 16]   # rows from y + 1, columns from x − 2
  np.testing.assert_allclose(np.asarray(images[0]), expected, rtol=0, atol=ROUNDING)
  np.testing.assert_array_equal(np.asarray(labels[0]), [0, 0, 0, 0, 0, 0, 0, 1., -.5])


def _cosine(m, n, y, x):
  return np.cos(np.pi * m * x / (n - 1)) * np.cos(np.pi * y / (n - 1))


def test_fractional_translation_of_a_smooth_image():
  """f(y, x) = cos(π m x / (n − 1)) cos(π y / (n − 1)) is its own reflect padding, so the
  result is f(y − ty, x − tx) up to bilinear interpolation on the 2× grid, whose error for a
  cosine of ω rad/sample is at most ω²/8 per axis (ω = π m / 2(n − 1)); measured 2.6e-3 vs the
  bound 2.7e-3 for m = 1 and 6.5e-3 vs 6.9e-3 for m = 2 (a sign error would cost ~0.5)."""
  n, w = 16, np.array([0.65, -0.4])
  tx, ty = w * n * augment.TRANSLATE_FRAC_STD                   # 1.3 and −0.8 pixels
  i = np.arange(n, dtype=np.float64)
  for m in (1, 2):
    x = _cosine(m, n, i[:, None], i[None, :])[None, :, :, None].astype(np.float32)
    draws = _inactive(1, translate_u=0., translate_z=[w])
    images, labels = _apply(jnp.asarray(x), draws, 1.)
    omega_x, omega_y = np.pi * m / (2 * (n - 1)), np.pi / (2 * (n - 1))
    bound = (omega_x ** 2 + omega_y ** 2) / 8
    truth = _cosine(m, n, i[:, None] - ty, i[None, :] - tx)
    err = np.abs(np.asarray(images)[0, :, :, 0] - truth).max()
    assert err <= bound + ROUNDING, (m, err, bound)
    np.testing.assert_allclose(np.asarray(labels[0, 7:]), w, rtol=1e-6)


@functools.partial(jax.jit, static_argnums=1)
def _shares(rng, n, p):
  """Share of the n samples on which each transform acts, and of the other coin flips."""
  draws = augment.draw(rng, n)
  shares = {name: jnp.mean(on) for name, on in augment.gate(draws, p)['active'].items()}
  shares['aniso_frame'] = jnp.mean(draws['aniso_frame_u'] < augment.ANISO_ROTATE_PROB)
  shares.update({key: jnp.mean(draws[key]) for key in ('xflip_bit', 'yflip_bit')})
  return shares


@pytest.mark.parametrize('p', [0., 0.12, 0.5])
def test_application_rates_are_min_1_mult_p(p):
  """Each transform's share of active samples at B = 2^17 is min(1, m·p) within 4.5 standard
  errors (exactly 0 or 1 where min(1, m·p) is); the aniso frame is rotated half the time and
  the flip bits are fair coins."""
  n = 1 << 17
  shares = _shares(jax.random.key(5), n, p)
  expected = {name: min(1., mult * p) for name, mult in augment.EDM_MULTIPLIERS.items()}
  expected.update(aniso_frame=augment.ANISO_ROTATE_PROB, xflip_bit=0.5, yflip_bit=0.5)
  for name, q in expected.items():
    assert abs(float(shares[name]) - q) <= 4.5 * np.sqrt(q * (1 - q) / n), (name, shares[name], q)


@pytest.mark.parametrize('batch', [1, 8])
def test_jit_batch_shapes_and_finite(batch):
  x = _random_images((batch, 16, 16, 3), seed=7)
  images, labels = _augment(jax.random.key(8), x, 1.)
  assert images.shape == x.shape and labels.shape == (batch, augment.AUGMENT_DIM)
  assert np.all(np.isfinite(np.asarray(images))) and np.all(np.isfinite(np.asarray(labels)))
  assert np.all(np.asarray(labels)[:, 2:6] != 0)   # p = 1: scale, rotation, aniso act on all


def test_training_loss_sees_the_augmented_images_and_their_labels():
  """`losses.get_loss_fn` with training.augment_p: the network gets `augment.augment`'s images
  (with the loss's own key split) and their 9 labels; with STF those of images 0, k, 2k, ...
  The evaluation loss is not augmented. Bad fields are named."""
  from configs import quicktest   # pylint: disable=import-outside-toplevel
  from configs.edm import cifar10_ddpmpp   # pylint: disable=import-outside-toplevel
  import losses   # pylint: disable=import-outside-toplevel
  config = quicktest.shrink(cifar10_ddpmpp.get_config())
  config.training.update(augment_p=1., P_mean=-9., P_std=1e-6, reduce_mean=True)
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1., maxval=1.)
  rng = jax.random.key(1)
  seen = {}
  def model_fn(x_in, labels, rng_=None, cond=None):
    seen.update(x=x_in, labels=(cond or {}).get('augment_labels'))
    return jnp.zeros_like(x_in)
  losses.get_loss_fn(config, None)(rng, model_fn, x)
  aug_rng, _ = jax.random.split(rng)
  images, want = augment.augment(aug_rng, x, 1.)
  np.testing.assert_array_equal(seen['labels'], want)
  assert float(jnp.abs(want).sum()) > 0
  # σ = e^-9: the network input c_in (y + σ n) is 1/√(σ² + ¼) ≈ 2 times the augmented images
  np.testing.assert_allclose(seen['x'], 2. * images, atol=1e-3)
  assert float(jnp.abs(images - x).max()) > 0.1
  losses.get_loss_fn(config, None, train=False)(rng, model_fn, x)
  assert seen['labels'] is None
  np.testing.assert_allclose(seen['x'], 2. * x, atol=1e-3)
  config.training.update(stf_ref_batch=4, batch_size=2)
  losses.get_loss_fn(config, None)(rng, model_fn, x)
  np.testing.assert_array_equal(seen['labels'], want[::2])
