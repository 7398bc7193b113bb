"""Command: python main.py --config=configs/pfgmpp/cifar10_ncsnpp_d128.py --mode=sample \
  --workdir=W \
  --checkpoint=https://drive.google.com/drive/folders/1W_fS4zwVGQ38I0tzgDZ30r54mOqzcgTP \
  --config.sampling.seeds=0-49999
Google Drive serves a web page, not the file: download it, pass its path as --checkpoint.
PFGM++ (Xu+23, arXiv:2302.04265), unconditional CIFAR-10, EDM's NCSN++ recipe with D = 128
(Newbeeer/pfgmpp: --cond=0 --arch=ncsnpp --pfgmpp=1 --aug_dim=128; Google Drive folder
`cifar10_ncsnpp_D_128`).
Expected: FID 1.92, 35 NFE (Heun, 18 steps, deterministic; PFGM++ prior at σ_max = 80)
[README of Newbeeer/pfgmpp; paper Table 1, not re-checked]. D = 2048 (1.91):
configs/pfgmpp/cifar10_ncsnpp.py. Train:
  python main.py --config=configs/pfgmpp/cifar10_ncsnpp_d128.py --mode=train --workdir=W
"""
from configs.pfgmpp import cifar10_ncsnpp as pfgmpp_ncsnpp


def get_config():
  config = pfgmpp_ncsnpp.get_config()
  config.training.pfgmpp_D = 128.
  return config
