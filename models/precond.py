"""EDM preconditioning: any registered network F(x, c_noise) seen as a denoiser D(x; σ).

Papers:
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.
  Song+21    Score-Based Generative Modeling through SDEs, arXiv:2011.13456.

    D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ))        (Karras+22 Eq. 7)

with the coefficients of Karras+22 Table 1 ('vp', 've', 'edm'; σ_data = `model.sigma_data`).
`config.model.precond` picks one; 'none' keeps score_sde's label conventions
(the SDE's `label_score_fn`). `get_score_fn(config, sde, model_fn)` is the one dispatch every
sampler uses. Parameters are those of the bare network (the wrapper holds none), so checkpoints
and parameter counts do not change.

Network mapping (our `ncsnpp` / `ddpm` vs EDM's SongUNet): F is called with label c_noise, except
that `ncsnpp` with `embedding_type='fourier'` embeds log(label) (score_sde's VE convention), so it
is fed exp(c_noise) and sees Fourier features of c_noise, as SongUNet does. Positional embeddings
get c_noise as is: both use the frequencies 10000^(−i/(D/2−1)) (SongUNet's endpoint=True) and,
after SongUNet's sin/cos swap, the order [sin, cos], so EDM's weights load unchanged
(`foreign.songunet`). `adm` (EDM's DhariwalUNet) embeds c_noise as is, positionally as EDM does.
`scale_by_sigma` must be off (c_out scales).

Patch Diffusion (Wang+23, arXiv:2304.12526; Patch-Diffusion's Patch_EDMPrecond): with
`model.patch_coords` the network gets two more input channels, the pixel coordinates of the
full image [x_pos, y_pos] ∈ [−1, 1], appended after the c_in scaling:
F(cat[c_in x, coords]; c_noise). A full image gets the full grid; a patch its crop of it.
"""
import functools

import jax.numpy as jnp
import numpy as np

from models import utils as mutils
import schedules
import sde_lib
from utils import Registry, bcast

PRECONDS = Registry('precond')
VP_M = 1000                           # Karras+22 Table 1: M = 1000 (score_sde's 999·t label)


@PRECONDS.register('vp')
def vp_precond(config):
  """VP (Karras+22 Table 1): c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1), c_noise = (M−1) σ⁻¹(σ)."""
  sigma_inv = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max).sigma_inv
  def coefficients(sigma):
    c_skip = jnp.ones_like(sigma)                   # Karras+22 Table 1 (VP)
    c_out = -sigma                                  # Karras+22 Table 1 (VP)
    c_in = 1. / jnp.sqrt(sigma ** 2 + 1.)           # Karras+22 Table 1 (VP)
    c_noise = (VP_M - 1) * sigma_inv(sigma)         # Karras+22 Table 1 (VP), Eq. 28 inverted
    return c_skip, c_out, c_in, c_noise
  return coefficients


@PRECONDS.register('ve')
def ve_precond(config):
  """VE (Karras+22 Table 1): c_skip = 1, c_out = σ, c_in = 1, c_noise = ln(½σ)."""
  del config
  def coefficients(sigma):
    ones = jnp.ones_like(sigma)
    return ones, sigma, ones, jnp.log(0.5 * sigma)  # Karras+22 Table 1 (VE)
  return coefficients


@PRECONDS.register('iddpm')
def iddpm_precond(config):
  """iDDPM (Karras+22 Table 1): c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1), c_noise = M − 1 − j,
  u_j the nearest of iDDPM's M levels (`nearest_iddpm_level`)."""
  del config
  def coefficients(sigma):
    j, _ = nearest_iddpm_level(sigma)
    c_noise = (schedules.IDDPM_M - 1 - j).astype(sigma.dtype)   # Karras+22 Table 1 (iDDPM)
    return jnp.ones_like(sigma), -sigma, 1. / jnp.sqrt(sigma ** 2 + 1.), c_noise
  return coefficients


@functools.cache
def _iddpm_levels():
  return schedules.iddpm_levels().astype(np.float32)   # EDM's float32 buffer u


def nearest_iddpm_level(sigma):
  """(j, u_j) of the level nearest each σ (EDM's iDDPMPrecond.round_sigma, in float32; u_j in
  σ's dtype)."""
  levels = jnp.asarray(_iddpm_levels())
  j = jnp.argmin(jnp.abs(jnp.asarray(sigma, jnp.float32)[..., None] - levels), axis=-1)
  return j, levels[j].astype(jnp.asarray(sigma).dtype)


def round_sigma(config):
  """σ -> the nearest noise level the network knows: iDDPM's u_j (EDM's round_sigma, which its
  samplers apply to every σ_i and t̂_i); None (no rounding) for every other preconditioner."""
  if config.model.precond != 'iddpm':
    return None
  return lambda sigma: nearest_iddpm_level(sigma)[1]


@PRECONDS.register('edm')
def edm_precond(config):
  """EDM (Karras+22 Table 1): c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²), c_in = 1/√(σ²+σ_d²),
  c_noise = ¼ ln σ."""
  sigma_data = config.model.sigma_data
  def coefficients(sigma):
    total = sigma ** 2 + sigma_data ** 2
    c_skip = sigma_data ** 2 / total                # Karras+22 Table 1 (EDM), Eq. 7
    c_out = sigma * sigma_data / jnp.sqrt(total)    # Karras+22 Table 1 (EDM)
    c_in = 1. / jnp.sqrt(total)                     # Karras+22 Table 1 (EDM)
    c_noise = 0.25 * jnp.log(sigma)                 # Karras+22 Table 1 (EDM)
    return c_skip, c_out, c_in, c_noise
  return coefficients


def get_coefficients(config):
  """`sigma [B] -> (c_skip, c_out, c_in, c_noise)`, each [B], for `config.model.precond`."""
  return PRECONDS.get(config.model.precond)(config)


def _log_label(config):
  """Whether the network embeds log(label) (ncsnpp's Fourier features, score_sde's VE form)."""
  return config.model.name == 'ncsnpp' and config.model.embedding_type == 'fourier'


def coordinate_grid(size):
  """[size, size, 2] channels (x_pos, y_pos) of the pixels of a size×size image: column c, row r
  -> (2 (c/(size − 1) − ½), 2 (r/(size − 1) − ½)) (Patch-Diffusion training/patch_loss.py)."""
  pos = 2. * (np.arange(size) / (size - 1) - 0.5)
  return jnp.asarray(np.stack(np.meshgrid(pos, pos), axis=-1), jnp.float32)   # [r, c] = (x, y)


def get_denoiser(config, model_fn):
  """`denoiser(x [B, ...], sigma [B] or scalar, rng=None, coords=None) -> D(x; σ)` (Karras+22
  Eq. 7); with `model.patch_coords`, `coords` [B, h, w, 2] of a patch (None: the full grid).

  The network runs in float32 on c_in·x; the skip connection is computed in x's dtype (float64
  in the EDM sampler), as EDM's wrappers return D for the sampler to cast.
  """
  coefficients = get_coefficients(config)
  log_label = _log_label(config)

  def denoiser(x, sigma, rng=None, coords=None):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    c_skip, c_out, c_in, c_noise = coefficients(sigma)
    labels = jnp.exp(c_noise) if log_label else c_noise
    net_in = (bcast(c_in, x) * x).astype(jnp.float32)
    if config.model.patch_coords:                   # Wang+23: coordinates after c_in scaling
      if coords is None:
        coords = jnp.broadcast_to(coordinate_grid(x.shape[1]), x.shape[:3] + (2,))
      net_in = jnp.concatenate([net_in, coords.astype(jnp.float32)], axis=-1)
    out = model_fn(net_in, labels.astype(jnp.float32), rng)
    return bcast(c_skip, x) * x + bcast(c_out, x) * out.astype(x.dtype)   # Karras+22 Eq. 7
  return denoiser


def get_score_fn(config, sde, model_fn):
  """`score_fn(x, t, rng=None) -> ∇_x log p_t(x)` of `model_fn` for any config.

  precond 'none': score_sde's conventions (`sde.label_score_fn`, training.continuous);
  otherwise the preconditioned denoiser seen as a score through the SDE's σ(t), s(t)
  (`models.utils.denoiser_to_score`, Karras+22 Eqs. 3, 10).
  """
  if config.model.precond == 'none':
    return sde.label_score_fn(model_fn, config.training.continuous)
  return mutils.denoiser_to_score(sde, get_denoiser(config, model_fn))
