"""Shared presets: one function per forward process and per model family; leaves compose them.

Every value is taken from the matching yang-song/score_sde config files (values are facts; the
presets group the fields those files repeat). A preset sets its whole group, so the result does
not depend on what the dataset default held; call the SDE preset first, then the model preset,
then set what the leaf changes.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (NCSN++, DDPM++).
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239 (DDPM U-Net).
  Song&Ermon19  arXiv:1907.05600 (NCSN); Song&Ermon20  arXiv:2006.09011 (NCSNv2).
"""
import schedules


def ve(config, continuous=True):
  """VE SDE (SMLD when discrete): ½·sum loss on [0, 1] data, reverse-diffusion + Langevin PC."""
  training = config.training
  training.sde = 'vesde'
  training.continuous = continuous
  training.loss = 'dsm' if continuous else 'smld'
  training.reduce_mean = False
  sampling = config.sampling
  sampling.method = 'pc'
  sampling.predictor = 'reverse_diffusion'
  sampling.corrector = 'langevin'
  config.data.centered = False
  config.model.scale_by_sigma = True
  config.model.ema_rate = 0.999


def vp(config, continuous=True):
  """VP SDE (DDPM when discrete): mean loss on [-1, 1] data; Euler–Maruyama or ancestral PC."""
  training = config.training
  training.sde = 'vpsde'
  training.continuous = continuous
  training.loss = 'dsm' if continuous else 'ddpm'
  training.reduce_mean = True
  sampling = config.sampling
  sampling.method = 'pc'
  sampling.predictor = 'euler_maruyama' if continuous else 'ancestral_sampling'
  sampling.corrector = 'none'
  config.data.centered = True
  config.model.scale_by_sigma = False
  config.model.ema_rate = 0.9999


def subvp(config):
  """sub-VP SDE: as VP, continuous only (score_sde has no discrete sub-VP loss)."""
  vp(config, continuous=True)
  config.training.sde = 'subvpsde'


def _unet(model):
  """Fields shared by the DDPM U-Net and NCSN++ / DDPM++ at 32–64 px."""
  model.normalization = 'GroupNorm'
  model.nonlinearity = 'swish'
  model.nf = 128
  model.ch_mult = (1, 2, 2, 2)
  model.attn_resolutions = (16,)
  model.resamp_with_conv = True
  model.conditional = True


def ddpm(config):
  """Ho+20's U-Net (registered 'ddpm'): 2 residual blocks per resolution, attention at 16×16."""
  model = config.model
  _unet(model)
  model.name = 'ddpm'
  model.num_res_blocks = 2


def ncsnpp(config, embedding_type='fourier'):
  """NCSN++ (Song+21 App. H): FIR resampling, BigGAN blocks, residual progressive input."""
  model = config.model
  _unet(model)
  model.name = 'ncsnpp'
  model.num_res_blocks = 4
  model.embedding_type = embedding_type   # 'fourier' for VE continuous, else 'positional'
  model.fourier_scale = 16.
  model.fir = True
  model.fir_kernel = [1, 3, 3, 1]
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.progressive = 'none'
  model.progressive_input = 'residual'
  model.progressive_combine = 'sum'
  model.init_scale = 0.


def ddpmpp(config):
  """DDPM++ (Song+21 App. H): NCSN++ without FIR and progressive paths, positional embedding."""
  ncsnpp(config, embedding_type='positional')
  config.model.fir = False
  config.model.progressive_input = 'none'


def ncsnpp_256(config):
  """NCSN++ for 256 px and up: 7 resolutions, 2 blocks each, StyleGAN2-like input/output skips."""
  ncsnpp(config)
  model = config.model
  model.ch_mult = (1, 1, 2, 2, 2, 2, 2)
  model.num_res_blocks = 2
  model.progressive = 'output_skip'
  model.progressive_input = 'input_skip'


def ncsnpp_1024(config):
  """NCSN++ for 1024 px (FFHQ / CelebA-HQ): nf 16, 8 resolutions, 1 block each, EMA 0.9999."""
  ncsnpp_256(config)
  model = config.model
  model.nf = 16
  model.ch_mult = (1, 2, 4, 8, 16, 32, 32, 32)
  model.num_res_blocks = 1
  model.ema_rate = 0.9999


def _refinenet(config, name, lr):
  """RefineNet score models sampled by annealed Langevin dynamics (predictor none, corrector ald)."""
  model = config.model
  model.name = name
  model.normalization = 'InstanceNorm++'
  model.nonlinearity = 'elu'
  model.nf = 128
  model.interpolation = 'bilinear'
  config.sampling.predictor = 'none'
  config.sampling.corrector = 'ald'
  optim = config.optim
  optim.lr = lr
  optim.warmup = 0
  optim.grad_clip = -1.


def ncsn(config, noise=None, ema=False):
  """NCSN v1 (Song&Ermon19): noise-conditional InstanceNorm++, output not divided by σ; lr 1e-3.

  Args:
    noise: None for the original 10 levels σ ∈ [0.01, 1] with 100 Langevin steps at snr 0.316;
      (num_scales, snr) for NCSNv2's Techniques 1, 2 and 4 (Song&Ermon20: σ_max of the dataset,
      more levels, 5 steps per level).
    ema: keep the dataset's EMA (NCSNv2 Technique 5) instead of none.
  """
  _refinenet(config, 'ncsn', 1e-3)
  config.model.scale_by_sigma = False
  if noise is None:
    config.model.sigma_max = 1.
    config.model.num_scales = 10
    config.sampling.n_steps_each = 100
    config.sampling.snr = 0.316
  else:
    config.model.num_scales, config.sampling.snr = noise
    config.sampling.n_steps_each = 5
  if not ema:
    config.model.ema_rate = 0.


def ncsnv2(config, name='ncsnv2_64'):
  """NCSNv2 (Song&Ermon20): unconditional network whose output is divided by σ; lr 1e-4."""
  _refinenet(config, name, 1e-4)
  config.model.scale_by_sigma = True


def edm(config):
  """EDM training and sampling (Karras+22, arXiv:2206.00364; NVlabs/edm train.py defaults): EDM
  precond and loss, σ(t) = t, Heun 18 steps in float64, Adam lr 1e-3 with a 10 Mimg ramp, no
  clipping, EMA half-life 0.5 Mimg, batch 512, dropout 0.13, 200 Mimg; no xflip, EDM's non-leaky
  augmentation at p = 0.12 with its 9 labels fed to the network (--augment=0.12)."""
  training = config.training
  training.sde = 'edm'
  training.continuous = True
  training.loss = 'edm'
  training.reduce_mean = False
  training.batch_size = 512
  training.n_iters = 390625                   # 200 Mimg / 512
  sampling = config.sampling
  sampling.method = 'edm'
  sampling.float64 = True
  training.augment_p = 0.12
  config.data.centered = True
  config.data.random_flip = False
  model = config.model
  model.augment_dim = 9
  model.precond = 'edm'
  model.scale_by_sigma = False
  model.sigma_min = 0.002
  model.sigma_max = 80.
  model.dropout = 0.13
  model.ema_halflife_kimg = 500.
  optim = config.optim
  optim.lr = 1e-3
  optim.warmup = 0
  optim.lr_rampup_kimg = 10000.
  optim.grad_clip = -1.


def edm_songunet(model):
  """EDM's SongUNet widths for CIFAR-10 (train.py): 128 channels, mult (2, 2, 2), 4 blocks,
  attention at 16 — applied on top of `ddpmpp` or `ncsnpp`."""
  model.nf = 128
  model.ch_mult = (2, 2, 2)
  model.num_res_blocks = 4
  model.attn_resolutions = (16,)


def edm_baseline(config, precond):
  """EDM's baselines (Karras+22 §3, config A; NVlabs/edm pretrained/baseline/): score_sde's
  CIFAR-10 networks as they are (`ddpmpp` / `ncsnpp` widths: channel_mult (1, 2, 2, 2), dropout
  0.1, no augmentation) in VPPrecond / VEPrecond, sampled by EDM's sampler: σ(t) = t, s = 1 over
  the network's σ range (VPPrecond: [σ_VP(ε_t = 1e-5), σ_VP(1)]; VEPrecond: [0.02, 100]), the
  range generate.py clamps to. Training runs EDM's VP / VE loss (Table 1)."""
  edm(config)
  model = config.model
  model.precond = precond
  model.augment_dim = 0
  model.dropout = 0.1
  config.training.augment_p = 0.
  config.training.loss = f'edm_{precond}'
  if precond == 'vp':
    model.sigma_min, model.sigma_max = (float(schedules.vp_sigma(t)) for t in (1e-5, 1.))  # ε_t, 1
  else:
    model.sigma_min, model.sigma_max = 0.02, 100.                       # Karras+22 Table 1 (VE)
