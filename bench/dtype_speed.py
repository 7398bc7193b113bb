"""Train-step speed and device memory per `model.dtype` (float32 / bfloat16 / float16).

The step is the one training runs (run_lib.make_train_fns: loss, Adam, EMA, state donated, over
the device mesh); each row is measured in its own subprocess so that the device's peak memory
(`Device.memory_stats()`, GPUs and TPUs; '-' on CPU) is that row's alone.

  python bench/dtype_speed.py [--configs edm/cifar10_ddpmpp] [--batch 0] [--n_jitted_steps 1]
                              [--dtypes float32,bfloat16,float16] [--remat none] [--repeats 10]

Columns: global batch, compile s, ms per optimizer step (min of the repeats),
images/s, speed-up over the first dtype of the list, XLA's FLOP count per step as TFLOP/s, and
the device's peak GiB. `--batch 0` keeps the config's batch (split over the local devices); on a
CPU, float16/bfloat16 are emulated and slower than float32 — the table is for GPUs and TPUs,
where bfloat16/float16 matmuls and convolutions are the fast path (docs/scale.md).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import common
import hugepages
import memory
import run_lib
import utils


def load(name, dtype, remat, batch, n_jitted_steps):
  """bench/memory.py's config on one device (global batch `batch`, 0: the config's)."""
  config = memory.load(name, 1, dtype, remat, batch)
  config.training.n_jitted_steps = n_jitted_steps
  return config


def measure_row(config, repeats):
  """{'batch', 'compile_s', 'step_s', 'flops', 'peak_bytes', 'loss', 'devices'}: one optimizer
  step of `config`'s training run on this process's devices (n_jitted_steps steps per call)."""
  run = run_lib.build(config)
  fns = run_lib.make_train_fns(run)
  jitted = fns.jitted_step
  d, t = config.data, config.training
  shape = (t.n_jitted_steps, t.batch_size, d.image_size, d.image_size, d.num_channels)
  images = jax.device_put(np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32),
                          run.sharded(axis=1))
  batch = images
  if config.model.class_conditional:
    labels = np.eye(d.num_classes, dtype=np.float32)[np.arange(shape[0] * shape[1]) % d.num_classes]
    batch = {'image': images,
             'class_labels': jax.device_put(labels.reshape(shape[:2] + (-1,)), run.sharded(axis=1))}
  rng = jax.random.key(0)
  box = {'state': fns.pack(run_lib.init_state(run))}   # laid out as training holds it
  start = time.perf_counter()   # compiled once, for XLA's FLOP count and the timed calls
  compiled = jitted.lower(box['state'], batch, rng, None).compile()
  compile_s = time.perf_counter() - start
  flops = common.compiled_flops(compiled)

  def step():
    box['state'], metrics = compiled(box['state'], batch, rng)
    return metrics['loss']
  _, best, _ = common.timed(step, repeats)
  stats = jax.local_devices()[0].memory_stats() or {}
  n = t.n_jitted_steps
  return {'batch': t.batch_size, 'compile_s': compile_s, 'step_s': best / n, 'flops': flops / n,
          'peak_bytes': stats.get('peak_bytes_in_use'), 'loss': float(np.asarray(step())[-1]),
          'devices': f'{jax.local_device_count()} x {jax.local_devices()[0].device_kind}'}


def run_row(args, name, dtype):
  """measure_row in a fresh Python process (its own device memory peak); its JSON line back."""
  command = [sys.executable, os.path.abspath(__file__), '--row', f'{name},{dtype}',
             '--batch', str(args.batch), '--n_jitted_steps', str(args.n_jitted_steps),
             '--remat', args.remat, '--repeats', str(args.repeats)]
  out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def table_line(name, dtype, row, base):
  batch = row['batch']
  peak = f'{row["peak_bytes"] / 1024 ** 3:.2f}' if row['peak_bytes'] else '-'
  rate = batch / row['step_s']
  rate = f'{rate:.0f}' if rate >= 10 else f'{rate:.2f}'
  return (f'| {name} | {batch} | {dtype} | {row["compile_s"]:.0f} | {row["step_s"] * 1e3:.1f} | '
          f'{rate} | {base["step_s"] / row["step_s"]:.2f} | '
          f'{row["flops"] / row["step_s"] / 1e12:.2f} | {peak} | {row["loss"]:.4g} |')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--configs', default='edm/cifar10_ddpmpp')
  parser.add_argument('--dtypes', default='float32,bfloat16,float16')
  parser.add_argument('--batch', type=int, default=0, help="global batch (0: the config's)")
  parser.add_argument('--n_jitted_steps', type=int, default=1)
  parser.add_argument('--remat', default='none')
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--row', help=argparse.SUPPRESS)      # internal: one row, JSON to stdout
  args = parser.parse_args(argv)
  if args.row:
    utils.configure_cpu()
    name, dtype = args.row.split(',')
    print(json.dumps(measure_row(load(name, dtype, args.remat, args.batch, args.n_jitted_steps),
                                 args.repeats)))
    return None
  rows, start = [], time.time()
  for name in args.configs.split(','):
    base = None
    for dtype in args.dtypes.split(','):
      row = run_row(args, name, dtype)
      base = base or row
      if not rows:
        print(f'Train step per model.dtype on {row["devices"]} (remat {args.remat}, '
              f'n_jitted_steps {args.n_jitted_steps}); speed-up over {dtype}\n')
        print('| config | batch | dtype | compile s | ms/step | images/s | speed-up | TFLOP/s '
              '| peak GiB | loss |')
        print('|---|---|---|---|---|---|---|---|---|---|')
      print(table_line(name, dtype, row, base), flush=True)
      rows.append((name, dtype, row))
  print(f'\n({time.time() - start:.0f} s in all)')
  return rows


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
