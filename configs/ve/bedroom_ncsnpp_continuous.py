"""NCSN++ (256 px variant) with the VE SDE on LSUN bedroom 256×256.

Command: python main.py --config=configs/ve/bedroom_ncsnpp_continuous.py --mode=train --workdir=W
Expected: samples only [README] (sample-only checkpoint, no FID); PC sampling with N = 2000 and
one corrector step costs 4000 network evaluations.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp_256(config)
  return config
