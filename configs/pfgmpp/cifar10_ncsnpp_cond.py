"""Command: python main.py --config=configs/pfgmpp/cifar10_ncsnpp_cond.py --mode=sample \
  --workdir=W \
  --checkpoint=https://drive.google.com/drive/folders/1IADJcuoUb2wc-Dzg42-F8RjgKVSZE-Jd \
  --config.sampling.seeds=0-49999
Google Drive serves a web page, not the file: download it, pass its path as --checkpoint.
PFGM++ (Xu+23, arXiv:2302.04265), class-conditional CIFAR-10, EDM's NCSN++ recipe with D = 2048
(Newbeeer/pfgmpp: --cond=1 --arch=ncsnpp --pfgmpp=1 --aug_dim=2048; Google Drive folder
`cifar10_ncsnpp_D_2048_conditional`).
Expected: FID 1.74, 35 NFE (Heun, 18 steps, deterministic; one random class per seed)
[README of Newbeeer/pfgmpp, abstract; paper Table 1, not re-checked; EDM cond: 1.79]. Train:
  python main.py --config=configs/pfgmpp/cifar10_ncsnpp_cond.py --mode=train --workdir=W
"""
from configs.pfgmpp import cifar10_ncsnpp as pfgmpp_ncsnpp


def get_config():
  config = pfgmpp_ncsnpp.get_config()
  config.model.class_conditional = True
  return config
