"""Command: python main.py --config=configs/edm/cifar10_baseline_vp.py --mode=train --workdir=W
Expected: the network of Song+21's DDPM++ cont. (VP), FID 2.55 with its PC sampler (2000 NFE),
61,804,419 parameters [verified: counted with the official code]. EDM's baseline VP (Karras+22,
arXiv:2206.00364, §3): score_sde's network in EDM's VPPrecond; training runs EDM's VP loss.
Published (NVlabs' conversion of the score_sde_pytorch checkpoint):
  python main.py --config=configs/edm/cifar10_baseline_vp.py --mode=sample --workdir=W \
    --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/baseline/baseline-cifar10-32x32-uncond-vp.pkl
Karras+22 Fig. 2a's samplers on it, as EDM's README runs them (generate.py's axes):
  "Our reimplementation": --config.sampling.disc=vp --config.sampling.schedule=vp
      --config.sampling.scaling=vp --config.sampling.solver=euler --config.sampling.steps=512
  "+ Heun & our t_i": --config.sampling.schedule=vp --config.sampling.scaling=vp
      --config.sampling.steps=128
  "+ Our σ(t) & s(t)": this config as it is (Heun, 18 steps, σ(t) = t, s = 1).
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ddpmpp(config)
  presets.edm_baseline(config, 'vp')
  return config
