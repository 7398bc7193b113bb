"""Run tests from the repository root's modules; keep JAX on the CPU and in float32."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# One JAX compilation cache per test run, made by the first process that imports this file (the
# xdist controller) and inherited by its workers and every subprocess they start: tests that
# compile the same tiny step (main.py runs, shared fixtures) compile it once. ~20% off the
# pipeline, eval and controllable test files on a 2-core AMD EPYC (6m34s -> 5m14s).
_OWN_CACHE = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _OWN_CACHE:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='scoreflow-jax-cache-')

# Tests compile far more than they run (tiny models, a few steps): LLVM's optimisation level 0
# makes each compilation ~45% shorter and the compiled code ~1.8x slower; on a 2-core AMD EPYC
# the whole suite took 21m48s instead of 24m21s. It changes how XLA's CPU code is generated, not
# what it computes; main.py and bench/ keep XLA's default. A user's own setting of the flag wins.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

import checkpointing  # noqa: E402  pylint: disable=wrong-import-position
import paths  # noqa: E402  pylint: disable=wrong-import-position
import utils  # noqa: E402  pylint: disable=wrong-import-position

paths.configure()       # as main.py does, before the first path operation
checkpointing.quiet_orbax_logging()   # as main.py's logging setup does (outputs.tee_logging)
utils.configure_cpu()   # as main.py does, before any test starts JAX's backend


def pytest_unconfigure(config):
  """The process that made the run's compilation cache removes it."""
  if _OWN_CACHE and not hasattr(config, 'workerinput'):
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  """Tests marked `slow` run only with SCOREFLOW_SLOW_TESTS=1 (.ci/run stays under 20 minutes)."""
  del config
  if os.environ.get('SCOREFLOW_SLOW_TESTS'):
    return
  skip = pytest.mark.skip(reason='slow: set SCOREFLOW_SLOW_TESTS=1')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)


@pytest.fixture
def info_log(caplog):
  """`caplog` holding absl INFO lines (progress, waits), whatever verbosity an earlier test in
  this process left; restored afterwards."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  try:
    with caplog.at_level(logging.INFO):
      yield caplog
  finally:
    logging.set_verbosity(verbosity)


@pytest.fixture
def small_tmpfs(tmp_path):
  """A 64 KiB tmpfs (a file system that fills up), unmounted afterwards; skipped without root
  and mount(8)."""
  path = tmp_path / 'small'
  path.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs',
                                          str(path)], capture_output=True).returncode:
    pytest.skip('needs root and mount(8) for a small tmpfs')
  yield path
  subprocess.run(['umount', str(path)], check=True)


@pytest.fixture(scope='module')
def emulator():
  """A local GCS emulator (tests/gcs_emulator.py) for this module's tests; its URL. The client
  environment points gcsfs and tensorstore at it while the module runs."""
  import gcs_emulator  # pylint: disable=import-outside-toplevel
  with gcs_emulator.running() as url, pytest.MonkeyPatch.context() as mp:
    for k, v in gcs_emulator.client_env(url).items():
      mp.setenv(k, v)
    yield url


@pytest.fixture(params=['local', 'gcs'])
def root(request, tmp_path):
  """A fresh folder: local, or a fresh prefix of the emulator's bucket."""
  if request.param == 'local':
    return str(tmp_path / 'root')
  request.getfixturevalue('emulator')
  import gcs_emulator  # pylint: disable=import-outside-toplevel
  return f'gs://{gcs_emulator.BUCKET}/{request.node.name.replace("[", "-").rstrip("]")}'


@pytest.fixture
def recorded_batches(monkeypatch):
  """[[batch, ...] per `run_lib.global_batches` stream, in the order the streams start (training
  before eval)], each batch as numpy, recorded while the test runs."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import run_lib  # pylint: disable=import-outside-toplevel
  calls, batches = [], run_lib.global_batches

  def recorded(elements, run, axis):
    calls.append(seen := [])
    for x in batches(elements, run, axis):
      seen.append(np.asarray(x))
      yield x
  monkeypatch.setattr(run_lib, 'global_batches', recorded)
  return calls
