"""Forward diffusion processes (SDEs) and their reverses.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution, arXiv:1907.05600.
  Xu+23  PFGM++: Unlocking the Potential of Physics-Inspired Generative Models, arXiv:2302.04265.

Every process here is Gaussian and can be written x_t = s(t)·(y + σ(t)·n) with n ~ N(0, I)
(Karras+22 Eq. 10): VE has s = 1; VP and sub-VP have s = mean coefficient and σ = std / s.
`sigma`, `scale` and `sigma_inv` give that view, so EDM-style solvers run on every SDE here;
`marginal_prob` is derived from it once, in the base class.

All methods take a batch: x [B, ...] and t [B] (or a scalar t).

PFGM++ (Xu+23) keeps σ and swaps the Gaussian noise for a radial kernel with D extra dimensions
(`get_noise`, `PFGMPPNoise`); D → ∞ is the Gaussian case. Its sampling ODE in σ is EDM's.
"""
import abc
import math

import jax
import jax.numpy as jnp
import numpy as np

from utils import Registry, bcast

SDES = Registry('sde')


class SDE(abc.ABC):
  """Abstract forward SDE dx = f(x, t) dt + g(t) dw on t ∈ [0, T] (Song+21 Eq. 5)."""
  # The config fields (dotted) besides training.sde that set the marginals p_t(x | y): a
  # noise-conditional classifier records them (foreign/classifier.noise_record).
  noise_fields = ()

  def __init__(self, N):
    self.N = N                # number of discretization steps (discrete training and PC sampling)

  @property
  def T(self):
    return 1.

  def classifier_times(self, key, shape, eps):
    """Times a noise-conditional classifier trains at (classifier_lib): t ~ U(eps, T), as Song+21
    App. I.4 (VE: log σ(t) uniform between its ends)."""
    return jax.random.uniform(key, shape, minval=eps, maxval=self.T)

  @abc.abstractmethod
  def sde(self, x, t):
    """Drift f(x, t) [B, ...] and diffusion g(t) [B]."""

  @abc.abstractmethod
  def sigma(self, t):
    """σ(t): noise level of the scaled-out marginal, x_t / s(t) = y + σ(t) n (Karras+22 Eq. 10)."""

  @abc.abstractmethod
  def scale(self, t):
    """s(t): the signal scale of the marginal (Karras+22 Eq. 10)."""

  @abc.abstractmethod
  def sigma_inv(self, sigma):
    """t such that σ(t) = sigma (the inverse of `sigma`)."""

  def sigma_deriv(self, t):
    """dσ/dt, by forward-mode differentiation of `sigma`."""
    return jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))[1]

  def scale_deriv(self, t):
    """ds/dt, by forward-mode differentiation of `scale`."""
    return jax.jvp(self.scale, (t,), (jnp.ones_like(t),))[1]

  def marginal_prob(self, x, t):
    """Mean s(t)·x and std s(t)·σ(t) of p_0t(x_t | x_0 = x) (Song+21 Eqs. 29, 33; Karras+22 Eq. 11)."""
    s = self.scale(t)
    return bcast(s, x) * x, s * self.sigma(t)

  def prior_sampling(self, rng, shape):
    """A sample of the prior p_T; the standard normal scaled by the marginal std at T."""
    return jax.random.normal(rng, shape) * self.prior_std

  @property
  @abc.abstractmethod
  def prior_std(self):
    """Standard deviation of the isotropic Gaussian prior p_T."""

  def prior_logp(self, z):
    """log N(z; 0, prior_std² I), summed over all but the batch axis."""
    d = np.prod(z.shape[1:])
    return (-d / 2. * np.log(2 * np.pi * self.prior_std ** 2)
            - jnp.sum(z.reshape(z.shape[0], -1) ** 2, axis=1) / (2. * self.prior_std ** 2))

  def discrete_index(self, t):
    """Index i = ⌊t (N − 1) / T⌋ of the discretization step that contains t."""
    return (t * (self.N - 1) / self.T).astype(jnp.int32)

  def discretize(self, x, t):
    """One step x_{i+1} = x_i + f_i + G_i z; Euler–Maruyama by default (Song+21 App. E)."""
    dt = 1. / self.N
    drift, diffusion = self.sde(x, t)
    return drift * dt, diffusion * np.sqrt(dt)

  def reverse(self, score_fn, probability_flow=False):
    """The reverse-time SDE (Song+21 Eq. 6) or its probability-flow ODE (Song+21 Eq. 13)."""
    return ReverseSDE(self, score_fn, probability_flow)

  # Conventions of score_sde's samplers and networks, per SDE (overridden where they differ).

  def langevin_alpha(self, t):
    """α_i of the Langevin step size ε = 2α(snr ‖z‖/‖∇log p‖)² (Song+21 Alg. 5): 1 here."""
    return jnp.ones_like(t)

  def ancestral_step(self, x, t, score):
    """(x_mean, std) of one ancestral step (Song+21 Eqs. 47, 48); VE and VP only."""
    raise NotImplementedError(f'no ancestral sampling for {type(self).__name__}')

  def label_score_fn(self, model_fn, continuous):
    """`score_fn(x, t, rng=None)` of a network trained with score_sde's labels (VE, VP, sub-VP)."""
    raise NotImplementedError(f'no score_sde label convention for {type(self).__name__}')


class ReverseSDE:
  """dx = [f − g² ∇log p_t] dt + g dw̄, or the ODE dx = [f − ½ g² ∇log p_t] dt."""

  def __init__(self, forward, score_fn, probability_flow):
    self.forward = forward              # the forward SDE
    self.score_fn = score_fn            # (x [B, ...], t [B]) -> ∇_x log p_t(x)
    self.probability_flow = probability_flow
    self.N = forward.N
    self.T = forward.T

  def sde(self, x, t):
    """Reverse drift and diffusion (Song+21 Eqs. 6 and 13)."""
    drift, diffusion = self.forward.sde(x, t)
    weight = 0.5 if self.probability_flow else 1.
    drift = drift - bcast(diffusion ** 2, x) * self.score_fn(x, t) * weight
    return drift, jnp.zeros_like(diffusion) if self.probability_flow else diffusion

  def discretize(self, x, t):
    """Reverse of the forward discretization: f_r = f − G² s, G_r = G (Song+21 Eq. 46)."""
    f, G = self.forward.discretize(x, t)
    weight = 0.5 if self.probability_flow else 1.
    rev_f = f - bcast(G ** 2, x) * self.score_fn(x, t) * weight
    return rev_f, jnp.zeros_like(G) if self.probability_flow else G


@SDES.register('vesde')
class VESDE(SDE):
  """Variance exploding SDE (Song+21 Eq. 30): σ(t) = σ_min (σ_max/σ_min)^t, s = 1."""
  noise_fields = ('model.sigma_min', 'model.sigma_max')

  def __init__(self, sigma_min=0.01, sigma_max=50., N=1000):
    super().__init__(N)
    self.sigma_min = sigma_min
    self.sigma_max = sigma_max
    self.discrete_sigmas = jnp.exp(jnp.linspace(np.log(sigma_min), np.log(sigma_max), N))

  sampling_eps = 1e-5            # the smallest time the samplers reach (Song+21's code)

  @classmethod
  def from_config(cls, config):
    return cls(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)

  @property
  def prior_std(self):
    return self.sigma_max                                             # Song+21 App. C

  def sigma(self, t):
    return self.sigma_min * (self.sigma_max / self.sigma_min) ** t    # Song+21 Eq. 30

  def scale(self, t):
    return jnp.ones_like(jnp.asarray(t, jnp.float32))

  def sigma_inv(self, sigma):
    return jnp.log(sigma / self.sigma_min) / np.log(self.sigma_max / self.sigma_min)

  def sde(self, x, t):
    drift = jnp.zeros_like(x)
    # g(t) = σ(t) sqrt(2 ln(σ_max/σ_min)) (Song+21 Eq. 30, dσ²/dt)
    diffusion = self.sigma(t) * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))
    return drift, diffusion

  def discretize(self, x, t):
    """SMLD discretization: f = 0, G = sqrt(σ_i² − σ_{i−1}²) (Song+21 Eq. 45)."""
    i = self.discrete_index(t)
    sigma = self.discrete_sigmas[i]
    adjacent = jnp.where(i == 0, 0., self.discrete_sigmas[jnp.maximum(i - 1, 0)])
    return jnp.zeros_like(x), jnp.sqrt(sigma ** 2 - adjacent ** 2)

  def ancestral_step(self, x, t, score):
    """SMLD ancestral step (Song+21 Eq. 47): x + (σ_i² − σ_{i−1}²) s, std σ_{i−1} √(σ_i² −
    σ_{i−1}²) / σ_i."""
    i = self.discrete_index(t)
    sigma = self.discrete_sigmas[i]
    prev = jnp.where(i == 0, 0., self.discrete_sigmas[jnp.maximum(i - 1, 0)])
    x_mean = x + bcast(sigma ** 2 - prev ** 2, x) * score
    return x_mean, jnp.sqrt(prev ** 2 * (sigma ** 2 - prev ** 2) / sigma ** 2)

  def label_score_fn(self, model_fn, continuous):
    """The network output is the score; its label is σ(t) (continuous) or the index
    round((T − t)(N − 1)) into the descending σ list (discrete SMLD)."""
    def score_fn(x, t, rng=None):
      if continuous:
        labels = self.marginal_prob(jnp.zeros_like(x), t)[1]
      else:
        labels = jnp.round((self.T - t) * (self.N - 1)).astype(jnp.int32)
      return model_fn(x, labels, rng)
    return score_fn


class _VPFamily(SDE):
  """Shared linear β(t) = β_0 + t (β_1 − β_0) schedule of VP and sub-VP (Song+21 Eq. 32)."""
  noise_fields = ('model.beta_min', 'model.beta_max')

  def __init__(self, beta_min=0.1, beta_max=20., N=1000):
    super().__init__(N)            # needs β_N = beta_max / N < 1 (configs/rules.py)
    self.beta_0 = beta_min
    self.beta_1 = beta_max
    self.discrete_betas = jnp.linspace(beta_min / N, beta_max / N, N)    # Ho+20 β_i
    self.alphas = 1. - self.discrete_betas
    self.alphas_cumprod = jnp.cumprod(self.alphas)
    self.sqrt_alphas_cumprod = jnp.sqrt(self.alphas_cumprod)
    self.sqrt_1m_alphas_cumprod = jnp.sqrt(1. - self.alphas_cumprod)

  sampling_eps = 1e-3            # the smallest time the samplers reach (Song+21's code)

  @classmethod
  def from_config(cls, config):
    return cls(config.model.beta_min, config.model.beta_max, config.model.num_scales)

  @property
  def prior_std(self):
    return 1.                                                         # Song+21 App. C

  def langevin_alpha(self, t):
    """α_i = 1 − β_i of the shared β schedule (Song+21 Alg. 5)."""
    return self.alphas[self.discrete_index(t)]

  def label_score_fn(self, model_fn, continuous):
    """The network predicts the noise: label 999 t (continuous) or t (N − 1) (discrete DDPM);
    score = −output / std (Song+21 App. C; Ho+20 Eq. 11)."""
    def score_fn(x, t, rng=None):
      if continuous:
        labels = t * 999
        std = self.marginal_prob(jnp.zeros_like(x), t)[1]
      else:
        labels = t * (self.N - 1)
        std = self.sqrt_1m_alphas_cumprod[labels.astype(jnp.int32)]
      return -model_fn(x, labels, rng) / bcast(std, x)
    return score_fn

  def beta(self, t):
    return self.beta_0 + t * (self.beta_1 - self.beta_0)

  def log_mean_coeff(self, t):
    """ℓ(t) = −¼ t² (β_1 − β_0) − ½ t β_0 = log s(t) (Song+21 Eq. 33)."""
    return -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

  def scale(self, t):
    return jnp.exp(self.log_mean_coeff(t))


@SDES.register('vpsde')
class VPSDE(_VPFamily):
  """Variance preserving SDE dx = −½β(t) x dt + sqrt(β(t)) dw (Song+21 Eq. 32)."""

  def sde(self, x, t):
    beta_t = self.beta(t)
    return -0.5 * bcast(beta_t, x) * x, jnp.sqrt(beta_t)

  def sigma(self, t):
    # std = sqrt(1 − s²) (Song+21 Eq. 33), σ = std / s = sqrt(e^{−2ℓ} − 1) (Karras+22 Eq. 28)
    return jnp.sqrt(jnp.expm1(-2. * self.log_mean_coeff(t)))

  def sigma_inv(self, sigma):
    # solve ½ β_d t² + β_0 t = ln(1 + σ²) for t ≥ 0 (Karras+22 Eq. 28 inverted)
    beta_d = self.beta_1 - self.beta_0
    return (jnp.sqrt(self.beta_0 ** 2 + 2. * beta_d * jnp.log1p(sigma ** 2)) - self.beta_0) / beta_d

  def discretize(self, x, t):
    """DDPM discretization: f = sqrt(1 − β_i) x − x, G = sqrt(β_i) (Song+21 Eq. 47)."""
    i = self.discrete_index(t)
    beta = self.discrete_betas[i]
    return bcast(jnp.sqrt(1. - beta), x) * x - x, jnp.sqrt(beta)

  def ancestral_step(self, x, t, score):
    """DDPM ancestral step (Song+21 Eq. 48; Ho+20 Alg. 2): (x + β_i s) / √(1 − β_i), std √β_i."""
    beta = self.discrete_betas[self.discrete_index(t)]
    return (x + bcast(beta, x) * score) / bcast(jnp.sqrt(1. - beta), x), jnp.sqrt(beta)


@SDES.register('subvpsde')
class subVPSDE(_VPFamily):  # pylint: disable=invalid-name
  """sub-VP SDE: dx = −½β x dt + sqrt(β(t)(1 − e^{−2∫β})) dw (Song+21 Eq. 34)."""

  def sde(self, x, t):
    beta_t = self.beta(t)
    discount = 1. - jnp.exp(-2. * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
    return -0.5 * bcast(beta_t, x) * x, jnp.sqrt(beta_t * discount)

  def sigma(self, t):
    # std = 1 − s² (Song+21 Eq. 35), σ = std / s = e^{−ℓ} − e^{ℓ}
    ell = self.log_mean_coeff(t)
    return jnp.exp(-ell) - jnp.exp(ell)

  def sigma_inv(self, sigma):
    # u = e^{−ℓ} solves u − 1/u = σ; then ¼ β_d t² + ½ β_0 t = ln u
    log_u = jnp.log((sigma + jnp.sqrt(sigma ** 2 + 4.)) / 2.)
    a, b = 0.25 * (self.beta_1 - self.beta_0), 0.5 * self.beta_0
    return (jnp.sqrt(b ** 2 + 4. * a * log_u) - b) / (2. * a)

  def label_score_fn(self, model_fn, continuous):
    """score_sde trains sub-VP only continuously: label 999 t whatever `continuous` says."""
    del continuous
    return super().label_score_fn(model_fn, continuous=True)


@SDES.register('edm')
class EDMSDE(SDE):
  """EDM's process (Karras+22 §3, Eq. 4 with σ(t) = t, s(t) = 1): dx = sqrt(2t) dw on [0, σ_max]."""
  # noise_fields = (): p_t(x | y) = N(y, t²) whatever the config (σ_min, σ_max bound t only)

  def __init__(self, sigma_min=0.002, sigma_max=80., N=1000):
    super().__init__(N)
    self.sigma_min = sigma_min          # smallest sampling noise level (Karras+22 Table 1: 0.002)
    self.sigma_max = sigma_max          # T = σ_max, the prior std (Karras+22 Table 1: 80)

  @classmethod
  def from_config(cls, config):
    return cls(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)

  @property
  def sampling_eps(self):
    return self.sigma_min               # the EDM sampler's last noise level (Karras+22 Table 1)

  @property
  def T(self):
    return self.sigma_max

  def classifier_times(self, key, shape, eps):
    """log t ~ U(log eps, log σ_max): as VE's t ~ U(eps, 1) spreads log σ (uniform t = σ would
    put 99% of the draws above σ = 0.8, where the sampler spends few of its levels)."""
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(eps), maxval=jnp.log(self.T)))

  @property
  def prior_std(self):
    return self.sigma_max                                             # Karras+22 Alg. 2 line 2

  def sigma(self, t):
    return t                                                          # Karras+22 Table 1

  def scale(self, t):
    return jnp.ones_like(t)                                           # Karras+22 Table 1

  def sigma_inv(self, sigma):
    return sigma

  def sde(self, x, t):
    # g(t) = s(t) sqrt(2 σ'(t) σ(t)) = sqrt(2t) (Karras+22 Eq. 6), f = 0
    return jnp.zeros_like(x), jnp.sqrt(2. * t)

  def discretize(self, x, t):
    """Euler–Maruyama over the step dt = T/N of t ∈ [0, σ_max] (the base class assumes T = 1)."""
    dt = self.T / self.N
    drift, diffusion = self.sde(x, t)
    return drift * dt, diffusion * np.sqrt(dt)


def get_sde(config):
  """(sde, eps): the SDE named by `config.training.sde` built from its `config.model` fields, and
  its `sampling_eps`, the smallest time the samplers integrate to (1e-5 for VE, 1e-3 for VP and
  sub-VP, as in Song+21's code; σ_min for EDM)."""
  sde = SDES.get(config.training.sde).from_config(config)
  return sde, sde.sampling_eps


# ------------------------------------------------------------------------------------------------
# Noise laws: x = y + σ·n. Gaussian (every SDE above) or PFGM++'s kernel (Xu+23).

class GaussianNoise:
  """n ~ N(0, I): the kernel N(x; y, σ² I), PFGM++'s D → ∞ limit."""
  D = math.inf

  def sample(self, rng, shape):
    """Noise for σ = 1, [B, *sample_shape] from one key (the batch draws together)."""
    return jax.random.normal(rng, shape)

  def log_kernel(self, sq_dist, sigma, n_dims):
    """log p_σ(x | y) up to a constant in y, from ‖x − y‖² [..., K] and σ [..., 1]."""
    del n_dims
    return -sq_dist / (2. * sigma ** 2)


class PFGMPPNoise:
  """PFGM++'s kernel p_r(x | y) ∝ (‖x − y‖² + r²)^(−(N+D)/2), r = σ√D (Xu+23; Newbeeer/pfgmpp
  training/loss.py).

  The radius R = ‖x − y‖ has R²/r² ~ BetaPrime(N/2, D/2) (Xu+23), drawn as the ratio of
  Gamma(N/2) and Gamma(D/2) draws (= β/(1 − β) with β ~ Beta(N/2, D/2), without forming β, so
  any D works in float32). The direction is uniform. E‖n‖² = N·D/(D − 2) → N as D → ∞.
  Deviation: Newbeeer/pfgmpp's loss.py clips β to [1e-3, 1 − 1e-3], which truncates half of
  the kernel at the paper's D = 1000·N (β ≈ 1e-3 there); the exact kernel is drawn here.
  """

  def __init__(self, D):
    self.D = float(D)                   # D > 2 (configs/rules.py)

  def _radius(self, rng, n_dims):
    a_rng, b_rng = jax.random.split(rng)
    ratio = (jax.random.gamma(a_rng, n_dims / 2.)
             / jax.random.gamma(b_rng, self.D / 2.))               # β/(1−β), β ~ Beta(N/2, D/2)
    return jnp.sqrt(self.D * ratio)                                 # R = r √(β/(1−β)), r = √D

  def _one(self, rng, sample_shape, g=None, radius=None):
    g_rng, r_rng = jax.random.split(rng)
    g = jax.random.normal(g_rng, sample_shape) if g is None else g
    radius = self._radius(r_rng, math.prod(sample_shape)) if radius is None else radius
    return g * (radius / jnp.linalg.norm(g))                        # Xu+23: R · u

  def from_latents(self, keys, z, radii=None):
    """Noise for σ = 1 with the direction of given Gaussian latents z [B, ...] and the given
    radii [B] (for σ = 1), or each key's radius (Newbeeer/pfgmpp draws them apart too)."""
    if radii is None:
      return jax.vmap(lambda k, g: self._one(k, g.shape, g))(keys, z)
    return jax.vmap(lambda k, g, r: self._one(k, g.shape, g, r))(keys, z, radii)

  def sample(self, rng, shape):
    """Noise for σ = 1, [B, *sample_shape]; each sample draws its own radius and direction."""
    return jax.vmap(lambda k: self._one(k, shape[1:]))(jax.random.split(rng, shape[0]))

  def sample_per_key(self, keys, sample_shape):
    """Noise for σ = 1 from per-sample keys [B] (sample i depends only on keys[i])."""
    return jax.vmap(lambda k: self._one(k, sample_shape))(keys)

  def log_kernel(self, sq_dist, sigma, n_dims):
    return -0.5 * (n_dims + self.D) * jnp.log(sq_dist + self.D * sigma ** 2)   # Xu+23


def get_noise(config):
  """The noise law of `training.pfgmpp_D`: inf = Gaussian, finite D > 2 = PFGM++."""
  D = config.training.pfgmpp_D
  return GaussianNoise() if math.isinf(D) else PFGMPPNoise(D)
