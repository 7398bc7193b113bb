"""ncsn* / ncsnv2_* against the official code, through the checkpoint converters (no torch here).

tests/fixtures/refinenet_torch.npz holds, per case, the config, the official weight names and
shapes with the seed that `tools/make_refinenet_fixtures.fill_weights` draws them from, inputs,
integer noise labels and the official float64 output:
  torch.*  ermongroup/ncsn, ermongroup/ncsnv2 (score_sde_pytorch cross-checked equal) state dicts
  flax.*   score_sde's Flax modules (its two NCSN bugs fixed, InstanceNorm++ with ddof=1,
           nearest-neighbour upsampling; see the tool's docstring).
"""
import importlib.util
import json
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from foreign import score_sde, score_sde_refinenet
from models.utils import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'refinenet_torch.npz')


def _tool():
  path = os.path.join(ROOT, 'tools', 'make_refinenet_fixtures.py')
  spec = importlib.util.spec_from_file_location('make_refinenet_fixtures', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


fill_weights = _tool().fill_weights

with np.load(FIXTURE) as _f:
  DATA = {k: _f[k] for k in _f.files}
CASES = sorted({k.split('/')[0] for k in DATA})


def _case(case):
  config = ml_collections.ConfigDict(json.loads(str(DATA[f'{case}/config'])))
  config.model.update(patch_coords=False, class_conditional=False, augment_dim=0,   # newer fields
                      dtype='float32', remat='none')
  spec = json.loads(str(DATA[f'{case}/weights']))
  weights = fill_weights(spec['shapes'], spec['seed'])
  return config, weights, DATA[f'{case}/x'], DATA[f'{case}/labels'], DATA[f'{case}/out']


def _convert(case, weights, config):
  if case.startswith('torch.'):
    return score_sde.convert_pytorch(weights, config)
  tree = traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in weights.items()})
  return score_sde.convert_flax({'params': tree}, config)


def test_fixture_covers_every_refinenet_model():
  assert set(CASES) == {'torch.ncsn_torch', 'torch.ncsnv2_64_torch', 'torch.ncsnv2_128',
                        'torch.ncsnv2_256', 'flax.ncsn', 'flax.ncsnv2_64', 'flax.ncsnv2_128',
                        'flax.ncsnv2_256'}


@pytest.mark.parametrize('case', CASES)
def test_matches_official_output(case):
  config, weights, x, labels, ref = _case(case)
  params = _convert(case, weights, config)
  out = np.asarray(get_model(config).apply({'params': params}, jnp.asarray(x),
                                           jnp.asarray(labels)), np.float64)
  assert out.shape == ref.shape
  rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
  assert rel < 1e-4, f'{case}: relative error {rel:.2e}'


def test_float_labels_are_indices():
  """score_sde's discrete VE score function passes round((T − t)(N − 1)) as a float."""
  config, weights, x, labels, ref = _case('torch.ncsnv2_64_torch')
  params = _convert('torch.ncsnv2_64_torch', weights, config)
  out = get_model(config).apply({'params': params}, jnp.asarray(x),
                                jnp.asarray(labels, jnp.float32))
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_torch_layout_into_score_sde_layout_is_refused_with_a_hint():
  config, weights, *_ = _case('torch.ncsnv2_64_torch')
  config.model.name = 'ncsnv2_64'
  with pytest.raises(ValueError, match="model.name = 'ncsnv2_64_torch'"):
    score_sde_refinenet.torch_to_params(weights, config)


def test_incomplete_flax_tree_is_refused():
  config, weights, *_ = _case('flax.ncsnv2_64')
  weights.pop(sorted(weights)[0])
  with pytest.raises(ValueError, match='lacks'):
    _convert('flax.ncsnv2_64', weights, config)
