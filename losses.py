"""Training losses (a registry), the optax optimizer, and the pure multi-step train step.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Song+21b  Maximum Likelihood Training of Score-Based Diffusion Models, arXiv:2101.09258.
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution, arXiv:1907.05600.
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.
  Xu+23  PFGM++: Unlocking the Potential of Physics-Inspired Generative Models, arXiv:2302.04265.
  Xu+23b  Stable Target Field for Reduced Variance Score Estimation, arXiv:2302.00670 (STF).
  Wang+23  Patch Diffusion: Faster and More Data-Efficient Training of Diffusion Models,
    arXiv:2304.12526.

A registered loss is a factory `(sde, config, train) -> loss_fn(rng, model_fn, x) -> scalar` where
`model_fn(x, labels, rng)` is the network and x [B, H, W, C] is a (scaled) data batch.
The D-losses (edm, edm_vp, edm_ve) take three switches: the noise law (`training.pfgmpp_D`,
`sde_lib.get_noise`), the target (plain y, or STF's reference-batch average with
`training.stf_ref_batch`) and the input (full images, or Patch Diffusion's random patches with
`training.patch_real_p` < 1). STF and patches act in training only: evaluation losses are the
plain full-image ones.
"""
import dataclasses
import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import augment
from models import precond
from models import utils as mutils
import precision
import sde_lib
import streams
from utils import Registry, bcast

LOSSES = Registry('loss')


def _reduce(losses, reduce_mean):
  """Per-sample reduction over non-batch axes: mean, or ½·sum as in Song+21's code."""
  losses = losses.reshape(losses.shape[0], -1)
  return jnp.mean(losses, axis=-1) if reduce_mean else 0.5 * jnp.sum(losses, axis=-1)


def dsm_loss(rng, score_fn, sde, x, reduce_mean=True, likelihood_weighting=False, eps=1e-5):
  """Continuous denoising score matching (Song+21 Eq. 7).

  λ(t) = std(t)² by default; with `likelihood_weighting`, λ(t) = g(t)² (Song+21b Thm. 1).
  Args:
    score_fn: (x_t [B, ...], t [B], rng) -> score.
    x: clean data [B, ...].
  Returns:
    the batch-mean loss.
  """
  t_rng, z_rng, model_rng = jax.random.split(rng, 3)
  t = jax.random.uniform(t_rng, (x.shape[0],), minval=eps, maxval=sde.T)
  z = jax.random.normal(z_rng, x.shape)
  mean, std = sde.marginal_prob(x, t)
  score = score_fn(mean + bcast(std, x) * z, t, model_rng)
  if likelihood_weighting:
    g2 = sde.sde(jnp.zeros_like(x), t)[1] ** 2
    losses = _reduce(jnp.square(score + z / bcast(std, x)), reduce_mean) * g2   # Song+21b Eq. 12
  else:
    losses = _reduce(jnp.square(score * bcast(std, x) + z), reduce_mean)        # λ = std²
  return jnp.mean(losses)


def smld_loss(rng, model_fn, vesde, x, reduce_mean=False):
  """NCSN loss with the σ²-weighting of Song&Ermon19 Eq. 6; labels index the descending σ list."""
  idx_rng, z_rng, model_rng = jax.random.split(rng, 3)
  sigmas = vesde.discrete_sigmas[::-1]
  labels = jax.random.randint(idx_rng, (x.shape[0],), 0, vesde.N)
  sigma = bcast(sigmas[labels], x)
  noise = jax.random.normal(z_rng, x.shape) * sigma
  score = model_fn(x + noise, labels, model_rng)
  target = -noise / sigma ** 2                                   # ∇ log N(x̃; x, σ²I)
  return jnp.mean(_reduce(jnp.square(score - target) * sigma ** 2, reduce_mean))


def ddpm_loss(rng, model_fn, vpsde, x, reduce_mean=True):
  """ε-prediction loss L_simple (Ho+20 Eq. 14)."""
  idx_rng, z_rng, model_rng = jax.random.split(rng, 3)
  labels = jax.random.randint(idx_rng, (x.shape[0],), 0, vpsde.N)
  noise = jax.random.normal(z_rng, x.shape)
  x_t = (bcast(vpsde.sqrt_alphas_cumprod[labels], x) * x
         + bcast(vpsde.sqrt_1m_alphas_cumprod[labels], x) * noise)       # Ho+20 Eq. 4
  return jnp.mean(_reduce(jnp.square(model_fn(x_t, labels, model_rng) - noise), reduce_mean))


@LOSSES.register('dsm')
def _dsm(config, sde, train):
  del train   # the same loss for training and evaluation
  def loss_fn(rng, model_fn, x):
    score_fn = sde.label_score_fn(model_fn, continuous=True)
    return dsm_loss(rng, score_fn, sde, x, config.training.reduce_mean,
                    config.training.likelihood_weighting)
  return loss_fn


@LOSSES.register('smld')
def _smld(config, sde, train):
  del train   # the same loss for training and evaluation
  return lambda rng, model_fn, x: smld_loss(rng, model_fn, sde, x, config.training.reduce_mean)


@LOSSES.register('ddpm')
def _ddpm(config, sde, train):
  del train   # the same loss for training and evaluation
  return lambda rng, model_fn, x: ddpm_loss(rng, model_fn, sde, x, config.training.reduce_mean)


EDM_VP_EPS_T = 1e-5    # Karras+22 Table 1 (VP): ε_t, the smallest training time of VPLoss


def stf_target(x_noisy, sigma, reference, noise):
  """STF's target Σ_i w_i y_i, w = softmax_i log p_σ(x̃ | y_i) over the reference images y_i
  (Xu+23b; with PFGM++'s kernel as Newbeeer/pfgmpp's pfgmpp_target). With the whole
  dataset as reference it is the ideal denoiser of the empirical distribution (Karras+22 Eq. 3).

  Args:
    x_noisy [B, ...], sigma [B], reference [R, ...] (same pixel shape), noise: a law of sde_lib.
  Returns:
    [B, ...], no gradient.
  """
  xf, ref = x_noisy.reshape(x_noisy.shape[0], -1), reference.reshape(reference.shape[0], -1)
  cross = jnp.einsum('bn,rn->br', xf, ref, precision=jax.lax.Precision.HIGHEST)
  sq_dist = jnp.maximum(jnp.sum(xf ** 2, 1)[:, None] - 2. * cross + jnp.sum(ref ** 2, 1)[None], 0.)
  logits = noise.log_kernel(sq_dist, sigma[:, None], xf.shape[1])
  w = jax.nn.softmax(logits, axis=1)                                        # Xu+23b
  target = jnp.einsum('br,rn->bn', w, ref, precision=jax.lax.Precision.HIGHEST)
  return jax.lax.stop_gradient(target.reshape(x_noisy.shape))


def denoiser_loss(rng, denoiser, x, sample_sigma, weight, reduce_mean,
                  noise=sde_lib.GaussianNoise(), stf_k=0):
  """λ(σ) ‖D(y + σ n; σ) − target‖² (Karras+22 Eq. 8) with n from `noise` (Gaussian, or PFGM++'s
  kernel: Xu+23) and target y, or STF's (Xu+23b).

  Args:
    denoiser: (x [B, ...], sigma [B], rng) -> D(x; σ).
    sample_sigma: (rng, B) -> σ [B]; weight: σ [B] -> λ(σ) [B].
    x: clean data in [-1, 1]: the batch y [B, ...], or with STF (`stf_k` = k > 0) the reference set
      [k·B, ...] whose images 0, k, 2k, … are the batch (each device keeps its own).
  Returns:
    the batch-mean loss (per-sample mean or ½·sum over pixels, `reduce_mean`).
  """
  s_rng, n_rng, model_rng = jax.random.split(rng, 3)
  y = x.reshape((-1, stf_k) + x.shape[1:])[:, 0] if stf_k else x
  sigma = sample_sigma(s_rng, y.shape[0])
  x_noisy = y + noise.sample(n_rng, y.shape) * bcast(sigma, y)
  target = stf_target(x_noisy, sigma, x, noise) if stf_k else y
  losses = bcast(weight(sigma), y) * jnp.square(denoiser(x_noisy, sigma, model_rng) - target)
  return jnp.mean(_reduce(losses, reduce_mean))


def stf_factor(config):
  """k = stf_ref_batch / batch_size (0: STF off)."""
  return config.training.stf_ref_batch // config.training.batch_size


PATCH_DIVISORS = (4, 2, 1)       # patch sizes R/4, R/2, R (Wang+23, pixel space)
LATENT_PATCH_DIVISORS = (2, 1)   # R/2, R on a latent model's latents (data.autoencoder)


def patch_probabilities(real_p):
  """P(R/4), P(R/2), P(R) = (1 − p)·2/5, (1 − p)·3/5, p (Patch-Diffusion training_loop.py)."""
  return ((1. - real_p) * 0.4, (1. - real_p) * 0.6, real_p)


def patch_sizes(config):
  """(divisors, their probabilities): pixel space PATCH_DIVISORS (`patch_probabilities`); on
  latents (--train_on_latents there) LATENT_PATCH_DIVISORS with P(R/2) = 1 − p, P(R) = p."""
  p = config.training.patch_real_p
  if config.data.autoencoder:
    return LATENT_PATCH_DIVISORS, (1. - p, p)
  return PATCH_DIVISORS, patch_probabilities(p)


def _batch_multiplied(t):
  return t.patch_real_p < 1 and t.patch_batch_mul


def patch_batch_multipliers(config):
  """`step -> m`, the batches a step reads with Patch Diffusion's batch multiplier
  (`training.patch_batch_mul`): m = d for patches of R/d, so a step of smaller patches trains
  on more images (Patch-Diffusion training_loop.py's batch_mul, its table's values at R = 64 in
  pixel space, the published setups; at other R the table holds other or no values); None when
  every step reads one batch."""
  if not _batch_multiplied(config.training):
    return None
  schedule = patch_schedule(config)
  return lambda step: schedule(step, 1)[0]


def images_per_step(config):
  """The images an optimizer step counts for the lr ramp and the EMA: training.batch_size, times
  Σ_d P(d)·d with the batch multiplier (the reference's batch_mul_avg: 1.9 at real_p = 0.5,
  whatever the step drew; its image count adds the integer part, its EMA decay the whole)."""
  t = config.training
  if not _batch_multiplied(t):
    return t.batch_size
  divisors, probabilities = patch_sizes(config)
  return t.batch_size * sum(p * d for p, d in zip(probabilities, divisors))


def random_patches(rng, images, size):
  """A size×size crop of each image at a uniform top-left corner (no padding) and the crop of
  the full image's coordinate grid: ([B, size, size, C], [B, size, size, 2]) (Wang+23)."""
  corner = jax.random.randint(rng, (images.shape[0], 2), 0, images.shape[1] - size + 1)
  grid = precond.coordinate_grid(images.shape[1])
  def crop(image, ij):
    return (jax.lax.dynamic_slice(image, (ij[0], ij[1], 0), (size, size, image.shape[-1])),
            jax.lax.dynamic_slice(grid, (ij[0], ij[1], 0), (size, size, 2)))
  return jax.vmap(crop)(images, corner)


def patch_schedule(config):
  """Patch Diffusion's patch size per optimizer step, drawn on the host: `(first, n) -> divisors`
  of steps first … first + n − 1, each divisors[i] with i ~ categorical(probabilities)
  (`patch_sizes`) from fold_in(fold_in(R, PATCH_STREAM), s) (streams.py), so a step's size
  depends only on the seed and its index. The train step compiles once per tuple of sizes
  (`make_train_step`'s `patches`): a size chosen inside the step (lax.switch) ran the network up to
  50× slower on XLA:CPU (docs/performance.md). Computed on the host's CPU device, so drawing never
  waits for an accelerator."""
  cpu = jax.local_devices(backend='cpu')[0]
  with jax.default_device(cpu):
    key = streams.run_key(config, streams.PATCH_STREAM)
    sizes, probabilities = patch_sizes(config)
    logits = jnp.log(jnp.asarray(probabilities))
  draw = jax.jit(jax.vmap(lambda s: jax.random.categorical(jax.random.fold_in(key, s), logits)))

  def divisors(first, n):
    with jax.default_device(cpu):
      index = np.asarray(draw(jnp.arange(first, first + n)))
    return tuple(sizes[i] for i in index)
  return divisors


def _patch_loss(config, loss_at):
  """Patch Diffusion's training loss at one patch size for the whole batch (Wang+23):
  `loss_fn(rng, model_fn, x, patch=d)` trains on uniform crops of R/d pixels with their
  coordinates (d = 1: the full images); the size is drawn by `patch_schedule`."""
  size = config.data.image_size

  def loss_fn(rng, model_fn, x, patch=1):
    if patch == 1:
      return loss_at(rng, model_fn, x)
    crop_rng, rng = jax.random.split(rng)
    return loss_at(rng, model_fn, *random_patches(crop_rng, x, size // patch))
  return loss_fn


def _denoiser_loss_factory(config, sample_sigma, weight, train):
  noise = sde_lib.get_noise(config)
  factor = stf_factor(config) if train else 0

  def loss_at(rng, model_fn, x, coords=None):
    denoiser = precond.get_denoiser(config, model_fn)
    if coords is not None:
      denoiser = functools.partial(denoiser, coords=coords)
    return denoiser_loss(rng, denoiser, x, sample_sigma, weight, config.training.reduce_mean,
                         noise, factor)
  if train and config.training.patch_real_p != 1:
    return _patch_loss(config, loss_at)
  return loss_at


@LOSSES.register('edm')
def _edm(config, sde, train):
  """EDMLoss: ln σ ~ N(P_mean, P_std²), λ = (σ² + σ_d²)/(σ σ_d)² (Karras+22 Table 1, Eq. 8)."""
  del sde
  t, sigma_data = config.training, config.model.sigma_data
  def sample_sigma(rng, n):
    return jnp.exp(t.P_mean + t.P_std * jax.random.normal(rng, (n,)))       # Karras+22 Table 1
  def weight(sigma):
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2        # Karras+22 Table 1
  return _denoiser_loss_factory(config, sample_sigma, weight, train)


@LOSSES.register('edm_vp')
def _edm_vp(config, sde, train):
  """EDM's VPLoss: σ = σ_VP(t), t ~ U(ε_t, 1), λ = 1/σ² (Karras+22 Table 1, VP column)."""
  del sde
  vp = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max)
  def sample_sigma(rng, n):
    return vp.sigma(jax.random.uniform(rng, (n,), minval=EDM_VP_EPS_T, maxval=1.))
  return _denoiser_loss_factory(config, sample_sigma, lambda sigma: 1. / sigma ** 2, train)


@LOSSES.register('edm_ve')
def _edm_ve(config, sde, train):
  """EDM's VELoss: σ = σ_min (σ_max/σ_min)^u, u ~ U(0, 1), λ = 1/σ² (Karras+22 Table 1, VE)."""
  del sde
  lo, hi = config.model.sigma_min, config.model.sigma_max
  def sample_sigma(rng, n):
    return lo * (hi / lo) ** jax.random.uniform(rng, (n,))                   # Karras+22 Table 1
  return _denoiser_loss_factory(config, sample_sigma, lambda sigma: 1. / sigma ** 2, train)


def _with_augmentation(config, loss_fn):
  """`loss_fn` on EDM's non-leakily augmented images (`augment.py`, Karras+22 App. F.2): each
  image is transformed with probability `training.augment_p` per transform and the network gets
  the 9 transform parameters as its 'augment_labels' (with STF: those of the trained images)."""
  p, k = config.training.augment_p, stf_factor(config)
  def augmented(rng, model_fn, x, **patch):
    aug_rng, rng = jax.random.split(rng)
    x, labels = augment.augment(aug_rng, x, p)
    if k:
      labels = labels[::k]    # STF: the trained images are the reference set's 0, k, 2k, ...
    return loss_fn(rng, mutils.bind_cond(model_fn, {'augment_labels': labels}), x, **patch)
  return augmented


def get_loss_fn(config, sde, train=True):
  """The registered loss `config.training.loss` (a config that passed configs/validate.py);
  `train=False`: the evaluation loss (STF's target replaced by y, no augmentation)."""
  t = config.training
  loss_fn = LOSSES.get(t.loss)(config, sde, train)
  return _with_augmentation(config, loss_fn) if train and t.augment_p > 0 else loss_fn


def get_optimizer(config):
  """Adam with linear warm-up (or EDM's lr ramp), optionally a cosine decay, and global-norm
  clipping, as score_sde's optimize_fn; with model.dtype='float16', inside dynamic loss scaling
  (`precision.with_loss_scale`)."""
  lr = config.optim.lr
  if config.optim.warmup > 0:
    lr = optax.linear_schedule(0., config.optim.lr, config.optim.warmup)   # lr·min(step/warmup, 1)
  if config.optim.lr_rampup_kimg > 0:
    ramp_steps = config.optim.lr_rampup_kimg * 1000. / math.floor(images_per_step(config))
    lr = lambda step: config.optim.lr * jnp.minimum(step / ramp_steps, 1.)  # EDM training_loop.py
  if config.optim.lr_decay == 'cosine':   # SGDR (Loshchilov&Hutter17) Eq. 5, η_min = 0, one cycle
    ramp, n_iters = lr, config.training.n_iters
    lr = lambda step: (ramp(step) if callable(ramp) else ramp) * 0.5 * (
        1. + jnp.cos(jnp.pi * jnp.minimum(step / n_iters, 1.)))
  parts = [optax.clip_by_global_norm(config.optim.grad_clip)] if config.optim.grad_clip >= 0 else []
  parts.append(optax.adamw(lr, b1=config.optim.beta1, eps=config.optim.eps,
                           weight_decay=config.optim.weight_decay))
  return precision.with_loss_scale(config, optax.chain(*parts))


@flax.struct.dataclass
class TrainState:
  step: jax.Array           # optimizer steps taken
  params: dict              # network parameters
  ema_params: dict          # exponential moving average of params (used for eval and sampling)
  opt_state: optax.OptState


def init_train_state(params, optimizer):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    ema_params=jax.tree.map(jnp.copy, params), opt_state=optimizer.init(params))


_LANES = 128     # FlatParams' row length


@dataclasses.dataclass(frozen=True)
class FlatParams:
  """The parameter tree as one array, for the train step's state (`training.flat_params`).

  In a TrainState laid out flat, `params`, `ema_params` and every part of `opt_state` shaped like
  the parameters (Adam's moments) are each one array: the leaves concatenated in tree order,
  zero-padded to whole rows of `_LANES` (`ravel`; the padding stays zero through Adam, whose
  ε > 0, and the EMA); the network gets its tree back through `unravel` (one split) inside the
  step. A jitted call then takes and returns ~7 arrays instead of ~4 per parameter array (EDM's
  small DDPM++: 1035), and Adam and the EMA are a few elementwise passes over long arrays
  instead of ~1,100 small kernels (docs/performance.md, "One flat train state"). Values are the
  tree step's; gradient clipping's global norm sums in another order (float rounding).
  Checkpoints hold the tree (`tree`), so runs resume, evaluate and sample as before.
  """
  treedef: object
  shapes: tuple

  @classmethod
  def of(cls, params):
    """The layout of `params` (arrays or shape structs), or None when its leaves' dtypes differ
    (one vector holds one dtype)."""
    leaves, treedef = jax.tree.flatten(params)
    if len({jnp.dtype(leaf.dtype) for leaf in leaves}) != 1:
      return None
    return cls(treedef, tuple(tuple(leaf.shape) for leaf in leaves))

  def ravel(self, params):
    """The leaves concatenated, zero-padded to whole rows of `_LANES` and laid out as those rows:
    XLA:CPU splits a 2-D array's elementwise passes over the cores by rows, but ran Adam's update
    over one long vector slower on two cores than on one (docs/performance.md, "Slow kernels off
    the path")."""
    vector = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(params)])
    return jnp.pad(vector, (0, -vector.size % _LANES)).reshape(-1, _LANES)

  def unravel(self, rows):
    # one split, not a slice per leaf: its derivative is one concatenation (a slice's is a
    # vector-long pad per leaf, summed: 7x slower train steps)
    sizes = np.cumsum([math.prod(shape) for shape in self.shapes])
    parts = jnp.split(rows.reshape(-1)[:sizes[-1]], sizes[:-1])
    return jax.tree.unflatten(self.treedef, [p.reshape(s) for p, s in zip(parts, self.shapes)])

  def _is_params(self, tree):
    """Whether `tree` is shaped like the parameters (tree and leaf shapes)."""
    return (jax.tree.structure(tree) == self.treedef
            and tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(tree)) == self.shapes)

  def flat(self, state):
    """A TrainState (of trees) laid out flat."""
    return jax.tree.map(lambda t: self.ravel(t) if self._is_params(t) else t, state,
                        is_leaf=self._is_params)

  def tree(self, flat_state, template):
    """The TrainState of trees of `flat_state`; `template` (a TrainState of trees or of shape
    structs) says which entries are parameter-shaped."""
    return jax.tree.map(lambda t, v: self.unravel(v) if self._is_params(t) else v,
                        template, flat_state, is_leaf=self._is_params)


def get_ema_rate(config):
  """`model.ema_rate`, or with `model.ema_halflife_kimg` > 0 EDM's `step -> β` (NVlabs/edm).

  β = 0.5^(batch / h) with half-life h = 1000·ema_halflife_kimg images, ramped up as
  h ← min(h, ema_rampup_ratio · images seen before the step) when the ratio is > 0; batch =
  `images_per_step`, the images seen its integer part per step (Patch-Diffusion's count).
  """
  m, batch = config.model, images_per_step(config)
  if m.ema_halflife_kimg <= 0:
    return m.ema_rate
  def rate(step):
    halflife = m.ema_halflife_kimg * 1000.
    if m.ema_rampup_ratio > 0:
      halflife = jnp.minimum(halflife, step * math.floor(batch) * m.ema_rampup_ratio)
    return 0.5 ** (batch / jnp.maximum(halflife, 1e-8))      # EDM training_loop.py
  return rate


def make_train_step(model, loss_fn, optimizer, ema_rate, grad_accum=1, unravel=None):
  """Pure `train_step(state, batch, rng) -> (state, metrics)` running len(batch) steps, unrolled.

  Args:
    optimizer: from `get_optimizer`; float16's loss-scaled one (`precision.dynamic_loss_scale`)
      makes the step differentiate S·loss and skip a step with non-finite gradients: parameters,
      EMA and optimizer moments are kept, S is halved, `state.step` still advances (precision.py).
    ema_rate: EMA decay, a float or `step -> decay` (`get_ema_rate`).
    grad_accum: k (training.grad_accum): the network runs on k micro-batches of B/k rows in
      turn (`models.utils.micro_batched`); the loss draws its noise for all B rows, so loss and
      gradients are k = 1's up to float summation order, and k = 1 is the plain step.
    unravel: `FlatParams.unravel` for a state laid out flat (`FlatParams.flat`); None: trees.
    batch: [n_jitted_steps, B, H, W, C] scaled data, or for a class-conditional model
      (`model.class_conditional`) {'image': that, 'class_labels': one-hot [n_jitted_steps, B, K]}.
    rng: the run's base key; the optimizer step with index `state.step` uses
      fold_in(rng, state.step), so training does not depend on how steps are grouped into calls
      and a resumed run repeats an uninterrupted one exactly.
    patches: Patch Diffusion only (static): the patch divisor of each of the len(batch) steps,
      from `patch_schedule`; one compilation per tuple.
  Returns:
    metrics {'loss': [n_jitted_steps]}; with loss scaling also 'loss_scale': S after each step.
  """
  def one_step(carry, x, patch):
    state, base_rng = carry
    rng = jax.random.fold_in(base_rng, state.step)
    x, cond = split_batch(x)
    scale = precision.loss_scale(state.opt_state)     # None: no loss scaling
    def objective(params):
      model_fn = mutils.get_model_fn(model, unravel(params) if unravel else params, train=True,
                                     cond=cond, micro_batches=grad_accum)
      loss = loss_fn(rng, model_fn, x, **patch)
      return (loss if scale is None else loss * scale), loss
    (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    rate = ema_rate(state.step) if callable(ema_rate) else ema_rate
    ema = jax.tree.map(lambda e, p: rate * e + (1. - rate) * p, state.ema_params, params)
    params, ema = precision.keep_if_skipped(opt_state, (params, ema),
                                            (state.params, state.ema_params))
    metrics = {'loss': loss}
    if scale is not None:
      metrics['loss_scale'] = precision.loss_scale(opt_state)
    return (TrainState(state.step + 1, params, ema, opt_state), base_rng), metrics

  def train_step(state, batch, rng, patches=None):
    # Unrolled: XLA:CPU ran a U-Net inside a while loop ~20x slower (measured: 9-13 s vs 0.4 s
    # per step for the 1M-parameter digits DDPM++ at batch 64). A Python loop, because
    # lax.scan(unroll=True) still emits a one-trip stablehlo.while around the steps (measured:
    # 6.5 s vs 0.73 s per step for EDM's small DDPM++ at batch 8, bench/edm_sampler.py).
    carry, metrics = (state, rng), []
    for k in range(jax.tree.leaves(batch)[0].shape[0]):
      patch = {} if patches is None else {'patch': patches[k]}
      carry, step_metrics = one_step(carry, jax.tree.map(lambda b, k=k: b[k], batch), patch)
      metrics.append(step_metrics)
    return carry[0], jax.tree.map(lambda *m: jnp.stack(m), *metrics)
  return train_step


def split_batch(batch):
  """(images, cond): a class-conditional model's batch is {'image', 'class_labels'}."""
  if not isinstance(batch, dict):
    return batch, None
  return batch['image'], {'class_labels': batch['class_labels']}


def make_eval_step(model, loss_fn):
  """`eval_step(state, batch, rng) -> loss` on the EMA parameters, without dropout; batch as
  one step of `make_train_step`'s."""
  def eval_step(state, batch, rng):
    x, cond = split_batch(batch)
    return loss_fn(rng, mutils.get_model_fn(model, state.ema_params, train=False, cond=cond), x)
  return eval_step
