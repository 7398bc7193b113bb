"""EDM sampler overhead and EDM train-step speed on EDM's small DDPM++, against NVlabs/edm.

Model: our `ncsnpp` as DDPM++ (configs/edm/cifar10_ddpmpp.py) at 32 px with nf 32, ch_mult
(1, 2, 2, 2), 1 block, attention at 16, EDM preconditioning, batch 8 — the small SongUNet that
NVlabs/edm's own code ran on the 2-core CPU of 2026-11-22 (1.77M parameters there): 0.057 s
forward, 2.04 s for 18-step Heun (35 NFE, float64), 0.21 s per EDMLoss + Adam step.
Prints: one preconditioned forward, the 35-NFE sampler (float64, as EDM) and its overhead over
35 forwards (target ≤ 5%), one EDM train step (loss + Adam + EMA, dropout on), and the ratios.

Back to back with us on a faster AMD EPYC (2026-12-01, README): 0.025 s, 0.88–0.95 s, 0.10 s.

  python bench/edm_sampler.py [--batch 8] [--repeats 10] [--float32] [--peer F_S,SAMPLER_S,STEP_S]
Timings vary up to 2x on these shared machines: compare runs only back to back, and pass the
peer's times measured on the same machine with --peer.
"""
import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from configs.edm import cifar10_ddpmpp
import losses
from models import precond
from models import utils as mutils
import sampling
import sde_lib
import utils
from streams import sample_keys

PEER_FORWARD_S, PEER_SAMPLER_S, PEER_STEP_S = 0.057, 2.04, 0.21


def small_ddpmpp(batch):
  config = cifar10_ddpmpp.get_config()
  config.model.update(nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
                      augment_dim=0)   # the peer's timing: no augmentation
  config.training.augment_p = 0.
  config.training.batch_size = batch
  return config


def best(fn, repeats):
  """Minimum wall time of `fn()` (blocked until ready) over `repeats` runs, after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--float32', action='store_true', help='sample in float32 (EDM: float64)')
  parser.add_argument('--peer', default=f'{PEER_FORWARD_S},{PEER_SAMPLER_S},{PEER_STEP_S}',
                      help="NVlabs/edm's forward, sampler and train-step seconds on this machine")
  args = parser.parse_args()
  utils.configure_cpu()   # before JAX starts its CPU backend
  peer_forward, peer_sampler, peer_step = (float(v) for v in args.peer.split(','))
  config = small_ddpmpp(args.batch)
  config.sampling.float64 = not args.float32
  sde, eps = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  print(f'parameters: {mutils.count_params(config):,} (NVlabs/edm small SongUNet: 1.77M)')
  shape = (32, 32, 3)
  x = jax.random.normal(jax.random.key(1), (args.batch,) + shape)
  sigma = np.full((args.batch,), 1.3, np.float32)

  denoise = jax.jit(lambda p, x: precond.get_denoiser(
      config, mutils.get_model_fn(model, p))(x, sigma))
  forward = best(lambda: denoise(params, x), args.repeats)

  sample_fn = sampling.get_sampling_fn(config, sde, model, shape, lambda v: v, eps)
  keys = sample_keys(jax.random.key(2), args.batch)
  nfe = int(sample_fn(keys, params)[1])
  sampler = best(lambda: sample_fn(keys, params)[0], max(2, args.repeats // 4))

  optimizer = losses.get_optimizer(config)
  train_step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                              losses.get_ema_rate(config)), donate_argnums=0,
                       compiler_options=utils.train_compiler_options())
  box = {'state': losses.init_train_state(params, optimizer)}
  batch = x[None]
  def one_step():
    box['state'], metrics = train_step(box['state'], batch, jax.random.key(3))
    return metrics['loss']
  step = best(one_step, args.repeats)

  dtype = 'float32' if args.float32 else 'float64'
  print(f'forward (preconditioned, batch {args.batch}): {forward * 1e3:.1f} ms   '
        f'NVlabs/edm {peer_forward * 1e3:.0f} ms   ratio ours/edm {forward / peer_forward:.2f}')
  print(f'Heun {config.sampling.steps} steps ({nfe} NFE, {dtype}): {sampler:.3f} s   '
        f'= {sampler / (nfe * forward):.3f} x {nfe} forwards (overhead '
        f'{100 * (sampler / (nfe * forward) - 1):+.1f}%, target <= +5%)   '
        f'NVlabs/edm {peer_sampler:.2f} s   ratio ours/edm {sampler / peer_sampler:.2f}')
  print(f'EDM train step (loss + Adam + EMA, batch {args.batch}): {step * 1e3:.0f} ms   '
        f'NVlabs/edm {peer_step * 1e3:.0f} ms   ratio ours/edm {step / peer_step:.2f}')


if __name__ == '__main__':
  main()
