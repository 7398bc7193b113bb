"""NCSNv2 (128 px network) on LSUN bedroom 128×128: 1086 levels σ ∈ [0.01, 190].

Command: python main.py --config=configs/ve/ncsnv2/bedroom.py --mode=train --workdir=W
Expected: no number in score_sde's README; ALD costs 1086 × 3 = 3258 network evaluations per
sample. Fixes the original's typo `training.continuouse`: training is discrete, as intended.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsnv2(config, name='ncsnv2_128')
  config.training.batch_size = 128
  config.data.image_size = 128
  config.model.sigma_max = 190.
  config.model.num_scales = 1086
  config.model.ema_rate = 0.9999
  config.sampling.n_steps_each = 3
  config.sampling.snr = 0.095
  return config
