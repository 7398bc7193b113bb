"""Losses against their minimisers: the true score (or noise predictor) of Gaussian data."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import losses
from configs import default_lib
import sde_lib
from closed_form import Gaussian

DATA = Gaussian.random(8, seed=2)
X = DATA.sample(jax.random.key(1), 1 << 15)


def _grad_at(loss_of_scale, c):
  return float(jax.grad(loss_of_scale)(c))


def _check_minimised_at_one(loss_of_scale):
  """d loss / d c is ~0 at the true score (c = 1) and clearly negative at c = 0.5."""
  g1, g_half = _grad_at(loss_of_scale, 1.), _grad_at(loss_of_scale, 0.5)
  assert g_half < 0
  assert abs(g1) < 0.03 * abs(g_half), (g1, g_half)


@pytest.mark.parametrize('name', ['ve', 'vp', 'subvp'])
@pytest.mark.parametrize('likelihood_weighting', [False, True])
def test_dsm_is_minimised_by_the_true_score(name, likelihood_weighting):
  sde = {'ve': sde_lib.VESDE(0.01, 50.), 'vp': sde_lib.VPSDE(), 'subvp': sde_lib.subVPSDE()}[name]
  score = DATA.score_fn(sde)
  rng = jax.random.key(3)
  def loss_of_scale(c):
    return losses.dsm_loss(rng, lambda x, t, r: c * score(x, t), sde, X, reduce_mean=True,
                           likelihood_weighting=likelihood_weighting)
  _check_minimised_at_one(loss_of_scale)


def test_smld_is_minimised_by_the_true_score():
  sde = sde_lib.VESDE(0.01, 50., 10)
  sigmas = sde.discrete_sigmas[::-1]
  def model_fn(x, labels, rng):   # exact score of N(μ, Σ + σ_label² I)
    return DATA.score_fn(sde)(x, sde.sigma_inv(sigmas[labels]))
  rng = jax.random.key(4)
  _check_minimised_at_one(
      lambda c: losses.smld_loss(rng, lambda x, l, r: c * model_fn(x, l, r), sde, X))


def test_ddpm_is_minimised_by_the_true_noise_predictor():
  sde = sde_lib.VPSDE(0.1, 20., 1000)
  def model_fn(x, labels, rng):   # ε̂ = −sqrt(1 − ᾱ) ∇log p of N(sqrt(ᾱ)μ, ᾱΣ + (1 − ᾱ) I)
    abar = sde.alphas_cumprod[labels]
    def one(xi, a):
      cov = a * DATA.cov + (1 - a) * jnp.eye(DATA.d)
      return jnp.sqrt(1 - a) * jnp.linalg.solve(cov, xi - jnp.sqrt(a) * DATA.mu)
    return jax.vmap(one)(x, abar)
  rng = jax.random.key(5)
  _check_minimised_at_one(
      lambda c: losses.ddpm_loss(rng, lambda x, l, r: c * model_fn(x, l, r), sde, X))


def _config(**optim):
  config = default_lib.get_base_config()
  config.optim.update(dict(lr=1e-2, warmup=4, grad_clip=1.))
  config.optim.update(optim)
  config.training.update(dict(loss='dsm', continuous=True, likelihood_weighting=False,
                              reduce_mean=True))
  return config


def test_optimizer_warmup_follows_lr_min_step_over_warmup():
  opt = losses.get_optimizer(_config())
  params = {'w': jnp.zeros(3)}
  state = opt.init(params)
  for step in range(7):
    # A constant gradient makes Adam's normalised step exactly 1, so the update is −lr_t.
    updates, state = opt.update({'w': jnp.full(3, 0.3)}, state, params)
    np.testing.assert_allclose(updates['w'], -1e-2 * min(step / 4, 1.), rtol=1e-4, atol=1e-9)


def test_cosine_decay_multiplies_the_warmup_by_sgdr_eq5():
  """lr_t = lr · min(t / warmup, 1) · ½(1 + cos(π · min(t / n_iters, 1))) (Loshchilov&Hutter17
  Eq. 5, η_min = 0): 0 at n_iters and after."""
  config = _config(lr_decay='cosine')
  config.training.n_iters = 10
  opt = losses.get_optimizer(config)
  params = {'w': jnp.zeros(3)}
  state = opt.init(params)
  for step in range(13):
    updates, state = opt.update({'w': jnp.full(3, 0.3)}, state, params)
    lr = 1e-2 * min(step / 4, 1.) * 0.5 * (1 + np.cos(np.pi * min(step / 10, 1.)))
    np.testing.assert_allclose(updates['w'], -lr, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize('grad_clip', [1., -1.])
def test_optimizer_clips_the_global_norm_before_adam(grad_clip):
  """Two Adam steps by hand (Kingma&Ba15 Alg. 1) on clipped (norm ≤ 1) or raw gradients."""
  opt = losses.get_optimizer(_config(warmup=0, grad_clip=grad_clip))
  params = {'a': jnp.zeros(2)}
  state = opt.init(params)
  g1, g2 = np.array([3., 4.]), np.array([0.3, 0.4])
  for g in (g1, g2):
    updates, state = opt.update({'a': jnp.asarray(g)}, state, params)
  g1 = g1 / 5. if grad_clip > 0 else g1          # ‖g1‖ = 5 → clipped to norm 1; ‖g2‖ < 1
  m = 0.9 * 0.1 * g1 + 0.1 * g2
  v = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2
  expected = -1e-2 * (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
  np.testing.assert_allclose(updates['a'], expected, rtol=1e-4)  # float32 Adam


def test_unknown_loss_and_inconsistent_config_fail_clearly():
  config = _config()
  config.training.loss = 'dms'
  with pytest.raises(KeyError, match='ddpm, dsm'):
    losses.get_loss_fn(config, sde_lib.VPSDE())


class _Linear(nn.Module):
  """out = w · x + b(label): a tiny stand-in network with a known gradient path."""
  config: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, x, labels, train=False):
    w = self.param('w', nn.initializers.constant(0.5), (x.shape[-1],))
    return x * w + jnp.sin(labels)[:, None]


def test_scanned_train_step_equals_single_steps_and_ema_formula():
  config = _config(warmup=0)
  sde = sde_lib.VPSDE()
  model = _Linear(config)
  params = {'w': jnp.asarray(np.full(8, 0.5, np.float32))}   # not weakly typed, as real params
  opt = losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), opt, 0.9))
  batch = X[:3 * 16].reshape(3, 16, 8)
  rng = jax.random.key(0)
  fused, metrics = step(losses.init_train_state(params, opt), batch, rng)
  state = losses.init_train_state(params, opt)
  curve = []
  for k in range(3):   # the same steps one call each
    single = losses.make_train_step(model, losses.get_loss_fn(config, sde), opt, 0.9)
    state, m = single(state, batch[k:k + 1], rng)
    curve.append(float(m['loss'][0]))
  np.testing.assert_allclose(metrics['loss'], curve, rtol=1e-5)
  np.testing.assert_allclose(fused.params['w'], state.params['w'], rtol=1e-5)
  assert int(fused.step) == 3
  # EMA: ema ← 0.9 · ema + 0.1 · params after every step
  ema = params['w']
  replay = losses.init_train_state(params, opt)
  for k in range(3):
    replay, _ = single(replay, batch[k:k + 1], rng)
    ema = 0.9 * ema + 0.1 * replay.params['w']
  np.testing.assert_allclose(fused.ema_params['w'], ema, rtol=1e-6)
  # Compiled once: three more calls reuse the same executable.
  for _ in range(3):
    fused, _ = step(fused, batch, rng)
  assert step._cache_size() == 1


def _steps(config, params, unravel=None, n=3):
  """(final state, losses) of n train steps of `config` on digits-like noise, the state laid out
  flat when `unravel` is given (its params then a FlatParams vector)."""
  from models import utils as mutils   # pylint: disable=import-outside-toplevel
  sde, _ = sde_lib.get_sde(config)
  model, optimizer = mutils.get_model(config), losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                        losses.get_ema_rate(config), unravel=unravel))
  state, curve = losses.init_train_state(params, optimizer), []
  shape = (n, 1, 2, config.data.image_size, config.data.image_size, config.data.num_channels)
  images = jax.random.uniform(jax.random.key(3), shape, minval=-1., maxval=1.)
  for batch in images:
    state, metrics = step(state, batch, jax.random.key(5))
    curve.append(float(metrics['loss'][0]))
  return state, np.array(curve)


@pytest.mark.parametrize('name', ['ve/cifar10_ncsnpp_continuous', 'edm/cifar10_ddpmpp'])
def test_a_flat_train_state_steps_as_the_tree(name):
  """Three steps with dropout (and for NCSN++ warm-up and gradient clipping) on the state laid
  out flat (losses.FlatParams) and as trees: the same losses, and parameters, EMA and Adam
  moments to float rounding (clipping's global norm sums in another order)."""
  import importlib   # pylint: disable=import-outside-toplevel
  from configs import quicktest   # pylint: disable=import-outside-toplevel
  from models import utils as mutils   # pylint: disable=import-outside-toplevel
  config = quicktest.shrink(importlib.import_module('configs.' + name.replace('/', '.'))
                            .get_config())
  config.optim.warmup = min(config.optim.warmup, 2)
  params = mutils.init_model(jax.random.key(0), config)[1]
  layout = losses.FlatParams.of(params)
  tree, curve = _steps(config, params)
  flat, flat_curve = _steps(config, layout.ravel(params), layout.unravel)
  np.testing.assert_allclose(flat_curve, curve, rtol=1e-6)
  size = sum(p.size for p in jax.tree.leaves(params))
  assert flat.params.shape == (-(-size // 128), 128)      # rows of 128
  for part in (flat.params, flat.ema_params, *jax.tree.leaves(flat.opt_state)):   # padding stays 0
    if part.shape == flat.params.shape:
      np.testing.assert_array_equal(part.reshape(-1)[size:], 0.)
  back = layout.tree(flat, tree)
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
  # laying a state out flat and back changes nothing
  again = layout.tree(layout.flat(tree), tree)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(a, b)


def test_flat_params_leave_other_trees_of_the_same_structure_alone():
  """Only parameter-shaped subtrees are laid out flat: a per-leaf scalar tree of the same
  structure (e.g. an optimizer's per-parameter settings) stays a tree."""
  params = {'a': jnp.ones(3), 'b': jnp.ones((2, 2))}
  layout = losses.FlatParams.of(params)
  state = {'params': params, 'moment': params, 'per_leaf': {'a': jnp.ones(()), 'b': jnp.ones(())}}
  flat = layout.flat(state)
  assert flat['params'].shape == flat['moment'].shape == (1, 128)    # rows of 128, zero-padded
  np.testing.assert_array_equal(flat['params'][0, 7:], 0.)
  assert jax.tree.structure(flat['per_leaf']) == jax.tree.structure(state['per_leaf'])
  back = layout.tree(flat, state)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_flat_params_need_one_dtype():
  assert losses.FlatParams.of({'a': jnp.zeros(3), 'b': jnp.zeros((2, 2))}).shapes == ((3,), (2, 2))
  assert losses.FlatParams.of({'a': jnp.zeros(3), 'b': jnp.zeros(2, jnp.bfloat16)}) is None
