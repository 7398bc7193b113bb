"""NCSN++ with the VE SDE, continuous DSM, on CIFAR-10 (Song+21 Table 3, arXiv:2011.13456).

Command: python main.py --config=configs/ve/cifar10_ncsnpp_continuous.py --mode=train --workdir=W
Expected: FID 2.38, IS 9.83 [README] (PC sampler, best checkpoint); 62,758,915 parameters
[verified: counted with the official code]; 0.20 s/step on 4× V100 with n_jitted_steps 5 [README].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp(config)
  return config
