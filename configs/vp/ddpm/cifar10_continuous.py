"""Ho+20's DDPM U-Net with the VP SDE, continuous DSM, on CIFAR-10.

Command: python main.py --config=configs/vp/ddpm/cifar10_continuous.py --mode=train --workdir=W
Expected: FID 3.69 (ODE); 3.21 bits/dim [README, row vp/cifar10_ddpm_continuous].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config)
  presets.ddpm(config)
  return config
