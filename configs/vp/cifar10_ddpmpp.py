"""DDPM++ trained with the DDPM loss (VP, 1000 discrete steps) on CIFAR-10.

Command: python main.py --config=configs/vp/cifar10_ddpmpp.py --mode=train --workdir=W
Expected: FID 2.78, IS 9.64 [README]; 61,804,419 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config, continuous=False)
  presets.ddpmpp(config)
  return config
