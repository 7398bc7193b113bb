"""Command: python main.py --config=configs/edm/ffhq64_ddpmpp.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-ffhq-64x64-uncond-vp.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, FFHQ 64×64 uncond, DDPM++ ("vp" in EDM's file name).
Expected: FID 2.39, 79 NFE (Heun, 40 steps, deterministic) [paper, Table 2, config F; README
and example.py: --steps=40]. Also of this network: PFGM++'s own EDM retrain (D = ∞, FID 2.53
[README of Newbeeer/pfgmpp]), Google Drive folder `ffhq_ddpm_D_inf` (Drive serves a page:
download the file, pass its path),
  --checkpoint=https://drive.google.com/drive/folders/1gkluJFwIOoFOiVt7fofUzSpesgBYZiFA
Train: python main.py --config=configs/edm/ffhq64_ddpmpp.py --mode=train --workdir=W \
  --config.data.path=datasets/ffhq-64x64.zip
(dataset_tool.py --source=ffhq/images1024x1024 --dest=datasets/ffhq-64x64.zip --resolution=64x64).
EDM README recipe: --arch=ddpmpp --batch=256 --cres=1,2,2,2 --lr=2e-4 --dropout=0.05
--augment=0.15, 200 Mimg = 781,250 steps of 256, ~4 days on 8×V100. FID reference statistics:
https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/ffhq-64x64.npz (--config.eval.fid_stats_path).
"""
from configs.edm import cifar10_ddpmpp as edm_ddpmpp


def get_config():
  config = edm_ddpmpp.get_config()
  config.data.dataset, config.data.image_size = 'IMAGE_ZIP', 64
  training = config.training
  training.batch_size, training.n_iters, training.augment_p = 256, 781250, 0.15
  config.model.ch_mult, config.model.dropout = (1, 2, 2, 2), 0.05
  config.optim.lr = 2e-4
  config.sampling.steps = 40
  return config
