"""bench/common.py and bench/memory.py: XLA's FLOP count, the peers' JSON read back from a subprocess (a fake peer
script stands in for bench/peers.py, so no torch is needed) and the table row; no timing."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench')
sys.path.insert(0, BENCH)
import common  # noqa: E402  pylint: disable=wrong-import-position
from configs import default_lib  # noqa: E402  pylint: disable=wrong-import-position
from configs import quicktest  # noqa: E402  pylint: disable=wrong-import-position
from configs.quickstart import digits  # noqa: E402  pylint: disable=wrong-import-position
from models import utils as mutils  # noqa: E402  pylint: disable=wrong-import-position


def test_xla_flops_of_a_matmul_is_2n3():
  n = 64
  a = jnp.ones((n, n), jnp.float32)
  assert common.xla_flops(jax.jit(jnp.matmul), a, a) == 2 * n ** 3


_SHARDED_FLOPS = '''
import sys
sys.path.insert(0, 'bench')
import jax, jax.numpy as jnp
import common
replicated, split = common.sampling_layout()
a = jnp.ones((64, 64), jnp.float32)
print(jax.device_count(), common.xla_flops(jax.jit(jnp.matmul), jax.device_put(a, split),
                                           jax.device_put(a, replicated)))
'''


def test_xla_flops_of_a_batch_split_over_devices_counts_every_device():
  """XLA's cost analysis of a sharded program is one device's; the sampling rows (one device per
  core) report the whole program's."""
  root = os.path.dirname(BENCH)
  out = subprocess.run([sys.executable, '-c', _SHARDED_FLOPS], cwd=root, capture_output=True,
                       text=True, timeout=120, check=True, env={
                           **os.environ, 'JAX_PLATFORMS': 'cpu',
                           'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert out.stdout.split() == ['2', str(float(2 * 64 ** 3))], out.stderr[-2000:]


def test_xla_flops_counts_a_loop_body_once():
  """The PC-step row of bench/model_forward.py reads one step off a sampler loop this way."""
  n = 32
  a = jnp.ones((n, n), jnp.float32)
  loop = jax.jit(lambda a: jax.lax.fori_loop(0, 10, lambda i, x: x @ a, a))
  assert common.xla_flops(loop, a) == pytest.approx(2 * n ** 3, rel=1e-3)   # + the loop counter


def test_a_train_row_divides_by_the_steps_per_call_and_threads_the_state():
  """A toy train step of k unrolled steps w ← w + a·w: per step 2n³ (matmul) + n² (add) FLOPs,
  plus the metric's n² sum once per call; each call starts from the state the last one returned."""
  n, k = 32, 3
  def train_step(w, xs):
    for i in range(xs.shape[0]):
      w = w + xs[i] @ w
    return w, jnp.sum(w)
  mix = np.full((n, n), 1. / n, np.float32)
  args = [jnp.eye(n), jnp.asarray(np.stack([mix] * k))]
  row = common.train_row('toy', 'toy_step', jax.jit(train_step), args, k, repeats=2)
  assert row.seconds() > 0 and row.first > 0
  assert row.flops == pytest.approx(2 * n ** 3 + n ** 2 + n ** 2 / k, rel=1e-3)
  expected = np.eye(n, dtype=np.float32)
  for _ in range(4 * k):          # the row's first call, then a window: a warm call and 2 timed
    expected = expected + mix @ expected
  np.testing.assert_allclose(args[0], expected, rtol=1e-5)


def test_rounds_keep_each_sides_minimum_and_pair_rows_with_the_peer_by_workload():
  """`in_rounds` alternates our windows and the peer's run `rounds` times: a slow round on
  either side (here the second of ours, the first of the peer's) does not reach the table."""
  ours = iter([0.010, 0.030, 0.012])
  peers = iter([{'fwd': 0.050, 'other': 1.}, {'fwd': 0.020}, {'fwd': 0.025}])
  calls = []
  def peer():
    calls.append('peer')
    return next(peers)
  def window():
    calls.append('ours')
    return next(ours)
  rows = [common.Row('forward', 'fwd', 1e9, window, 0.), common.Row('alone', 'none', None,
                                                                   lambda: 0.5, 0.)]
  table = common.in_rounds(rows, 3, peer)
  assert table == [('forward', 0.010, 0.020, 1e9), ('alone', 0.5, None, None)]
  assert calls == ['ours', 'peer'] * 3
  assert common.in_rounds(rows[1:], 2) == [('alone', 0.5, None, None)]


def test_peer_times_reads_the_json_line_of_the_peer_script(tmp_path):
  fake = tmp_path / 'fake_peers.py'
  fake.write_text(
      'import json, sys\n'
      'print("a log line before the result")\n'
      'print("and a warning", file=sys.stderr)\n'
      'print(json.dumps({"edm_forward": 0.025, "argv": sys.argv[1:]}))\n')
  out = common.peer_times(sys.executable, {'edm': '/some/checkout'}, batch=8, repeats=3,
                          threads=2, extra=('--pc_steps', '4'), script=str(fake))
  assert out['edm_forward'] == 0.025
  assert out['argv'] == ['--batch', '8', '--repeats', '3', '--threads', '2', '--pc_steps', '4',
                         '--edm', '/some/checkout']


def test_peers_script_runs_its_argument_parser_without_torch():
  result = subprocess.run([sys.executable, os.path.join(BENCH, 'peers.py'), '--help'],
                          check=True, capture_output=True, text=True)
  assert '--score_sde_pytorch' in result.stdout and '--edm' in result.stdout


def test_a_python_that_cannot_run_the_peer_fails_before_our_measurement(tmp_path):
  """--peer_python is checked when the flags are parsed (bench/peers.py --check), not after
  minutes of our own timing: this test's Python has no torch, so the real script fails."""
  parser = common.parser('doc', 10, 'edm', 'checkout', '1,2,3', 'peer seconds')
  with pytest.raises(SystemExit) as failure:
    common.parse(parser, 'edm', ['--peer_python', sys.executable, '--edm', str(tmp_path)])
  message = str(failure.value)
  assert "No module named 'torch'" in message and '\n' not in message, message
  fine = tmp_path / 'fake_peers.py'
  fine.write_text('import sys\nassert sys.argv[1:] == ["--check", "--edm", "E"]\nprint("{}")\n')
  common.check_peer(sys.executable, {'edm': 'E'}, script=str(fine))     # no exit


def test_given_peer_and_row():
  peer = common.given_peer('0.02,1.5', ('forward', 'sampler', 'step'))
  assert peer == {'forward': 0.02, 'sampler': 1.5}
  line = common.row('forward', 0.01, peer['forward'], 1e9, gemm=2e11)
  assert line.split()[1:] == ['10.0', '20.0', '2.00', '1.00', '100.0', '50.0%']
  assert common.row('step', 0.01, None, None, gemm=2e11).split()[1:] == ['10.0', '-', '-', '-',
                                                                          '-', '-']


def test_train_rows_are_one_and_n_steps_per_call_and_n_is_checked(capsys):
  parser = common.parser('doc', 10, 'edm', 'checkout', '1,2,3', 'peer seconds')
  trains_with = default_lib.get_base_config().training.n_jitted_steps    # the paper configs' 5
  assert common.parse(parser, 'edm', []).n_jitted_steps == trains_with
  assert common.steps_per_call(5) == [1, 5] and common.steps_per_call(1) == [1]
  with pytest.raises(SystemExit):
    common.parse(parser, 'edm', ['--n_jitted_steps', '0'])
  assert '--n_jitted_steps 0' in capsys.readouterr().err
  assert common.parse(parser, 'edm', []).rounds == 3
  with pytest.raises(SystemExit):
    common.parse(parser, 'edm', ['--rounds', '0'])
  assert '--rounds 0' in capsys.readouterr().err


def test_profile_step_finds_each_kernel_and_the_op_it_comes_from():
  """bench/profile_step.py on a matmul followed by elementwise ops: the kernels are timed, named
  after the compiled HLO, and mapped back to the JAX ops that produced them (the elementwise
  fusion is named after its root, the add)."""
  import profile_step  # pylint: disable=import-outside-toplevel
  a = jnp.ones((256, 256), jnp.float32)
  fn, args = jax.jit(lambda a: jnp.sin(a @ a) + 1.), [a]
  names = profile_step.op_names(fn, args)
  times = profile_step.kernel_times(fn, args, steps=2, kernels=names)
  assert times and all(ms >= 0 for ms in times.values())
  ops = ' '.join(names[k] for k in times)
  assert 'dot_general' in ops and 'add' in ops, ops
  assert all(names[k].startswith('jit(') for k in times), times


@pytest.mark.slow   # ~30 s; bench/ is not on the users' path
def test_memory_counts_the_state_as_parameters_adam_and_ema():
  """bench/memory.py on CPU (the TPU target needs libtpu): the state is the parameters, Adam's
  two moments and the EMA — 4 float32 copies of the network — and the step needs more than it."""
  import memory  # pylint: disable=import-outside-toplevel
  config = quicktest.shrink(digits.get_config())
  found = memory.step_memory(config, memory.target_device('cpu', ''))
  params = mutils.count_params(config)
  assert abs(found['state'] * memory.MIB - 4 * 4 * params) < 1024      # + step counters
  assert found['peak'] > found['state'] and found['temp'] > 0


@pytest.mark.slow   # ~100 s: two subprocesses, each a full compile
def test_dtype_speed_runs_each_row_in_its_own_process(capsys):
  """bench/dtype_speed.py: the training run's own compiled step per dtype, a subprocess per row;
  the first dtype is the speed-up's base, XLA's FLOP count is that of a real step."""
  import dtype_speed  # pylint: disable=import-outside-toplevel
  name = 'quickstart/digits'
  rows = dtype_speed.main(['--configs', name, '--dtypes', 'float32,bfloat16', '--batch', '2',
                           '--repeats', '1'])
  assert [row[:2] for row in rows] == [(name, 'float32'), (name, 'bfloat16')]
  for _, _, row in rows:
    assert row['flops'] > 0 and row['step_s'] > 0 and row['peak_bytes'] is None   # CPU: no stats
    assert abs(row['loss'] - rows[0][2]['loss']) < 0.05 * abs(rows[0][2]['loss'])
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f'| {name}')]
  assert len(lines) == 2 and lines[0].split(' | ')[6] == '1.00'


def test_conv_share_finds_each_3x3_convolution_of_a_compiled_function():
  """bench/conv_share.py reads every 3×3 convolution (input shape, output channels) from the
  optimised HLO, a repeated shape counted once per occurrence, other kernel sizes left out."""
  import conv_share  # pylint: disable=import-outside-toplevel
  conv = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def net(x, w1, w2, w3):
    y = jax.nn.silu(conv(x, w1))
    y = conv(jnp.concatenate([y, y], -1), w2)
    return conv(y, w3), conv(x * 2., w1)

  args = (jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones((3, 3, 8, 5)),
          jnp.ones((1, 1, 5, 6)))
  text = jax.jit(net).lower(*args).compile().as_text()
  assert conv_share.conv_shapes(text) == {(2, 8, 8, 3, 4): 2, (2, 8, 8, 8, 5): 1}
  for grad in (False, True):   # runs with and without gradients; no bound on the time
    assert conv_share.xla_conv_seconds((2, 8, 8, 3, 4), repeats=2, grad=grad) > 0
