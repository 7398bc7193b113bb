"""Controllable generation with exact scores of Gaussian data against exact conditionals.

For y ~ N(μ, Σ) the distribution of the unknown part given the known one is Gaussian with the
Schur-complement covariance; inpainting (known coordinates) and colorization (known gray
levels, a linear constraint) must land on it. The replacement method of Song+21 App. I is
exact only with enough Langevin mixing: with the corrector it lands within 3 s.e. (VE), without
it the correlated unknown part is measurably off. Class-conditional sampling of a two-component
mixture with the exact noisy classifier p_t(y | x) gives that component (Song+21 Eq. 14).
"""
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from closed_form import Gaussian, Mixture1D
from configs import quicktest
from configs.ve import cifar10_ncsnpp_continuous
import controllable_generation as cg
import datasets
from models import utils as mutils
import sde_lib
from utils import sample_keys

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
