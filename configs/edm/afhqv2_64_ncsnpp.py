"""Command: python main.py --config=configs/edm/afhqv2_64_ncsnpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-afhqv2-64x64-uncond-ve.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, AFHQv2 64×64 uncond, NCSN++ ("ve" in the file name).
Expected: FID 2.16, 79 NFE (Heun, 40 steps, deterministic) [paper, Table 2, config F].
Train: python main.py --config=configs/edm/afhqv2_64_ncsnpp.py --mode=train --workdir=W \
  --config.data.path=datasets/afhqv2-64x64.zip
EDM README recipe: --arch=ncsnpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.25
--augment=0.15 (~4 days on 8×V100): configs/edm/ffhq64_ncsnpp.py with dropout 0.25.
"""
from configs.edm import ffhq64_ncsnpp as edm_ffhq


def get_config():
  config = edm_ffhq.get_config()
  config.model.dropout = 0.25
  return config
