"""Closed-form diffusion quantities for Gaussian and Gaussian-mixture data.

For data y ~ N(μ, Σ), the marginal of x_t = s(t)(y + σ(t) n) is N(s μ, s² (Σ + σ² I))
(Karras+22 Eq. 10–11), so its score, log-density and ideal denoiser are exact. A mixture's
marginal is the mixture of the components' marginals.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp


class Gaussian:
  """N(mu, cov) in d dimensions (full covariance)."""

  def __init__(self, mu, cov):
    self.mu = jnp.asarray(mu, jnp.float32)
    self.cov = jnp.asarray(cov, jnp.float32)
    self.d = self.mu.shape[0]
    evals, evecs = np.linalg.eigh(np.asarray(cov, np.float64))   # Σ = Q diag(λ) Qᵀ
    self.evals = jnp.asarray(evals, jnp.float32)
    self.evecs = jnp.asarray(evecs, jnp.float32)

  @classmethod
  def random(cls, d, seed=0, correlated=True):
    rs = np.random.RandomState(seed)
    mu = rs.uniform(-1., 1., d)
    var = rs.uniform(0.3, 1.5, d)
    q = np.linalg.qr(rs.randn(d, d))[0] if correlated else np.eye(d)
    return cls(mu, (q * var) @ q.T)

  def sample(self, rng, n):
    chol = jnp.linalg.cholesky(self.cov)
    return self.mu + jax.random.normal(rng, (n, self.d)) @ chol.T

  def marginal(self, sde, t):
    s, sigma = sde.scale(t), sde.sigma(t)
    return s * self.mu, s ** 2 * (self.cov + sigma ** 2 * jnp.eye(self.d))

  def score_fn(self, sde):
    """(x [B, d], t [B]) -> exact ∇ log p_t(x)."""
    def score(x, t, rng=None):
      del rng   # −(s²(Σ + σ²I))⁻¹ (x − sμ), by the eigendecomposition (no solver in loops)
      s, sigma = sde.scale(t)[:, None], sde.sigma(t)[:, None]
      inv = 1. / (s ** 2 * (self.evals + sigma ** 2))
      return -((x - s * self.mu) @ self.evecs * inv) @ self.evecs.T
    return score

  def logpdf(self, x, cov=None):
    cov = self.cov if cov is None else cov
    diff = x - self.mu
    _, logdet = jnp.linalg.slogdet(cov)
    maha = jnp.sum(diff * jnp.linalg.solve(cov, diff.T).T, axis=-1)
    return -0.5 * (maha + logdet + self.d * np.log(2 * np.pi))

  def denoiser(self, x, sigma):
    """Ideal denoiser E[y | y + σ n = x] for x [B, d], sigma [B] (Karras+22 Eq. 3)."""
    sigma = jnp.broadcast_to(sigma, x.shape[:1])[:, None]
    shrink = self.evals / (self.evals + sigma ** 2)                 # Σ (Σ + σ²I)⁻¹ in Q's basis
    return self.mu + ((x - self.mu) @ self.evecs * shrink) @ self.evecs.T


class Mixture1D:
  """Σ_k w_k N(mu_k, var_k) on the real line; samples have shape [B, 1]."""

  def __init__(self, weights, mus, variances):
    self.w = jnp.asarray(weights, jnp.float32)
    self.mu = jnp.asarray(mus, jnp.float32)
    self.var = jnp.asarray(variances, jnp.float32)

  def logp_t(self, sde, x, t):
    s, sigma = sde.scale(t), sde.sigma(t)
    var = s ** 2 * (self.var + sigma ** 2)
    comp = -0.5 * ((x - s * self.mu) ** 2 / var + jnp.log(2 * np.pi * var))
    return logsumexp(jnp.log(self.w) + comp)

  def score_fn(self, sde):
    grad = jax.grad(self.logp_t, argnums=1)
    def score(x, t, rng=None):
      del rng
      return jax.vmap(lambda xi, ti: grad(sde, xi[0], ti)[None])(x, t)
    return score
