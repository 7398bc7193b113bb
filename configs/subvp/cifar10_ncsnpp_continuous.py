"""NCSN++ with the sub-VP SDE, continuous DSM, on CIFAR-10.

Command: python main.py --config=configs/subvp/cifar10_ncsnpp_continuous.py --mode=train --workdir=W
Expected: no number in the README for this config; 62,693,251 parameters [verified:
counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.subvp(config)
  presets.ncsnpp(config, embedding_type='positional')
  return config
