"""Samplers: predictor–corrector (registries) and the probability-flow ODE, each one jitted loop.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution, arXiv:1907.05600.
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
  Dormand&Prince80  A family of embedded Runge-Kutta formulae (the adaptive ODE solver).
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.
  Ning+24  Elucidating the Exposure Bias in Diffusion Models (Epsilon Scaling), arXiv:2308.15321.
  Xu+23  PFGM++: Unlocking the Potential of Physics-Inspired Generative Models, arXiv:2302.04265.
  Ho&Salimans22  Classifier-Free Diffusion Guidance, arXiv:2207.12598.

Conventions: `score_fn(x [B, ...], t [B]) -> ∇_x log p_t(x)`; a sampler takes per-sample keys
[B] (`streams.sample_keys`; every fold_in constant is in streams.py) so that sample i depends only
on keys[i], never on the batch size.
A predictor or corrector is a registered factory returning `update(x, t, noise) -> (x, x_mean)`,
where `noise(j)` draws the j-th standard normal of this step for every sample.
"""
import functools
import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from foreign import songunet
from models import precond
from models import utils as mutils
import schedules
import sde_lib
import streams
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
  del probability_flow   # none here (configs/rules.py: ancestral_needs_ve_or_vp)
  def update(x, t, noise):
    x_mean, std = sde.ancestral_step(x, t, score_fn(x, t))
    return x_mean + bcast(std, x) * noise(0), x_mean
  return update


@register_predictor('none')
def no_predictor(sde, score_fn, probability_flow=False):
  del sde, score_fn, probability_flow
  return lambda x, t, noise: (x, x)


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

  As in the official code the norms are averaged over the whole (global, sharded) batch: a
  per-sample ratio is unstable in low dimension, where ‖∇log p‖ of one sample can be near 0.
  The step size therefore couples the samples of a batch; the noise stays per sample.
  """
  def step_size(t, grad, z):
    ratio = jnp.mean(_norm(z)) / jnp.mean(_norm(grad))
    return 2. * sde.langevin_alpha(t) * (snr * ratio) ** 2
  return _langevin(sde, score_fn, n_steps, step_size)


@register_corrector('ald')
def annealed_langevin_dynamics(sde, score_fn, snr, n_steps):
  """Annealed Langevin dynamics with ε = 2α (snr σ_t)² (Song&Ermon19 Alg. 1)."""
  def step_size(t, grad, z):
    del grad, z
    return 2. * sde.langevin_alpha(t) * (snr * sde.scale(t) * sde.sigma(t)) ** 2
  return _langevin(sde, score_fn, n_steps, step_size)


@register_corrector('none')
def no_corrector(sde, score_fn, snr, n_steps):
  del sde, score_fn, snr, n_steps
  return lambda x, t, noise: (x, x)


def prior_sample(sde, keys, sample_shape, z=None):
  """x_T ~ p_T for each key [B] (sample i depends only on keys[i]), or from given standard-normal
  latents z [B, *sample_shape] (the prior std times z)."""
  if z is not None:
    return z * sde.prior_std
  return jax.vmap(lambda k: sde.prior_sampling(
      jax.random.fold_in(k, streams.LATENT_STREAM), sample_shape))(keys)


def step_normal(keys, i, j, sample_shape):
  """The j-th N(0, I) draw of PC step i, [B, *sample_shape]: row b depends only on keys[b], i, j
  (j = 0: the predictor's, 1 + k: the k-th corrector step's)."""
  return per_sample_normal(jax.vmap(lambda k: jax.random.fold_in(k, i))(keys), j, sample_shape)


def pc_sample(keys, score_fn, sde, sample_shape, predictor='euler_maruyama', corrector='none',
              snr=0.16, n_steps=1, probability_flow=False, denoise=True, eps=1e-3, z=None):
  """Predictor–corrector sampling over N steps from T to eps (Song+21 Alg. 1; C before P, as in
  the official code).

  Args:
    keys: per-sample keys [B].
    sample_shape: shape of one sample, e.g. (H, W, C).
    denoise: return the noise-free mean of the last step.
    z: optional standard-normal latents [B, *sample_shape] for x_T (`prior_sample`).
  Returns:
    (x [B, *sample_shape], nfe) with nfe the number of score evaluations per sample.
  """
  pred = PREDICTORS.get(predictor)(sde, score_fn, probability_flow)
  corr = CORRECTORS.get(corrector)(sde, score_fn, snr, n_steps)
  timesteps = jnp.linspace(sde.T, eps, sde.N)

  def body(i, carry):
    x, _ = carry
    t = jnp.full((keys.shape[0],), timesteps[i])
    noise = lambda j: step_normal(keys, i, j, sample_shape)
    x, _ = corr(x, t, lambda j: noise(1 + j))
    return pred(x, t, noise)

  x = prior_sample(sde, keys, sample_shape, z)
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


def ode_encode(score_fn, sde, x, rtol=1e-5, atol=1e-5, eps=1e-3, max_steps=8192):
  """The latent z = x(T) of data x = x(eps) through the probability-flow ODE (Song+21 §4.3,
  'uniquely identifiable encoding'); `ode_sample(..., z=z)` decodes it. Returns (z, nfe)."""
  z, num_steps = solve_flow(score_fn, sde, x, eps, sde.T, rtol, atol, max_steps)
  return z, 6 * num_steps + 2


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
  return lambda keys, score_fn, latents=None: pc_sample(
      keys, score_fn, sde, sample_shape, s.predictor, s.corrector, s.snr, s.n_steps_each,
      s.probability_flow, s.noise_removal, eps, None if latents is None else latents['z'])


@register_sampler('ode')
def _ode_sampler(config, sde, sample_shape, eps):
  s = config.sampling
  return lambda keys, score_fn, latents=None: ode_sample(
      keys, score_fn, sde, sample_shape, s.ode_rtol, s.ode_atol, s.noise_removal, eps,
      None if latents is None else prior_sample(sde, keys, sample_shape, latents['z']))


def class_labels(config, keys):
  """Each sample's class [B] int32: `sampling.class_label`, or (−1) one uniform class per seed
  drawn from fold_in(key, streams.CLASS_STREAM), so a seed's class does not depend on the
  batch."""
  k, label = config.data.num_classes, config.sampling.class_label
  if label >= 0:
    return jnp.full(keys.shape, label, jnp.int32)
  return jax.vmap(lambda key: jax.random.randint(
      jax.random.fold_in(key, streams.CLASS_STREAM), (), 0, k))(keys)


def conditional_model_fn(config, model, params, keys):
  """The sampling network: for a class-conditional model bound to `class_labels(config, keys)`,
  with `sampling.guidance` w ≠ 1 classifier-free guided, F_null + w (F_class − F_null) (Ho&Salimans22
  Eq. 6; D, ε and the score are affine in F with the same coefficients, so this is guidance on
  each of them), both terms in one batch of 2B."""
  model_fn = mutils.get_model_fn(model, params, train=False)
  w = config.sampling.guidance
  if not config.model.class_conditional:
    return model_fn
  onehot = mutils.class_onehot(config, class_labels(config, keys))
  if w == 1:
    return mutils.bind_cond(model_fn, {'class_labels': onehot})
  def guided(x, labels, rng=None):
    both = model_fn(jnp.concatenate([x, x]), jnp.concatenate([labels, labels]), rng,
                    {'class_labels': jnp.concatenate([onehot, jnp.zeros_like(onehot)])})
    f_class, f_null = jnp.split(both, 2)
    return f_null + w * (f_class - f_null)                  # Ho&Salimans22 Eq. 6
  return guided


def get_sampling_fn(config, sde, model, sample_shape, inverse_scaler, eps, guide=None,
                    decoder=None):
  """A jitted `sample_fn(keys [B], params, latents=None) -> (images in data range
  [B, *sample_shape], nfe)`; class-conditional models sample `class_labels(config, keys)`
  (`conditional_model_fn`). `latents` ({'z': standard normal [B, *sample_shape], optional
  'radii': PFGM++ prior radii [B] for σ = 1}, see `read_latents`) replace those of the keys.
  `guide` = (fn, guide_params): a classifier's guidance, `fn(score_fn, keys, guide_params) ->
  score_fn` (controllable_generation.get_classifier_guide), its parameters an argument of the
  jitted function. `decoder` = (fn, decoder_params): a latent model's images
  fn(decoder_params, x) (latent.decoder), also an argument of the jitted function."""
  sampler = SAMPLERS.get(config.sampling.method)(config, sde, sample_shape, eps)
  bits = config.sampling.quantize_bits

  @jax.jit
  def sample_fn(keys, params, latents=None, guide_params=None, decoder_params=None):
    if bits:                  # Xu+23 §6: the network's weights at `bits` bits
      params = songunet.quantize_like_pfgmpp(params, config, bits)
    model_fn = conditional_model_fn(config, model, params, keys)
    score_fn = precond.get_score_fn(config, sde, model_fn)
    if guide is not None:
      score_fn = guide[0](score_fn, keys, guide_params)
    x, nfe = sampler(keys, score_fn, latents)
    if decoder is not None:   # Rombach+22 §3: the images are the latents decoded
      x = decoder[0](decoder_params, x)
    return inverse_scaler(x), nfe
  if guide is not None:
    sample_fn = functools.partial(sample_fn, guide_params=guide[1])
  if decoder is not None:
    sample_fn = functools.partial(sample_fn, decoder_params=decoder[1])
  if not config.sampling.float64:
    return sample_fn

  def sample_fn_x64(keys, params, latents=None):
    with jax.enable_x64(True):   # the x64 flag cannot change inside jit: trace and run under it
      return sample_fn(keys, params, latents)
  return sample_fn_x64


def edm_sample(keys, score_fn, sde, sample_shape, steps=18, sigma_min=0.002, sigma_max=80., rho=7.,
               solver='heun', S_churn=0., S_min=0., S_max=float('inf'), S_noise=1., eps_scaler=1.,
               eps_scaler_k=0., perturb_alpha=0., dtype=jnp.float32, z=None,
               record_eps_norm=False, sigmas=None, round_sigma=None):
  """EDM's sampler (Karras+22 Alg. 2) in its general σ(t), s(t) form (Alg. 1, Eq. 4): any SDE.

  Noise levels σ_i follow the ρ-schedule (Eq. 5), t_i = σ⁻¹(σ_i), t_N = 0. The velocity is
  dx/dt = (ṡ/s) x + s σ̇ ε̂ with ε̂ = −s σ ∇log p_t(x) = (x/s − D(x/s; σ))/σ (Eq. 4; with σ = t,
  s = 1 it is Alg. 2's d = (x − D)/t). Heun's last step (to t = 0) is Euler: NFE 2N − 1; Euler: N.
  Epsilon Scaling (Ning+24) divides ε̂ by λ_i = b + k (N − 1 − i) at every evaluation (k = 0:
  EDM-ES's constant b; k > 0: ADM-ES's linear schedule in the step index t = N − 1 − i); b = 1,
  k = 0 skips the division, so the plain sampler is unchanged. PFGM++'s robustness probe (Xu+23
  §6; Newbeeer/pfgmpp generate_alpha.py) adds α s(t_i) σ_i ε_i to x_i before every step (its
  x += α t_i ε with s = 1, σ = t); α = 0 skips it.
  Args:
    keys: per-sample keys [B]; latents use fold_in(key, streams.LATENT_STREAM), churn noise
      fold_in(key, i), injected noise fold_in(fold_in(key, streams.PERTURB_STREAM), i).
    dtype: float32, or float64 (call under `jax.enable_x64(True)`; the network stays float32).
    z: optional latents [B, *sample_shape] (standard normal), instead of those of `keys`.
    record_eps_norm: also return ‖ε̂‖ per step and sample [N, B] (at (x̂_i, t̂_i), before scaling).
    sigmas, round_sigma: σ_0 > … > σ_{N−1} instead of Eq. 5's (`schedules`); σ -> the nearest
      level the network knows, for each σ_i and σ(t̂_i) (EDM's round_sigma; `precond`).
  Returns:
    (x [B, *sample_shape] in dtype, nfe) [, eps_norms].
  """
  scaled = eps_scaler != 1 or eps_scaler_k != 0
  vec = lambda t: jnp.full(keys.shape[:1], t, dtype)   # noqa: E731
  rounded = round_sigma or (lambda sigma: sigma)
  sigmas = rounded(schedules.edm_sigmas(steps, sigma_min, sigma_max, None, rho, dtype)
                   if sigmas is None else sigmas)
  t_steps = jnp.concatenate([sde.sigma_inv(sigmas), jnp.zeros((1,), dtype)])    # t_N = 0 (Eq. 5)
  z = per_sample_normal(keys, streams.LATENT_STREAM, sample_shape) if z is None else z
  if perturb_alpha > 0:
    perturb_keys = jax.vmap(lambda k: jax.random.fold_in(k, streams.PERTURB_STREAM))(keys)
  t0 = vec(t_steps[0])
  x0 = z.astype(dtype) * bcast(sde.sigma(t0) * sde.scale(t0), z)              # Karras+22 Alg. 1 line 2

  def velocity(x, t, lam):
    tb = vec(t)
    s, sigma = sde.scale(tb), sde.sigma(tb)
    eps_hat = -bcast(s * sigma, x) * score_fn(x, tb).astype(dtype)          # Karras+22 Eq. 3, 10
    norm = _norm(eps_hat)
    if scaled:
      eps_hat = eps_hat / lam                                               # Ning+24 Epsilon Scaling: ε̂ / λ_t
    d = bcast(sde.scale_deriv(tb) / s, x) * x + bcast(s * sde.sigma_deriv(tb), x) * eps_hat
    return d, norm                                                          # Karras+22 Eq. 4, Alg. 1 line 4

  def body(i, carry):
    x, norms = carry
    t_cur, t_next = t_steps[i], t_steps[i + 1]
    lam = eps_scaler + eps_scaler_k * (steps - 1 - i)                       # Ning+24 (ADM-ES) λ_t = k t + b
    if perturb_alpha > 0:                                                   # Xu+23 §6: x_i += α s σ_i ε_i
      tb = vec(t_cur)
      x = x + perturb_alpha * bcast(sde.scale(tb) * sde.sigma(tb), x) * per_sample_normal(
          perturb_keys, i, sample_shape).astype(dtype)
    if S_churn > 0:
      sigma_cur = sde.sigma(t_cur)
      in_range = (S_min <= sigma_cur) & (sigma_cur <= S_max)
      gamma = jnp.where(in_range, min(S_churn / steps, np.sqrt(2.) - 1.), 0.)  # Karras+22 Alg. 2 γ_i
      t_hat = sde.sigma_inv(rounded(sigma_cur + gamma * sigma_cur))         # Karras+22 Alg. 2 line 5
      eps = S_noise * per_sample_normal(keys, i, sample_shape).astype(dtype)  # Karras+22 Alg. 2 line 4
      s_hat = sde.scale(vec(t_hat))
      spread = jnp.sqrt(jnp.maximum(sde.sigma(t_hat) ** 2 - sigma_cur ** 2, 0.))
      x_hat = (bcast(s_hat / sde.scale(vec(t_cur)), x) * x
               + bcast(spread * s_hat, x) * eps)                           # Karras+22 Alg. 2 line 6 (with s)
    else:
      t_hat, x_hat = t_cur, x
    d_cur, norm = velocity(x_hat, t_hat, lam)                               # Karras+22 Alg. 2 line 7
    x_next = x_hat + (t_next - t_hat) * d_cur                               # Karras+22 Alg. 2 line 8
    if solver == 'heun':
      def correct():
        d_prime = velocity(x_next, t_next, lam)[0]                          # Karras+22 Alg. 2 line 10
        return x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)     # Karras+22 Alg. 2 line 11
      x_next = jax.lax.cond(i < steps - 1, correct, lambda: x_next)         # Karras+22 Alg. 2 line 9
    return x_next, norms.at[i].set(norm)

  norms = jnp.zeros((steps, keys.shape[0]), dtype)
  x, norms = jax.lax.fori_loop(0, steps, body, (x0, norms))
  nfe = 2 * steps - 1 if solver == 'heun' else steps
  return (x, nfe, norms) if record_eps_norm else (x, nfe)


def pfgmpp_latents(keys, noise, sample_shape, latents=None):
  """PFGM++'s prior at σ_max in units of σ_max (Xu+23; Newbeeer/pfgmpp generate.py): the
  kernel's noise for σ = 1, from per-sample keys as the Gaussian latents are drawn, or with the
  direction of given latents['z'] (and latents['radii'] when given)."""
  keys = jax.vmap(lambda k: jax.random.fold_in(k, streams.LATENT_STREAM))(keys)
  if latents is None:
    return noise.sample_per_key(keys, sample_shape)
  return noise.from_latents(keys, latents['z'], latents.get('radii'))


def sigma_range(config, sde, eps):
  """The EDM sampler's (σ_min, σ_max): `sampling.sigma_min`, `sigma_max` (0: the defaults of
  `sampling.disc`, generate.py's) within the SDE's [σ(eps), σ(T)]."""
  s = config.sampling
  low, high = schedules.default_range(s.disc, s.epsilon_s)
  return (max(s.sigma_min or low, float(sde.sigma(jnp.asarray(eps, jnp.float32)))),
          min(s.sigma_max or high, float(sde.sigma(jnp.asarray(sde.T, jnp.float32)))))


@register_sampler('edm')
def _edm_sampler(config, sde, sample_shape, eps):
  """EDM sampler with σ_min, σ_max (0: the discretization's default) clamped to the SDE's
  [σ(eps), σ(T)] (as EDM's generate.py to the network's range); with `training.pfgmpp_D` finite
  it starts from PFGM++'s prior (the ODE in σ is the same). `sampling.disc`, `schedule`,
  `scaling` pick Karras+22 Table 1's time steps, σ(t) and s(t) (`schedules`); schedule and
  scaling '' keep the SDE's own, and one set alone takes generate.py's default for the other."""
  s = config.sampling
  sigma_min, sigma_max = sigma_range(config, sde, eps)
  dtype = jnp.float64 if s.float64 else jnp.float32
  noise = sde_lib.get_noise(config)
  ode, rounded = sde, precond.round_sigma(config)
  if s.schedule or s.scaling:
    ode = schedules.SamplingODE(s.schedule or 'linear', s.scaling or 'none', sigma_min,
                                sigma_max, s.epsilon_s)
  def sampler(keys, score_fn, latents=None):
    if math.isinf(noise.D):
      z = None if latents is None else latents['z']
    else:
      z = pfgmpp_latents(keys, noise, sample_shape, latents)
    sigmas = schedules.DISCS.get(s.disc)(s.steps, sigma_min, sigma_max, s.epsilon_s, s.rho,
                                         dtype)
    return edm_sample(keys, score_fn if ode is sde else schedules.rescore(score_fn, sde, ode),
                      ode, sample_shape, s.steps, sigma_min, sigma_max, s.rho, s.solver,
                      s.S_churn, s.S_min, s.S_max, s.S_noise, s.eps_scaler, s.eps_scaler_k,
                      s.perturb_alpha, dtype, z=z, sigmas=sigmas, round_sigma=rounded)
  return sampler
