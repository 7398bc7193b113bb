"""Two processes on loopback (jax.distributed, one CPU device each) against one process.

main.py --distributed=127.0.0.1:PORT,2,i starts each process (a fresh port per run, each under
`timeout -s KILL`); they share one workdir as hosts of a pod share a bucket.

Training: the global batch is the union of the processes' shares of the data (each reads its
own shard, datasets._shard), so the loss curve depends on the process count like any multi-host
input pipeline; what must hold is that the run is one run: every step is logged once (by
process 0), checkpoints and samples are written once and restore, and each process keeps its
own log file.

Evaluation and sampling, of one kept checkpoint (configs/quicktest.py's shrink of the digits
quickstart, initial weights as step 1): --mode=eval in two processes gives the sample metrics
and the loss of one process exactly, and its bits/dim to float rounding (every process reads the
whole evaluation split and keeps its rows of each global batch, with the one-process
dequantization noise), also when the split does not fill the last batch. --mode=sample writes
the one-process files exactly: one .npz per seed (sampling.seeds), or the grid; guided by a
noise-conditional classifier, the same images (to float rounding) and classes.

--mode=train_classifier in two processes is one run as training is (each step logged once, files
written once, resumed), and SIGTERM to one process stops both at one step after saving.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import checkpointing
from configs import quicktest
from configs.quickstart import digits
import datasets
import distributed
import eval_lib
import modes
from models.wideresnet import NoiseConditionalWideResNet
import run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SIGKILL: a process of jax.distributed outlives timeout's SIGTERM (taken as a preemption notice)
TIMEOUT = ['timeout', '-s', 'KILL', '400']
STEPS = 4
OVERRIDES = ['--config=configs/quickstart/digits.py', '--config.training.batch_size=4',
             f'--config.training.n_iters={STEPS}', '--config.training.n_jitted_steps=1',
             '--config.training.log_freq=1', '--config.training.eval_freq=2',
             '--config.training.snapshot_freq=2', '--config.training.snapshot_freq_for_preemption=2',
             '--config.model.nf=16', '--config.model.num_res_blocks=1', '--config.sampling.steps=4']


SLOW = pytest.mark.skipif(not os.environ.get('SCOREFLOW_SLOW_TESTS'),
                          reason='two-process eval/sample (~5 min): set SCOREFLOW_SLOW_TESTS=1')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir, mode, flags):
  """`main.py --mode` in two processes on loopback (one CPU device each); their stderr texts."""
  port = _free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)   # one device per process
  procs = [subprocess.Popen([*TIMEOUT, sys.executable, 'main.py', f'--mode={mode}',
                             f'--workdir={workdir}', f'--distributed=127.0.0.1:{port},2,{i}',
                             *flags], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE) for i in range(2)]
  errs = [p.communicate(timeout=420)[1].decode() for p in procs]
  for i, (p, err) in enumerate(zip(procs, errs)):
    assert p.returncode == 0, f'process {i}:\n{err[-3000:]}'
  return errs


@pytest.mark.slow   # ~1 min
def test_two_processes_train_one_run(tmp_path):
  workdir = str(tmp_path / 'run')
  errs = _two_processes(workdir, 'train', OVERRIDES)
  assert 'training from step 0 to 4 on 2 devices' in errs[0]
  with open(os.path.join(workdir, 'stats.jsonl')) as f:
    stats = [json.loads(line) for line in f]
  assert [s['step'] for s in stats if 'loss' in s] == [1, 2, 3, 4]     # once, not once per process
  assert [s['step'] for s in stats if 'eval_loss' in s] == [2, 4]
  assert all(np.isfinite(s.get('loss', s.get('eval_loss'))) for s in stats)
  assert os.path.isfile(os.path.join(workdir, 'log.txt'))
  assert os.path.isfile(os.path.join(workdir, 'log1.txt'))
  for step in (2, 4):
    assert np.load(os.path.join(workdir, 'samples', f'iter_{step}.npz'))['samples'].shape[0] == 4
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  path = os.path.join(workdir, 'checkpoints', '4', 'default')   # saved over 2 processes' devices:
  single = jax.sharding.SingleDeviceSharding(jax.devices()[0])   # restore onto this one
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=single),
                        ocp.StandardCheckpointer().metadata(path).item_metadata)
  state = ocp.StandardCheckpointer().restore(path, target)
  assert int(state['step']) == STEPS
  leaves = [np.asarray(v) for v in jax.tree.leaves(state['params'])]
  assert leaves and all(np.isfinite(v).all() for v in leaves)


CLASSIFIER = ['--config=configs/quickstart/digits.py', '--config.training.sde=vesde',
              '--config.data.centered=False', '--config.training.batch_size=4',
              '--config.classifier.log_freq=1', '--config.classifier.snapshot_freq=2',
              '--config.classifier.blocks_per_group=1', '--config.classifier.widen=1']


@pytest.mark.slow   # ~1 min
def test_two_processes_train_one_classifier_and_resume_it(tmp_path):
  """--mode=train_classifier over two processes is one run: every step logged once, each file
  written once, each process's input pipeline position saved; the same command with more steps
  resumes both where they stopped."""
  workdir = str(tmp_path / 'run')
  folder = os.path.join(workdir, 'classifier')
  errs = _two_processes(workdir, 'train_classifier', [*CLASSIFIER, '--config.classifier.n_iters=2'])
  assert 'from step 0 to 2 on 2 devices' in errs[0]
  errs = _two_processes(workdir, 'train_classifier', [*CLASSIFIER, '--config.classifier.n_iters=4'])
  assert 'resuming at step 2' in errs[1] and 'from step 2 to 4 on 2 devices' in errs[0]
  with open(os.path.join(folder, 'stats.jsonl')) as f:
    stats = [json.loads(line) for line in f]
  assert [s['step'] for s in stats if 'classifier_loss' in s] == [1, 2, 3, 4]
  assert [s['step'] for s in stats if 'classifier_eval_accuracy' in s] == [2, 4]
  assert {'checkpoint_2', 'checkpoint_4', 'state.msgpack'} <= set(os.listdir(folder))
  assert sorted(os.listdir(os.path.join(folder, 'checkpoints-data', '4'))) == sorted(
      f'process_{p}.{e}' for p in (0, 1)
      for e in ('data-00000-of-00001', 'index', 'pipeline.json'))
  with open(os.path.join(folder, 'checkpoint_4'), 'rb') as f:
    params = flax.serialization.msgpack_restore(f.read())
  assert all(np.isfinite(v).all() for v in jax.tree.leaves(params))


def _signal_when_logged(workdir, mode, flags, logged, signum=signal.SIGTERM):
  """Two processes of `main.py --mode` on loopback; `signum` to process 0 once its log.txt shows
  `logged`. Returns (return codes, stderr texts, seconds from the signal to both ends)."""
  port = _free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)
  procs = [subprocess.Popen([*TIMEOUT, sys.executable, 'main.py', f'--mode={mode}',
                             f'--workdir={workdir}', f'--distributed=127.0.0.1:{port},2,{i}',
                             *flags], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE) for i in range(2)]
  log = os.path.join(workdir, 'log.txt')
  deadline = time.time() + 300
  while time.time() < deadline and not (os.path.exists(log) and logged in open(log).read()):
    time.sleep(0.5)
  procs[0].send_signal(signum)               # timeout(1) passes it on to its child
  start = time.time()
  errs = [p.communicate(timeout=300)[1].decode() for p in procs]
  return [p.returncode for p in procs], errs, time.time() - start


@pytest.mark.slow   # ~2 min each
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_one_process_stops_both_at_one_step_after_saving(tmp_path, signum):
  """JAX's preemption sync point: SIGTERM (a preempted host) or Ctrl-C to process 0 alone stops
  both processes at the same step, after the resume checkpoint of that step; the signalled one
  exits as if killed by its signal (143 or 130), the other as preempted (143)."""
  workdir = str(tmp_path / 'run')
  long_run = [o for o in OVERRIDES if 'n_iters' not in o and 'snapshot_freq' not in o] + [
      '--config.training.n_iters=400', '--config.training.snapshot_freq=400',
      '--config.training.snapshot_freq_for_preemption=400', '--config.training.eval_freq=400']
  codes, errs, _ = _signal_when_logged(workdir, 'train', long_run, 'step 3/400', signum)
  assert codes == [128 + signum, 143], [e[-3000:] for e in errs]
  names = [signal.Signals(signum).name, 'SIGTERM']
  steps = [int(re.search(rf'{name}: stopped at step (\d+)', e).group(1))
           for name, e in zip(names, errs)]
  assert steps[0] == steps[1] and 3 <= steps[0] < 400, steps
  assert os.listdir(os.path.join(workdir, 'checkpoints-meta')) == [str(steps[0])]


@pytest.mark.slow   # ~1 min
def test_sigterm_to_one_process_stops_a_two_process_classifier_run_after_saving(tmp_path):
  workdir = str(tmp_path / 'run')
  flags = [*CLASSIFIER, '--config.classifier.n_iters=400', '--config.classifier.snapshot_freq=400']
  codes, errs, _ = _signal_when_logged(workdir, 'train_classifier', flags, 'from step 0 to 400')
  assert codes == [143, 143], [e[-3000:] for e in errs]
  steps = [int(re.search(r'SIGTERM: train_classifier stopped at step (\d+)', e).group(1))
           for e in errs]
  assert steps[0] == steps[1] and 1 <= steps[0] < 400, steps
  folder = os.path.join(workdir, 'classifier')
  assert os.listdir(os.path.join(folder, 'checkpoints-data')) == [str(steps[0])]
  assert not [f for f in os.listdir(folder) if f.startswith('checkpoint_')]


@pytest.mark.slow   # ~1 min
def test_sigterm_stops_a_two_process_eval(tmp_path):
  """Outside training JAX's preemption notifier would take SIGTERM for a sync point no mode but
  training reaches: an eval waiting for checkpoints ran on until SIGKILL. Now the signalled
  process ends at once and the other when the coordination service misses it."""
  waiting = ['--config=configs/quickstart/digits.py', '--config.eval.enable_loss=False',
             '--config.eval.enable_bpd=False', '--config.eval.batch_size=98',
             '--config.eval.wait_timeout_s=1000']
  codes, errs, seconds = _signal_when_logged(str(tmp_path / 'run'), 'eval', waiting,
                                              'waiting for')
  # killed by the signal (timeout(1) dies of its child's signal), the other aborted by JAX
  assert codes[0] == -signal.SIGTERM and codes[1] != 0, [e[-3000:] for e in errs]
  assert seconds < 120                             # not timeout's SIGKILL at 400 s


@pytest.mark.parametrize('spec, message', [
    ('127.0.0.1:1234,two,0', r"expected 'auto' or ADDRESS:PORT,NUM_PROCESSES,PROCESS_ID"),
    ('garbage', r"expected 'auto' or ADDRESS:PORT"),
    ('127.0.0.1:1234,2,5', r'0 <= PROCESS_ID < NUM_PROCESSES'),
    ('127.0.0.1:1234,0,0', r'0 <= PROCESS_ID < NUM_PROCESSES'),
    ('127.0.0.1:99999,2,0', r'a port in 1..65535'),
    (':1234,2,0', r'needs a host')])
def test_a_malformed_distributed_flag_is_one_line(spec, message, caplog):
  """main.py's --distributed (modes.join): one line and exit status 1 (was a ValueError
  traceback, JAX's own for PROCESS_ID ≥ NUM_PROCESSES)."""
  with pytest.raises(SystemExit) as stop:
    modes.join(spec)
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert stop.value.code == 1 and len(errors) == 1 and '\n' not in errors[0]
  assert re.search(message, errors[0]), errors[0]


def test_distributed_auto_outside_a_cluster_is_one_line(tmp_path):
  """main.py --distributed=auto on a machine that is no pod / SLURM / MPI / Kubernetes job (this
  one): JAX's 'coordinator_address should be defined' traceback before; now one line, exit 1."""
  proc = subprocess.run([sys.executable, 'main.py', '--mode=train', '--distributed=auto',
                         '--config=configs/quickstart/digits.py', f'--workdir={tmp_path / "run"}'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert re.search(r"--distributed='auto': JAX could not join the run \(coordinator_address "
                   r'should be defined.\); no cluster was detected', proc.stderr)


def test_process_0_refuses_a_busy_port_or_an_address_of_another_host_in_seconds(caplog):
  """Process 0 hosts the coordinator: JAX segfaulted on a busy port and aborted after 5 minutes
  when ADDRESS did not reach this machine (192.0.2.1 is TEST-NET-1, no host's address)."""
  with socket.create_server(('', 0)) as busy:
    port = busy.getsockname()[1]
    for spec, message in ((f'127.0.0.1:{port},2,0', f'port {port} is busy on this machine'),
                          (f'192.0.2.1:{port + 1},2,0', 'does not reach this machine')):
      caplog.clear()
      start = time.time()
      with pytest.raises(SystemExit):
        modes.join(spec)
      assert time.time() - start < 30 and message in caplog.text, caplog.text


def test_one_process_joins_nothing():
  assert distributed.init_distributed('') == 0
  assert distributed.parse_distributed('10.0.0.1:1234,8,7') == ('10.0.0.1:1234', 8, 7)


# ------------------------------------------------------------------------------------------------
# --mode=eval and --mode=sample: two processes against one, on one kept checkpoint

def _flat(config, prefix=''):
  out = {}
  for k, v in config.items():
    out.update(_flat(v, f'{prefix}{k}.') if hasattr(v, 'items') else {f'{prefix}{k}': v})
  return out


def _shrunk_config():
  return quicktest.shrink(digits.get_config())


def _shrink_flags():
  """configs/quicktest.py's shrink of the digits quickstart, as main.py overrides."""
  full, small = _flat(digits.get_config()), _flat(_shrunk_config())
  return [f'--config.{k}={v}' for k, v in small.items() if full[k] != v]


@pytest.fixture(scope='module')
def kept_step_1(tmp_path_factory):
  """A run directory holding the shrunk model's initial weights as kept step 1 (no training)."""
  workdir = str(tmp_path_factory.mktemp('kept'))
  state = run_lib.init_state(run_lib.build(_shrunk_config()))
  checkpointing.save(checkpointing.kept_manager(workdir), state.replace(step=jnp.asarray(1)))
  return workdir


def _main(kept, workdir, mode, settings, processes, devices=1):
  """main.py --mode=`mode` over a copy of `kept`: `processes` processes on loopback with
  `devices` CPU devices each; logs in <workdir>_<i>.log."""
  shutil.copytree(kept, workdir)
  flags = [f'--config.{k}={v}' for k, v in settings.items()]
  port, env = _free_port(), {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  procs = []
  for i in range(processes):
    distributed = [f'--distributed=127.0.0.1:{port},{processes},{i}'] if processes > 1 else []
    with open(f'{workdir}_{i}.log', 'w') as log:   # a file: a child never blocks on a full pipe
      procs.append(subprocess.Popen(
          [*TIMEOUT, sys.executable, 'main.py', f'--mode={mode}', f'--workdir={workdir}',
           '--config=configs/quickstart/digits.py', *_shrink_flags(), *flags, *distributed],
          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log))
  for i, p in enumerate(procs):
    p.wait(timeout=420)
    with open(f'{workdir}_{i}.log') as log:
      assert p.returncode == 0, f'{processes} processes, process {i}:\n{log.read()[-3000:]}'


def _report(workdir):
  with open(f'{workdir}/eval/report_1.json') as f, np.load(f'{workdir}/eval/report_1.npz') as a:
    return json.load(f), {k: a[k] for k in a.files}


EVAL = {'eval.batch_size': 96, 'eval.num_samples': 192, 'eval.wait_for_checkpoints': False,
        'sampling.steps': 4, 'sampling.ode_rtol': 1e-3, 'sampling.ode_atol': 1e-3}


@pytest.fixture(scope='module')
def eval_reports(kept_step_1, tmp_path_factory):
  """(one, two): (report_1.json, report_1.npz) of --mode=eval in one process with 2 devices and
  in 2 processes with one each: loss and bits/dim over 3 batches of 96 test digits (288 of
  297), the digits FD of 2 rounds of 96 samples. The same 2 devices: bits/dim integrate a batch
  with one adaptive step size (a norm over the batch, summed across devices), so splitting a
  batch over 1 or 2 devices moves each image's bits/dim by up to 1.3e-5 (relative, measured)."""
  tmp = tmp_path_factory.mktemp('eval')
  _main(kept_step_1, str(tmp / 'one'), 'eval', EVAL, processes=1, devices=2)
  _main(kept_step_1, str(tmp / 'two'), 'eval', EVAL, processes=2)
  return _report(str(tmp / 'one')), _report(str(tmp / 'two'))


@SLOW
def test_two_process_eval_scores_the_same_samples(eval_reports):
  """Sample i's key is fold_in(SAMPLE_STREAM key, i) wherever it runs: the samples, and so the
  digits FD, are the one-process ones exactly."""
  (one, one_arrays), (two, two_arrays) = eval_reports
  assert two['sample_metrics'] == one['sample_metrics']
  assert two['step'] == one['step'] == 1
  for k, shape in (('all_losses', (3,)), ('bpd', (288,))):
    assert two_arrays[k].shape == one_arrays[k].shape == shape


@SLOW
def test_two_process_eval_loss_and_bpd_equal_one_process(eval_reports):
  """The losses exactly; bits/dim to float rounding: each process integrates half the batch, and
  XLA's code for that shape rounds differently (on a 2-core AMD EPYC 45 of 288 values differed,
  by ≤ 2e-7 relative; a wrong row or noise would differ by ~1e-2)."""
  (one, one_arrays), (two, two_arrays) = eval_reports
  assert two['eval_loss'] == one['eval_loss']
  np.testing.assert_array_equal(two_arrays['all_losses'], one_arrays['all_losses'])
  np.testing.assert_allclose(two['bpd'], one['bpd'], rtol=1e-6)
  np.testing.assert_allclose(two_arrays['bpd'], one_arrays['bpd'], rtol=1e-6)


@SLOW
def test_two_process_eval_of_a_split_that_leaves_a_remainder_ends(kept_step_1, tmp_path):
  """eval.batch_size 2 (quicktest's): the 297 test digits make 148 global batches and one image
  left over, dropped on every process as by one process."""
  workdir = str(tmp_path / 'run')
  _main(kept_step_1, workdir, 'eval', {'eval.enable_bpd': False, 'eval.enable_sampling': False,
                                       'eval.wait_for_checkpoints': False}, processes=2)
  info, arrays = _report(workdir)
  assert arrays['all_losses'].shape == (148,) and np.isfinite(info['eval_loss'])


def test_eval_counts_batches_tf_data_does_not_know():
  """TFRecord sets have an unknown cardinality (-2): their batches are counted."""
  tf = datasets.tensorflow()
  ds = tf.data.Dataset.range(7).filter(lambda x: x >= 0).batch(2, drop_remainder=True)
  assert int(ds.cardinality()) < 0
  assert eval_lib._batch_count(ds) == 3


def _read_all(folder):
  """{path under `folder`: the arrays of an .npz, the bytes of any other file}."""
  out = {}
  for base, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(base, name)
      if name.endswith('.npz'):
        with np.load(path) as f:
          out[os.path.relpath(path, folder)] = {k: f[k] for k in f.files}
      else:
        with open(path, 'rb') as f:
          out[os.path.relpath(path, folder)] = f.read()
  return out


def _samples_of_one_and_two_processes(kept, tmp_path, settings):
  """The files --mode=sample writes under samples/ in one process and in two."""
  written = []
  for processes in (1, 2):
    workdir = str(tmp_path / f'run{processes}')
    _main(kept, workdir, 'sample', settings, processes)
    written.append(_read_all(f'{workdir}/samples'))
  return written


@SLOW
@pytest.mark.parametrize('seeds', ['0-6', ''])
def test_two_process_sampling_writes_the_one_process_files(kept_step_1, tmp_path, seeds):
  """sampling.seeds: one .npz per seed (7 seeds in batches of 4, the last one padded); none: one
  grid of eval.batch_size = 4 (.npz + .png). Two processes write the one-process files."""
  settings = {'eval.batch_size': 4, 'sampling.steps': 4, 'sampling.seeds': seeds,
              'sampling.image_format': 'npz'}
  one, two = _samples_of_one_and_two_processes(kept_step_1, tmp_path, settings)
  names = [f'seeds_1/000000/{s:06d}.npz' for s in range(7)] + ['seeds_1/settings.json'] if seeds \
      else ['sample_1.npz', 'sample_1.png']
  assert sorted(one) == sorted(two) == names
  for name in names:
    if name.endswith('.png'):
      assert two[name] == one[name]
      continue
    if name.endswith('.json'):     # the same settings, but each run's own workdir as the source
      settings = [json.loads(d[name]) for d in (one, two)]
      sources = [s.pop('checkpoint') for s in settings]
      assert sources == [f'{tmp_path}/run{p} (step 1)' for p in (1, 2)]
      assert settings[0] == settings[1]
      continue
    assert sorted(two[name]) == sorted(one[name])
    for k in one[name]:
      np.testing.assert_array_equal(two[name][k], one[name][k], err_msg=f'{name}: {k}')


@SLOW
def test_two_process_classifier_guided_sampling_writes_the_one_process_files(kept_step_1,
                                                                            tmp_path):
  """sampling.classifier (a random-weight WideResnet file) guiding the kept model with VE noise:
  two processes write the one-process images and classes, seed for seed."""
  path = tmp_path / 'classifier'
  module = NoiseConditionalWideResNet(blocks_per_group=1, widen=1, num_classes=10)
  params = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.ones((1,)))['params']
  path.write_bytes(flax.serialization.to_bytes(params))
  settings = {'eval.batch_size': 4, 'sampling.steps': 4, 'sampling.seeds': '0-6',
              'sampling.image_format': 'npz', 'training.sde': 'vesde',
              'sampling.classifier': str(path)}
  one, two = _samples_of_one_and_two_processes(kept_step_1, tmp_path, settings)
  one, two = ({k[len('seeds_1/'):]: v for k, v in d.items()} for d in (one, two))
  assert sorted(one) == sorted(two)
  assert json.loads(one['class_labels.json']) == json.loads(two['class_labels.json'])
  assert len(json.loads(one['class_labels.json'])) == 7
  for name in (f'000000/{s:06d}.npz' for s in range(7)):
    np.testing.assert_allclose(two[name]['x'], one[name]['x'], rtol=0, atol=1e-5)
