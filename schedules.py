"""The EDM sampler's ablation axes: time steps, σ(t) and s(t) (Karras+22 §3, Table 1, Fig. 2).

Paper: Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models,
arXiv:2206.00364. NVlabs/edm generate.py exposes the same axes as `--disc`, `--schedule`,
`--scaling` (its ablation_sampler); here they are `sampling.disc`, `sampling.schedule`,
`sampling.scaling` of `sampling.method='edm'`:

  disc      σ_i, i < N:  'edm'  (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ   (Eq. 5)
                         'vp'   σ_VP(1 + i/(N−1) (ε_s − 1))             (Table 1, VP time steps)
                         've'   √(σ_max² (σ_min²/σ_max²)^(i/(N−1)))     (Table 1, VE time steps)
                         'iddpm' the ⌊(J−1) i/(N−1)⌉-th of iDDPM's levels u_j in the range
                                 (J of them; `iddpm_levels`; Table 1, iDDPM)
  schedule  σ(t):        'vp' √(e^(½β_d t² + β_min t) − 1), 've' √t, 'linear' t   (Table 1)
  scaling   s(t):        'vp' 1/√(1 + σ(t)²), 'none' 1                           (Table 1)

The VP schedule's β_d, β_min put σ(ε_s) = σ_min and σ(1) = σ_max (generate.py), so they follow
the σ range. The network stays what it is: a sampler with another σ(t), s(t) asks it for the
score of the same noisy-image density at the same σ (`rescore`). Each axis is a registry
(`DISCS`, `SCHEDULES`, `SCALINGS`): a new one is a decorated function here, named in the config.
"""
import jax
import jax.numpy as jnp
import numpy as np

import sde_lib
from utils import Registry, bcast

DISCS = Registry('time-step discretization')   # name -> fn(steps, σ_min, σ_max, ε_s, ρ, dtype)
SCHEDULES = Registry('noise schedule σ(t)')       # name -> fn(σ_min, σ_max, ε_s) -> (σ, σ⁻¹)
SCALINGS = Registry('scaling s(t)')               # name -> fn(σ) -> s, both of t
IDDPM_M, IDDPM_C1, IDDPM_C2 = 1000, 0.001, 0.008      # generate.py's ablation_sampler defaults


def register_disc(name, default_range):
  """`@register_disc(name, (σ_min, σ_max) or fn(ε_s) -> (σ_min, σ_max))` on a function
  (steps, σ_min, σ_max, ε_s, ρ, dtype) -> σ_0 > … > σ_{N−1}; the range is used where
  `sampling.sigma_min` / `sigma_max` are 0 (generate.py's defaults per discretization)."""
  def wrap(fn):
    fn.default_range = default_range if callable(default_range) else lambda eps_s: default_range
    return DISCS.register(name)(fn)
  return wrap


def vp_sigma(t, beta_d=19.9, beta_min=0.1):
  return np.sqrt(np.expm1(0.5 * beta_d * t ** 2 + beta_min * t))  # Karras+22 Table 1 (VP)


def default_range(disc, epsilon_s):
  """(σ_min, σ_max) of the time-step discretization `disc` when none is given (generate.py)."""
  return tuple(float(v) for v in DISCS.get(disc).default_range(epsilon_s))


def vp_betas(sigma_min, sigma_max, epsilon_s):
  """(β_d, β_min) with σ_VP(ε_s) = σ_min and σ_VP(1) = σ_max (generate.py's VP schedule)."""
  log_max = np.log(sigma_max ** 2 + 1)
  beta_d = 2 * (np.log(sigma_min ** 2 + 1) / epsilon_s - log_max) / (epsilon_s - 1)
  return beta_d, log_max - 0.5 * beta_d


def iddpm_levels(m=IDDPM_M, c1=IDDPM_C1, c2=IDDPM_C2):
  """u_0 > … > u_M = 0: u_{j−1} = √((u_j² + 1) / max(ᾱ_{j−1}/ᾱ_j, C_1) − 1), ᾱ_j =
  sin²(π j / (2 M (C_2 + 1))) (Karras+22 Table 1 / App. C.3.4, iDDPM's cosine schedule)."""
  alpha_bar = lambda j: np.sin(0.5 * np.pi * j / m / (c2 + 1)) ** 2   # noqa: E731
  u = np.zeros(m + 1)
  for j in range(m, 0, -1):
    u[j - 1] = np.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), c1) - 1)
  return u


@register_disc('edm', (0.002, 80.))
def edm_sigmas(steps, sigma_min, sigma_max, epsilon_s=None, rho=7., dtype=jnp.float32):
  """The noise levels σ_0 > ... > σ_{N-1} of Karras+22 Eq. 5 (σ_N = 0 is not included)."""
  del epsilon_s
  i = jnp.arange(steps, dtype=dtype)
  return (sigma_max ** (1 / rho) + i / (steps - 1)
          * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho          # Karras+22 Eq. 5


def _float64_steps(fn):
  """A discretization computed in float64 on the host, as generate.py does, then cast."""
  def disc(steps, sigma_min, sigma_max, epsilon_s, rho, dtype):
    del rho
    i = np.arange(steps, dtype=np.float64) / (steps - 1)
    return jnp.asarray(fn(i, sigma_min, sigma_max, epsilon_s), dtype)
  disc.__doc__ = fn.__doc__
  return disc


@register_disc('vp', lambda eps_s: (vp_sigma(eps_s), vp_sigma(1.)))
@_float64_steps
def _vp_steps(i, sigma_min, sigma_max, epsilon_s):
  """σ_VP(1 + i (ε_s − 1)) of the VP schedule through the range (Table 1, VP time steps)."""
  return vp_sigma(1 + i * (epsilon_s - 1), *vp_betas(sigma_min, sigma_max, epsilon_s))


@register_disc('ve', (0.02, 100.))
@_float64_steps
def _ve_steps(i, sigma_min, sigma_max, epsilon_s):
  """√(σ_max² (σ_min²/σ_max²)^i) (Table 1, VE time steps)."""
  del epsilon_s
  return np.sqrt(sigma_max ** 2 * (sigma_min ** 2 / sigma_max ** 2) ** i)


@register_disc('iddpm', (0.002, 81.))
@_float64_steps
def _iddpm_steps(i, sigma_min, sigma_max, epsilon_s):
  """The ⌊(J − 1) i⌉-th of the J iDDPM levels u_j in the range (Table 1, iDDPM time steps)."""
  del epsilon_s
  u = iddpm_levels()
  u = u[(u >= sigma_min) & (u <= sigma_max)]
  return u[np.round((len(u) - 1) * i).astype(np.int64)]


@SCHEDULES.register('vp')
def _vp_schedule(sigma_min, sigma_max, epsilon_s):
  """√(e^(½β_d t² + β_min t) − 1), β through the range (`vp_betas`; Table 1, VP)."""
  beta_d, beta_min = vp_betas(sigma_min, sigma_max, epsilon_s)
  vp = sde_lib.VPSDE(float(beta_min), float(beta_min + beta_d))    # β_0, β_1 = β_0 + β_d
  return vp.sigma, vp.sigma_inv


@SCHEDULES.register('ve')
def _ve_schedule(sigma_min, sigma_max, epsilon_s):
  del sigma_min, sigma_max, epsilon_s
  return jnp.sqrt, jnp.square                                      # Karras+22 Table 1 (VE)


@SCHEDULES.register('linear')
def _linear_schedule(sigma_min, sigma_max, epsilon_s):
  del sigma_min, sigma_max, epsilon_s
  return (lambda t: t), (lambda sigma: sigma)                      # Karras+22 Table 1 (EDM)


@SCALINGS.register('vp')
def _vp_scaling(sigma):
  return lambda t: 1. / jnp.sqrt(1. + sigma(t) ** 2)               # Karras+22 Table 1 (VP)


@SCALINGS.register('none')
def _no_scaling(sigma):
  del sigma
  return jnp.ones_like                                             # Karras+22 Table 1


class SamplingODE:
  """σ(t) and s(t) of a registered schedule and scaling, with the SDE interface the EDM sampler
  reads (sigma, scale, sigma_inv and their derivatives)."""

  def __init__(self, schedule, scaling, sigma_min, sigma_max, epsilon_s):
    self.sigma, self.sigma_inv = SCHEDULES.get(schedule)(sigma_min, sigma_max, epsilon_s)
    self.scale = SCALINGS.get(scaling)(self.sigma)

  def sigma_deriv(self, t):
    return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

  def scale_deriv(self, t):
    return jax.jvp(self.scale, (t,), (jnp.ones_like(t),))[1]


def rescore(score_fn, sde, ode):
  """The score in the ODE's time: x = s(t) x̃ with σ = σ(t) is the model SDE's s_m x̃ at
  t_m = σ_m⁻¹(σ), so ∇_x log p = (s_m / s) ∇ log p_m(s_m x / s, t_m) (Karras+22 Eq. 10)."""
  def score(x, t):
    t_m = sde.sigma_inv(ode.sigma(t))
    ratio = bcast(sde.scale(t_m) / ode.scale(t), x)
    return ratio * score_fn(ratio * x, t_m).astype(x.dtype)
  return score
