"""DDPM++ deep with the sub-VP SDE on CIFAR-10: the paper's best likelihood.

Command: python main.py --config=configs/subvp/cifar10_ddpmpp_deep_continuous.py --mode=train --workdir=W
Expected: 2.99 bits/dim [paper] [README]; FID 2.41, IS 9.57 (PC); FID 2.92 (ODE) [README].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.subvp(config)
  presets.ddpmpp(config)
  config.model.num_res_blocks = 8
  config.training.n_iters = 950001
  return config
