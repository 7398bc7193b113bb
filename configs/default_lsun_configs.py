"""LSUN 256×256 defaults (score_sde's default_lsun_configs values); category 'bedroom'.

Run as is: `python main.py --config=configs/default_lsun_configs.py --mode=train --workdir=W`
(DDPM U-Net with the VE SDE; no published number). σ_max 378, N = 2000, batch 64, 2.4M
iterations; the FFHQ / CelebA-HQ configs start from here too.
"""
from configs import default_lib


def get_default_configs():
  config = default_lib.get_base_config()
  training = config.training
  training.batch_size = 64
  training.n_iters = 2400001
  training.snapshot_freq_for_preemption = 5000
  config.sampling.snr = 0.075
  evaluate = config.eval
  evaluate.begin_ckpt = 50
  evaluate.end_ckpt = 96
  evaluate.batch_size = 512
  evaluate.enable_sampling = True
  data = config.data
  data.dataset = 'LSUN'
  data.image_size = 256
  data.category = 'bedroom'
  model = config.model
  model.sigma_max = 378.
  model.num_scales = 2000
  model.dropout = 0.
  return config


def get_config():
  return get_default_configs()
