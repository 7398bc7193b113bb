"""model.remat and training.grad_accum are exact: the loss, gradients and parameters are those
without them (models.utils.remat and micro_batched, losses.make_train_step), and they save
activation memory."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quicktest
import losses
from models import utils as mutils
import sde_lib

REMAT_CASES = {                 # a config per block family; dropout stays on (0.1)
    'ncsnpp_biggan': 'configs.ve.cifar10_ncsnpp_continuous',
    'ddpm': 'configs.ve.cifar10_ddpm',
    'adm': 'configs.edm.imagenet64_adm_cond',
    'ncsnv2': 'configs.ve.ncsnv2.cifar10',
}


def _config(module, **fields):
  config = quicktest.shrink(importlib.import_module(module).get_config())
  if config.model.name == 'adm':        # 64 channels: one attention head
    config.model.nf, config.model.ch_mult = 64, (1, 2)
  for name, value in fields.items():
    section, field = name.split('__')
    setattr(getattr(config, section), field, value)
  return config


def _inputs(config, n=4):
  size, channels = config.data.image_size, config.data.num_channels
  x = jax.random.uniform(jax.random.key(1), (n, size, size, channels))
  if config.model.name.startswith('ncsnv2'):
    labels = jnp.arange(n) % config.model.num_scales
  else:
    labels = jnp.linspace(0.2, 0.8, n)
  cond = None
  if config.model.class_conditional:
    cond = {'class_labels': jax.nn.one_hot(jnp.arange(n) % 3, config.data.num_classes)}
  return x, labels, cond


def _loss_and_grads(config, params):
  model = mutils.get_model(config)
  x, labels, cond = _inputs(config)
  cot = jnp.cos(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape)
  def loss(p):
    out = mutils.get_model_fn(model, p, train=True, cond=cond)(x, labels, jax.random.key(2))
    return jnp.sum(out * cot)
  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize('case', sorted(REMAT_CASES))
def test_remat_gives_the_same_loss_and_gradients(case):
  plain = _config(REMAT_CASES[case])
  _, params = mutils.init_model(jax.random.key(0), plain)
  loss, grads = _loss_and_grads(plain, params)
  for policy in ('full', 'dots_saveable'):
    remat = _config(REMAT_CASES[case], model__remat=policy)
    assert (jax.tree.structure(mutils.init_model(jax.random.key(0), remat)[1])
            == jax.tree.structure(params))                           # the same parameter names
    loss_r, grads_r = _loss_and_grads(remat, params)
    # measured: identical on XLA:CPU; bounds for other backends' fusion choices
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6, atol=1e-7)
    for g_r, g in zip(jax.tree.leaves(grads_r), jax.tree.leaves(grads)):
      np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-7)


def test_remat_saves_activation_memory():
  config = _config(REMAT_CASES['ncsnpp_biggan'], data__image_size=16)
  _, params = mutils.init_model(jax.random.key(0), config)
  def temp_bytes(remat):
    config.model.remat = remat
    model = mutils.get_model(config)
    x, labels, _ = _inputs(config, n=16)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(mutils.get_model_fn(model, p)(x, labels) ** 2)))
    return grad.lower(params).compile().memory_analysis().temp_size_in_bytes
  assert temp_bytes('full') < 0.8 * temp_bytes('none')


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


ACCUM_CASES = {
    'edm': ('configs.edm.cifar10_ddpmpp', {}),
    'cond_augment': ('configs.edm.cifar10_ddpmpp_cond',
                     {'training__augment_p': 0.5, 'model__augment_dim': 9}),
    'patches': ('configs.edm.cifar10_ddpmpp',
                {'training__patch_real_p': 0.5, 'model__patch_coords': True}),
}


def _train(config, params, batch, grad_accum):
  sde, _ = sde_lib.get_sde(config)
  model, optimizer = mutils.get_model(config), losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                        losses.get_ema_rate(config), grad_accum))
  return step(losses.init_train_state(params, optimizer), batch, jax.random.key(5))


@pytest.mark.parametrize('case', sorted(ACCUM_CASES))
def test_grad_accum_gives_the_loss_and_parameters_of_the_whole_batch(case):
  """Three steps of batch 8 as 2 micro-batches of 4 equal them as one batch of 8 (dropout off:
  its masks are drawn per micro-batch)."""
  module, fields = ACCUM_CASES[case]
  config = _config(module, model__dropout=0., training__batch_size=8, **fields)
  config.optim.warmup, config.optim.lr_rampup_kimg = 0, 0.   # full steps from the first
  _, params = mutils.init_model(jax.random.key(0), config)
  images = jax.random.uniform(jax.random.key(3), (3, 8, 8, 8, 3), minval=-1., maxval=1.)
  batch = images
  if config.model.class_conditional:
    batch = {'image': images, 'class_labels': jax.nn.one_hot(
        jnp.arange(24).reshape(3, 8) % 10, config.data.num_classes)}
  whole, metrics = _train(config, params, batch, 1)
  accumulated, metrics_2 = _train(config, params, batch, 2)
  # measured max differences: loss ≤ 3e-7 relative, parameters ≤ 2e-7 (float32 summation order)
  np.testing.assert_allclose(metrics_2['loss'], metrics['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
