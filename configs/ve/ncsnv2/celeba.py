"""NCSNv2 on CelebA 64×64: 500 levels σ ∈ [0.01, 90], ALD sampling.

Command: python main.py --config=configs/ve/ncsnv2/celeba.py --mode=train --workdir=W
Expected: no number in score_sde's README; 33,970,563 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_celeba_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsnv2(config)
  config.model.num_scales = 500
  config.sampling.n_steps_each = 5
  config.sampling.snr = 0.128
  return config
