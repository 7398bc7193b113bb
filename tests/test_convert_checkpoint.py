"""tools/convert_checkpoint.py: an official score_sde_pytorch checkpoint (the stored fixture of
tests/fixtures/published/score_sde_ode, written by the official code) becomes a params.msgpack
equal to what every main.py mode reads from the same file (foreign.load, checked against the
official outputs in test_published_checkpoints.py); bad input is one line and exit status 1."""
import json
import os
import sys

import flax.serialization
import jax
import numpy as np
import pytest

from foreign import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = os.path.join(ROOT, 'tests', 'fixtures', 'published', 'score_sde_ode')
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import convert_checkpoint  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def config_file(tmp_path):
  """A config file for the fixture's network: its base config with the stored overrides."""
  with open(os.path.join(CASE, 'settings.json')) as f:
    settings = json.load(f)
  base = os.path.join(ROOT, settings['base_config'])
  overrides = json.dumps(settings['overrides'])
  path = tmp_path / 'config.py'
  path.write_text(
      'import importlib.util, json\n'
      'from foreign import load\n\n\n'
      'def get_config():\n'
      f'  spec = importlib.util.spec_from_file_location("base", {base!r})\n'
      '  module = importlib.util.module_from_spec(spec)\n'
      '  spec.loader.exec_module(module)\n'
      f'  return load.apply_fields(module.get_config(), json.loads({overrides!r}))\n')
  return str(path)


def test_the_converted_params_are_what_main_py_reads(config_file, tmp_path, capsys):
  checkpoint = os.path.join(CASE, 'checkpoint_1.pth')
  out = tmp_path / 'out'
  assert convert_checkpoint.main([f'--config={config_file}', f'--checkpoint={checkpoint}',
                                  f'--out={out}']) == 0
  assert '48,275 parameters of ncsnpp' in capsys.readouterr().out   # DDPM++ is ncsnpp here
  converted = flax.serialization.msgpack_restore((out / 'params.msgpack').read_bytes())
  expected = load.load(checkpoint, convert_checkpoint.load_config(config_file)).params
  assert jax.tree.structure(converted) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(converted), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(got, np.asarray(want, np.float32))
  assert json.loads((out / 'config.json').read_text())['model']['nf'] == 8


def test_bad_input_is_one_line_and_exit_status_1(config_file, tmp_path, capsys):
  garbage = tmp_path / 'garbage.pth'
  garbage.write_bytes(b'\x80garbage')
  checkpoint = os.path.join(CASE, 'checkpoint_1.pth')
  (tmp_path / 'taken').write_text('a file')
  cases = [([f'--config={config_file}', f'--checkpoint={tmp_path}/missing.pth'], 'missing.pth'),
           ([f'--config={config_file}', f'--checkpoint={garbage}'],
            'garbage.pth: not a pickle or torch.save file'),
           ([f'--config={config_file}', f'--checkpoint={tmp_path}'], 'IsADirectoryError'),
           ([f'--config={tmp_path}/none.py', f'--checkpoint={checkpoint}'], 'cannot load --config'),
           ([f'--config={ROOT}/configs/quickstart/digits.py', f'--checkpoint={checkpoint}'],
            'official shape'),
           ([f'--config={config_file}', f'--checkpoint={checkpoint}'], 'cannot write --out')]
  for k, (args, match) in enumerate(cases):
    out = tmp_path / 'taken' if k == len(cases) - 1 else tmp_path / f'out{k}'
    with pytest.raises(SystemExit) as exit_:
      convert_checkpoint.main([*args, f'--out={out}'])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and match in err and err.count('\n') == 1, (args, err)
