"""EDM sampler overhead and EDM train-step speed on EDM's small DDPM++, against NVlabs/edm.

Model: our `ncsnpp` as DDPM++ (configs/edm/cifar10_ddpmpp.py) at 32 px with nf 32, ch_mult
(1, 2, 2, 2), 1 block, attention at 16, EDM preconditioning, batch 8 — the small SongUNet that
NVlabs/edm's own code ran on the 2-core CPU of 2026-11-22 (1.77M parameters there): 0.057 s
forward, 2.04 s for 18-step Heun (35 NFE, float64), 0.21 s per EDMLoss + Adam step; back to back
with us on a faster AMD EPYC (2026-12-01): 0.025 s, 0.88–0.95 s, 0.10 s.
Rows, each the minimum over the repeats (the sampler: max(2, repeats // 4)) and over --rounds
rounds (default 3) of ours then the peer's (bench/common.py `in_rounds`); forward and Heun run
as main.py's sampling modes run them on a CPU host, the batch split over one device per core
(`utils.cores_as_devices`, convolutions on YNNPACK), the train steps on one device as
`--mode=train` (convolutions on Eigen, `utils.eigen_convolutions`):
  forward      one preconditioned forward D(x; σ) at σ = 1.3 (no dropout).
  Heun         `sampling.get_sampling_fn`: 18 steps, 35 NFE, float64 as EDM; its overhead over 35
               forwards is printed too (target ≤ 5%). GFLOP: 35 × the forward's.
  train step   EDM loss + Adam (lr ramp) + EMA, dropout 0.13 (`losses.make_train_step` on the
               state laid out flat, `losses.FlatParams`, as training.flat_params), per
               optimizer step: one row at 1 step per jitted call (the peer's loop), one at
               --n_jitted_steps (default 5, as the configs' training.n_jitted_steps) unrolled in
               one call, as training runs.
Columns (bench/common.py): ours ms, peer ms, peer/ours, GFLOP (XLA), GFLOP/s, and that rate as a
share of this machine's f32 GEMM rate measured in the same run.

  python bench/edm_sampler.py [--batch 8] [--repeats 10] [--rounds 3] [--float32] \
      [--n_jitted_steps 5] \
      [--peer_python TORCH_PYTHON --edm DIR | --peer F_S,SAMPLER_S,STEP_S]
With --peer_python (a Python with torch) and a checkout of NVlabs/edm, bench/peers.py times
EDM's own network, EDMLoss and an Algorithm 2 loop over it after each round of ours, same batch
and as many torch threads as we have cores; without them the peer's seconds are --peer's (by
default the 2026-11-22 numbers above). Timings vary up to 2x on these shared machines: compare
only numbers measured back to back.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import common
from configs.edm import cifar10_ddpmpp
import hugepages
import losses
from models import precond
from models import utils as mutils
import sampling
import sde_lib
import utils
from streams import sample_keys

WORKLOADS = ('edm_forward', 'edm_heun', 'edm_train_step')
PEER_2026_11_22 = '0.057,2.04,0.21'


def small_ddpmpp(batch):
  config = cifar10_ddpmpp.get_config()
  config.model.update(nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
                      augment_dim=0)   # the peer's timing: no augmentation
  config.training.augment_p = 0.
  config.training.batch_size = config.eval.batch_size = batch
  return config


def forward_fn(config, model, sigma):
  """Jitted `(params, x) -> D(x; sigma)`, the preconditioned forward without dropout."""
  return jax.jit(lambda p, x: precond.get_denoiser(config, mutils.get_model_fn(model, p))(x, sigma))


def train_step_fn(config, sde, model, params):
  """(jitted train step (state donated), `params` -> its initial state): EDM loss + Adam + EMA on
  the state laid out flat (losses.FlatParams), as training runs (training.flat_params)."""
  optimizer, layout = losses.get_optimizer(config), losses.FlatParams.of(params)
  step = jax.jit(losses.make_train_step(model, losses.get_loss_fn(config, sde), optimizer,
                                        losses.get_ema_rate(config), unravel=layout.unravel),
                 donate_argnums=0, compiler_options=utils.eigen_convolutions())
  return step, lambda p: layout.flat(losses.init_train_state(p, optimizer))


def train_rows(config, sde, model, params, x, repeats, n_jitted_steps):
  """`common.Row`s per optimizer step, at each of `common.steps_per_call(n_jitted_steps)` steps
  per jitted call (fresh copies of `params`)."""
  train_step, init_state = train_step_fn(config, sde, model, params)
  rows = []
  for n in common.steps_per_call(n_jitted_steps):
    state = init_state(jax.tree.map(jnp.copy, params))
    rows.append(common.train_row(f'EDM train step (loss+Adam+EMA), {n} per call', 'edm_train_step',
                                 train_step, [state, jnp.stack([x] * n), jax.random.key(3)], n,
                                 repeats))
  return rows


def measure(config, repeats, n_jitted_steps):
  """`common.Row`s of the forward, the Heun sampler and the train steps, compiled."""
  sde, eps = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  batch = config.training.batch_size
  shape = (32, 32, 3)
  x = jax.random.normal(jax.random.key(1), (batch,) + shape)
  sigma = np.full((batch,), 1.3, np.float32)

  replicated, split = common.sampling_layout()   # as --mode=sample; training: one device
  shared, x_split = jax.device_put(params, replicated), jax.device_put(x, split)
  denoise = forward_fn(config, model, sigma)
  forward_flops = common.xla_flops(denoise, shared, x_split)
  forward = common.timed_row('EDM forward (preconditioned)', 'edm_forward',
                             lambda: denoise(shared, x_split), repeats, forward_flops)

  sample_fn = sampling.get_sampling_fn(config, sde, model, shape, lambda v: v, eps)
  keys = sample_keys(jax.random.key(2), batch, sharding=split)
  nfe = int(sample_fn(keys, shared)[1])
  dtype = 'float64' if config.sampling.float64 else 'float32'
  heun = common.timed_row(f'EDM Heun {config.sampling.steps} steps ({nfe} NFE, {dtype})',
                          'edm_heun', lambda: sample_fn(keys, shared)[0], max(2, repeats // 4),
                          nfe * forward_flops)
  return [forward, heun] + train_rows(config, sde, model, params, x, repeats, n_jitted_steps), nfe


def main(argv=None):
  parser = common.parser(__doc__, 10, 'edm', 'checkout of NVlabs/edm', PEER_2026_11_22,
                         "NVlabs/edm's forward, sampler and train-step seconds on this machine")
  parser.add_argument('--float32', action='store_true', help='sample in float32 (EDM: float64)')
  args = common.parse(parser, 'edm', argv)
  config = small_ddpmpp(args.batch)
  utils.configure_cpu(*utils.sampling_setup(config))   # before JAX's CPU backend; as main.py's
  config.sampling.float64 = not args.float32
  print(f'parameters: {mutils.count_params(config):,} (NVlabs/edm small SongUNet: 1.77M), '
        f'batch {args.batch}, {utils.usable_cores()} cores, {jax.device_count()} devices')
  rows, nfe = measure(config, args.repeats, args.n_jitted_steps)
  peer, source = common.peer_fn(args, {'edm': args.edm}, WORKLOADS,
                                'NVlabs/edm measured now by bench/peers.py (Heun: float64)')
  table = common.in_rounds(rows, args.rounds, peer)
  forward, sampler = table[0][1], table[1][1]
  print(f'Heun: {sampler / (nfe * forward):.3f} x {nfe} forwards (overhead '
        f'{100 * (sampler / (nfe * forward) - 1):+.1f}%, target <= +5%)')
  common.print_table(table, common.gemm_rate(), source)
  print(common.TRAIN_NOTE)


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
