"""Where a step's time goes: the compiled kernels of EDM's small DDPM++ train step (or forward),
from a jax.profiler trace, summed per kernel kind and listed with the layer each comes from.

  python bench/profile_step.py [--model edm|config_a] [--workload train_step|forward] [--batch 8]
                               [--steps 5] [--top 20] [--per_call 1] [--one_core]

The model and step are bench/edm_sampler.py's (`--model config_a`: bench/model_forward.py's NCSN++
config A and its VE-DSM + clip + Adam step). XLA:CPU names each kernel after its fusion kind
and an index (`copy_bitcast_fusion.6`, `ynn_fusion.194`, `convolution.12`); the first table sums
the trace's durations per kind (index dropped) over `--steps` calls, per call; the second lists
the slowest kernels with the JAX op that produced them (the compiled HLO's `op_name`, e.g.
`transpose(jvp(NCSNpp))/up_1_resample/skip/transpose`: the backward pass of a 1×1 skip).
On more than one core the spans mislead: XLA:CPU runs a convolution asynchronously on Eigen's
thread pool, so its span covers the launch only (the EDM train step's convolutions: 9 ms on two
cores, 161 ms on one), and a loop kernel split across the cores lasts until the busier core
reaches it. `--one_core` pins the process to one CPU before XLA's thread pool starts: every span
is then that kernel's whole work, and the sums add up to the step (docs/performance.md). Compare
runs only back to back. `--per_call k`: a train step runs k optimizer steps per jitted call, as
`training.n_jitted_steps`; the times are per optimizer step, and its kernel spans undercount the
work (docs/performance.md, "Steps per call"): compare them only with other k-per-call profiles.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import common
import edm_sampler
import hugepages
import losses
import model_forward
from models import utils as mutils
import sde_lib
import utils


def build(model_name, workload, batch, per_call=1):
  """(jitted fn, args) of the workload; a train step's state is threaded through `args` and
  runs `per_call` optimizer steps per call."""
  config = (edm_sampler.small_ddpmpp(batch) if model_name == 'edm'
            else model_forward.config_a(batch, pc_steps=4))
  sde, _ = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  x = jax.random.normal(jax.random.key(1), (batch, 32, 32, 3))
  sigma = np.full((batch,), 1.3, np.float32)
  xs = jnp.stack([x] * per_call)
  if model_name == 'config_a':
    if workload == 'forward':
      return jax.jit(lambda p, x: model.apply({'params': p}, x, sigma)), [params, x]
    optimizer, layout = model_forward.train_optimizer(), losses.FlatParams.of(params)
    fn = model_forward.make_train_step(model, optimizer, config.model.sigma_min,
                                       config.model.sigma_max, layout.unravel)
    flat = layout.ravel(params)
    return fn, [flat, optimizer.init(flat), xs, jax.random.key(3)]
  if workload == 'forward':
    return edm_sampler.forward_fn(config, model, sigma), [params, x]
  fn, init_state = edm_sampler.train_step_fn(config, sde, model, params)
  return fn, [init_state(params), xs, jax.random.key(3)]


def op_names(fn, args):
  """{HLO instruction name: the JAX op_name that produced it ('?' if none)} of the compiled
  `fn(*args)`; the trace names each kernel after its instruction."""
  names = {}
  for line in fn.lower(*args).compile().as_text().splitlines():
    found = re.match(r'\s*(?:ROOT )?%([\w.\-]+) = ', line)
    if found:
      op = re.search(r'op_name="([^"]+)"', line)
      names[found.group(1)] = op.group(1) if op else '?'
  return names


def kernel_times(fn, args, steps, kernels):
  """{kernel name: ms per call} of the trace events named in `kernels` (the runtime's own spans
  are left out) over `steps` calls."""
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(steps):
        common.threaded_call(fn, args)
    path = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)[0]
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  times = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e and e['name'] in kernels:
      times[e['name']] += e['dur'] / 1e3 / steps
  return times


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--model', choices=('edm', 'config_a'), default='edm')
  parser.add_argument('--workload', choices=('train_step', 'forward'), default='train_step')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--top', type=int, default=20)
  parser.add_argument('--per_call', type=int, default=1,
                      help='train step: optimizer steps per jitted call (training.n_jitted_steps)')
  parser.add_argument('--one_core', action='store_true',
                      help='pin to one CPU: every kernel span is its whole work (see above)')
  args = parser.parse_args(argv)
  if args.per_call < 1:
    parser.error(f'--per_call {args.per_call}: steps per jitted call must be >= 1')
  if args.one_core:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # before the CPU client exists
  utils.configure_cpu()
  per_call = args.per_call if args.workload == 'train_step' else 1
  fn, fn_args = build(args.model, args.workload, args.batch, per_call)
  names = op_names(fn, fn_args)
  _, wall_min, wall_median = common.timed(lambda: common.threaded_call(fn, fn_args), 10)
  times = collections.Counter({name: ms / per_call for name, ms in
                               kernel_times(fn, fn_args, args.steps, names).items()})
  wall_min, wall_median = wall_min / per_call, wall_median / per_call
  total = sum(times.values())
  print(f'{args.model} {args.workload}, batch {args.batch}, {per_call} per call: wall min '
        f'{1e3 * wall_min:.1f} ms, median {1e3 * wall_median:.1f} ms; kernels {total:.1f} ms per '
        f'step ({len(times)} kernels)')
  cores = utils.usable_cores()
  if cores > 1:
    print(f'{cores} cores: convolution spans are their launch only, loop kernels wait for the '
          'busier core; --one_core for whole-kernel times')
  kinds, counts = collections.Counter(), collections.Counter()
  for name, ms in times.items():
    kind = re.sub(r'\.\d+$', '', name)
    kinds[kind] += ms
    counts[kind] += 1
  print(f'{"ms":>8} {"share":>6} {"kernels":>7}  kind')
  for kind, ms in kinds.most_common(args.top):
    print(f'{ms:8.2f} {100 * ms / total:5.1f}% {counts[kind]:7d}  {kind}')
  print(f'\n{"ms":>8}  kernel  <-  JAX op')
  for name, ms in times.most_common(args.top):
    print(f'{ms:8.2f}  {name}  <-  {names[name]}')
  return kinds


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
