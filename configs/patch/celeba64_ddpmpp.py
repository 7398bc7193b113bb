"""Patch Diffusion (Wang+23, arXiv:2304.12526): EDM's DDPM++ on CelebA 64×64, trained on random
patches of 16, 32 or 64 pixels (real_p = 0.5) with two coordinate channels.

Command: python main.py --config=configs/patch/celeba64_ddpmpp.py --mode=train --workdir=W
Expected: FID 1.77 [README of Zhendong-Wang/Patch-Diffusion, ≥ 2× faster training than EDM].
Recipe of its README: --arch=ddpmpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.05
--augment=0 --real_p=0.5. As its training loop, a step of 32- / 16-pixel patches reads 2 / 4
batches (512 / 1024 images; training.patch_batch_mul) and the lr ramp and EMA count 1.9 × 256
images per step. One optimizer step per call (n_jitted_steps = 1, as EDM's loop): the train step
compiles once per patch size.
Sampling: its README's generate.py --steps=50 (DDPM++; Heun, 99 NFE, deterministic). No checkpoint
of this model is published: the Hugging Face repo zhendongw/patch-diffusion holds only latent
ADM models at 256 px (ImageNet, LSUN bedroom / church).
"""
from configs import presets
from configs.default_celeba_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ddpmpp(config)
  presets.edm_songunet(config.model)
  presets.edm(config)
  config.training.batch_size, config.training.patch_real_p = 256, 0.5
  config.training.augment_p, config.training.n_jitted_steps = 0., 1
  m = config.model
  m.ch_mult, m.dropout, m.patch_coords, m.augment_dim = (1, 2, 2, 2), 0.05, True, 0
  config.optim.lr = 2e-4
  config.sampling.steps = 50
  return config
