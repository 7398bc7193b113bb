"""DDPM++ with the sub-VP SDE, continuous DSM, on CIFAR-10.

Command: python main.py --config=configs/subvp/cifar10_ddpmpp_continuous.py --mode=train --workdir=W
Expected: FID 2.61, IS 9.56 (PC); FID 3.16 (ODE); 3.02 bits/dim [README].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.subvp(config)
  presets.ddpmpp(config)
  return config
