"""Samplers: predictor–corrector (registries) and the probability-flow ODE, each one jitted loop.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution, arXiv:1907.05600.
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
  Dormand&Prince80  A family of embedded Runge-Kutta formulae (the adaptive ODE solver).

Conventions: `score_fn(x [B, ...], t [B]) -> ∇_x log p_t(x)`; a sampler takes per-sample keys
[B] (see `utils.sample_keys`) so that sample i depends only on keys[i], never on the batch size.
A predictor or corrector is a registered factory returning `update(x, t, noise) -> (x, x_mean)`,
where `noise(j)` draws the j-th standard normal of this step for every sample.
"""
import diffrax
import jax
import jax.numpy as jnp

from models import utils as mutils
import sde_lib
from utils import Registry, bcast, per_sample_normal

PREDICTORS = Registry('predictor')
CORRECTORS = Registry('corrector')
SAMPLERS = Registry('sampler')
register_predictor = PREDICTORS.register
register_corrector = CORRECTORS.register
register_sampler = SAMPLERS.register


@register_predictor('euler_maruyama')
def euler_maruyama(sde, score_fn, probability_flow=False):
  """x ← x + f_r dt + g_r sqrt(|dt|) z with dt = −T/N (Song+21 App. D, Eq. 6)."""
  rsde = sde.reverse(score_fn, probability_flow)
  def update(x, t, noise):
    dt = -sde.T / sde.N
    drift, diffusion = rsde.sde(x, t)
    x_mean = x + drift * dt
    return x_mean + bcast(diffusion, x) * jnp.sqrt(-dt) * noise(0), x_mean
  return update


@register_predictor('reverse_diffusion')
def reverse_diffusion(sde, score_fn, probability_flow=False):
  """x ← x − f_r + G_r z with the reverse of the forward discretization (Song+21 Eq. 46)."""
  rsde = sde.reverse(score_fn, probability_flow)
  def update(x, t, noise):
    f, G = rsde.discretize(x, t)
    x_mean = x - f
    return x_mean + bcast(G, x) * noise(0), x_mean
  return update


@register_predictor('ancestral_sampling')
def ancestral_sampling(sde, score_fn, probability_flow=False):
  """Ancestral sampling of SMLD (VE) or DDPM (VP) (Song+21 Eqs. 47, 48; Ho+20 Alg. 2)."""
  if probability_flow or not isinstance(sde, (sde_lib.VESDE, sde_lib.VPSDE)):
    raise ValueError('ancestral_sampling needs training.sde vesde or vpsde and no probability flow')
  def update(x, t, noise):
    i = sde.discrete_index(t)
    score = score_fn(x, t)
    if isinstance(sde, sde_lib.VESDE):
      sigma = sde.discrete_sigmas[i]
      prev = jnp.where(i == 0, 0., sde.discrete_sigmas[jnp.maximum(i - 1, 0)])
      x_mean = x + bcast(sigma ** 2 - prev ** 2, x) * score
      std = jnp.sqrt(prev ** 2 * (sigma ** 2 - prev ** 2) / sigma ** 2)
    else:
      beta = sde.discrete_betas[i]
      x_mean = (x + bcast(beta, x) * score) / bcast(jnp.sqrt(1. - beta), x)
      std = jnp.sqrt(beta)
    return x_mean + bcast(std, x) * noise(0), x_mean
  return update


@register_predictor('none')
def no_predictor(sde, score_fn, probability_flow=False):
  del sde, score_fn, probability_flow
  return lambda x, t, noise: (x, x)


def _langevin_alpha(sde, t):
  """α_i = 1 − β_i for VP and sub-VP (their shared β schedule), 1 for VE (Song+21 Alg. 5)."""
  if isinstance(sde, sde_lib.VESDE):
    return jnp.ones_like(t)
  return sde.alphas[sde.discrete_index(t)]


def _langevin(sde, score_fn, n_steps, step_size):
  """n_steps of x ← x + ε ∇log p + sqrt(2ε) z with ε = step_size(x, t, grad, z) (Song+21 Alg. 4)."""
  def update(x, t, noise):
    x_mean = x
    for j in range(n_steps):
      grad = score_fn(x, t)
      z = noise(j)
      eps = step_size(t, grad, z)
      x_mean = x + bcast(eps, x) * grad
      x = x_mean + bcast(jnp.sqrt(2. * eps), x) * z
    return x, x_mean
  return update


def _norm(v):
  return jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1)


@register_corrector('langevin')
def langevin(sde, score_fn, snr, n_steps):
  """Langevin corrector with ε = 2α (snr ‖z‖ / ‖∇log p‖)² (Song+21 Alg. 4).

  The norms are per sample (the original averages them over the batch; in high dimension the
  two agree), so that each sample depends only on its own key.
  """
  def step_size(t, grad, z):
    return 2. * _langevin_alpha(sde, t) * (snr * _norm(z) / _norm(grad)) ** 2
  return _langevin(sde, score_fn, n_steps, step_size)


@register_corrector('ald')
def annealed_langevin_dynamics(sde, score_fn, snr, n_steps):
  """Annealed Langevin dynamics with ε = 2α (snr σ_t)² (Song&Ermon19 Alg. 1)."""
  def step_size(t, grad, z):
    del grad, z
    return 2. * _langevin_alpha(sde, t) * (snr * sde.scale(t) * sde.sigma(t)) ** 2
  return _langevin(sde, score_fn, n_steps, step_size)


@register_corrector('none')
def no_corrector(sde, score_fn, snr, n_steps):
  del sde, score_fn, snr, n_steps
  return lambda x, t, noise: (x, x)


def prior_sample(sde, keys, sample_shape):
  """x_T ~ p_T for each key [B]; sample i depends only on keys[i]."""
  return jax.vmap(lambda k: sde.prior_sampling(jax.random.fold_in(k, 2 ** 30), sample_shape))(keys)


def pc_sample(keys, score_fn, sde, sample_shape, predictor='euler_maruyama', corrector='none',
              snr=0.16, n_steps=1, probability_flow=False, denoise=True, eps=1e-3):
  """Predictor–corrector sampling over N steps from T to eps (Song+21 Alg. 1; C before P, as in
  the official code).

  Args:
    keys: per-sample keys [B].
    sample_shape: shape of one sample, e.g. (H, W, C).
    denoise: return the noise-free mean of the last step.
  Returns:
    (x [B, *sample_shape], nfe) with nfe the number of score evaluations per sample.
  """
  pred = PREDICTORS.get(predictor)(sde, score_fn, probability_flow)
  corr = CORRECTORS.get(corrector)(sde, score_fn, snr, n_steps)
  timesteps = jnp.linspace(sde.T, eps, sde.N)

  def body(i, carry):
    x, _ = carry
    t = jnp.full((keys.shape[0],), timesteps[i])
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
    noise = lambda j: per_sample_normal(step_keys, j, sample_shape)
    x, _ = corr(x, t, lambda j: noise(1 + j))
    return pred(x, t, noise)

  x = prior_sample(sde, keys, sample_shape)
  x, x_mean = jax.lax.fori_loop(0, sde.N, body, (x, x))
  nfe = sde.N * ((predictor != 'none') + n_steps * (corrector != 'none'))
  return (x_mean if denoise else x), nfe


def ode_sample(keys, score_fn, sde, sample_shape, rtol=1e-5, atol=1e-5, denoise=False, eps=1e-3,
               z=None, max_steps=8192):
  """Integrate the probability-flow ODE (Song+21 Eq. 13) from T to eps with adaptive Dopri5.

  Args:
    z: optional latent [B, *sample_shape] to decode instead of a prior sample.
  Returns:
    (x, nfe): nfe = 6 per attempted step + 2 (first evaluation and initial step size selection).
  """
  x_T = prior_sample(sde, keys, sample_shape) if z is None else z
  x, num_steps = solve_flow(score_fn, sde, x_T, sde.T, eps, rtol, atol, max_steps)
  nfe = 6 * num_steps + 2
  if denoise:  # one noise-free reverse-diffusion step at t = eps (official code)
    t = jnp.full((x.shape[0],), eps)
    _, x = reverse_diffusion(sde, score_fn)(x, t, lambda j: jnp.zeros_like(x))
    nfe += 1
  return x, nfe


def solve_flow(score_fn, sde, x0, t0, t1, rtol, atol, max_steps):
  """x(t1) of the probability-flow ODE started at x(t0) = x0, and the number of solver steps."""
  rsde = sde.reverse(score_fn, probability_flow=True)
  term = diffrax.ODETerm(lambda t, x, args: rsde.sde(x, jnp.full((x.shape[0],), t))[0])
  sol = diffrax.diffeqsolve(term, diffrax.Dopri5(), t0, t1, dt0=None, y0=x0,
                            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                            max_steps=max_steps)
  return sol.ys[-1], sol.stats['num_steps']


@register_sampler('pc')
def _pc_sampler(config, sde, sample_shape, eps):
  s = config.sampling
  return lambda keys, score_fn: pc_sample(
      keys, score_fn, sde, sample_shape, s.predictor, s.corrector, s.snr, s.n_steps_each,
      s.probability_flow, s.noise_removal, eps)


@register_sampler('ode')
def _ode_sampler(config, sde, sample_shape, eps):
  s = config.sampling
  return lambda keys, score_fn: ode_sample(
      keys, score_fn, sde, sample_shape, s.ode_rtol, s.ode_atol, s.noise_removal, eps)


def get_sampling_fn(config, sde, model, sample_shape, inverse_scaler, eps):
  """A jitted `sample_fn(keys [B], params) -> (images in data range [B, *sample_shape], nfe)`."""
  sampler = SAMPLERS.get(config.sampling.method)(config, sde, sample_shape, eps)

  @jax.jit
  def sample_fn(keys, params):
    model_fn = mutils.get_model_fn(model, params, train=False)
    score_fn = mutils.get_score_fn(sde, model_fn, config.training.continuous)
    x, nfe = sampler(keys, score_fn)
    return inverse_scaler(x), nfe
  return sample_fn
