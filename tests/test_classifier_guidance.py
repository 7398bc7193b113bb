"""Class-conditional sampling with score_sde's noise-conditional classifier (Song+21 App. I.4,
Eq. 14), against the official JAX code (tools/make_classifier_fixture.py: yang-song/score_sde's
WideResnet and get_pc_conditional_sampler on small random-weight networks, every Gaussian draw of
its loop stored). Here the same two files go through `--mode=sample --checkpoint=FILE
--config.sampling.classifier=FILE` with the draws replayed through `sampling.step_normal`, and a
bad classifier file or setting is one line before any work (`--mode=train_classifier`:
test_train_classifier.py)."""
import glob
import json
import os
import subprocess
import sys

import flax.serialization
import jax.numpy as jnp
import numpy as np
import pytest

from configs import validate
import controllable_generation as cg
from foreign import classifier, load
import generate
import modes
from published_cases import ROOT, base_config
import sampling
import sde_lib

ROOTS = {'ve': os.path.join(ROOT, 'tests', 'fixtures', 'classifier'),      # [0, 1] data
         'vp': os.path.join(ROOT, 'tests', 'fixtures', 'classifier', 'vp')}   # [-1, 1] data
FIXTURE = ROOTS['ve']
CLASSIFIER = os.path.join(FIXTURE, 'classifier_checkpoint_1')
TOLERANCE = 1e-3     # max abs difference of the sampler's x (unclipped: values up to ±12 / ±28)


def fixture(case='ve'):
  with open(os.path.join(ROOTS[case], 'settings.json')) as f:
    settings = json.load(f)
  return settings, dict(np.load(os.path.join(ROOTS[case], 'reference.npz')))


def config_of(case='ve'):
  settings, _ = fixture(case)
  config = base_config(settings['base_config'])
  load.apply_fields(config, settings['overrides'])
  config.sampling.classifier = os.path.join(ROOTS[case], 'classifier_checkpoint_1')
  return config


@pytest.mark.parametrize('case', sorted(ROOTS))
def test_wideresnet_gives_the_official_logits(case):
  """Our WideResnet on the official file (architecture read from it) and score_sde's
  get_logit_fn preprocessing: the official logits."""
  _, ref = fixture(case)
  module, params = classifier.read(config_of(case).sampling.classifier)
  assert (module.blocks_per_group, module.widen, module.num_classes) == (1, 1, 10)
  logits = module.apply({'params': params}, cg.classifier_input(ref['inputs']), ref['sigmas'])
  scale = np.abs(ref['logits']).max()
  np.testing.assert_allclose(logits, ref['logits'], rtol=1e-5, atol=1e-5 * scale)


def sample(tmp_path, monkeypatch, case='ve', scale=1.):
  """Our x [4, 8, 8, 3] for the fixture's latents, labels and draws through modes.run('sample')."""
  _, ref = fixture(case)
  config = config_of(case)
  config.sampling.classifier_scale = scale
  noise, labels = jnp.asarray(ref['noise']), jnp.asarray(ref['labels'])
  monkeypatch.setattr(sampling, 'step_normal', lambda keys, i, j, shape: noise[i, j])
  monkeypatch.setattr(sampling, 'class_labels', lambda config, keys: labels[:len(keys)])
  np.save(tmp_path / 'latents.npy', ref['latents'])
  s = config.sampling
  s.seeds, s.image_format, s.latents = '0-3', 'npz', str(tmp_path / 'latents.npy')
  config.eval.batch_size = 4
  workdir = str(tmp_path / 'run')
  modes.run('sample', config, workdir, checkpoint=os.path.join(ROOTS[case], 'checkpoint_1'))
  out_dir, = glob.glob(os.path.join(workdir, 'samples', 'seeds_*'))
  with open(os.path.join(out_dir, 'class_labels.json')) as f:
    recorded = json.load(f)
  x = np.stack([np.load(generate.seed_path(out_dir, i, 'npz'))['x'] for i in range(4)])
  return x, ref, recorded


@pytest.mark.parametrize('case', sorted(ROOTS))
def test_official_class_conditional_samples(tmp_path, monkeypatch, case):
  """VE NCSN++ with reverse diffusion + Langevin; VP DDPM++ with Euler-Maruyama + Langevin, the
  classifier given VP's marginal std as score_sde's conditional sampler gives it."""
  ours, ref, recorded = sample(tmp_path, monkeypatch, case)
  diff = float(np.abs(ours - ref['images']).max())
  print(f'max |ours - official| = {diff:.2e} (x up to {np.abs(ref["images"]).max():.1f})')
  assert diff <= TOLERANCE, diff
  assert recorded == {str(i): int(label) for i, label in enumerate(ref['labels'])}


@pytest.mark.parametrize('case', sorted(ROOTS))
def test_the_classifier_term_is_visible(tmp_path, monkeypatch, case):
  """The same run without the classifier's gradient (scale 0) is far from the official one."""
  ours, ref, _ = sample(tmp_path, monkeypatch, case, scale=0.)
  assert float(np.abs(ours - ref['images']).max()) > 100 * TOLERANCE


def _write(path, tree):
  path.write_bytes(flax.serialization.msgpack_serialize(tree))
  return str(path)


def test_bad_classifier_files_are_one_line(tmp_path):
  module_tree = flax.serialization.msgpack_restore(open(CLASSIFIER, 'rb').read())
  text = tmp_path / 'notes.txt'
  text.write_text('not a checkpoint')
  truncated = tmp_path / 'truncated'
  truncated.write_bytes(open(CLASSIFIER, 'rb').read()[:5000])
  score_model = os.path.join(FIXTURE, 'checkpoint_1')
  wrong = dict(module_tree, Dense_2={'kernel': np.zeros((64, 10), np.float32),
                                     'bias': np.zeros(3, np.float32)})
  cases = {str(tmp_path / 'missing'): 'does not exist', str(text): 'not a Flax msgpack',
           str(truncated): 'not a Flax msgpack', score_model: 'no noise-conditional WideResnet',
           _write(tmp_path / 'wrong', wrong): r'Dense_2/bias: \(3,\) in the file, \(10,\)',
           str(tmp_path): 'is a directory'}
  for path, message in cases.items():
    with pytest.raises(classifier.ClassifierFileError, match=message) as err:
      classifier.read(path)
    assert '\n' not in str(err.value) and 'sampling.classifier=' in str(err.value)
  extra = _write(tmp_path / 'extra', dict(module_tree, step=np.int64(7)))   # ignored, as score_sde
  _, params = classifier.read(extra)
  assert 'step' not in params and len(params) == len(classifier.read(CLASSIFIER)[1])
  config = config_of()
  config.data.num_classes = 5
  with pytest.raises(classifier.ClassifierFileError, match='--config.data.num_classes=10'):
    cg.get_classifier_guide(config, sde_lib.get_sde(config)[0])


def messages(config, mode):
  return ' '.join(m for _, m in validate.violations(config, mode))


def test_classifier_rules():
  config = config_of()
  config.sampling.class_label = 3                    # a classifier's class: allowed
  assert messages(config, 'sample') == ''
  config.sampling.class_label = 10
  assert 'data.num_classes = 10' in messages(config, 'sample')
  config.sampling.class_label = -1
  assert messages(config_of('vp'), 'sample') == ''   # VP on [-1, 1] data: allowed
  config.training.pfgmpp_D = 128.                    # PFGM++'s kernel is not Gaussian
  assert 'needs Gaussian noise' in messages(config, 'sample')
  assert 'needs Gaussian noise' in messages(config, 'train_classifier')
  config.training.pfgmpp_D, config.training.sde = float('inf'), 'edm'   # time = σ: allowed
  assert 'Gaussian' not in messages(config, 'train_classifier')
  config.training.sde, config.model.class_conditional = 'vesde', True
  assert 'guides an unconditional model' in messages(config, 'sample')
  assert 'do not use sampling.classifier' in messages(config_of(), 'inpaint')


def test_main_refuses_a_bad_classifier_before_any_work(tmp_path):
  workdir = tmp_path / 'untouched'
  bad = tmp_path / 'classifier.txt'
  bad.write_text('not a checkpoint')
  cmd = [sys.executable, 'main.py', '--config=configs/ve/cifar10_ncsnpp_continuous.py',
         '--mode=sample', f'--workdir={workdir}', f'--config.sampling.classifier={bad}']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0 and not workdir.exists()
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f'FATAL sampling.classifier={bad}') and 'msgpack' in last, last
