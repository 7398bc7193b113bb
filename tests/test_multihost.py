"""Two processes on loopback (jax.distributed, one CPU device each) train one run together.

main.py --distributed=127.0.0.1:PORT,2,i starts each process; they share one workdir as hosts
of a pod share a bucket. The global batch is the union of the processes' shares of the data
(each reads its own shard, datasets._shard), so the loss curve depends on the process count
like any multi-host input pipeline; what must hold is that the run is one run: every step is
logged once (by process 0), checkpoints and samples are written once and restore, and each
process keeps its own log file.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4
OVERRIDES = ['--config=configs/quickstart/digits.py', '--config.training.batch_size=4',
             f'--config.training.n_iters={STEPS}', '--config.training.n_jitted_steps=1',
             '--config.training.log_freq=1', '--config.training.eval_freq=2',
             '--config.training.snapshot_freq=2', '--config.training.snapshot_freq_for_preemption=2',
             '--config.model.nf=16', '--config.model.num_res_blocks=1', '--config.sampling.steps=4']


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_train_one_run(tmp_path):
  workdir, port = str(tmp_path / 'run'), _free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)   # one device per process
  procs = [subprocess.Popen(['timeout', '400', sys.executable, 'main.py', '--mode=train',
                             f'--workdir={workdir}', f'--distributed=127.0.0.1:{port},2,{i}',
                             *OVERRIDES], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE) for i in range(2)]
  errs = [p.communicate(timeout=420)[1].decode() for p in procs]
  for i, (p, err) in enumerate(zip(procs, errs)):
    assert p.returncode == 0, f'process {i}:\n{err[-3000:]}'
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



def test_distributed_flag_is_checked_before_jax_starts():
  import run_lib  # pylint: disable=import-outside-toplevel
  assert run_lib.init_distributed('') == 0                    # one process: nothing to join
  with pytest.raises(ValueError, match=r"expected 'auto' or ADDRESS:PORT,NUM_PROCESSES,PROCESS_ID"):
    run_lib.init_distributed('127.0.0.1:1234,two,0')
