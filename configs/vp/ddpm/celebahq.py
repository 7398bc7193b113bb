"""Ho+20's DDPM (256 px U-Net, VP, 1000 discrete steps) on CelebA-HQ 256×256 (TFRecords).

Command: python main.py --config=configs/vp/ddpm/celebahq.py --mode=train --workdir=W \
  --config.data.tfrecords_path=/path/to/celebahq-r08.tfrecords
Expected: no number in score_sde's README; 1000 ancestral sampling steps, lr 2e-5. The
original's hard-coded record path is gone: pass yours.
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
  config.data.dataset = 'CelebAHQ'
  return config
