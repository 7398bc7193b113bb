"""Command: python main.py --config=configs/patch/imagenet256_adm_latent_cond.py --mode=sample \
  --workdir=W --config.sampling.seeds=0-49999 \
  --checkpoint=https://huggingface.co/zhendongw/patch-diffusion/resolve/main/FILE.pkl
Patch Diffusion (Wang+23, arXiv:2304.12526), ImageNet 256×256 with classes, on the latents
(32×32×4, × 0.18215) of Stable Diffusion's VAE `sd-vae-ft-ema` (Rombach+22, arXiv:2112.10752):
Patch_EDMPrecond around an ADM (192 channels, 1-2-3-4) on 4 latent + 2 coordinate channels.
FILE: its ImageNet snapshot on that Hugging Face page; the VAE is fetched once into
$SCOREFLOW_CACHE_DIR (offline: --config.data.autoencoder=DIR of its files).
Expected: FID 2.72 [paper, abstract] with its README's generate.py --steps=256 --S_churn=40
--S_min=0.05 --S_max=50 --S_noise=1.003 --on_latents=1 --cfg=1.3 (511 NFE).
Train: python main.py --config=configs/patch/imagenet256_adm_latent_cond.py --mode=train --workdir=W \
  --config.data.path=datasets/imagenet-256x256.zip
(each batch encoded on the devices, z ~ q(z | x), as its loop). README recipe: --duration=2500
--batch=4096 --lr=1e-4 --ema=50 --dropout=0.10 --real_p=0.5 (fp16: float32 here); patches of
16 (two batches) or 32, 1.5 × 4096 images per step: 406,901 steps.
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.edm(config)
  data = config.data
  data.dataset, data.num_classes, data.num_channels = 'IMAGE_ZIP', 1000, 4   # 32×32×4 latents
  data.autoencoder = 'https://huggingface.co/stabilityai/sd-vae-ft-ema'
  training = config.training
  training.batch_size, training.augment_p, training.patch_real_p = 4096, 0., 0.5
  training.n_jitted_steps, training.n_iters = 1, 406901
  m = config.model
  m.name, m.nf, m.ch_mult, m.num_res_blocks = 'adm', 192, (1, 2, 3, 4), 3
  m.attn_resolutions, m.dropout, m.class_conditional, m.augment_dim = (32, 16, 8), 0.1, True, 0
  # its cfg uses a zero null label though its train.py drops no labels: lets sampling.guidance be
  m.patch_coords, m.ema_halflife_kimg, m.label_dropout = True, 50000., 0.1
  config.optim.lr = 1e-4
  s = config.sampling
  s.steps, s.S_churn, s.S_min, s.S_max, s.S_noise = 256, 40., 0.05, 50., 1.003
  s.guidance = 1.3
  return config
