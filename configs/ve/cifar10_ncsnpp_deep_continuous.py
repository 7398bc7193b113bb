"""NCSN++ deep (8 blocks per resolution), VE SDE, continuous, CIFAR-10: the paper's best FID.

Command: python main.py --config=configs/ve/cifar10_ncsnpp_deep_continuous.py --mode=train --workdir=W
Expected: FID 2.20, IS 9.89 [paper] [README]; 107,587,075 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp(config)
  config.model.num_res_blocks = 8
  config.training.n_iters = 950001
  return config
