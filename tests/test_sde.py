"""SDEs against truths derived independently: moment ODEs of the linear SDE, the normal density."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sde_lib
from models import utils as mutils

SDES = {'ve': lambda: sde_lib.VESDE(0.01, 50., 1000), 'vp': lambda: sde_lib.VPSDE(0.1, 20., 1000),
        'subvp': lambda: sde_lib.subVPSDE(0.1, 20., 1000)}


def _moments_by_ode(sde, t_end, steps=20000):
  """Integrate m' = a(t) m, v' = 2 a(t) v + g(t)² (a linear SDE's moments) from m=1, v=0 by RK4;
  a(t) (the drift of x = 1) and g(t) are evaluated in one batched call at the steps' nodes."""
  h = t_end / steps
  nodes = np.linspace(0., t_end, 2 * steps + 1)           # t, t + h/2, t + h, ...
  drift, g = sde.sde(jnp.ones((nodes.size, 1)), jnp.asarray(nodes))
  a, g2 = np.asarray(drift[:, 0], np.float64), np.asarray(g, np.float64) ** 2

  def rhs(i, y):
    return np.array([a[i] * y[0], 2 * a[i] * y[1] + g2[i]])
  y = np.array([1., 0.])
  for step in range(steps):
    i = 2 * step
    k1 = rhs(i, y); k2 = rhs(i + 1, y + h / 2 * k1)
    k3 = rhs(i + 1, y + h / 2 * k2); k4 = rhs(i + 2, y + h * k3)
    y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  return y


@pytest.mark.parametrize('name', SDES)
def test_marginal_prob_solves_the_moment_odes(name):
  sde = SDES[name]()
  # VE starts at variance σ_min² rather than 0 (Song+21 Eq. 30 is defined for t > 0 from σ_min).
  for t_end in [0.3, 1.0]:
    m, v = _moments_by_ode(sde, t_end, steps=2000)
    mean, std = sde.marginal_prob(jnp.ones((1, 1)), jnp.array([t_end]))
    v0 = sde.sigma_min ** 2 if name == 've' else 0.
    np.testing.assert_allclose(float(mean[0, 0]), m, rtol=1e-4)
    np.testing.assert_allclose(float(std[0]) ** 2, v + v0, rtol=2e-3)


@pytest.mark.parametrize('name', SDES)
def test_sigma_scale_view(name):
  sde = SDES[name]()
  t = jnp.linspace(1e-3, 1., 37)
  np.testing.assert_allclose(sde.sigma_inv(sde.sigma(t)), t, rtol=1e-4, atol=1e-6)
  mean, std = sde.marginal_prob(jnp.ones((37, 3)), t)
  np.testing.assert_allclose(std, sde.scale(t) * sde.sigma(t), rtol=1e-6)
  np.testing.assert_allclose(mean[:, 0], sde.scale(t), rtol=1e-6)
  with jax.enable_x64(True):  # central differences in float64
    t64 = jnp.asarray(np.linspace(1e-3, 1., 37))
    h = 1e-4 * t64
    for fn, deriv in [(sde.sigma, sde.sigma_deriv), (sde.scale, sde.scale_deriv)]:
      fd = (fn(t64 + h) - fn(t64 - h)) / (2 * h)
      np.testing.assert_allclose(deriv(t64), fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('name', SDES)
def test_prior(name):
  sde = SDES[name]()
  z = jax.random.normal(jax.random.key(0), (4, 3, 2, 2)) * 7.
  expected = stats.norm.logpdf(np.asarray(z).reshape(4, -1), scale=sde.prior_std).sum(-1)
  np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-5)
  _, std_T = sde.marginal_prob(jnp.zeros((1, 1)), jnp.array([sde.T]))
  np.testing.assert_allclose(sde.prior_std, float(std_T[0]), rtol=1e-3)  # prior ≈ marginal at T
  x = sde.prior_sampling(jax.random.key(1), (20000,))
  np.testing.assert_allclose(np.std(x), sde.prior_std, rtol=0.02)


def test_ve_smld_discretization_telescopes():
  sde = SDES['ve']()
  t = (jnp.arange(sde.N) + 0.25) / (sde.N - 1)   # one t inside each step i = ⌊t(N − 1)⌋
  x = jnp.ones((sde.N, 2))
  f, G = sde.discretize(x, t)
  assert np.all(np.asarray(f) == 0)
  # Σ_i (σ_i² − σ_{i−1}²) with σ_{−1} = 0 telescopes to σ_max²; G_i uses the geometric σ_i.
  np.testing.assert_allclose(np.sum(np.asarray(G, np.float64) ** 2), 50. ** 2, rtol=1e-4)
  sig = 0.01 * (5000.) ** (np.arange(sde.N) / (sde.N - 1))
  np.testing.assert_allclose(G[1:] ** 2, sig[1:] ** 2 - sig[:-1] ** 2, rtol=1e-3)


def test_vp_ddpm_discretization_matches_marginal():
  sde = SDES['vp']()
  betas = np.linspace(0.1 / 1000, 20. / 1000, 1000)               # Ho+20 linear schedule
  t = (jnp.arange(sde.N) + 0.25) / (sde.N - 1)
  x = jnp.full((sde.N, 1), 2.)
  f, G = sde.discretize(x, t)
  np.testing.assert_allclose(f[:, 0] + 2., 2. * np.sqrt(1 - betas), rtol=1e-6)
  np.testing.assert_allclose(G ** 2, betas, rtol=1e-5)
  # Σ log sqrt(1 − β_i) approximates the log of the continuous mean coefficient at t = 1.
  mean, _ = sde.marginal_prob(jnp.ones((1, 1)), jnp.array([1.]))
  np.testing.assert_allclose(np.sum(np.log(np.sqrt(1 - betas))), np.log(float(mean[0, 0])),
                             rtol=1e-2)


def test_subvp_euler_maruyama_discretization():
  sde = SDES['subvp']()
  x, t = jnp.ones((3, 2)), jnp.array([0.1, 0.5, 0.9])
  f, G = sde.discretize(x, t)
  drift, g = sde.sde(x, t)
  np.testing.assert_allclose(f, drift / sde.N, rtol=1e-6)
  np.testing.assert_allclose(G, g / np.sqrt(sde.N), rtol=1e-6)


@pytest.mark.parametrize('name', SDES)
def test_denoiser_and_score_views_round_trip(name):
  from closed_form import Gaussian
  sde = SDES[name]()
  data = Gaussian.random(4, seed=3)
  score = data.score_fn(sde)
  denoiser = mutils.score_to_denoiser(sde, score)
  sigma = jnp.array([0.05, 0.5, 2., 10.])
  x = jax.random.normal(jax.random.key(0), (4, 4)) * 3.
  np.testing.assert_allclose(denoiser(x, sigma), data.denoiser(x, sigma), rtol=2e-3, atol=2e-4)
  back = mutils.denoiser_to_score(sde, data.denoiser)
  t = sde.sigma_inv(sigma)
  np.testing.assert_allclose(back(x, t), score(x, t), rtol=2e-3, atol=1e-4)


def test_unknown_sde_lists_registered_names():
  with pytest.raises(KeyError, match='subvpsde, vesde, vpsde'):
    sde_lib.SDES.get('vesd')


@pytest.mark.parametrize('name', ['vpsde', 'subvpsde'])
def test_vp_discretization_with_beta_above_one_is_refused(name):
  """DDPM's β_i = β(i/N)/N must stay below 1 (α_i = 1 − β_i is square-rooted); N = 10 with
  β_max = 20 gives β_N = 2 and used to produce NaNs silently (configs/rules.py)."""
  from configs import default_lib, validate  # pylint: disable=import-outside-toplevel
  config = default_lib.get_base_config()
  config.training.sde, config.model.num_scales, config.model.beta_max = name, 10, 20.
  with pytest.raises(validate.ConfigError, match=r'model.num_scales = 10 .* β_N = model.beta_max '
                                                 r'/ N = 2 .*raise model.num_scales above 20'):
    validate.check(config, 'sample')
  config.model.num_scales = 21
  assert not validate.violations(config, 'sample')
  assert float(sde_lib.SDES.get(name)(0.1, 20., 21).alphas.min()) > 0
