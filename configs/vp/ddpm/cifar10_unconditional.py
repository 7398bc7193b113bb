"""DDPM on CIFAR-10 without noise conditioning (NCSNv2 technique 3 test), VP, discrete.

Command: python main.py --config=configs/vp/ddpm/cifar10_unconditional.py --mode=train --workdir=W
Expected: no number in the README; 1000 ancestral sampling steps.
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config, continuous=False)
  presets.ddpm(config)
  config.model.conditional = False
  return config
