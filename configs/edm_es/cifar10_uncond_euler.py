"""Command: python main.py --config=configs/edm_es/cifar10_uncond_euler.py --mode=sample \
  --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl \
  --config.sampling.seeds=0-49999
Epsilon Scaling (Ning+24, arXiv:2308.15321, EDM-ES) on EDM's unconditional CIFAR-10 DDPM++:
Euler, 13 steps (13 NFE), ε̂ / b with b = 1.0048 (EDM-ES README: --steps=13 --solver=euler
--eps_scaler=1.0048; its ablation sampler with EDM's σ grid, σ(t) = t, s(t) = 1).
Expected: FID 12.28 -> 8.39 [EDM-ES table, README of forever208/EDM-ES (docs/eps_scaler.png),
T' = NFE]. The other Euler rows of that table, same checkpoint:
  35 NFE: --config.sampling.steps=35 --config.sampling.eps_scaler=1.0034   FID 3.81 -> 2.80
  21 NFE: --config.sampling.steps=21 --config.sampling.eps_scaler=1.0043   FID 6.29 -> 4.32
Train (EDM's training, = configs/edm/cifar10_ddpmpp.py):
  python main.py --config=configs/edm_es/cifar10_uncond_euler.py --mode=train --workdir=W
"""
from configs.edm import cifar10_ddpmpp as edm_ddpmpp


def get_config():
  config = edm_ddpmpp.get_config()
  sampling = config.sampling
  sampling.solver, sampling.steps, sampling.eps_scaler = 'euler', 13, 1.0048
  return config
