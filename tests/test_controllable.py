"""Controllable generation with exact scores of Gaussian data against exact conditionals.

For y ~ N(μ, Σ) the distribution of the unknown part given the known one is Gaussian with the
Schur-complement covariance; inpainting (known coordinates) and colorization (known gray
levels, a linear constraint) must land on it. The replacement method of Song+21 App. I is
exact only with enough Langevin mixing: with the corrector it lands within 3 s.e. (VE), without
it the correlated unknown part is measurably off. Class-conditional sampling of a two-component
mixture with the exact noisy classifier p_t(y | x) gives that component (Song+21 Eq. 14).

The last tests run `main.py --mode=inpaint / colorize` (`modes.run_task`) on a
checkpoint of one training step and check what holds for any model: the known pixels and gray
levels come back, the files hold what was computed, and bad configs fail before any work.
"""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy import stats

from closed_form import Gaussian, Mixture1D
from configs import quicktest
from configs.ve import cifar10_ncsnpp_continuous
import controllable_generation as cg
import datasets
import evaluation
from models import utils as mutils
import modes
import run_lib
import sampling
import sde_lib
from streams import sample_keys

N = 4096
VE = sde_lib.VESDE(0.01, 50., 1000)


def _conditional(mu, cov, known_idx, values):
  """Mean and covariance of the other coordinates given x[known_idx] = values."""
  u = np.setdiff1d(np.arange(len(mu)), known_idx)
  k = np.asarray(known_idx)
  gain = cov[np.ix_(u, k)] @ np.linalg.inv(cov[np.ix_(k, k)])
  return u, mu[u] + gain @ (values - mu[k]), cov[np.ix_(u, u)] - gain @ cov[np.ix_(k, u)]


def _z_chi2(x, mean, cov):
  """Sums of squared mean and variance z-scores of whitened samples, and the 3σ χ² level."""
  evals, evecs = np.linalg.eigh(cov)
  w = (x - mean) @ evecs / np.sqrt(evals)
  z_mean = w.mean(0) * np.sqrt(len(w))
  z_var = (w.var(0, ddof=1) - 1) / np.sqrt(2 / (len(w) - 1))
  return np.sum(z_mean ** 2), np.sum(z_var ** 2), stats.chi2.ppf(0.9973, w.shape[1])


def test_inpainting_lands_on_the_exact_conditional():
  data = Gaussian.random(8, seed=1)
  mu, cov = np.asarray(data.mu, np.float64), np.asarray(data.cov, np.float64)
  a = mu[:4] + np.array([0.8, -0.5, 0.3, 0.6])
  u, c_mean, c_cov = _conditional(mu, cov, np.arange(4), a)
  known = jnp.asarray(np.tile(np.r_[a, np.zeros(4)], (N, 1)), jnp.float32)
  mask = jnp.asarray(np.r_[np.ones(4), np.zeros(4)], jnp.float32)
  keys = sample_keys(jax.random.key(0), N)
  run = lambda corrector: np.asarray(jax.jit(lambda k: cg.pc_inpaint(     # noqa: E731
      k, data.score_fn(VE), VE, known, mask, corrector=corrector, snr=0.05, eps=1e-5)[0])(keys),
      np.float64)
  x = run('langevin')
  np.testing.assert_allclose(x[:, :4], np.broadcast_to(a, (N, 4)), atol=1e-5)   # data kept
  m2, v2, level = _z_chi2(x[:, u], c_mean, c_cov)
  assert m2 < level and v2 < level, (m2, v2, level)
  m2, _, _ = _z_chi2(run('none')[:, u], c_mean, c_cov)          # replacement alone: biased
  assert m2 > 10 * level, m2


def test_colorization_keeps_the_gray_level_and_samples_the_chroma():
  data = Gaussian.random(12, seed=2)                              # 2×2 RGB images, correlated
  mu, cov = np.asarray(data.mu, np.float64), np.asarray(data.cov, np.float64)
  rot = np.kron(np.eye(4), cg.COLOR_BASIS)                        # pixel-wise decoupling, 12×12
  mu_y, cov_y = rot @ mu, rot @ cov @ rot.T
  gray_idx = np.arange(0, 12, 3)                                  # the √3·gray axes
  gray = (mu_y[gray_idx] + np.array([0.5, -0.4, 0.2, 0.3])) / np.sqrt(3)
  u, c_mean, c_cov = _conditional(mu_y, cov_y, gray_idx, gray * np.sqrt(3))

  def score(x, t, rng=None):
    return data.score_fn(VE)(x.reshape(len(x), 12), t).reshape(x.shape)
  gray_img = jnp.asarray(np.tile(gray.reshape(1, 2, 2, 1), (N, 1, 1, 1)), jnp.float32)
  keys = sample_keys(jax.random.key(1), N)
  x = jax.jit(lambda k: cg.pc_colorize(k, score, VE, gray_img, snr=0.05, eps=1e-5)[0])(keys)
  x = np.asarray(x, np.float64)
  np.testing.assert_allclose(x.mean(-1), np.broadcast_to(gray.reshape(2, 2), (N, 2, 2)), atol=1e-5)
  y = x.reshape(N, 12) @ rot.T
  m2, v2, level = _z_chi2(y[:, u], c_mean, c_cov)
  assert m2 < level and v2 < level, (m2, v2, level)


def test_color_basis_is_orthonormal_with_gray_first():
  np.testing.assert_allclose(cg.COLOR_BASIS @ cg.COLOR_BASIS.T, np.eye(3), atol=1e-12)
  np.testing.assert_allclose(cg.COLOR_BASIS[0], np.ones(3) / np.sqrt(3))
  x = jax.random.normal(jax.random.key(2), (5, 3))
  np.testing.assert_allclose(cg.couple(cg.decouple(x)), x, atol=1e-6)


def test_class_conditional_sampling_gives_the_component():
  mix = Mixture1D([0.7, 0.3], [-2., 2.], [0.25, 0.5])

  def logit_fn(x, t):                                   # log w_k + log N_k,t(x): exact p_t(k | x)
    s, sigma = VE.scale(t)[:, None], VE.sigma(t)[:, None]
    var = s ** 2 * (mix.var + sigma ** 2)
    return jnp.log(mix.w) - 0.5 * ((x - s * mix.mu) ** 2 / var + jnp.log(2 * np.pi * var))
  grad_fn = cg.get_classifier_grad_fn(logit_fn)
  labels = jnp.ones((N,), jnp.int32)
  keys = sample_keys(jax.random.key(3), N)
  x = jax.jit(lambda k: cg.pc_conditional_sample(
      k, mix.score_fn(VE), grad_fn, labels, VE, (1,), predictor='reverse_diffusion',
      corrector='langevin', snr=0.05, eps=1e-5)[0])(keys)
  x = np.asarray(x, np.float64)[:, 0]
  assert np.mean(x < -1) < 1e-3                     # none from component 0 (N(2, .5): 1e-5)
  assert abs(x.mean() - 2.) < 3 * np.sqrt(0.5 / N)
  assert abs(x.var(ddof=1) / 0.5 - 1) < 3 * np.sqrt(2 / (N - 1))


def test_edm_sampling_guided_by_the_exact_classifier_gives_the_component():
  """EDM's Heun sampler on t = σ (Karras+22 Alg. 1) with Song+21 Eq. 14's guided score lands on
  the asked component, as the PC sampler does above (the guidance `sampling.classifier` adds)."""
  mix, edm = Mixture1D([0.7, 0.3], [-2., 2.], [0.25, 0.5]), sde_lib.EDMSDE(0.002, 80.)

  def logit_fn(x, t):                                   # exact p_t(k | x) with σ(t) = t, s = 1
    var = mix.var + edm.sigma(t)[:, None] ** 2
    return jnp.log(mix.w) - 0.5 * ((x - mix.mu) ** 2 / var + jnp.log(2 * np.pi * var))
  score = cg.conditional_score_fn(mix.score_fn(edm), cg.get_classifier_grad_fn(logit_fn),
                                  jnp.ones((N,), jnp.int32))
  keys = sample_keys(jax.random.key(4), N)
  x = jax.jit(lambda k: sampling.edm_sample(k, score, edm, (1,), steps=64)[0])(keys)
  x = np.asarray(x, np.float64)[:, 0]
  # the guided ODE is the flow of N(2, 0.5 + t²): x_0 = 2 + c (x_T − 2), c = √(0.5 / (0.5 + 80²)),
  # from the sampler's x_T ~ N(0, 80²) (not N(2, 0.5 + 80²)): mean 2 − 2c, variance 80² c²
  c = np.sqrt(0.5 / (0.5 + 80. ** 2))
  assert np.mean(x < -1) < 1e-3                     # none from component 0
  assert abs(x.mean() - (2. - 2. * c)) < 3 * np.sqrt(0.5 / N)
  assert abs(x.var(ddof=1) / (80. * c) ** 2 - 1) < 3 * np.sqrt(2 / (N - 1))


def test_inpainter_and_colorizer_run_a_model_and_keep_what_is_known():
  """Through a tiny model (zero weights: score 0, so samples stay O(σ_max) and float32 keeps
  the gray level to 1e-4) and the data scalers: known pixels come back."""
  config = quicktest.shrink(cifar10_ncsnpp_continuous.get_config())
  config.data.num_channels = 3
  config.sampling.corrector = 'none'                              # Langevin needs a score ≠ 0
  sde, eps = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  params = jax.tree.map(jnp.zeros_like, params)
  scaler, inverse = datasets.get_data_scaler(config), datasets.get_data_inverse_scaler(config)
  images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  mask = jnp.zeros((2, 8, 8, 3)).at[:, :4].set(1.)
  keys = sample_keys(jax.random.key(2), 2)
  out = cg.get_inpainter(config, sde, model, scaler, inverse, eps)(keys, params, images, mask)
  np.testing.assert_allclose(out[:, :4], images[:, :4], atol=1e-5)
  assert np.all(np.isfinite(np.asarray(out)))
  gray = images.mean(-1, keepdims=True)
  out = np.asarray(cg.get_colorizer(config, sde, model, scaler, inverse, eps)(keys, params, gray))
  assert np.std(out - np.asarray(gray)) > 1.                      # the chroma was generated
  np.testing.assert_allclose(out.mean(-1, keepdims=True), gray, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# main.py --mode=inpaint / --mode=colorize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, TILE = 4, 32 + 2               # 4 images; 8 px digits enlarged 4× in the PNG, 2 px padding


def _task_config():
  """The README's VE NCSN++ config, shrunk: DIGITS gray tiled to RGB, data in [0, 1]."""
  config = quicktest.shrink(cifar10_ncsnpp_continuous.get_config())
  config.data.num_channels = 3
  t = config.training
  t.n_iters, t.eval_freq, t.snapshot_sampling = 1, 2, False     # one step, nothing else compiled
  config.eval.batch_size = B
  return config


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('controllable'))
  run_lib.train(_task_config(), workdir)
  return workdir


def _first_test_digits():
  return evaluation.images_to_uint8(
      np.repeat(datasets.digits_split()['test_images'][:B], 3, axis=-1), centered=False)


def _check_files(workdir, task, arrays):
  """The npz holds the returned arrays as uint8; the PNG shows them as originals / input /
  result blocks of 2 × 2 tiles."""
  saved = np.load(os.path.join(workdir, 'controllable', f'{task}_1.npz'))
  assert set(saved) == set(arrays)
  for k, v in arrays.items():
    assert saved[k].dtype == np.uint8 and saved[k].shape == v.shape, k
  np.testing.assert_array_equal(saved['original'], _first_test_digits())  # the eval split's first
  grid = np.asarray(Image.open(os.path.join(workdir, 'controllable', f'{task}_1.png')))
  assert grid.shape == (6 * TILE + 2, 2 * TILE + 2, 3)
  for block, name in enumerate(('original', 'input', 'result')):
    top = 2 + 2 * block * TILE                      # image 0 opens each block
    np.testing.assert_array_equal(grid[top:top + 32, 2:34],
                                  np.repeat(np.repeat(saved[name][0], 4, 0), 4, 1))
  return saved


def test_inpaint_mode_keeps_the_known_pixels_exactly(workdir, info_log):
  """With noise_removal the known part is the marginal mean at eps: the data itself for VE."""
  arrays = modes.run_inpaint(_task_config(), workdir)
  assert f'restored {workdir}/checkpoints' in info_log.text       # not "resumed": no training
  saved = _check_files(workdir, 'inpaint', arrays)
  known = np.broadcast_to(saved['mask'], saved['original'].shape).astype(bool)
  assert known[:, :, :4].all() and not known[:, :, 4:].any()     # right_half: left half known
  np.testing.assert_array_equal(saved['result'][known], saved['original'][known])
  assert np.all(saved['input'][~known] == 128)                   # unknown shown as gray 0.5
  assert np.any(saved['result'][~known] != saved['original'][~known])


def test_inpaint_without_noise_removal_keeps_a_noisy_known_part(workdir):
  """Without it the last replacement is a draw of the marginal at eps: data + σ(eps)·z (VE)."""
  config = _task_config()
  config.sampling.noise_removal = False
  config.sampling.inpaint_mask = 'random'
  arrays = modes.run_inpaint(config, workdir)
  sde, eps = sde_lib.get_sde(config)
  sigma = float(sde.sigma(jnp.asarray(eps)))                     # ≈ σ_min = 0.01 (data in [0, 1])
  known = np.broadcast_to(arrays['mask'], arrays['original'].shape).astype(bool)
  z = (arrays['result'] - arrays['original'])[known] / sigma
  assert np.abs(z).max() < 5.5 and abs(z.std() - 1) < 0.2, (np.abs(z).max(), z.std())


def test_colorize_mode_keeps_the_gray_level(workdir):
  """The result's channel mean is the input gray to float32 rounding, which scales with the
  pixel's norm (the colour map is orthonormal); a one-step model's chroma is huge, so the uint8
  files clip it and their gray levels are not comparable."""
  arrays = modes.run_colorize(_task_config(), workdir)
  saved = _check_files(workdir, 'colorize', arrays)
  gray = _first_test_digits().mean(-1, keepdims=True)
  assert np.all(np.abs(saved['input'] - gray) <= 0.5)            # gray digits stay gray
  result, gray = arrays['result'], arrays['input'][..., :1]
  tol = 1e-6 * (1. + np.linalg.norm(result, axis=-1, keepdims=True))
  assert np.all(np.abs(result.mean(-1, keepdims=True) - gray) <= tol)
  assert np.std(result - gray) > 1.                              # the chroma was generated


def test_inpaint_masks():
  config = _task_config()
  config.sampling.inpaint_mask = 'center'
  center = cg.inpaint_mask(config, 2)[..., 0]
  np.testing.assert_array_equal(center[0], np.pad(np.zeros((4, 4)), 2, constant_values=1.))
  config.sampling.inpaint_mask = 'random'
  draw = cg.inpaint_mask(config, 64)
  assert draw.shape == (64, 8, 8, 1) and abs(draw.mean() - 0.5) < 3 * 0.5 / 64
  np.testing.assert_array_equal(draw, cg.inpaint_mask(config, 64))   # seeded by config.seed
  config.seed += 1
  assert np.any(draw != cg.inpaint_mask(config, 64))


def test_task_errors_before_any_work(tmp_path):
  config = _task_config()
  config.sampling.inpaint_mask = 'left_half'
  with pytest.raises(ValueError, match="inpaint_mask = 'left_half' is not one of 'center', "
                                       "'random', 'right_half'"):
    modes.run_inpaint(config, str(tmp_path))
  config = _task_config()
  config.data.num_channels = 1
  with pytest.raises(ValueError, match='colorize needs RGB images: data.num_channels = 1'):
    modes.run_colorize(config, str(tmp_path))
  config = _task_config()
  config.model.class_conditional = True
  with pytest.raises(ValueError, match='needs an unconditional model'):
    modes.run_inpaint(config, str(tmp_path))
  config = _task_config()
  config.training.pfgmpp_D = 128.
  with pytest.raises(ValueError, match='pfgmpp_D = 128.0 .PFGM'):
    modes.run_colorize(config, str(tmp_path))
  with pytest.raises(FileNotFoundError, match='no readable checkpoint.*train first'):
    modes.run_colorize(_task_config(), str(tmp_path))
  assert os.listdir(tmp_path) == []       # a mistyped workdir gets no empty checkpoint folders


def test_main_dispatches_the_modes(tmp_path):
  """`main.py --mode=inpaint` reaches run_task: an empty workdir has no checkpoint."""
  out = subprocess.run([sys.executable, 'main.py', '--config=configs/quickstart/digits.py',
                        f'--workdir={tmp_path}', '--mode=inpaint'], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 1 and 'no readable checkpoint' in out.stderr, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]      # one line, not a traceback


def test_tasks_take_a_given_checkpoint(workdir, tmp_path):
  """--checkpoint=<another run's orbax step dir>: the same inpainting as from that run itself."""
  own = modes.run_inpaint(_task_config(), workdir)
  given = modes.run_inpaint(_task_config(), str(tmp_path),
                         checkpoint=os.path.join(workdir, 'checkpoints', '1'))
  np.testing.assert_array_equal(given['result'], own['result'])
  assert os.path.exists(tmp_path / 'controllable' / 'inpaint_1.png')
