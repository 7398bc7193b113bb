"""One training run per workdir (workdir_lock.py): a second run refuses in one line and writes
nothing, a record left by a run that is gone is replaced, a run whose workdir another run took
over stops — on a local folder and on a gs:// bucket (tests/gcs_emulator.py)."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import logging
import pytest

from configs import quicktest
from configs.quickstart import digits
import checkpointing
import modes
import paths
import run_lib
import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()


@pytest.fixture
def fast(monkeypatch):
  """Beats and watches in fractions of a second."""
  monkeypatch.setattr(workdir_lock, 'BEAT_S', 0.05)
  monkeypatch.setattr(workdir_lock, 'STALE_S', 0.6)
  monkeypatch.setattr(workdir_lock, 'POLL_S', 0.05)


def _record(root, **fields):
  record = {'host': HOST, 'pid_namespace': workdir_lock._pid_namespace(), 'pid': os.getpid(),
            'token': 'other', 'started': 'earlier', 'beat': time.time(), **fields}
  paths.write_text(paths.join(root, workdir_lock.NAME), json.dumps(record))
  return record


def _read(root):
  """The record. The GCS emulator can serve an object while the beat rewrites it (real GCS
  replaces an object atomically; seen once in 2026-12-05's fresh-clone run): a torn read is read
  again."""
  for _ in range(100):
    try:
      return json.loads(paths.read_text(paths.join(root, workdir_lock.NAME)))
    except json.JSONDecodeError:
      time.sleep(0.02)
  raise AssertionError(f'{root}: every read of the record was torn')


def _within(seconds, condition):
  """Polls `condition` until it holds; fails after `seconds`."""
  deadline = time.time() + seconds
  while not condition():
    assert time.time() < deadline, f'not within {seconds} s'
    time.sleep(0.05)


def _dead_pid():
  proc = subprocess.Popen(['true'])
  proc.wait()
  return proc.pid


def test_held_while_training_and_removed_after(root):
  lock = workdir_lock.TrainLock(root)
  lock.acquire()
  record = _read(root)
  assert (record['host'], record['pid']) == (HOST, os.getpid())
  lock.check()
  lock.release()
  assert not paths.exists(paths.join(root, workdir_lock.NAME))


def test_a_live_run_on_this_host_is_refused_at_once(root):
  other = _record(root)
  start = time.time()
  with pytest.raises(workdir_lock.WorkdirBusyError, match=f'pid {os.getpid()}') as err:
    workdir_lock.TrainLock(root).acquire()
  assert time.time() - start < 5
  assert workdir_lock.NAME in str(err.value) and '\n' not in str(err.value)
  assert _read(root) == other                       # untouched


@pytest.mark.parametrize('left', ['dead pid', 'zombie pid', 'old beat', 'garbled', 'pid -1',
                                  'future beat'])
def test_a_record_left_by_a_run_that_is_gone_is_replaced(left, tmp_path, caplog):
  root = str(tmp_path)
  zombie = None
  if left == 'dead pid':
    _record(root, pid=_dead_pid())
  elif left == 'zombie pid':
    zombie = subprocess.Popen(['true'])
    time.sleep(0.3)                                    # ended, not reaped
    _record(root, pid=zombie.pid)
  elif left == 'old beat':                             # a live pid: reused by another process
    _record(root, beat=time.time() - workdir_lock.STALE_S - 1)
  elif left == 'pid -1':                               # kill(-1, 0) asks about every process
    _record(root, pid=-1)
  elif left == 'future beat':                          # bogus: this host has one clock
    _record(root, beat=time.time() + 3600)
  else:
    paths.write_text(paths.join(root, workdir_lock.NAME), '{"host": ')
  lock = workdir_lock.TrainLock(root)
  with caplog.at_level(logging.WARNING):
    lock.acquire()
  assert _read(root)['token'] == lock.record['token']
  assert 'replacing the record of a training run that is gone' in caplog.text
  lock.release()
  if zombie:
    zombie.wait()


@contextlib.contextmanager
def _renewed(root, **fields):
  """A live run elsewhere: its record, renewed every 0.05 s while the context is open."""
  stop = threading.Event()
  _record(root, **fields)

  def beat():
    while not stop.wait(0.05):
      _record(root, **fields)
  thread = threading.Thread(target=beat)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join()


def test_another_hosts_record_is_watched(root, fast):
  _record(root, host='elsewhere')                   # not renewed: gone after STALE_S
  start = time.time()
  lock = workdir_lock.TrainLock(root)
  lock.acquire()
  assert time.time() - start >= workdir_lock.STALE_S
  lock.release()
  with _renewed(root, host='elsewhere'), pytest.raises(workdir_lock.WorkdirBusyError,
                                                       match='host elsewhere'):
    workdir_lock.TrainLock(root).acquire()


def test_a_record_of_another_container_of_this_host_is_watched(tmp_path, fast):
  """Same host name, another pid namespace: its pid says nothing here (a dead pid would have
  let a second run in at once); renewed, it is a live run."""
  with _renewed(str(tmp_path), pid_namespace='pid:[1]', pid=_dead_pid()), pytest.raises(
      workdir_lock.WorkdirBusyError, match='started earlier'):
    workdir_lock.TrainLock(str(tmp_path)).acquire()


def test_an_hour_old_record_of_another_host_is_stale_at_once(tmp_path):
  _record(str(tmp_path), host='elsewhere', beat=time.time() - workdir_lock.STALE_S - 3601)
  start = time.time()
  workdir_lock.TrainLock(str(tmp_path)).acquire()
  assert time.time() - start < 5


def test_of_two_runs_started_together_one_stops(tmp_path, monkeypatch):
  """Both find no record (read at the same moment), both write; the one whose record was
  overwritten stops."""
  calls, barrier, read = [], threading.Barrier(2), workdir_lock._read

  def together(path):
    calls.append(path)
    if len(calls) <= 2:                                # each run's first look: no record yet
      barrier.wait(timeout=30)
      return None
    return read(path)
  monkeypatch.setattr(workdir_lock, '_read', together)
  locks = [workdir_lock.TrainLock(str(tmp_path)) for _ in range(2)]
  errors = []

  def take(lock):
    try:
      lock.acquire()
    except workdir_lock.WorkdirBusyError as err:
      errors.append(err)
  threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert len(errors) == 1
  for lock in locks:
    lock.release()


def test_a_run_whose_workdir_was_taken_over_stops(root, fast):
  lock = workdir_lock.TrainLock(root)
  lock.acquire()
  paths.remove(paths.join(root, workdir_lock.NAME))   # deleted by hand: written again
  _within(10, lambda: paths.exists(paths.join(root, workdir_lock.NAME)))
  assert _read(root)['token'] == lock.record['token']
  _record(root, host='elsewhere')

  def noticed():
    if _read(root)['token'] != 'other':   # a beat read before our write and wrote after it
      _record(root, host='elsewhere')     # (the other run's settle check refuses then): again
    lock.check()
    return False
  with pytest.raises(workdir_lock.WorkdirBusyError, match='took .* over'):
    _within(10, noticed)                            # the beat notices (gs:// under load: > 0.5 s)
  lock.release()
  assert _read(root)['token'] == 'other'            # the other run's record stays


def _config():
  config = quicktest.shrink(digits.get_config())
  t = config.training
  t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 4, 2, 2
  return config


def test_training_refuses_a_workdir_in_use_before_writing_anything(tmp_path, caplog):
  root = str(tmp_path)
  other = _record(root)
  with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_:
    modes.run('train', _config(), root, checkpoint='')
  assert exit_.value.code == 1
  assert 'in use by another training run' in caplog.text
  assert sorted(os.listdir(root)) == [workdir_lock.NAME] and _read(root) == other


def test_training_stops_when_another_run_takes_the_workdir_over(tmp_path, monkeypatch, fast):
  """After the checkpoint at step 2 another run takes the record: no step-4 checkpoint."""
  root, save = str(tmp_path), checkpointing.save

  def save_then_lose(manager, state):
    saved = save(manager, state)
    _record(root, host='elsewhere')
    time.sleep(0.5)
    return saved
  monkeypatch.setattr(checkpointing, 'save', save_then_lose)
  with pytest.raises(workdir_lock.WorkdirBusyError, match='took .* over'):
    run_lib.train(_config(), root)
  assert os.listdir(f'{root}/checkpoints') == ['2']
  assert _read(root)['host'] == 'elsewhere'


@pytest.mark.slow    # ~40 s: two main.py processes, each compiling
def test_a_second_main_py_in_the_same_workdir_stops_in_one_line(tmp_path):
  """Two processes, as a user starts them: the second exits 1 with one line while the first
  trains on; the first, stopped with SIGTERM, saves, exits 143 and removes its record."""
  workdir = str(tmp_path / 'run')
  args = [sys.executable, 'main.py', '--mode=train', f'--workdir={workdir}',
          '--config=configs/quickstart/digits.py', '--config.training.batch_size=8',
          '--config.training.n_iters=100000', '--config.training.snapshot_freq=100000',
          '--config.training.snapshot_sampling=False', '--config.model.nf=16',
          '--config.model.num_res_blocks=1']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not os.path.exists(f'{workdir}/config.json'):
      assert first.poll() is None and time.time() < deadline, first.stderr.read()[-3000:]
      time.sleep(0.5)
    second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.poll() is None
  finally:
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
  assert second.returncode == 1, second.stderr[-3000:]
  errors = [line for line in second.stderr.splitlines() if line.startswith('E')]
  assert len(errors) == 1 and f'pid {first.pid}' in errors[0], second.stderr[-3000:]
  assert first.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert not os.path.exists(f'{workdir}/{workdir_lock.NAME}')
