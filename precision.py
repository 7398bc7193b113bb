"""Mixed precision (`model.dtype`): the compute dtypes and float16's dynamic loss scaling.

Papers:
  Micikevicius+18  Mixed Precision Training, arXiv:1710.03740 (§3: float32 master weights,
    loss scaling; §3.2: dynamic scaling skips non-finite steps).
  Kalamkar+19  A Study of BFLOAT16 for Deep Learning Training, arXiv:1905.12322.

The policy (every model in models/): convolutions, dense layers and the activations between
them run in `model.dtype`; parameters are stored in float32 and cast where they are used;
normalization statistics, attention logits and softmax, the noise / class embedding MLPs and the
network output run in float32, and so do the loss, the optimizer state and the EMA. Samplers are
unchanged (the network output reaches them as float32).

bfloat16 has float32's exponent range and needs no scaling. float16 (largest 65504, smallest
normal 6.1e-5) underflows small gradients, so its optimizer is wrapped by `dynamic_loss_scale`:
the train step differentiates S·loss, the wrapper divides the gradients by S and
- if every gradient is finite, applies the update, and doubles S after `period` such steps in
  a row;
- else skips it: the wrapped optimizer's state (Adam moments, its step count and with it the
  learning-rate schedule) is kept, the train step keeps the parameters and the EMA
  (`keep_if_skipped`), and S is halved (not below 1).
The train state's `step` counts every step, skipped or not: it indexes the data and the
training noise (streams.py), so a resumed run still repeats an uninterrupted one. S lives in the
optimizer state, so it is checkpointed with it; float32 and bfloat16 states are unchanged.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
SCALED = ('float16',)          # dtypes trained with dynamic loss scaling
MIN_SCALE = 1.                 # S is halved down to this, not below


def compute_dtype(config):
  """The jnp dtype of `config.model.dtype` (float32 | bfloat16 | float16, any case)."""
  return DTYPES[config.model.dtype.lower()]


class LossScaleState(NamedTuple):
  """`dynamic_loss_scale`'s optimizer state."""
  scale: jax.Array          # S, float32, a power of 2
  good_steps: jax.Array     # int32: finite steps in a row since S last changed
  applied: jax.Array        # bool: whether the last update was applied (gradients finite)
  inner: optax.OptState     # the wrapped optimizer's state


def all_finite(tree):
  """A scalar bool: every element of every leaf of `tree` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def select_tree(pred, on_true, on_false):
  """`on_true` where the scalar `pred`, else `on_false` (trees of one structure)."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def dynamic_loss_scale(inner, init_scale=2. ** 15, period=2000, factor=2.):
  """`inner` for gradients of S·loss: unscales them, skips non-finite steps, adapts S.

  Micikevicius+18 §3.2: after a non-finite step S ← max(S / factor, MIN_SCALE) and the update
  is zero (the wrapped state is kept); after `period` finite steps in a row S ← S · factor.
  """
  def init(params):
    return LossScaleState(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32),
                          jnp.ones((), jnp.bool_), inner.init(params))

  def update(grads, state, params=None):
    grads = jax.tree.map(lambda g: g / state.scale.astype(g.dtype), grads)
    finite = all_finite(grads)
    updates, inner_state = inner.update(grads, state.inner, params)
    updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
    inner_state = select_tree(finite, inner_state, state.inner)
    grow = finite & (state.good_steps + 1 >= period)
    scale = jnp.where(finite, jnp.where(grow, state.scale * factor, state.scale),
                      jnp.maximum(state.scale / factor, MIN_SCALE))
    good_steps = jnp.where(finite & ~grow, state.good_steps + 1, 0)
    return updates, LossScaleState(scale, good_steps, finite, inner_state)

  return optax.GradientTransformation(init, update)


def with_loss_scale(config, optimizer):
  """`optimizer`, wrapped by `dynamic_loss_scale` when `model.dtype` needs it (float16)."""
  if config.model.dtype.lower() not in SCALED:
    return optimizer
  o = config.optim
  return dynamic_loss_scale(optimizer, o.loss_scale_init, o.loss_scale_period)


def loss_scale(opt_state):
  """S of a loss-scaled optimizer state, or None (no scaling: float32, bfloat16)."""
  return opt_state.scale if isinstance(opt_state, LossScaleState) else None


def keep_if_skipped(opt_state, new, old):
  """`new` (e.g. parameters and EMA after a step) unless the loss-scaled step `opt_state`
  reports was skipped, then `old`; `new` as is without loss scaling."""
  if not isinstance(opt_state, LossScaleState):
    return new
  return select_tree(opt_state.applied, new, old)
