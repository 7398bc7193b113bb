"""Command: python main.py --config=configs/edm/cifar10_baseline_ve.py --mode=train --workdir=W
Expected: the network of Song+21's NCSN++ cont. (VE), FID 2.38 with its PC sampler (2000 NFE),
62,758,915 parameters [verified: counted with the official code]. EDM's baseline VE (Karras+22,
arXiv:2206.00364, §3): score_sde's network in EDM's VEPrecond, data in [-1, 1] (σ doubled:
[0.02, 100]); training runs EDM's VE loss.
Published (NVlabs' conversion of the score_sde_pytorch checkpoint):
  python main.py --config=configs/edm/cifar10_baseline_ve.py --mode=sample --workdir=W \
    --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/baseline/baseline-cifar10-32x32-uncond-ve.pkl
Karras+22 Fig. 2b's samplers on it (generate.py's axes): "Our reimplementation"
  --config.sampling.disc=ve --config.sampling.schedule=ve --config.sampling.scaling=none
  --config.sampling.solver=euler; "+ Heun & our t_i" --config.sampling.schedule=ve
  --config.sampling.scaling=none; "+ Our σ(t) & s(t)": as it is (the figure sweeps the steps:
  --config.sampling.steps=N). Table 5's stochastic sampler: --config.sampling.S_churn=80
  --config.sampling.S_min=0.05 --config.sampling.S_max=1 --config.sampling.S_noise=1.007.
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ncsnpp(config)
  presets.edm_baseline(config, 've')
  return config
