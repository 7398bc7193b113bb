"""Command: python main.py --config=configs/edm/afhqv2_64_ddpmpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-afhqv2-64x64-uncond-vp.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, AFHQv2 64×64 uncond, DDPM++ ("vp" in the file name).
Expected: FID 1.96, 79 NFE (Heun, 40 steps, deterministic) [paper, Table 2, config F; README
and example.py: --steps=40].
Train: python main.py --config=configs/edm/afhqv2_64_ddpmpp.py --mode=train --workdir=W \
  --config.data.path=datasets/afhqv2-64x64.zip
(dataset_tool.py --source=afhqv2 --dest=datasets/afhqv2-64x64.zip --resolution=64x64).
EDM README recipe: configs/edm/ffhq64_ddpmpp.py's with --dropout=0.25 (~4 days on 8×V100). FID
reference statistics: https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/afhqv2-64x64.npz.
"""
from configs.edm import ffhq64_ddpmpp as edm_ffhq


def get_config():
  config = edm_ffhq.get_config()
  config.model.dropout = 0.25
  return config
