"""NCSN++ (256 px variant) with the VE SDE on LSUN church_outdoor 256×256.

Command: python main.py --config=configs/ve/church_ncsnpp_continuous.py --mode=train --workdir=W
Expected: samples only [README] (sample-only checkpoint, no FID); σ_max = 380, 4000 network
evaluations per PC sample.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp_256(config)
  config.data.category = 'church_outdoor'
  config.model.sigma_max = 380.
  return config
