"""NCSN++ / DDPM++ / DDPM: exact parameter counts of the CIFAR-10 configs, construction errors,
and small forward checks. Parity with the official nets is in test_models_parity.py.

Expected counts: the official code ([verified] by abstract evaluation of the official JAX models);
the deep positional, DDPM++ deep, unconditional DDPM and 64/256 px counts were obtained the same
way (`jax.eval_shape` of yang-song/score_sde's models on its own config files, under today's JAX).
"""
import glob
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import models  # registers  # pylint: disable=unused-import
from models import layers
from models import up_or_down_sampling as uds
from models.utils import count_params, get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NCSNPP_FOURIER, NCSNPP_FOURIER_DEEP = 62_758_915, 107_587_075
NCSNPP_POSITIONAL, NCSNPP_POSITIONAL_DEEP = 62_693_251, 107_521_411
DDPMPP, DDPMPP_DEEP = 61_804_419, 106_632_579
DDPM, DDPM_UNCONDITIONAL = 35_218_947, 32_329_347

EXPECTED = {  # CIFAR-10 config (path under configs/) -> parameter count
    've/cifar10_ncsnpp_continuous': NCSNPP_FOURIER,
    've/cifar10_ncsnpp_deep_continuous': NCSNPP_FOURIER_DEEP,
    've/cifar10_ncsnpp': NCSNPP_POSITIONAL,
    'vp/cifar10_ncsnpp': NCSNPP_POSITIONAL,
    'vp/cifar10_ncsnpp_continuous': NCSNPP_POSITIONAL,
    'subvp/cifar10_ncsnpp_continuous': NCSNPP_POSITIONAL,
    'vp/cifar10_ncsnpp_deep_continuous': NCSNPP_POSITIONAL_DEEP,
    'subvp/cifar10_ncsnpp_deep_continuous': NCSNPP_POSITIONAL_DEEP,
    'vp/cifar10_ddpmpp': DDPMPP,
    'vp/cifar10_ddpmpp_continuous': DDPMPP,
    'subvp/cifar10_ddpmpp_continuous': DDPMPP,
    'vp/cifar10_ddpmpp_deep_continuous': DDPMPP_DEEP,
    'subvp/cifar10_ddpmpp_deep_continuous': DDPMPP_DEEP,
    've/cifar10_ddpm': DDPM,
    'vp/ddpm/cifar10': DDPM,
    'vp/ddpm/cifar10_continuous': DDPM,
    'subvp/cifar10_ddpm_continuous': DDPM,
    'vp/ddpm/cifar10_unconditional': DDPM_UNCONDITIONAL,
}

LARGER = {  # other datasets (counted the same way); tested when configs/ holds the file
    've/celeba_ncsnpp': NCSNPP_POSITIONAL,                  # 64 px
    've/church_ncsnpp_continuous': 65_574_549,               # 256 px NCSN++, output/input skips
    've/bedroom_ncsnpp_continuous': 65_574_549,
    've/celebahq_256_ncsnpp_continuous': 65_574_549,
    've/ffhq_256_ncsnpp_continuous': 65_574_549,
    'vp/ddpm/church': 111_569_923,                           # 256 px DDPM
    'vp/ddpm/bedroom': 111_569_923,
    'vp/ddpm/celebahq': 111_569_923,
}


def small_config(name='ncsnpp', **model):
  """A CIFAR-10-shaped config with score_sde's NCSN++ (VE, continuous) model fields."""
  config = ml_collections.ConfigDict()
  config.training = ml_collections.ConfigDict(dict(continuous=True))
  config.data = ml_collections.ConfigDict(dict(image_size=32, num_channels=3, centered=False))
  config.model = ml_collections.ConfigDict(dict(
      name=name, sigma_min=0.01, sigma_max=50., num_scales=1000, dropout=0.1,
      embedding_type='fourier', fourier_scale=16., scale_by_sigma=True, nonlinearity='swish',
      nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
      resamp_with_conv=True, conditional=True, fir=True, fir_kernel=[1, 3, 3, 1],
      skip_rescale=True, resblock_type='biggan', progressive='none', progressive_input='residual',
      progressive_combine='sum', init_scale=0., patch_coords=False, class_conditional=False,
      augment_dim=0, dtype='float32', remat='none'))
  config.model.update(model)
  return config


def _fallback(path):
  """The model fields of score_sde's config `path`, for when configs/ does not hold it yet."""
  base = os.path.basename(path)
  deep = dict(num_res_blocks=8) if 'deep' in base else {}
  if 'ddpmpp' in base:
    return small_config(embedding_type='positional', fir=False, progressive_input='none',
                        scale_by_sigma=False, **deep)
  if 'ncsnpp' in base:
    fourier = path.startswith('ve/') and 'continuous' in base
    return small_config(embedding_type='fourier' if fourier else 'positional', **deep)
  return small_config('ddpm', num_res_blocks=2, scale_by_sigma=False,
                      conditional='unconditional' not in base)


def load_config(path):
  """`get_config()` of configs/<path>.py if that file exists, else `_fallback(path)`."""
  file = os.path.join(ROOT, 'configs', path + '.py')
  if not os.path.exists(file):
    return _fallback(path)
  spec = importlib.util.spec_from_file_location('config_' + path.replace('/', '_'), file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def random_params(config, seed=0):
  """N(0, 0.1²) values in our parameter tree (no jitted init: its compile costs ~15 s here)."""
  x = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.num_channels))
  shapes = jax.eval_shape(lambda: get_model(config).init(jax.random.key(0), x, jnp.ones((1,))))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), jnp.float32),
                      shapes['params'])


@pytest.mark.parametrize('path', sorted(EXPECTED))
def test_parameter_count(path):
  config = load_config(path)
  assert config.model.name in ('ncsnpp', 'ddpm')
  assert count_params(config) == EXPECTED[path]


@pytest.mark.parametrize('path', sorted(LARGER))
def test_parameter_count_larger_images(path):
  if not os.path.exists(os.path.join(ROOT, 'configs', path + '.py')):
    pytest.skip(f'configs/{path}.py not written yet')
  assert count_params(load_config(path)) == LARGER[path]


def test_every_cifar10_config_of_ours_has_an_expected_count():
  """Over score_sde's config tree (ve/, vp/, subvp/); configs/edm/ has no reference count."""
  files = [f for sde in ('ve', 'vp', 'subvp')
           for f in glob.glob(os.path.join(ROOT, 'configs', sde, '**', 'cifar10*.py'), recursive=True)]
  ours = []
  for file in files:
    path = os.path.relpath(file, os.path.join(ROOT, 'configs'))[:-3]
    if load_config(path).model.name in ('ncsnpp', 'ddpm'):
      ours.append(path)
  assert sorted(set(ours) - set(EXPECTED)) == []


def test_config_a_count():
  assert count_params(small_config(nf=32, num_res_blocks=1)) == 1_831_651


@pytest.mark.parametrize('field, value, message', [
    ('progressive', 'foo', "'none', 'output_skip', 'residual'"),
    ('progressive_input', 'skip', "'input_skip'"),
    ('progressive_combine', 'mul', "'cat', 'sum'"),
    ('resblock_type', 'resnet', "'biggan', 'ddpm'"),
    ('embedding_type', 'learned', "'fourier', 'positional'"),
    ('nonlinearity', 'gelu', "'swish'"),
])
def test_bad_option_names_the_field(field, value, message):
  """configs/validate.py lists the choices (the network builds whatever it is given)."""
  from configs import validate  # pylint: disable=import-outside-toplevel
  from configs.ve import cifar10_ncsnpp_continuous  # pylint: disable=import-outside-toplevel
  config = cifar10_ncsnpp_continuous.get_config()
  setattr(config.model, field, value)
  with pytest.raises(validate.ConfigError, match=f"model.{field} = '{value}' is not one of .*"
                                                 f'{message}'):
    validate.check(config, 'train')


def test_unknown_model_lists_registered():
  with pytest.raises(KeyError, match='ddpm.*ncsnpp'):
    get_model(small_config('ncsnpp_typo'))


@pytest.mark.parametrize('factor', [2, 4])
def test_mean_pooling_equals_block_means(factor):
  """uds.naive_downsample_2d (a sum of strided views) against numpy's mean over f×f blocks."""
  x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
  expected = x.reshape(2, 8 // factor, factor, 12 // factor, factor, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(uds.naive_downsample_2d(jnp.asarray(x), factor), expected,
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('factor', [2, 4])
def test_mean_pooling_derivatives_are_the_block_means(factor):
  """Its gradient spreads each output's cotangent evenly over its f×f block (closed form:
  ȳ repeated f×f, over f²), its tangent is the pooled tangent (it is linear), also inside a
  gradient (the Hessian-vector product of a loss through it)."""
  keys = jax.random.split(jax.random.key(2), 3)
  x, t = (jax.random.normal(k, (2, 8, 12, 3)) for k in keys[:2])
  cot = jax.random.normal(keys[2], (2, 8 // factor, 12 // factor, 3))
  grad = jax.grad(lambda x: jnp.sum(uds.naive_downsample_2d(x, factor) * cot))(x)
  spread = np.repeat(np.repeat(np.asarray(cot), factor, 1), factor, 2) / factor ** 2
  np.testing.assert_allclose(grad, spread, rtol=1e-6, atol=1e-7)
  tangent = jax.jvp(lambda x: uds.naive_downsample_2d(x, factor), (x,), (t,))[1]
  np.testing.assert_allclose(tangent, uds.naive_downsample_2d(t, factor), rtol=1e-6, atol=1e-6)
  loss = lambda x: jnp.sum(jnp.sin(uds.naive_downsample_2d(x, factor)))   # noqa: E731
  hvp = jax.jvp(jax.grad(loss), (x,), (t,))[1]
  pooled, dpooled = uds.naive_downsample_2d(x, factor), uds.naive_downsample_2d(t, factor)
  want = np.repeat(np.repeat(-np.sin(pooled) * dpooled, factor, 1), factor, 2) / factor ** 2
  np.testing.assert_allclose(hvp, want, rtol=1e-5, atol=1e-6)


def test_fir_resampling_preserves_constants_and_shapes():
  x = jnp.ones((1, 8, 8, 2))
  up, down = uds.upsample_2d(x), uds.downsample_2d(x)
  assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
  np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1., rtol=1e-6)  # interior: gain 1
  np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1., rtol=1e-6)


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_nearest_upsampling_conv_on_the_input_grid_equals_convolving_the_upsampled(dtype, tol):
  """uds.nearest_upsample_conv_2d (four 2×2 convs on the input grid) against the definition:
  repeat each pixel 2×2, then a 3×3 'SAME' conv; values and both gradients, odd sizes too."""
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (2, 5, 6, 3)).astype(dtype)
  w = jax.random.normal(keys[1], (3, 3, 3, 4)).astype(dtype)
  g = jax.random.normal(keys[2], (2, 10, 12, 4)).astype(dtype)

  def direct(x, w):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  for fn in (uds.nearest_upsample_conv_2d, lambda x, w: uds.upsample_conv_2d(x, w, k=(1, 1))):
    (y, vjp), (y_ref, vjp_ref) = jax.vjp(fn, x, w), jax.vjp(direct, x, w)
    assert y.shape == (2, 10, 12, 4) and y.dtype == dtype
    for ours, ref in zip((y, *vjp(g)), (y_ref, *vjp_ref(g))):
      ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
      assert np.abs(ours - ref).max() <= tol * np.abs(ref).max()


def test_dropout_only_in_training_and_scale_by_sigma():
  config = small_config(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), init_scale=1.)
  config.data.image_size = 8
  model = get_model(config)
  params = random_params(config)
  unscaled_config = small_config(**dict(config.model, scale_by_sigma=False))
  unscaled_config.data.image_size = 8
  unscaled = get_model(unscaled_config)
  x, sigma = jnp.full((2, 8, 8, 3), 0.5), jnp.array([0.1, 10.])

  @jax.jit
  def run(key):
    def apply(net, train):
      return net.apply({'params': params}, x, sigma, train=train, rngs={'dropout': key})
    return apply(model, False), apply(model, True), apply(unscaled, False)

  (a, a_train, plain), (b, b_train, _) = run(jax.random.key(1)), run(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a_train, b_train)
  # scale_by_sigma divides the unscaled network output by the σ label.
  expected = plain / sigma[:, None, None, None]
  assert np.linalg.norm(a - expected) / np.linalg.norm(expected) < 1e-5


@pytest.mark.parametrize('shape,groups', [((3, 5, 4, 32), 8), ((2, 4, 4, 12), 3)])
def test_group_norm_equals_flax_in_value_and_both_autodiff_modes(shape, groups):
  """layers.GroupNorm vs flax's nn.GroupNorm (truth we did not write): outputs, reverse-mode
  gradients w.r.t. x, γ and β, and forward-mode (jvp) tangents, as the likelihood needs."""
  keys = jax.random.split(jax.random.key(0), 6)
  x = 3 * jax.random.normal(keys[0], shape) + 1.5
  c = shape[-1]
  params = {'params': {'scale': jax.random.normal(keys[1], (c,)),
                       'bias': jax.random.normal(keys[2], (c,))}}
  cot, dx = jax.random.normal(keys[3], shape), jax.random.normal(keys[4], shape)
  dparams = jax.tree.map(lambda p: jax.random.normal(keys[5], p.shape), params)
  ours, ref = layers.GroupNorm(groups), nn.GroupNorm(num_groups=groups, epsilon=1e-6)
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=1e-5)
  loss = lambda m: lambda p, x: jnp.sum(m.apply(p, x) * cot)   # noqa: E731
  for got, want in zip(jax.tree.leaves(jax.grad(loss(ours), argnums=(0, 1))(params, x)),
                       jax.tree.leaves(jax.grad(loss(ref), argnums=(0, 1))(params, x))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  jvp = lambda m: jax.jvp(m.apply, (params, x), (dparams, dx))[1]   # noqa: E731
  np.testing.assert_allclose(jvp(ours), jvp(ref), rtol=1e-4, atol=1e-4)
  hvp = lambda m: jax.jvp(jax.grad(loss(m), argnums=1), (params, x), (dparams, dx))[1]  # noqa: E731
  np.testing.assert_allclose(hvp(ours), hvp(ref), rtol=1e-3, atol=1e-3)


def test_group_means_reach_their_channels_exactly():
  """layers._group_mean (channel sums times the 0/1 same-group matrix) gives every channel its
  group's mean over H, W and the group's channels: one value per group, bit for bit the same on
  each of its C/G channels, across magnitudes from 1e-30 to 1e30 (numpy's float64 mean to
  float32 rounding)."""
  scales = np.repeat(np.logspace(-30, 30, 8), 4)            # 8 groups of 4 channels
  v = np.random.default_rng(0).standard_normal((3, 5, 6, 32)) * scales
  got = np.asarray(layers._group_mean(jnp.asarray(v, jnp.float32), 8))   # pylint: disable=protected-access
  assert got.shape == (3, 1, 1, 32)
  per_group = got[:, 0, 0].reshape(3, 8, 4)
  np.testing.assert_array_equal(per_group, np.repeat(per_group[:, :, :1], 4, axis=2))
  want = np.asarray(v, np.float32).astype(np.float64).reshape(3, 30, 8, 4).mean(axis=(1, 3))
  np.testing.assert_allclose(per_group[:, :, 0], want, rtol=1e-5)


@pytest.mark.parametrize('features, shape', [(3, (2, 9, 7, 5)), (1, (3, 2, 6, 4, 8)), (4, (1, 8, 8, 2)),
                                            (6, (2, 9, 7, 3)), (5, (3, 2, 6, 4, 1))])
@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_few_channel_conv3x3_equals_flax_conv(features, shape, dtype, tol):
  """layers.conv3x3 with an image's few output channels (nine shifted 1×1 products,
  `_conv3x3_taps`) or few input channels (one product with the nine shifted inputs,
  `_conv3x3_patches`) vs flax's nn.Conv (XLA's convolution, truth we did not write): same
  parameters, values, gradients, forward-mode tangents and second derivatives (the likelihood's
  divergence, Hessian-vector products), extra batch axes included; neither calls XLA's
  convolution in its forward pass, and 32 channels in and out do."""
  keys = jax.random.split(jax.random.key(1), 4)
  x = jax.random.normal(keys[0], shape)
  ours = layers.conv3x3(features, dtype=dtype)
  ref = nn.Conv(features, (3, 3), padding='SAME', kernel_init=layers.default_init(), dtype=dtype)
  convs = lambda m, x: [e for e in jax.make_jaxpr(m.init)(keys[1], x).jaxpr.eqns   # noqa: E731
                        if e.primitive.name == 'conv_general_dilated']
  assert not convs(ours, x) and convs(layers.conv3x3(32), jnp.zeros((1, 4, 4, 32)))
  params = ours.init(keys[1], x)
  np.testing.assert_array_equal(params['params']['kernel'], ref.init(keys[1], x)['params']['kernel'])
  params = jax.tree.map(lambda p: jax.random.normal(keys[2], p.shape), params)   # bias ≠ 0
  cot = jax.random.normal(keys[3], shape[:-1] + (features,))
  f = lambda m: lambda p, x: jnp.sum(jnp.tanh(m.apply(p, x).astype(jnp.float32)) * cot)  # noqa: E731
  scale = float(jnp.max(jnp.abs(ref.apply(params, x).astype(jnp.float32))))
  np.testing.assert_allclose(ours.apply(params, x).astype(jnp.float32),
                             ref.apply(params, x).astype(jnp.float32), rtol=0, atol=tol * scale)
  tangent = jax.random.normal(keys[0], shape)
  jvp = lambda m: jax.jvp(lambda x: m.apply(params, x), (x,), (tangent,))[1]   # noqa: E731
  np.testing.assert_allclose(jvp(ours).astype(jnp.float32), jvp(ref).astype(jnp.float32),
                             rtol=0, atol=tol * scale)
  if dtype != jnp.float32:      # bfloat16 gradients through tanh: rounding, not the method
    return
  for a, b in zip(jax.tree.leaves(jax.grad(f(ours), argnums=(0, 1))(params, x)),
                  jax.tree.leaves(jax.grad(f(ref), argnums=(0, 1))(params, x))):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(jnp.max(jnp.abs(b))))
  hvp = lambda m: jax.jvp(jax.grad(lambda x: f(m)(params, x)), (x,), (tangent,))[1]   # noqa: E731
  want = hvp(ref)
  np.testing.assert_allclose(hvp(ours), want, rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize('shape', [(2, 5, 4, 6), (3, 7, 6), (4, 6)])
@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_channel_dense_equals_flax_dense_and_dots_flat_rows(shape, dtype, tol):
  """layers.ChannelDense vs flax's nn.Dense (truth we did not write): same parameters, values,
  reverse-mode gradients and forward-mode tangents; and its dot is 2-D ([rows, channels]), the
  form whose weight gradient XLA:CPU takes as one GEMM (docs/performance.md)."""
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], shape)
  ours, ref = layers.ChannelDense(5, dtype=dtype), nn.Dense(5, dtype=dtype)
  params, ref_params = ours.init(keys[1], x), ref.init(keys[1], x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  np.testing.assert_array_equal(params['params']['kernel'], ref_params['params']['kernel'])
  cot = jax.random.normal(keys[2], shape[:-1] + (5,))
  loss = lambda m: lambda p, x: jnp.sum(m.apply(p, x).astype(jnp.float32) * cot)   # noqa: E731
  tangents = jax.tree.map(lambda p: jax.random.normal(keys[3], p.shape), (params, x))
  jvp = lambda m: jax.jvp(m.apply, (params, x), tangents)[1]   # noqa: E731
  for got, want in [(ours.apply(params, x), ref.apply(params, x)), (jvp(ours), jvp(ref)),
                    *zip(jax.tree.leaves(jax.grad(loss(ours), argnums=(0, 1))(params, x)),
                         jax.tree.leaves(jax.grad(loss(ref), argnums=(0, 1))(params, x)))]:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
  dots = [e for e in jax.make_jaxpr(ours.apply)(params, x).jaxpr.eqns
          if e.primitive.name == 'dot_general']
  assert [e.invars[0].aval.ndim for e in dots] == [2]


@pytest.mark.parametrize('scale', [1., 300.])   # 300: logits ~1e4, exp overflows without the max
def test_attention_is_softmax_qk_v_with_the_scale_on_q(scale):
  """layers.attention vs softmax(q kᵀ/√C) v in float64 NumPy (Vaswani+17 Eq. 1), values and
  gradients (vs autodiff of the logits scaled: equal values for C = 16, where 1/√C is exact),
  stable for large logits; and 1/√C does not touch the [B, N, N] logits (it scales q)."""
  b, n, c = 2, 12, 16
  q, k, v = (jax.random.normal(key, (b, n, c)) for key in jax.random.split(jax.random.key(0), 3))
  q = q * scale
  logits = np.einsum('bic,bjc->bij', np.float64(q), np.float64(k)) / np.sqrt(c)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  want = np.einsum('bij,bjc->bic', w / w.sum(-1, keepdims=True), np.float64(v))
  got = layers.attention(q, k, v)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
  ref = lambda q, k, v: jnp.einsum(   # noqa: E731
      'bij,bjc->bic', jax.nn.softmax(jnp.einsum('bic,bjc->bij', q, k) / np.sqrt(c), -1), v)
  np.testing.assert_array_equal(got, ref(q, k, v))
  cot = jax.random.normal(jax.random.key(1), (b, n, c))
  grads = [jax.grad(lambda *a, f=f: jnp.sum(f(*a) * cot), argnums=(0, 1, 2))(q, k, v)
           for f in (layers.attention, ref)]
  for g, r in zip(*grads):
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, r, rtol=0, atol=1e-4 * float(jnp.abs(r).max()))
  eqns = jax.make_jaxpr(layers.attention)(q, k, v).jaxpr.eqns
  assert not [e for e in eqns if e.primitive.name == 'mul' and e.outvars[0].aval.shape == (b, n, n)]
