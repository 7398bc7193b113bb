"""Command: python main.py --config=configs/patch/lsun256_adm_latent.py --mode=sample --workdir=W \
  --config.sampling.seeds=0-49999 \
  --checkpoint=https://huggingface.co/zhendongw/patch-diffusion/resolve/main/FILE.pkl
Patch Diffusion (Wang+23, arXiv:2304.12526) on LSUN bedroom 256×256 (church: its zip), without
classes, on Stable Diffusion's VAE latents as configs/patch/imagenet256_adm_latent_cond.py;
FILE: its LSUN snapshot on that Hugging Face page.
Expected: the paper's LSUN FIDs (not recorded here) from its README's generate.py --steps=256
--S_churn=40 --S_min=0.05 --S_max=50 --S_noise=1.003 --on_latents=1 (511 NFE).
Train: python main.py --config=configs/patch/lsun256_adm_latent.py --mode=train --workdir=W \
  --config.data.path=datasets/lsun-bedroom-256x256.zip
README recipe: --cond=0 --arch=adm --train_on_latents=1 --duration=200 --batch=1024 --lr=1e-4
--ema=50 --dropout=0.10 --real_p=0.5: 200 Mimg / (1.5 × 1024) = 130,208 steps.
"""
from configs.patch import imagenet256_adm_latent_cond as imagenet


def get_config():
  config = imagenet.get_config()
  config.data.num_classes = 10
  config.training.batch_size, config.training.n_iters = 1024, 130208
  m = config.model
  m.class_conditional, m.label_dropout = False, 0.
  config.sampling.guidance = 1.
  return config
