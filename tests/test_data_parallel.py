"""8 host devices give the loss curve of 1 device at the same global batch (float tolerance).

Each run is a subprocess (the device count is fixed when JAX starts) training the tiny digits
config for 4 steps through run_lib.train; the batch of 8 is split over a 'data' mesh of 8 CPU
devices in one run and kept on one device in the other. Random numbers do not depend on the
sharding (threefry is partitionable), so only the reduction order differs. With STF the
reference set (16 images per step) is global, so the curve does not depend on the device count
either.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import json, sys
import jax
from configs import quicktest
from configs.quickstart import digits
import run_lib
config = quicktest.shrink(digits.get_config())
t = config.training
t.batch_size, t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 8, 4, 4, 4
t.n_jitted_steps, t.log_freq, t.eval_freq, t.snapshot_sampling = 2, 2, 2, False
t.stf_ref_batch = int(sys.argv[3])
assert jax.device_count() == int(sys.argv[2]), jax.devices()
run_lib.train(config, sys.argv[1])
"""


def _curve(workdir, devices, stf_ref_batch):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  out = subprocess.run([sys.executable, '-c', SCRIPT, workdir, str(devices), str(stf_ref_batch)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=400)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, 'stats.jsonl')) as f:
    stats = [json.loads(line) for line in f]
  return ([s['loss'] for s in stats if 'loss' in s],
          [s['eval_loss'] for s in stats if 'eval_loss' in s])


@pytest.mark.slow   # two training subprocesses, ~2.5 min on 2 cores
@pytest.mark.parametrize('stf_ref_batch', [0, 16])
def test_eight_devices_match_one_device(tmp_path, stf_ref_batch):
  one = _curve(str(tmp_path / 'one'), 1, stf_ref_batch)
  eight = _curve(str(tmp_path / 'eight'), 8, stf_ref_batch)
  assert len(one[0]) == 2 and len(one[1]) == 2
  np.testing.assert_allclose(eight[0], one[0], rtol=2e-4)
  np.testing.assert_allclose(eight[1], one[1], rtol=2e-4)
