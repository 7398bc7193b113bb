"""EDM (config F): DDPM++ with EDM preconditioning and loss, CIFAR-10 uncond.

Command: python main.py --config=configs/edm/cifar10_ddpmpp.py --mode=train --workdir=W
Expected: FID 1.97 uncond, 35 NFE Heun [paper, Karras+22 Table 2]; class-conditional 1.79: configs/edm/
cifar10_ddpmpp_cond.py. Runtime: ~2 days on 8×V100 [README].
Mapping to EDM's SongUNet (--arch=ddpmpp): model_channels 128 -> nf, channel_mult (2, 2, 2),
4 blocks, attention at 16, positional embedding of c_noise, [1, 1] resampling -> fir=False,
BigGAN up/down blocks, skip scale 1/√2; see models/precond.py for the embedding details.
Published (EDM): python main.py --config=configs/edm/cifar10_ddpmpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ddpmpp(config)
  presets.edm_songunet(config.model)
  presets.edm(config)
  return config
