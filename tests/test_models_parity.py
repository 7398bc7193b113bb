"""Parity of our `ncsnpp` / `ddpm` with the official score_sde networks, through `foreign.score_sde`.

The fixture (tools/make_model_fixtures.py) holds tiny official nets with random weights (every
layer, zero-initialised ones included), fixed inputs and the official outputs:
  torch/<case>: yang-song/score_sde_pytorch state dicts  -> convert_pytorch
  flax/<case>:  yang-song/score_sde old-style param trees -> convert_flax
Torch is not needed here. Each case must agree to a relative error < 1e-4.
"""
import json
import os

import flax
import flax.serialization
import jax
import ml_collections
import numpy as np
import pytest

from foreign import load
import models  # registers  # pylint: disable=unused-import
from foreign import score_sde
from models.utils import get_model

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'models_torch.npz')


def _cases():
  with np.load(FIXTURE) as f:
    return sorted({k.rsplit('/', 1)[0] for k in f.files if k.endswith('/config')})


def _load(case):
  with np.load(FIXTURE) as f:
    prefix = case + '/param/'
    params = {k[len(prefix):]: f[k].astype(np.float32) for k in f.files if k.startswith(prefix)}
    config = ml_collections.ConfigDict(json.loads(str(f[case + '/config'])))
    config.model.update(patch_coords=False, class_conditional=False, augment_dim=0,   # newer fields
                      dtype='float32', remat='none')
    return config, params, f[case + '/x'], f[case + '/labels'], f[case + '/out']


@pytest.mark.parametrize('case', _cases())
def test_matches_official(case):
  config, old, x, labels, expected = _load(case)
  if case.startswith('torch/'):
    params = score_sde.convert_pytorch(old, config)
  else:
    params = score_sde.convert_flax(flax.traverse_util.unflatten_dict(old, sep='/'), config)
  out = jax.jit(lambda p: get_model(config).apply({'params': p}, x, labels, train=False))(params)
  err = np.linalg.norm(np.asarray(out) - expected) / np.linalg.norm(expected)
  assert err < 1e-4, f'{case}: relative error {err:.2e}'


def test_converter_rejects_a_mismatched_checkpoint():
  config, old, *_ = _load('torch/ncsnpp_ve')
  config.model.nf = 16
  with pytest.raises(ValueError, match='official shape'):
    score_sde.convert_pytorch(old, config)


def test_converter_reports_unused_weights():
  config, old, *_ = _load('torch/ncsnpp_ve')
  old['all_modules.99.weight'] = np.zeros((3,), np.float32)
  with pytest.raises(ValueError, match='not used'):
    score_sde.convert_pytorch(old, config)


def test_unknown_model_name_lists_converters():
  config, old, *_ = _load('torch/ncsnpp_ve')
  config.model.name = 'nope'
  with pytest.raises(KeyError, match='ncsnpp'):
    score_sde.convert_pytorch(old, config)


def test_ema_shadow_params_skip_buffers_and_frozen_fourier_weights():
  config, old, *_ = _load('torch/ncsnpp_ve')
  state = {'sigmas': np.ones(1000, np.float32), **old}
  trainable = [k for k in old if k != 'all_modules.0.W']  # the Fourier W has requires_grad=False
  shadow = [old[k] + 1 for k in trainable]
  merged = score_sde.ema_state_dict(state, shadow)
  np.testing.assert_array_equal(merged['all_modules.0.W'], old['all_modules.0.W'])
  np.testing.assert_array_equal(merged['sigmas'], state['sigmas'])
  for k in trainable:
    np.testing.assert_array_equal(merged[k], old[k] + 1)
  score_sde.convert_pytorch(merged, config)
  with pytest.raises(ValueError, match='EMA'):
    score_sde.ema_state_dict(state, shadow + [np.zeros((7, 7))])


def test_flax_checkpoint_file_reads_ema_or_raw_params(tmp_path):
  config, old, *_ = _load('flax/ncsnpp_ve')
  tree = flax.traverse_util.unflatten_dict(old, sep='/')
  raw = jax.tree.map(lambda v: v + 1, tree)
  state = {'step': 7, 'optimizer': {'target': raw, 'state': {'step': 7}}, 'lr': 2e-4,
           'model_state': {}, 'ema_rate': 0.999, 'params_ema': tree, 'rng': np.zeros(2, np.uint32)}
  path = tmp_path / 'checkpoint_26'
  path.write_bytes(flax.serialization.msgpack_serialize(state))
  ema = score_sde.convert_flax(score_sde.load_flax_checkpoint(str(path)), config)
  np.testing.assert_array_equal(ema['conv_in']['kernel'], tree['Conv_0']['kernel'])
  params = score_sde.convert_flax(score_sde.load_flax_checkpoint(str(path), ema=False), config)
  np.testing.assert_array_equal(params['conv_in']['kernel'], raw['Conv_0']['kernel'])
  given = load.load(str(path), config)          # what --checkpoint=checkpoint_26 reads
  assert given.step == 7 and given.adam is None
  np.testing.assert_array_equal(given.params['conv_in']['kernel'], tree['Conv_0']['kernel'])
  np.testing.assert_array_equal(given.train_params['conv_in']['kernel'], raw['Conv_0']['kernel'])
