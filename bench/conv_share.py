"""How much of a network's forward pass is its 3×3 convolutions, in XLA and in PyTorch (oneDNN).

The convolutions are read from our compiled forward (XLA's HLO after optimisation: every 3×3
convolution with its input and kernel shape); each distinct shape is timed with 'same' padding
(as every one of EDM's small DDPM++ has; a padded-before input, as config A's first, is timed
as if 'same') as 10 convolutions of independent inputs in one jitted call (a lone call pays for
waking the thread pool: 2× on the 2-core AMD EPYC), and, with --peer_python, as 10
`torch.nn.functional.conv2d` calls in a row (bench/peers.py --convs; torch only, no checkout). The sum over the forward's convolutions,
next to the whole forward, says what share of the forward any other change can touch, and
whether the peer's convolution engine is faster than ours.

  python bench/conv_share.py [--model edm|config_a] [--batch 8] [--repeats 20] [--grad] \
      [--peer_python TORCH_PYTHON]
--grad times each convolution with both its gradients (a train step's share; compare the sum
with the whole train step of bench/edm_sampler.py).
Measured 2026-12-04 on a 2-core AMD EPYC Zen 4 (EDM's small DDPM++, batch 8): the 42
convolutions 34–35 ms in XLA and 35 ms in PyTorch; NVlabs/edm's whole forward 49–50 ms. Since
the up blocks convolve on the input grid (2×2 phase convolutions, not counted here; NVlabs/edm
runs them as 3×3 at the upsampled size), the 3×3 ones are 23.9 ms in XLA and 21.5 ms in PyTorch
(same day, a later run), our whole forward 39.4 ms.
"""
import argparse
import collections
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import common
import edm_sampler
import hugepages
import model_forward
from models import utils as mutils
import utils

PER_CALL = 10
_VALUE = r'%([\w.\-]+) = f32\[([\d,]*)\]\{[\d,]*\} '
_CONV = r'f32\[[\d,]+\]\{[\d,]+\} convolution\(%([\w.\-]+), %([\w.\-]+)\), window=\{size=3x3 '


def conv_shapes(hlo_text):
  """Counter {(B, H, W, C, O): count} of the 3×3 f32 convolutions (NHWC, HWIO) in `hlo_text`."""
  shapes = {name: tuple(int(v) for v in dims.split(',')) for name, dims
            in re.findall(_VALUE, hlo_text)}
  found = collections.Counter()
  for lhs, rhs in re.findall(_CONV, hlo_text):
    (b, h, w, c), kernel = shapes[lhs], shapes[rhs]
    found[(b, h, w, c, kernel[-1])] += 1
  return found


def xla_conv_seconds(shape, repeats, grad=False):
  """Seconds of one 3×3 'SAME' convolution of `shape` (B, H, W, C, O), `PER_CALL` per call;
  `grad`: the convolution and both its gradients (input and kernel), as a train step runs it."""
  b, h, w, c, o = shape
  xs = jax.random.normal(jax.random.key(0), (PER_CALL, b, h, w, c))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, c, o))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',  # noqa: E731
                                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  cotangent = jax.random.normal(jax.random.key(2), (b, h, w, o))

  def one(x):
    if not grad:
      return conv(x, kernel)
    y, vjp = jax.vjp(conv, x, kernel)
    return y, vjp(cotangent)            # the output too, as a train step keeps it

  fn = jax.jit(lambda xs: [one(xs[i]) for i in range(PER_CALL)])
  return common.timed(lambda: fn(xs), repeats)[1] / PER_CALL


def forward(model_name, batch):
  """(jitted forward, its arguments) of the bench model: EDM's small DDPM++ or config A."""
  if model_name == 'edm':
    config = edm_sampler.small_ddpmpp(batch)
  else:
    config = model_forward.config_a(batch, 1000)
  model, params = mutils.init_model(jax.random.key(0), config)
  x = jax.random.normal(jax.random.key(1), (batch, 32, 32, 3))
  sigma = np.full((batch,), 1.3, np.float32)
  if model_name == 'edm':
    return edm_sampler.forward_fn(config, model, sigma), (params, x)
  return jax.jit(lambda p, x: model.apply({'params': p}, x, jnp.asarray(sigma))), (params, x)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--model', choices=('edm', 'config_a'), default='edm')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--peer_python', help='a Python with torch: time torch conv2d too')
  parser.add_argument('--grad', action='store_true',
                      help='time each convolution with both its gradients, as a train step')
  args = parser.parse_args(argv)
  utils.configure_cpu()   # before JAX starts its CPU backend
  fn, fn_args = forward(args.model, args.batch)
  shapes = conv_shapes(fn.lower(*fn_args).compile().as_text())
  whole = common.timed(lambda: fn(*fn_args), args.repeats)[1]
  ours = {shape: xla_conv_seconds(shape, args.repeats, args.grad) for shape in shapes}
  key = lambda shape: ','.join(map(str, shape))  # noqa: E731  bench/peers.py's 'conv B,H,W,C,O'
  peer = {}
  if args.peer_python:
    times = common.peer_times(args.peer_python, {}, args.batch, args.repeats, utils.usable_cores(),
                              extra=('--convs', ';'.join(map(key, shapes)))
                              + (('--conv_grad',) if args.grad else ()))
    peer = {s: times[f'conv {key(s)}'] for s in shapes}
  print(f'{args.model} forward, batch {args.batch}, {utils.usable_cores()} cores: '
        f'{sum(shapes.values())} 3x3 convolutions of {len(shapes)} shapes'
        + (', each timed with its input and kernel gradients' if args.grad else ''))
  print(f'{"B,H,W,C->O":>22} {"count":>5} {"XLA ms":>8} {"torch ms":>9}')
  for shape, count in sorted(shapes.items()):
    theirs = f'{1e3 * peer[shape]:9.3f}' if peer else f'{"-":>9}'
    print(f'{key(shape[:4]) + "->" + str(shape[4]):>22} {count:5d} '
          f'{1e3 * ours[shape]:8.3f} {theirs}')
  total = lambda times: sum(count * times[s] for s, count in shapes.items())  # noqa: E731
  line = f'convolutions: XLA {1e3 * total(ours):.1f} ms'
  if peer:
    line += f', torch {1e3 * total(peer):.1f} ms'
  print(f'{line}; our whole forward {1e3 * whole:.1f} ms (min of {args.repeats}), '
        f'convolutions {100 * total(ours) / whole:.0f}% of it')


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
