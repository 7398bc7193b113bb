"""NCSN++ (1024 px variant) with the VE SDE on FFHQ 1024×1024 from a TFRecord file.

Command: python main.py --config=configs/ve/ffhq_ncsnpp_continuous.py --mode=train --workdir=W \
  --config.data.tfrecords_path=/path/to/ffhq-r10.tfrecords
Expected: samples only [README] (sample-only checkpoint, no FID); σ_max = 1348, N = 2000. The
original was a stand-alone PyTorch-style file (imported torch, hard-coded a path): here it is the
LSUN default plus its differences, and the record path is yours to pass.
"""
from configs import presets
from configs.default_lsun_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config)
  presets.ncsnpp_1024(config)
  config.training.reduce_mean = True
  config.training.batch_size = 8
  config.sampling.snr = 0.15
  config.eval.batch_size = 1024
  config.eval.begin_ckpt = 1
  config.model.sigma_max = 1348.
  config.data.image_size = 1024
  config.data.dataset = 'FFHQ'
  return config
