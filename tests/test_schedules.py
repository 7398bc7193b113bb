"""The EDM sampler's ablation axes (schedules.py, Karras+22 Table 1): each discretization against
its formula, the VP schedule's fit against the paper's β, iDDPM's levels against the cosine
schedule in closed form, and every σ(t), s(t) pair solving the same probability-flow ODE (exact
on Gaussian data). The official ablation_sampler's images: tests/test_published_checkpoints.py
(cases edm_baseline_*)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closed_form import Gaussian
from configs import default_lib
from models import utils as mutils
import sampling
import schedules
import sde_lib
from streams import LATENT_STREAM, sample_keys
from utils import per_sample_normal


def test_the_vp_schedule_through_its_default_range_has_the_papers_betas():
  """σ_VP(ε_s) and σ_VP(1) of β_d = 19.9, β_min = 0.1 give those β back (Karras+22 Table 1)."""
  low, high = schedules.default_range('vp', 1e-3)
  np.testing.assert_allclose(schedules.vp_betas(low, high, 1e-3), (19.9, 0.1), rtol=1e-9)
  beta_d, beta_min = schedules.vp_betas(0.002, 80., 1e-3)      # another range: its endpoints
  np.testing.assert_allclose(schedules.vp_sigma(np.array([1e-3, 1.]), beta_d, beta_min),
                             (0.002, 80.), rtol=1e-9)


def test_iddpm_levels_follow_the_cosine_schedule():
  """u_j² + 1 = ᾱ_M / ᾱ_j wherever the clip at C_1 never bound (ᾱ_j = sin²(π j / (2 M (1 +
  C_2))), Nichol & Dhariwal's cosine schedule); u_M = 0 and u decreasing."""
  m, c2 = schedules.IDDPM_M, schedules.IDDPM_C2
  u = schedules.iddpm_levels()
  alpha_bar = np.sin(0.5 * np.pi * np.arange(m + 1) / m / (c2 + 1)) ** 2
  free = slice(20, None)                      # ratios ᾱ_{j-1}/ᾱ_j ≥ C_1 from j = 1 on
  assert (alpha_bar[:-1][1:] / alpha_bar[1:][1:] >= schedules.IDDPM_C1).all()
  np.testing.assert_allclose(u[free] ** 2 + 1, alpha_bar[m] / alpha_bar[free], rtol=1e-9)
  assert u[m] == 0 and (np.diff(u) < 0).all()


@pytest.mark.parametrize('disc', ['vp', 've', 'iddpm'])
def test_discretizations_span_the_range_as_table_1_spaces_them(disc):
  steps, eps_s = 7, 1e-3                      # 7: iDDPM's indices (len(u) − 1) i / 6 not whole
  low, high = schedules.default_range(disc, eps_s)
  with jax.enable_x64(True):
    sigmas = np.asarray(schedules.DISCS.get(disc)(steps, low, high, eps_s, 7., jnp.float64))
  assert sigmas.shape == (steps,) and (np.diff(sigmas) < 0).all()
  if disc == 'vp':      # times 1 + i/(N−1)(ε_s − 1), equally spaced, through σ_VP⁻¹
    t = sde_lib.VPSDE(0.1, 20.).sigma_inv(jnp.asarray(sigmas))
    np.testing.assert_allclose(t, np.linspace(1., eps_s, steps), rtol=1e-5)
  elif disc == 've':    # σ² geometric from σ_max² to σ_min²
    np.testing.assert_allclose(sigmas[[0, -1]], (high, low), rtol=1e-12)
    np.testing.assert_allclose(sigmas[1:] ** 2 / sigmas[:-1] ** 2, (low / high) ** (2 / 6))
  else:                 # iDDPM's levels in range, first and last included, index ⌊j⌉
    u = schedules.iddpm_levels()
    u = u[(u >= low) & (u <= high)]
    np.testing.assert_array_equal(sigmas, u[np.round(np.arange(steps) * (len(u) - 1) / 6)
                                            .astype(int)])
    assert sigmas[0] == u[0] and sigmas[-1] == u[-1]


GAUSS = Gaussian.random(4, seed=1)


ALL_PAIRS = tuple(itertools.product(('', *schedules.SCHEDULES.names()),
                                   ('', *schedules.SCALINGS.names())))
PAIRS = {'edm': ALL_PAIRS, 'vp': ALL_PAIRS, 've': (('', ''), ('ve', 'none')),   # Table 1's
         'iddpm': (('', ''), ('linear', 'none'))}                            # columns


@pytest.mark.parametrize('disc', schedules.DISCS.names())
def test_every_schedule_and_scaling_solves_the_same_ode(disc):
  """On N(μ, Σ) data the probability-flow ODE from σ_max has the closed form x(σ) − μ =
  Q diag(√((λ + σ²)/(λ + σ_max²))) Qᵀ (x(σ_max) − μ); Heun with 512 steps reaches x(0) for each
  σ(t), s(t) pair (all pairs on EDM's and VP's time steps, Table 1's own on VE's and iDDPM's;
  the score asked of the model in its own SDE's time, EDMSDE here). Measured: the error falls 4×
  per doubling of the steps (second order) for every pair; σ(t) = √t on the VE time steps has
  the largest of those tested, 1e-3 at 512 steps (Karras+22 §3: its trajectories curve most);
  iDDPM's levels stop at σ = 0.0064 (error 1.1e-3); on them σ(t) = √t or σ_VP(t) without
  scaling are still 5e-3 off at 900 steps (tested where they converge: EDM's and VP's steps).
  """
  sde = sde_lib.EDMSDE(0.002, 80.)
  score = mutils.denoiser_to_score(sde, GAUSS.denoiser)
  keys = sample_keys(jax.random.key(3), 8)
  lam, q, mu = (np.asarray(a, np.float64) for a in (GAUSS.evals, GAUSS.evecs, GAUSS.mu))
  for schedule, scaling in PAIRS[disc]:
    config = default_lib.get_base_config()
    config.sampling.update(method='edm', steps=512, disc=disc, schedule=schedule,
                           scaling=scaling, float64=True, sigma_min=0.002)   # all end near 0
    sigma_max = sampling.sigma_range(config, sde, 0.002)[1]
    with jax.enable_x64(True):
      sampler = sampling.SAMPLERS.get('edm')(config, sde, (4,), 0.002)
      run = jax.jit(lambda k: sampler(k, score)[0])   # pylint: disable=cell-var-from-loop
      x = np.asarray(run(keys))
      z = np.asarray(per_sample_normal(keys, LATENT_STREAM, (4,)), np.float64)
    gain = np.sqrt(lam / (lam + sigma_max ** 2))
    exact = mu + ((sigma_max * z - mu) @ q * gain) @ q.T
    np.testing.assert_allclose(x, exact, atol=1.5e-3, err_msg=f'{disc} {schedule} {scaling}')
