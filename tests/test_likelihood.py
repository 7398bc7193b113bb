"""Probability-flow likelihoods with the exact score against the Gaussian log-density, by
likelihood.py and by --mode=eval's bits/dim path (eval_lib); and bits/dim of a score_sde_pytorch
file against its own likelihood_fn (tools/make_likelihood_fixture.py)."""
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quicktest
import datasets
import eval_lib
import likelihood
from models import precond, utils as mutils
import run_lib
import sde_lib
from closed_form import Gaussian
import published_cases
from streams import sample_keys

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


# ------------------------------------------------------------------------------------------------
# Bits/dim through --mode=eval's path (eval_lib.eval_bpd) with the network replaced by the exact
# score of a Gaussian on images

EVAL_CONFIGS = {'ve': 've.cifar10_ncsnpp_continuous', 'vp': 'vp.cifar10_ddpmpp_continuous',
                'subvp': 'subvp.cifar10_ddpmpp_continuous'}


def _image_gaussian(d):
  """A diagonal Gaussian whose variances span 1e-5..1e-2, as fine as 8-bit levels: VP's σ² is
  1e-6 at t = 1e-5 and 1e-4 at t = 1e-3 (its sampling eps), which it tells apart clearly."""
  rs = np.random.RandomState(0)
  return Gaussian(rs.uniform(-0.5, 0.5, d), np.diag(np.exp(rs.uniform(np.log(1e-5), np.log(1e-2),
                                                                      d))))


def _closed_form_bpd(data, sde, x, t, offset):
  """−log p_t(x) / (D ln 2) + offset, p_t = N(s μ, s² (Σ + σ² I)) (Karras+22 Eq. 10–11)."""
  t = jnp.float32(t)
  s, sigma = float(sde.scale(t)), float(sde.sigma(t))
  var = s ** 2 * (np.diag(np.asarray(data.cov, np.float64)) + sigma ** 2)
  logp = -0.5 * np.sum((x - s * np.asarray(data.mu)) ** 2 / var + np.log(2 * np.pi * var), -1)
  return -logp / (data.d * np.log(2.)) + offset


def _eval_path_bpd(name, tmp_path, monkeypatch, likelihood_eps=None):
  """(bits/dim per image from eval_lib.eval_bpd, closed-form bpd at t = 1e-5 and at t = 1e-3,
  the sampling eps) for 32 Gaussian images of a shrunk config of SDE `name`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel   # slow; only here
  config = quicktest.shrink(importlib.import_module(f'configs.{EVAL_CONFIGS[name]}').get_config())
  config.eval.batch_size, config.eval.bpd_num_repeats = 16, 1
  if likelihood_eps is not None:
    config.eval.likelihood_eps = likelihood_eps
  run = run_lib.build(config)
  data = _image_gaussian(int(np.prod(run.sample_shape)))
  y = np.asarray(data.sample(jax.random.key(0), 32)).reshape((32,) + run.sample_shape)
  images = np.asarray(datasets.get_data_inverse_scaler(config)(y), np.float32)   # as stored
  ds = tf.data.Dataset.from_tensor_slices({'image': images, 'label': np.zeros(32, np.int32)})
  ds = ds.batch(16, drop_remainder=True)
  monkeypatch.setattr(datasets, 'get_dataset', lambda *args, **kwargs: (ds, ds))
  score = data.score_fn(run.sde)

  def image_score(x, t, rng=None):
    return score(x.reshape(x.shape[0], -1), t, rng).reshape(x.shape)
  fns = eval_lib.make_eval_fns(run, make_score_fn=lambda params: image_score)
  scalars, arrays = eval_lib.eval_bpd(run, fns, {}, eval_lib.Work(str(tmp_path), name))
  assert scalars['bpd'] == pytest.approx(float(np.mean(arrays['bpd'])))
  x = np.asarray(datasets.get_data_scaler(config)(images), np.float64).reshape(32, -1)  # as fed
  offset = likelihood.bpd_offset(datasets.get_data_inverse_scaler(config))
  return arrays['bpd'], *(_closed_form_bpd(data, run.sde, x, t, offset) for t in (1e-5, run.eps))


@pytest.mark.parametrize('name', EVAL_CONFIGS)
def test_eval_bpd_of_the_exact_score_is_the_closed_form_at_eps_1e5(name, tmp_path, monkeypatch):
  """eval.likelihood_eps = 1e-5 (the default) for every SDE: each image's bits/dim is
  −log p_1e-5 / (D ln 2) + 7 or 8 (diagonal Σ: the Rademacher trace estimate is exact).
  Measured max |diff| (bits/dim): VE 1.2e-3, VP 7.9e-4, sub-VP 4.3e-4."""
  bpd, at_1e5, _ = _eval_path_bpd(name, tmp_path, monkeypatch)
  np.testing.assert_allclose(bpd, at_1e5, rtol=0, atol=2e-3)


def test_eval_bpd_integrates_from_likelihood_eps_not_the_sampling_eps(tmp_path, monkeypatch):
  """VP samples down to t = 1e-3; bits/dim start at eval.likelihood_eps, and moving it to 1e-3
  moves the result by the closed form's difference (0.20 bits/dim on average here; measured
  max |diff| against the closed form at 1e-3: 1.3e-3)."""
  bpd, at_1e5, at_1e3 = _eval_path_bpd('vp', tmp_path / 'a', monkeypatch)
  assert np.mean(at_1e3 - at_1e5) > 0.1                     # the two times differ clearly here
  assert np.max(np.abs(bpd - at_1e5)) < 2e-3 < np.min(np.abs(bpd - at_1e3))
  moved, _, _ = _eval_path_bpd('vp', tmp_path / 'b', monkeypatch, likelihood_eps=1e-3)
  np.testing.assert_allclose(moved, at_1e3, rtol=0, atol=2e-3)
  np.testing.assert_allclose(moved - bpd, at_1e3 - at_1e5, rtol=0, atol=3e-3)


LIKELIHOOD = os.path.join(published_cases.ROOT, 'tests', 'fixtures', 'likelihood')


@pytest.mark.parametrize('tol', [1e-5, 1e-8])
@pytest.mark.parametrize('case', ['score_sde_bpd', 'score_sde_bpd_ve'])
def test_bits_per_dim_of_the_official_code(case, tol, monkeypatch):
  """score_sde_pytorch's bits/dim (tools/make_likelihood_fixture.py: its likelihood_fn, RK45) of
  four dequantized images under its VP DDPM++ file (centered data: offset 7) and its VE NCSN++
  file ([0, 1] data: offset 8, VE prior), its Rademacher probe fed to ours: at a tight solve (both
  at 1e-8) equal to 1e-5 bits/dim (≤ 2e-6 measured; integrating from 1e-4 instead of 1e-5 is
  1.3e-4 off, another probe 3e-2); at the paper's rtol = atol = 1e-5 each solver's own error
  apart (theirs moves up to 2e-4 from its 1e-8 value, ours up to 3.6e-4 from it)."""
  ref = np.load(os.path.join(LIKELIHOOD, f'{case}.npz'))
  with open(os.path.join(LIKELIHOOD, f'{case}.json')) as f:
    folder = json.load(f)['checkpoint_case']
  config, model, params, sde = published_cases.network_of(folder)
  make_score_fn = lambda p: precond.get_score_fn(config, sde, mutils.get_model_fn(model, p))
  monkeypatch.setattr(likelihood, 'probes', lambda keys, kind, shape: jnp.asarray(ref['probe']))
  fn = likelihood.get_likelihood_fn(sde, make_score_fn, datasets.get_data_inverse_scaler(config),
                                    rtol=tol, atol=tol, eps=config.eval.likelihood_eps)
  x = datasets.get_data_scaler(config)(jnp.asarray(ref['images']))
  bpd, z, _ = fn(sample_keys(jax.random.key(0), 4), x, params)
  official = ref['bpd_tight' if tol < 1e-5 else 'bpd']
  gap = float(np.abs(np.asarray(bpd) - official).max())
  print(f'{case}, rtol = atol = {tol}: max |bpd - official| = {gap:.2e}; bpd {np.asarray(bpd)}')
  assert gap < (1e-5 if tol < 1e-5 else 1e-3), gap
  if tol < 1e-5:
    np.testing.assert_allclose(np.asarray(z), ref['z_tight'], atol=1e-3 * float(sde.prior_std))
