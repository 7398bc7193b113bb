"""`adm` (models/adm.py) against NVlabs/edm's DhariwalUNet, through `foreign.adm` (no torch here).

tests/fixtures/adm_torch.npz (tools/make_adm_fixture.py) holds tiny EDMPrecond(DhariwalUNet)
cases as EDM built them: their `_init_kwargs`, the state dict's names and shapes with the seed
that `make_adm_fixture.fill_weights` draws every parameter from, fixed inputs and EDM's outputs
(raw F in float64, D(x; σ) in float32); and the parameter count of the published ImageNet-64
network. Each output must agree to a max abs difference < 1e-4.
"""
import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default_lib
from configs.edm import imagenet64_adm_cond
from foreign import adm as foreign_adm
import models  # registers  # pylint: disable=unused-import
from models import precond
from models.utils import count_params, get_model, get_model_fn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'adm_torch.npz')
TOL = 1e-4


def _tool():
  path = os.path.join(ROOT, 'tools', 'make_adm_fixture.py')
  spec = importlib.util.spec_from_file_location('make_adm_fixture', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


with np.load(FIXTURE) as _f:
  DATA = {k: _f[k] for k in _f.files}


def _config(kwargs, **model):
  """Base config + `config_overrides(kwargs)` (+ `model` fields), as a checkpoint loader would."""
  config = default_lib.get_base_config()
  for key, value in foreign_adm.config_overrides(kwargs).items():
    group, field = key.split('.')
    config[group][field] = value
  config.data.centered = True
  config.model.update(model)
  return config


def _state(case):
  spec = json.loads(str(DATA[f'{case}/weights']))
  prefix = f'{case}/buffer/'
  buffers = {k[len(prefix):]: v for k, v in DATA.items() if k.startswith(prefix)}
  return {**_tool().fill_weights(spec['shapes'], spec['seed']), **buffers}


@functools.lru_cache(maxsize=None)
def _case(case):
  config = _config(json.loads(str(DATA[f'{case}/kwargs'])))
  return config, foreign_adm.to_params(_state(case), config)


def _run(case, with_augment=True, **kw):
  config, params = _case(case)
  cond = {}
  if config.model.class_conditional:
    cond['class_labels'] = DATA[f'{case}/class_labels']
  if config.model.augment_dim and with_augment:
    cond['augment_labels'] = DATA[f'{case}/augment_labels']
  c_noise = np.log(DATA[f'{case}/sigma']) / 4   # EDMPrecond's c_noise (Karras+22 Table 1)
  fn = jax.jit(lambda p, c: get_model(config).apply({'params': p}, DATA[f'{case}/x'], c_noise,
                                                    cond=c, **kw))
  return np.asarray(fn(params, cond))


def _max_diff(ours, expected):
  assert ours.shape == expected.shape
  return float(np.abs(ours - expected).max())


@pytest.mark.parametrize('case', ['uncond', 'cond'])
def test_matches_edm(case):
  err = _max_diff(_run(case), DATA[f'{case}/out'])
  assert err < TOL, f'{case}: max abs difference {err:.2e}'


def test_absent_augment_labels_match_edm_without_them():
  err = _max_diff(_run('cond', with_augment=False), DATA['cond/out_noaug'])
  assert err < TOL, f'max abs difference {err:.2e}'


def test_edm_precond_denoiser_matches():
  config, params = _case('cond')
  config = config.copy_and_resolve_references()
  config.model.precond = 'edm'
  cond = {'class_labels': DATA['cond/class_labels']}
  denoiser = precond.get_denoiser(config, get_model_fn(get_model(config), params, cond=cond))
  ours = np.asarray(jax.jit(denoiser)(DATA['cond/x'], DATA['cond/sigma']))
  err = _max_diff(ours, DATA['cond/denoised'])
  assert err < TOL, f'max abs difference {err:.2e}'


def test_label_dropout_in_training_drops_the_class():
  config, params = _case('cond')
  config = config.copy_and_resolve_references()
  config.model.update(label_dropout=1., dropout=0.)
  x, c_noise = DATA['cond/x'], np.log(DATA['cond/sigma']) / 4
  onehot = DATA['cond/class_labels']
  apply = jax.jit(lambda labels: get_model(config).apply(
      {'params': params}, x, c_noise, cond={'class_labels': labels}, train=True,
      rngs={'dropout': jax.random.key(0)}))
  dropped = np.asarray(apply(onehot))
  np.testing.assert_array_equal(dropped, apply(np.zeros_like(onehot)))
  assert np.abs(dropped - DATA['cond/out_noaug'])[:2].max() > 0.1   # EDM's, with the classes


def test_imagenet64_config_has_the_official_parameter_count():
  config = imagenet64_adm_cond.get_config()
  assert count_params(config) == int(DATA['official/num_params']) == 295899267
  overrides = foreign_adm.config_overrides(json.loads(str(DATA['official/kwargs'])))
  for key, value in overrides.items():
    group, field = key.split('.')
    assert config[group][field] == value, key


def test_to_params_only_relays_values_out():
  """Each leaf holds exactly one source tensor's values in its dtype (usable for Adam moments)."""
  config, _ = _case('cond')
  state = {k: np.arange(v.size, dtype=np.int64).reshape(v.shape) * 1000 + i
           for i, (k, v) in enumerate(sorted(_state('cond').items()))
           if not k.endswith('resample_filter')}
  params = foreign_adm.to_params(state, config)
  leaves = jax.tree.leaves(params)
  assert len(leaves) == len(state)
  sources = {int(v.flat[0]) % 1000: v for v in state.values()}
  for leaf in leaves:
    assert leaf.dtype == np.int64
    np.testing.assert_array_equal(np.sort(leaf, axis=None),
                                  np.sort(sources[int(leaf.flat[0]) % 1000], axis=None))


def test_to_params_names_wrong_missing_and_unused_tensors():
  config, _ = _case('uncond')
  state = _state('uncond')
  bad = dict(state, **{'enc.8x8_block0.qkv.weight': np.zeros((192, 64, 3, 3), np.float32)})
  with pytest.raises(ValueError, match=r'enc\.8x8_block0\.qkv\.weight.*\(192, 64, 3, 3\).*'
                                       r'\(192, 64, 1, 1\)'):
    foreign_adm.to_params(bad, config)
  missing = {k: v for k, v in state.items() if k != 'map_layer1.bias'}
  with pytest.raises(ValueError, match=r'map_layer1\.bias: missing.*\(128,\)'):
    foreign_adm.to_params(missing, config)
  with pytest.raises(ValueError, match=r'not used.*map_label\.weight'):
    foreign_adm.to_params(dict(state, **{'map_label.weight': np.zeros((128, 10))}), config)
  filt = 'enc.8x8_down.conv0.resample_filter'
  with pytest.raises(ValueError, match=filt.replace('.', r'\.')):
    foreign_adm.to_params(dict(state, **{filt: np.ones((1, 1, 4, 4)) / 16}), config)


@pytest.mark.parametrize('change, named', [
    (dict(channel_mult_emb=2), 'channel_mult_emb'), (dict(model_type='SongUNet'), 'model_type'),
    (dict(C_1=0.001, M=1000), 'C_1, M'), (dict(img_resolution=None), 'img_resolution'),
    (dict(dropout=1.5), 'dropout'), (dict(channel_mult=[]), 'channel_mult'),
    (dict(sigma_max=80.), 'sigma_max')])
def test_config_overrides_name_what_cannot_be_represented(change, named):
  kwargs = {**json.loads(str(DATA['cond/kwargs'])), **change}
  kwargs = {k: v for k, v in kwargs.items() if v is not None}
  with pytest.raises(ValueError, match=named):
    foreign_adm.config_overrides(kwargs)


def test_config_overrides_of_the_fixture_nets():
  overrides = foreign_adm.config_overrides(json.loads(str(DATA['cond/kwargs'])))
  assert overrides == {
      'model.name': 'adm', 'model.scale_by_sigma': False, 'model.sigma_data': 0.5,
      'data.image_size': 16, 'data.num_channels': 3, 'model.class_conditional': True,
      'data.num_classes': 10, 'model.augment_dim': 9, 'model.nf': 32, 'model.ch_mult': (1, 4),
      'model.num_res_blocks': 1, 'model.attn_resolutions': (8,), 'model.dropout': 0.1,
      'model.label_dropout': 0.1, 'model.learn_sigma': False, 'model.patch_coords': False}
  assert 'data.num_classes' not in foreign_adm.config_overrides(
      json.loads(str(DATA['uncond/kwargs'])))


def test_class_conditional_adm_needs_class_labels():
  config, params = _case('cond')
  with pytest.raises(ValueError, match='class labels'):
    get_model(config).apply({'params': params}, DATA['cond/x'], jnp.zeros(3))
