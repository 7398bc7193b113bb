"""End to end: train and evaluate a tiny digits run through run_lib (what main.py dispatches to).

One module-scoped training run (4 steps, checkpoints at 2 and 4) and one evaluation of both
checkpoints (loss, bits/dim, digits Fréchet distance) are shared by the tests below; the other
tests copy that run directory before changing anything.
"""
import contextlib
import gc
import json
import logging as pylogging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

from absl import logging
import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import checkpointing
import data_state
import datasets
import eval_lib
import losses
import modes
from configs import quicktest
from configs.quickstart import digits
import run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  config = quicktest.shrink(digits.get_config())
  t = config.training
  t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 4, 2, 2
  e = config.eval
  e.begin_ckpt, e.end_ckpt = 1, 2
  e.enable_loss = e.enable_bpd = e.enable_sampling = True
  e.batch_size, e.num_samples = 99, 198          # 3 batches of the 297 test digits; 2 rounds
  config.sampling.ode_rtol = config.sampling.ode_atol = 1e-1   # a short bpd ODE solve
  config.sampling.steps = 4
  return config


@contextlib.contextmanager
def _capture(module, name):
  """Record the return values of `module.name` while the context is open."""
  seen, original = [], getattr(module, name)

  def wrapper(*args, **kwargs):
    seen.append(original(*args, **kwargs))
    return seen[-1]
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(module, name, wrapper)
    yield seen


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Trained through a relative --workdir, as the README's quickstart command passes it."""
  workdir = tmp_path_factory.mktemp('run')
  with _capture(run_lib, 'make_train_fns') as fns, pytest.MonkeyPatch.context() as mp:
    mp.chdir(workdir.parent)
    run_lib.train(_config(), workdir.name)
  return str(workdir), fns[0]


@pytest.fixture(scope='module')
def evaluated(trained):
  workdir, _ = trained
  with pytest.MonkeyPatch.context() as mp:
    mp.chdir(os.path.dirname(workdir))
    eval_lib.evaluate(_config(), os.path.basename(workdir), 'eval')
  return workdir


def _jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _copy(workdir, tmp_path):
  dst = str(tmp_path / 'run')
  shutil.copytree(workdir, dst)
  return dst


def test_train_writes_the_run_directory(trained):
  workdir, _ = trained
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['training']['n_iters'] == 4
  stats = _jsonl(os.path.join(workdir, 'stats.jsonl'))
  assert [s['step'] for s in stats if 'loss' in s] == [1, 2, 3, 4]
  assert [s['step'] for s in stats if 'eval_loss' in s] == [1, 2, 3, 4]
  assert all(np.isfinite(s.get('loss', s.get('eval_loss'))) for s in stats)
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(f'{workdir}/tensorboard'))
  for step in (2, 4):
    assert os.path.isfile(f'{workdir}/samples/iter_{step}.png')
    assert np.load(f'{workdir}/samples/iter_{step}.npz')['samples'].shape == (2, 8, 8, 1)
  assert checkpointing.kept_manager(workdir).all_steps() == [2, 4]
  assert checkpointing.meta_manager(workdir).all_steps() == [4]


def test_resumed_training_is_fed_from_the_saved_pipeline_position(trained, tmp_path, monkeypatch,
                                                                  recorded_batches):
  """A resume at step 4 gets the batches of steps 5 and 6 of an uninterrupted pipeline without
  replaying it (data_state.py; Dataset.skip is refused)."""
  workdir, config = _copy(trained[0], tmp_path), _config()
  assert sorted(os.listdir(os.path.join(workdir, data_state.DATA))) == ['2', '4']
  train, _ = datasets.get_dataset(config, uniform_dequantization=config.data.uniform_dequantization)
  expected = [b['image'] for b in train.take(6).as_numpy_iterator()][4:]
  calls = recorded_batches                 # the training, then the eval batches
  monkeypatch.setattr(tf.data.Dataset, 'skip', None)
  config.training.n_iters = 6
  assert int(run_lib.train(config, workdir).step) == 6
  assert [len(c) for c in calls] == [2, 2]     # eval_freq = 1
  for want, got in zip(expected, calls[0]):
    np.testing.assert_array_equal(got, datasets.get_data_scaler(config)(want))


def test_a_resume_with_another_batch_size_starts_the_data_again(trained, tmp_path, monkeypatch,
                                                                 caplog):
  """The saved pipeline position holds batches of the old size (tf.data restored it and failed at
  the first batch): the data start from their beginning instead, logged, never replayed."""
  workdir, config = _copy(trained[0], tmp_path), _config()
  config.training.batch_size *= 2
  config.training.n_iters = 6
  monkeypatch.setattr(tf.data.Dataset, 'skip', None)
  with caplog.at_level(logging.WARNING):
    assert int(run_lib.train(config, workdir).step) == 6
  assert 'was saved for another pipeline' in caplog.text
  assert f'elements.train.image [1, {config.training.batch_size // 2}' in caplog.text


def test_a_resume_that_n_jitted_steps_does_not_divide_is_refused(trained, tmp_path, caplog):
  """Stopped at step 4 with 1 step per call, resumed with 3: steps 7, 10, ... would never be a
  log, eval or checkpoint step. One line naming the fix, nothing written."""
  workdir, config = _copy(trained[0], tmp_path), _config()
  t = config.training
  t.n_jitted_steps, t.n_iters = 3, 12
  t.log_freq = t.eval_freq = t.snapshot_freq = t.snapshot_freq_for_preemption = 3
  with open(f'{workdir}/config.json') as f:
    before = f.read()
  with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
    modes.run('train', config, workdir, checkpoint='')
  assert 'resumes at step 4, which training.n_jitted_steps = 3 does not divide' in caplog.text
  assert '--config.training.n_iters=6' in caplog.text
  with open(f'{workdir}/config.json') as f:
    assert f.read() == before
  assert checkpointing.kept_manager(workdir).all_steps() == [2, 4]


def test_train_step_compiles_once(trained):
  _, fns = trained
  assert fns.jitted_step._cache_size() == 1     # pylint: disable=protected-access


def test_a_run_on_trees_ends_where_the_flat_run_ends(tmp_path):
  """training.flat_params off and on (the default): the final TrainStates have the same trees,
  and their values agree to float rounding (Adam amplifies summation-order differences)."""
  finals = []
  for flat in (True, False):
    config = _config()
    config.training.flat_params, config.training.snapshot_sampling = flat, False
    finals.append(run_lib.train(config, str(tmp_path / f'flat_{flat}')))
  assert jax.tree.structure(finals[0]) == jax.tree.structure(finals[1])
  assert int(finals[0].step) == int(finals[1].step) == 4
  for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1])):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)


def test_evaluate_writes_results_per_checkpoint(evaluated):
  eval_dir = os.path.join(evaluated, 'eval')
  for step in (2, 4):
    with open(f'{eval_dir}/report_{step}.json') as f:
      info = json.load(f)
    assert info['step'] == step
    assert np.isfinite(info['eval_loss']) and 0 < info['bpd'] < 100
    metrics = info['sample_metrics']
    assert metrics['digits_fd_equal_n'] > metrics['digits_fd_equal_n_real_test']   # n = 198
    report = np.load(f'{eval_dir}/report_{step}.npz')
    assert len(report['all_losses']) == 3 and report['bpd'].shape == (297,)
    work = f'{eval_dir}/step_{step}'
    assert len(np.load(f'{work}/loss.npz')['all_losses']) == 3
    np.testing.assert_array_equal(np.load(f'{work}/bpd_0_2.npz')['bpd'], report['bpd'][198:])
    assert np.load(f'{work}/samples_1.npz')['samples'].shape == (99, 8, 8, 1)
    assert np.load(f'{work}/statistics_1.npz')['features'].shape == (99, 64)
  stats = _jsonl(f'{eval_dir}/stats.jsonl')
  assert [s['step'] for s in stats] == [2, 4] and 'sample/digits_fd' in stats[0]


def test_evaluate_skips_finished_checkpoints(evaluated):
  before = os.path.getmtime(f'{evaluated}/eval/step_2/loss.npz')
  eval_lib.evaluate(_config(), evaluated, 'eval')
  assert os.path.getmtime(f'{evaluated}/eval/step_2/loss.npz') == before
  assert len(_jsonl(f'{evaluated}/eval/stats.jsonl')) == 2


def _corrupt(step_dir):
  """Truncate every data file of an orbax checkpoint directory."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      if name not in ('_CHECKPOINT_METADATA', 'commit_success.txt'):
        with open(os.path.join(root, name), 'r+b') as f:
          f.truncate(0)


def test_corrupt_checkpoint_is_reported_and_skipped(trained, tmp_path, caplog):
  workdir = _copy(trained[0], tmp_path)
  _corrupt(f'{workdir}/checkpoints/2')
  config = _config()
  config.eval.enable_bpd = config.eval.enable_sampling = False
  with caplog.at_level(logging.INFO):
    eval_lib.evaluate(config, workdir, 'eval_corrupt')
  assert f'{workdir}/checkpoints/2' in caplog.text
  assert not os.path.exists(f'{workdir}/eval_corrupt/report_2.json')
  with open(f'{workdir}/eval_corrupt/report_4.json') as f:
    assert np.isfinite(json.load(f)['eval_loss'])
  assert os.path.isdir(f'{workdir}/checkpoints/2')      # reported, never deleted
  # Resuming training skips unreadable checkpoints the same way: the newest readable one wins.
  _corrupt(f'{workdir}/checkpoints-meta/4')
  _corrupt(f'{workdir}/checkpoints/4')
  run = run_lib.build(config)
  managers = (checkpointing.meta_manager(workdir), checkpointing.kept_manager(workdir))
  with pytest.raises(checkpointing.CheckpointReadError) as refused:   # none readable: no
    checkpointing.restore_latest(managers, run_lib._abstract_state(run))  # fresh start beside them
  assert 'none of the 3 checkpoints in' in str(refused.value) and '\n' not in str(refused.value)
  assert f'{workdir}/checkpoints-meta/4' in caplog.text


def test_another_configs_workdir_is_refused_before_anything_is_written(trained, tmp_path):
  """Training with a changed network in a run's workdir used to log each checkpoint as
  unreadable, start afresh and save its own checkpoints beside the run's, over its config.json."""
  workdir = _copy(trained[0], tmp_path)
  before = {name: sorted(os.listdir(f'{workdir}/{name}'))
            for name in ('checkpoints', 'checkpoints-meta', 'checkpoints-data')}
  with open(f'{workdir}/config.json') as f:
    config_json = f.read()
  config = _config()
  config.model.nf //= 2
  with pytest.raises(checkpointing.CheckpointReadError) as refused:
    run_lib.train(config, workdir)
  message = str(refused.value)
  assert '\n' not in message and 'none of the 3 checkpoints in' in message, message
  assert re.search(r'conv_in/bias is \(\d+,\) there, \(\d+,\) here', message), message
  assert 'config.json' in message and 'new --workdir' in message
  with open(f'{workdir}/config.json') as f:
    assert f.read() == config_json
  assert before == {name: sorted(os.listdir(f'{workdir}/{name}')) for name in before}


@pytest.fixture
def sigint():
  """Sets SIGINT's handler for the test (pytest-xdist workers ignore SIGINT, and an ignored
  signal stays ignored by training); the worker's setting restored afterwards."""
  if threading.current_thread() is not threading.main_thread():
    pytest.skip('signal handlers need the main thread')
  before = signal.getsignal(signal.SIGINT)
  yield lambda handler: signal.signal(signal.SIGINT, handler)
  signal.signal(signal.SIGINT, before)


def _signal_at_third_batch(monkeypatch, signals):
  """run_lib.global_batches sending this process `signals` in turn while the third training
  batch is read."""
  batches, made = run_lib.global_batches, []

  def signalled(elements, run, axis):
    made.append(elements)                  # the first one made is the training stream
    train = len(made) == 1
    for i, x in enumerate(batches(elements, run, axis)):
      if i == 2 and train:
        for signum in signals:
          os.kill(os.getpid(), signum)
      yield x
  monkeypatch.setattr(run_lib, 'global_batches', signalled)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_saves_a_resume_checkpoint_and_the_same_command_goes_on(
    tmp_path, monkeypatch, info_log, sigint, signum):
  """A preempted VM, `scancel` or Kubernetes sends SIGTERM, a user Ctrl-C: training saves at the
  next step boundary (step 3, between the resume points every 6 steps), exits with 128 + the
  signal (143, 130), and the same command resumes from step 3."""
  import modes  # pylint: disable=import-outside-toplevel
  sigint(signal.default_int_handler)
  workdir = str(tmp_path / 'run')
  handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  config = _config()
  t = config.training
  t.n_iters = t.snapshot_freq = t.snapshot_freq_for_preemption = 6
  t.snapshot_sampling = False
  with monkeypatch.context() as patch:
    _signal_at_third_batch(patch, [signum])
    with pytest.raises(SystemExit) as stop:
      modes.run('train', config, workdir, checkpoint='')
  assert stop.value.code == 128 + signum
  name = signal.Signals(signum).name
  assert f'{name}: stopped at step 3 after saving a resume checkpoint' in info_log.text
  assert sorted(os.listdir(f'{workdir}/checkpoints-meta')) == ['3']
  assert not os.path.exists(f'{workdir}/checkpoints')      # no kept checkpoint was due
  assert {s: signal.getsignal(s) for s in handlers} == handlers   # the handlers before, again
  state = run_lib.train(config, workdir)
  assert int(state.step) == 6 and f'resumed from {workdir}/checkpoints-meta/3' in info_log.text


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch, sigint):
  sigint(signal.default_int_handler)
  config = _config()
  t = config.training
  t.n_iters = t.snapshot_freq = t.snapshot_freq_for_preemption = 6
  _signal_at_third_batch(monkeypatch, [signal.SIGINT, signal.SIGINT])
  with pytest.raises(KeyboardInterrupt):
    run_lib.train(config, str(tmp_path / 'run'))
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # as before the run
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints-meta')


def test_an_ignored_ctrl_c_stays_ignored(tmp_path, monkeypatch, sigint):
  """A run started with SIGINT ignored (`python main.py ... &` in a script) keeps ignoring it."""
  sigint(signal.SIG_IGN)
  config = _config()
  config.training.n_iters = 4
  _signal_at_third_batch(monkeypatch, [signal.SIGINT])
  assert int(run_lib.train(config, str(tmp_path / 'run')).step) == 4
  assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path, monkeypatch):
  workdir = _copy(trained[0], tmp_path)
  batches = run_lib.global_batches

  def poisoned(elements, run, axis):   # the first training batch after the resume is NaN
    for i, x in enumerate(batches(elements, run, axis)):
      yield x * np.nan if i == 0 and axis == 1 else x
  monkeypatch.setattr(run_lib, 'global_batches', poisoned)
  config = _config()
  config.training.n_iters = 6
  with pytest.raises(run_lib.TrainingDivergedError,
                     match=r'optimizer step 5\..*checkpoints(-meta)?/4.*optim\.lr'):
    run_lib.train(config, workdir)
  assert checkpointing.meta_manager(workdir).all_steps() == [4]
  assert checkpointing.kept_manager(workdir).all_steps() == [2, 4]


def test_sample_mode_and_fid_stats_mode(trained, tmp_path):
  workdir = _copy(trained[0], tmp_path)
  config = _config()
  config.eval.batch_size = 2
  run_lib.sample(config, workdir)
  assert np.load(f'{workdir}/samples/sample_4.npz')['samples'].shape == (2, 8, 8, 1)
  with pytest.raises(ValueError, match='DIGITS'):      # a validate.ConfigError
    run_lib.fid_stats(config, workdir)


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def test_main_rejects_unknown_and_mistyped_overrides_before_any_work(tmp_path):
  workdir = str(tmp_path / 'never')
  out = _main('--config=configs/quickstart/digits.py', f'--workdir={workdir}',
              '--config.training.batch_sizee=3')
  assert out.returncode != 0 and 'batch_sizee' in out.stderr and 'batch_size' in out.stderr
  out = _main('--config=configs/quickstart/digits.py', f'--workdir={workdir}',
              '--config.training.batch_size=abc')
  assert out.returncode != 0 and 'batch_size' in out.stderr
  assert not os.path.exists(workdir)


def test_main_samples_on_one_cpu_device_per_core_and_trains_on_one(tmp_path):
  """--mode=sample makes each core a device (as many as divide eval.batch_size, utils.py); a
  user's XLA_FLAGS count wins; --mode=train keeps one device. The log line of modes.run says."""
  cores = len(os.sched_getaffinity(0))
  per_core = max(d for d in range(1, min(cores, 8) + 1) if 8 % d == 0)
  digits_ = ['--config=configs/quickstart/digits.py', '--config.eval.batch_size=8']
  for extra, mode, devices in (([], 'sample', per_core), ([], 'train', 1),
                               (['--config.eval.batch_size=7'], 'sample', 1)):
    out = _main(*digits_, *extra, f'--mode={mode}', f'--workdir={tmp_path / mode}',
                '--config.training.n_iters=0')
    assert f'--mode={mode} on {devices} cpu device(s)' in out.stderr, out.stderr[-2000:]
  out = subprocess.run([sys.executable, 'main.py', *digits_, '--mode=sample',
                        f'--workdir={tmp_path / "user"}'], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS':
                                         '--xla_force_host_platform_device_count=1'})
  assert '--mode=sample on 1 cpu device(s)' in out.stderr, out.stderr[-2000:]


_INPAINT = """
import sys
import jax
from configs import quicktest
from configs.quickstart import digits
import modes
config = quicktest.shrink(digits.get_config())
config.eval.batch_size = 4
assert jax.device_count() == int(sys.argv[3]), jax.devices()
modes.run_inpaint(config, sys.argv[2], checkpoint=sys.argv[1])
"""


def test_inpaint_on_two_cpu_devices_matches_one(trained, tmp_path):
  """--mode=inpaint runs on one CPU device per core (main.py; colorize shares its code, but needs
  RGB data): the batch split over two devices gives one device's images (per-image keys)."""
  results = []
  for devices in (1, 2):
    out = subprocess.run(
        [sys.executable, '-c', _INPAINT, f'{trained[0]}/checkpoints/4', str(tmp_path / str(devices)),
         str(devices)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu',
             'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
    assert out.returncode == 0, out.stderr[-3000:]
    results.append(np.load(tmp_path / str(devices) / 'controllable' / 'inpaint_4.npz')['result'])
  assert results[0].shape == (4, 8, 8, 1)
  np.testing.assert_array_equal(results[1], results[0])


def test_main_refuses_two_config_files_in_one_line():
  """absl registered each file's override flags: 'The flag config.X is defined twice'."""
  out = _main('--config', 'configs/quickstart/digits.py', '--config=configs/edm/cifar10_ddpmpp.py',
              '--config.training.batch_size=32', '--dry_run')
  assert out.returncode == 1 and out.stdout == '', out.stdout[-500:]
  assert out.stderr.strip().splitlines() == [
      'FATAL --config given twice: pass one file, override fields with --config.FIELD=VALUE']


def test_main_dry_run_prints_the_resolved_config():
  out = _main('--config=configs/quickstart/digits.py', '--config.training.batch_size=32',
              '--dry_run')
  assert out.returncode == 0 and out.stdout.count('batch_size: 32') == 1   # hugepages: one run


def test_orbax_info_lines_are_filtered_but_its_warnings_pass(tmp_path):
  """A checkpoint save logged ~20 orbax INFO lines that buried the progress lines."""
  records = []
  handler = pylogging.Handler()
  handler.emit = records.append
  absl_logger = logging.get_absl_logger()
  absl_logger.addHandler(handler)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  try:
    manager = checkpointing.kept_manager(str(tmp_path))
    w = {'w': np.ones(3, np.float32)}
    checkpointing.save(manager, losses.TrainState(np.int32(1), w, w, ()))
    logging.info('progress line')
  finally:
    absl_logger.removeHandler(handler)
    logging.set_verbosity(verbosity)
  assert [r.getMessage() for r in records] == ['progress line']
  warning = absl_logger.makeRecord('absl', pylogging.WARNING, f'{os.sep}x{os.sep}orbax{os.sep}a.py',
                                   1, 'disk full', (), None)
  assert absl_logger.filter(warning)


@pytest.mark.slow   # ~1 min
def test_checkpoint_flag_evaluates_and_samples_a_given_state(trained, evaluated, tmp_path):
  """--checkpoint=<orbax step dir> (another run's) and =params.msgpack (tools/convert_checkpoint's
  output) give the same eval loss and samples as the run's own checkpoint."""
  import flax.serialization  # pylint: disable=import-outside-toplevel
  workdir, _ = trained
  config = _config()
  config.eval.enable_bpd = config.eval.enable_sampling = False
  step_dir = os.path.join(workdir, checkpointing.KEPT, '4')
  eval_lib.evaluate(config, str(tmp_path / 'other'), 'eval', checkpoint=step_dir)
  with open(tmp_path / 'other' / 'eval' / 'report_4.json') as f, \
       open(os.path.join(evaluated, 'eval', 'report_4.json')) as g:
    assert json.load(f)['eval_loss'] == json.load(g)['eval_loss']
  own_dir = _copy(workdir, tmp_path)
  run_lib.sample(config, own_dir)
  run_lib.sample(config, str(tmp_path / 'given'), checkpoint=step_dir)
  own = np.load(f'{own_dir}/samples/sample_4.npz')['samples']
  np.testing.assert_array_equal(np.load(tmp_path / 'given' / 'samples' / 'sample_4.npz')['samples'],
                                own)
  run = run_lib.build(config)
  ema = run_lib.restore_newest(run, workdir).ema_params
  (tmp_path / 'params.msgpack').write_bytes(flax.serialization.msgpack_serialize(
      jax.tree.map(np.asarray, ema)))
  run_lib.sample(config, str(tmp_path / 'msgpack'), checkpoint=str(tmp_path / 'params.msgpack'))
  np.testing.assert_array_equal(np.load(tmp_path / 'msgpack' / 'samples' / 'sample_0.npz')['samples'],
                                own)


def test_sample_from_given_latents_matches_seeded_latents(trained, tmp_path):
  """sampling.latents = the seeds' own standard-normal draws reproduces the per-seed images."""
  from utils import per_sample_normal  # pylint: disable=import-outside-toplevel
  import generate  # pylint: disable=import-outside-toplevel
  workdir = _copy(trained[0], tmp_path)
  config = _config()
  config.sampling.seeds, config.sampling.image_format, config.eval.batch_size = '5-7', 'npz', 3
  run_lib.sample(config, workdir)
  z = np.asarray(per_sample_normal(generate.keys_for_seeds([5, 6, 7]), 2 ** 30, (8, 8, 1)))
  np.save(tmp_path / 'z.npy', z)
  config.sampling.latents = str(tmp_path / 'z.npy')
  run_lib.sample(config, str(tmp_path / 'given'), checkpoint=workdir + '/checkpoints/4')
  for seed in (5, 6, 7):
    ours = np.load(generate.seed_path(f'{tmp_path}/given/samples/seeds_4', seed, 'npz'))['x']
    np.testing.assert_allclose(
        ours, np.load(generate.seed_path(f'{workdir}/samples/seeds_4', seed, 'npz'))['x'], atol=2e-5)
  np.save(tmp_path / 'bad.npy', z[:, :4])
  config.sampling.latents = str(tmp_path / 'bad.npy')
  with pytest.raises(generate.LatentsError, match='channels last'):
    run_lib.sample(config, str(tmp_path / 'bad'))


def test_a_seed_folder_refuses_other_settings(trained, tmp_path, caplog):
  """Per-seed images skip the seeds already written, so a folder sampled with other settings
  (here Epsilon Scaling's b) is refused in one line, its images kept; sampling.out_dir takes
  them elsewhere."""
  import generate  # pylint: disable=import-outside-toplevel
  import modes  # pylint: disable=import-outside-toplevel
  workdir = _copy(trained[0], tmp_path)
  config = _config()
  config.sampling.seeds, config.eval.batch_size = '0-2', 3
  modes.run('sample', config, workdir, checkpoint='')
  folder = f'{workdir}/samples/seeds_4'
  with open(os.path.join(folder, generate.SETTINGS)) as f:
    assert json.load(f)['sampling.eps_scaler'] == 1.
  before = {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)}
  config.sampling.eps_scaler = 1.5
  with pytest.raises(SystemExit) as stop:
    modes.run('sample', config, workdir, checkpoint='')
  assert stop.value.code == 1
  assert (f'{folder} holds images sampled with other settings (sampling.eps_scaler = 1.0 there, '
          '1.5 now): write these to another folder with --config.sampling.out_dir=DIR'
          ) in caplog.text
  assert {n: os.path.getmtime(os.path.join(folder, n)) for n in os.listdir(folder)} == before
  config.sampling.out_dir = str(tmp_path / 'b1.5')
  modes.run('sample', config, workdir, checkpoint='')
  scaled = Image.open(generate.seed_path(config.sampling.out_dir, 1))
  assert np.abs(np.asarray(scaled, float) - np.asarray(Image.open(generate.seed_path(folder, 1)),
                                                       float)).max() > 0


def test_out_of_memory_is_one_line_naming_the_fixes(tmp_path, monkeypatch, caplog):
  """XLA's RESOURCE_EXHAUSTED (a batch too large for the device) ends in one line with the
  fields that fit it, exit status 1; other runtime errors keep their traceback."""
  import modes  # pylint: disable=import-outside-toplevel

  def failing(message):
    def train(*args):
      raise jax.errors.JaxRuntimeError(message)
    return train
  monkeypatch.setattr(run_lib, 'train', failing('RESOURCE_EXHAUSTED: Out of memory allocating '
                                                '86052323908 bytes.\nmore detail'))
  with pytest.raises(SystemExit) as stop:
    modes.run('train', _config(), str(tmp_path / 'run'), checkpoint='')
  assert stop.value.code == 1
  assert ('RESOURCE_EXHAUSTED: Out of memory allocating 86052323908 bytes.; lower '
          'training.batch_size') in caplog.text and 'more detail' not in caplog.text
  monkeypatch.setattr(run_lib, 'train', failing('INTERNAL: something else'))
  with pytest.raises(jax.errors.JaxRuntimeError, match='INTERNAL'):
    modes.run('train', _config(), str(tmp_path / 'run'), checkpoint='')


def test_a_device_rule_is_one_line_and_writes_nothing(tmp_path, monkeypatch, caplog):
  """The rules that need the device count run at the entry points, after jax.distributed (e.g.
  eval.batch_size = 99 over 2 devices): a one-line error and exit status 1, not a traceback."""
  import modes  # pylint: disable=import-outside-toplevel
  config = _config()
  config.eval.batch_size = 99
  monkeypatch.setattr(jax, 'device_count', lambda: 2)
  with pytest.raises(SystemExit) as stop:
    modes.run('eval', config, str(tmp_path / 'run'), checkpoint='', eval_folder='eval')
  assert stop.value.code == 1
  assert 'eval.batch_size = 99 must be divisible by the number of devices (2)' in caplog.text
  assert not os.path.exists(tmp_path / 'run')


def test_a_full_disk_stops_in_one_line_and_the_same_command_resumes(trained, tmp_path,
                                                                    monkeypatch, caplog):
  """No room for the step-6 resume checkpoint: one error line and exit status 1 (was a screen of
  orbax/asyncio tracebacks and a partial directory), checkpoints 2 and 4 intact; with room
  again the same command goes on from step 4."""
  import modes  # pylint: disable=import-outside-toplevel
  workdir = _copy(trained[0], tmp_path)
  config = _config()
  config.training.n_iters = 6
  usage, calls = shutil.disk_usage, []

  def filling(path):                   # room at the start (check_room), none at the step-6 save
    calls.append(path)
    return usage(path)._replace(free=usage(path).free if len(calls) == 1 else 1000)
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage', filling)
  with pytest.raises(SystemExit) as stop:
    modes.run('train', config, workdir, checkpoint='')
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert stop.value.code == 1 and len(errors) == 1, errors
  assert re.fullmatch(r'no space left on device for checkpoint .*/checkpoints-meta/6 \(\d+ MiB '
                      r'needed\); free space or move the workdir, then run the same command: it '
                      r'resumes from the newest checkpoint, which is intact', errors[0]), errors
  assert checkpointing.meta_manager(workdir).all_steps() == [4]
  assert checkpointing.kept_manager(workdir).all_steps() == [2, 4]
  monkeypatch.undo()
  assert int(run_lib.train(config, workdir).step) == 6


def test_no_room_for_one_checkpoint_fails_before_the_first_step(tmp_path, monkeypatch, caplog):
  """The first save of a paper config comes after hours (snapshot_freq_for_preemption = 10000):
  a disk without room for one checkpoint fails at the start, before any step or file; with room
  for fewer than the run writes, a warning."""
  usage, free = shutil.disk_usage, {'bytes': 1000}
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage',
                      lambda path: usage(path)._replace(free=free['bytes']))
  monkeypatch.setattr(run_lib, 'global_batches', lambda *args: pytest.fail('a step was taken'))
  with pytest.raises(checkpointing.CheckpointWriteError, match='no space left on device for '
                     r'checkpoint .*/checkpoints-meta \(\d+ MiB needed\)'):
    run_lib.train(_config(), str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.json')
  monkeypatch.undo()
  free['bytes'] = 6 * 2**20                  # ~1.5 checkpoints of the tiny state; the run writes 4
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage',
                      lambda path: usage(path)._replace(free=free['bytes']))
  monkeypatch.setattr(checkpointing, '_check_space', lambda *args: None)
  run_lib.train(_config(), str(tmp_path / 'run'))
  assert re.search(r'the workdir has 6 MiB free; this run writes 4 checkpoints of \d MiB',
                   caplog.text), caplog.text


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # orbax's tasks
def test_orbax_out_of_space_leaves_no_partial_checkpoint(small_tmpfs, monkeypatch, caplog):
  """Past the size check (space taken meanwhile): orbax's RESOURCE_EXHAUSTED on a real full
  file system (a 64 KiB tmpfs) is a CheckpointWriteError (errno ENOSPC) and its temporary
  directory is removed, so the workdir holds no half-written step. orbax's writer threads log
  nothing, then or later (they logged a traceback each, and asyncio's "Task exception was never
  retrieved" a screenful of tensorstore spec per failed write whenever Python collected them)."""
  monkeypatch.setattr(checkpointing, '_check_space', lambda *args: None)
  manager = checkpointing.kept_manager(str(small_tmpfs))
  state = run_lib.init_state(run_lib.build(_config()))
  with pytest.raises(checkpointing.CheckpointWriteError, match='no space left on device') as err:
    checkpointing.save(manager, state)
  assert err.value.errno == 28
  assert not [f for f in os.listdir(small_tmpfs / 'checkpoints') if 'tmp' in f]
  del manager, err
  gc.collect()
  assert not [r.getMessage()[:200] for r in caplog.records if r.levelname == 'ERROR']


def test_a_full_disk_elsewhere_is_one_line(small_tmpfs, tmp_path, monkeypatch, caplog):
  """Any other write (a sample grid, stats.jsonl, the input pipeline's position) that finds the
  disk full: paths.write_bytes leaves neither a partial file nor its temporary one, and
  modes.run logs one line naming the file, exit status 1."""
  import modes  # pylint: disable=import-outside-toplevel
  import paths  # pylint: disable=import-outside-toplevel
  target = str(small_tmpfs / 'grid.png')
  monkeypatch.setattr(run_lib, 'train', lambda *args: paths.write_bytes(target, b'x' * 200_000))
  with pytest.raises(SystemExit) as stop:
    modes.run('train', _config(), str(tmp_path / 'run'), checkpoint='')
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert stop.value.code == 1 and errors == [
      f'no space left on device writing {target}; free space or move the workdir, then run the '
      'same command (training resumes from its newest checkpoint)'], errors
  assert os.listdir(small_tmpfs) == []


def test_a_diverging_checkpoint_writes_no_samples_and_says_so(trained, tmp_path, caplog):
  """Weights that give NaN images (here: the EMA of step 4 times NaN, as from an overflowing
  float16 run): --mode=sample (grid and seeds), --mode=eval's sample metrics and --mode=inpaint
  stop in one line naming the images, nothing written (NaN as uint8 is 0: a black image, scored
  as if real)."""
  import modes  # pylint: disable=import-outside-toplevel
  workdir, _ = trained
  config = _config()
  run = run_lib.build(config)
  state = run_lib.restore_newest(run, workdir)
  manager = checkpointing.kept_manager(str(tmp_path / 'nan'))
  checkpointing.save(manager, state.replace(
      ema_params=jax.tree.map(lambda p: p * np.nan, state.ema_params)))
  nan_dir = os.path.join(tmp_path, 'nan', checkpointing.KEPT, '4')
  config.eval.enable_loss = config.eval.enable_bpd = False
  seeded = _config()
  seeded.sampling.seeds = '0-3'
  for mode, cfg, out in (('sample', config, 'samples/sample_4'), ('sample', seeded, 'seed 0'),
                         ('eval', config, 'sampling of step_4, round 0'),
                         ('inpaint', config, 'controllable/inpaint_4')):
    caplog.clear()
    with pytest.raises(SystemExit) as stop:
      modes.run(mode, cfg, str(tmp_path / mode), checkpoint=nan_dir, eval_folder='eval')
    errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
    assert stop.value.code == 1 and len(errors) == 1 and out in errors[0], (mode, errors)
    assert 'the sampler gave NaN or inf for' in errors[0]
  assert not os.path.exists(tmp_path / 'sample' / 'samples' / 'sample_4.png')
  assert not any(f.endswith('.png') for _, _, fs in os.walk(tmp_path / 'sample') for f in fs)
  assert not os.path.exists(tmp_path / 'eval' / 'eval' / 'step_4' / 'samples_0.npz')
  assert not os.path.exists(tmp_path / 'inpaint' / 'controllable' / 'inpaint_4.png')


def test_a_nan_snapshot_warns_and_training_goes_on(trained, tmp_path, monkeypatch, caplog):
  """The sample grid at a kept checkpoint is NaN (the loss finite): a warning, no grid, the run
  trains on to its end."""
  import outputs  # pylint: disable=import-outside-toplevel
  workdir = _copy(trained[0], tmp_path)
  save = outputs.save_samples
  monkeypatch.setattr(outputs, 'save_samples', lambda images, stem: save(images * np.nan, stem))
  config = _config()
  config.training.n_iters = 6
  assert int(run_lib.train(config, workdir).step) == 6
  assert re.search(r'samples/iter_6: the sampler gave NaN or inf for \d+ of \d+ images',
                   caplog.text)
  assert not os.path.exists(os.path.join(workdir, 'samples', 'iter_6.png'))
