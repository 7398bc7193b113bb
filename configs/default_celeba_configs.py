"""CelebA 64×64 defaults (score_sde's default_celeba_configs values): CIFAR-10's with σ_max 90.

Run as is: `python main.py --config=configs/default_celeba_configs.py --mode=train --workdir=W`
(DDPM U-Net with the VE SDE; no published number). CelebA is tfds `celeb_a`, center crop 140
then resize to 64 (datasets.py).
"""
from configs import default_lib


def get_default_configs():
  config = default_lib.get_base_config()
  config.sampling.snr = 0.17
  config.eval.begin_ckpt = 1
  config.eval.enable_sampling = True
  config.data.dataset = 'CELEBA'
  config.data.image_size = 64
  config.model.sigma_max = 90.
  return config


def get_config():
  return get_default_configs()
