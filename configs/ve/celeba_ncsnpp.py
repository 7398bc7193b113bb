"""NCSN++ trained with SMLD (VE, discrete) on CelebA 64×64.

Command: python main.py --config=configs/ve/celeba_ncsnpp.py --mode=train --workdir=W
Expected: FID ≈ 2.5 [maintainer, yang-song/score_sde#10]; no released checkpoint. (The original's
unused `model.sigma_begin = 90` is dropped: it equals sigma_max.)
"""
from configs import presets
from configs.default_celeba_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsnpp(config, embedding_type='positional')
  return config
