"""Quickstart: a small DDPM++-style model with the VP SDE on sklearn's 8×8 digits (offline).

Command: python main.py --config=configs/quickstart/digits.py --mode=train --workdir=W
Data: datasets.DIGITS, the 1797 images of sklearn.datasets.load_digits at native 8×8, one channel,
split 1500 train / 297 test (datasets.digits_split), centered to [-1, 1], never flipped.
Expected: recognisable digits (this VP/DSM config is not measured yet; the same UNet with the EDM
loss gave them after 3–10 min at ~6 steps/s on 2 CPU cores [measured: shared/ENVIRONMENT.md]).
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config)
  presets.ddpmpp(config)
  training = config.training
  training.batch_size = 64
  training.n_iters = 3000
  training.eval_freq = 250
  training.snapshot_freq = 1000
  training.snapshot_freq_for_preemption = 250
  config.eval.enable_bpd = True                 # and the loss: both on the 297 test digits
  config.eval.batch_size = 99                   # 3 × 99 = all 297 (on N devices: a multiple of N)
  config.eval.begin_ckpt, config.eval.end_ckpt = 1, 3   # checkpoints at steps 1000..3000
  data = config.data
  data.dataset = 'DIGITS'
  data.image_size = 8
  data.num_channels = 1
  data.random_flip = False
  model = config.model
  model.nf = 32
  model.ch_mult = (1, 2)
  model.num_res_blocks = 2
  model.attn_resolutions = (4,)
  model.num_scales = 500                        # Euler–Maruyama sampling steps
  model.ema_rate = 0.999
  config.optim.lr = 2e-3
  config.optim.warmup = 100
  return config
