"""--mode=eval beside training and after preemption (eval_lib).

Kept checkpoints at steps 2 and 4 of a tiny digits model are written once (fresh weights, scaled
at step 4; as training writes them, without its compile time). Then main.py subprocesses
evaluate them (loss, bits/dim over 9 batches, 10 sampling rounds):
  polled:  an eval started in an empty workdir polls for checkpoints 2 and 4 (every second), which
           the test copies in one after the other; it evaluates both. Its report of step 4 is the
           uninterrupted reference.
  killed:  an eval is SIGKILLed once a bits/dim batch is stored, restarted and SIGKILLed again
           once a sampling round is stored, and restarted to the end: its report equals the
           reference exactly, and no finished batch or round was computed twice (counted by the
           per-batch / per-round log lines of each run).
In-process tests cover the step range and the skipping of checkpoints that will not come.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpointing
from configs.quickstart import digits
import eval_lib
import run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPD_BATCHES, ROUNDS = 9, 10      # 297 test digits / 33; 330 samples / 33
SETTINGS = {'training.snapshot_freq': 2, 'model.nf': 16, 'model.num_res_blocks': 1,
            'eval.batch_size': 33, 'eval.num_samples': 33 * ROUNDS, 'eval.bpd_num_repeats': 1,
            'eval.begin_step': 4, 'eval.end_step': 4, 'eval.poll_interval_s': 1.,
            'eval.wait_timeout_s': 300., 'sampling.steps': 24,
            'sampling.ode_rtol': 1e-3, 'sampling.ode_atol': 1e-3}
BPD_LINE = re.compile(r'bits/dim of step_4, pass 0, batch (\d+)/9')
ROUND_LINE = re.compile(r'sampling of step_4, round (\d+)/10')


def _config(**changes):
  config = digits.get_config()
  config.update_from_flattened_dict({**SETTINGS, **changes})
  return config


SLOW = pytest.mark.skipif(not os.environ.get('SCOREFLOW_SLOW_TESTS'),
                          reason='eval subprocesses (~2.5 min): set SCOREFLOW_SLOW_TESTS=1')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  state, kept = run_lib.init_state(run_lib.build(_config())), checkpointing.kept_manager(workdir)
  for step, scale in ((2, 1.), (4, 0.9)):
    ema = jax.tree.map(lambda p: p * scale, state.ema_params)  # pylint: disable=cell-var-from-loop
    checkpointing.save(kept, state.replace(step=jnp.asarray(step, jnp.int32), ema_params=ema))
  return workdir


def _start_eval(workdir, log_path, **changes):
  flags = [f'--config.{k}={v}' for k, v in {**SETTINGS, **changes}.items()]
  with open(log_path, 'w') as log:    # a file, not a pipe: the child never blocks on its logs
    return subprocess.Popen([sys.executable, 'main.py', '--mode=eval', f'--workdir={workdir}',
                             '--config=configs/quickstart/digits.py', *flags], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def _read(path):
  with open(path) as f:
    return f.read()


def _wait_until(condition, proc, log_path, timeout=400):
  start = time.time()
  while not condition():
    assert proc.poll() is None, f'eval ended early:\n{_read(log_path)[-3000:]}'
    assert time.time() - start < timeout, f'timed out:\n{_read(log_path)[-3000:]}'
    time.sleep(0.02)


def _finish(proc, log_path):
  proc.wait(timeout=400)
  assert proc.returncode == 0, _read(log_path)[-3000:]


def _stored(work_dir, pattern):
  """Indices of finished work files (atomic writes: a half-written one has a .tmp name)."""
  names = os.listdir(work_dir) if os.path.isdir(work_dir) else []
  return sorted(int(m.group(1)) for m in map(re.compile(pattern).fullmatch, names) if m)


def _report(workdir, step=4):
  with open(f'{workdir}/eval/report_{step}.json') as f, \
       np.load(f'{workdir}/eval/report_{step}.npz') as arrays:
    return json.load(f), {k: arrays[k] for k in arrays.files}


def _copy_checkpoint(src_workdir, dst_workdir, step, tmp_dir):
  """Copy a kept checkpoint as training would write it: complete before its name appears (the
  first one also makes checkpoints/, which the waiting eval does not create)."""
  staging = os.path.join(tmp_dir, f'staging_{step}')
  shutil.copytree(os.path.join(src_workdir, 'checkpoints', str(step)), staging)
  os.makedirs(os.path.join(dst_workdir, 'checkpoints'), exist_ok=True)
  os.rename(staging, os.path.join(dst_workdir, 'checkpoints', str(step)))


@pytest.fixture(scope='module')
def polled(trained, tmp_path_factory):
  """An eval of steps 2 and 4 started before either exists; returns (workdir, its log)."""
  tmp = tmp_path_factory.mktemp('polled')
  workdir, log_path = str(tmp / 'run'), str(tmp / 'eval.log')
  proc = _start_eval(workdir, log_path, **{'eval.begin_step': 2})
  for step in (2, 4):
    waiting = f'waiting for checkpoint {workdir}/checkpoints/{step}:'
    _wait_until(lambda: waiting in _read(log_path),  # pylint: disable=cell-var-from-loop
                proc, log_path)
    _copy_checkpoint(trained, workdir, step, str(tmp))
  _finish(proc, log_path)
  return workdir, _read(log_path)


@SLOW
def test_eval_waits_for_checkpoints_written_after_it_started(polled):
  workdir, log = polled
  for step in (2, 4):
    assert log.count(f'waiting for checkpoint {workdir}/checkpoints/{step}:') >= 1
    info, arrays = _report(workdir, step)
    assert info['step'] == step and np.isfinite(info['eval_loss'])
    assert 0 < info['bpd'] < 100 and arrays['bpd'].shape == (297,)
    assert info['sample_metrics']['digits_fd'] > 0
    assert len(_stored(f'{workdir}/eval/step_{step}', r'statistics_(\d+)\.npz')) == ROUNDS
  with open(f'{workdir}/eval/stats.jsonl') as f:
    assert [json.loads(line)['step'] for line in f] == [2, 4]


def _kill_when(proc, log_path, condition):
  _wait_until(condition, proc, log_path)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


@SLOW
def test_killed_eval_resumes_without_redoing_finished_batches(trained, polled, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  work, logs = f'{workdir}/eval/step_4', [str(tmp_path / f'eval{i}.log') for i in range(3)]
  bpd_files, round_files = r'bpd_0_(\d+)\.npz', r'statistics_(\d+)\.npz'
  proc = _start_eval(workdir, logs[0])                 # 1: killed during bits/dim
  _kill_when(proc, logs[0], lambda: _stored(work, bpd_files))
  bpd_done = len(_stored(work, bpd_files))
  assert 0 < bpd_done < BPD_BATCHES and not _stored(work, round_files)
  proc = _start_eval(workdir, logs[1])                 # 2: killed during sampling
  _kill_when(proc, logs[1], lambda: _stored(work, round_files))
  rounds_done = len(_stored(work, round_files))
  assert 0 < rounds_done < ROUNDS and not os.path.exists(f'{workdir}/eval/report_4.json')
  _finish(_start_eval(workdir, logs[2]), logs[2])      # 3: to the end
  text = [_read(p) for p in logs]
  bpd_batches = [sorted(int(b) for b in BPD_LINE.findall(t)) for t in text]
  rounds = [sorted(int(r) for r in ROUND_LINE.findall(t)) for t in text]
  assert bpd_batches[1] == list(range(bpd_done + 1, BPD_BATCHES + 1)) and not bpd_batches[2]
  assert rounds[0] == [] and rounds[2] == list(range(rounds_done + 1, ROUNDS + 1))
  assert len(bpd_batches[0]) <= bpd_done and len(rounds[1]) <= rounds_done
  info, arrays = _report(workdir)
  ref_info, ref_arrays = _report(polled[0])
  assert info == ref_info
  for k in ('all_losses', 'bpd'):
    np.testing.assert_array_equal(arrays[k], ref_arrays[k])
  with open(f'{workdir}/eval/stats.jsonl') as f:
    assert [json.loads(line)['step'] for line in f] == [4]


def test_eval_steps_by_step_or_by_score_sde_index():
  assert run_lib.eval_steps(_config(**{'eval.begin_step': 2, 'eval.end_step': 7})) == [2, 4, 6]
  assert run_lib.eval_steps(_config(**{'eval.begin_step': 3, 'eval.end_step': 6})) == [4, 6]
  ckpts = {'eval.begin_step': -1, 'eval.end_step': -1, 'eval.begin_ckpt': 1, 'eval.end_ckpt': 3}
  assert run_lib.eval_steps(_config(**ckpts)) == [2, 4, 6]
  assert run_lib.eval_steps(_config(**{'eval.begin_step': 5, 'eval.end_step': 5})) == []


def test_waiting_on_a_workdir_without_checkpoints_asks_whether_it_is_the_right_one(tmp_path,
                                                                                   info_log):
  """A mistyped --workdir would wait eval.wait_timeout_s in silence: the wait says so."""
  config = _config(**{'eval.enable_bpd': False, 'eval.enable_sampling': False,
                      'eval.begin_step': 2, 'eval.end_step': 2, 'eval.poll_interval_s': 0.5,
                      'eval.wait_timeout_s': 1.})
  with pytest.raises(checkpointing.NoCheckpointError, match=r'no checkpoint evaluated: steps \['
                     r"'2'\] of .*typo were skipped"):
    eval_lib.evaluate(config, str(tmp_path / 'typo'))
  assert ("no training run holds the workdir now and it has no checkpoint yet (is --workdir the "
          "training run's?") in info_log.text


def _write_run_config(workdir, n_iters):
  config = _config(**{'training.n_iters': n_iters})
  with open(f'{workdir}/config.json', 'w') as f:
    f.write(config.to_json())


def test_checkpoints_after_the_end_of_a_finished_run_are_skipped_at_once(trained, tmp_path,
                                                                         info_log):
  """The run's config.json says it ends at step 4, which is kept: step 6 will never come, so it
  is skipped without waiting eval.wait_timeout_s (an hour by default), and an eval that finds
  nothing to evaluate ends in a NoCheckpointError (one line and exit 1 from main.py). A run
  resumed with a larger n_iters rewrites config.json: then step 6 is waited for."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  _write_run_config(workdir, 4)
  only_loss = {'eval.enable_bpd': False, 'eval.enable_sampling': False, 'eval.begin_step': 6,
               'eval.end_step': 6, 'eval.poll_interval_s': 0.5, 'eval.wait_timeout_s': 300.}
  start = time.time()
  with pytest.raises(checkpointing.NoCheckpointError, match='no checkpoint evaluated'):
    eval_lib.evaluate(_config(**only_loss), workdir)
  assert time.time() - start < 60
  assert (f'checkpoint {workdir}/checkpoints/6 will not be written: the training run finished at '
          'step 4 (training.n_iters = 4 in its config.json)') in info_log.text
  assert 'waiting for checkpoint' not in info_log.text
  info_log.clear()
  _write_run_config(workdir, 8)                        # resumed with --config.training.n_iters=8
  eval_lib.evaluate(_config(**{**only_loss, 'eval.begin_step': 4, 'eval.end_step': 6,
                               'eval.wait_timeout_s': 1.}), workdir, 'resumed')
  assert f'waiting for checkpoint {workdir}/checkpoints/6:' in info_log.text
  assert os.path.exists(f'{workdir}/resumed/report_4.json')


def test_checkpoints_that_will_not_come_are_skipped(trained, tmp_path, info_log):
  """Step 6: polled until eval.wait_timeout_s, then skipped; without waiting, skipped at once.
  Step 2, deleted while the run has step 4: it will never be written, skipped at once."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  shutil.rmtree(f'{workdir}/checkpoints/2')
  record = {'host': 'trainer', 'pid': 7, 'token': 't', 'started': 'at 10', 'beat': time.time()}
  with open(f'{workdir}/train.lock', 'w') as f:        # a training run writes the workdir
    json.dump(record, f)
  only_loss = {'eval.enable_bpd': False, 'eval.enable_sampling': False, 'eval.begin_step': 2,
               'eval.end_step': 6, 'eval.poll_interval_s': 0.5, 'eval.wait_timeout_s': 3.}
  start = time.time()
  eval_lib.evaluate(_config(**only_loss), workdir, 'waited')
  assert 3 <= time.time() - start
  assert f'checkpoint {workdir}/checkpoints/2 was not kept (the run has step 4)' in info_log.text
  assert info_log.text.count(f'waiting for checkpoint {workdir}/checkpoints/6:') >= 2
  assert 'has no checkpoint yet' not in info_log.text       # the run has steps: no hint
  assert ('a training run is writing the workdir (host trainer, pid 7, started at 10, heartbeat'
          in info_log.text)
  assert re.search(f'{workdir}/checkpoints/6 does not exist after \\d+ s \\(eval.wait_timeout_s\\)',
                   info_log.text)
  assert sorted(os.listdir(f'{workdir}/waited')) == [
      'report_4.json', 'report_4.npz', 'stats.jsonl', 'step_4', 'tensorboard']
  info_log.clear()
  eval_lib.evaluate(_config(**only_loss, **{'eval.wait_for_checkpoints': False}), workdir,
                    'not_waited')
  assert 'waiting for checkpoint' not in info_log.text
  assert f'{workdir}/checkpoints/6 does not exist; skipped' in info_log.text
