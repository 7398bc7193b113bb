"""Small shared helpers: the one `Registry`, batch broadcasting, per-sample normals (keys and
streams: streams.py), PNG grids, progress lines (rate and ETA).

Importing it changes nothing global: entry points (main.py, bench/, tests/conftest.py) call
`configure_cpu()` first, which applies `route_cpu_kernels()`, `prefer_wide_vectors()`,
`run_cpu_calls_inline()`, `unroll_threefry_on_cpu()` and, for sampling, `cores_as_devices()`.
"""
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

import paths


_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
_YNN_DOTS_AND_REDUCTIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'
_YNN_CONVOLUTIONS_TOO = f'{_YNN_DOTS_AND_REDUCTIONS},LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
_VECTOR_WIDTH_FLAG = '--xla_cpu_prefer_vector_width'
YNN_CONVOLUTION_CHANNELS = 64   # route_cpu_kernels: YNNPACK's convolutions win up to here
_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'


def route_cpu_kernels(ynn_convolutions=False):
  """On CPU, dots and reductions to YNNPACK; convolutions to XLA's multi-threaded Eigen kernels,
  or with `ynn_convolutions` (sampling a narrow network, one device per core: `configure_cpu`)
  to YNNPACK as well.

  jaxlib 0.9–0.10 hands every CPU convolution to YNNPACK, which runs it on one thread. Keeping
  YNNPACK for dots only made a 3×3 convolution 2.0× faster and its weight gradient 3.5× faster
  on the 2-core CI machine (forward of bench/model_forward.py: 82 → 46 ms). Reductions go to
  YNNPACK too, which runs them on all cores (XLA's own reductions use one): GroupNorm's
  statistics and, in a backward pass, every bias and norm gradient; on the 2-core AMD EPYC Zen 5
  EDM's small DDPM++ forward 9% faster (docs/performance.md). Where a device has one core,
  YNNPACK's one thread is all a convolution gets anyway, and on that core YNNPACK's are faster
  up to 64 channels (3×3 at batch 4: 0.68–0.78 of Eigen's time at 32 channels, 0.91–1.04 at 64,
  1.00–1.13 from 96 up; Inception 1.1–1.25): EDM's small DDPM++ forward on two one-core devices
  16.8 → 14.3 ms (docs/performance.md "Narrow networks' convolutions on YNNPACK"). XLA reads the
  flag when it creates its CPU backend, so this must run before the first computation; an
  `XLA_FLAGS` that already sets it wins. Other jaxlib versions are left alone (an unknown XLA
  flag aborts the process): re-measure with bench/ when upgrading jax.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if _jaxlib_in_range() and _YNN_FLAG not in flags:
    kinds = _YNN_CONVOLUTIONS_TOO if ynn_convolutions else _YNN_DOTS_AND_REDUCTIONS
    os.environ['XLA_FLAGS'] = f'{flags} {_YNN_FLAG}={kinds}'.strip()


def eigen_convolutions():
  """`jax.jit(..., compiler_options=...)` that compile a program's convolutions on XLA's Eigen
  kernels in a process that `route_cpu_kernels` set to YNNPACK's: wide networks (Inception) and
  train steps (the benches time one next to sampling; `--mode=train` never sets YNNPACK's). {}
  where the process's flags are not that setting or JAX compiles for a GPU or TPU."""
  if (_YNN_CONVOLUTIONS_TOO not in os.environ.get('XLA_FLAGS', '')
      or jax.default_backend() != 'cpu'):
    return {}
  return {_YNN_FLAG.lstrip('-'): _YNN_DOTS_AND_REDUCTIONS}


def _jaxlib_in_range():
  """Whether jaxlib is a version this module's XLA flags were measured on (0.9–0.10)."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  return (0, 9) <= tuple(int(part) for part in jaxlib.__version__.split('.')[:2]) < (0, 11)


def _cpu_fields():
  """{field: value} of the first CPU in /proc/cpuinfo; {} where there is none."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
      lines = f.read().split('\n\n')[0].splitlines()
  except OSError:
    return {}
  return {k.strip(): v.strip() for k, v in (line.split(':', 1) for line in lines if ':' in line)}


def _cpu_info():
  """(vendor, ISA flags) of the first CPU in /proc/cpuinfo; ('', set()) where there is none."""
  fields = _cpu_fields()
  return fields.get('vendor_id', ''), set(fields.get('flags', '').split())


def cpu_name():
  """'model name, family F model M[, AVX-512]' from /proc/cpuinfo (bench headers), or ''."""
  fields = _cpu_fields()
  if not fields:
    return ''
  avx512 = ', AVX-512' if 'avx512f' in fields.get('flags', '').split() else ''
  return (f"{fields.get('model name', '?')}, family {fields.get('cpu family', '?')} model "
          f"{fields.get('model', '?')}{avx512}")


def prefer_wide_vectors(cpu_info=_cpu_info):
  """On AMD CPUs with AVX-512, let XLA vectorise its own kernels 512 bits wide.

  XLA:CPU asks LLVM for 256-bit vectors (on Intel cores 512-bit code can lower the clock). On a
  2-core AMD EPYC Zen 4 (family 25 model 17) 512-bit vectors made `exp` and SiLU 2× faster and
  EDM's small DDPM++ forward 5–7% faster (A/B in one process: min 49.8 / 51.0 -> 47.3 / 47.4 ms),
  config A's forward ~2%, train steps unchanged; results differ by float rounding only.
  Convolutions and dots (Eigen, YNNPACK) are unaffected. Not measured on Intel: left at XLA's
  default there (`XLA_FLAGS=--xla_cpu_prefer_vector_width=512` tries it). Same jaxlib range and
  user-wins rule as `route_cpu_kernels`. Returns whether it was applied.
  """
  vendor, flags = cpu_info()
  current = os.environ.get('XLA_FLAGS', '')
  if (not _jaxlib_in_range() or vendor != 'AuthenticAMD' or 'avx512f' not in flags
      or _VECTOR_WIDTH_FLAG in current):
    return False
  os.environ['XLA_FLAGS'] = f'{current} {_VECTOR_WIDTH_FLAG}=512'.strip()
  return True


def unroll_threefry_on_cpu():
  """On CPU, lower threefry2x32 with unrolled rounds, as JAX does on GPU and TPU.

  jax 0.10 lowers threefry on CPU as a 5-trip while loop (smaller programs). In a train step
  every dropout layer then draws its bits in while loops that XLA cannot fuse, with copies of
  the loop state: the unrolled lowering computes the same bits (threefry's known-answer vectors,
  tests/test_utils.py) and took EDM's small DDPM++ train step from 110–112 to 101–104 ms on the
  2-core CI machine, compile time unchanged. It uses JAX internals, so it is applied only to the
  jax versions it was measured on (0.10.x) and is skipped silently where the names are missing.
  Returns whether it was applied.
  """
  if not jax.__version__.startswith('0.10.'):
    return False
  try:
    from jax._src.interpreters import mlir  # pylint: disable=import-outside-toplevel
    from jax._src.random import threefry2x32  # pylint: disable=import-outside-toplevel
    rule = threefry2x32._threefry2x32_lowering_rule  # pylint: disable=protected-access
    mlir.register_lowering(threefry2x32.threefry2x32_p, rule, platform='cpu')
  except (ImportError, AttributeError):
    return False
  return True


def configure_cpu(sampling_batch=None, widest_channels=None):
  """XLA's CPU settings of this project, before JAX starts its CPU backend (call it first in an
  entry point): dots and reductions to YNNPACK, convolutions to XLA's Eigen kernels, 512-bit
  vectors on AMD CPUs with AVX-512, threefry unrolled, calls run in the calling thread; for a
  process that samples batches of `sampling_batch` (None: it trains), one CPU device per core
  (`cores_as_devices`), and where that makes each core a device and the network's widest layer
  has at most `YNN_CONVOLUTION_CHANNELS` channels, convolutions to YNNPACK (`route_cpu_kernels`).
  Returns whether the threefry lowering was installed. GPUs and TPUs are unaffected."""
  one_core_devices = (sampling_batch is not None
                      and cores_as_devices(sampling_batch) == usable_cores())
  route_cpu_kernels(one_core_devices and widest_channels is not None
                    and widest_channels <= YNN_CONVOLUTION_CHANNELS)
  prefer_wide_vectors()
  run_cpu_calls_inline()
  return unroll_threefry_on_cpu()


def sampling_setup(config):
  """`configure_cpu`'s arguments for a process that samples as `config` says: (batch, the width
  the network's channel multipliers reach, `nf` × max(`ch_mult`); a U-Net's skip concatenations
  feed its decoder up to twice that)."""
  return config.eval.batch_size, config.model.nf * max(config.model.ch_mult, default=1)


def usable_cores():
  """CPU cores this process may run on (JAX's CPU backend uses them all; macOS: every core)."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def cores_as_devices(batch, cores=None):
  """Make each CPU core a JAX device (as many as divide `batch`), so that sampling splits its
  batch over the cores as over GPUs (`streams.data_mesh`) instead of splitting each kernel.

  Within one device XLA:CPU spreads each convolution over Eigen's threads and runs the kernels
  in between on fewer cores; with a device per core each core runs the whole network on its
  share of the batch. On the 2-core AMD EPYC Zen 5, EDM's small DDPM++ at batch 8: forward
  16.9–17.4 → 14.0–16.0 ms, 18-step Heun 575–591 → 515–520 ms, samples equal to the bit
  (per-sample keys, streams.py; docs/performance.md "Cores as devices for sampling"; with the
  same convolution kernels: `route_cpu_kernels` may pick YNNPACK's for a narrow network). Not for
  training: the gradients' all-reduce and a replicated Adam + EMA made the train step 63 → 87
  ms, so `--mode=train` keeps one device. XLA reads the flag when it creates its CPU backend; an
  `XLA_FLAGS` that already sets the count wins. Returns the count set (1: none)."""
  cores = usable_cores() if cores is None else cores
  count = max(d for d in range(1, cores + 1) if batch % d == 0)
  flags = os.environ.get('XLA_FLAGS', '')
  if count == 1 or _DEVICE_COUNT_FLAG in flags:
    return 1
  os.environ['XLA_FLAGS'] = f'{flags} {_DEVICE_COUNT_FLAG}={count}'.strip()
  return count


def run_cpu_calls_inline():
  """Single-device CPU calls run in the calling thread (`jax_cpu_enable_async_dispatch` off).

  XLA:CPU takes each call's temporaries as one malloc (117 MiB for EDM's small DDPM++ train step
  at batch 8). Called from JAX's dispatch thread, glibc maps a block that size afresh on every
  call (its per-thread arenas hold at most 64 MiB) and the kernel zeroes each page again: on the
  2-core AMD EPYC Zen 5, 12% of the train step's CPU samples were `clear_page` (perf). From the
  main thread, with the tunables `hugepages.py` adds (mmap_max=0, a high trim threshold), the
  block stays in the heap between calls: no page faults, train step 67–82 → 63–66 ms. The loops
  read each call's result on the host anyway (train: the NaN check), so no overlap is lost;
  multi-device calls stay asynchronous."""
  jax.config.update('jax_cpu_enable_async_dispatch', False)


class Registry:
  """Name -> object table behind every `@register_*` decorator (models, SDEs, losses, samplers).

  An unknown name raises a `KeyError` that lists the registered names, so a config typo is
  answered with the valid choices.
  """

  def __init__(self, kind):
    self.kind = kind          # what is registered, for error messages ("predictor", "model", ...)
    self._table = {}

  def register(self, name):
    """Decorator: `@REG.register('name')` stores the decorated object under `name`."""
    def wrap(obj):
      if name in self._table:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._table[name] = obj
      return obj
    return wrap

  def get(self, name):
    try:
      return self._table[name]
    except KeyError:
      raise KeyError(f'unknown {self.kind} {name!r}; registered {self.kind}s: '
                     f'{", ".join(sorted(self._table))}') from None

  def names(self):
    return sorted(self._table)

  def __contains__(self, name):
    return name in self._table


def bcast(v, x):
  """Reshape a per-sample vector `v` [B] so that it broadcasts against `x` [B, ...]."""
  v = jnp.asarray(v)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def per_sample_normal(keys, step, shape, dtype=jnp.float32):
  """N(0, I) noise [B, *shape] for step `step`; row i depends only on keys[i] and `step`."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), shape, dtype))(keys)


def image_grid(images, nrow=None, padding=2):
  """Tile images [N, H, W, C] in [0, 1] into one uint8 grid [H', W', C]."""
  images = np.clip(np.asarray(images, np.float32), 0., 1.)
  n, h, w, c = images.shape
  nrow = nrow or int(np.ceil(np.sqrt(n)))
  ncol = int(np.ceil(n / nrow))
  grid = np.zeros((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), np.float32)
  for i in range(n):
    r, q = divmod(i, nrow)
    y, x = padding + r * (h + padding), padding + q * (w + padding)
    grid[y:y + h, x:x + w] = images[i]
  return np.round(grid * 255).astype(np.uint8)


def save_image_grid(images, path, nrow=None, min_size=32):
  """Save images [N, H, W, C] in [0, 1] as one PNG grid at `path` (local folders are created;
  any paths.py path).

  Images smaller than `min_size` pixels are enlarged by an integer factor (nearest neighbour)
  so that 8×8 digits can be seen in an image viewer.
  """
  factor = max(1, -(-min_size // np.asarray(images).shape[1]))
  grid = image_grid(np.repeat(np.repeat(images, factor, axis=1), factor, axis=2), nrow)
  paths.save_png(path, grid[..., 0] if grid.shape[-1] == 1 else grid)


def duration(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
  """Rate (since the previous report) and ETA of a loop of `total` units (None: unknown, no ETA)."""

  def __init__(self, what, done, total, every_s=30.):
    self.what, self.total, self.every_s = what, total, every_s
    self._t, self._done, self._last_log = time.time(), done, 0.
    self.rate = 0.

  def line(self, done):
    """Update the rate with the units done since the last call; the report line."""
    now = time.time()
    self.rate = (done - self._done) / max(now - self._t, 1e-9)
    self._t, self._done = now, done
    if self.total is None:
      return f'{self.what} {done}: {self.rate:.2f}/s'
    eta = duration((self.total - done) / self.rate) if self.rate > 0 else '?'
    return f'{self.what} {done}/{self.total}: {self.rate:.2f}/s, ETA {eta}'

  def maybe_log(self, done):
    """Log a line if `every_s` seconds passed since the last one, or at the end."""
    if time.time() - self._last_log >= self.every_s or done == self.total:
      self._last_log = time.time()
      logging.info(self.line(done))
