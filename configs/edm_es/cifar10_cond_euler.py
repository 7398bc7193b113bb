"""Command: python main.py --config=configs/edm_es/cifar10_cond_euler.py --mode=sample \
  --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-cond-vp.pkl \
  --config.sampling.seeds=0-49999
Epsilon Scaling (Ning+24, arXiv:2308.15321, EDM-ES) on EDM's class-conditional CIFAR-10 DDPM++:
Euler, 13 steps (13 NFE), ε̂ / b with b = 1.0051 (EDM-ES's ablation sampler, --solver=euler).
Expected: FID 10.66 -> 6.59 [EDM-ES table, README of forever208/EDM-ES (docs/eps_scaler.png),
T' = NFE]. The other Euler rows of that table, same checkpoint:
  35 NFE: --config.sampling.steps=35 --config.sampling.eps_scaler=1.0035   FID 3.74 -> 2.59
  21 NFE: --config.sampling.steps=21 --config.sampling.eps_scaler=1.0045   FID 5.91 -> 3.74
Train (EDM's training, = configs/edm/cifar10_ddpmpp_cond.py):
  python main.py --config=configs/edm_es/cifar10_cond_euler.py --mode=train --workdir=W
"""
from configs.edm import cifar10_ddpmpp_cond as edm_ddpmpp_cond


def get_config():
  config = edm_ddpmpp_cond.get_config()
  sampling = config.sampling
  sampling.solver, sampling.steps, sampling.eps_scaler = 'euler', 13, 1.0051
  return config
