"""Command: python main.py --config=configs/patch/ffhq64_ddpmpp.py --mode=train --workdir=W \
  --config.data.path=datasets/ffhq-64x64.zip
(no --checkpoint: no FFHQ-64 checkpoint is published; the Hugging Face repo
zhendongw/patch-diffusion holds only latent ADM models at 256 px: ImageNet, LSUN bedroom/church).
Patch Diffusion (Wang+23, arXiv:2304.12526) on FFHQ 64×64: configs/patch/celeba64_ddpmpp.py's
recipe (the only pixel-space one in its README: --arch=ddpmpp --batch=256 --cres=1,2,2,2
--lr=2e-4 --dropout=0.05 --augment=0 --real_p=0.5) on an EDM-style FFHQ zip
(dataset_tool.py --source=ffhq/images1024x1024 --dest=datasets/ffhq-64x64.zip --resolution=64x64).
Expected: the README gives no FFHQ-64 FID; the paper's FFHQ-64 result (and whether it used these
flags) is not re-checked here. Compare with EDM's FFHQ DDPM++ (FID 2.39 at
79 NFE, configs/edm/ffhq64_ddpmpp.py). Sampling as its README: Heun, 50 steps (99 NFE).
"""
from configs.patch import celeba64_ddpmpp as patch_celeba


def get_config():
  config = patch_celeba.get_config()
  config.data.dataset = 'IMAGE_ZIP'
  return config
