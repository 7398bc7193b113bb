"""Model registry and the two views of a network: score (Song+21) and denoiser (Karras+22).

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.

A registered model is a Flax linen module built as `cls(config=config)` and called as
`module.apply({'params': params}, x, labels, train=..., rngs={'dropout': key})` with x [B, H, W, C]
and labels [B] (a noise level, a time label or an integer index, per the conventions below).
Networks with a noise embedding (COND_MODELS) also take `cond=` class and augmentation labels
(`models.layers.add_conditioning`); a model_fn carries them bound (`get_model_fn`, `bind_cond`),
so losses and samplers call every network as `model_fn(x, labels, rng)`.
"""
import jax
import jax.numpy as jnp
import numpy as np

import sde_lib
from utils import Registry, bcast

MODELS = Registry('model')
register_model = MODELS.register


COND_MODELS = ('ncsnpp', 'ddpm', 'adm')   # networks that take class / augmentation labels


def get_model(config):
  """The registered module `config.model.name`, constructed from `config`."""
  m = config.model
  model = MODELS.get(m.name)(config=config)
  if (m.class_conditional or m.augment_dim) and m.name not in COND_MODELS:
    raise ValueError(f'model.class_conditional / model.augment_dim need a network with a noise '
                     f'embedding ({", ".join(COND_MODELS)}), not model.name={m.name!r}')
  if m.class_conditional and config.data.num_classes < 1:
    raise ValueError('model.class_conditional=True needs the number of classes: set '
                     'data.num_classes (e.g. 10 for CIFAR-10)')
  return model


def class_onehot(config, labels):
  """Integer class labels [B] -> one-hot [B, data.num_classes] float32; −1 (no class) -> zeros."""
  return jax.nn.one_hot(labels, config.data.num_classes, dtype=jnp.float32)


def get_sigmas(config):
  """Discrete VE noise levels σ_0 > … > σ_{N−1}, geometric and descending (Song&Ermon19 §4.2)."""
  return np.exp(np.linspace(np.log(config.model.sigma_max), np.log(config.model.sigma_min),
                            config.model.num_scales))


def _dummy_input(config):
  """(x, labels, keyword arguments) of one image for `model.init` (with its class label)."""
  channels = config.data.num_channels + 2 * config.model.patch_coords   # + Patch Diffusion coords
  shape = (1, config.data.image_size, config.data.image_size, channels)
  kw = {}
  if config.model.class_conditional:
    kw['cond'] = {'class_labels': jnp.zeros((1, config.data.num_classes), jnp.float32)}
  return jnp.zeros(shape, jnp.float32), jnp.ones((1,), jnp.float32), kw


def init_model(rng, config):
  """Construct the model and initialize its parameters (a dict) from `rng`."""
  model = get_model(config)
  x, labels, kw = _dummy_input(config)
  init = jax.jit(lambda r: model.init({'params': r, 'dropout': r}, x, labels, train=False,
                                      **kw)['params'])
  params = init(rng)  # jitted: eager init dispatches every op separately (~10x slower)
  return model, params


def count_params(config):
  """Number of parameters of `config`'s model, by abstract evaluation (nothing is allocated)."""
  model = get_model(config)
  x, labels, kw = _dummy_input(config)
  shapes = jax.eval_shape(
      lambda k: model.init({'params': k, 'dropout': k}, x, labels, train=False, **kw)['params'],
      jax.random.key(0))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))


def get_model_fn(model, params, train=False, cond=None):
  """(x, labels, rng=None, cond=None) -> network output; `rng` feeds dropout when `train`.

  `cond` (bound here, and per call: the two dicts merge) holds 'class_labels' [B, K] and/or
  'augment_labels' [B, A] for COND_MODELS; other networks are called without it.
  """
  def model_fn(x, labels, rng=None, extra=None):
    rngs = {'dropout': rng} if train else {}
    kw = {'cond': extra} if extra else {}
    return model.apply({'params': params}, x, labels, train=train, rngs=rngs, **kw)
  return bind_cond(model_fn, cond) if cond else model_fn


def bind_cond(model_fn, cond):
  """`model_fn` with `cond` (class / augmentation labels) added to every call's conditioning."""
  outer = cond
  def bound(x, labels, rng=None, cond=None):
    return model_fn(x, labels, rng, {**outer, **(cond or {})})
  return bound


def label_score_fn(sde, model_fn, continuous=False):
  """(x [B, ...], t [B]) -> ∇_x log p_t(x), with the official score_sde label conventions.

  - VP / sub-VP: the network predicts noise; label 999·t (continuous) or t·(N−1) (discrete VP);
    score = −output / std (Song+21 App. C; Ho+20 Eq. 11).
  - VE continuous: label σ(t); VE discrete: label round((T − t)(N − 1)), the index into the
    descending σ list; the network output is the score.
  """
  if isinstance(sde, (sde_lib.VPSDE, sde_lib.subVPSDE)):
    def score_fn(x, t, rng=None):
      if continuous or isinstance(sde, sde_lib.subVPSDE):
        labels = t * 999
        std = sde.marginal_prob(jnp.zeros_like(x), t)[1]
      else:
        labels = t * (sde.N - 1)
        std = sde.sqrt_1m_alphas_cumprod[labels.astype(jnp.int32)]
      return -model_fn(x, labels, rng) / bcast(std, x)
  elif isinstance(sde, sde_lib.VESDE):
    def score_fn(x, t, rng=None):
      if continuous:
        labels = sde.marginal_prob(jnp.zeros_like(x), t)[1]
      else:
        labels = jnp.round((sde.T - t) * (sde.N - 1)).astype(jnp.int32)
      return model_fn(x, labels, rng)
  else:
    raise NotImplementedError(f'no score convention for {type(sde).__name__}')
  return score_fn


def score_to_denoiser(sde, score_fn):
  """D(x̃; σ) = x̃ + s σ² ∇log p_t(s x̃) with t = σ⁻¹(σ), s = s(t) (Karras+22 Eq. 3, 10)."""
  def denoiser(x, sigma):
    t = sde.sigma_inv(sigma)
    s = sde.scale(t)
    return x + bcast(s * sigma ** 2, x) * score_fn(bcast(s, x) * x, t)
  return denoiser


def denoiser_to_score(sde, denoiser):
  """∇log p_t(x) = (s D(x/s; σ) − x) / (s² σ²) with s = s(t), σ = σ(t) (Karras+22 Eq. 3, 10)."""
  def score_fn(x, t, rng=None):
    del rng
    s, sigma = sde.scale(t), sde.sigma(t)
    return (bcast(s, x) * denoiser(x / bcast(s, x), sigma) - x) / bcast(s ** 2 * sigma ** 2, x)
  return score_fn
