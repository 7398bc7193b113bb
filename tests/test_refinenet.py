"""NCSN / NCSNv2: parameter counts of the score_sde configs, layers against closed forms, errors.

Expected counts were measured on the official code by abstract evaluation: score_sde's Flax
modules (NCSN with its two bugs fixed, num_classes = num_scales) for `ncsn` and `ncsnv2_*`,
ermongroup/ncsn and ermongroup/ncsnv2 (PyTorch, `sum(p.numel())`) for the `*_torch` layouts
and, again, ncsnv2_128 / ncsnv2_256 (the two codebases agree there).
"""
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from models import normalization, refinenet_layers as rl
from models.utils import count_params, get_model, get_sigmas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# score_sde config file -> parameter count of its model.
CONFIG_COUNTS = {
    've/ncsn/cifar10.py': 34_428_675,        # 10 scales [the official code]
    've/ncsn/cifar10_5.py': 34_428_675,
    've/ncsn/cifar10_124.py': 44_828_931,    # 232 scales
    've/ncsn/cifar10_1245.py': 44_828_931,
    've/ncsn/celeba.py': 34_428_675,
    've/ncsn/celeba_5.py': 34_428_675,
    've/ncsn/celeba_124.py': 57_384_195,     # 500 scales
    've/ncsn/celeba_1245.py': 57_384_195,
    've/ncsnv2/cifar10.py': 33_970_563,      # [the official code]
    've/ncsnv2/celeba.py': 33_970_563,
    've/ncsnv2/bedroom.py': 83_445_379,      # ncsnv2_128 at 128 px
}


def make_config(name, nf=128, image_size=32, num_scales=10, scale_by_sigma=True, centered=False,
                normalization_name='InstanceNorm++', nonlinearity='elu', interpolation='bilinear'):
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(
      {'image_size': image_size, 'num_channels': 3, 'centered': centered})
  config.model = ml_collections.ConfigDict({
      'name': name, 'nf': nf, 'normalization': normalization_name,
      'nonlinearity': nonlinearity, 'sigma_min': 0.01, 'sigma_max': 50.,
      'num_scales': num_scales, 'scale_by_sigma': scale_by_sigma,
      'interpolation': interpolation, 'patch_coords': False, 'class_conditional': False,
      'augment_dim': 0, 'dtype': 'float32', 'remat': 'none'})
  return config


def load_config(relpath):
  path = os.path.join(ROOT, 'configs', relpath)
  spec = importlib.util.spec_from_file_location(relpath.replace('/', '_')[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize('relpath', sorted(CONFIG_COUNTS))
def test_param_count_of_score_sde_config(relpath):
  if not os.path.exists(os.path.join(ROOT, 'configs', relpath)):
    pytest.skip(f'configs/{relpath} not written yet')
  assert count_params(load_config(relpath)) == CONFIG_COUNTS[relpath]


def test_every_ncsn_config_file_is_counted():
  found = {f'{d}/{f}' for d in ('ve/ncsn', 've/ncsnv2')
           if os.path.isdir(os.path.join(ROOT, 'configs', d))
           for f in os.listdir(os.path.join(ROOT, 'configs', d)) if f.endswith('.py')}
  assert found <= set(CONFIG_COUNTS)


@pytest.mark.parametrize('name, image_size, num_scales, expected', [
    ('ncsn', 32, 10, 34_428_675),
    ('ncsn_torch', 32, 10, 30_117_635),
    ('ncsnv2_64', 32, 232, 33_970_563),
    ('ncsnv2_64_torch', 32, 232, 29_694_083),
    ('ncsnv2_128', 128, 1086, 83_445_379),
    ('ncsnv2_256', 256, 2000, 94_132_611),
])
def test_param_count_matches_official_code(name, image_size, num_scales, expected):
  assert count_params(make_config(name, image_size=image_size, num_scales=num_scales)) == expected


# --- layers against closed forms ------------------------------------------------------------

def _apply(module, params, *args):
  return np.asarray(module.apply({'params': params}, *args))


def test_instance_norm_plus_closed_form():
  """Song&Ermon19 App. A: γ(IN(x) + α (μ − m)/s) + β with s² the unbiased variance of μ."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 6, 4)) * 3 + rng.normal(size=(2, 1, 1, 4)) * 2
  gamma, alpha, beta = rng.normal(size=(3, 4))
  mu = x.mean(axis=(1, 2), keepdims=True)
  inorm = (x - mu) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
  mus = mu[:, 0, 0]
  plus = (mus - mus.mean(-1, keepdims=True)) / np.sqrt(mus.var(-1, ddof=1, keepdims=True) + 1e-5)
  want = gamma * (inorm + alpha * plus[:, None, None]) + beta
  got = _apply(normalization.InstanceNorm2dPlus(), {'alpha': alpha, 'gamma': gamma, 'beta': beta},
               jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conditional_instance_norm_plus_uses_the_row_of_each_label():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 4, 4, 2)), jnp.float32)
  table = rng.normal(size=(5, 6)).astype(np.float32)
  labels = np.array([4, 0, 2])
  got = _apply(normalization.ConditionalInstanceNorm2dPlus(num_classes=5),
               {'embed': {'embedding': table}}, x, jnp.asarray(labels))
  for b, k in enumerate(labels):
    gamma, alpha, beta = np.split(table[k], 3)
    want = _apply(normalization.InstanceNorm2dPlus(),
                  {'alpha': alpha, 'gamma': gamma, 'beta': beta}, x[b:b + 1])
    np.testing.assert_allclose(got[b:b + 1], want, rtol=1e-5, atol=1e-5)


def test_group_norm_matches_flax():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 128)) * 2 + 1
  got = _apply(normalization.GroupNorm2d(), {'scale': jnp.ones(128), 'bias': jnp.zeros(128)}, x)
  ref = nn.GroupNorm(num_groups=32, epsilon=1e-6)
  want = ref.apply(ref.init(jax.random.key(1), x), x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_variance_norm_keeps_the_mean():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3)) * 4 + 7
  alpha = jnp.array([1., 2., 3.])
  got = _apply(normalization.VarianceNorm2d(), {'alpha': alpha}, x)
  want = np.asarray(x) / np.sqrt(np.var(np.asarray(x), axis=(1, 2), ddof=1, keepdims=True)
                                 + 1e-5) * np.asarray(alpha)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bilinear_resize_aligns_corners():
  """F.interpolate(align_corners=True): corners kept, linear ramps reproduced exactly."""
  ramp = jnp.arange(3, dtype=jnp.float32).reshape(1, 3, 1, 1) * jnp.ones((1, 3, 2, 1))
  out = np.asarray(rl.resize(ramp, (5, 4), 'bilinear'))
  np.testing.assert_allclose(out[0, :, 0, 0], [0., .5, 1., 1.5, 2.], atol=1e-6)
  np.testing.assert_allclose(out[0, 2], 1.)
  x = jax.random.normal(jax.random.key(0), (1, 3, 3, 2))
  assert rl.resize(x, (3, 3), 'bilinear') is x


def test_ncsn_conv_has_pytorch_init():
  """Kernel and bias ~ U(±1/√fan_in), fan_in = 3·3·C_in (PyTorch's nn.Conv2d default)."""
  class Conv(nn.Module):
    @nn.compact
    def __call__(self, x):
      return rl.ncsn_conv3x3(x, 64, dilation=2)
  params = Conv().init(jax.random.key(0), jnp.zeros((1, 8, 8, 16)))['params']['Conv_0']
  bound = 1 / np.sqrt(9 * 16)
  for leaf in (params['kernel'], params['bias']):
    assert np.abs(leaf).max() <= bound
    assert np.abs(leaf).max() > 0.9 * bound


# --- models ---------------------------------------------------------------------------------

def _init_and_apply(config, x, labels):
  """(variables, output) from one forward pass."""
  out, variables = get_model(config).init_with_output(jax.random.key(0), x, labels, train=True)
  return variables, out


def test_ncsnv2_output_is_divided_by_sigma_of_the_index():
  """Song&Ermon20 Technique 3: s(x, σ_i) σ_i is the same network output for every i."""
  config = make_config('ncsnv2_64', nf=4, image_size=8, num_scales=6)
  x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 3)).repeat(3, axis=0)
  labels = np.array([0, 3, 5])
  _, out = _init_and_apply(config, x, jnp.asarray(labels))
  unscaled = np.asarray(out) * get_sigmas(config)[labels][:, None, None, None]
  np.testing.assert_allclose(unscaled[1], unscaled[0], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(unscaled[2], unscaled[0], rtol=1e-4, atol=1e-6)


def test_ncsn_is_conditional_and_params_only():
  config = make_config('ncsn', nf=4, image_size=8, num_scales=4, scale_by_sigma=False)
  x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 3)).repeat(2, axis=0)
  variables, out = _init_and_apply(config, x, jnp.array([0., 3.]))   # float labels: indices
  assert set(variables) == {'params'}
  assert out.shape == x.shape
  table = variables['params']['normalizer']['embed']['embedding']
  assert table.shape == (4, 12)
  np.testing.assert_allclose(table[:, 8:], 0.)   # β starts at 0, γ and α near 1
  assert np.abs(np.asarray(table[:, :8]) - 1).max() < 0.2
  assert not np.allclose(out[0], out[1], rtol=1e-2)   # same image, two noise levels


def test_centered_data_skips_the_rescaling():
  config = make_config('ncsnv2_64_torch', nf=4, image_size=8, num_scales=3)
  x = jax.random.uniform(jax.random.key(2), (1, 8, 8, 3))
  labels = jnp.array([1])
  variables, out = _init_and_apply(config, x, labels)
  config.data.centered = True
  centered = get_model(config).apply(variables, 2 * x - 1, labels)
  np.testing.assert_allclose(centered, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('field, value, listed', [
    ('normalization', 'BatchNorm', 'InstanceNorm++'),
    ('nonlinearity', 'gelu', 'elu'),
    ('interpolation', 'bicubic', 'nearest_neighbor'),
])
def test_unknown_names_list_the_valid_ones(field, value, listed):
  """configs/validate.py names the field and lists the choices before any work."""
  from configs import validate  # pylint: disable=import-outside-toplevel
  from configs.ve.ncsnv2 import cifar10  # pylint: disable=import-outside-toplevel
  config = cifar10.get_config()
  config.model[field] = value
  with pytest.raises(validate.ConfigError, match=f"model.{field} = '{value}' is not one of .*"
                                                 f'{listed}'):
    validate.check(config, 'train')


def test_conditional_group_norm_is_refused_with_the_choices():
  config = make_config('ncsn', nf=4, image_size=8, normalization_name='GroupNorm')
  with pytest.raises(KeyError, match='conditional normalization.*InstanceNorm\\+\\+'):
    count_params(config)


@pytest.mark.parametrize('norm_name', ['InstanceNorm', 'VarianceNorm', 'GroupNorm'])
def test_other_normalizations_build_and_run(norm_name):
  config = make_config('ncsnv2_64', nf=4, image_size=8, normalization_name=norm_name)
  x = jax.random.uniform(jax.random.key(3), (1, 8, 8, 3))
  _, out = _init_and_apply(config, x, jnp.array([2]))
  assert out.shape == x.shape and np.isfinite(np.asarray(out)).all()
