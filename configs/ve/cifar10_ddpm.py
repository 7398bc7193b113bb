"""Ho+20's DDPM U-Net trained with SMLD (VE, 1000 discrete noise levels) on CIFAR-10.

Command: python main.py --config=configs/ve/cifar10_ddpm.py --mode=train --workdir=W
Expected: no FID in the README for this config; 35,218,947 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ddpm(config)
  return config
