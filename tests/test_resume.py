"""A run killed with SIGKILL and restarted ends exactly where an uninterrupted run ends.

Both runs go through main.py in subprocesses (tiny digits config, batches of 256 of the 1,500
training digits, 16 steps, a resume checkpoint every 2 steps). The killed run is stopped once a
resume checkpoint past step 6 (past the first epoch) exists, then restarted; its final
parameters and its loss at every step equal the uninterrupted run's, bit for bit (randomness is
fold_in(seed, step); the input pipeline resumes from the position saved with the checkpoint,
data_state.py, and never replays: the test fails if the restart logs a replay).
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 16
OVERRIDES = ['--config=configs/quickstart/digits.py', '--config.training.batch_size=256',
             f'--config.training.n_iters={STEPS}', '--config.training.n_jitted_steps=1',
             '--config.training.log_freq=1', '--config.training.eval_freq=4',
             f'--config.training.snapshot_freq={STEPS}',
             '--config.training.snapshot_freq_for_preemption=2',
             '--config.training.snapshot_sampling=False', '--config.model.nf=16',
             '--config.model.num_res_blocks=1']


def _start(workdir):
  return subprocess.Popen([sys.executable, 'main.py', '--mode=train', f'--workdir={workdir}',
                           *OVERRIDES], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def _finish(proc):
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err.decode()[-3000:]
  return err.decode()


def _losses(workdir):
  """{step: loss}; a step logged twice (before the kill and after the restart) keeps the last."""
  with open(os.path.join(workdir, 'stats.jsonl')) as f:
    return {s['step']: s['loss'] for s in map(json.loads, f) if 'loss' in s}


def _eval_losses(workdir):
  with open(os.path.join(workdir, 'stats.jsonl')) as f:
    return {s['step']: s['eval_loss'] for s in map(json.loads, f) if 'eval_loss' in s}


def _params(workdir):
  path = os.path.join(workdir, 'checkpoints', str(STEPS))
  return ocp.StandardCheckpointer().restore(os.path.join(path, 'default'))


def _wait_for_resume_point(workdir, proc, after_step=6, timeout=240):
  meta = os.path.join(workdir, 'checkpoints-meta')
  start = time.time()
  while time.time() - start < timeout:
    steps = [int(d) for d in os.listdir(meta) if d.isdigit()] if os.path.isdir(meta) else []
    if steps and max(steps) > after_step:
      return max(steps)
    assert proc.poll() is None, 'the run ended before it could be killed'
    time.sleep(0.2)
  raise TimeoutError('no resume checkpoint appeared')


@pytest.mark.slow   # ~3.5 min on 2 cores
def test_killed_and_restarted_run_equals_an_uninterrupted_run(tmp_path):
  straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
  _finish(_start(straight))
  proc = _start(killed)
  saved = _wait_for_resume_point(killed, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert saved < STEPS and not os.path.isdir(os.path.join(killed, 'checkpoints', str(STEPS)))
  log = _finish(_start(killed))
  assert 'resumed from' in log and 'replaying the pipeline' not in log, log[-3000:]
  assert _losses(killed) == _losses(straight) and sorted(_losses(straight)) == list(
      range(1, STEPS + 1))
  assert _eval_losses(killed) == _eval_losses(straight)
  a, b = _params(straight), _params(killed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert int(b['step']) == STEPS

