"""PFGM++ (Xu+23, arXiv:2302.04265): EDM's NCSN++ recipe with the D = 2048 perturbation kernel.

Command: python main.py --config=configs/pfgmpp/cifar10_ncsnpp.py --mode=train --workdir=W
Expected: FID 1.91 uncond at D = 2048, 1.92 at D = 128, 1.98 at D = ∞ (EDM), 35 NFE Heun
[README of Newbeeer/pfgmpp, with EDM's augmentation, as here].
Change D with --config.training.pfgmpp_D=128; inf gives back configs/edm/cifar10_ncsnpp.py.
Only the training noise and the sampler's prior change; the network, σ schedule and ODE are EDM's.
Published (D = 2048): python main.py --config=configs/pfgmpp/cifar10_ncsnpp.py --mode=sample \
  --workdir=W --checkpoint=https://drive.google.com/drive/folders/1sZ7vh7o8kuXfFjK8ROWXxtEZi8Srewgo
(Google Drive folder `cifar10_ncsnpp_D_2048`; Drive serves a page: download the file, pass its
path); D = 128: configs/pfgmpp/cifar10_ncsnpp_d128.py.
"""
from configs.edm import cifar10_ncsnpp as edm_ncsnpp


def get_config():
  config = edm_ncsnpp.get_config()
  config.training.pfgmpp_D = 2048.
  return config
