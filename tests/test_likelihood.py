"""Probability-flow likelihoods with the exact score against the Gaussian log-density."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import likelihood
import sde_lib
from closed_form import Gaussian
from utils import sample_keys

DATA = Gaussian.random(8, seed=4)
SDES = {'ve': lambda: sde_lib.VESDE(0.01, 50.), 'vp': sde_lib.VPSDE, 'subvp': sde_lib.subVPSDE}


def _bpd(data, sde, x, hutchinson_type, seed=1):
  keys = sample_keys(jax.random.key(seed), x.shape[0])
  logp, z, nfe = jax.jit(lambda k, x: likelihood.log_likelihood(
      k, data.score_fn(sde), sde, x, hutchinson_type))(keys, x)
  return likelihood.bits_per_dim(logp, x, offset=0.), z, nfe


@pytest.mark.parametrize('name', SDES)
def test_bpd_is_exact_per_sample_when_the_trace_estimate_is(name):
  """Diagonal covariance: the drift's Jacobian is diagonal, so a Rademacher probe gives the exact
  trace and every sample's bpd must match the closed form."""
  data = Gaussian.random(8, seed=5, correlated=False)
  sde = SDES[name]()
  x = data.sample(jax.random.key(0), 256)
  bpd, z, nfe = _bpd(data, sde, x, 'rademacher')
  exact = likelihood.bits_per_dim(data.logpdf(x), x, offset=0.)
  np.testing.assert_allclose(bpd, exact, rtol=5e-3, atol=5e-3)
  assert 20 < int(nfe) < 1000
  if name != 've':   # the latent is the flow's image at T; for VP-type processes p_T ≈ N(0, I)
    assert abs(float(jnp.mean(jnp.sum(z ** 2, -1))) / data.d - 1.) < 0.2


@pytest.mark.parametrize('hutchinson_type', ['rademacher', 'gaussian'])
@pytest.mark.parametrize('name', SDES)
def test_mean_bpd_matches_the_exact_gaussian(name, hutchinson_type):
  """Correlated covariance: the trace estimator is noisy per sample but unbiased; the mean over
  many solves (512 points × several probes each) is within 0.5% of the exact value.

  Gaussian probes on VE are ~25× noisier per solve (std ≈ 2.9 bits/dim here, against 0.12 for
  Rademacher: their diagonal terms do not cancel and g² is large), hence 2^19 solves there.
  """
  sde = SDES[name]()
  repeats = 1024 if (name, hutchinson_type) == ('ve', 'gaussian') else 16
  x = jnp.tile(DATA.sample(jax.random.key(0), 512), (repeats, 1))
  bpd, _, _ = _bpd(DATA, sde, x, hutchinson_type)
  exact = likelihood.bits_per_dim(DATA.logpdf(x), x, offset=0.)
  assert abs(float(jnp.mean(bpd)) / float(jnp.mean(exact)) - 1.) < 0.005


def test_bpd_offset_for_8_bit_data():
  assert likelihood.bpd_offset(lambda x: (x + 1.) / 2.) == 7.   # centered [−1, 1]
  assert likelihood.bpd_offset(lambda x: x) == 8.               # [0, 1]


def test_uniform_density_gives_the_offset_only():
  """U[0,1)^D has log p = 0: bpd = 8 exactly, i.e. 8 bits per 8-bit pixel."""
  x = jnp.zeros((2, 4, 4, 3))
  np.testing.assert_allclose(likelihood.bits_per_dim(jnp.zeros(2), x, 8.), [8., 8.])


def test_unknown_hutchinson_type_lists_names():
  with pytest.raises(KeyError, match='gaussian, rademacher'):
    likelihood.NOISES.get('normal')
