"""NCSN v1 on CIFAR-10 with NCSNv2 technique 5 only (EMA 0.999; arXiv:2006.09011).

Command: python main.py --config=configs/ve/ncsn/cifar10_5.py --mode=train --workdir=W
Expected: no number in score_sde's README; 34,428,675 parameters for 10 scales [verified:
counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsn(config, ema=True)
  return config
