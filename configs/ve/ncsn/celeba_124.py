"""NCSN v1 on CelebA 64×64 with NCSNv2 techniques 1, 2, 4 (σ_max 90, 500 levels; no EMA).

Command: python main.py --config=configs/ve/ncsn/celeba_124.py --mode=train --workdir=W
Expected: no number in score_sde's README; 34,428,675 parameters for 10 scales [verified:
counted with the official code].
"""
from configs import presets
from configs.default_celeba_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsn(config, noise=(500, 0.128))
  return config
