"""Model registry and the two views of a network: score (Song+21) and denoiser (Karras+22).

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.

A registered model is a Flax linen module built as `cls(config=config)` and called as
`module.apply({'params': params}, x, labels, train=..., rngs={'dropout': key})` with x [B, H, W, C]
and labels [B] (a noise level, a time label or an integer index, per the conventions below).
Networks with a noise embedding (ncsnpp, ddpm, adm: EMBEDDING_MODELS in configs/rules.py) also
take `cond=` class and augmentation labels (`models.layers.add_conditioning`); a model_fn carries
them bound (`get_model_fn`, `bind_cond`), so losses and samplers call every network as
`model_fn(x, labels, rng)`.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from utils import Registry, bcast

MODELS = Registry('model')
register_model = MODELS.register

# model.remat: what a rematerialised block keeps from its forward pass ('none': no remat)
REMAT_POLICIES = {
    'full': jax.checkpoint_policies.nothing_saveable,          # only the block's inputs
    'dots_saveable': jax.checkpoint_policies.dots_saveable,    # + conv / matmul outputs
    'dots_with_no_batch_dims_saveable':                        # + matmul outputs without
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,   # batch dimensions
}


def remat(cls, config, static_argnums=()):
  """The block class `cls`, rematerialised per `model.remat` (`nn.remat`, i.e. jax.checkpoint):
  the backward pass recomputes what the policy (`REMAT_POLICIES`) did not keep, so activation
  memory is traded for compute; values and gradients are those without remat. Parameter names
  are unchanged. `static_argnums` counts `self` as 0 (e.g. (3,) for `train` in
  `__call__(self, x, temb, train)`); 'none' returns `cls`."""
  name = config.model.remat.lower()
  if name == 'none':
    return cls
  return nn.remat(cls, static_argnums=static_argnums, policy=REMAT_POLICIES[name])


def get_model(config):
  """The registered module `config.model.name`, constructed from `config`."""
  return MODELS.get(config.model.name)(config=config)


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


def get_model_fn(model, params, train=False, cond=None, micro_batches=1):
  """(x, labels, rng=None, cond=None) -> network output; `rng` feeds dropout when `train`.

  `cond` (bound here, and per call: the two dicts merge) holds 'class_labels' [B, K] and/or
  'augment_labels' [B, A] for those networks; other networks are called without it.
  The output is float32 whatever `model.dtype` (precision.py). `micro_batches` = k > 1 runs
  the network on k micro-batches in sequence (`micro_batched`, training.grad_accum).
  """
  def model_fn(x, labels, rng=None, extra=None):
    rngs = {'dropout': rng} if train else {}
    kw = {'cond': extra} if extra else {}
    out = model.apply({'params': params}, x, labels, train=train, rngs=rngs, **kw)
    return out.astype(jnp.float32)
  if micro_batches > 1:
    model_fn = micro_batched(model_fn, micro_batches)
  return bind_cond(model_fn, cond) if cond else model_fn


def micro_batched(model_fn, k):
  """`model_fn(x, labels, rng, extra)` over k micro-batches of the rows, one after the other,
  for gradient accumulation (training.grad_accum = k).

  The loss draws its noise for the whole batch and calls this once, so every sample sees the
  noise it gets without accumulation; only the network runs by micro-batch. Each micro-batch is
  under `jax.checkpoint`: the forward pass keeps only its inputs and the backward pass
  recomputes the activations of one micro-batch at a time, so activation memory is that of B/k
  rows, for one more forward pass per step (about a third more compute). The parameter
  gradient is the sum over micro-batches of exact per-row gradients: the loss and the
  gradients equal k = 1's up to float summation order. Micro-batch j takes rows
  [j·b, (j+1)·b) of every device's shard (b = rows per device / k), so it runs on all devices;
  its dropout key is fold_in(rng, j), so with model.dropout > 0 the masks (not the noise)
  differ from k = 1's.
  """
  def run(x, labels, rng=None, extra=None):
    n = x.shape[0]
    devices = jax.device_count() if n % (jax.device_count() * k) == 0 else 1
    def part(a, j):    # rows of micro-batch j: [n, ...] -> [n / k, ...]
      a = a.reshape((devices, k, n // (devices * k)) + a.shape[1:])[:, j]
      return a.reshape((n // k,) + a.shape[2:])
    outs = []
    for j in range(k):    # unrolled: XLA:CPU runs U-Nets in while loops ~20x slower (losses.py)
      key = None if rng is None else jax.random.fold_in(rng, j)
      inputs = jax.tree.map(lambda a, j=j: part(a, j), (x, labels, extra))
      outs.append(jax.checkpoint(model_fn)(inputs[0], inputs[1], key, inputs[2]))
    out = jnp.stack(outs, axis=1)          # [n / k, ...] × k -> rows in x's order
    out = out.reshape((devices, n // (devices * k), k) + out.shape[2:]).swapaxes(1, 2)
    return out.reshape((n,) + out.shape[3:])
  return run


def bind_cond(model_fn, cond):
  """`model_fn` with `cond` (class / augmentation labels) added to every call's conditioning."""
  outer = cond
  def bound(x, labels, rng=None, cond=None):
    return model_fn(x, labels, rng, {**outer, **(cond or {})})
  return bound


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
