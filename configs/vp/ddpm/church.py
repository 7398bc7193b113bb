"""Ho+20's DDPM (256 px U-Net, VP, 1000 discrete steps) on LSUN church_outdoor 256×256.

Command: python main.py --config=configs/vp/ddpm/church.py --mode=train --workdir=W
Expected: no number in score_sde's README; 1000 ancestral sampling steps, lr 2e-5.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config, continuous=False)
  presets.ddpm(config)
  config.model.ch_mult = (1, 1, 2, 2, 4, 4)
  config.model.num_scales = 1000
  config.optim.lr = 2e-5
  config.data.category = 'church_outdoor'
  return config
