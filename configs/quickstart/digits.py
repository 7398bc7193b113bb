"""Quickstart: a small DDPM++ with EDM preconditioning, loss and sampler on sklearn's 8×8 digits.

Command: python main.py --config=configs/quickstart/digits.py --mode=train --workdir=W
Data: datasets.DIGITS, the 1797 images of sklearn.datasets.load_digits at native 8×8, one channel,
split 1500 train / 297 test (datasets.digits_split), centered to [-1, 1], never flipped.
Expected: recognisable digits in samples/iter_1500.png after ~10 min on 2 CPU cores
[measured: see the README results table]; eval (--mode=eval) gives the loss, bits/dim and the
digits Fréchet distance (evaluation.digits_fd) of checkpoints 1..3 (steps 500..1500).
The VP/DSM recipe (score_sde's) needs many more steps on this budget; EDM's loss and 18-step
Heun sampler gave digits within minutes [measured: shared/ENVIRONMENT.md].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ddpmpp(config)
  presets.edm(config)
  training = config.training
  training.batch_size = 64
  training.n_iters = 1500
  training.n_jitted_steps = 1
  training.log_freq = 50
  training.eval_freq = 250
  training.snapshot_freq = 500
  training.snapshot_freq_for_preemption = 250
  config.sampling.float64 = False
  config.eval.enable_bpd = True                 # and the loss: both on the 297 test digits
  config.eval.enable_sampling = True            # digits Fréchet distance of 891 samples
  config.eval.num_samples = 891
  config.eval.batch_size = 99                   # 3 × 99 = all 297 (on N devices: a multiple of N)
  config.eval.begin_ckpt, config.eval.end_ckpt = 1, 3   # checkpoints at steps 500..1500
  data = config.data
  data.dataset = 'DIGITS'
  data.image_size = 8
  data.num_channels = 1
  model = config.model
  model.nf = 32
  model.ch_mult = (1, 2)
  model.num_res_blocks = 2
  model.attn_resolutions = (4,)
  model.dropout = 0.
  model.ema_halflife_kimg = 0.
  model.ema_rate = 0.999
  config.optim.lr = 2e-3
  config.optim.lr_rampup_kimg = 0.
  config.optim.warmup = 100
  config.optim.grad_clip = 1.
  return config
