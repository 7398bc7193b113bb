"""DDPM++ deep (8 blocks per resolution), VP SDE, continuous, CIFAR-10.

Command: python main.py --config=configs/vp/cifar10_ddpmpp_deep_continuous.py --mode=train --workdir=W
Expected: FID 2.41, IS 9.68 (PC); FID 3.08 (ODE); 3.13 bits/dim [README].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config)
  presets.ddpmpp(config)
  config.model.num_res_blocks = 8
  config.training.n_iters = 950001
  return config
