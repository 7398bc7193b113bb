"""docs/design.md's "add a predictor" recipe, as written there: a predictor registered in this file
(no library file changes) samples through main.py's mode dispatch (`modes.run('sample', ...)`),
chosen by `config.sampling.predictor` alone.

The predictor is a deterministic Euler step of the probability-flow ODE (Song+21 Eq. 13), so it
must give the images of the built-in `euler_maruyama` predictor with `sampling.probability_flow`.
The network is freshly initialised and handed over as a params.msgpack (--checkpoint), the
cheapest checkpoint `--mode=sample` reads.
"""
import inspect
import pathlib

import flax.serialization
import jax
import numpy as np
import pytest

from configs import quicktest
from configs.quickstart import digits
import generate
from models import utils as mutils
import modes
import sampling


# --- the recipe (docs/design.md, "Add a predictor") -------------------------------------------
@sampling.register_predictor('flow_euler')
def flow_euler(sde, score_fn, probability_flow=False):
  """x ← x − f̃(x, t)·T/N: an Euler step of the probability-flow ODE (Song+21 Eq. 13), no noise."""
  del probability_flow                         # always the ODE
  flow = sde.reverse(score_fn, probability_flow=True)

  def update(x, t, noise):
    del noise                                  # deterministic: draws nothing
    drift, _ = flow.sde(x, t)
    x = x - drift * (sde.T / sde.N)
    return x, x                                # (x, x_mean)
  return update
# -----------------------------------------------------------------------------------------------


def _config(predictor):
  config = quicktest.shrink(digits.get_config())   # 8×8 digits, 10 noise levels, batch 2
  config.sampling.method = 'pc'
  config.sampling.predictor = predictor
  config.sampling.corrector = 'none'
  config.sampling.seeds = '0-3'                    # one file per seed ...
  config.sampling.image_format = 'npz'             # ... holding the float image, unclipped
  return config


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  """Freshly initialised parameters of the config's network, as a params.msgpack."""
  _, params = mutils.init_model(jax.random.key(0), _config('flow_euler'))
  path = tmp_path_factory.mktemp('ckpt') / 'params.msgpack'
  path.write_bytes(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
  return str(path)


def _sample(config, workdir, checkpoint):
  """main.py --mode=sample --checkpoint=... with `config`: the images of seeds 0..3."""
  modes.run('sample', config, str(workdir), checkpoint=checkpoint, eval_folder='eval')
  out = workdir / 'samples' / 'seeds_0'
  return np.stack([np.load(generate.seed_path(out, seed, 'npz'))['x'] for seed in range(4)])


def test_registered_predictor_samples_through_the_sample_mode(tmp_path, checkpoint):
  ours = _sample(_config('flow_euler'), tmp_path / 'ours', checkpoint)
  assert ours.shape == (4, 8, 8, 1) and np.isfinite(ours).all()
  config = _config('euler_maruyama')
  config.sampling.probability_flow = True
  builtin = _sample(config, tmp_path / 'builtin', checkpoint)
  np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-5)   # the same ODE step


def test_unknown_predictor_lists_the_registered_ones(tmp_path, checkpoint, caplog):
  with pytest.raises(SystemExit) as stop:             # one line, exit status 1 (modes.run)
    _sample(_config('flow_eulr'), tmp_path, checkpoint)
  assert stop.value.code == 1
  for name in ('flow_euler', 'euler_maruyama', 'reverse_diffusion', 'ancestral_sampling'):
    assert name in caplog.text


def test_the_recipe_in_docs_is_this_code():
  design = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'design.md'
  assert inspect.getsource(flow_euler) in design.read_text(encoding='utf-8')
