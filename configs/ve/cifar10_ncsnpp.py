"""NCSN++ trained with SMLD (VE, 1000 discrete noise levels) on CIFAR-10.

Command: python main.py --config=configs/ve/cifar10_ncsnpp.py --mode=train --workdir=W
Expected: FID 2.45, IS 9.73 [README]; 62,693,251 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsnpp(config, embedding_type='positional')
  return config
