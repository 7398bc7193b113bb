"""Speed of NCSN++ "config A" on this CPU against yang-song/score_sde_pytorch: forward, train
step, one PC step and the likelihood's cost per NFE.

Config A: ve/cifar10_ncsnpp_continuous with nf 32, 1 res block, ch_mult (1, 2, 2, 2), attention
at 16, batch 8 (1,831,651 parameters). Rows, each timed as the minimum over the repeats and
over --rounds rounds (default 3) of ours then the peer's (bench/common.py `in_rounds`); the
forward, PC and likelihood rows run as main.py's sampling modes run on a CPU host, the batch split
over one device per core (`utils.cores_as_devices`, convolutions on YNNPACK), the train steps on
one device, compiled as `--mode=train` compiles them (`utils.eigen_convolutions`):
  forward      the network at σ = 1 (no dropout).
  train step   score_sde's VE continuous DSM loss (½·sum over pixels, λ(t) = σ², Song+21 Eq. 7)
               with dropout, global-norm clipping and Adam, jitted with donated state (no EMA),
               the parameters laid out flat as training runs (`losses.FlatParams`);
               per optimizer step, at 1 step per jitted call (the peer's loop) and at
               --n_jitted_steps (default 5, the config's training.n_jitted_steps) per call.
  PC step      `sampling.get_sampling_fn` as the config samples (reverse-diffusion predictor +
               Langevin corrector, snr 0.16; Song+21 Alg. 1) over N = --pc_steps noise levels,
               divided by N: 2 NFE per step. GFLOP: XLA's count of the sampler, which counts its
               loop body, one PC step, once.
  likelihood   `likelihood.get_likelihood_fn` as eval uses it (Dopri5, rtol = atol = 1e-5, from
  per NFE      t = 1e-5) divided by its NFE; GFLOP: one NFE, the probability-flow drift and its
               JVP along the Hutchinson probe (Grathwohl+19 Eq. 7). The peer's NFE (scipy RK45)
               is the drift plus a vjp divergence: two forwards and one backward.
The PC and likelihood rows run the initial weights (trained weights change the ODE's NFE, not the
cost of one); the slow rows repeat max(2, repeats // 4) times. Columns (bench/common.py): ours
ms, peer ms, peer/ours, GFLOP (XLA), GFLOP/s, and that rate as a share of this machine's f32
GEMM rate measured in the same run.

  python bench/model_forward.py [--batch 8] [--repeats 20] [--rounds 3] [--pc_steps 4] \
      [--n_jitted_steps 5] \
      [--peer_python TORCH_PYTHON --score_sde_pytorch DIR | --peer FWD_S,STEP_S,PC_S,NFE_S]
With --peer_python (a Python with torch, numpy, scipy, ml_collections) and a checkout of
yang-song/score_sde_pytorch, bench/peers.py times the peer's own code after each round of ours,
with the same batch and as many torch threads as we have cores. Without them, the peer's seconds
are --peer's: by default those recorded on the 2026-11-22 machine (0.066, 0.37, 0.22, 0.45 s; on a
faster AMD EPYC, 2026-12-01: 0.054 s forward, 0.26 s train step). Timings vary up to 2x on these
shared machines: compare only numbers measured back to back.
"""
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import common
from configs.ve import cifar10_ncsnpp_continuous
import datasets
import hugepages
import likelihood
import losses
from models import precond
from models import utils as mutils
import sampling
import sde_lib
from streams import sample_keys
import utils

WORKLOADS = ('ncsnpp_forward', 'ncsnpp_train_step', 'ncsnpp_pc_step', 'ncsnpp_likelihood_nfe')
PEER_2026_11_22 = '0.066,0.37,0.22,0.45'


def config_a(batch, pc_steps):
  """ve/cifar10_ncsnpp_continuous made small; its SDE has `pc_steps` noise levels."""
  config = cifar10_ncsnpp_continuous.get_config()
  config.model.update(nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,),
                      num_scales=pc_steps)
  config.training.batch_size = config.eval.batch_size = batch
  return config


def train_optimizer():
  """score_sde's optimizer for config A: gradient clipping at norm 1, Adam at 2e-4."""
  return optax.chain(optax.clip_by_global_norm(1.), optax.adam(2e-4))


def make_train_step(model, optimizer, sigma_min, sigma_max, unravel=None):
  """VE-DSM + Adam steps, unrolled in one jitted call as `losses.make_train_step`:
  (params, opt_state, xs [n, B, H, W, C], key) -> (params, opt_state, losses [n]); with
  `unravel` (losses.FlatParams) on the parameters laid out flat, as training runs."""
  def loss_fn(params, x, key):
    k_t, k_z, k_drop = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (x.shape[0],), minval=1e-5, maxval=1.)
    sigma = sigma_min * (sigma_max / sigma_min) ** t          # Song+21 Eq. 31 (VE σ(t))
    z = jax.random.normal(k_z, x.shape)
    score = model.apply({'params': unravel(params) if unravel else params},
                        x + sigma[:, None, None, None] * z, sigma, train=True,
                        rngs={'dropout': k_drop})
    return jnp.mean(0.5 * jnp.sum((score * sigma[:, None, None, None] + z) ** 2, axis=(1, 2, 3)))

  def steps(params, opt_state, xs, key):
    step_losses = []
    for i in range(xs.shape[0]):
      loss, grads = jax.value_and_grad(loss_fn)(params, xs[i], jax.random.fold_in(key, i))
      updates, opt_state = optimizer.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      step_losses.append(loss)
    return params, opt_state, jnp.stack(step_losses)
  return jax.jit(steps, donate_argnums=(0, 1), compiler_options=utils.eigen_convolutions())


def likelihood_nfe_flops(config, sde, model, params, x):
  """XLA's FLOPs of one likelihood NFE: the probability-flow drift (Song+21 Eq. 13) and its JVP
  along a probe, the two things `likelihood.log_likelihood`'s vector field evaluates."""
  def field(params, y):
    score_fn = precond.get_score_fn(config, sde, mutils.get_model_fn(model, params, train=False))
    drift = lambda v: sde.reverse(score_fn, probability_flow=True).sde(
        v, jnp.full((v.shape[0],), 0.5))[0]
    return jax.jvp(drift, (y,), (y,))
  return common.xla_flops(jax.jit(field), params, x)


def sampling_rows(config, model, params, x, repeats):
  """`common.Row`s of one PC step and one likelihood NFE (module docstring)."""
  sde, eps = sde_lib.get_sde(config)
  slow = max(2, repeats // 4)
  replicated, split = common.sampling_layout()
  params, x = jax.device_put(params, replicated), jax.device_put(x, split)
  keys = sample_keys(jax.random.key(2), x.shape[0], sharding=split)
  sample_fn = sampling.get_sampling_fn(config, sde, model, x.shape[1:], lambda v: v, eps)
  pc = common.timed_row(f'PC step (RD + Langevin, 2 NFE; N = {sde.N})', 'ncsnpp_pc_step',
                       lambda: sample_fn(keys, params)[0], slow,
                       common.xla_flops(sample_fn, keys, params), per=sde.N)

  make_score_fn = lambda p: precond.get_score_fn(config, sde, mutils.get_model_fn(
      model, p, train=False))
  bpd_fn = likelihood.get_likelihood_fn(
      sde, make_score_fn, datasets.get_data_inverse_scaler(config), rtol=config.sampling.ode_rtol,
      atol=config.sampling.ode_atol, eps=config.eval.likelihood_eps)
  nfe = int(bpd_fn(keys, x, params)[2])
  likelihood_row = common.timed_row(
      f'likelihood per NFE ({nfe} NFE, Dopri5)', 'ncsnpp_likelihood_nfe',
      lambda: bpd_fn(keys, x, params)[0], slow,
      likelihood_nfe_flops(config, sde, model, params, x), per=nfe)
  return [pc, likelihood_row]


def network_rows(config, model, params, x, repeats, n_jitted_steps):
  """`common.Row`s of the forward pass and the train steps, per optimizer step at each of
  `common.steps_per_call(n_jitted_steps)` steps per call; prints compile times."""
  replicated, split = common.sampling_layout()
  shared, x_split = jax.device_put(params, replicated), jax.device_put(x, split)
  sigma = jax.device_put(jnp.full((x.shape[0],), 1.), split)
  forward = jax.jit(lambda p, x, s: model.apply({'params': p}, x, s))
  rows = [common.timed_row('config A forward', 'ncsnpp_forward',
                          lambda: forward(shared, x_split, sigma), repeats,
                          lambda: common.xla_flops(forward, shared, x_split, sigma))]
  optimizer, layout = train_optimizer(), losses.FlatParams.of(params)
  step = make_train_step(model, optimizer, config.model.sigma_min, config.model.sigma_max,
                         layout.unravel)
  for n in common.steps_per_call(n_jitted_steps):
    fresh = layout.ravel(params)               # the step donates its parameters
    rows.append(common.train_row(
        f'config A train step (DSM+Adam), {n} per call', 'ncsnpp_train_step', step,
        [fresh, optimizer.init(fresh), jnp.stack([x] * n), jax.random.key(3)], n, repeats))
  print('first call incl. compile: ' + ', '.join(f'{r.name} {r.first:.2f} s' for r in rows))
  return rows


def main(argv=None):
  parser = common.parser(__doc__, 20, 'score_sde_pytorch',
                         'checkout of yang-song/score_sde_pytorch', PEER_2026_11_22,
                         "the peer's forward, train-step, PC-step and per-NFE seconds")
  parser.add_argument('--pc_steps', type=int, default=4, help='noise levels of the PC row')
  args = common.parse(parser, 'score_sde_pytorch', argv)
  config = config_a(args.batch, args.pc_steps)
  utils.configure_cpu(*utils.sampling_setup(config))   # before JAX's CPU backend; as main.py's
  model, params = mutils.init_model(jax.random.key(0), config)
  print(f'config A: {mutils.count_params(config):,} parameters, batch {args.batch}, '
        f'{jax.devices()[0].platform}, {utils.usable_cores()} cores, {jax.device_count()} devices')
  x = jax.random.uniform(jax.random.key(1), (args.batch, 32, 32, 3))
  rows = sampling_rows(config, model, params, x, args.repeats)
  rows = network_rows(config, model, params, x, args.repeats, args.n_jitted_steps) + rows
  peer, source = common.peer_fn(args, {'score_sde_pytorch': args.score_sde_pytorch}, WORKLOADS,
                                'score_sde_pytorch measured now by bench/peers.py',
                                extra=('--pc_steps', str(args.pc_steps)))
  common.print_table(common.in_rounds(rows, args.rounds, peer), common.gemm_rate(), source)
  print(common.TRAIN_NOTE)


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
