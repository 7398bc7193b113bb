"""Run tests from the repository root's modules; keep JAX on the CPU and in float32."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import utils  # noqa: E402  pylint: disable=wrong-import-position

utils.configure_cpu()   # as main.py does, before any test starts JAX's backend
