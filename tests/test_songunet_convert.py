"""NVlabs/edm SongUNet weights in our `ncsnpp` (foreign/songunet.py), against torch outputs.

Truth: tests/fixtures/songunet_torch.npz (tools/make_songunet_fixture.py), tiny SongUNets with
every parameter random, run by EDM's / Patch-Diffusion's own code: DDPM++ (positional, standard
encoder), NCSN++ (Fourier, residual encoder, [1, 3, 3, 1]), a class- and augmentation-conditional
net with skip encoder and decoder, and Patch Diffusion's with coordinate channels. Each is
converted from its stored kwargs and state dict and run as the EDM wrapper runs it (the Fourier
net fed exp(c_noise), models/precond.py); the NCSN++ and Patch nets also through
`precond.get_denoiser` against EDMPrecond / Patch_EDMPrecond (the latter on a crop with its
coordinates). Torch is not needed here.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.edm import cifar10_ddpmpp, cifar10_ddpmpp_cond, cifar10_ncsnpp
from foreign import songunet
from models import precond
from models import utils as mutils

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'songunet_torch.npz')
NETS = ('ddpmpp', 'ncsnpp', 'cond_skip', 'patch')
TOL = 1e-4   # max |Δ| against outputs of max |·| ≈ 2–3


def _load(name):
  """(kwargs, state dict, {input or output: array}) of fixture net `name`."""
  with np.load(FIXTURE) as f:
    prefix = f'{name}/'
    arrays = {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}
  kwargs = json.loads(str(arrays.pop('kwargs')))
  sd = {k[3:]: v.astype(np.float32) for k, v in arrays.items() if k.startswith('sd/')}
  return kwargs, sd, {k: v for k, v in arrays.items() if not k.startswith('sd/')}


def _config(kwargs):
  config = cifar10_ddpmpp.get_config()
  config.update_from_flattened_dict(songunet.config_overrides(kwargs))
  return config


def _nhwc(x):
  return jnp.asarray(np.moveaxis(np.asarray(x, np.float32), 1, -1))


def _outputs(config, params, data):
  """Our raw network output and, where the fixture has one, D(x; σ) — in one compile."""
  cond = {}
  if config.model.class_conditional:
    cond['class_labels'] = jnp.asarray(data['class_labels'])
  if config.model.augment_dim:
    cond['augment_labels'] = jnp.asarray(data['augment_labels'])
  fourier = config.model.embedding_type == 'fourier'   # embeds log(label): fed exp(c_noise)
  labels = np.exp(data['noise_labels'].astype(np.float64)) if fourier else data['noise_labels']
  labels = jnp.asarray(labels, jnp.float32)
  has_d = 'precond/D' in data

  def run(p):
    model_fn = mutils.get_model_fn(mutils.get_model(config), p, train=False, cond=cond or None)
    out = model_fn(_nhwc(data['x']), labels)
    if not has_d:
      return out, None
    coords = _nhwc(data['precond/pos']) if 'precond/pos' in data else None
    d = precond.get_denoiser(config, model_fn)(_nhwc(data['precond/x']),
                                               jnp.asarray(data['precond/sigma'], jnp.float32),
                                               coords=coords)
    return out, d
  return jax.jit(run)(params)


@pytest.mark.parametrize('name', NETS)
def test_songunet_matches_torch(name):
  kwargs, sd, data = _load(name)
  config = _config(kwargs)
  params = songunet.to_params(sd, config)
  out, d = _outputs(config, params, data)
  err = float(np.max(np.abs(np.asarray(out) - _nhwc(data['out']))))
  print(f'{name}: raw output max |Δ| {err:.2e} (max |out| {np.abs(data["out"]).max():.2f})')
  assert err < TOL, (name, err)
  if d is not None:
    err_d = float(np.max(np.abs(np.asarray(d) - _nhwc(data['precond/D']))))
    print(f'{name}: D(x; σ) max |Δ| {err_d:.2e}')
    assert err_d < TOL, (name, err_d)


def test_params_tree_is_init_models():
  kwargs, sd, _ = _load('cond_skip')
  config = _config(kwargs)
  params = songunet.to_params(sd, config)
  shapes = jax.eval_shape(lambda k: mutils.init_model(k, config)[1], jax.random.key(0))
  assert jax.tree.structure(params) == jax.tree.structure(shapes)
  assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, shapes)


def test_moments_are_relayouts_with_zero_fourier_moments():
  kwargs, sd, _ = _load('ncsnpp')
  config = _config(kwargs)
  moments = {k: v for k, v in sd.items() if not k.endswith(('resample_filter', 'freqs'))}
  params, out = songunet.to_params(sd, config), songunet.to_params(moments, config, moments=True)
  np.testing.assert_array_equal(out['fourier']['W'], 0.)
  out['fourier']['W'] = params['fourier']['W']
  jax.tree.map(np.testing.assert_array_equal, out, params)


def test_wrong_shape_missing_and_unused_tensors_are_named():
  kwargs, sd, _ = _load('ncsnpp')
  config = _config(kwargs)
  bad = dict(sd, **{'enc.8x8_block0.conv0.weight': sd['enc.8x8_block0.conv0.weight'][:, :4]})
  with pytest.raises(ValueError, match=r"'enc.8x8_block0.conv0.weight' has shape \(16, 4, 3, 3\)"
                     r".*\(16, 8, 3, 3\)"):
    songunet.to_params(bad, config)
  missing = {k: v for k, v in sd.items() if k != 'dec.8x8_in0.qkv.bias'}
  with pytest.raises(ValueError, match="'dec.8x8_in0.qkv.bias' is missing"):
    songunet.to_params(missing, config)
  with pytest.raises(ValueError, match="not used by our model: extra.weight"):
    songunet.to_params(dict(sd, **{'extra.weight': np.zeros(3)}), config)
  wrong_filter = dict(sd, **{'enc.8x8_down.skip.resample_filter':
                             np.full((1, 1, 4, 4), 1 / 16, np.float32)})
  with pytest.raises(ValueError, match="'enc.8x8_down.skip.resample_filter' is not the resampling"):
    songunet.to_params(wrong_filter, config)


@pytest.mark.parametrize('kwarg, value', [
    ('channel_mult_noise', 1), ('channel_mult_emb', 2), ('encoder_type', 'fancy'),
    ('resample_filter', [1, 2, 1]), ('implicit_mlp', True), ('model_type', 'DhariwalUNet'),
    ('out_channels', 2), ('num_heads', 4)])
def test_unrepresentable_kwargs_are_named(kwarg, value):
  kwargs = dict(img_resolution=32, img_channels=3, embedding_type='fourier', channel_mult_noise=2)
  kwargs[kwarg] = value
  with pytest.raises(ValueError, match=f'SongUNet kwarg {kwarg}='):
    songunet.config_overrides(kwargs)


def test_edm_cifar10_kwargs_give_our_edm_configs():
  """EDM's train.py --arch=ddpmpp / ncsnpp (CIFAR-10, --augment=0.12; --cond=1 for DDPM++) are
  configs/edm/cifar10_ddpmpp_cond.py and cifar10_ncsnpp.py field for field (dropout 0.13)."""
  common = dict(img_resolution=32, img_channels=3, model_type='SongUNet', model_channels=128,
                channel_mult=[2, 2, 2], dropout=0.13, augment_dim=9, use_fp16=False)
  ddpmpp = dict(common, label_dim=10, embedding_type='positional',
                encoder_type='standard', decoder_type='standard', channel_mult_noise=1,
                resample_filter=[1, 1])
  ncsnpp = dict(common, embedding_type='fourier', encoder_type='residual',
                decoder_type='standard', channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
  for kwargs, module in ((ddpmpp, cifar10_ddpmpp_cond), (ncsnpp, cifar10_ncsnpp)):
    config = module.get_config()
    for field, value in songunet.config_overrides(kwargs).items():
      group, key = field.split('.')
      assert config[group][key] == value, (module.__name__, field, config[group][key], value)


def test_pfgmpp_quantization_picks_weights_by_songunet_names():
  """generate_quant.py's filter on a 32-px net: weights named without 'norm', 'affine', 'map',
  '32' go to 2^bits levels per tensor; the 32×32 level (CIFAR-10's 'enc.32x32_*'), the mapping
  network, block embeddings, norms and biases stay as they were."""
  config = cifar10_ddpmpp.get_config()
  config.model.nf, config.model.ch_mult, config.model.num_res_blocks = 16, (1, 2), 1
  config.model.attn_resolutions = (16,)
  params = mutils.init_model(jax.random.key(0), config)[1]
  params = jax.tree.map(lambda v: v + 0.01 * jax.random.normal(jax.random.key(1), v.shape), params)
  out = songunet.quantize_like_pfgmpp(params, config, 3)
  changed = lambda *path: not np.array_equal(_leaf(params, path), _leaf(out, path))  # noqa: E731
  for path in [('down_1_res_0', 'conv_0', 'kernel'),        # enc.16x16_block0.conv0.weight
               ('down_0_resample', 'skip', 'kernel'),       # enc.16x16_down.skip.weight
               ('mid_attn', 'qkv', 'kernel'), ('mid_attn', 'out', 'kernel')]:   # dec.16x16_in0
    assert changed(*path), path
    assert len(np.unique(_leaf(out, path))) <= 8, path
  for path in [('conv_in', 'kernel'), ('down_0_res_0', 'conv_0', 'kernel'),   # enc.32x32_*
               ('out_conv', 'kernel'), ('temb_0', 'kernel'),                    # dec.32x32, map
               ('down_1_res_0', 'temb', 'kernel'), ('down_1_res_0', 'norm_0', 'scale'),
               ('down_1_res_0', 'conv_0', 'bias')]:
    assert not changed(*path), path


def _leaf(tree, path):
  for key in path:
    tree = tree[key]
  return np.asarray(tree)
