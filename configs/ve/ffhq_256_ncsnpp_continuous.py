"""NCSN++ (256 px variant) with the VE SDE on FFHQ 256×256 from a TFRecord file.

Command: python main.py --config=configs/ve/ffhq_256_ncsnpp_continuous.py --mode=train --workdir=W \
  --config.data.tfrecords_path=/path/to/ffhq-r08.tfrecords
Expected: samples only [README] (sample-only checkpoint, no FID); σ_max = 348. The original's
hard-coded record path is gone: pass yours (datasets.py fails fast when it is empty).
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp_256(config)
  config.data.dataset = 'FFHQ'
  config.model.sigma_max = 348.
  return config
