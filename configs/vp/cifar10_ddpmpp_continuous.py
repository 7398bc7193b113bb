"""DDPM++ with the VP SDE, continuous DSM, on CIFAR-10 (Song+21 Tables 2–3).

Command: python main.py --config=configs/vp/cifar10_ddpmpp_continuous.py --mode=train --workdir=W
Expected: FID 2.55, IS 9.58 (PC); FID 3.93 (ODE); 3.16 bits/dim [README]; 61,804,419
parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config)
  presets.ddpmpp(config)
  return config
