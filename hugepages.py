"""Huge pages for the process's large buffers, kept between calls: glibc's malloc tunables.

XLA:CPU allocates each call's temporaries as one block (117 MiB for EDM's small DDPM++ train step
at batch 8). glibc maps a block that size with `mmap` and unmaps it after the call, so the kernel
faults it in and zeroes it again on every call: one 4 KiB page at a time where the kernel gives
huge pages only to memory that asks for them (`/sys/kernel/mm/transparent_hugepage/enabled` =
'madvise', the default of Debian and Ubuntu kernels), 30,000 page faults per train step. Two
remedies, as glibc tunables — read once, when the process starts — so an entry point re-executes
itself with them (`reexec_with_huge_pages`, first thing, before any work):
- `glibc.malloc.hugetlb=1` (glibc ≥ 2.35; THP 'madvise' only): glibc asks for huge pages on its
  mappings. 2-core AMD EPYC: 380 faults per train step, the quickstart's training 15–25% more
  steps per second, the same numbers.
- `glibc.malloc.mmap_max=0` and a 1 TiB `glibc.malloc.trim_threshold`: the block comes from the
  heap and stays there after the call, so the next call finds it faulted in already. It works
  for blocks the main thread allocates (`utils.run_cpu_calls_inline`; other threads' arenas
  still map large blocks afresh). Memory freed is kept for reuse, not returned to the system.
  2-core AMD EPYC Zen 5: 0 faults per train step instead of ~145 (each zeroing a 2 MiB page),
  the step 67–82 → 63–66 ms (docs/performance.md).

A tunable the user set (`GLIBC_TUNABLES=glibc.malloc.hugetlb=0` turns huge pages off) is left
alone, as is any other C library and any other OS. Importing this module changes nothing; it
uses only the standard library, so an entry point can call it before importing anything heavy.
"""
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb'
KEEP = ('glibc.malloc.mmap_max=0', 'glibc.malloc.trim_threshold=1099511627776')
_THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'
# Marks our addition, so that peer processes get the environment the user started (peer_environ).
_ADDED = 'SCOREFLOW_ADDED_HUGETLB'


def _thp_mode(path=_THP_MODE):
  """The kernel's transparent-huge-page mode ('always' | 'madvise' | 'never'), '' if unknown."""
  try:
    with open(path, encoding='ascii') as f:
      text = f.read()
  except OSError:
    return ''
  return text.split('[', 1)[1].split(']', 1)[0] if '[' in text else ''


def _glibc_version():
  """(major, minor) of the C library if it is glibc, else None."""
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    return tuple(int(v) for v in version.split('.')[:2]) if name == 'glibc' else None
  except (ValueError, OSError, AttributeError, TypeError):
    return None


def tunables_with_huge_pages(environ, thp_mode, glibc, platform):
  """The `GLIBC_TUNABLES` value that adds huge pages (THP 'madvise' only) and the heap's keeping
  of large blocks (`KEEP`) to `environ`'s, or None where nothing is to add: not Linux with
  glibc ≥ 2.35, or every one of them set already (by the user, or by the restart)."""
  current = environ.get('GLIBC_TUNABLES', '')
  if not platform.startswith('linux') or glibc is None or glibc < (2, 35):
    return None
  present = {t.split('=', 1)[0] for t in current.split(':')}
  wanted = ((TUNABLE + '=1',) if thp_mode == 'madvise' else ()) + KEEP
  added = [t for t in wanted if t.split('=', 1)[0] not in present]
  return ':'.join(filter(None, [current] + added)) if added else None


def reexec_with_huge_pages():
  """Restarts this process (same interpreter, options and arguments, same pid) with the tunables
  `tunables_with_huge_pages` adds, if any; otherwise returns. Call it first."""
  tunables = tunables_with_huge_pages(os.environ, _thp_mode(), _glibc_version(), sys.platform)
  if tunables is None or not sys.executable:
    return
  argv = getattr(sys, 'orig_argv', None) or [sys.executable] + sys.argv   # options included
  env = dict(os.environ, GLIBC_TUNABLES=tunables)
  env[_ADDED] = os.environ.get('GLIBC_TUNABLES', '')   # the user's own value, restored for peers
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, env)
  except OSError:                                      # cannot restart: run as we are
    pass


def peer_environ():
  """This process's environment as the user started it: for timing another project's code
  (bench/), which its own users run without our tunable."""
  env = dict(os.environ)
  if _ADDED in env:
    original = env.pop(_ADDED)
    if original:
      env['GLIBC_TUNABLES'] = original
    else:
      env.pop('GLIBC_TUNABLES', None)
  return env
