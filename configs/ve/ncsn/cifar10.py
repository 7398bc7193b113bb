"""NCSN v1 (Song&Ermon19, arXiv:1907.05600) on CIFAR-10: 10 noise levels σ ∈ [0.01, 1], no EMA.

Command: python main.py --config=configs/ve/ncsn/cifar10.py --mode=train --workdir=W
Expected: no number in score_sde's README; 34,428,675 parameters for 10 scales [verified:
counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsn(config)
  return config
