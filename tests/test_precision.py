"""Mixed precision (model.dtype, precision.py): bfloat16 and float16 train steps track float32 on
digits, a bfloat16 model samples, a float16 overflow is skipped (not applied) and the loss scale
adapts and checkpoints; parameters stay float32 while convolutions run in the low dtype."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import checkpointing
from configs import default_lib
from configs.quickstart import digits
import datasets
import losses
from models import layers
from models import utils as mutils
import precision
import sampling
import sde_lib

STEPS, BATCH = 40, 32
SMOOTH = 10          # moving-average window of the loss curves
# Max relative difference of the smoothed loss curves from float32's over the 40 steps,
# measured on XLA:CPU: bfloat16 1.9e-4, float16 1.7e-4 (per step: 5.9e-4, 8.2e-4); the bound,
# 50× that, leaves room for other backends.
CURVE_RTOL = 0.01


def _config(dtype='float32', loss_scale=2. ** 10):
  """The digits quickstart (EDM's DDPM++, loss and sampler), smaller: one level of one block
  and attention, width 16. float16 starts at a loss scale of 2^10."""
  config = digits.get_config()
  m, t = config.model, config.training
  m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dtype = 16, (1,), 1, (8,), dtype
  t.batch_size, t.n_jitted_steps = BATCH, 1
  config.optim.warmup, config.optim.loss_scale_init = 10, loss_scale
  return config


def _setup(config):
  sde, _ = sde_lib.get_sde(config)
  model = mutils.get_model(config)
  optimizer = losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                        losses.get_ema_rate(config)))
  return model, optimizer, step


def _batches():
  """STEPS batches [1, BATCH, 8, 8, 1] of digits in [-1, 1], a fixed draw."""
  images = datasets.digits_split()['train_images']
  order = np.random.default_rng(0).permutation(len(images))[:STEPS * BATCH]
  return (2. * images[order] - 1.).reshape(STEPS, 1, BATCH, 8, 8, 1)


@functools.lru_cache(maxsize=None)
def _step(dtype):
  """The jitted train step of `_config(dtype)`, compiled once per test process."""
  return _setup(_config(dtype))[2]


def _initial_state(dtype, loss_scale=2. ** 10):
  _, params = mutils.init_model(jax.random.key(0), _config())
  return losses.init_train_state(params, losses.get_optimizer(_config(dtype, loss_scale)))


@functools.lru_cache(maxsize=None)
def _run(dtype):
  """(train step, final state, loss curve) of STEPS steps from one init for every dtype."""
  step, state, curve = _step(dtype), _initial_state(dtype), []
  for batch in _batches():
    state, metrics = step(state, batch, jax.random.key(1))
    curve.append(float(metrics['loss'][0]))
  return step, state, np.array(curve)


def _smoothed(curve):
  return np.convolve(curve, np.ones(SMOOTH) / SMOOTH, mode='valid')


@pytest.mark.parametrize('dtype', ['bfloat16', pytest.param('float16', marks=pytest.mark.slow)])
def test_low_precision_tracks_the_float32_loss_curve(dtype):
  (_, _, reference), (_, state, curve) = _run('float32'), _run(dtype)
  assert not np.array_equal(curve, reference)                  # it ran in low precision
  reference, curve = _smoothed(reference), _smoothed(curve)
  assert np.all(np.isfinite(curve)) and curve[-1] < 0.8 * curve[0]       # it trains
  rel = np.max(np.abs(curve - reference) / reference)
  assert rel < CURVE_RTOL, rel
  for tree in (state.params, state.ema_params, state.opt_state):   # the state stays float32
    assert {x.dtype for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
  assert isinstance(state.opt_state, precision.LossScaleState) == (dtype == 'float16')


@pytest.mark.slow   # ~35 s; the skip itself: test_a_float16_overflow_is_skipped_not_applied
def test_float16_loss_scale_settles_from_the_default():
  """From the default S = 2^15 steps that overflow are skipped, each halving S, until it fits;
  measured: 2 skips (steps 1 and 3), then S = 2^13 and every step applied (from the initial
  parameters: 4 skips, S = 2^11)."""
  step, state, _ = _run('float16')
  state = state.replace(opt_state=state.opt_state._replace(
      scale=jnp.float32(default_lib.get_base_config().optim.loss_scale_init)))
  applied, scales = [], []
  for batch in _batches()[:12]:
    state, metrics = step(state, batch, jax.random.key(2))
    applied.append(bool(state.opt_state.applied))
    scales.append(float(state.opt_state.scale))
  skips = applied.count(False)
  assert 1 <= skips <= 6 and all(applied[-6:]), applied       # settled: the last 6 applied
  assert scales[-1] == 2. ** 15 / 2 ** skips, scales           # each skip halved S, no growth yet


def test_a_bfloat16_model_samples_finite_images():
  config = _config('bfloat16')
  config.sampling.steps = 4
  sde, eps = sde_lib.get_sde(config)
  sample_fn = sampling.get_sampling_fn(config, sde, mutils.get_model(config), (8, 8, 1),
                                       datasets.get_data_inverse_scaler(config), eps)
  images, _ = sample_fn(jax.vmap(jax.random.key)(jnp.arange(4)), _run('bfloat16')[1].ema_params)
  assert images.dtype == jnp.float32 and images.shape == (4, 8, 8, 1)
  assert np.all(np.isfinite(images)) and 0.01 < float(jnp.std(images)) < 10.


def test_convolutions_run_in_bfloat16_and_statistics_in_float32():
  """Traced, not run: every convolution outputs bfloat16, every reduction (GroupNorm statistics,
  softmax) float32; parameters and the network output are float32."""
  model = mutils.get_model(_config('bfloat16'))
  x, labels = jnp.zeros((2, 8, 8, 1)), jnp.ones((2,))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, labels)['params'])
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  forward = lambda p: mutils.get_model_fn(model, p)(x, labels)   # noqa: E731
  jaxpr = str(jax.make_jaxpr(forward)(params))
  convs = re.findall(r':(\w+)\[[^\]]*\] = conv_general_dilated', jaxpr)
  reductions = re.findall(r':(\w+)\[[^\]]*\] = reduce_(?:sum|max)', jaxpr)
  assert convs and set(convs) == {'bf16'}
  assert reductions and set(reductions) == {'f32'}
  assert jax.eval_shape(forward, params).dtype == jnp.float32


def test_group_norm_of_bfloat16_is_float32_group_norm_rounded():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8)).astype(jnp.bfloat16)
  norm = layers.GroupNorm(num_groups=2)
  variables = norm.init(jax.random.key(1), x)
  out = norm.apply(variables, x)
  assert out.dtype == jnp.bfloat16
  want = norm.apply(variables, x.astype(jnp.float32)).astype(jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(want, np.float32))


def _quadratic_opt(period=3):
  return precision.dynamic_loss_scale(optax.adam(0.1), init_scale=8., period=period)


def test_loss_scale_skips_non_finite_steps_and_adapts():
  opt, params = _quadratic_opt(), {'w': jnp.ones(3)}
  state = opt.init(params)
  updates, skipped = opt.update({'w': jnp.array([1., jnp.inf, 1.])}, state, params)
  assert not skipped.applied and float(skipped.scale) == 4.
  np.testing.assert_array_equal(updates['w'], 0.)
  for a, b in zip(jax.tree.leaves(skipped.inner), jax.tree.leaves(state.inner)):
    np.testing.assert_array_equal(a, b)                        # Adam moments and count kept
  for _ in range(3):                                           # `period` finite steps: S doubles
    updates, skipped = opt.update({'w': jnp.full(3, 8.)}, skipped, params)
    assert skipped.applied
  assert float(skipped.scale) == 8. and int(skipped.good_steps) == 0
  # the gradients were unscaled: 8 / 4 = 2 per element, Adam's first step moves by lr
  np.testing.assert_allclose(updates['w'], -0.1, rtol=1e-5)


def test_a_float16_overflow_is_skipped_not_applied():
  """An absurd loss scale (2^100) overflows float16 in the backward pass: nothing but the scale
  and the step counter moves; a sane scale then applies the update."""
  step = _step('float16')                         # the same jitted step (S is in the state)
  before = _initial_state('float16', loss_scale=2. ** 100)
  batch = jnp.asarray(_batches()[0])
  after, metrics = step(before, batch, jax.random.key(1))
  assert np.isfinite(metrics['loss'][0]) and float(metrics['loss_scale'][0]) == 2. ** 99
  assert int(after.step) == 1 and not bool(after.opt_state.applied)
  for name in ('params', 'ema_params'):
    for a, b in zip(jax.tree.leaves(getattr(after, name)), jax.tree.leaves(getattr(before, name))):
      np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(after.opt_state.inner), jax.tree.leaves(before.opt_state.inner)):
    np.testing.assert_array_equal(a, b)
  sane = after.replace(opt_state=after.opt_state._replace(scale=jnp.float32(2. ** 10)))
  applied, _ = step(sane, batch, jax.random.key(1))
  assert bool(applied.opt_state.applied) and int(applied.step) == 2
  # Adam's first step (its count was kept at 0: the warm-up's learning rate is still 0)
  mu = optax.tree_utils.tree_get(applied.opt_state, 'mu')
  assert not np.array_equal(mu['conv_in']['kernel'], 0.)


def test_the_loss_scale_is_checkpointed(tmp_path):
  state, _ = _step('float16')(_initial_state('float16'), jnp.asarray(_batches()[0]),
                              jax.random.key(1))
  manager = checkpointing.meta_manager(str(tmp_path))
  assert checkpointing.save(manager, state)
  target = checkpointing.abstract(state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  restored = checkpointing.restore(manager, int(state.step), target)
  assert isinstance(restored.opt_state, precision.LossScaleState)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
