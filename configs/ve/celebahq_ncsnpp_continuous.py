"""NCSN++ (1024 px variant) with the VE SDE on CelebA-HQ 1024×1024 from a TFRecord file.

Command: python main.py --config=configs/ve/celebahq_ncsnpp_continuous.py --mode=train --workdir=W \
  --config.data.tfrecords_path=/path/to/celebahq-r10.tfrecords
Expected: 1024×1024 samples [paper] (no FID reported, no released checkpoint); σ_max = 1348,
N = 2000. The original imported torch and hard-coded a path: here it is the LSUN default plus its
differences, and the record path is yours to pass.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp_1024(config)
  config.training.batch_size = 8
  config.sampling.snr = 0.15
  config.eval.batch_size = 1024
  config.eval.begin_ckpt = 1
  config.model.sigma_max = 1348.
  config.data.image_size = 1024
  config.data.dataset = 'CelebAHQ'
  return config
