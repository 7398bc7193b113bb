"""Training losses (a registry), the optax optimizer, and the pure multi-step train step.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456.
  Song+21b  Maximum Likelihood Training of Score-Based Diffusion Models, arXiv:2101.09258.
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution, arXiv:1907.05600.
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239.

A registered loss is a factory `(sde, config) -> loss_fn(rng, model_fn, x) -> scalar` where
`model_fn(x, labels, rng)` is the network and x [B, H, W, C] is a (scaled) data batch.
"""
import flax
import jax
import jax.numpy as jnp
import optax

from models import utils as mutils
import sde_lib
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
def _dsm(sde, config):
  def loss_fn(rng, model_fn, x):
    score_fn = mutils.get_score_fn(sde, model_fn, continuous=True)
    return dsm_loss(rng, score_fn, sde, x, config.training.reduce_mean,
                    config.training.likelihood_weighting)
  return loss_fn


@LOSSES.register('smld')
def _smld(sde, config):
  if not isinstance(sde, sde_lib.VESDE):
    raise ValueError("training.loss='smld' needs training.sde='vesde'")
  return lambda rng, model_fn, x: smld_loss(rng, model_fn, sde, x, config.training.reduce_mean)


@LOSSES.register('ddpm')
def _ddpm(sde, config):
  if not isinstance(sde, sde_lib.VPSDE):
    raise ValueError("training.loss='ddpm' needs training.sde='vpsde'")
  return lambda rng, model_fn, x: ddpm_loss(rng, model_fn, sde, x, config.training.reduce_mean)


def get_loss_fn(sde, config):
  """The registered loss `config.training.loss`, checked against `training.continuous`."""
  if config.training.likelihood_weighting and config.training.loss != 'dsm':
    raise ValueError('training.likelihood_weighting needs the continuous loss training.loss=dsm')
  if config.training.continuous != (config.training.loss not in ('smld', 'ddpm')):
    raise ValueError(f'training.continuous={config.training.continuous} does not match '
                     f'training.loss={config.training.loss!r}: discrete training uses smld (VE) '
                     'or ddpm (VP), continuous training uses the other losses')
  return LOSSES.get(config.training.loss)(sde, config)


def get_optimizer(config):
  """Adam with linear warm-up and global-norm clipping, as score_sde's optimize_fn."""
  lr = config.optim.lr
  if config.optim.warmup > 0:
    lr = optax.linear_schedule(0., config.optim.lr, config.optim.warmup)   # lr·min(step/warmup, 1)
  if config.optim.optimizer != 'Adam':
    raise ValueError(f'optim.optimizer={config.optim.optimizer!r}: only "Adam" is supported')
  parts = [optax.clip_by_global_norm(config.optim.grad_clip)] if config.optim.grad_clip >= 0 else []
  parts.append(optax.adamw(lr, b1=config.optim.beta1, eps=config.optim.eps,
                           weight_decay=config.optim.weight_decay))
  return optax.chain(*parts)


@flax.struct.dataclass
class TrainState:
  step: jax.Array           # optimizer steps taken
  params: dict              # network parameters
  ema_params: dict          # exponential moving average of params (used for eval and sampling)
  opt_state: optax.OptState


def init_train_state(params, optimizer):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    ema_params=jax.tree.map(jnp.copy, params), opt_state=optimizer.init(params))


def make_train_step(model, loss_fn, optimizer, ema_rate):
  """Pure `train_step(state, batch, rng) -> (state, metrics)` running len(batch) steps in one scan.

  Args:
    batch: [n_jitted_steps, B, H, W, C] scaled data; step k uses fold_in(rng, k).
  Returns:
    metrics {'loss': [n_jitted_steps]}.
  """
  def one_step(state, xs):
    x, rng = xs
    def objective(params):
      return loss_fn(rng, mutils.get_model_fn(model, params, train=True), x)
    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_rate * e + (1. - ema_rate) * p, state.ema_params, params)
    return TrainState(state.step + 1, params, ema, opt_state), loss

  def train_step(state, batch, rng):
    rngs = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(batch.shape[0]))
    state, losses = jax.lax.scan(one_step, state, (batch, rngs))
    return state, {'loss': losses}
  return train_step


def make_eval_step(model, loss_fn):
  """`eval_step(state, x, rng) -> loss` on the EMA parameters, without dropout."""
  def eval_step(state, x, rng):
    return loss_fn(rng, mutils.get_model_fn(model, state.ema_params, train=False), x)
  return eval_step
