"""Command: python main.py --config=configs/edm/imagenet64_adm_baseline.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/baseline/baseline-imagenet-64x64-cond-adm.pkl \
  --config.sampling.seeds=0-49999
EDM's ImageNet baseline (Karras+22, arXiv:2206.00364, §3–4): Dhariwal & Nichol's ADM
(arXiv:2105.05233) converted by NVlabs, in EDM's iDDPMPrecond — σ rounded to iDDPM's 1000 levels
(sampler and network), 2 × 3 output channels (the learned variance, unused). Expected: FID 2.07
-> 1.55 with EDM's sampler [paper, abstract]; Table 5's stochastic settings for it (S_churn 80,
S_min 0.05, S_max 50, S_noise 1.003), config F's 256 steps; FID against EDM's
imagenet-64x64-baseline.npz (the baseline's own training data, EDM README). EDM has no iDDPM
loss; fine-tuning runs EDM's loss through this preconditioning:
  python main.py --config=configs/edm/imagenet64_adm_baseline.py --mode=train --workdir=W \
    --checkpoint=URL
"""
from configs.edm import imagenet64_adm_cond as adm_cond
import schedules


def get_config():
  config = adm_cond.get_config()
  m = config.model
  m.precond, m.learn_sigma = 'iddpm', True
  u = schedules.iddpm_levels()
  m.sigma_min, m.sigma_max = float(u[-2]), float(u[0])   # iDDPMPrecond's range (u_{M−1}, u_0)
  config.sampling.S_churn = 80.
  return config
