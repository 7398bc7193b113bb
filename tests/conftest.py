"""Run tests from the repository root's modules; keep JAX on the CPU and in float32."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import paths  # noqa: E402  pylint: disable=wrong-import-position
import utils  # noqa: E402  pylint: disable=wrong-import-position

paths.configure()       # as main.py does, before the first path operation
utils.configure_cpu()   # as main.py does, before any test starts JAX's backend


def pytest_collection_modifyitems(config, items):
  """Tests marked `slow` run only with SCOREFLOW_SLOW_TESTS=1 (.ci/run stays under 20 minutes)."""
  del config
  if os.environ.get('SCOREFLOW_SLOW_TESTS'):
    return
  skip = pytest.mark.skip(reason='slow: set SCOREFLOW_SLOW_TESTS=1')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)
