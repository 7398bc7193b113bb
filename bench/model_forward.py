"""Forward and train-step speed of NCSN++ "config A" on this CPU, against the PyTorch peer.

Config A: ve/cifar10_ncsnpp_continuous with nf 32, 1 res block, ch_mult (1, 2, 2, 2), attention
at 16, batch 8 (1,831,651 parameters). The train step is score_sde's VE continuous DSM loss
(½·sum over pixels, λ(t) = σ², Song+21 Eq. 7) with dropout, global-norm clipping and Adam, jitted
with donated state. Peer numbers (yang-song/score_sde_pytorch, same model and batch, 2 threads):
0.066 s forward, 0.37 s per train step on the 2026-11-22 machine;
0.054 s and 0.26 s back to back with us on a faster AMD EPYC on 2026-12-01 (README).

  python bench/model_forward.py [--batch 8] [--repeats 20] [--peer FORWARD_S,STEP_S]
Timings vary up to 2x on these shared machines: compare runs only back to back, and pass the
peer's times measured on the same machine with --peer.
"""
import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # registers  # pylint: disable=unused-import,wrong-import-position
from models.utils import count_params, get_model  # pylint: disable=wrong-import-position
import utils  # pylint: disable=wrong-import-position

PEER_FORWARD_S, PEER_STEP_S = 0.066, 0.37


def config_a():
  config = ml_collections.ConfigDict()
  config.training = ml_collections.ConfigDict(dict(continuous=True))
  config.data = ml_collections.ConfigDict(dict(image_size=32, num_channels=3, centered=False))
  config.model = ml_collections.ConfigDict(dict(
      name='ncsnpp', sigma_min=0.01, sigma_max=50., num_scales=1000, dropout=0.1,
      embedding_type='fourier', fourier_scale=16., scale_by_sigma=True, nonlinearity='swish',
      nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
      resamp_with_conv=True, conditional=True, fir=True, fir_kernel=[1, 3, 3, 1],
      skip_rescale=True, resblock_type='biggan', progressive='none', progressive_input='residual',
      progressive_combine='sum', init_scale=0., patch_coords=False, class_conditional=False,
      augment_dim=0, dtype='float32', remat='none'))
  return config


def make_train_step(model, optimizer, sigma_min, sigma_max):
  """One VE-DSM + Adam step: (params, opt_state, x, key) -> (params, opt_state, loss)."""
  def loss_fn(params, x, key):
    k_t, k_z, k_drop = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (x.shape[0],), minval=1e-5, maxval=1.)
    sigma = sigma_min * (sigma_max / sigma_min) ** t          # Song+21 Eq. 31 (VE σ(t))
    z = jax.random.normal(k_z, x.shape)
    score = model.apply({'params': params}, x + sigma[:, None, None, None] * z, sigma, train=True,
                        rngs={'dropout': k_drop})
    return jnp.mean(0.5 * jnp.sum((score * sigma[:, None, None, None] + z) ** 2, axis=(1, 2, 3)))

  def step(params, opt_state, x, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return jax.jit(step, donate_argnums=(0, 1), compiler_options=utils.train_compiler_options())


def timed(fn, repeats):
  """(first-call seconds, min and median seconds of `repeats` further calls).

  On a shared machine the minimum is the better estimate of the uncontended time.
  """
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, float(np.min(times)), float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description='NCSN++ config A speed on CPU')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--peer', default=f'{PEER_FORWARD_S},{PEER_STEP_S}',
                      help="the peer's forward and train-step seconds on this machine")
  args = parser.parse_args()
  utils.configure_cpu()   # before JAX starts its CPU backend
  peer_forward, peer_step = (float(v) for v in args.peer.split(','))
  config = config_a()
  model = get_model(config)
  print(f'config A: {count_params(config):,} parameters, batch {args.batch}, '
        f'{jax.devices()[0].platform}, {os.cpu_count()} cores')

  key = jax.random.key(0)
  x = jax.random.uniform(key, (args.batch, 32, 32, 3))
  sigma = jnp.full((args.batch,), 1.)
  t0 = time.perf_counter()
  params = jax.jit(lambda k: model.init(k, x[:1], sigma[:1]))(key)['params']
  print(f'init (jitted, incl. compile): {time.perf_counter() - t0:.2f} s')

  forward = jax.jit(lambda p, x, s: model.apply({'params': p}, x, s))
  compile_fwd, fwd, fwd_median = timed(lambda: forward(params, x, sigma), args.repeats)
  print(f'forward: {fwd * 1e3:.1f} ms min, {fwd_median * 1e3:.1f} ms median (peer '
        f'{peer_forward * 1e3:.0f} ms; ratio ours/peer {fwd / peer_forward:.2f}); '
        f'first call incl. compile {compile_fwd:.2f} s')

  optimizer = optax.chain(optax.clip_by_global_norm(1.), optax.adam(2e-4))
  step = make_train_step(model, optimizer, config.model.sigma_min, config.model.sigma_max)
  state = [params, optimizer.init(params)]

  def run_step():
    state[0], state[1], loss = step(state[0], state[1], x, key)
    return loss
  compile_step, step_s, step_median = timed(run_step, args.repeats)
  print(f'train step (fwd+bwd+Adam): {step_s * 1e3:.1f} ms min, {step_median * 1e3:.1f} ms median '
        f'(peer {peer_step * 1e3:.0f} ms; ratio ours/peer {step_s / peer_step:.2f}); '
        f'first call incl. compile {compile_step:.2f} s')


if __name__ == '__main__':
  main()
