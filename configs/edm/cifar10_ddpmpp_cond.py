"""EDM (config F), class-conditional: DDPM++ on CIFAR-10 with its 10 labels (EDM --cond=1).

Command: python main.py --config=configs/edm/cifar10_ddpmpp_cond.py --mode=train --workdir=W
Expected: FID 1.79 cond, 35 NFE Heun [paper, Karras+22 Table 2]. Samples draw one class per seed
(sampling.class_label=-1) or a fixed one (--config.sampling.class_label=3). For classifier-free
guidance train with --config.model.label_dropout=0.1, sample with --config.sampling.guidance=2.
Published (EDM): python main.py --config=configs/edm/cifar10_ddpmpp_cond.py --mode=sample \
  --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-cond-vp.pkl
"""
from configs.edm import cifar10_ddpmpp as edm_ddpmpp


def get_config():
  config = edm_ddpmpp.get_config()
  config.model.class_conditional = True
  return config
