"""Command: python main.py --config=configs/edm/ffhq64_ncsnpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-ffhq-64x64-uncond-ve.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, FFHQ 64×64 uncond, NCSN++ ("ve" in EDM's file name).
Expected: FID 2.53, 79 NFE (Heun, 40 steps, deterministic) [paper, Table 2, config F].
Train: python main.py --config=configs/edm/ffhq64_ncsnpp.py --mode=train --workdir=W \
  --config.data.path=datasets/ffhq-64x64.zip
EDM README recipe: --arch=ncsnpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.05
--augment=0.15 (~4 days on 8×V100): configs/edm/ffhq64_ddpmpp.py with the NCSN++ network, whose
preset multipliers (1, 2, 2, 2) are --cres.
"""
from configs import presets
from configs.edm import ffhq64_ddpmpp as edm_ffhq


def get_config():
  config = edm_ffhq.get_config()
  presets.ncsnpp(config)
  return config
