"""CIFAR-10 defaults (score_sde's default_cifar10_configs values): 32×32 RGB, 1.3M iterations.

Run as is: `python main.py --config=configs/default_cifar10_configs.py --mode=train --workdir=W`
trains the DDPM U-Net (35,218,947 parameters, counted with the official code) with the VE SDE;
no published number exists for that pair. Leaves under ve/, vp/, subvp/ start from here.
"""
from configs import default_lib


def get_default_configs():
  """The base tree as is: its values are CIFAR-10's."""
  return default_lib.get_base_config()


def get_config():
  return get_default_configs()
