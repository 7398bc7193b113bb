"""`--mode=train_classifier` (classifier_lib.py): score_sde's noise-conditional classifier trained
on VE-perturbed digits learns, writes the file `sampling.classifier` reads, runs as one run on any
number of devices (four host devices give the one-device losses and weights to float rounding),
stops on SIGTERM or Ctrl-C after saving, and a resumed run repeats the uninterrupted one exactly
(state, input pipeline position and random streams restored). Bad data, a NaN loss and a second
run on the same folder stop in one line without saving."""
import json
import logging
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import presets, validate
from configs.quickstart import digits
import classifier_lib
import controllable_generation as cg
import datasets
from foreign import classifier
import modes
from models.wideresnet import NoiseConditionalWideResNet
from published_cases import ROOT
import run_lib
import sde_lib
import workdir_lock


def digits_ve_config(n_iters):
  """The quickstart digits with score_sde's VE recipe (bench/classifier_guidance.py's) and a
  1-block, width-×1 WideResnet."""
  config = digits.get_config()
  presets.ve(config)
  m, c = config.model, config.classifier
  m.precond, m.embedding_type, m.sigma_min, m.sigma_max = 'none', 'fourier', 0.01, 12.
  c.blocks_per_group, c.widen, c.n_iters, c.log_freq, c.snapshot_freq = 1, 1, n_iters, 40, 80
  return config


def small_config(n_iters):
  """digits_ve_config with batches of 8 and every step logged."""
  config = digits_ve_config(n_iters)
  config.training.batch_size, config.eval.batch_size = 8, 64
  config.classifier.log_freq, config.classifier.snapshot_freq = 1, n_iters
  return config


def _stats(folder):
  with open(os.path.join(folder, 'stats.jsonl')) as f:
    return [json.loads(line) for line in f]


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


def test_train_classifier_learns_writes_and_resumes(tmp_path):
  """Trained on VE-perturbed digits, the classifier labels nearly clean test digits far above
  chance and much better than very noisy ones; its file is what sampling.classifier reads; a
  second call resumes at the saved step."""
  config, workdir = digits_ve_config(120), str(tmp_path / 'run')
  params = modes.run('train_classifier', config, workdir)
  folder = tmp_path / 'run' / 'classifier'
  assert {'checkpoint_80', 'checkpoint_120', 'state.msgpack', 'stats.jsonl'} <= set(
      os.listdir(folder))
  assert [s['step'] for s in _stats(folder) if 'classifier_loss' in s] == [40, 80, 120]
  config.sampling.classifier = str(folder / 'checkpoint_120')
  module, read = classifier.read_for(config)
  for a, b in zip(jax.tree.leaves(read), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  split = datasets.digits_split()
  x, y = jnp.asarray(split['test_images']), split['test_labels']
  sde, _ = sde_lib.get_sde(config)
  def accuracy(sigma):
    noisy = x + sigma * jax.random.normal(jax.random.key(0), x.shape)
    logits = module.apply({'params': params}, cg.classifier_input(noisy), jnp.full(len(x), sigma))
    return float(np.mean(np.argmax(logits, -1) == y))
  clean, noisy = accuracy(0.05), accuracy(sde.sigma_max)
  print(f'accuracy at sigma 0.05: {clean:.2f}, at sigma_max: {noisy:.2f}')
  assert clean > 0.6 and clean > noisy + 0.3, (clean, noisy)
  config.classifier.n_iters = 130                     # resumes at 120 (state.msgpack)
  modes.run('train_classifier', config, workdir)
  assert 'checkpoint_130' in os.listdir(folder)
  assert [s['step'] for s in _stats(folder) if 'classifier_loss' in s][-2:] == [120, 130]


def test_an_edm_model_s_classifier_trains_over_its_sigma_range(tmp_path):
  """EDM's time is σ up to 80: trained at log-uniform σ (sde_lib.EDMSDE.classifier_times), the
  classifier labels nearly clean digits far above chance and much better than σ = 80 ones."""
  config = digits.get_config()                       # the quickstart: sde 'edm', σ_max 80
  c = config.classifier
  c.blocks_per_group, c.widen, c.n_iters, c.log_freq, c.snapshot_freq = 1, 1, 120, 40, 120
  params = modes.run('train_classifier', config, str(tmp_path / 'run'))
  config.sampling.classifier = str(tmp_path / 'run' / 'classifier' / 'checkpoint_120')
  module, _ = classifier.read_for(config)
  split = datasets.digits_split()
  x, y = jnp.asarray(split['test_images']) * 2. - 1., split['test_labels']   # centered data
  def accuracy(sigma):
    noisy = x + sigma * jax.random.normal(jax.random.key(0), x.shape)
    logits = module.apply({'params': params}, cg.classifier_input(noisy), jnp.full(len(x), sigma))
    return float(np.mean(np.argmax(logits, -1) == y))
  clean, noisy = accuracy(0.05), accuracy(80.)
  print(f'accuracy at sigma 0.05: {clean:.2f}, at sigma 80: {noisy:.2f}')
  assert clean > 0.6 and clean > noisy + 0.3, (clean, noisy)
  times = sde_lib.get_sde(config)[0].classifier_times(jax.random.key(1), (20000,), 0.002)
  quartiles = np.quantile(np.log(np.asarray(times)), [0.25, 0.5, 0.75])
  np.testing.assert_allclose(quartiles, np.log(0.002) + np.log(80. / 0.002) * np.array(
      [0.25, 0.5, 0.75]), atol=0.1)                 # log-uniform over [σ_min, σ_max]


@pytest.fixture
def sigint():
  """SIGINT's Python handler for the test (pytest-xdist workers ignore SIGINT, and an ignored
  signal stays ignored); the worker's setting restored afterwards."""
  before = signal.getsignal(signal.SIGINT)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_and_the_same_command_repeats_the_uninterrupted_run(
    tmp_path, monkeypatch, sigint, signum):
  """SIGTERM or Ctrl-C while the third batch is read: the run stops at step 3 with state.msgpack
  and no classifier file due, exits with 128 + the signal; the same command then ends with the
  uninterrupted run's classifier file, byte for byte."""
  del sigint
  config = small_config(6)
  modes.run('train_classifier', config, str(tmp_path / 'whole'))
  original, read = classifier_lib._global, []

  def signalled(run, element, axis):
    read.append(axis)
    if read.count(1) == 3:
      os.kill(os.getpid(), signum)
    return original(run, element, axis)
  folder = tmp_path / 'run' / 'classifier'
  with monkeypatch.context() as patch:
    patch.setattr(classifier_lib, '_global', signalled)
    with pytest.raises(SystemExit) as stop:
      modes.run('train_classifier', config, str(tmp_path / 'run'))
  assert stop.value.code == 128 + signum
  assert not any(f.startswith('checkpoint_') for f in os.listdir(folder))
  assert os.listdir(folder / 'checkpoints-data') == ['3']
  modes.run('train_classifier', config, str(tmp_path / 'run'))
  whole = tmp_path / 'whole' / 'classifier'
  assert _read(folder / 'checkpoint_6') == _read(whole / 'checkpoint_6')
  losses = [[s['classifier_loss'] for s in _stats(f) if 'classifier_loss' in s]
            for f in (folder, whole)]
  assert losses[0] == losses[1] and len(set(losses[1])) == 6


SCRIPT = """
import sys
import jax
import classifier_lib
sys.path.insert(0, 'tests')
from test_train_classifier import small_config
assert jax.device_count() == 4, jax.devices()
classifier_lib.train(small_config(4), sys.argv[1])
"""


def test_four_devices_match_one_device(tmp_path):
  """The batch of 8 over a 'data' mesh of four host devices: the one-device losses, evaluation
  accuracy and weights up to the reduction order (the random draws do not depend on the
  sharding). Weights within a tenth of one Adam step (lr 1e-3), but Adam divides by |g| + ε
  (ε = 1e-8): a gradient sum that cancels to ~1e-9 by chance (a few of 400k weights) turns a
  rounding difference of ~2e-9 into up to ~0.2 of a step (seen: one weight, 0.145). So: all
  within half a step, at most one in 10^4 beyond a tenth."""
  classifier_lib.train(small_config(4), str(tmp_path / 'one'))
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': os.environ.get('XLA_FLAGS', '') +
         ' --xla_force_host_platform_device_count=4'}
  out = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'four')], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=400)
  assert out.returncode == 0, out.stderr[-3000:]
  one, four = (_stats(tmp_path / name / 'classifier') for name in ('one', 'four'))
  for key in ('classifier_loss', 'classifier_accuracy', 'classifier_eval_accuracy'):
    a, b = ([s[key] for s in stats if key in s] for stats in (one, four))
    assert len(a) == (1 if key == 'classifier_eval_accuracy' else 4)
    np.testing.assert_allclose(b, a, rtol=2e-5)
  a, b = (flax_params(tmp_path / name / 'classifier' / 'checkpoint_4') for name in ('one', 'four'))
  diff = np.concatenate([np.abs(np.ravel(x) - np.ravel(y))
                         for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
  assert diff.max() < 5e-4 and np.mean(diff > 1e-4) <= 1e-4, (diff.max(), np.sum(diff > 1e-4))


def flax_params(path):
  import flax.serialization  # pylint: disable=import-outside-toplevel
  return flax.serialization.msgpack_restore(_read(path))


def test_each_file_records_its_noise_and_the_sampler_and_a_resume_check_it(tmp_path, caplog):
  """checkpoint_<step>.json holds the SDE, its parameters and the data scaling; a model of other
  noise is refused in one line (a record-less file: a warning), as is resuming the run with
  another noise; a VP classifier (on [-1, 1] digits) is written and read the same way."""
  config = small_config(2)
  classifier_lib.train(config, str(tmp_path / 'run'))
  path = str(tmp_path / 'run' / 'classifier' / 'checkpoint_2')
  with open(path + '.json') as f:
    assert json.load(f) == {'noise': {'training.sde': 'vesde', 'data.centered': False,
                                      'model.sigma_min': 0.01, 'model.sigma_max': 12.}}
  config.sampling.classifier = path
  classifier.read_for(config)
  other, vp = small_config(4), small_config(2)
  other.model.sigma_max, other.sampling.classifier = 50., path
  presets.vp(vp)
  vp.sampling.classifier = path
  for model, message in ((other, 'model.sigma_max=12.0.*this model samples.*sigma_max=50.0'),
                         (vp, 'training.sde=vesde.*this model samples training.sde=vpsde')):
    with pytest.raises(classifier.ClassifierFileError, match=message) as err:
      classifier.read_for(model)
    assert '\n' not in str(err.value) and 'train one on this noise' in str(err.value)
  with pytest.raises(validate.ConfigError, match='trains on .*sigma_max=12.0.*not on this config'):
    classifier_lib.train(other, str(tmp_path / 'run'))
  os.remove(path + '.json')
  with caplog.at_level(logging.WARNING):
    classifier.read_for(other)                 # score_sde's CIFAR-10 classifier's noise
    assert not caplog.text
    classifier.read_for(vp)
  assert 'has no record of the noise it was trained on' in caplog.text
  classifier_lib.train(vp, str(tmp_path / 'vp'))
  vp.sampling.classifier = str(tmp_path / 'vp' / 'classifier' / 'checkpoint_2')
  classifier.read_for(vp)


def test_bfloat16_convolutions_with_float32_parameters_statistics_and_logits(tmp_path):
  """classifier.dtype=bfloat16: every convolution runs in bfloat16, the logits come out float32
  and equal the float32 network's to bfloat16 rounding; training writes float32 parameters."""
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  sigma = jnp.array([0.01, 0.1, 1., 10.])
  nets = {d: NoiseConditionalWideResNet(1, 1, 10, d) for d in (jnp.float32, jnp.bfloat16)}
  params = nets[jnp.float32].init(jax.random.key(0), x, sigma)['params']
  logits = {d: net.apply({'params': params}, x, sigma) for d, net in nets.items()}
  assert logits[jnp.bfloat16].dtype == jnp.float32
  scale = float(jnp.abs(logits[jnp.float32]).max())
  diff = float(jnp.abs(logits[jnp.bfloat16] - logits[jnp.float32]).max())
  assert 0 < diff < 0.05 * scale, (diff, scale)
  jaxpr = jax.make_jaxpr(lambda p: nets[jnp.bfloat16].apply({'params': p}, x, sigma))(params)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'conv_general_dilated']   # 1 + 3 · 2
  assert len(convs) == 7 and all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)
  config = small_config(2)
  config.classifier.dtype = 'bfloat16'
  classifier_lib.train(config, str(tmp_path))
  saved = flax_params(tmp_path / 'classifier' / 'checkpoint_2')
  assert {v.dtype for v in jax.tree.leaves(saved)} == {np.dtype(np.float32)}
  assert all(np.isfinite(s['classifier_loss']) for s in _stats(tmp_path / 'classifier')
             if 'classifier_loss' in s)


def test_a_hostile_record_or_a_corrupt_state_is_one_line(tmp_path):
  """A noise record that is not JSON or not a record, and a truncated state.msgpack: one-line
  errors naming the file and the fix; the files are read as data (JSON, msgpack), nothing runs."""
  config = small_config(2)
  classifier_lib.train(config, str(tmp_path))
  path = str(tmp_path / 'classifier' / 'checkpoint_2')
  config.sampling.classifier = path
  for text in ('{"noise": ', '["noise"]', '{"other": 1}'):
    with open(path + '.json', 'w') as f:
      f.write(text)
    with pytest.raises(classifier.ClassifierFileError, match='is unreadable') as err:
      classifier.read_for(config)
    assert '\n' not in str(err.value) and 'delete it or write it again' in str(err.value)
  state = tmp_path / 'classifier' / 'state.msgpack'
  state.write_bytes(state.read_bytes()[:1000])
  config.classifier.n_iters = 4
  with pytest.raises(SystemExit) as stop:               # modes.run: one line, exit status 1
    modes.run('train_classifier', config, str(tmp_path))
  assert stop.value.code == 1 and os.path.getsize(state) == 1000   # nothing overwritten


def test_a_second_run_on_the_folder_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = workdir_lock.acquire(os.path.join(workdir, 'classifier'))
  try:
    with pytest.raises(SystemExit):
      modes.run('train_classifier', small_config(2), workdir)
  finally:
    holder.release()
  assert os.listdir(tmp_path / 'run' / 'classifier') == []


def test_train_classifier_needs_labels(tmp_path):
  folder = tmp_path / 'images'
  folder.mkdir()
  for i in range(4):
    Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f'{i}.png')
  config = digits_ve_config(2)
  config.data.dataset, config.data.path, config.training.batch_size = 'IMAGE_ZIP', str(folder), 4
  with pytest.raises(datasets.MalformedDataError, match='train_classifier needs labels'):
    classifier_lib.train(config, str(tmp_path / 'run'))


def test_train_classifier_stops_on_a_nan_loss_without_saving_it(tmp_path):
  config = digits_ve_config(4)
  config.classifier.lr, config.classifier.log_freq = 1e30, 2
  with pytest.raises(run_lib.TrainingDivergedError, match='Lower classifier.lr'):
    classifier_lib.train(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'classifier' / 'checkpoint_4').exists()
