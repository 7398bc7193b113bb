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
score of the same noisy-image density at the same σ (`rescore`).
"""
import jax
import jax.numpy as jnp
import numpy as np

import sde_lib
from utils import bcast

DISCS = ('edm', 'vp', 've', 'iddpm')
SCHEDULES = ('vp', 've', 'linear')
SCALINGS = ('vp', 'none')
IDDPM_M, IDDPM_C1, IDDPM_C2 = 1000, 0.001, 0.008      # generate.py's ablation_sampler defaults


def vp_sigma(t, beta_d=19.9, beta_min=0.1):
  return np.sqrt(np.expm1(0.5 * beta_d * t ** 2 + beta_min * t))  # Karras+22 Table 1 (VP)


def default_range(disc, epsilon_s):
  """(σ_min, σ_max) of each time-step discretization when none is given (generate.py)."""
  return {'vp': (float(vp_sigma(epsilon_s)), float(vp_sigma(1.))), 've': (0.02, 100.),
          'iddpm': (0.002, 81.), 'edm': (0.002, 80.)}[disc]


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


def sigma_steps(disc, steps, sigma_min, sigma_max, epsilon_s):
  """σ_0 > … > σ_{N−1} in float64 of the 'vp', 've' or 'iddpm' discretization (Table 1)."""
  i = np.arange(steps, dtype=np.float64) / (steps - 1)
  if disc == 'vp':
    beta_d, beta_min = vp_betas(sigma_min, sigma_max, epsilon_s)
    return vp_sigma(1 + i * (epsilon_s - 1), beta_d, beta_min)
  if disc == 've':
    return np.sqrt(sigma_max ** 2 * (sigma_min ** 2 / sigma_max ** 2) ** i)
  assert disc == 'iddpm', disc
  u = iddpm_levels()
  u = u[(u >= sigma_min) & (u <= sigma_max)]
  return u[np.round((len(u) - 1) * i).astype(np.int64)]


class SamplingODE:
  """σ(t) and s(t) of Table 1's schedule and scaling, with the SDE interface the EDM sampler
  reads (sigma, scale, sigma_inv and their derivatives)."""

  def __init__(self, schedule, scaling, sigma_min, sigma_max, epsilon_s):
    self.schedule, self.scaling = schedule, scaling
    self.vp = sde_lib.VPSDE(*_vp_beta_range(sigma_min, sigma_max, epsilon_s))

  def sigma(self, t):
    return {'vp': self.vp.sigma, 've': jnp.sqrt, 'linear': lambda t: t}[self.schedule](t)

  def sigma_inv(self, sigma):
    return {'vp': self.vp.sigma_inv, 've': jnp.square, 'linear': lambda s: s}[self.schedule](sigma)

  def scale(self, t):
    if self.scaling == 'none':
      return jnp.ones_like(t)                                       # Karras+22 Table 1
    return 1. / jnp.sqrt(1. + self.sigma(t) ** 2)                   # Karras+22 Table 1 (VP)

  def sigma_deriv(self, t):
    return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

  def scale_deriv(self, t):
    return jax.jvp(self.scale, (t,), (jnp.ones_like(t),))[1]


def _vp_beta_range(sigma_min, sigma_max, epsilon_s):
  beta_d, beta_min = vp_betas(sigma_min, sigma_max, epsilon_s)
  return float(beta_min), float(beta_min + beta_d)                  # VPSDE(β_0, β_1 = β_0 + β_d)


def rescore(score_fn, sde, ode):
  """The score in the ODE's time: x = s(t) x̃ with σ = σ(t) is the model SDE's s_m x̃ at
  t_m = σ_m⁻¹(σ), so ∇_x log p = (s_m / s) ∇ log p_m(s_m x / s, t_m) (Karras+22 Eq. 10)."""
  def score(x, t):
    t_m = sde.sigma_inv(ode.sigma(t))
    ratio = bcast(sde.scale(t_m) / ode.scale(t), x)
    return ratio * score_fn(ratio * x, t_m).astype(x.dtype)
  return score
