"""NCSN v1 on CIFAR-10 with NCSNv2 techniques 1, 2, 4, 5 (σ_max 50, 232 levels, EMA 0.999).

Command: python main.py --config=configs/ve/ncsn/cifar10_1245.py --mode=train --workdir=W
Expected: no number in score_sde's README; 34,428,675 parameters for 10 scales [verified:
counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsn(config, noise=(232, 0.176), ema=True)
  return config
