"""Patch Diffusion (Wang+23, arXiv:2304.12526): coordinates, crops, patch sizes, the network input.

Truth used: the coordinate formula of Patch-Diffusion's patch_loss.py, (2 (c/(R−1) − ½),
2 (r/(R−1) − ½)); images whose pixels hold their own (row, column), so a crop and its
coordinate channels can be checked against each other through the real loss; the patch-size
law (1 − p)·2/5, (1 − p)·3/5, p (training_loop.py) by counting, the train step's sizes against that
schedule step by step; the parameter count of two
extra input channels of the first 3×3 convolution; the batch multiplier, lr ramp and EMA count of
training_loop.py (batch_mul = table[p] // table[R], cur_nimg += int(batch · batch_mul_avg),
β = 0.5^(batch · batch_mul_avg / h)) against our steps, and a resumed run's batches against the
uninterrupted pipeline's elements.
"""
import dataclasses
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import quicktest
from configs.patch import celeba64_ddpmpp
from configs.quickstart import digits
import data_state
from foreign import load
import datasets
import losses
from models import precond
from models import utils as mutils
import run_lib
import sde_lib
import streams

R = 8


def _config(real_p=0.5):
  config = quicktest.shrink(celeba64_ddpmpp.get_config())
  config.training.patch_real_p = real_p
  return config


def _position_images(n=4):
  """[n, R, R, 3] images whose channels 0, 1 hold row/R and column/R of the pixel."""
  r, c = np.meshgrid(np.arange(R), np.arange(R), indexing='ij')
  img = np.stack([r / R, c / R, np.zeros_like(r, float)], -1).astype(np.float32)
  return jnp.asarray(np.repeat(img[None], n, 0))


def test_coordinate_grid_is_the_reference_formula():
  grid = np.asarray(precond.coordinate_grid(5))
  assert grid.shape == (5, 5, 2)
  np.testing.assert_allclose(grid[2, 4], [1., 0.])           # column 4 -> x = 1, row 2 -> y = 0
  np.testing.assert_allclose(grid[0, 1], [2 * (1 / 4 - .5), -1.])
  np.testing.assert_allclose(grid[..., 0], np.tile(np.linspace(-1, 1, 5), (5, 1)), atol=1e-7)


def test_random_patches_crop_image_and_grid_together_uniformly():
  images = _position_images(4000)
  patches, coords = losses.random_patches(jax.random.key(0), images, 2)
  patches, coords = np.asarray(patches), np.asarray(coords)
  rows, cols = np.rint(patches[:, 0, 0, 0] * R).astype(int), np.rint(patches[:, 0, 0, 1] * R).astype(int)
  grid = np.asarray(precond.coordinate_grid(R))
  np.testing.assert_allclose(coords, np.stack([grid[r:r + 2, c:c + 2] for r, c in zip(rows, cols)]))
  np.testing.assert_allclose(patches[:, 1, 1, :2] * R, np.stack([rows + 1, cols + 1], 1), atol=1e-5)
  counts = np.bincount(rows * (R - 1) + cols, minlength=(R - 1) ** 2)   # corners 0..R-2 each way
  assert stats.chisquare(counts).pvalue > 1e-3 and rows.max() == R - 2


def _recording_net(seen):
  def model_fn(x, labels, rng=None):
    jax.debug.callback(lambda a: seen.append(np.asarray(a)), x)
    return jnp.zeros(x.shape[:3] + (3,))
  return model_fn


def test_the_loss_feeds_each_patch_size_with_its_coordinates():
  config = _config(real_p=0.5)
  config.training.update(P_mean=-9., P_std=1e-6)             # σ ≈ 1e-4: c_in x ≈ x / σ_data
  loss_fn = losses.get_loss_fn(config, None)
  for divisor in losses.PATCH_DIVISORS:
    seen = []
    for i in range(3):
      loss_fn(jax.random.key(i), _recording_net(seen), _position_images(), patch=divisor)
    jax.effects_barrier()
    assert {s.shape for s in seen} == {(4, R // divisor, R // divisor, 5)}   # + (x_pos, y_pos)
    for net_in in seen:                                       # coords match the pixels' position
      row, col = net_in[..., 0] * 0.5 * R, net_in[..., 1] * 0.5 * R
      np.testing.assert_allclose(net_in[..., 3], 2 * (col / (R - 1) - .5), atol=2e-3)
      np.testing.assert_allclose(net_in[..., 4], 2 * (row / (R - 1) - .5), atol=2e-3)


def test_patch_sizes_follow_the_reference_law_and_depend_only_on_the_step():
  schedule = losses.patch_schedule(_config(real_p=0.5))
  divisors = np.array(schedule(0, 3000))
  freq = np.array([np.mean(divisors == d) for d in losses.PATCH_DIVISORS])
  want = np.array(losses.patch_probabilities(0.5))            # 0.2, 0.3, 0.5
  assert np.all(np.abs(freq - want) < 3 * np.sqrt(want * (1 - want) / len(divisors))), freq
  assert schedule(1234, 7) == tuple(divisors[1234:1241])      # any grouping, same sizes
  other = _config(real_p=0.5)
  other.seed += 1
  assert losses.patch_schedule(other)(0, 100) != tuple(divisors[:100])
  assert set(losses.patch_schedule(_config(real_p=0.))(0, 200)) == {2, 4}


def _train(config, n_steps, seen):
  """`n_steps` optimizer steps of run_lib's train step on fixed digits; `seen` gets the patch
  divisor each step ran (at run time) and 'trace' once per compilation. Returns the parameters
  after each call."""
  built = run_lib.build(config)
  def loss_fn(rng, model_fn, x, patch=1):
    seen.append('trace')
    jax.debug.callback(lambda: seen.append(patch))
    return built.loss_fn(rng, model_fn, x, patch=patch)
  run = dataclasses.replace(built, loss_fn=loss_fn)
  fns, state, n = run_lib.make_train_fns(run), run_lib.init_state(run), config.training.n_jitted_steps
  batch = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (n, 2, R, R, 3)), jnp.float32)
  params = []
  state = fns.pack(state)
  for step in range(0, n_steps, n):
    state, _ = fns.train_step(state, batch, streams.run_key(config), step)
    params.append(jax.tree.map(np.asarray, fns.unpack(state).params))   # the state is donated
  jax.effects_barrier()
  return params


@pytest.mark.slow   # ~100 s: four train-step compilations
def test_the_train_step_compiles_once_per_size_runs_the_scheduled_sizes_and_ignores_grouping():
  config, seen = _config(real_p=0.5), []
  config.model.ch_mult, config.model.attn_resolutions = (1,), ()   # 4 compilations: keep them small
  single = _train(config, 8, seen)
  ran = [s for s in seen if s != 'trace']
  schedule = losses.patch_schedule(config)(0, 8)
  assert tuple(ran) == schedule and len(set(ran)) == 3
  assert seen.count('trace') == 3                             # one compilation per size
  assert schedule[0] != schedule[1]       # the grouped call below scans over two sizes
  config.training.n_jitted_steps = 2      # one call of two steps: one more compilation
  grouped = _train(config, 2, [])
  for a, b in zip(jax.tree.leaves(single[1]), jax.tree.leaves(grouped[0])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluation_and_sampling_see_full_images_with_the_full_grid():
  config = _config(real_p=0.)
  seen = []
  losses.get_loss_fn(config, None, train=False)(jax.random.key(1), _recording_net(seen),
                                                _position_images())
  jax.effects_barrier()
  assert seen[0].shape == (4, R, R, 5)
  np.testing.assert_allclose(seen[0][0, ..., 3:], precond.coordinate_grid(R))
  score = precond.get_score_fn(config, sde_lib.EDMSDE(), _recording_net(seen))
  score(_position_images(), jnp.full((4,), 1.))
  jax.effects_barrier()
  np.testing.assert_allclose(seen[1][2, ..., 3:], precond.coordinate_grid(R))


def test_coordinates_add_two_input_channels_to_the_first_convolution():
  config = _config()
  plain = config.copy_and_resolve_references()
  plain.model.patch_coords = False
  plain.training.patch_real_p = 1.
  assert mutils.count_params(config) - mutils.count_params(plain) == 2 * 3 * 3 * config.model.nf


# Patch-Diffusion training_loop.py: batch_mul = table[p] // table[R] for patches of p pixels.
REFERENCE_BATCH_MUL_TABLE = {512: 1, 256: 2, 128: 4, 64: 16, 32: 32, 16: 64}


def _counting_elements(batch, counter):
  """tf.data-like training elements {'image': [1, batch, R, R, 3]} whose pixels hold their index."""
  while True:
    counter[0] += 1
    yield {'image': np.full((1, batch, R, R, 3), counter[0] - 1, np.float32)}


def test_a_step_of_patches_r_over_d_reads_d_batches_as_the_reference_at_64_px():
  config = _config(real_p=0.5)
  run, b, counter = run_lib.build(config), config.training.batch_size, [0]
  muls = losses.patch_batch_multipliers(config)
  divisors = losses.patch_schedule(config)(0, 30)
  want = [REFERENCE_BATCH_MUL_TABLE[64 // d] // REFERENCE_BATCH_MUL_TABLE[64] for d in divisors]
  assert [muls(s) for s in range(30)] == want and set(want) == {1, 2, 4}
  scale = datasets.get_data_scaler(config)
  batches, first = run_lib.train_batches(_counting_elements(b, counter), run, 0), 0
  for step, m in enumerate(want):
    got = np.asarray(next(batches))
    assert got.shape == (1, m * b, R, R, 3), step
    np.testing.assert_allclose(got[0, :, 0, 0, 0], scale(np.repeat(np.arange(first, first + m), b)))
    first += m
    assert counter[0] == first == run_lib.train_elements_before(config, step + 1)
  resumed = run_lib.train_batches(_counting_elements(b, [first]), run, 30)   # a replay from 30
  np.testing.assert_allclose(np.asarray(next(resumed)), np.asarray(next(batches)))


def test_without_the_multiplier_a_call_reads_one_batch_at_any_patch_size():
  config = _config(real_p=0.5)
  config.training.patch_batch_mul = False
  assert losses.patch_batch_multipliers(config) is None
  assert losses.images_per_step(config) == config.training.batch_size
  config.training.n_jitted_steps = 2
  assert run_lib.train_elements_before(config, 10) == 5


def test_lr_ramp_and_ema_count_the_reference_images_per_step():
  """Patch-Diffusion training_loop.py: cur_nimg += batch·batch_mul_avg, batch_mul_avg =
  Σ p·[4, 2, 1] (1.9 at real_p = 0.5); lr = lr·min(nimg / ramp, 1); β = 0.5^(batch·mul_avg / h),
  h = min(h, nimg·ema_rampup_ratio)."""
  config = _config(real_p=0.5)
  b = config.training.batch_size
  config.optim.update(lr=1e-3, lr_rampup_kimg=1., warmup=0)
  config.model.update(ema_halflife_kimg=0.5, ema_rampup_ratio=0.05)
  mul_avg = np.sum(np.array([0.5 * 2 / 5, 0.5 * 3 / 5, 0.5]) * np.array([4, 2, 1]))
  assert mul_avg == pytest.approx(1.9) and losses.images_per_step(config) == pytest.approx(b * 1.9)
  optimizer, ema = losses.get_optimizer(config), losses.get_ema_rate(config)
  params = {'w': jnp.zeros(3)}
  state = optimizer.init(params)
  for step in range(40):
    nimg = step * int(b * mul_avg)                            # the reference's cur_nimg
    updates, state = optimizer.update({'w': jnp.full(3, 0.3)}, state, params)
    np.testing.assert_allclose(updates['w'], -1e-3 * min(nimg / 1000, 1.), rtol=1e-4, atol=1e-9)
    halflife = min(500., nimg * 0.05)
    assert float(ema(step)) == pytest.approx(0.5 ** (b * mul_avg / max(halflife, 1e-8)), rel=1e-5)


def _patch_run_config():
  config = quicktest.shrink(digits.get_config())
  t = config.training
  t.patch_real_p, config.model.patch_coords = 0.5, True
  t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 4, 4, 4
  t.snapshot_sampling, config.eval.enable_loss = False, False
  return config


@pytest.fixture(scope='module')
def patch_run(tmp_path_factory):
  """A run of the quickstart's network on patches, stopped at step 4."""
  workdir = str(tmp_path_factory.mktemp('patch') / 'run')
  run_lib.train(_patch_run_config(), workdir)
  return workdir


@pytest.mark.parametrize('replay', [False, True])
def test_a_resumed_patch_run_reads_the_batches_of_an_uninterrupted_one(patch_run, tmp_path,
                                                                        recorded_batches, replay):
  """Steps 5 and 6 of a run resumed at step 4 get the elements an uninterrupted run's would: from
  the saved pipeline position, or (its state deleted) by replaying Σ m(s) elements of steps
  1–4."""
  config, workdir = _patch_run_config(), str(tmp_path / 'run')
  shutil.copytree(patch_run, workdir)
  if replay:
    shutil.rmtree(os.path.join(workdir, data_state.DATA))
  muls = losses.patch_batch_multipliers(config)
  first = sum(muls(s) for s in range(4))         # the elements of steps 1-4
  train, _ = datasets.get_dataset(config, uniform_dequantization=config.data.uniform_dequantization)
  elements = [b['image'] for b in train.take(first + muls(4) + muls(5)).as_numpy_iterator()]
  calls = recorded_batches
  config.training.n_iters = 6
  assert int(run_lib.train(config, workdir).step) == 6
  scale = datasets.get_data_scaler(config)
  for step, got in zip((4, 5), calls[0]):
    want = np.concatenate(elements[first:first + muls(step)], axis=1)
    np.testing.assert_array_equal(got, scale(want))
    first += muls(step)
  assert len(calls[0]) == 2


def test_a_published_files_kimg_is_read_as_the_steps_that_named_it():
  """Patch-Diffusion saves network-snapshot-{cur_nimg // 1000:06d}.pkl with cur_nimg += int(batch ·
  1.9) per step: 1000 steps of 256 images (486 each) name 000486; EDM's own count 512 per step."""
  config = celeba64_ddpmpp.get_config()
  assert load._kimg_step('/x/network-snapshot-000486.pkl', config) == 1000
  assert load._kimg_step('/x/training-state-004860.pt', config) == 10000
  config.training.patch_real_p = 1.
  assert load._kimg_step('/x/network-snapshot-000512.pkl', config) == 2000
