"""NCSN v1 on CelebA 64×64: 10 levels σ ∈ [0.01, 1], no EMA (original typo `training.loss` fixed).

Command: python main.py --config=configs/ve/ncsn/celeba.py --mode=train --workdir=W
Expected: no number in score_sde's README; 34,428,675 parameters for 10 scales [verified:
counted with the official code].
"""
from configs import presets
from configs.default_celeba_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsn(config)
  return config
