"""Command: python main.py --config=configs/edm_es/cifar10_uncond_heun.py --mode=sample \
  --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl \
  --config.sampling.seeds=0-49999
Epsilon Scaling (Ning+24, arXiv:2308.15321, EDM-ES) on EDM's unconditional CIFAR-10 DDPM++:
Heun, 18 steps (35 NFE), ε̂ / b with b = 1.0005 at both evaluations of every step.
Expected: FID 1.97 -> 1.95 [EDM-ES table, README of forever208/EDM-ES (docs/eps_scaler.png),
T' = NFE]. The other Heun rows of that table, same checkpoint:
  21 NFE: --config.sampling.steps=11 --config.sampling.eps_scaler=0.9985   FID 2.33 -> 2.24
  13 NFE: --config.sampling.steps=7 --config.sampling.eps_scaler=1.0060    FID 7.16 -> 6.54
Euler rows: configs/edm_es/cifar10_uncond_euler.py.
Train (EDM's training, = configs/edm/cifar10_ddpmpp.py):
  python main.py --config=configs/edm_es/cifar10_uncond_heun.py --mode=train --workdir=W
"""
from configs.edm import cifar10_ddpmpp as edm_ddpmpp


def get_config():
  config = edm_ddpmpp.get_config()
  config.sampling.eps_scaler = 1.0005
  return config
