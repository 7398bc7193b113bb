"""EDM on the score-SDE core: preconditioning, D-losses, EMA/lr ramps, the EDM sampler, ES.

Truth we did not write: Karras+22 Table 1 formulas typed in here independently; Gaussian data
(tests/closed_form.py) whose ideal denoiser, probability-flow transport and posterior variance
are exact; and Alg. 2 re-derived below as a scalar recursion on the diagonalized linear ODE.
"""
import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest

from closed_form import Gaussian
from configs import default_lib
import losses
from models import precond
from models import utils as mutils
import sampling
import sde_lib
from streams import sample_keys
from utils import per_sample_normal

SIGMAS = np.array([0.002, 0.05, 0.5, 1., 7., 80.])
SD = 0.5


def _config(pre='edm', **model):
  config = default_lib.get_base_config()
  config.model.name = 'ncsnpp'
  config.model.precond = pre
  config.model.embedding_type = 'positional'
  config.model.scale_by_sigma = False
  config.data.centered = True
  config.model.update(model)
  return config


def _vp_sigma(t, xp=np, beta_d=19.9, beta_min=0.1):
  return xp.sqrt(xp.exp(0.5 * beta_d * t ** 2 + beta_min * t) - 1.)   # Karras+22 Table 1 (VP)


def _vp_sigma_inv(s, xp=np, beta_d=19.9, beta_min=0.1):
  return (xp.sqrt(beta_min ** 2 + 2 * beta_d * xp.log(s ** 2 + 1)) - beta_min) / beta_d


EXPECTED = {   # Karras+22 Table 1: (c_skip, c_out, c_in, c_noise); xp = np or jnp
    'vp': lambda s, xp=np: (1. + 0 * s, -s, 1 / xp.sqrt(s ** 2 + 1), 999 * _vp_sigma_inv(s, xp)),
    've': lambda s, xp=np: (1. + 0 * s, s, 1. + 0 * s, xp.log(s / 2)),
    'edm': lambda s, xp=np: (SD ** 2 / (s ** 2 + SD ** 2), s * SD / xp.sqrt(s ** 2 + SD ** 2),
                             1 / xp.sqrt(s ** 2 + SD ** 2), xp.log(s) / 4),
}
SIGMA_FROM_NOISE = {   # inverse of c_noise, to build F from an ideal denoiser
    'vp': lambda c: _vp_sigma(c / 999, jnp), 've': lambda c: 2 * jnp.exp(c),
    'edm': lambda c: jnp.exp(4 * c)}


@pytest.mark.parametrize('pre', ['vp', 've', 'edm'])
def test_precond_coefficients_match_table_1(pre):
  got = precond.get_coefficients(_config(pre))(jnp.asarray(SIGMAS, jnp.float32))
  for name, g, e in zip(('c_skip', 'c_out', 'c_in', 'c_noise'), got, EXPECTED[pre](SIGMAS)):
    np.testing.assert_allclose(np.asarray(g), e, rtol=2e-5, atol=1e-6, err_msg=f'{pre} {name}')


def test_iddpm_precond_and_rounding_use_the_nearest_of_its_levels():
  """Karras+22 Table 1 (iDDPM): c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1), c_noise = M − 1 − j
  with u_j the level nearest σ; round_sigma returns that u_j (u from the cosine schedule's
  recursion, here rebuilt in closed form where C_1 never binds: u_j² + 1 = ᾱ_M / ᾱ_j)."""
  j = np.array([30, 400, 800, 990])
  alpha_bar = lambda k: np.sin(0.5 * np.pi * k / 1000 / 1.008) ** 2   # noqa: E731
  u = np.sqrt(alpha_bar(1000) / alpha_bar(j) - 1)
  sigma = jnp.asarray(u * (1 + 1e-4), jnp.float32)      # just off the level: still nearest it
  c_skip, c_out, c_in, c_noise = precond.get_coefficients(_config('iddpm'))(sigma)
  np.testing.assert_array_equal(c_noise, 999 - j)
  np.testing.assert_allclose(np.stack([c_skip, c_out, c_in]), np.stack(
      [np.ones(4), -sigma, 1 / np.sqrt(np.asarray(sigma, np.float64) ** 2 + 1)]), rtol=1e-6)
  np.testing.assert_allclose(precond.round_sigma(_config('iddpm'))(sigma), u, rtol=1e-6)
  assert precond.round_sigma(_config('edm')) is None


def _ideal_network(gauss, pre):
  """F such that c_skip x + c_out F(c_in x; c_noise) is the ideal denoiser of `gauss`."""
  def model_fn(x_in, c_noise, rng=None):
    del rng
    sigma = SIGMA_FROM_NOISE[pre](c_noise)
    c_skip, c_out, c_in, _ = EXPECTED[pre](sigma, jnp)
    x = x_in / c_in[:, None]
    return (gauss.denoiser(x, sigma) - c_skip[:, None] * x) / c_out[:, None]
  return model_fn


def test_fourier_network_receives_exp_of_c_noise():
  seen = {}
  def model_fn(x, labels, rng=None):
    seen['labels'] = labels
    return jnp.zeros_like(x)
  config = _config('edm', embedding_type='fourier')
  sigma = jnp.asarray([0.1, 3.], jnp.float32)
  d = precond.get_denoiser(config, model_fn)(jnp.ones((2, 3)), sigma)
  np.testing.assert_allclose(np.log(seen['labels']), np.log([0.1, 3.]) / 4, rtol=1e-5)
  np.testing.assert_allclose(d, SD ** 2 / (sigma[:, None] ** 2 + SD ** 2) * np.ones((2, 3)), rtol=1e-6)
  with pytest.raises(KeyError, match='edm'):
    precond.get_coefficients(_config('no_such'))


def _expected_loss(gauss, weight, sigmas, probs):
  """E_σ λ(σ) E‖D*(y + n) − y‖² / d = E_σ λ(σ) tr(σ² Σ (Σ + σ² I)⁻¹) / d (posterior covariance)."""
  lam = np.linalg.eigvalsh(np.asarray(gauss.cov, np.float64))
  inner = np.array([np.sum(lam * s ** 2 / (lam + s ** 2)) for s in sigmas]) / gauss.d
  return float(np.sum(probs * weight(sigmas) * inner))


@pytest.mark.parametrize('name', ['edm', 'edm_vp', 'edm_ve'])
def test_denoiser_losses_of_the_ideal_denoiser(name):
  gauss = Gaussian.random(4, seed=3)
  pre = {'edm': 'edm', 'edm_vp': 'vp', 'edm_ve': 've'}[name]
  config = _config(pre, sigma_min=0.02, sigma_max=100.)
  config.training.loss, config.training.reduce_mean = name, True
  model_fn = _ideal_network(gauss, pre)
  x = gauss.sample(jax.random.key(0), 1 << 17)
  got = float(jax.jit(lambda k: losses.get_loss_fn(config, None)(k, model_fn, x))(jax.random.key(1)))
  if name == 'edm':   # ln σ ~ N(−1.2, 1.2²): Gauss–Hermite quadrature
    nodes, w = np.polynomial.hermite_e.hermegauss(80)
    sigmas, probs = np.exp(-1.2 + 1.2 * nodes), w / w.sum()
    weight = lambda s: (s ** 2 + SD ** 2) / (s * SD) ** 2   # noqa: E731
  else:
    nodes, w = np.polynomial.legendre.leggauss(200)
    u = (nodes + 1) / 2
    sigmas = _vp_sigma(1e-5 + u * (1 - 1e-5)) if name == 'edm_vp' else 0.02 * 5000 ** u
    probs, weight = w / 2, lambda s: 1 / s ** 2
  np.testing.assert_allclose(got, _expected_loss(gauss, weight, sigmas, probs), rtol=0.03)


def test_ema_halflife_and_lr_ramp():
  config = _config()
  config.training.batch_size = 512
  config.model.ema_halflife_kimg = 500.
  rate = losses.get_ema_rate(config)
  assert float(rate(0)) == 0.                                  # ramp-up: EMA = params at step 0
  np.testing.assert_allclose(float(rate(10)), 0.5 ** (1 / (10 * 0.05)), rtol=1e-6)
  np.testing.assert_allclose(float(rate(10 ** 6)), 0.5 ** (512 / 5e5), rtol=1e-6)
  config.model.ema_halflife_kimg = 0.
  assert losses.get_ema_rate(config) == config.model.ema_rate
  config.optim.update(warmup=0, lr_rampup_kimg=1.024, grad_clip=-1., lr=1e-3)   # 2 steps of 512
  opt = losses.get_optimizer(config)
  params, state = {'w': jnp.zeros(3)}, None
  state = opt.init(params)
  for k, lr in enumerate([0., 0.5e-3, 1e-3, 1e-3]):
    updates, state = opt.update({'w': jnp.ones(3)}, state, params)
    np.testing.assert_allclose(updates['w'], -lr, rtol=1e-4, atol=1e-12, err_msg=f'step {k}')


def test_train_step_uses_the_ema_schedule():
  model = type('Linear', (), {'apply': staticmethod(
      lambda v, x, labels, train, rngs: x * v['params']['w'])})()
  loss_fn = lambda rng, model_fn, x: jnp.mean((model_fn(x, None, rng) - 2 * x) ** 2)  # noqa: E731
  opt = optax.sgd(0.1)
  state = losses.init_train_state({'w': jnp.ones(())}, opt)
  step = losses.make_train_step(model, loss_fn, opt, lambda s: jnp.where(s == 0, 0., 0.5))
  state, _ = step(state, jnp.ones((2, 4, 1)), jax.random.key(0))
  w1 = 1 + 0.1 * 2 * 1.                    # one SGD step on (w − 2)², w = 1
  w2 = w1 + 0.1 * 2 * (2 - w1)
  np.testing.assert_allclose(state.params['w'], w2, rtol=1e-6)
  np.testing.assert_allclose(state.ema_params['w'], 0.5 * w1 + 0.5 * w2, rtol=1e-6)


def test_edm_sde_is_sigma_equals_t():
  sde = sde_lib.SDES.get('edm')(0.002, 80.)
  t = jnp.asarray([0.5, 3.])
  np.testing.assert_allclose(sde.sigma(t), t)
  np.testing.assert_allclose(sde.scale_deriv(t), 0.)
  np.testing.assert_allclose(sde.sde(jnp.zeros((2, 1)), t)[1] ** 2, 2 * t)   # d(s²σ²)/dt = g²
  assert sde.T == sde.prior_std == 80.


# ------------------------------------------------------------------------------------------------
# The sampler on Gaussian data

GAUSS = Gaussian.random(4, seed=0)
EDM_SDE = sde_lib.EDMSDE(0.002, 80.)
N_SAMPLES = 4096


def _score(sde=EDM_SDE):
  return mutils.denoiser_to_score(sde, lambda x, s: GAUSS.denoiser(x, s))


def _run(keys, **kw):
  return np.asarray(jax.jit(lambda k: sampling.edm_sample(k, _score(), EDM_SDE, (4,), **kw)[0])(keys),
                    np.float64)


def _alg2_scalar(lam, steps, churn=0., heun=True):
  """(gain a, noise variance v) of Alg. 2 on dx/dσ = σ x / (λ + σ²) (a 1-D Gaussian, μ = 0):
  x_N = a · x_0 + noise of variance v, from x_0 = σ_max z. Independent of the sampler code."""
  t = _karras_sigmas(steps)
  a, v = 1., 0.
  for k in range(steps):
    t_hat = t[k] * (1 + min(churn / steps, np.sqrt(2) - 1))
    v += t_hat ** 2 - t[k] ** 2
    g = _alg2_gain(lam, t_hat, t[k + 1], heun and k < steps - 1)
    a, v = a * g, v * g * g
  return a, v


def _karras_sigmas(steps):
  """Karras+22 Eq. 5 with σ ∈ [0.002, 80], ρ = 7, and σ_N = 0, in float64."""
  i = np.arange(steps)
  return np.append((80 ** (1 / 7) + i / (steps - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7, 0.)


def _alg2_gain(lam, t_hat, t_next, heun):
  """x_{i+1} = g x̂_i: one Euler (or Heun) step of dx/dσ = σ x / (λ + σ²) from t̂_i to t_{i+1}."""
  f = lambda s: s / (lam + s * s)   # noqa: E731
  h = t_next - t_hat
  return 1 + h * (f(t_hat) + f(t_next) * (1 + h * f(t_hat))) / 2 if heun else 1 + h * f(t_hat)


def _moments_z(x, var):
  """z-scores of the sample mean and variance per coordinate against N(μ, var)."""
  n = len(x)
  return ((x.mean(0) - np.asarray(GAUSS.mu)) / np.sqrt(var / n),
          (x.var(0, ddof=1) - var) / (var * np.sqrt(2 / (n - 1))))


def _eig():
  lam, u = np.linalg.eigh(np.asarray(GAUSS.cov, np.float64))
  return lam, u, np.asarray(GAUSS.mu, np.float64)


def test_heun_is_alg_2_exactly_and_euler_is_worse():
  keys = sample_keys(jax.random.key(1), 256)
  z = np.asarray(per_sample_normal(keys, 2 ** 30, (4,)), np.float64)
  lam, u, mu = _eig()
  x0 = 80 * z - mu
  with jax.enable_x64(True):
    heun = _run(keys, dtype=jnp.float64)
    euler = _run(keys, dtype=jnp.float64, solver='euler')
  for x, heun_ in ((heun, True), (euler, False)):
    gains = np.array([_alg2_scalar(l, 18, heun=heun_)[0] for l in lam])
    np.testing.assert_allclose(x, mu + (x0 @ u) * gains @ u.T, rtol=1e-6, atol=1e-6)
  exact = mu + (x0 @ u) * np.sqrt(lam / (lam + 80 ** 2)) @ u.T     # the ODE's transport map
  err = lambda x: np.sqrt(np.mean((x - exact) ** 2))   # noqa: E731
  assert err(euler) > 2.5 * err(heun), (err(euler), err(heun))


def test_injected_noise_is_pfgmpp_alpha_probe_exactly():
  """sampling.perturb_alpha (Xu+23 §6, pfgmpp generate_alpha.py): x_i += α σ_i ε_i before step i,
  ε_i from the PERTURB stream; on a Gaussian each injection then passes through the remaining
  steps' gains of the scalar recursion of Alg. 2 (independent of the sampler code)."""
  keys, alpha, steps = sample_keys(jax.random.key(3), 64), 0.1, 18
  lam, u, mu = _eig()
  y = (80 * np.asarray(per_sample_normal(keys, 2 ** 30, (4,)), np.float64) - mu) @ u
  perturb_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2 ** 30 + 2))(keys)
  t = _karras_sigmas(steps)
  for k in range(steps):
    eps = np.asarray(per_sample_normal(perturb_keys, k, (4,)), np.float64)
    y = (y + alpha * t[k] * eps @ u) * np.array([_alg2_gain(l, t[k], t[k + 1], k < steps - 1)
                                                 for l in lam])
  with jax.enable_x64(True):
    x = _run(keys, dtype=jnp.float64, perturb_alpha=alpha)
    plain = _run(keys, dtype=jnp.float64)
  np.testing.assert_allclose(x, mu + y @ u.T, rtol=1e-6, atol=1e-6)
  assert np.abs(x - plain).max() > 0.05     # the probe moved the samples


def test_heun_18_lands_on_the_data_and_its_known_bias():
  """35 NFE: mean within 3 s.e.; the variance is that of Alg. 2's discretization, which for
  unit-scale Gaussians is ~9% above the data's (Heun's O(h²) error on the ρ = 7 grid, from the
  scalar recursion); 64 steps land within 3 s.e. of the data variance."""
  keys = sample_keys(jax.random.key(2), N_SAMPLES)
  lam, u, _ = _eig()
  var = np.diag(np.asarray(GAUSS.cov))
  for steps, nfe_ok in ((18, 35), (64, 127)):
    x, nfe = jax.jit(lambda k, s=steps: sampling.edm_sample(k, _score(), EDM_SDE, (4,), steps=s))(keys)
    assert int(nfe) == nfe_ok
    gains = np.array([_alg2_scalar(l, steps)[0] for l in lam])
    target = np.diag((u * (gains ** 2 * 80 ** 2)) @ u.T)   # Var[a (80 z − μ)] per coordinate
    if steps == 18:
      bias = target / var - 1
    z_mean, z_var = _moments_z(np.asarray(x, np.float64), target if steps == 18 else var)
    assert np.all(np.abs(z_mean) < 3) and np.all(np.abs(z_var) < 3), (steps, z_mean, z_var)
  assert np.all(bias > 0.05) and np.all(bias < 0.12), bias
  euler = _run(keys, solver='euler')
  assert np.max(np.abs(_moments_z(euler, var)[1])) > 6                # Euler: clearly off


def test_churn_with_s_noise_1():
  """S_churn = 40, S_noise = 1: 18 steps match Alg. 2's variance recursion (churn noise and
  all); 256 steps land within 3 s.e. of the data."""
  keys = sample_keys(jax.random.key(3), N_SAMPLES)
  lam, u, _ = _eig()
  var = np.diag(np.asarray(GAUSS.cov))
  for steps in (18, 256):
    x = _run(keys, steps=steps, S_churn=40., S_noise=1.)
    if steps == 18:
      av = [_alg2_scalar(l, steps, churn=40.) for l in lam]
      target = np.diag((u * np.array([a * a * 80 ** 2 + v for a, v in av])) @ u.T)
    else:
      target = var
    z_mean, z_var = _moments_z(x, target)
    assert np.all(np.abs(z_mean) < 3) and np.all(np.abs(z_var) < 3), (steps, z_mean, z_var)


def test_same_sampler_on_a_vp_score_sde_model_agrees_with_ode_sample():
  vp = sde_lib.VPSDE(0.1, 20.)
  score = GAUSS.score_fn(vp)
  keys = sample_keys(jax.random.key(4), 64)
  z = per_sample_normal(keys, 2 ** 30, (4,))
  config = default_lib.get_base_config()
  config.sampling.update(steps=64, sigma_max=1e4)          # clamped to σ(T) = σ_VP(1) ≈ 152
  sampler = sampling.SAMPLERS.get('edm')(config, vp, (4,), 1e-3)
  x_edm = jax.jit(lambda k: sampler(k, score)[0])(keys)
  x_ode = jax.jit(lambda k: sampling.ode_sample(k, score, vp, (4,), z=z * vp.marginal_prob(
      jnp.zeros(()), jnp.ones(()))[1], eps=1e-3)[0])(keys)
  # The ODE stops at t = 1e-3 (σ ≈ 0.0105); EDM continues to t = 0: an O(σ(eps)) difference.
  np.testing.assert_allclose(x_edm, x_ode, atol=0.03)
  assert float(jnp.mean(jnp.abs(x_edm - x_ode))) < 0.01


# ------------------------------------------------------------------------------------------------
# Epsilon Scaling

def test_eps_scaler_one_is_the_plain_sampler_bit_for_bit():
  keys = sample_keys(jax.random.key(5), 8)
  plain = lambda k: sampling.edm_sample(k, _score(), EDM_SDE, (4,))                   # noqa: E731
  one = lambda k: sampling.edm_sample(k, _score(), EDM_SDE, (4,), eps_scaler=1.0, eps_scaler_k=0.)  # noqa: E731
  assert str(jax.make_jaxpr(plain)(keys)) == str(jax.make_jaxpr(one)(keys))
  np.testing.assert_array_equal(jax.jit(plain)(keys)[0], jax.jit(one)(keys)[0])


@pytest.mark.parametrize('solver', ['euler', 'heun'])
def test_eps_scaler_divides_the_velocity(solver):
  """Two steps by hand: every evaluation's d = ε̂ / b (EDM-ES generate.py), t_2 = 0."""
  b, k = 1.01, 0.002
  keys = sample_keys(jax.random.key(6), 8)
  with jax.enable_x64(True):
    x = _run(keys, steps=2, sigma_min=0.5, solver=solver, eps_scaler=b, eps_scaler_k=k,
             dtype=jnp.float64)
    z = np.asarray(per_sample_normal(keys, 2 ** 30, (4,)), np.float64)
    D = lambda x, s: np.asarray(GAUSS.denoiser(jnp.asarray(x), jnp.full(len(x), s)), np.float64)  # noqa: E731
    t0, t1 = 80., 0.5
    lam0, lam1 = b + k, b                                    # λ_t = k t + b, t = N − 1 − i
    x0 = z * t0
    d0 = (x0 - D(x0, t0)) / t0 / lam0
    x1 = x0 + (t1 - t0) * d0
    if solver == 'heun':
      x1 = x0 + (t1 - t0) * 0.5 * (d0 + (x1 - D(x1, t1)) / t1 / lam0)
    x2 = x1 - t1 * (x1 - D(x1, t1)) / t1 / lam1
  np.testing.assert_allclose(x, x2, rtol=1e-5, atol=1e-5)   # b − 1 = 1%: 1000x above this


def test_eps_norms_are_recorded_per_step():
  keys = sample_keys(jax.random.key(7), 16)
  x, nfe, norms = sampling.edm_sample(keys, _score(), EDM_SDE, (4,), steps=5, record_eps_norm=True)
  assert norms.shape == (5, 16) and nfe == 9
  x0 = 80. * per_sample_normal(keys, 2 ** 30, (4,))       # step 0: ε̂ = (x_0 − D(x_0; 80))/80
  eps_hat = (x0 - GAUSS.denoiser(x0, jnp.full((16,), 80.))) / 80.
  np.testing.assert_allclose(norms[0], jnp.linalg.norm(eps_hat, axis=1), rtol=1e-5)
