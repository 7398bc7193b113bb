"""Patch Diffusion (Wang+23, arXiv:2304.12526): coordinates, crops, patch sizes, the network input.

Truth used: the coordinate formula of Patch-Diffusion's patch_loss.py, (2 (c/(R−1) − ½),
2 (r/(R−1) − ½)); images whose pixels hold their own (row, column), so a crop and its
coordinate channels can be checked against each other through the real loss; the patch-size
law (1 − p)·2/5, (1 − p)·3/5, p (training_loop.py) by counting, the train step's sizes against that
schedule step by step; the parameter count of two
extra input channels of the first 3×3 convolution.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import quicktest
from configs.patch import celeba64_ddpmpp
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
  for step in range(0, n_steps, n):
    state, _ = fns.train_step(state, batch, streams.run_key(config), step)
    params.append(jax.tree.map(np.asarray, state.params))   # the state is donated
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
