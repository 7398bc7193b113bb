"""model.remat and training.grad_accum are exact: the loss, gradients and parameters are those
without them (models.utils.remat and micro_batched, losses.make_train_step), and the forward pass
keeps fewer activations for the backward pass.

Memory is measured as the residuals of `jax.vjp` (what JAX keeps from the forward pass for the
backward pass), which needs no compilation and does not depend on the backend: XLA:CPU's
`memory_analysis()` does not reflect rematerialisation (a 16-layer MLP: 66 MiB of temporaries
without jax.checkpoint, 96 MiB with it).
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quicktest
from configs.quickstart import digits
import losses
from models import utils as mutils
import sde_lib

FAMILIES = {                    # a config per block family (quicktest.shrink of each)
    'ncsnpp_biggan': 'configs.ve.cifar10_ncsnpp_continuous',
    'ddpmpp': 'configs.vp.cifar10_ddpmpp_continuous',
    'ddpm': 'configs.ve.cifar10_ddpm',
    'adm': 'configs.edm.imagenet64_adm_cond',
    'ncsn': 'configs.ve.ncsn.cifar10',
    'ncsnv2': 'configs.ve.ncsnv2.cifar10',
}


def _shrunk(module, remat='none'):
  config = quicktest.shrink(importlib.import_module(module).get_config())
  if config.model.name == 'adm':        # 64 channels: attention with one head
    config.model.nf, config.model.ch_mult = 64, (1, 2)
  config.model.remat = remat
  return config


def _small(**fields):
  """The digits quickstart with one level of one block and attention, width 16."""
  config = digits.get_config()
  m = config.model
  m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions = 16, (1,), 1, (8,)
  for name, value in fields.items():
    section, field = name.split('__')
    setattr(getattr(config, section), field, value)
  return config


def _inputs(config, n):
  size, channels = config.data.image_size, config.data.num_channels
  x = jax.random.uniform(jax.random.key(1), (n, size, size, channels))
  if config.model.name.startswith('ncsn') and config.model.name != 'ncsnpp':
    labels = jnp.arange(n) % config.model.num_scales       # RefineNets: noise indices
  else:
    labels = jnp.linspace(0.2, 0.8, n)
  cond = None
  if config.model.class_conditional:
    cond = {'class_labels': jax.nn.one_hot(jnp.arange(n) % 3, config.data.num_classes)}
  return x, labels, cond


def _objective(config, n=8, micro_batches=1):
  """(abstract parameters, params -> a scalar of the network's output in training mode)."""
  model = mutils.get_model(config)
  x, labels, cond = _inputs(config, n)
  init_kw = {'cond': jax.tree.map(lambda a: a[:1], cond)} if cond else {}
  params = jax.eval_shape(lambda: model.init(
      {'params': jax.random.key(0), 'dropout': jax.random.key(0)}, x[:1], labels[:1],
      **init_kw)['params'])
  cot = jnp.cos(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape)
  def objective(p):
    model_fn = mutils.get_model_fn(model, p, train=True, cond=cond, micro_batches=micro_batches)
    return jnp.sum(model_fn(x, labels, jax.random.key(2)) * cot)
  return params, objective


def _kept_bytes(objective, params):
  """Bytes of the activations the forward pass keeps for the backward pass: the residuals of
  jax.vjp, less the parameters (which every variant keeps)."""
  residuals = jax.eval_shape(lambda p: jax.vjp(objective, p)[1], params)
  size = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
  return size(residuals) - size(params)


SLOW_FAMILIES = {'adm', 'ncsn', 'ncsnv2'}   # ~35 s together; the default run keeps three families


@pytest.mark.parametrize('family', [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAMILIES
                                    else f for f in sorted(FAMILIES)])
def test_remat_wraps_every_block_and_keeps_fewer_activations(family):
  """Traced only. Measured kept activations, remat full / dots_saveable vs none: ncsnpp 14% /
  26%, ddpm 19% / 31%, adm 7% / 23%, ncsn 5% / 18%, ncsnv2 8% / 27%."""
  kept = {}
  for remat in ('none', 'full', 'dots_saveable'):
    params, objective = _objective(_shrunk(FAMILIES[family], remat))
    if remat == 'none':
      plain_params = params
    assert jax.tree.structure(params) == jax.tree.structure(plain_params)   # same names
    kept[remat] = _kept_bytes(objective, params)
  assert kept['full'] < 0.3 * kept['none'], kept
  assert kept['full'] < kept['dots_saveable'] < 0.5 * kept['none'], kept


def test_remat_gives_the_same_loss_and_gradients():
  config = _small(model__dropout=0.1)          # dropout on: the recomputation redraws it equally
  params = mutils.init_model(jax.random.key(0), config)[1]
  results = {}
  for remat in ('none', 'full'):
    config.model.remat = remat
    results[remat] = jax.jit(jax.value_and_grad(_objective(config, n=16)[1]))(params)
  (loss, grads), (loss_r, grads_r) = results['none'], results['full']
  # measured on XLA:CPU: the same loss, gradients within 5e-11 (fusion order)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  for g_r, g in zip(jax.tree.leaves(grads_r), jax.tree.leaves(grads)):
    np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-8)


def test_micro_batched_keeps_every_row_in_place():
  calls = []
  def row_fn(x, labels, rng, extra):
    del rng
    calls.append(x.shape[0])
    return x * labels[:, None] + extra['a']
  x = jnp.arange(24.).reshape(8, 3)
  labels, extra = jnp.arange(8.), {'a': jnp.arange(24.).reshape(8, 3) ** 2}
  want = row_fn(x, labels, None, extra)
  for k in (2, 4):
    calls.clear()
    out = mutils.micro_batched(row_fn, k)(x, labels, jax.random.key(0), extra)
    assert calls and set(calls) == {8 // k}           # traced once per micro-batch shape
    np.testing.assert_array_equal(out, want)


def test_micro_batches_keep_only_their_inputs():
  """Traced only: with grad_accum = 2 the forward pass keeps (almost) no activations; the
  backward pass recomputes one micro-batch at a time."""
  params, plain = _objective(_small(), n=16)
  _, accumulated = _objective(_small(), n=16, micro_batches=2)
  assert _kept_bytes(accumulated, params) < 0.05 * _kept_bytes(plain, params)


def _train(config, params, batches, grad_accum):
  sde, _ = sde_lib.get_sde(config)
  model, optimizer = mutils.get_model(config), losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                        losses.get_ema_rate(config), grad_accum))
  state, curve = losses.init_train_state(params, optimizer), []
  for batch in batches:
    state, metrics = step(state, batch, jax.random.key(5))
    curve.append(float(metrics['loss'][0]))
  return state, np.array(curve)


@pytest.mark.slow   # ~40 s on 2 cores
def test_grad_accum_gives_the_loss_and_parameters_of_the_whole_batch():
  """Three steps of 16 class-labelled digits (the labels go to the micro-batches with their
  rows), as one batch and as 2 micro-batches of 8. Dropout is off: its masks are drawn per
  micro-batch."""
  config = _small(model__dropout=0., model__class_conditional=True, training__batch_size=16)
  config.optim.warmup = 0                        # full Adam steps from the first
  params = mutils.init_model(jax.random.key(0), config)[1]
  images = jax.random.uniform(jax.random.key(3), (3, 1, 16, 8, 8, 1), minval=-1., maxval=1.)
  onehot = jax.nn.one_hot(jnp.arange(48).reshape(3, 1, 16) % 10, 10)
  batches = [{'image': i, 'class_labels': c} for i, c in zip(images, onehot)]
  whole, curve = _train(config, params, batches, 1)
  accumulated, curve_2 = _train(config, params, batches, 2)
  # measured (k = 2 and 4): the same losses, parameters within 3e-6 of k = 1's, which moved by up
  # to 6e-3 (Adam's normalised steps amplify the summation-order differences of tiny gradients)
  np.testing.assert_allclose(curve_2, curve, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
