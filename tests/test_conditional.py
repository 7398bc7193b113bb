"""Class-conditional networks (EDM --cond), label dropout, classifier-free guidance, per-seed classes.

Truth we did not write: SongUNet's label map, temb + W (√K one-hot) + b (NVlabs/edm
training/networks.py), checked by moving W √K e_c into the bias; Ho&Salimans22 Eq. 6 from
separate network calls; and a learned check: a tiny model trained on two classes whose images
are constants of opposite sign samples each class's constant.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default_lib
import datasets
import losses
from models import utils as mutils
import sampling
import sde_lib
from streams import sample_keys

K = 10


def _config(**model):
  config = default_lib.get_base_config()
  config.data.update(image_size=8, num_channels=1, centered=True, num_classes=K)
  config.model.update(name='ncsnpp', precond='edm', embedding_type='positional',
                      scale_by_sigma=False, nf=16, ch_mult=(1, 2), num_res_blocks=1,
                      attn_resolutions=(4,), dropout=0., class_conditional=True)
  config.model.update(model)
  config.training.update(sde='edm', loss='edm', reduce_mean=True)
  config.sampling.update(method='edm', steps=6)
  return config


@pytest.fixture(scope='module')
def net():
  config = _config(label_dropout=0.5)
  model, params = mutils.init_model(jax.random.key(0), config)
  leaves, tree = jax.tree.flatten(params)    # random weights: DDPM's init zeroes the output
  keys = jax.random.split(jax.random.key(9), len(leaves))
  params = tree.unflatten([p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
  labels = jnp.linspace(-1., 1., 6)
  return config, model, params, x, labels


def _apply(model, params, x, labels, onehot, train=False, rng=None):
  return _jitted(model, train)(params, x, labels, onehot, rng)


_JITTED = {}


def _jitted(model, train):
  if (id(model), train) not in _JITTED:
    _JITTED[id(model), train] = jax.jit(lambda params, x, labels, onehot, rng: mutils.get_model_fn(
        model, params, train=train, cond={'class_labels': onehot})(x, labels, rng))
  return _JITTED[id(model), train]


def test_label_map_is_songunets(net):
  """F(x; e_c) with bias b equals F(x; null label) with bias b + W √K e_c."""
  config, model, params, x, labels = net
  assert params['label_embed']['kernel'].shape == (K, 16)   # [classes, noise-embedding width]
  params = jax.tree.map(lambda p: p, params)
  params['label_embed']['bias'] = jax.random.normal(jax.random.key(2), (16,))
  classes = jnp.array([0, 3, 3, 9, 1, 7])
  onehot = mutils.class_onehot(config, classes)
  moved = jax.tree.map(lambda p: p, params)
  shift = params['label_embed']['kernel'][classes] * np.sqrt(K)     # one row per sample
  for i, c in enumerate(np.asarray(classes)):
    moved['label_embed']['bias'] = params['label_embed']['bias'] + shift[i]
    null = _apply(model, moved, x[i:i + 1], labels[i:i + 1], jnp.zeros((1, K)))
    np.testing.assert_allclose(_apply(model, params, x[i:i + 1], labels[i:i + 1], onehot[i:i + 1]),
                               null, rtol=1e-4, atol=1e-4, err_msg=f'class {c}')
  outs = _apply(model, params, jnp.repeat(x[:1], 3, 0), jnp.repeat(labels[:1], 3),
                mutils.class_onehot(config, jnp.array([0, 1, -1])))
  assert float(jnp.abs(outs[0] - outs[1]).max()) > 0.1       # the class changes the output
  assert float(jnp.abs(outs[0]).max()) > 0.1
  np.testing.assert_array_equal(mutils.class_onehot(config, jnp.array([-1]))[0], np.zeros(K))


def test_label_dropout_drops_whole_rows_at_its_rate(net):
  config, model, params, x, labels = net
  n = 400
  xs, ls = jnp.repeat(x[:1], n, 0), jnp.repeat(labels[:1], n)
  onehot = mutils.class_onehot(config, jnp.full((n,), 4))
  cond = _apply(model, params, xs[:1], ls[:1], onehot[:1])
  null = _apply(model, params, xs[:1], ls[:1], jnp.zeros((1, K)))
  out = _apply(model, params, xs, ls, onehot, train=True, rng=jax.random.key(5))
  assert float(jnp.abs(cond - null).max()) > 0.1
  is_null = np.asarray(jnp.abs(out - null).max(axis=(1, 2, 3)) < 1e-4)
  is_cond = np.asarray(jnp.abs(out - cond).max(axis=(1, 2, 3)) < 1e-4)
  assert np.all(is_null ^ is_cond)                  # each sample: all of its label, or none
  assert abs(is_null.mean() - 0.5) < 3 * np.sqrt(0.25 / n), is_null.mean()
  np.testing.assert_allclose(_apply(model, params, xs[:4], ls[:4], onehot[:4]),
                             jnp.repeat(cond, 4, 0), atol=1e-4)   # no dropout when not training


def test_guidance_is_ho_salimans_eq_6(net):
  config, model, params, x, labels = net
  keys = sample_keys(jax.random.key(3), 6)
  onehot = mutils.class_onehot(config, sampling.class_labels(config, keys))
  f_class = _apply(model, params, x, labels, onehot)
  f_null = _apply(model, params, x, labels, jnp.zeros_like(onehot))
  for w in (0., 1., 3.):
    config.sampling.guidance = w
    out = jax.jit(sampling.conditional_model_fn(config, model, params, keys))(x, labels)
    np.testing.assert_allclose(out, f_null + w * (f_class - f_null), rtol=1e-4, atol=1e-5)
  config.sampling.guidance = 1.


def test_classes_depend_only_on_the_seed_and_are_uniform():
  config = _config()
  keys = sample_keys(jax.random.key(4), 2000)
  every = np.asarray(sampling.class_labels(config, keys))
  parts = np.concatenate([sampling.class_labels(config, keys[i:i + 4]) for i in range(0, 16, 4)])
  np.testing.assert_array_equal(parts, every[:16])
  counts = np.bincount(every, minlength=K)
  chi2 = ((counts - 200.) ** 2 / 200.).sum()
  assert chi2 < 27.9, counts                        # χ²(9) 99.9% quantile
  config.sampling.class_label = 7
  np.testing.assert_array_equal(sampling.class_labels(config, keys[:5]), [7] * 5)


@pytest.mark.slow   # ~50 s of training
def test_two_constant_classes_are_learned_and_sampled():
  """Class 0 images are −0.6 everywhere, class 1 images +0.6: the ideal conditional denoiser
  returns the class constant, so a trained model samples ~ ±0.6 for each requested class."""
  config = _config(nf=16, ch_mult=(1,), attn_resolutions=(), num_res_blocks=1)
  config.data.num_classes = 2
  config.optim.update(lr=2e-3, warmup=0, grad_clip=-1.)
  sde, eps = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  optimizer = losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer, 0.))
  state = losses.init_train_state(params, optimizer)
  classes = np.tile([0, 1], 8)
  batch = {'image': jnp.asarray(np.where(classes == 0, -0.6, 0.6)[None, :, None, None, None]
                                * np.ones((1, 16, 8, 8, 1)), jnp.float32),
           'class_labels': jnp.eye(2)[classes][None]}
  for _ in range(300):
    state, _ = step(state, batch, jax.random.key(1))
  means = []
  for c in (0, 1):
    config.sampling.class_label = c
    sample_fn = sampling.get_sampling_fn(config, sde, model, (8, 8, 1), lambda v: v, eps)
    means.append(float(sample_fn(sample_keys(jax.random.key(2), 8), state.ema_params)[0].mean()))
  assert means[0] < -0.4 and means[1] > 0.4, means


def test_errors_name_the_problem(net):
  """Missing labels at call time and labels the data lack (config combinations: test_validate)."""
  config, model, params, *_ = net
  with pytest.raises(ValueError, match='class labels'):
    mutils.get_model_fn(model, params)(jnp.zeros((1, 8, 8, 1)), jnp.ones((1,)))
  with pytest.raises(ValueError, match='has no labels'):
    datasets.check_labels(config, np.array([0, -1]))
  with pytest.raises(ValueError, match='labels up to 10'):
    datasets.check_labels(config, np.array([0, 10]))
