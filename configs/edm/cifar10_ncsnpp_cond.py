"""Command: python main.py --config=configs/edm/cifar10_ncsnpp_cond.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-cond-ve.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, class-conditional CIFAR-10, NCSN++ ("ve" in EDM's
file name: the architecture of Song+21's VE model; preconditioning and loss are EDM's).
Expected: FID 1.79 cond, 35 NFE (Heun, 18 steps, deterministic) [paper, Table 2, config F];
one random class per seed (sampling.class_label=-1, as EDM's generate.py).
Train: python main.py --config=configs/edm/cifar10_ncsnpp_cond.py --mode=train --workdir=W
(EDM README: --cond=1 --arch=ncsnpp, ~2 days on 8×V100).
"""
from configs.edm import cifar10_ncsnpp as edm_ncsnpp


def get_config():
  config = edm_ncsnpp.get_config()
  config.model.class_conditional = True
  return config
