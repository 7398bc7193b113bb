"""Memory of one compiled train step per config, with and without `model.remat`, per device.

  python bench/memory.py [--target cpu | --target tpu --topology v5e:2x2] [--devices 8]
                         [--configs ve/cifar10_ncsnpp_continuous,...] [--dtypes float32,bfloat16]
                         [--remats none,full] [--batch PER_DEVICE]

Each config's train step (losses.make_train_step: loss, Adam, EMA; state donated and laid out
flat with training.flat_params, as run_lib jits it) is compiled for one device of the target at
the config's per-device batch (training.batch_size / --devices) from abstract inputs (nothing is allocated or run), and XLA's
buffer assignment (`.compile().memory_analysis()`) gives the bytes it needs: the state
(parameters, Adam moments, EMA; donated, so its output aliases its input), the batch, and the
temporaries — the activations kept for the backward pass, which remat trades for one more forward
pass. Peak = arguments + outputs − aliased + temporaries: XLA's plan, not a measured process peak
(allocator fragmentation and the runtime's own buffers come on top).

`--target tpu` compiles with the TPU compiler of libtpu for a TPU of `--topology` without any TPU
present (JAX's deviceless ahead-of-time compilation, `jax.experimental.topologies`); it needs
`pip install libtpu` at the version jax[tpu] pins (jax 0.10.2: libtpu 0.0.42.*), which this project
does not otherwise use. XLA:CPU's plan barely shows remat (its schedule keeps the recomputed
activations live: digits at 2048 per device, 1695 MiB without, 1646 with `full`), the TPU
compiler's does (685 → 283 MiB), so docs/scale.md's table comes from `--target tpu`. On the
project's 2-core machine a digits step compiles for TPU in ~35 s, but a CIFAR-10 NCSN++ or DDPM++
step did not finish in 15 minutes: run the full list on a machine with more cores (or a TPU host).
Prints a markdown table.
"""
import argparse
import importlib
import os
import sys

import jax
import jax.numpy as jnp
from jax.sharding import SingleDeviceSharding

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import losses
from models import utils as mutils
import sde_lib
import utils

CONFIGS = ('ve/cifar10_ncsnpp_continuous', 'vp/cifar10_ddpmpp_deep_continuous',
           'edm/cifar10_ddpmpp', 'edm/imagenet64_adm_cond', 've/celebahq_256_ncsnpp_continuous',
           've/ffhq_ncsnpp_continuous')
MIB = 2. ** 20


def target_device(target, topology):
  """One device of the target: this process's CPU, or a TPU of `topology` (no TPU needed)."""
  if target == 'cpu':
    return jax.local_devices(backend='cpu')[0]
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  return topologies.get_topology_desc(platform='tpu', topology_name=topology).devices[0]


def abstract_inputs(config, optimizer):
  """(state, batch, rng) as ShapeDtypeStructs: one optimizer step at the per-device batch."""
  state = jax.eval_shape(lambda: losses.init_train_state(
      mutils.init_model(jax.random.key(0), config)[1], optimizer))
  d, b = config.data, config.training.batch_size
  images = jax.ShapeDtypeStruct((1, b, d.image_size, d.image_size, d.num_channels), jnp.float32)
  batch = images
  if config.model.class_conditional:
    batch = {'image': images,
             'class_labels': jax.ShapeDtypeStruct((1, b, d.num_classes), jnp.float32)}
  return state, batch, jax.eval_shape(lambda: jax.random.key(0))


def step_memory(config, device):
  """{'state', 'temp', 'peak'}: MiB of `config`'s compiled train step on `device`."""
  sde, _ = sde_lib.get_sde(config)
  optimizer = losses.get_optimizer(config)
  state, batch, rng = abstract_inputs(config, optimizer)
  layout = losses.FlatParams.of(state.params) if config.training.flat_params else None
  if layout:                              # the state as run_lib's loop holds it
    state = jax.eval_shape(layout.flat, state)
  step = losses.make_train_step(mutils.get_model(config), losses.get_loss_fn(config, sde),
                                optimizer, losses.get_ema_rate(config),
                                config.training.grad_accum, layout.unravel if layout else None)
  on = SingleDeviceSharding(device)
  compiled = jax.jit(step, in_shardings=(on, on, on), out_shardings=(on, on),
                     donate_argnums=0).lower(state, batch, rng).compile()
  m = compiled.memory_analysis()
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)
  return {'state': state_bytes / MIB, 'temp': m.temp_size_in_bytes / MIB, 'peak': peak / MIB}


def load(name, devices, dtype, remat, batch=0):
  """Config `name` (under configs/) at the per-device batch: `batch`, or its batch / devices."""
  config = importlib.import_module(f'configs.{name.replace("/", ".")}').get_config()
  config.training.batch_size = batch or max(1, config.training.batch_size // devices)
  config.model.dtype, config.model.remat = dtype, remat
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--target', choices=('cpu', 'tpu'), default='cpu')
  parser.add_argument('--topology', default='v5e:2x2', help="a TPU topology name, e.g. 'v4:2x2x1'")
  parser.add_argument('--devices', type=int, default=8,
                      help='devices the global batch is split over (per-device batch = batch / this)')
  parser.add_argument('--batch', type=int, default=0, help='per-device batch (0: batch / devices)')
  parser.add_argument('--configs', default=','.join(CONFIGS))
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--remats', default='none,full')
  args = parser.parse_args(argv)
  utils.configure_cpu()
  device = target_device(args.target, args.topology)
  print(f'Train-step memory per device, MiB ({device.device_kind}, global batch / {args.devices}; '
        'XLA memory_analysis: peak = arguments + outputs - aliased + temporaries)\n')
  print('| config | batch per device | dtype | state | ' +
        ' | '.join(f'peak, remat {r}' for r in args.remats.split(',')) + ' |')
  print('|---|---|---|---|' + '---|' * len(args.remats.split(',')))
  rows = []
  for name in args.configs.split(','):
    for dtype in args.dtypes.split(','):
      configs = [load(name, args.devices, dtype, r, args.batch) for r in args.remats.split(',')]
      found = [step_memory(config, device) for config in configs]
      batch = configs[0].training.batch_size
      rows.append((name, batch, dtype, found))
      print(f'| {name} | {batch} | {dtype} | {found[0]["state"]:.0f} | ' +
            ' | '.join(f'{f["peak"]:.0f}' for f in found) + ' |', flush=True)
  return rows


if __name__ == '__main__':
  main()
