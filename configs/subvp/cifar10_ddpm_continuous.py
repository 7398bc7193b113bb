"""Ho+20's DDPM U-Net with the sub-VP SDE, continuous DSM, on CIFAR-10.

Command: python main.py --config=configs/subvp/cifar10_ddpm_continuous.py --mode=train --workdir=W
Expected: FID 3.56 (ODE); 3.05 bits/dim [README].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.subvp(config)
  presets.ddpm(config)
  return config
