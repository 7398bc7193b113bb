"""The config rules: every cross-field rule in one list (`RULES`; evaluation, data and controllable
generation in rules_eval.py), each one function `config -> message or None` registered with
`@rule(modes)` and named for what it requires; checked by configs/validate.py, which adds one rule
per field of its `CHOICES` (a field that must name one of a set, often a registry) and of its
`RANGES` (a number that must lie in an interval). Messages are one line naming the fields and the
fix.
"""
import collections
import math
import re

TRAIN, EVAL, SAMPLE, FID, FID_STATS, INPAINT, COLORIZE, TRAIN_CLASSIFIER = (
    'train', 'eval', 'sample', 'fid', 'fid_stats', 'inpaint', 'colorize', 'train_classifier')
MODES = (TRAIN, EVAL, SAMPLE, FID, FID_STATS, INPAINT, COLORIZE, TRAIN_CLASSIFIER)
BUILD = (TRAIN, EVAL, SAMPLE, INPAINT, COLORIZE)       # modes that build the model and sampler
DATA = (TRAIN, EVAL, FID_STATS, INPAINT, COLORIZE, TRAIN_CLASSIFIER)   # modes reading config.data
EVAL_BATCH = (EVAL, SAMPLE, FID, FID_STATS, INPAINT, COLORIZE)   # modes batched by eval.batch_size

Rule = collections.namedtuple('Rule', ['name', 'modes', 'fn', 'doc', 'devices'])
RULES = []

def rule(*modes, devices=False):
  """Register `fn(config[, device_count]) -> message | None` for `modes` (default: BUILD);
  `devices`: the rule needs the device count (skipped where it is not known yet)."""
  def register(fn):
    RULES.append(Rule(fn.__name__, modes or BUILD, fn, ' '.join(fn.__doc__.split()), devices))
    return fn
  return register

# ------------------------------------------------------------------------------------------------
# Losses and training switches (Song+21, Karras+22, Xu+23 STF and PFGM++, Wang+23 patches)

DENOISER_LOSSES = ('edm', 'edm_vp', 'edm_ve')     # losses of a preconditioned denoiser D(x; σ)


@rule()
def smld_loss_needs_ve(config):
  """training.loss='smld' (Song&Ermon19's discrete loss) trains a VE SDE."""
  if config.training.loss == 'smld' and config.training.sde != 'vesde':
    return "training.loss='smld' needs training.sde='vesde'"
  return None


@rule()
def ddpm_loss_needs_vp(config):
  """training.loss='ddpm' (Ho+20's discrete loss) trains a VP SDE."""
  if config.training.loss == 'ddpm' and config.training.sde != 'vpsde':
    return "training.loss='ddpm' needs training.sde='vpsde'"
  return None


@rule()
def continuous_matches_loss(config):
  """training.continuous is False exactly for the discrete losses smld and ddpm."""
  t = config.training
  if t.continuous != (t.loss not in ('smld', 'ddpm')):
    return (f'training.continuous = {t.continuous} does not match training.loss = {t.loss!r}: '
            'the discrete losses smld (VE) and ddpm (VP) need continuous=False, the others True')
  return None


@rule()
def likelihood_weighting_needs_dsm(config):
  """training.likelihood_weighting weights the continuous DSM loss (Song+21b)."""
  if config.training.likelihood_weighting and config.training.loss != 'dsm':
    return 'training.likelihood_weighting needs the continuous loss training.loss=dsm'
  return None


@rule()
def denoiser_switches_need_denoiser_loss(config):
  """STF, PFGM++ and patches train a preconditioned denoiser: training.loss in edm/edm_vp/edm_ve."""
  t = config.training
  if t.loss not in DENOISER_LOSSES and (t.stf_ref_batch or not math.isinf(t.pfgmpp_D)
                                        or t.patch_real_p != 1):
    return (f'training.stf_ref_batch, pfgmpp_D and patch_real_p need a D-loss (training.loss in '
            f'{DENOISER_LOSSES}), not training.loss={t.loss!r}')
  return None


@rule()
def stf_ref_batch_is_a_multiple(config):
  """training.stf_ref_batch is 0 (STF off) or a positive multiple of training.batch_size."""
  t = config.training
  if t.stf_ref_batch and (t.stf_ref_batch < 0 or t.stf_ref_batch % t.batch_size):
    return (f'training.stf_ref_batch = {t.stf_ref_batch} must be 0 (STF off) or a positive '
            f'multiple of training.batch_size = {t.batch_size}')
  return None


@rule()
def stf_is_unconditional(config):
  """STF averages over unlabeled reference images: no class-conditional model."""
  if config.training.stf_ref_batch and config.model.class_conditional:
    return ('training.stf_ref_batch (STF) averages over unlabeled reference images: it cannot '
            'train model.class_conditional=True; set one of them off')
  return None


@rule()
def stf_or_patches(config):
  """STF and patch training are not combined."""
  if config.training.stf_ref_batch and config.training.patch_real_p < 1:
    return ('training.stf_ref_batch (STF) and training.patch_real_p < 1 (patches) cannot be '
            'combined: set one of them off')
  return None


@rule()
def patches_halve_through_the_unet(config):
  """With patches, the smallest (data.image_size / 4; on latents / 2) halves len(model.ch_mult)
  − 1 times."""
  smallest = 2 if config.data.autoencoder else 4      # losses.patch_sizes
  size, factor = config.data.image_size, smallest * 2 ** (len(config.model.ch_mult) - 1)
  if config.training.patch_real_p < 1 and size % factor:
    return (f'training.patch_real_p < 1: patches of data.image_size/{smallest} must halve '
            f'len(model.ch_mult) - 1 times, but image_size = {size} is not a multiple of {factor}')
  return None


@rule()
def patches_compile_per_size_tuple(config):
  """With patches, training.n_jitted_steps ≤ 2: the train step compiles once per tuple of the
  steps' patch sizes (3^n_jitted_steps of them)."""
  n = config.training.n_jitted_steps
  if config.training.patch_real_p < 1 and n > 2:
    return (f'training.patch_real_p < 1 with training.n_jitted_steps = {n}: the train step '
            f'compiles once per combination of patch sizes in a call ({3 ** n}); set '
            'training.n_jitted_steps to 1 (or 2: 9 compilations)')
  return None


@rule()
def patch_batches_step_one_at_a_time(config):
  """With patches and their batch multiplier, training.n_jitted_steps = 1: the steps of one
  call would read batches of different sizes."""
  t = config.training
  if t.patch_real_p < 1 and t.patch_batch_mul and t.n_jitted_steps != 1:
    return (f'training.patch_batch_mul reads d batches for a step of patches R/d, so the steps '
            f'of one call differ in size: set training.n_jitted_steps = 1 (now '
            f'{t.n_jitted_steps}) or training.patch_batch_mul=False')
  return None


@rule()
def patches_need_coordinates(config):
  """Patch training feeds the patch coordinates: model.patch_coords=True."""
  p = config.training.patch_real_p
  if p < 1 and not config.model.patch_coords:
    return (f'training.patch_real_p = {p} trains on patches, which needs their coordinates: '
            'set model.patch_coords=True')
  return None


@rule()
def patch_coords_need_precond(config):
  """model.patch_coords goes through the EDM wrapper: model.precond is not 'none'."""
  if config.model.patch_coords and config.model.precond == 'none':
    return ("model.patch_coords feeds coordinates through the EDM wrapper: set model.precond "
            "to 'edm', 'vp' or 've'")
  return None


@rule()
def augmentation_conditions_the_network(config):
  """training.augment_p > 0 needs model.augment_dim = 9 (the augmentation label's length)."""
  from augment import AUGMENT_DIM  # pylint: disable=import-outside-toplevel
  p, dim = config.training.augment_p, config.model.augment_dim
  if p > 0 and dim != AUGMENT_DIM:
    return (f'training.augment_p = {p} conditions the network on the augmentation: set '
            f'model.augment_dim={AUGMENT_DIM} (now {dim})')
  return None


@rule()
def one_lr_ramp(config):
  """optim.lr_rampup_kimg (EDM) and optim.warmup (score_sde) are two ramps: one at most."""
  if config.optim.lr_rampup_kimg > 0 and config.optim.warmup > 0:
    return 'optim.lr_rampup_kimg and optim.warmup are two ramps: set optim.warmup=0'
  return None


def get(config, field):
  """The value of `field` ('section.name') in `config`."""
  section, name = field.split('.')
  return getattr(getattr(config, section), name)


@rule(TRAIN)
def frequencies_are_multiples(config):
  """log/eval/snapshot frequencies are positive multiples of training.n_jitted_steps."""
  t = config.training
  for name in ('log_freq', 'eval_freq', 'snapshot_freq', 'snapshot_freq_for_preemption'):
    value = getattr(t, name)
    if t.n_jitted_steps >= 1 and (value <= 0 or value % t.n_jitted_steps):
      return (f'training.{name} = {value} must be a positive multiple of '
              f'training.n_jitted_steps = {t.n_jitted_steps}')
  return None


def _divisible(value, field, device_count):
  if value % device_count:
    return (f'{field} = {value} must be divisible by the number of devices ({device_count}); '
            'change it or the device count')
  return None


@rule(TRAIN, devices=True)
def train_batch_splits_over_devices(config, device_count):
  """training.batch_size (or stf_ref_batch with STF) divides by the device count."""
  t = config.training
  if t.stf_ref_batch:
    return _divisible(t.stf_ref_batch, 'training.stf_ref_batch', device_count)
  return _divisible(t.batch_size, 'training.batch_size', device_count)


@rule(*EVAL_BATCH, devices=True)
def eval_batch_splits_over_devices(config, device_count):
  """eval.batch_size divides by the device count."""
  return _divisible(config.eval.batch_size, 'eval.batch_size', device_count)


@rule(TRAIN, devices=True)
def grad_accum_splits_the_batch(config, device_count):
  """With training.grad_accum = k > 1, training.batch_size divides by k × the device count
  (every micro-batch takes an equal share of every device's rows)."""
  t = config.training
  if t.grad_accum > 1 and t.batch_size % (t.grad_accum * device_count):
    return (f'training.batch_size = {t.batch_size} must be divisible by training.grad_accum × '
            f'devices = {t.grad_accum} × {device_count}')
  return None


@rule(TRAIN)
def loss_scale_is_usable(config):
  """model.dtype='float16': optim.loss_scale_init ≥ 1 and optim.loss_scale_period ≥ 1."""
  o = config.optim
  if str(config.model.dtype).lower() == 'float16' and not (
      o.loss_scale_init >= 1 and o.loss_scale_period >= 1):
    return (f'model.dtype=float16 scales the loss dynamically: optim.loss_scale_init = '
            f'{o.loss_scale_init} and optim.loss_scale_period = {o.loss_scale_period} must be '
            '>= 1 (defaults 32768, 2000)')
  return None


# ------------------------------------------------------------------------------------------------
# Networks and preconditioning (Karras+22 Table 1)

# networks with a continuous noise-label embedding, which also take class / augmentation labels
EMBEDDING_MODELS = ('ncsnpp', 'ddpm', 'adm')
UNET_GROUPS = {'ncsnpp': 'pp_groups', 'ddpm': 'ddpm_groups', 'adm': 'adm_groups'}


@rule()
def precond_needs_a_noise_embedding(config):
  """model.precond ≠ 'none' drives a network with a continuous noise label (ncsnpp, ddpm, adm)."""
  m = config.model
  if m.precond != 'none' and m.name not in EMBEDDING_MODELS:
    return (f'model.precond={m.precond!r} needs a network with a continuous noise label '
            f'({", ".join(EMBEDDING_MODELS)}), not model.name={m.name!r}')
  return None


@rule()
def precond_scales_by_c_out(config):
  """A preconditioned network (and adm) is not divided by σ: model.scale_by_sigma=False."""
  m = config.model
  if m.scale_by_sigma and (m.precond != 'none' or m.name == 'adm'):
    return (f'model.precond={m.precond!r} / model.name={m.name!r} scales the output by c_out: '
            'set model.scale_by_sigma=False')
  return None


@rule()
def precond_needs_centered_data(config):
  """Preconditioning assumes data in [−1, 1] (σ_data = 0.5): data.centered=True."""
  if config.model.precond != 'none' and not config.data.centered:
    return (f'model.precond={config.model.precond!r} assumes data in [-1, 1] (σ_data = 0.5): '
            'set data.centered=True')
  return None


@rule()
def vp_precond_needs_a_positional_label(config):
  """model.precond='vp' feeds c_noise = 999 t, which ncsnpp's Fourier embedding of log(label)
  cannot take."""
  m = config.model
  if m.precond == 'vp' and m.name == 'ncsnpp' and m.embedding_type.lower() == 'fourier':
    return ("model.precond='vp' feeds c_noise = 999 t, which a Fourier embedding of log(label) "
            "cannot take (exp overflows): use model.embedding_type='positional'")
  return None


@rule()
def conditioning_needs_a_noise_embedding(config):
  """Class or augmentation labels need a network that takes them (ncsnpp, ddpm, adm)."""
  m = config.model
  if (m.class_conditional or m.augment_dim) and m.name not in EMBEDDING_MODELS:
    return (f'model.class_conditional / model.augment_dim need a network with a noise embedding '
            f'({", ".join(EMBEDDING_MODELS)}), not model.name={m.name!r}')
  return None


@rule()
def classes_are_counted(config):
  """A class-conditional model needs data.num_classes ≥ 1."""
  if config.model.class_conditional and config.data.num_classes < 1:
    return ('model.class_conditional=True needs the number of classes: set data.num_classes '
            '(e.g. 10 for CIFAR-10)')
  return None


@rule()
def image_size_halves_through_the_unet(config):
  """U-Nets (ncsnpp, ddpm, adm): data.image_size divides by 2^(len(model.ch_mult) − 1)."""
  factor = 2 ** (len(config.model.ch_mult) - 1)
  if config.model.name in UNET_GROUPS and config.data.image_size % factor:
    return (f'data.image_size = {config.data.image_size} is not divisible by '
            f'2**(len(model.ch_mult)-1) = {factor} (model.ch_mult = {tuple(config.model.ch_mult)})')
  return None


@rule()
def widths_split_into_groups(config):
  """U-Nets: every width model.nf·mult splits into its GroupNorm groups."""
  import importlib  # pylint: disable=import-outside-toplevel
  m = config.model
  if m.name not in UNET_GROUPS or m.nf < 1:                 # model.nf < 1: its range rule
    return None
  module = importlib.import_module('models.adm' if m.name == 'adm' else 'models.layers')
  groups_fn = getattr(module, UNET_GROUPS[m.name])
  for mult in m.ch_mult:
    width = m.nf * mult
    groups = groups_fn(width)
    if groups < 1 or width % groups:
      return (f'model.nf = {m.nf} with model.ch_mult = {tuple(m.ch_mult)} gives width {width}, '
              f'which GroupNorm cannot split into {groups} groups')
  return None


@rule()
def adm_heads_split_the_width(config):
  """adm: at each attention resolution the width splits into width // 64 heads."""
  m = config.model
  if m.name != 'adm':
    return None
  for level, mult in enumerate(m.ch_mult):
    width, size = m.nf * mult, config.data.image_size // 2 ** level
    heads = width // 64
    if size in m.attn_resolutions and heads and width % heads:
      return (f'model.name=adm: width {width} (model.nf·ch_mult) at attention resolution {size} '
              f'does not split into {heads} heads of ~64 channels; change model.nf or ch_mult')
  return None


@rule()
def fir_kernel_is_a_1d_filter(config):
  """model.fir_kernel is a non-empty 1-D list of taps (a separable filter, Zhang19)."""
  k = config.model.fir_kernel
  if not k or not all(isinstance(v, (int, float)) for v in k):
    return f'model.fir_kernel = {k!r} must be a non-empty 1-D list of numbers, e.g. [1, 3, 3, 1]'
  return None


@rule()
def fourier_labels_are_continuous(config):
  """ncsnpp's Fourier embedding (of log σ, score_sde's VE form) needs training.continuous."""
  m = config.model
  if (m.name == 'ncsnpp' and m.embedding_type.lower() == 'fourier'
      and not config.training.continuous):
    return ("model.embedding_type='fourier' embeds log σ and needs training.continuous=True "
            '(score_sde convention)')
  return None


# ------------------------------------------------------------------------------------------------
# SDEs and sampling (Song+21, Xu+23 PFGM++, Ho&Salimans22 guidance)

@rule()
def vp_betas_below_one(config):
  """VP / sub-VP: the discrete β_N = model.beta_max / model.num_scales is < 1."""
  m = config.model
  if config.training.sde in ('vpsde', 'subvpsde') and m.beta_max / m.num_scales >= 1:
    return (f'model.num_scales = {m.num_scales} gives the discrete β_N = model.beta_max / N = '
            f'{m.beta_max / m.num_scales:g} ≥ 1 (α_N = 1 − β_N ≤ 0): raise model.num_scales '
            f'above {m.beta_max:g}')
  return None


@rule()
def pfgmpp_D_above_two(config):
  """training.pfgmpp_D > 2 (inf = Gaussian diffusion; Xu+23)."""
  D = config.training.pfgmpp_D
  if not D > 2:
    return f'training.pfgmpp_D = {D}: PFGM++ needs D > 2 (inf = Gaussian diffusion)'
  return None


@rule()
def pfgmpp_samples_with_edm(config):
  """A PFGM++ model (finite training.pfgmpp_D) samples with sampling.method='edm'."""
  D, method = config.training.pfgmpp_D, config.sampling.method
  if not math.isinf(D) and method != 'edm':
    return (f"training.pfgmpp_D = {D} (PFGM++) samples with its prior and EDM's ODE in σ: set "
            f"sampling.method='edm', not {method!r}")
  return None


@rule()
def perturb_needs_edm_sampler(config):
  """sampling.perturb_alpha (PFGM++'s noise-injection probe) acts in the EDM sampler only."""
  a, method = config.sampling.perturb_alpha, config.sampling.method
  if a > 0 and method != 'edm':
    return f"sampling.perturb_alpha = {a} acts in EDM steps: set sampling.method='edm' ({method!r})"
  return None


@rule()
def quantize_needs_a_songunet(config):
  """sampling.quantize_bits picks weights by SongUNet's names (PFGM++'s generate_quant.py)."""
  try:
    if config.sampling.quantize_bits:
      from foreign import songunet  # pylint: disable=import-outside-toplevel
      songunet.check_config(config)
  except ValueError as e:
    return (f'sampling.quantize_bits = {config.sampling.quantize_bits} quantizes SongUNet '
            f'weights by name, but {e} (or set quantize_bits=0)')
  return None


@rule()
def ancestral_needs_ve_or_vp(config):
  """The ancestral predictor (Song+21 Eqs. 47, 48) runs on vesde or vpsde, without probability
  flow."""
  s = config.sampling
  if s.method == 'pc' and s.predictor == 'ancestral_sampling' and (
      s.probability_flow or config.training.sde not in ('vesde', 'vpsde')):
    return ("sampling.predictor='ancestral_sampling' needs training.sde vesde or vpsde and "
            'sampling.probability_flow=False')
  return None


@rule()
def class_label_is_a_class(config):
  """sampling.class_label is −1 (random) or a class of a class-conditional model or of
  sampling.classifier."""
  k, label = config.data.num_classes, config.sampling.class_label
  classes = config.model.class_conditional or config.sampling.classifier
  if label != -1 and not classes:
    return (f'sampling.class_label = {label} needs a class-conditional model '
            '(model.class_conditional=True) or a sampling.classifier; this one has no classes: '
            'leave it -1')
  if classes and not -1 <= label < k:
    return (f'sampling.class_label = {label} must be -1 (random) or a class in '
            f'[0, data.num_classes = {k})')
  return None


@rule()
def guidance_needs_classes(config):
  """sampling.guidance ≠ 1 guides a class-conditional model."""
  w = config.sampling.guidance
  if w != 1 and not config.model.class_conditional:
    return f'sampling.guidance = {w} needs model.class_conditional=True'
  return None


@rule()
def guidance_needs_a_null_label(config):
  """sampling.guidance ≠ 1 needs a model trained with label dropout (the null label)."""
  w = config.sampling.guidance
  if w != 1 and config.model.class_conditional and config.model.label_dropout <= 0:
    return (f'sampling.guidance = {w} needs a null-label model: train with '
            'model.label_dropout > 0 (e.g. 0.1)')
  return None


@rule(SAMPLE)
def seeds_are_ranges(config):
  """sampling.seeds is '' (one grid) or EDM's --seeds: numbers and ranges, e.g. '0-49999,7'."""
  s = config.sampling.seeds
  if s and (not re.fullmatch(r'\d+(-\d+)?(,\d+(-\d+)?)*', s) or any(
      int(lo) > int(hi) for lo, hi in re.findall(r'(\d+)-(\d+)', s))):
    return f"sampling.seeds = {s!r} is not a list of seeds or ranges, e.g. '0-49999' or '0-3,7'"
  return None


# The evaluation, data and controllable-generation rules join RULES here (registers).
from configs import rules_eval  # noqa: E402,F401  pylint: disable=wrong-import-position
