"""Command: python main.py --config=configs/edm/imagenet64_adm_cond.py --mode=sample --workdir=W \
  --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-imagenet-64x64-cond-adm.pkl \
  --config.sampling.seeds=0-49999
EDM (Karras+22, arXiv:2206.00364) config F, ImageNet 64×64 class-conditional, ADM (Dhariwal&
Nichol21, arXiv:2105.05233; EDM's DhariwalUNet, model.name='adm', 295,899,267 parameters).
Expected: FID 1.36, 511 NFE (stochastic Heun: 256 steps, S_churn 40, S_min 0.05, S_max 50,
S_noise 1.003) [paper, Table 2, config F; README's generate.py command], one random class per
seed. FID reference statistics: https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/imagenet-64x64.npz
(--config.eval.fid_stats_path).
Train: python main.py --config=configs/edm/imagenet64_adm_cond.py --mode=train --workdir=W \
  --config.data.path=datasets/imagenet-64x64.zip
(dataset_tool.py --source=imagenet/ILSVRC/Data/CLS-LOC/train --dest=datasets/imagenet-64x64.zip
--resolution=64x64 --transform=center-crop). EDM README recipe: --cond=1 --arch=adm
--duration=2500 --batch=4096 --lr=1e-4 --ema=50 --dropout=0.10 --augment=0 --fp16=1 --ls=100:
2500 Mimg = 610,352 steps of 4096, ~13 days on 32×A100; fp16 and its loss scaling are not
reproduced (float32 here).
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.edm(config)
  data = config.data
  data.dataset, data.image_size, data.num_classes = 'IMAGE_ZIP', 64, 1000
  training = config.training
  training.batch_size, training.n_iters, training.augment_p = 4096, 610352, 0.
  m = config.model
  m.name, m.nf, m.ch_mult, m.num_res_blocks = 'adm', 192, (1, 2, 3, 4), 3
  m.attn_resolutions, m.dropout, m.class_conditional, m.augment_dim = (32, 16, 8), 0.1, True, 0
  m.ema_halflife_kimg = 50000.
  config.optim.lr = 1e-4
  s = config.sampling
  s.steps, s.S_churn, s.S_min, s.S_max, s.S_noise = 256, 40., 0.05, 50., 1.003
  return config
