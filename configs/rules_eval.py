"""The config rules of evaluation, data and controllable generation: part of `configs.rules.RULES`
(rules.py imports this module last, so its list is whole wherever it is read)."""
import math

from configs.rules import (COLORIZE, DATA, EVAL, FID, FID_STATS, INPAINT, SAMPLE, TRAIN,
                           TRAIN_CLASSIFIER, rule)


# ------------------------------------------------------------------------------------------------
# Evaluation (Song+21 App. D.2, EDM's fid.py), data, controllable generation

@rule(EVAL)
def checkpoints_to_evaluate(config):
  """eval.begin_step..end_step (or begin_ckpt..end_ckpt × snapshot_freq) holds a checkpoint."""
  from run_lib import eval_steps  # pylint: disable=import-outside-toplevel
  e = config.eval
  if not eval_steps(config):
    return (f'no checkpoint to evaluate: eval.begin_step..end_step = {e.begin_step}..'
            f'{e.end_step} (-1: eval.begin_ckpt..end_ckpt = {e.begin_ckpt}..{e.end_ckpt} × '
            f'training.snapshot_freq = {config.training.snapshot_freq}) holds no multiple of '
            'training.snapshot_freq')
  return None


@rule(EVAL)
def likelihood_eps_positive(config):
  """eval.likelihood_eps (where bits/dim integrate from) is > 0."""
  eps = config.eval.likelihood_eps
  return f'eval.likelihood_eps = {eps} must be > 0' if eps <= 0 else None


@rule(EVAL)
def bpd_needs_a_gaussian_model(config):
  """Bits/dim integrate the Gaussian probability-flow ODE: not for PFGM++ models."""
  D = config.training.pfgmpp_D
  if config.eval.enable_bpd and not math.isinf(D):
    return (f'eval.enable_bpd: bits/dim integrate the Gaussian probability-flow ODE; '
            f'training.pfgmpp_D = {D} is a PFGM++ model (set eval.enable_bpd=False)')
  return None


@rule(EVAL)
def bpd_needs_an_unconditional_model(config):
  """Bits/dim of class-conditional models are not implemented."""
  if config.eval.enable_bpd and config.model.class_conditional:
    return ('eval.enable_bpd: bits/dim of a class-conditional model are not implemented '
            '(set eval.enable_bpd=False)')
  return None


@rule(FID)
def fid_images_given(config):
  """--mode=fid scores eval.images."""
  if not config.eval.images:
    return 'eval.images is empty: pass --config.eval.images=PATH (a folder, zip or .npz)'
  return None


@rule(FID_STATS)
def fid_stats_not_for_digits(config):
  """DIGITS is scored with the digits classifier, not Inception statistics."""
  if config.data.dataset == 'DIGITS':
    return ('data.dataset = DIGITS is scored with the digits classifier '
            '(digits_metric); it needs no Inception statistics')
  return None


@rule(*DATA)
def lsun_category_given(config):
  """LSUN needs data.category."""
  if config.data.dataset == 'LSUN' and not config.data.category:
    return "LSUN needs --config.data.category (e.g. 'bedroom', 'church_outdoor')"
  return None


@rule(*DATA)
def tfrecords_path_given(config):
  """FFHQ / CelebAHQ read data.tfrecords_path."""
  if config.data.dataset in ('FFHQ', 'CelebAHQ') and not config.data.tfrecords_path:
    return (f'{config.data.dataset} reads a TFRecord file: pass '
            '--config.data.tfrecords_path=/path/to/file.tfrecords')
  return None


@rule(*DATA)
def image_zip_path_given(config):
  """IMAGE_ZIP reads data.path."""
  if config.data.dataset == 'IMAGE_ZIP' and not config.data.path:
    return 'IMAGE_ZIP reads an EDM-style zip or folder: pass --config.data.path=PATH'
  return None


@rule(*DATA)
def digits_channels(config):
  """DIGITS gives 1 or 3 channels (a latent model's: its autoencoder's image channels)."""
  channels = config.data.num_channels
  if config.data.dataset == 'DIGITS' and not config.data.autoencoder and channels not in (1, 3):
    return f'DIGITS gives 1 or 3 channels, not data.num_channels={channels}'
  return None


@rule(INPAINT, COLORIZE)
def controllable_needs_an_unconditional_model(config):
  """Inpainting and colorization drive an unconditional model."""
  if config.model.class_conditional:
    return ('controllable generation (inpainting, colorization) needs an unconditional model: '
            'model.class_conditional=True networks need class labels')
  return None


@rule(INPAINT, COLORIZE)
def controllable_needs_a_gaussian_model(config):
  """Inpainting and colorization replace the known part by samples of the Gaussian marginal."""
  D = config.training.pfgmpp_D
  if not math.isinf(D):
    return ('controllable generation replaces the known part by samples of the Gaussian '
            f'marginal: training.pfgmpp_D = {D} (PFGM++) is not supported')
  return None


@rule(COLORIZE)
def colorize_needs_rgb(config):
  """Colorization needs RGB images."""
  if config.data.num_channels != 3:
    return (f'--mode=colorize needs RGB images: data.num_channels = {config.data.num_channels} '
            f'(data.dataset = {config.data.dataset!r})')
  return None


def _classifier_noise(config, what):
  """None, or why `what` cannot have a noise-conditional classifier of this model's noise: it
  needs Gaussian noise, as Song+21's classifier (App. I.4)."""
  t = config.training
  if not math.isinf(t.pfgmpp_D):
    return (f'{what} needs Gaussian noise (Song+21 Eq. 14 with a noise-conditional classifier); '
            f'training.pfgmpp_D = {t.pfgmpp_D} (PFGM++) is not: leave it inf')
  return None


@rule(TRAIN, EVAL, SAMPLE)
def classifier_guides_an_unconditional_sde_model(config):
  """sampling.classifier (score_sde's noise-conditional classifier, Song+21 App. I.4, Eq. 14)
  guides an unconditional model with Gaussian noise (VE, VP, sub-VP, EDM, or an SDE added to
  sde_lib)."""
  if not config.sampling.classifier:
    return None
  if config.model.class_conditional:
    return ('sampling.classifier guides an unconditional model; a model.class_conditional=True '
            'network takes the class itself (sampling.guidance: classifier-free guidance)')
  return _classifier_noise(config, 'sampling.classifier')


@rule(INPAINT, COLORIZE)
def controllable_takes_no_classifier(config):
  """Inpainting and colorization do not use sampling.classifier."""
  if config.sampling.classifier:
    return ('inpainting and colorization do not use sampling.classifier: leave it empty '
            '(class-conditional samples: --mode=sample)')
  return None


@rule(TRAIN_CLASSIFIER)
def classifier_trains_on_sde_noise(config):
  """--mode=train_classifier perturbs images with the Gaussian noise of the config's SDE, what
  sampling.classifier's guidance feeds it, and needs classes."""
  if config.data.num_classes < 2:
    return f'--mode=train_classifier needs data.num_classes ≥ 2, not {config.data.num_classes}'
  return _classifier_noise(config, '--mode=train_classifier')


# ------------------------------------------------------------------------------------------------
# Latent models (data.autoencoder: Rombach+22 §3, Wang+23's 256-px models)

@rule(INPAINT, COLORIZE, TRAIN_CLASSIFIER)
def latent_models_are_not_controlled(config):
  """Inpainting, colorization and the noise-conditional classifier act on pixels: no latent
  model (data.autoencoder)."""
  if config.data.autoencoder:
    return ('inpainting, colorization and --mode=train_classifier work on pixels, not on the '
            'latents of data.autoencoder: leave it empty')
  return None


@rule(TRAIN, EVAL, SAMPLE)
def latent_models_take_no_classifier(config):
  """sampling.classifier sees pixels: no latent model (data.autoencoder)."""
  if config.data.autoencoder and config.sampling.classifier:
    return ('sampling.classifier guides in pixel space, the model runs on the latents of '
            'data.autoencoder: leave one of them empty')
  return None


@rule(EVAL)
def latent_models_have_no_bits_per_dim(config):
  """Bits/dim need a density over pixels: a latent model's (data.autoencoder) is over latents."""
  if config.data.autoencoder and config.eval.enable_bpd:
    return ('eval.enable_bpd: a latent model (data.autoencoder) has a density over its latents, '
            'not over pixels (no bits/dim); set eval.enable_bpd=False')
  return None


@rule(TRAIN, EVAL, SAMPLE, FID_STATS)
def latent_models_read_centered_images(config):
  """The autoencoder (data.autoencoder) takes and gives images in [-1, 1]: data.centered."""
  if config.data.autoencoder and not config.data.centered:
    return ('data.autoencoder encodes and decodes images in [-1, 1]: set data.centered=True')
  return None
