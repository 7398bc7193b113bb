"""Ho+20's DDPM (U-Net, VP, 1000 discrete steps, ancestral sampling) on CIFAR-10.

Command: python main.py --config=configs/vp/ddpm/cifar10.py --mode=train --workdir=W
Expected: FID 3.24 (PC); FID 3.37 (ODE); 3.28 bits/dim [README, row vp/cifar10_ddpm];
35,218,947 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config, continuous=False)
  presets.ddpm(config)
  return config
