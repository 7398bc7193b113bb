"""utils: the XLA:CPU settings (convolutions, reductions, inline calls keeping their temporaries)
and the PNG grid."""
import os
import platform
import subprocess
import sys

import jaxlib
import numpy as np
import pytest
from PIL import Image

import hugepages
import utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IN_RANGE = (0, 9) <= tuple(int(p) for p in jaxlib.__version__.split('.')[:2]) < (0, 11)

_PROBE = '''
import sys
import jax, jax.numpy as jnp
import utils
if sys.argv[1:]:   # sampling a network this wide, one device per usable core
  utils.configure_cpu(utils.usable_cores(), int(sys.argv[1]))
else:
  utils.configure_cpu()
conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
args = jnp.ones((8, 32, 32, 64)), jnp.ones((3, 3, 64, 64))
text = jax.jit(conv).lower(*args).compile().as_text()
eigen = jax.jit(conv, compiler_options=utils.eigen_convolutions()).lower(*args).compile().as_text()
g = jax.jit(lambda x: jnp.sum(jnp.tanh(x) * x, axis=(1, 2)))
reduction = g.lower(jnp.ones((8, 32, 32, 64))).compile().as_text()
print(('YNN_CONV' if 'ynn_fusion' in text else 'XLA_CONV')
      + (' YNN_REDUCE' if 'ynn_fusion' in reduction else ' XLA_REDUCE')
      + (' YNN_CONV' if 'ynn_fusion' in eigen else ' XLA_CONV'))
'''


def _probe(xla_flags, *argv, script=_PROBE):
  """The last line `script` prints, run in a fresh process with `XLA_FLAGS=xla_flags`."""
  env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', script, *argv], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=True).stdout
  return out.strip().splitlines()[-1]


@pytest.mark.skipif(not _IN_RANGE, reason='the setting targets jaxlib 0.9-0.10 only')
def test_cpu_convolutions_leave_ynnpack_and_reductions_join_it_unless_the_user_set_the_flag():
  """utils.configure_cpu() compiles convolutions with XLA's own kernels and reductions with
  YNNPACK's (all cores); a user's XLA_FLAGS wins."""
  assert _probe('') == 'XLA_CONV YNN_REDUCE XLA_CONV'
  ynn_conv = '--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
  assert _probe(ynn_conv) == 'YNN_CONV XLA_REDUCE YNN_CONV'
  assert _probe(ynn_conv, '64') == 'YNN_CONV XLA_REDUCE YNN_CONV'


@pytest.mark.skipif(not _IN_RANGE, reason='the setting targets jaxlib 0.9-0.10 only')
@pytest.mark.parametrize('widest, want', [(64, 'YNN_CONV YNN_REDUCE XLA_CONV'),
                                          (128, 'XLA_CONV YNN_REDUCE XLA_CONV')])
def test_sampling_a_narrow_network_with_a_device_per_core_puts_convolutions_on_ynnpack(widest,
                                                                                       want):
  """With one device per core, YNNPACK's one-thread convolutions are the faster up to 64
  channels (utils.route_cpu_kernels); wider networks, and any program compiled with
  `eigen_convolutions()` (Inception, the benches' train steps), keep Eigen's."""
  assert _probe('', str(widest)) == want


_INCEPTION_PROBE = '''
import jax, jax.numpy as jnp
import utils
utils.configure_cpu(utils.usable_cores(), 64)
import evaluation
from models import inception
x = jnp.zeros((1, 75, 75, 3))
params = jax.eval_shape(inception.InceptionV3().init, jax.random.key(0), x)
text = evaluation._network().lower(params, x).compile().as_text()
print(text.count(' convolution('), text.count('ynn_fusion'))
'''


@pytest.mark.skipif(not _IN_RANGE, reason='the setting targets jaxlib 0.9-0.10 only')
def test_inception_keeps_eigen_convolutions_where_sampling_put_them_on_ynnpack():
  """Inception is wide (up to 2048 channels): YNNPACK's one-thread convolutions made it 1.1-1.25x
  slower on a one-core device, so its program is compiled with `utils.eigen_convolutions()`."""
  convolutions, ynn_fusions = map(int, _probe('', script=_INCEPTION_PROBE).split())
  assert convolutions > 0 and ynn_fusions == 0   # YNNPACK's: 174 fusions, every convolution in one


@pytest.mark.parametrize('batch, cores, count', [(8, 2, 2), (8, 3, 2), (12, 16, 12), (64, 16, 16),
                                                 (7, 2, 1), (8, 1, 1)])
def test_sampling_makes_each_core_a_device_as_many_as_divide_the_batch(monkeypatch, batch, cores,
                                                                       count):
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_enable_fast_math=false')
  assert utils.cores_as_devices(batch, cores) == count
  expected = '--xla_cpu_enable_fast_math=false' + (
      f' --xla_force_host_platform_device_count={count}' if count > 1 else '')
  assert os.environ['XLA_FLAGS'] == expected
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=3')   # the user's wins
  assert utils.cores_as_devices(batch, cores) == 1
  assert os.environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=3'


def test_cores_are_counted_where_affinity_is_unknown(monkeypatch):
  """macOS has no os.sched_getaffinity: every core counts."""
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.delattr(os, 'sched_getaffinity', raising=False)
  monkeypatch.setattr(os, 'cpu_count', lambda: 4)
  assert utils.cores_as_devices(8) == 4


_TEMPORARIES = '''
import resource, sys
import jax, jax.numpy as jnp
import utils
utils.configure_cpu()
if sys.argv[1] == 'async':
  jax.config.update('jax_cpu_enable_async_dispatch', True)   # JAX's default
f = jax.jit(lambda x: jnp.sum(jnp.sin(x) * jnp.cos(x).T))   # 72 MB of temporaries
x = jnp.ones((3000, 3000))
for _ in range(2):
  f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux')
                    or (hugepages._glibc_version() or (0, 0)) < (2, 35),  # pylint: disable=protected-access
                    reason='Linux with glibc >= 2.35 only')
def test_a_calls_temporaries_stay_mapped_between_calls():
  """With hugepages.py's tunables, a jitted call's temporaries (one block over glibc's 64 MiB
  thread-arena limit, ≥ 36 pages of 2 MiB) are not faulted in again on the next call: utils.run_cpu_calls_inline
  runs the call in the main thread, whose heap keeps the block. From JAX's dispatch thread (its
  default) every call maps and zeroes it afresh."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             GLIBC_TUNABLES=':'.join(('glibc.malloc.hugetlb=1',) + hugepages.KEEP))
  faults = {}
  for mode in ('inline', 'async'):
    out = subprocess.run([sys.executable, '-c', _TEMPORARIES, mode], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=120, check=True).stdout
    faults[mode] = int(out.strip().splitlines()[-1])
  assert faults['inline'] < 32 and faults['async'] > 4 * faults['inline'], faults  # 11, 375 seen


@pytest.mark.skipif(not _IN_RANGE, reason='the setting targets jaxlib 0.9-0.10 only')
@pytest.mark.parametrize('vendor, flags, user, applied', [
    ('AuthenticAMD', 'fpu avx2 avx512f avx512bw', '', True),
    ('AuthenticAMD', 'fpu avx2', '', False),                 # Zen 3: no AVX-512
    ('GenuineIntel', 'fpu avx2 avx512f', '', False),         # not measured on Intel
    ('', '', '', False),                                     # no /proc/cpuinfo
    ('AuthenticAMD', 'avx512f', '--xla_cpu_prefer_vector_width=256', False)])   # the user's wins
def test_wide_vectors_only_on_amd_cpus_with_avx512(monkeypatch, vendor, flags, user, applied):
  monkeypatch.setenv('XLA_FLAGS', user)
  assert utils.prefer_wide_vectors(lambda: (vendor, set(flags.split()))) is applied
  want = f'{user} --xla_cpu_prefer_vector_width=512'.strip() if applied else user
  assert os.environ['XLA_FLAGS'] == want


def test_cpu_info_reads_this_machine():
  vendor, flags = utils._cpu_info()   # pylint: disable=protected-access
  if os.path.exists('/proc/cpuinfo') and platform.machine() == 'x86_64':
    assert vendor and 'sse2' in flags   # x86 Linux: vendor_id and flags of the first CPU
    assert ' family ' in utils.cpu_name() and ('AVX-512' in utils.cpu_name()) == ('avx512f' in flags)
  elif not os.path.exists('/proc/cpuinfo'):
    assert (vendor, flags, utils.cpu_name()) == ('', set(), '')


def test_small_images_are_enlarged_in_the_png(tmp_path):
  images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1))
  path = tmp_path / 'grid.png'
  utils.save_image_grid(images, str(path))
  grid = np.asarray(Image.open(path))
  assert grid.shape == (2 + 2 * 34, 2 + 2 * 34)         # 4× nearest neighbour: 32 px per image
  cell = grid[2:34, 2:34].astype(np.float64) / 255
  np.testing.assert_allclose(cell, np.kron(images[0, ..., 0], np.ones((4, 4))), atol=0.5 / 255)


def test_threefry_on_cpu_is_unrolled_and_gives_the_known_answers():
  """Random123's known-answer vectors of Threefry-2x32 (20 rounds), jitted on this backend
  (the lowering `utils.unroll_threefry_on_cpu` installs), and no while loop left in the HLO."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jax._src.random import threefry2x32  # pylint: disable=import-outside-toplevel
  fn = jax.jit(lambda k, c: threefry2x32.threefry_2x32((k[0], k[1]), c))
  u32 = lambda *v: jnp.asarray(np.array(v, np.uint32))   # noqa: E731
  cases = [((0, 0), (0, 0), (0x6b200159, 0x99ba4efe)),
           ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
           ((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3), (0xc4923a9c, 0x483df7a0))]
  for key, count, want in cases:
    np.testing.assert_array_equal(np.asarray(fn(u32(*key), u32(*count))), np.array(want, np.uint32))
  if utils.unroll_threefry_on_cpu():
    hlo = fn.lower(u32(0, 0), u32(0, 0)).as_text()
    assert 'while' not in hlo


def test_importing_modules_changes_nothing_global():
  """Importing the library leaves XLA_FLAGS, JAX's CPU lowerings and the log's filters as they
  were (`utils.configure_cpu` and `outputs.tee_logging` are the explicit steps)."""
  code = ('import os; before = os.environ.get("XLA_FLAGS"); '
          'from jax._src.interpreters import mlir; from jax._src.random import threefry2x32 as t; '
          'rule = lambda: mlir._platform_specific_lowerings["cpu"].get(t.threefry2x32_p); '
          'before_rule = rule(); '
          'from absl import logging; import logging as pylogging; '
          'filters = lambda: (list(logging.get_absl_logger().filters), '
          '                   list(pylogging.getLogger("asyncio").filters)); '
          'before_filters = filters(); '
          'import sde_lib, losses, sampling, run_lib, modes, evaluation, utils, foreign.load; '
          'import checkpointing, outputs; '
          'assert os.environ.get("XLA_FLAGS") == before, os.environ.get("XLA_FLAGS"); '
          'assert filters() == before_filters, filters(); '
          'assert rule() is before_rule; print("ok")')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env, check=False)
  assert out.stdout.strip().endswith('ok'), out.stderr[-2000:]


def test_progress_reports_rate_and_eta_or_only_the_rate_without_a_total(monkeypatch):
  clock = iter([0., 10., 20., 30.])
  monkeypatch.setattr(utils.time, 'time', lambda: next(clock))
  known = utils.Progress('image', 0, 100)                   # t = 0
  assert known.line(20) == 'image 20/100: 2.00/s, ETA 0:00:40'   # t = 10: 20 in 10 s, 80 left
  unknown = utils.Progress('image', 0, None)                 # t = 20
  assert unknown.line(50) == 'image 50: 5.00/s'              # t = 30


def test_sampling_setup_reads_the_batch_and_the_width_the_channel_multipliers_reach():
  """The quickstart (nf 32, ch_mult (1, 2)) is narrow enough for YNNPACK's convolutions, EDM's
  CIFAR-10 DDPM++ (128 x 2) is not."""
  from configs.edm import cifar10_ddpmpp  # pylint: disable=import-outside-toplevel
  from configs.quickstart import digits  # pylint: disable=import-outside-toplevel
  quick, edm = digits.get_config(), cifar10_ddpmpp.get_config()
  assert utils.sampling_setup(quick) == (quick.eval.batch_size, 64)
  assert utils.sampling_setup(edm) == (edm.eval.batch_size, 256)
  assert 64 == utils.YNN_CONVOLUTION_CHANNELS < 256
