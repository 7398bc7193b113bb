"""Command: python main.py --config=configs/stf/cifar10_ddpmpp.py --mode=sample --workdir=W \
  --checkpoint=https://drive.google.com/file/d/1-tWzEr-cTMJSNOFtMHH2ZgO9wDhGBYSb/view \
  --config.sampling.seeds=0-49999
Google Drive serves a web page, not the file: download it, pass its path as --checkpoint.
STF (Xu+23b, arXiv:2302.00670), unconditional CIFAR-10, EDM's DDPM++ recipe with stable-target-
field targets (Newbeeer/stf: --cond=0 --arch=ddpmpp --stf=1 --rbatch 1024; Google Drive file
`stf/cifar10_ddpmpp/`). Reference set as configs/stf/cifar10_ncsnpp.py (8192 = 1024 per GPU × 8).
Expected: FID 1.92, 35 NFE (Heun, 18 steps, deterministic; EDM DDPM++: 1.97) [README of
Newbeeer/stf; the paper's table is not re-checked here]. Train:
  python main.py --config=configs/stf/cifar10_ddpmpp.py --mode=train --workdir=W
"""
from configs.edm import cifar10_ddpmpp as edm_ddpmpp


def get_config():
  config = edm_ddpmpp.get_config()
  config.training.stf_ref_batch = 8192
  return config
