"""EDM (config F): NCSN++ with EDM preconditioning and loss, CIFAR-10 uncond.

Command: python main.py --config=configs/edm/cifar10_ncsnpp.py --mode=train --workdir=W
Expected: FID 1.98 uncond, 35 NFE Heun [paper, Karras+22 Table 2]; class-conditional 1.79 with
--config.model.class_conditional=True (as configs/edm/cifar10_ddpmpp_cond.py). Runtime: ~2 days
on 8×V100 [README].
Mapping to EDM's SongUNet (--arch=ncsnpp): model_channels 128 -> nf, channel_mult (2, 2, 2),
4 blocks, attention at 16, Fourier embedding (scale 16) of c_noise, FIR [1, 3, 3, 1], residual
input pyramid, standard decoder; channel_mult_noise 2 -> our 2·nf Fourier features.
Published (EDM): python main.py --config=configs/edm/cifar10_ncsnpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-ve.pkl
(cond-ve: configs/edm/cifar10_ncsnpp_cond.py). Also of this network: PFGM++'s own EDM retrain
(D = ∞, FID 1.98 [README of Newbeeer/pfgmpp]), Google Drive folder `cifar10_ncsnpp_D_inf`,
  --checkpoint=https://drive.google.com/drive/folders/1vDeFtbaz3bBKJIJnZAk7JVrO8GvbFJh5
(Drive serves a page: download the file, pass its path).
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ncsnpp(config)
  presets.edm_songunet(config.model)
  presets.edm(config)
  return config
