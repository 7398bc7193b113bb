"""Transparent huge pages for the process's large buffers: glibc's `glibc.malloc.hugetlb=1`.

XLA:CPU allocates each call's temporaries as one block (117 MiB for EDM's small DDPM++ train step
at batch 8), which glibc maps with `mmap` and unmaps after the call. Where the kernel gives huge
pages only to memory that asks for them (`/sys/kernel/mm/transparent_hugepage/enabled` =
'madvise', the default of Debian and Ubuntu kernels), the block is faulted in one 4 KiB page at a
time on every call: 30,000 page faults per train step. glibc (≥ 2.35) asks for huge pages on its
mappings when the tunable `glibc.malloc.hugetlb=1` is set — read once, when the process starts —
so an entry point re-executes itself with it (`reexec_with_huge_pages`, first thing, before any
work). Measured on a 2-core AMD EPYC (docs/performance.md): 380 faults per train step, the
quickstart's training 15–25% more steps per second, the same numbers.

A `glibc.malloc.hugetlb` the user set (`GLIBC_TUNABLES=glibc.malloc.hugetlb=0` turns this off)
is left alone, as is any kernel whose setting is 'always' (huge pages already) or 'never', any
other C library and any other OS. Importing this module changes nothing; it uses only the
standard library, so an entry point can call it before importing anything heavy.
"""
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb'
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
  """The `GLIBC_TUNABLES` value that adds huge pages to `environ`'s, or None where not wanted:
  not Linux with glibc ≥ 2.35 and THP 'madvise', or a `glibc.malloc.hugetlb` already set."""
  current = environ.get('GLIBC_TUNABLES', '')
  if (not platform.startswith('linux') or glibc is None or glibc < (2, 35)
      or thp_mode != 'madvise'
      or any(t.split('=', 1)[0] == TUNABLE for t in current.split(':'))):
    return None
  return ':'.join(filter(None, [current, TUNABLE + '=1']))


def reexec_with_huge_pages():
  """Restarts this process (same interpreter, options and arguments, same pid) with glibc's huge
  pages when `tunables_with_huge_pages` wants them; otherwise returns. Call it first."""
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
