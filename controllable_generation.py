"""Controllable generation with an unconditional score model: inpainting, colorization and
class-conditional sampling by predictor–corrector steps (Song+21 §5 and App. I).

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.

Inpainting and colorization are one method: after every corrector and predictor step the known
part of x is replaced by a fresh sample of the forward marginal of the known data at that time
(Song+21 App. I.2), in pixel space for inpainting and in a decoupled colour space for
colorization (an orthonormal 3×3 map whose first axis is the gray level). As a fix of the
original (yang-song/score_sde_pytorch#39, which starts the known part from the clean data while
the rest comes from the prior), x_T's known part is a sample of the same marginal at T.
Class-conditional sampling adds ∇_x log p_t(y | x) of a noise-conditional classifier to the
score (Song+21 Eq. 14, App. I.4). Each sample's randomness comes from its own key, as in
`sampling`.

A library: `main.py --mode=inpaint` / `--mode=colorize` (`modes.run_task`) run it on a trained
checkpoint and the first images of the evaluation split. Given the official start and draws it
gives score_sde_pytorch's results (tests/test_controllable_parity.py; the deliberate differences
are in docs/design.md).
"""

import jax
import jax.numpy as jnp
import numpy as np

from foreign import classifier
from models import precond
from models import utils as mutils
import sampling
import streams
from utils import bcast, per_sample_normal

# Orthonormal rows; the first is the gray direction (1, 1, 1)/√3 (Song+21 App. I.3).
COLOR_BASIS = np.array([[1., 1., 1.], [1., -1., 0.], [1., 1., -2.]]) / np.sqrt([[3.], [2.], [6.]])


def decouple(x):
  """RGB [..., 3] -> (gray·√3, two chroma axes) in the orthonormal COLOR_BASIS."""
  return jnp.einsum('...i,ji->...j', x, jnp.asarray(COLOR_BASIS, x.dtype))


def couple(y):
  """The inverse of `decouple`."""
  return jnp.einsum('...j,ji->...i', y, jnp.asarray(COLOR_BASIS, y.dtype))


def _identity(x):
  return x


def pc_replace(keys, score_fn, sde, known, mask, predictor='reverse_diffusion',
               corrector='langevin', snr=0.16, n_steps=1, probability_flow=False, denoise=True,
               eps=1e-3, to_known=_identity, from_known=_identity):
  """PC sampling with the known part replaced after every step (Song+21 App. I.2, Alg. 1).

  Args:
    keys: per-sample keys [B].
    known: [B, ...] values of the known part, in the space of `to_known` (pixels by default).
    mask: [B, ...] or broadcastable, 1 where `known` holds, 0 where x is generated.
    to_known, from_known: an orthonormal linear map and its inverse into the space where the
      mask applies (identity for inpainting, `decouple`/`couple` for colorization).
  Returns:
    (x [B, ...], nfe): the known part equals the marginal mean of `known` at eps (`known` itself
    for VE, the scaled s(eps)·known for VP) when `denoise`.
  """
  pred = sampling.PREDICTORS.get(predictor)(sde, score_fn, probability_flow)
  corr = sampling.CORRECTORS.get(corrector)(sde, score_fn, snr, n_steps)
  shape = known.shape[1:]
  timesteps = jnp.linspace(sde.T, eps, sde.N)

  def replace(x, x_mean, t, z):
    mean, std = sde.marginal_prob(known, t)                   # Song+21 App. I.2: p_t(x_known)
    y, y_mean = to_known(x), to_known(x_mean)
    y = y * (1. - mask) + (mean + bcast(std, known) * z) * mask
    y_mean = y_mean * (1. - mask) + mean * mask
    return from_known(y), from_known(y_mean)

  def body(i, carry):
    x, _ = carry
    t = jnp.full((keys.shape[0],), timesteps[i])
    noise = lambda j: sampling.step_normal(keys, i, j, shape)   # noqa: E731
    x, x_mean = corr(x, t, lambda j: noise(2 + j))             # normals 2 .. 1 + n_steps
    x, _ = replace(x, x_mean, t, noise(2 + n_steps))
    x, x_mean = pred(x, t, noise)                              # normal 0
    return replace(x, x_mean, t, noise(1))

  t_max = jnp.full((keys.shape[0],), sde.T)
  x_T = sampling.prior_sample(sde, keys, shape)
  x, _ = replace(x_T, x_T, t_max, per_sample_normal(keys, streams.KNOWN_STREAM, shape))
  x, x_mean = jax.lax.fori_loop(0, sde.N, body, (x, x))
  nfe = sde.N * ((predictor != 'none') + n_steps * (corrector != 'none'))
  return (x_mean if denoise else x), nfe


def pc_inpaint(keys, score_fn, sde, data, mask, **pc_kwargs):
  """Inpainting: pixels with mask = 1 are `data`'s, the others are generated (Song+21 App. I.2)."""
  return pc_replace(keys, score_fn, sde, data * mask, mask, **pc_kwargs)


def pc_colorize(keys, score_fn, sde, gray, **pc_kwargs):
  """Colorization: RGB images whose gray level (channel mean) is `gray` [B, H, W, 1] or
  [B, H, W, 3] (gray repeated) (Song+21 App. I.3)."""
  gray = jnp.mean(gray, axis=-1, keepdims=True)
  known = decouple(jnp.repeat(gray, 3, axis=-1))               # (√3·gray, 0, 0)
  mask = jnp.asarray([1., 0., 0.], known.dtype)
  return pc_replace(keys, score_fn, sde, known, mask, to_known=decouple, from_known=couple,
                    **pc_kwargs)


def get_classifier_grad_fn(logit_fn):
  """`logit_fn(x [B, ...], t [B]) -> logits [B, K]` -> `(x, t, labels) -> ∇_x log p_t(labels | x)`."""
  def log_prob(x, t, labels):
    logp = jax.nn.log_softmax(logit_fn(x, t), axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=-1))
  return jax.grad(log_prob)


def conditional_score_fn(score_fn, classifier_grad_fn, labels, scale=1.):
  """∇log p_t(x) + scale · ∇log p_t(y | x) (Song+21 Eq. 14; scale 1 is Bayes' rule)."""
  def score(x, t, rng=None):
    return score_fn(x, t, rng) + scale * classifier_grad_fn(x, t, labels)
  return score


CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)


def classifier_input(x):
  """score_sde's get_logit_fn preprocessing: RGB standardised by CIFAR-10's channel statistics;
  other channel counts unchanged (the WideResnet standardises each image, which absorbs one
  channel's affine map)."""
  if x.shape[-1] != 3:
    return x
  return (x - jnp.asarray(CIFAR10_MEAN, x.dtype)) / jnp.asarray(CIFAR10_STD, x.dtype)


def classifier_logits(module, params, x, sigma):
  """score_sde's get_logit_fn: the noise-conditional classifier's logits of x [B, ...] at the
  marginal std sigma [B], x seen through `classifier_input`."""
  return module.apply({'params': params}, classifier_input(x), sigma)


def get_classifier_guide(config, sde):
  """(guide, params) of `sampling.classifier` (score_sde's noise-conditional WideResnet, Song+21
  App. I.4) for sampling.get_sampling_fn: `guide(score_fn, keys, params)` adds
  `sampling.classifier_scale` · ∇_x log p_t(y | x) (Eq. 14) for y = sampling.class_labels of the
  keys; the classifier sees x standardised by CIFAR-10's channel statistics and the marginal std
  at t, as score_sde's get_logit_fn and get_pc_conditional_sampler give them."""
  module, params = classifier.read_for(config)

  def guide(score_fn, keys, classifier_params):
    def logit_fn(x, t):
      return classifier_logits(module, classifier_params, x, sde.marginal_prob(x, t)[1])
    labels = sampling.class_labels(config, keys)
    return conditional_score_fn(score_fn, get_classifier_grad_fn(logit_fn), labels,
                                config.sampling.classifier_scale)
  return guide, jax.tree.map(jnp.asarray, params)      # on the device once, not at every call


def pc_conditional_sample(keys, score_fn, classifier_grad_fn, labels, sde, sample_shape,
                          scale=1., **pc_kwargs):
  """Class-conditional PC sampling of `labels` [B] with a noise-conditional classifier."""
  cond = conditional_score_fn(score_fn, classifier_grad_fn, labels, scale)
  return sampling.pc_sample(keys, cond, sde, sample_shape, **pc_kwargs)


def _pc_kwargs(config, eps):
  s = config.sampling
  return dict(predictor=s.predictor, corrector=s.corrector, snr=s.snr, n_steps=s.n_steps_each,
              probability_flow=s.probability_flow, denoise=s.noise_removal, eps=eps)


def get_inpainter(config, sde, model, scaler, inverse_scaler, eps):
  """Jitted `(keys [B], params, images [B, H, W, C] in [0, 1], mask) -> images in [0, 1]` with
  config.sampling's predictor/corrector (score_sde's get_pc_inpainter). For an unconditional
  Gaussian model (configs/rules.py: controllable_needs_*)."""

  @jax.jit
  def inpaint(keys, params, images, mask):
    score_fn = _score_fn(config, sde, model, params)
    x, _ = pc_inpaint(keys, score_fn, sde, scaler(images), mask, **_pc_kwargs(config, eps))
    return inverse_scaler(x)
  return inpaint


def get_colorizer(config, sde, model, scaler, inverse_scaler, eps):
  """Jitted `(keys [B], params, gray [B, H, W, 1 or 3] in [0, 1]) -> RGB images in [0, 1]`
  (score_sde's get_pc_colorizer). For an unconditional Gaussian model, as the inpainter."""

  @jax.jit
  def colorize(keys, params, gray):
    score_fn = _score_fn(config, sde, model, params)
    x, _ = pc_colorize(keys, score_fn, sde, scaler(gray), **_pc_kwargs(config, eps))
    return inverse_scaler(x)
  return colorize


def _score_fn(config, sde, model, params):
  return precond.get_score_fn(config, sde, mutils.get_model_fn(model, params, train=False))


# ------------------------------------------------------------------------------------------------
# Inpainting masks (main.py --mode=inpaint runs in modes.py)

def _right_half(n, h, w, seed):
  """score_sde's notebook mask: the left half known, the right half generated."""
  del seed
  return np.broadcast_to(np.arange(w) < w // 2, (n, h, w))


def _center(n, h, w, seed):
  """A centred square of half the side unknown."""
  del seed
  known = np.ones((n, h, w), bool)
  top, left = (h - h // 2) // 2, (w - w // 2) // 2
  known[:, top:top + h // 2, left:left + w // 2] = False
  return known


def _random(n, h, w, seed):
  """Each pixel (all its channels) known with probability 1/2, drawn from `seed`."""
  return np.random.default_rng(seed).random((n, h, w)) < 0.5


INPAINT_MASKS = {'right_half': _right_half, 'center': _center, 'random': _random}
TASKS = ('inpaint', 'colorize')


def inpaint_mask(config, n):
  """The mask `sampling.inpaint_mask` of n images: [n, H, W, 1] float32, 1 where known."""
  size = config.data.image_size
  return INPAINT_MASKS[config.sampling.inpaint_mask](n, size, size, config.seed)[..., None].astype(np.float32)
