"""PFGM++ (Xu+23, arXiv:2302.04265) and STF (Xu+23b, arXiv:2302.00670) against closed forms.

- PFGM++'s kernel p_r(x|y) ∝ (‖x−y‖² + r²)^(−(N+D)/2), r = σ√D: R²/r² ~ BetaPrime(N/2, D/2)
  (scipy's law), D → ∞ gives N(0, σ² I) (χ²_N norms); its ideal denoiser for a finite set of
  points is a posterior mean with kernel weights, computed here in float64 NumPy; the loss is
  minimised by it (not by the Gaussian one), and EDM's Heun ODE from PFGM++'s prior, driven by
  it, lands on the points with their weights.
- STF's target is that posterior mean over the reference set: equal to the float64 one, and for
  Gaussian data closer to the closed-form ideal denoiser (Karras+22 Eq. 3) than the plain target
  y, more so for bigger references.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from closed_form import Gaussian
from configs import default_lib, quicktest
from configs.pfgmpp import cifar10_ncsnpp as pfgmpp_config
from configs.stf import cifar10_ncsnpp as stf_config
import losses
from models import utils as mutils
import sampling
import sde_lib
from streams import sample_keys


def _posterior_mean(x, sigma, points, weights, D):
  """E[y | x] for y ~ Σ_i weights_i δ(points_i) under the kernel of D (inf: Gaussian), float64."""
  x, points = np.asarray(x, np.float64), np.asarray(points, np.float64)
  sq = ((x[:, None, :] - points[None]) ** 2).sum(-1)
  n_dims = x.shape[1]
  sigma = np.asarray(sigma, np.float64)[:, None]
  if np.isinf(D):
    log_k = -sq / (2 * sigma ** 2)
  else:
    log_k = -0.5 * (n_dims + D) * np.log(sq + D * sigma ** 2)
  log_w = np.log(weights)[None] + log_k
  w = np.exp(log_w - special.logsumexp(log_w, axis=1, keepdims=True))
  return w @ points


# ------------------------------------------------------------------------------------------------
# The kernel

@pytest.mark.parametrize('n_dims, D', [(64, 16.), (12, 5.), (3072, 128.)])
def test_pfgmpp_radius_is_beta_prime(n_dims, D):
  n = sde_lib.PFGMPPNoise(D).sample(jax.random.key(0), (4000, n_dims))
  r2 = np.sum(np.asarray(n, np.float64) ** 2, axis=1)
  assert stats.kstest(r2 / D, stats.betaprime(n_dims / 2, D / 2).cdf).pvalue > 1e-3
  u = np.asarray(n, np.float64) / np.sqrt(r2)[:, None]                      # uniform direction
  assert np.all(np.abs(u.mean(0)) < 4 / np.sqrt(len(u) * n_dims))


def test_pfgmpp_large_d_is_gaussian():
  n = sde_lib.PFGMPPNoise(1e8).sample(jax.random.key(1), (4000, 64))
  r2 = np.sum(np.asarray(n, np.float64) ** 2, axis=1)
  assert stats.kstest(r2, stats.chi2(64).cdf).pvalue > 1e-3
  small = sde_lib.PFGMPPNoise(8.).sample(jax.random.key(1), (4000, 64))   # heavy tails: not χ²
  assert stats.kstest(np.sum(np.asarray(small, np.float64) ** 2, 1), stats.chi2(64).cdf).pvalue < 1e-6


def test_noise_law_from_config_and_errors():
  config = default_lib.get_base_config()
  assert isinstance(sde_lib.get_noise(config), sde_lib.GaussianNoise)


# ------------------------------------------------------------------------------------------------
# Targets and losses

POINTS = np.array([[1., 1., 0., 0.], [-1., 0., 1., 0.], [0., -1., 0., 1.]], np.float32)


@pytest.mark.parametrize('D', [np.inf, 6.])
def test_stf_target_is_the_posterior_mean_over_the_reference(D):
  noise = sde_lib.GaussianNoise() if np.isinf(D) else sde_lib.PFGMPPNoise(D)
  x = np.asarray(jax.random.normal(jax.random.key(2), (64, 4)), np.float32) * 1.5
  sigma = np.exp(np.linspace(-2., 1.5, 64)).astype(np.float32)
  got = losses.stf_target(jnp.asarray(x), jnp.asarray(sigma), jnp.asarray(POINTS), noise)
  want = _posterior_mean(x, sigma, POINTS, np.ones(3) / 3, D)
  np.testing.assert_allclose(got, want, atol=2e-5)


def _denoiser_scan(D, a_values, sigma=1.2):
  """Mean PFGM++-noise D-loss of D_a = a·D*_D + (1 − a)·D*_∞ (both exact posterior means) and
  its per-sample derivative in a at each `a`, noise of law D (σ fixed, λ = 1)."""
  noise = sde_lib.GaussianNoise() if np.isinf(D) else sde_lib.PFGMPPNoise(D)
  rng = np.random.RandomState(0)
  y = POINTS[rng.randint(0, 3, 20000)]
  x = y + np.asarray(noise.sample(jax.random.key(3), y.shape), np.float64) * sigma
  s = np.full(len(x), sigma)
  d_pf, d_g = (_posterior_mean(x, s, POINTS, np.ones(3) / 3, d) for d in (6., np.inf))
  out = []
  for a in a_values:
    resid = a * d_pf + (1 - a) * d_g - y
    grad = 2 * np.sum(resid * (d_pf - d_g), axis=1)
    out.append((grad.mean(), grad.std() / np.sqrt(len(grad))))
  return out


def test_pfgmpp_loss_is_minimised_by_its_own_ideal_denoiser():
  """Under D = 6 noise the loss is stationary at D*_6 (a = 1), not at the Gaussian D*_∞ (a = 0);
  under Gaussian noise the other way round."""
  (g0, se0), (g1, se1) = _denoiser_scan(6., (0., 1.))
  assert abs(g1) < 3 * se1 and g0 < -10 * se0
  (g0, se0), (g1, se1) = _denoiser_scan(np.inf, (0., 1.))
  assert abs(g0) < 3 * se0 and g1 > 10 * se1


def test_pfgmpp_loss_uses_the_kernel():
  """The registered edm loss with pfgmpp_D = 10 on y = 0, σ = 1 and F = 0: D(x) = c_skip·n, so
  the loss is λ c_skip² E‖n‖²/N = 5 · 0.2² · D/(D − 2) = 0.25 (Gaussian noise: 0.2)."""
  config = quicktest.shrink(pfgmpp_config.get_config())
  config.training.pfgmpp_D = 10.
  config.training.update(P_mean=0., P_std=1e-6, reduce_mean=True,      # σ = 1, λ = 1.25 / 0.25
                         augment_p=0.)
  x = jnp.zeros((8000, 2, 2, 2))
  identity = lambda x, labels, rng: jnp.zeros_like(x)                    # noqa: E731  F = 0
  loss = float(losses.get_loss_fn(config, None)(jax.random.key(4), identity, x))
  c_skip = 0.25 / 1.25                                                  # Karras+22 Table 1
  want = (1.25 / 0.25) * c_skip ** 2 * 10. / 8.                        # E‖n‖²/N = D/(D − 2)
  assert abs(loss - want) < 0.04 * want, (loss, want)                  # s.e. ≈ 0.9%


def test_stf_targets_of_gaussian_data_approach_the_ideal_denoiser():
  gauss = Gaussian.random(4, seed=1)
  sigma = jnp.full((512,), 1.)
  y_all = gauss.sample(jax.random.key(5), 512 + 4096)
  y = y_all[:512]
  x = y + sigma[:, None] * jax.random.normal(jax.random.key(6), y.shape)
  ideal = gauss.denoiser(x, sigma)
  err = lambda t: float(jnp.mean(jnp.sum((t - ideal) ** 2, 1)))                # noqa: E731
  noise = sde_lib.GaussianNoise()
  plain = err(y)
  groups = jax.vmap(lambda xs, ss, ys: losses.stf_target(xs, ss, ys, noise))(
      x.reshape(8, 64, 4), sigma.reshape(8, 64), y.reshape(8, 64, 4)).reshape(512, 4)
  small = err(groups)                                                 # 64 references each
  batch = err(losses.stf_target(x, sigma, y, noise))                  # the batch of 512
  big = err(losses.stf_target(x, sigma, y_all, noise))                # and 4096 more images
  assert big < batch < small < plain, (plain, small, batch, big)
  assert big < 0.1 * plain


def test_stf_loss_trains_on_every_kth_reference_image():
  """At σ → 0 the STF target is the sample's own image (it is in the reference): the STF loss of
  reference x equals the plain loss of x[::k] with the same key."""
  config = quicktest.shrink(stf_config.get_config())
  config.training.update(P_mean=-9., P_std=1e-6, batch_size=3, stf_ref_batch=12, augment_p=0.)
  x = jax.random.uniform(jax.random.key(7), (12, 2, 2, 1), minval=-1., maxval=1.)
  net = lambda x, labels, rng: 0.3 * x + 0.1                             # noqa: E731
  stf = losses.get_loss_fn(config, None)(jax.random.key(8), net, x)
  plain = losses.get_loss_fn(config, None, train=False)(jax.random.key(8), net, x[::4])
  np.testing.assert_allclose(stf, plain, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Sampling

def test_heun_from_the_pfgmpp_prior_lands_on_the_points():
  """D = 6, N = 4: the exact D*_6 drives EDM's Heun (64 steps) from PFGM++'s prior at σ_max = 80
  to the points, with their weights (3/4, 1/8, 1/8) within 3 s.e."""
  D, weights = 6., np.array([0.75, 0.125, 0.125])
  config = default_lib.get_base_config()
  config.training.pfgmpp_D = D
  config.sampling.update(method='edm', steps=64)
  sde = sde_lib.EDMSDE(0.002, 80.)
  pts, logw = jnp.asarray(POINTS), jnp.log(jnp.asarray(weights, jnp.float32))

  def denoiser(x, sigma):
    sq = jnp.sum((x[:, None] - pts[None]) ** 2, -1)
    w = jax.nn.softmax(logw - 0.5 * (4 + D) * jnp.log(sq + D * sigma[:, None] ** 2), axis=1)
    return w @ pts
  sampler = sampling.SAMPLERS.get('edm')(config, sde, (4,), 0.002)
  keys = sample_keys(jax.random.key(9), 2048)
  x = np.asarray(jax.jit(lambda k: sampler(k, mutils.denoiser_to_score(sde, denoiser))[0])(keys))
  dist = np.linalg.norm(x[:, None] - POINTS[None], axis=-1)
  assert np.all(dist.min(1) < 0.05)
  frac = np.bincount(dist.argmin(1), minlength=3) / len(x)
  se = np.sqrt(weights * (1 - weights) / len(x))
  assert np.all(np.abs(frac - weights) < 3 * se), frac
  z = sampling.pfgmpp_latents(keys, sde_lib.PFGMPPNoise(D), (4,))
  plain = jax.jit(lambda k: sampling.edm_sample(k, mutils.denoiser_to_score(sde, denoiser), sde,
                                                (4,), steps=64, z=z)[0])(keys)
  np.testing.assert_allclose(x, plain, atol=1e-6)          # the sampler starts from that prior
  z = np.asarray(z, np.float64)
  assert stats.kstest(np.sum(z ** 2, 1) / D, stats.betaprime(2, D / 2).cdf).pvalue > 1e-3


def test_pfgmpp_latents_depend_only_on_each_seed():
  """As the Gaussian latents: sample i of the prior depends only on key i (batches of 4 vs 16)."""
  keys = sample_keys(jax.random.key(10), 16)
  noise = sde_lib.PFGMPPNoise(128.)
  full = sampling.pfgmpp_latents(keys, noise, (8, 8, 3))
  parts = jnp.concatenate([sampling.pfgmpp_latents(keys[i:i + 4], noise, (8, 8, 3))
                           for i in range(0, 16, 4)])
  np.testing.assert_array_equal(full, parts)
  assert not np.allclose(full[0], full[1])
