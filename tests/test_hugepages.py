"""hugepages.py: when an entry point restarts itself with glibc's huge pages and kept heap blocks,
and that the restart keeps the interpreter, its options and the arguments, runs once, gives large
blocks huge pages and keeps them after `free` (a real malloc counted by the kernel's page-fault
counter)."""
import os
import subprocess
import sys

import pytest

import hugepages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX, GLIBC = 'linux', (2, 36)


KEEP = ':'.join(hugepages.KEEP)


@pytest.mark.parametrize('environ, thp, glibc, platform, want', [
    ({}, 'madvise', GLIBC, LINUX, 'glibc.malloc.hugetlb=1:' + KEEP),
    ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=1'}, 'madvise', GLIBC, LINUX,
     'glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1:' + KEEP),         # the user's kept
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'madvise', GLIBC, LINUX,
     'glibc.malloc.hugetlb=0:' + KEEP),                                  # the user's wins
    ({'GLIBC_TUNABLES': 'glibc.malloc.mmap_max=9'}, 'madvise', GLIBC, LINUX,
     'glibc.malloc.mmap_max=9:glibc.malloc.hugetlb=1:' + hugepages.KEEP[1]),
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1:' + KEEP}, 'madvise', GLIBC, LINUX, None),  # done
    ({}, 'always', GLIBC, LINUX, KEEP),          # the kernel gives huge pages already
    ({}, 'never', GLIBC, LINUX, KEEP),
    ({}, '', GLIBC, LINUX, KEEP),                # no THP file
    ({'GLIBC_TUNABLES': KEEP}, 'never', GLIBC, LINUX, None),
    ({}, 'madvise', (2, 34), LINUX, None),       # the hugetlb tunable came in glibc 2.35
    ({}, 'madvise', None, LINUX, None),          # musl
    ({}, 'madvise', GLIBC, 'darwin', None),
])
def test_tunables_are_added_only_where_glibc_and_the_kernel_use_them(
    environ, thp, glibc, platform, want):
  assert hugepages.tunables_with_huge_pages(environ, thp, glibc, platform) == want


def test_the_kernel_mode_is_the_bracketed_word(tmp_path):
  path = tmp_path / 'enabled'
  path.write_text('always [madvise] never\n')
  assert hugepages._thp_mode(str(path)) == 'madvise'  # pylint: disable=protected-access
  assert hugepages._thp_mode(str(tmp_path / 'missing')) == ''  # pylint: disable=protected-access


SCRIPT = """
import ctypes, os, resource, sys
sys.path.insert(0, {root!r})
import hugepages
print('start', os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:], sys.flags.optimize, flush=True)
hugepages.reexec_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(ctypes.c_size_t(size))
ctypes.memset(block, 1, size)
print('faults', resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
libc.free(ctypes.c_void_p(block))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(ctypes.c_size_t(size))   # the next call's temporaries
ctypes.memset(block, 2, size)
print('again', resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print('peer', hugepages.peer_environ().get('GLIBC_TUNABLES', '<unset>'))
"""


def _run(tmp_path, env):
  script = tmp_path / 'entry.py'
  script.write_text(SCRIPT.format(root=ROOT))
  out = subprocess.run([sys.executable, '-O', str(script), 'a b', '--x=1'], env=env, check=True,
                       stdout=subprocess.PIPE, text=True, timeout=60).stdout.splitlines()
  return out, (int(out[-3].split()[1]), int(out[-2].split()[1])), out[-1].split(' ', 1)[1]


def test_an_entry_point_restarts_once_with_huge_pages_and_the_same_command(tmp_path):
  # pylint: disable=protected-access
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', 'SCOREFLOW_ADDED_HUGETLB')}
  want = hugepages.tunables_with_huge_pages(env, hugepages._thp_mode(),
                                            hugepages._glibc_version(), sys.platform)
  out, faults, peer = _run(tmp_path, env)
  starts = [line for line in out if line.startswith('start')]
  if want is None:                               # this machine: nothing to gain, no restart
    assert len(starts) == 1, out
    return
  assert starts == ["start  ['a b', '--x=1'] 1", f"start {want} ['a b', '--x=1'] 1"], out
  if 'hugetlb=1' in want:
    assert faults[0] < 64 * 256 // 8, faults     # 16,384 in 4 KiB pages; ~550 measured here
  assert faults[1] < 64, faults                  # the block kept: no page zeroed again
  assert peer == '<unset>'                       # a peer gets the environment the user started
  _, faults_off, _ = _run(tmp_path, dict(env, GLIBC_TUNABLES='glibc.malloc.hugetlb=0'))
  assert faults_off[0] > 64 * 256 - 64, faults_off   # the user's own setting wins: 4 KiB pages
  assert faults_off[1] < 64, faults_off
  _, faults_user, _ = _run(tmp_path, dict(env, GLIBC_TUNABLES='glibc.malloc.mmap_max=65536'))
  assert faults_user[1] >= 32, faults_user       # the user's mmap_max wins: mapped afresh


def test_a_restart_that_cannot_exec_runs_on_as_it_is(monkeypatch):
  monkeypatch.setattr(hugepages, '_thp_mode', lambda: 'madvise')
  monkeypatch.setattr(hugepages, '_glibc_version', lambda: GLIBC)
  monkeypatch.setattr(sys, 'platform', LINUX)
  monkeypatch.delenv('GLIBC_TUNABLES', raising=False)
  calls = []

  def refuse(*args):
    calls.append(args)
    raise PermissionError('exec refused')
  monkeypatch.setattr(os, 'execve', refuse)
  hugepages.reexec_with_huge_pages()
  assert len(calls) == 1 and calls[0][2]['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1:' + KEEP
  assert 'GLIBC_TUNABLES' not in os.environ
