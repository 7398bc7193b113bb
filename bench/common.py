"""What the speed benches share: timing, XLA's FLOP count, this machine's GEMM rate, the peers'
times from bench/peers.py (run by a Python with torch, in a subprocess) and the printed table.

Each table row is one workload: our seconds, the peer's, the ratio peer/ours (above 1: we are
faster), XLA's FLOP count of our compiled function, our FLOP rate and that rate as a share of the
f32 GEMM rate (`gemm_rate`) measured in the same run — how far the workload is from what this CPU
does on the best-case kernel.
"""
import argparse
import json
import os
import subprocess
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

import hugepages
import streams
import utils

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'peers.py')


def timed(fn, repeats):
  """(first-call seconds, min and median seconds of `repeats` further calls), blocked until ready.

  On a shared machine the minimum is the better estimate of the uncontended time.
  """
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, float(np.min(times)), float(np.median(times))


def threaded_call(fn, args):
  """`fn(*args)`, blocked until ready. A train step returns (*new state, metrics): the new state
  replaces the leading (donated) entries of the list `args`, ready for the next call."""
  out = fn(*args)
  if isinstance(out, tuple):
    args[:len(out) - 1] = out[:-1]
  return jax.block_until_ready(out)


class Row(NamedTuple):
  """One workload of a bench table, compiled and warmed up: `seconds()` times one window of
  calls (the minimum over the repeats) each time it is called; `flops`: XLA's count."""
  name: str
  workload: str
  flops: Optional[float]
  seconds: Callable[[], float]
  first: float      # seconds of the first call, compilation included


def timed_row(name, workload, fn, repeats, flops=None, per=1):
  """A `Row` timing `fn()` over `repeats` calls a window, its first call (compiling) made here;
  `per`: a call's seconds are divided by it (steps per call); `flops`: the row's, or a function
  giving them (called after the first call, whose time then includes the compilation)."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  flops = flops() if callable(flops) else flops
  return Row(name, workload, flops, lambda: timed(fn, repeats)[1] / per, first)


def train_row(name, workload, train_step, args, steps_per_call, repeats):
  """A `Row` of a jitted train step that runs `steps_per_call` optimizer steps a call, its state
  threaded through `args` (`threaded_call`): seconds and XLA FLOPs per optimizer step."""
  return timed_row(name, workload, lambda: threaded_call(train_step, args), repeats,
                   lambda: xla_flops(train_step, *args) / steps_per_call, steps_per_call)


def in_rounds(rows, rounds, peer=None):
  """[(name, ours_s, peer_s, flops)]: `rounds` rounds of our rows' windows, each followed by
  `peer()` ({workload: seconds}, e.g. `peer_times` run now; None: no peer), each time the
  minimum over the rounds. On these shared hosts a slow stretch (up to +20% for seconds to
  minutes, docs/performance.md "Rounds") would otherwise land on one side only."""
  ours, theirs = {r.name: float('inf') for r in rows}, {}
  for _ in range(rounds):
    for r in rows:
      ours[r.name] = min(ours[r.name], r.seconds())
    for workload, seconds in (peer() if peer else {}).items():
      theirs[workload] = min(theirs.get(workload, float('inf')), seconds)
  return [(r.name, ours[r.name], theirs.get(r.workload), r.flops) for r in rows]


def xla_flops(jitted, *args):
  """XLA's FLOP count of the compiled `jitted(*args)` (HloCostAnalysis, after optimisation), over
  all the devices its arguments are laid out on (XLA counts a sharded program per device).

  XLA counts a while loop's body once, whatever its trip count (tests/test_bench.py pins this):
  for a sampler loop the count is one iteration's.
  """
  devices = {d for a in jax.tree.leaves(args) if isinstance(a, jax.Array)
             for d in a.sharding.device_set}
  return compiled_flops(jitted.lower(*args).compile()) * max(1, len(devices))


def sampling_layout():
  """(replicated, batch-split) shardings over `streams.data_mesh()`: parameters and batches laid
  out as main.py's sampling modes lay them out, one CPU device per core there
  (`utils.configure_cpu(sampling_batch)`; on one device both are that device)."""
  mesh = streams.data_mesh()
  return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec('data'))


def compiled_flops(compiled):
  """XLA's FLOP count of a compiled function (`jax.jit(f).lower(...).compile()`)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):     # older jaxlibs: one dict per computation
    cost = cost[0]
  return float(cost['flops'])


def gemm_rate(n=2048, repeats=5):
  """This machine's f32 GEMM rate in FLOP/s: the best of `repeats` jitted n×n @ n×n products
  (2n³ FLOPs each), in the process of the workloads it is compared with (same XLA flags)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  return 2. * n ** 3 / timed(lambda: matmul(a, b), repeats)[1]


def parser(doc, repeats, checkout, checkout_help, peer_default, peer_help):
  """The benches' shared flags: --batch, --repeats, --peer_python with --<checkout> (the peer
  measured now), or --peer (its seconds passed in)."""
  result = argparse.ArgumentParser(description=doc.split('\n', 1)[0])
  result.add_argument('--batch', type=int, default=8)
  result.add_argument('--repeats', type=int, default=repeats)
  result.add_argument('--peer_python', help='a Python with torch: run bench/peers.py after us')
  result.add_argument(f'--{checkout}', help=checkout_help)
  result.add_argument('--peer', default=peer_default, help=peer_help)
  result.add_argument('--rounds', type=int, default=3,
                      help='rounds of our timing then the peer\'s; each row: the minimum over them')
  result.add_argument('--n_jitted_steps', type=int, default=5,
                      help='a second train-step row with this many steps per jitted call, as '
                           'training.n_jitted_steps (the paper configs: 5); 1: only the 1-step row')
  return result


def steps_per_call(n_jitted_steps):
  """The train-step rows' steps per jitted call: 1 (the peers' loop) and --n_jitted_steps."""
  return sorted({1, n_jitted_steps})


TRAIN_NOTE = ('train-step rows: time and GFLOP per optimizer step; "k per call": k steps unrolled\n'
              'in one jitted call, as training.n_jitted_steps = k (paper configs: 5); the peer: one\n'
              'step per Python iteration')


def parse(parser_, checkout, argv):
  args = parser_.parse_args(argv)
  if args.peer_python and not getattr(args, checkout):
    parser_.error(f'--peer_python needs --{checkout}')
  if args.rounds < 1:
    parser_.error(f'--rounds {args.rounds}: at least one round')
  if args.n_jitted_steps < 1:
    parser_.error(f'--n_jitted_steps {args.n_jitted_steps}: steps per jitted call must be >= 1')
  if args.peer_python:
    check_peer(args.peer_python, {checkout: getattr(args, checkout)})
  return args


def check_peer(python, checkouts, script=PEERS):
  """Exit with one line unless `python` can import torch and the peers' code at `checkouts`
  ({flag: path}): run before our measurement, so that a missing package fails in seconds."""
  command = [python, script, '--check']
  for flag, path in checkouts.items():
    command += [f'--{flag}', path]
  try:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=300, env=hugepages.peer_environ())
  except (OSError, subprocess.TimeoutExpired) as e:
    raise SystemExit(f'bench: --peer_python {python}: cannot run it ({e})') from None
  if result.returncode:
    last = (result.stderr.strip().splitlines() or ['no error output'])[-1]
    raise SystemExit(f'bench: --peer_python {python} cannot run the peer at {checkouts}: {last} '
                     '(bench/peers.py says what that Python needs)')


def peer_times(python, checkouts, batch, repeats, threads, extra=(), script=PEERS):
  """{workload: seconds} printed by `script` (bench/peers.py) run by `python` (a Python with torch).

  Args:
    checkouts: {flag: path}, e.g. {'score_sde_pytorch': DIR} or {'edm': DIR}.
    extra: further command-line arguments for the script.
  The script's stderr passes through; its stdout's last line is the JSON object.
  """
  command = [python, script, '--batch', str(batch), '--repeats', str(repeats),
             '--threads', str(threads), *extra]
  for flag, path in checkouts.items():
    command += [f'--{flag}', path]
  result = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True,
                          env=hugepages.peer_environ())   # the peer as its users run it
  return json.loads(result.stdout.strip().splitlines()[-1])


def peer_fn(args, checkouts, workloads, measured, extra=()):
  """(a callable returning the peer's {workload: seconds}, a line saying where they come from):
  bench/peers.py run now by --peer_python on `checkouts` ({flag: path}; `measured` names it),
  or --peer's seconds in the order of `workloads`."""
  if args.peer_python:
    fn = lambda: peer_times(args.peer_python, checkouts, args.batch, args.repeats,
                            utils.usable_cores(), extra)
    return fn, f"{measured}; each row the minimum over {args.rounds} rounds of ours then the peer's"
  given = given_peer(args.peer, workloads)
  return lambda: given, f'--peer {args.peer}; ours the minimum over {args.rounds} rounds'


def given_peer(text, workloads):
  """{workload: seconds} from `--peer`'s comma-separated seconds, in the order of `workloads`
  (fewer values leave the last workloads without a peer time)."""
  values = [float(v) for v in text.split(',') if v.strip()]
  return dict(zip(workloads, values))


def row(name, ours, peer, flops, gemm):
  """One table line: ours ms, peer ms, peer/ours, GFLOP (XLA), GFLOP/s and share of the GEMM rate.

  Args:
    ours, peer: seconds (peer None: not measured); flops: per call of our function (or None);
    gemm: FLOP/s of `gemm_rate`.
  """
  peer_ms = f'{peer * 1e3:.1f}' if peer else '-'
  ratio = f'{peer / ours:.2f}' if peer else '-'
  if flops:
    rate = flops / ours
    tail = f'{flops / 1e9:9.2f} {rate / 1e9:9.1f} {100 * rate / gemm:7.1f}%'
  else:
    tail = f'{"-":>9} {"-":>9} {"-":>8}'
  return f'{name:<44} {ours * 1e3:9.1f} {peer_ms:>9} {ratio:>9} {tail}'


def print_table(rows, gemm, peer_source):
  """Print `rows` [(name, ours_s, peer_s, flops)] under a header naming the peer's source."""
  print(f'f32 GEMM 2048^3 (jnp.matmul, jitted, best of 5): {gemm / 1e9:.1f} GFLOP/s; '
        f'peer: {peer_source}')
  if hasattr(os, 'getloadavg'):   # other jobs slow torch's threads far more than XLA's
    print(f'1-min load average {os.getloadavg()[0]:.1f} on {utils.usable_cores()} cores (this run included)')
  print(f'CPU: {utils.cpu_name()}; XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}; '
        f'GLIBC_TUNABLES: {os.environ.get("GLIBC_TUNABLES", "")} (ours; the peer: '
        f'{hugepages.peer_environ().get("GLIBC_TUNABLES", "")})')
  print(f'{"workload":<44} {"ours ms":>9} {"peer ms":>9} {"peer/ours":>9} '
        f'{"GFLOP":>9} {"GFLOP/s":>9} {"% GEMM":>8}')
  for name, ours, peer, flops in rows:
    print(row(name, ours, peer, flops, gemm))
