"""One training run per workdir.

Two training runs writing one workdir (the same command started twice, a job requeued while the
old one still runs, a second terminal) would each write checkpoints, the resume point,
config.json and stats.jsonl, silently interleaved, and each delete the other's resume points.
So process 0 of a training run holds `<workdir>/train.lock`: a JSON record {host,
pid_namespace, pid, token, started, beat}, rewritten every BEAT_S seconds by a daemon thread and removed when the run ends
(in any way but SIGKILL or a lost host). Only training takes it (`--mode=train_classifier` in
<workdir>/classifier/): `--mode=eval` beside a training run is the intended use, and the other
modes write files of their own.

A run that finds a record judges it
  - written on this host (and pid namespace): live where its pid runs and its beat is under
    STALE_S old;
  - written on another host (a shared file system, a bucket; another clock) or in another
    container of this host: watched for up to STALE_S, live if it changes. A job restarted at
    once on another host after its host was lost therefore waits STALE_S, once; a record older
    than an hour is stale at once.
A stale record is replaced with a warning; a live one stops the new run in one line
(`WorkdirBusyError`) before it writes anything. Two runs started at the same moment both write
their record and read it back: the one that finds the other's token stops. Should another run
take the record over later (a record judged stale wrongly, e.g. a host frozen for STALE_S), this
run's next beat sees it and its training loop stops at the next step, writing nothing more (in
a multi-process run process 0 stops, and JAX's coordination service ends the others when it
misses it). Processes other than 0 hold nothing; they stop with process 0 where it refuses.
"""
import datetime
import json
import os
import socket
import threading
import time
import uuid

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

import paths

NAME = 'train.lock'
BEAT_S = 30.        # the record is rewritten this often
STALE_S = 90.       # a record unchanged this long belongs to a run that is gone
POLL_S = 5.         # how often a record of another host is re-read while it is watched
_SETTLE_S = {False: 0.1, True: 2.}    # local / remote: wait before reading one's record back


class WorkdirBusyError(RuntimeError):
  """Another training run holds the workdir (its host and pid are in the message)."""


def _read(path):
  """The record at `path`, None where there is none, {} where it cannot be parsed."""
  try:
    record = json.loads(paths.read_text(path))
  except FileNotFoundError:
    return None
  except ValueError:
    return {}
  return record if isinstance(record, dict) else {}


def _alive(pid):
  """Whether process `pid` of this host runs (a zombie, ended but not yet reaped, does not)."""
  try:
    pid = int(pid)
    if pid <= 0:                   # kill() would ask about a process group, not a process
      return False
    os.kill(pid, 0)
  except (ProcessLookupError, ValueError, TypeError, OverflowError):
    return False
  except PermissionError:          # another user's process
    pass
  try:
    with open(f'/proc/{int(pid)}/stat', encoding='ascii') as f:
      return f.read().rpartition(')')[2].split()[0] != 'Z'
  except (OSError, IndexError):    # no /proc (macOS): trust kill()
    return True


def _pid_namespace():
  """This process's pid namespace ('pid:[4026531836]'; '' without /proc): pids of a record of
  this host are only comparable within one namespace (containers that share a host name)."""
  try:
    return os.readlink('/proc/self/ns/pid')
  except OSError:
    return ''


def _age(record):
  try:
    return time.time() - float(record['beat'])
  except (KeyError, TypeError, ValueError):
    return float('inf')


def _who(record):
  return (f'host {record.get("host", "?")}, pid {record.get("pid", "?")}, started '
          f'{record.get("started", "?")}')


class TrainLock:
  """`<workdir>/train.lock` held by this process (see the module docstring)."""

  def __init__(self, workdir):
    self.workdir, self.path = workdir, paths.join(workdir, NAME)
    self.record = {'host': socket.gethostname(), 'pid_namespace': _pid_namespace(),
                   'pid': os.getpid(), 'token': uuid.uuid4().hex,
                   'started': datetime.datetime.now().isoformat(timespec='seconds')}
    self.lost = None          # the record of a run that took the workdir over, once seen
    self._stop = threading.Event()
    self._thread = None

  def _busy_error(self, record):
    return WorkdirBusyError(
        f'{self.workdir} is in use by another training run ({_who(record)}); stop it or '
        f'train in another --workdir (if that run is gone, delete {self.path}); nothing of the run '
        'was changed')

  def _live(self, record):
    if not record.get('token'):                  # not a record of ours (writes are atomic)
      return False
    mine = self.record
    if (record.get('host'), record.get('pid_namespace')) == (mine['host'], mine['pid_namespace']):
      return _alive(record.get('pid')) and -5 < _age(record) < STALE_S   # one clock here
    if _age(record) > STALE_S + 3600:            # older than any clock skew
      return False
    logging.warning('%s: a training run on another host or container (%s) holds this workdir; '
                    'watching it for up to %.0f s to see whether it still runs', self.path,
                    _who(record), STALE_S)
    deadline = time.time() + STALE_S
    while time.time() < deadline:
      time.sleep(POLL_S)
      now = _read(self.path)
      if now != record:
        return now is not None
    return False

  def _write(self):
    paths.write_text(self.path, json.dumps({**self.record, 'beat': time.time()}))

  def acquire(self):
    """Take the workdir, or raise WorkdirBusyError; then keep the record fresh."""
    other = _read(self.path)
    if other is not None:
      if self._live(other):
        raise self._busy_error(other)
      logging.warning('%s: replacing the record of a training run that is gone (%s)', self.path,
                      _who(other))
    self._write()
    time.sleep(_SETTLE_S[paths.is_remote(self.path)])
    mine = _read(self.path)
    if mine is not None and mine.get('token') != self.record['token']:
      raise self._busy_error(mine)
    self._thread = threading.Thread(target=self._beat, name='train.lock', daemon=True)
    self._thread.start()

  def _beat(self):
    while not self._stop.wait(BEAT_S):
      try:
        now = _read(self.path)
        if now is not None and now.get('token') != self.record['token']:
          self.lost = now
          return
        self._write()
      except OSError as err:     # an unreachable bucket for a while: the run goes on
        logging.warning('could not renew %s: %s', self.path, err)

  def check(self):
    """Raise WorkdirBusyError where another run has taken the workdir over."""
    if self.lost is not None:
      raise WorkdirBusyError(
          f'another training run took {self.workdir} over ({_who(self.lost)}); this run '
          'stops here and writes nothing more. Its checkpoints so far are kept; check which run '
          'should go on.')

  def release(self):
    """Stop the beat and remove the record if it is still this run's."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    try:
      if (_read(self.path) or {}).get('token') == self.record['token']:
        paths.remove(self.path)
    except OSError as err:
      logging.warning('could not remove %s: %s', self.path, err)


def holder(workdir):
  """Who holds `workdir` by its record, for a log line ('host H, pid P, started T, heartbeat N s
  ago'), or None where no training run holds it."""
  try:
    record = _read(paths.join(workdir, NAME))
  except OSError:
    return None
  if not record:
    return None
  return f'{_who(record)}, heartbeat {_age(record):.0f} s ago'


class _NotHeld:
  """What processes other than 0 hold: nothing."""

  def check(self):
    pass

  def release(self):
    pass


def acquire(workdir):
  """The workdir's lock, taken by process 0 (the others get a stand-in); every process raises
  WorkdirBusyError where process 0 could not take it."""
  lock, message = _NotHeld(), ''
  if jax.process_index() == 0:
    lock = TrainLock(workdir)
    try:
      lock.acquire()
    except WorkdirBusyError as err:
      message = str(err)
  if jax.process_count() > 1:
    busy = int(multihost_utils.broadcast_one_to_all(np.int32(bool(message))))
    if busy and not message:
      message = f'{workdir} is in use by another training run (process 0 says which)'
  if message:
    raise WorkdirBusyError(message)
  return lock
