"""The one config tree every scoreflow config starts from, with a meaning for every field.

`get_base_config()` holds every field any component reads, at the values of score_sde's
`configs/default_cifar10_configs.py` (yang-song/score_sde) where that file sets them. Fields the
original left to each leaf (SDE, sampler, model architecture, EMA) take the values of the DDPM
U-Net trained with the VE SDE (continuous), so the tree runs as is; the dataset defaults
(`default_{cifar10,celeba,lsun}_configs.py`) override a few values each, and leaves override
those. No config adds a field: the base is the complete list (tests/test_configs.py checks it),
so a typo such as `training.continuouse` fails at once.

Empty-string paths mean "use the default location" (documented per field); no field is None.
"""
import ml_collections


def _training():
  training = ml_collections.ConfigDict()
  training.sde = 'vesde'                      # forward SDE: 'vesde' | 'vpsde' | 'subvpsde' | 'edm'
  training.continuous = True                  # continuous-time t ~ U(eps, 1) vs discrete noise index
  training.loss = 'dsm'                       # loss registry: 'dsm' (continuous), 'smld' (VE
  #                                             discrete), 'ddpm' (VP discrete), 'edm', 'edm_vp',
  #                                             'edm_ve' (Karras+22 EDM / VP / VE D-losses)
  training.P_mean = -1.2                      # EDM loss: mean of ln σ (Karras+22 Table 1)
  training.P_std = 1.2                        # EDM loss: std of ln σ (Karras+22 Table 1)
  training.pfgmpp_D = float('inf')            # PFGM++ augmented dimension D > 2 (Xu+23); inf =
  #                                             Gaussian noise; finite D needs a D-loss (edm*) and
  #                                             sampling.method='edm'
  training.patch_real_p = 1.                  # Patch Diffusion (Wang+23): probability of a
  #                                             full-size step, else patches of R/2 (3/5) or R/4
  #                                             (2/5); < 1 needs model.patch_coords
  training.patch_batch_mul = True             # Patch Diffusion: a step of R/d patches reads d
  #                                             batches (d·batch_size images), as Wang+23's
  #                                             code; lr ramp and EMA count Σ P(d)·d batches
  #                                             per step (1.9 at real_p 0.5); needs
  #                                             n_jitted_steps = 1
  training.stf_ref_batch = 0                  # STF reference images per step (Xu+23b), a multiple
  #                                             of batch_size read with each batch; 0 = off
  training.augment_p = 0.                     # EDM non-leaky augmentation probability (Karras+22
  #                                             App. F.2; EDM CIFAR-10: 0.12); > 0 needs
  #                                             model.augment_dim = 9; 0 = off
  training.reduce_mean = False                # mean over pixels (True) or ½·sum (False; EDM's loop: sum)
  training.likelihood_weighting = False       # λ(t) = g(t)² (Song+21 ML training, arXiv:2101.09258)
  training.batch_size = 128                   # global batch, over all processes and devices
  training.n_iters = 1300001                  # optimizer steps in total
  training.n_jitted_steps = 5                 # optimizer steps per jitted call (unrolled)
  training.log_freq = 50                      # steps between training-loss logs
  training.eval_freq = 100                    # steps between eval-loss logs
  training.snapshot_freq = 50000              # steps between kept checkpoints (checkpoints/)
  training.snapshot_freq_for_preemption = 10000  # steps between resume checkpoints (checkpoints-meta/)
  training.snapshot_sampling = True           # sample a batch at every kept checkpoint
  training.flat_params = True                 # the train step's state as one array (rows
  #                                             of 128) per parameter tree
  #                                             (losses.FlatParams): fewer
  #                                             arrays per call, Adam and EMA as long passes;
  #                                             False for an optimizer needing the tree
  training.grad_accum = 1                     # k: the network runs on batch_size / k rows at a
  #                                             time (remat per micro-batch: +1 forward pass),
  #                                             one optimizer step per batch; same loss and
  #                                             gradients as k = 1 (models.utils.micro_batched)
  return training


def _sampling():
  sampling = ml_collections.ConfigDict()
  sampling.method = 'pc'                      # 'pc' (predictor-corrector) | 'ode' | 'edm'
  sampling.predictor = 'reverse_diffusion'    # euler_maruyama | reverse_diffusion | ancestral_sampling | none
  sampling.corrector = 'langevin'             # langevin | ald | none
  sampling.n_steps_each = 1                   # corrector steps per noise level
  sampling.snr = 0.16                         # Langevin signal-to-noise ratio (Song+21 Alg. 4)
  sampling.noise_removal = True               # final denoising step (return the last x_mean)
  sampling.probability_flow = False           # PC predictor on the probability-flow ODE
  sampling.ode_rtol = 1e-5                    # relative tolerance of the adaptive ODE solver
  sampling.ode_atol = 1e-5                    # absolute tolerance of the adaptive ODE solver
  sampling.seeds = ''                         # per-seed generation range, e.g. '0-49999'; '' = off
  sampling.out_dir = ''                       # per-seed images' folder; '' = W/samples/seeds_<step>
  sampling.steps = 18                         # EDM sampler: N noise levels (Heun NFE = 2N − 1)
  sampling.sigma_min = 0.                     # EDM sampler: σ_min, clamped to the SDE's σ(eps);
  #                                             0 = the disc's (edm 0.002, vp σ_VP(ε_s), ve 0.02)
  sampling.sigma_max = 0.                     # EDM sampler: σ_max, clamped to the SDE's σ(T);
  #                                             0 = the disc's (edm 80, vp σ_VP(1), ve 100)
  sampling.rho = 7.                           # EDM sampler: ρ of the σ-schedule (Karras+22 Eq. 5)
  sampling.disc = 'edm'                       # EDM sampler: time steps, edm | vp | ve | iddpm
  #                                             (Karras+22 Table 1; generate.py --disc)
  sampling.schedule = ''                      # EDM sampler: σ(t), vp | ve | linear; '' = the SDE's
  #                                             (linear where only scaling is set, as generate.py)
  sampling.scaling = ''                       # EDM sampler: s(t), vp | none; '' = the SDE's
  #                                             (none where only schedule is set, as generate.py)
  sampling.epsilon_s = 1e-3                   # EDM sampler: ε_s, the last t of disc / schedule vp
  sampling.solver = 'heun'                    # EDM sampler: 'heun' (last step Euler) | 'euler'
  sampling.S_churn = 0.                       # EDM sampler: churn (0 = deterministic ODE)
  sampling.S_min = 0.                         # EDM sampler: churn only for σ ≥ S_min
  sampling.S_max = float('inf')               # EDM sampler: churn only for σ ≤ S_max
  sampling.S_noise = 1.                       # EDM sampler: std of the churn noise (≥ 1)
  sampling.eps_scaler = 1.                    # Epsilon Scaling b: ε̂ ← ε̂ / λ_t (1 = off, Ning+24)
  sampling.eps_scaler_k = 0.                  # ADM-ES linear λ_t = k·t + b, t = N−1−i (0 = constant)
  sampling.perturb_alpha = 0.                 # EDM sampler: PFGM++'s robustness probe, x_i += α·s·σ_i·ε
  #                                             before every step (Xu+23 §6; 0 = off)
  sampling.quantize_bits = 0                  # PFGM++'s other probe: SongUNet weights at this many
  #                                             bits when sampling (Xu+23 §6; 0 = off)
  sampling.class_label = -1                   # class-conditional models and sampling.classifier:
  #                                             every sample's class; -1 = random per seed (EDM)
  sampling.guidance = 1.                      # classifier-free guidance weight w (Ho&Salimans22):
  #                                             D_null + w (D_class − D_null); 1 = off
  sampling.classifier = ''                    # score_sde's noise-conditional classifier, file or
  #                                             URL (Song+21 App. I.4): the samplers of a VE, VP,
  #                                             sub-VP or EDM model follow ∇log p_t(x) + scale
  #                                             ∇log p_t(y | x) to the class of
  #                                             sampling.class_label (Eq. 14)
  sampling.classifier_scale = 1.              # the classifier gradient's weight (1 = Bayes' rule)
  sampling.float64 = False                    # run the EDM sampler in float64 (EDM's default)
  sampling.latents = ''                       # .npy of standard-normal x_T, [N, H, W, C], row i for
  #                                             the i-th seed (or grid image); .npz may add PFGM++
  #                                             'radii' [N]; '' = drawn from each seed
  sampling.image_format = 'png'               # --mode=sample per-seed files: 'png' (uint8) | 'npz'
  #                                             (float32 in [0, 1], key 'x')
  sampling.inpaint_mask = 'right_half'        # --mode=inpaint: the unknown pixels, 'right_half'
  #                                             (score_sde's notebook) | 'center' (a centred square
  #                                             of half the side) | 'random' (each pixel unknown
  #                                             with probability 1/2, drawn from seed)
  return sampling


def _eval():
  evaluate = ml_collections.ConfigDict()
  evaluate.begin_ckpt = 9                     # first checkpoint index (×snapshot_freq steps)
  evaluate.end_ckpt = 26                      # last checkpoint index, inclusive
  evaluate.begin_step = -1                    # first checkpoint step (≥ 0 replaces begin_ckpt)
  evaluate.end_step = -1                      # last checkpoint step (≥ 0 replaces end_ckpt)
  evaluate.wait_for_checkpoints = True        # poll for checkpoints not written yet (score_sde)
  evaluate.wait_timeout_s = 3600.             # give up on a missing checkpoint after this long
  evaluate.poll_interval_s = 60.              # seconds between polls for a missing checkpoint
  evaluate.batch_size = 1024                  # global eval / sampling batch
  evaluate.enable_loss = True                 # loss over the eval split
  evaluate.enable_bpd = False                 # bits/dim by the probability-flow ODE
  evaluate.enable_sampling = False            # samples + Inception FID/IS/KID
  evaluate.num_samples = 50000                # samples per checkpoint for FID
  evaluate.bpd_dataset = 'test'               # split for bpd: 'train' | 'test'
  evaluate.bpd_num_repeats = 5                # passes over the test split for bpd (train: 1)
  evaluate.likelihood_eps = 1e-5              # bits/dim integrate from t = eps (Song+21: 1e-5
  #                                             for every SDE; the sampling eps is separate)
  evaluate.images = ''                        # --mode=fid: a folder (recursive), EDM zip or .npz
  #                                             files of images to score
  evaluate.fid_repeats = 1                    # --mode=fid: FIDs over consecutive seed ranges of
  #                                             num_samples each; the minimum is reported (EDM: 3)
  evaluate.is_convention = 'torch_fidelity'   # Inception Score: 'torch_fidelity' (10 splits) |
  #                                             'tfgan' (TF-GAN's, as score_sde reported it)
  evaluate.allow_foreign_stats = False        # accept TF-GAN pool_3 stats with our pytorch-fid
  #                                             Inception graph (the FID is then not comparable)
  evaluate.inception_path = ''                # Inception weights (.pth/.pkl/.npz); '' = assets/
  #                                             inception/pt_inception-2015-12-05-6726825d.pth
  evaluate.fid_stats_path = ''                # reference stats .npz (mu, sigma or pool_3); '' =
  #                                             assets/stats/<dataset>_<image_size>_stats.npz,
  #                                             <dataset> lower-case (LSUN: lsun_<category>)
  return evaluate


def _data():
  data = ml_collections.ConfigDict()
  data.dataset = 'CIFAR10'                    # CIFAR10 | SVHN | CELEBA | LSUN | FFHQ | CelebAHQ |
  #                                             DIGITS | IMAGE_ZIP
  data.image_size = 32                        # height = width, pixels (latents: data.autoencoder)
  data.num_channels = 3                       # 3 (RGB) or 1 (gray)
  data.centered = False                       # model sees [-1, 1] (True) or [0, 1] (False)
  data.random_flip = True                     # random left-right flip of training images
  data.uniform_dequantization = False         # x ← (u + 255x)/256, u ~ U[0, 1) when training
  data.tfds_data_dir = ''                     # where tfds looks for prepared data; '' = tfds default
  data.tfrecords_path = ''                    # FFHQ / CelebAHQ TFRecord file (required for those)
  data.category = ''                          # LSUN category, e.g. 'bedroom', 'church_outdoor'
  data.path = ''                              # IMAGE_ZIP: EDM-style zip file or image folder
  data.num_classes = 10                       # classes of the labels (class-conditional models)
  data.autoencoder = ''                       # diffusers AutoencoderKL: weights file, its folder,
  #                                             a URL, https://huggingface.co/ORG/NAME (or a folder:
  #                                             ORG/NAME/tree/main/vae), or an LDM / Stable
  #                                             Diffusion VAE or model checkpoint (Rombach+22;
  #                                             Wang+23's 256-px models): the net runs on its
  #                                             latents, image_size / num_channels are the
  #                                             latents' (images: image_size·f px, f = 2^(levels
  #                                             − 1)); '' = pixel space
  data.latent_scale = 0.18215                 # latents are (E(x) − latent_shift)·latent_scale
  #                                             (Stable Diffusion's; diffusers' scaling_factor)
  data.latent_shift = 0.                      # diffusers' shift_factor: SD3's 0.0609 (its scale
  #                                             1.5305), Flux's 0.1159 (0.3611); 0 = none
  return data


def _model():
  model = ml_collections.ConfigDict()
  model.name = 'ddpm'                         # model registry: ncsnpp | ddpm | ncsn | ncsnv2_{64,128,256}
  model.ema_rate = 0.999                      # EMA decay per optimizer step
  model.ema_halflife_kimg = 0.                # EMA half-life in kimg (EDM: 500); > 0 replaces ema_rate
  model.ema_rampup_ratio = 0.05               # EMA half-life ≤ ratio × images seen (0 = no ramp-up)
  model.precond = 'none'                      # 'none' (score_sde labels) | 'vp' | 've' | 'edm'
  #                                             (Karras+22 Table 1 D(x; σ) wrappers)
  model.patch_coords = False                  # Patch Diffusion: 2 coordinate input channels after
  #                                             c_in (Wang+23); needs a precond
  model.class_conditional = False             # condition on the class label (EDM --cond=1): a
  #                                             one-hot embedding added to the noise embedding
  model.label_dropout = 0.                    # P(class label dropped) in training (for guidance)
  model.augment_dim = 0                       # augmentation-label inputs (EDM: 9 with augment_p)
  model.learn_sigma = False                   # adm: 2C output channels, the first C used (ADM's
  #                                             learned variance; EDM's iDDPMPrecond)
  model.sigma_data = 0.5                      # EDM σ_data: data std in [-1, 1] (precond and loss)
  model.sigma_min = 0.01                      # VE / EDM-SDE σ_min (edm_ve loss range)
  model.sigma_max = 50.                       # VE / EDM-SDE σ_max (≈ largest pairwise data distance)
  model.num_scales = 1000                     # N: discrete noise levels / sampling steps
  model.beta_min = 0.1                        # VP β(0)
  model.beta_max = 20.                        # VP β(1)
  model.dropout = 0.1                         # dropout rate in residual blocks
  model.scale_by_sigma = True                 # divide the output by σ (VE score models)
  model.normalization = 'GroupNorm'           # GroupNorm | InstanceNorm++ (NCSN/NCSNv2)
  model.nonlinearity = 'swish'                # swish | elu
  model.nf = 128                              # base channel count
  model.ch_mult = (1, 2, 2, 2)                # channel multiplier per resolution
  model.num_res_blocks = 2                    # residual blocks per resolution
  model.attn_resolutions = (16,)              # resolutions (pixels) with self-attention
  model.resamp_with_conv = True               # conv in up/downsampling (else pool/nearest)
  model.conditional = True                    # condition on the noise level / time
  model.embedding_type = 'fourier'            # noise embedding: fourier (of log σ) | positional
  model.fourier_scale = 16.                   # std of the Fourier-feature frequencies
  model.fir = False                           # FIR (StyleGAN2 upfirdn) resampling
  model.fir_kernel = [1, 3, 3, 1]             # FIR kernel taps
  model.skip_rescale = True                   # multiply residual sums by 1/√2
  model.resblock_type = 'biggan'              # ncsnpp residual block: biggan | ddpm
  model.progressive = 'none'                  # output path: none | output_skip | residual
  model.progressive_input = 'none'            # input path: none | input_skip | residual
  model.progressive_combine = 'sum'           # how input_skip merges: sum | cat
  model.init_scale = 0.                       # scale of the last conv init in each block (0 ≈ zero)
  model.interpolation = 'bilinear'            # NCSN/NCSNv2 RefineNet upsampling
  model.attention_type = 'ddpm'               # score_sde field, kept for its configs; not read
  model.conv_size = 3                         # score_sde field, kept for its configs; not read
  model.dtype = 'float32'                     # compute dtype of convs, matmuls, activations:
  #                                             'float32' | 'bfloat16' | 'float16' (dynamic loss
  #                                             scaling); parameters, optimizer, EMA, loss and
  #                                             normalization statistics stay float32 (precision.py)
  model.remat = 'none'                        # rematerialise each residual / attention block:
  #                                             'none' | 'full' | 'dots_saveable' |
  #                                             'dots_with_no_batch_dims_saveable' (what a block
  #                                             keeps; models.utils.REMAT_POLICIES)
  return model


def _optim():
  optim = ml_collections.ConfigDict()
  optim.optimizer = 'Adam'                    # only Adam
  optim.lr = 2e-4                             # peak learning rate
  optim.beta1 = 0.9                           # Adam β1
  optim.eps = 1e-8                            # Adam ε
  optim.weight_decay = 0.                     # decoupled weight decay (0 = off)
  optim.amsgrad = False                       # score_sde field (PyTorch Adam); must stay False
  optim.warmup = 5000                         # linear learning-rate warm-up steps (0 = off)
  optim.lr_rampup_kimg = 0.                   # EDM lr ramp lr·min(images/(1000·kimg), 1) (0 = off;
  #                                             EDM: 10000); excludes warmup
  optim.lr_decay = 'none'                     # 'cosine': lr × ½(1 + cos(π·min(step / n_iters, 1)))
  #                                             after the ramp, to 0 at training.n_iters (SGDR,
  #                                             Loshchilov&Hutter17 Eq. 5, no restarts)
  optim.grad_clip = 1.                        # global-norm gradient clip (< 0 = off)
  optim.loss_scale_init = 32768.              # model.dtype='float16': initial loss scale S (2^15)
  optim.loss_scale_period = 2000              # float16: S doubles after this many finite steps
  #                                             in a row; a non-finite step is skipped, S halved
  return optim


def _classifier():
  classifier = ml_collections.ConfigDict()    # --mode=train_classifier (classifier_lib.py)
  classifier.blocks_per_group = 4             # --mode=train_classifier: the WideResnet's blocks per
  #                                             group (Song+21 App. I.4: WRN-28-10, 4)
  classifier.widen = 10                       # the WideResnet's width multiplier (WRN-28-10: 10)
  classifier.n_iters = 20000                  # Adam steps (batches of training.batch_size)
  classifier.lr = 1e-3                        # Adam's learning rate
  classifier.log_freq = 100                   # steps between logged loss and accuracy
  classifier.snapshot_freq = 5000             # steps between classifier/checkpoint_<step> files
  classifier.dtype = 'float32'                # compute dtype of its convolutions: float32 or
  #                                             bfloat16 (parameters, statistics, logits: float32)
  return classifier


def get_base_config():
  """The complete field tree at CIFAR-10 values (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.training = _training()
  config.sampling = _sampling()
  config.eval = _eval()
  config.data = _data()
  config.model = _model()
  config.optim = _optim()
  config.classifier = _classifier()
  config.seed = 42                            # seeds parameters, training noise and sampling
  return config
