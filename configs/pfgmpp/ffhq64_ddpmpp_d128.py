"""Command: python main.py --config=configs/pfgmpp/ffhq64_ddpmpp_d128.py --mode=sample \
  --workdir=W \
  --checkpoint=https://drive.google.com/drive/folders/1oEySn3FndR_pseFLEN16Dygrc_SFUMuf \
  --config.sampling.seeds=0-49999
Google Drive serves a web page, not the file: download it, pass its path as --checkpoint.
PFGM++ (Xu+23, arXiv:2302.04265), FFHQ 64×64 uncond, EDM's FFHQ DDPM++ recipe with D = 128
(Newbeeer/pfgmpp: --arch=ddpmpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.05
--augment=0.15 --pfgmpp=1 --aug_dim=128; Google Drive folder `ffhq_ddpm_D_128`).
Expected: FID 2.43 [README of Newbeeer/pfgmpp, abstract; paper Table 2, not re-checked; its own
D = ∞ retrain: 2.53, see configs/edm/ffhq64_ddpmpp.py], sampled as EDM's FFHQ: Heun, 40 steps
(79 NFE), deterministic, PFGM++ prior at σ_max = 80 (the README's generate.py command sets no
--steps; its default is 18). Train:
  python main.py --config=configs/pfgmpp/ffhq64_ddpmpp_d128.py --mode=train --workdir=W \
    --config.data.path=datasets/ffhq-64x64.zip
"""
from configs.edm import ffhq64_ddpmpp as edm_ffhq


def get_config():
  config = edm_ffhq.get_config()
  config.training.pfgmpp_D = 128.
  return config
