"""Foreign files are data: hostile pickles fed to every loader run nothing and name the global.

Each hostile file tries to create a marker file when unpickled (os.system, builtins.eval, a
persistence object whose embedded source would run, the same inside a torch.save zip and inside
an EDM-style embedded storage); builtins.__import__ is tried too. Every loader must refuse it with
an error that names the offending `module.name`, and the marker must not exist afterwards.
"""
import builtins
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import evaluation
from foreign import edm
from foreign import load as foreign_load
from foreign import torch_pickle
from foreign import score_sde

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Reduce:
  def __init__(self, fn, args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


def _dumps_with_fake_global(obj, module_name, name):
  """pickle.dumps(obj) where `obj` is built by `make(fn)` and fn poses as module_name.name."""
  def fn(*args):
    return args
  fn.__module__, fn.__qualname__ = module_name, name
  parts = module_name.split('.')
  saved = {m: sys.modules.get(m) for m in ('.'.join(parts[:i + 1]) for i in range(len(parts)))}
  for m in saved:
    sys.modules[m] = type(sys)(m)
  setattr(sys.modules[module_name], name, fn)
  try:
    return pickle.dumps(obj(fn))
  finally:
    for m, old in saved.items():
      if old is None:
        del sys.modules[m]
      else:
        sys.modules[m] = old


def _persistence_bytes(marker):
  """An EDM persistence object whose `module_src` would create the marker if executed."""
  meta = dict(type='class', version=6, class_name='EDMPrecond',
              module_src=f'import os\nos.system("touch {marker}")\n', state={'_modules': {}})
  return _dumps_with_fake_global(lambda fn: {'ema': _Reduce(fn, (meta,))},
                                 'torch_utils.persistence', '_reconstruct_persistent_obj')


def _zip(data_pkl):
  """A torch.save-style zip archive holding `data_pkl` as archive/data.pkl."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as zf:
    zf.writestr('archive/data.pkl', data_pkl)
    zf.writestr('archive/version', '3\n')
  return buf.getvalue()


def _hostile_files(tmp_path):
  """{name: (bytes, the global the error must name or None)}; all aim at tmp_path/marker."""
  marker = tmp_path / 'marker'
  system = pickle.dumps(_Reduce(os.system, (f'touch {marker}',)))
  evil_eval = pickle.dumps({'ema': _Reduce(builtins.eval, (f'open({str(marker)!r}, "w").close()',))})
  imp = pickle.dumps(_Reduce(builtins.__import__, ('os',)))
  embedded = _dumps_with_fake_global(lambda fn: {'ema': _Reduce(fn, (system,))},
                                     'torch.storage', '_load_from_bytes')
  return marker, {
      'os_system.pkl': (system, f'{os.system.__module__}.system'),
      'eval.pkl': (evil_eval, 'builtins.eval'),
      'import.pkl': (imp, 'builtins.__import__'),
      'zip_os_system.pt': (_zip(system), f'{os.system.__module__}.system'),
      'embedded_storage.pkl': (embedded, f'{os.system.__module__}.system'),
      'persistence_source.pkl': (_persistence_bytes(marker), None),
  }


@pytest.fixture(name='hostile')
def _hostile(tmp_path):
  marker, cases = _hostile_files(tmp_path)
  paths = {}
  for name, (data, culprit) in cases.items():
    (tmp_path / name).write_bytes(data)
    paths[name] = (str(tmp_path / name), culprit)
  return marker, paths


def _tiny_config():
  from configs.edm import cifar10_ddpmpp  # pylint: disable=import-outside-toplevel
  return cifar10_ddpmpp.get_config()


LOADERS = {
    'torch_pickle.read': torch_pickle.read,
    'foreign.load': lambda p: foreign_load.load(p, _tiny_config()),
    'evaluation.load_inception': evaluation.load_inception,
    'score_sde.load_pytorch_checkpoint': score_sde.load_pytorch_checkpoint,
    'foreign.edm.read': edm.read,
}


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_hostile_pickles_run_nothing(hostile, loader):
  marker, paths = hostile
  for name, (path, culprit) in paths.items():
    try:
      LOADERS[loader](path)
      error = None
    except Exception as err:  # pylint: disable=broad-except
      error = err
    assert not marker.exists(), f'{loader} ran code from {name}'
    if culprit:
      assert isinstance(error, torch_pickle.UnsafePickleError), (name, error)
      assert culprit in str(error) and path in str(error), (name, str(error))
    else:     # the persistence object is data: only the raw readers accept it
      assert (error is None) == (loader in ('torch_pickle.read', 'foreign.edm.read')), (name, error)


def test_persistence_source_is_read_as_data(hostile):
  """EDM's class source is dropped unread: the object comes back as its class name and state."""
  marker, paths = hostile
  obj = torch_pickle.read(paths['persistence_source.pkl'][0])
  assert isinstance(obj['ema'], torch_pickle.Persistent)
  assert obj['ema'].class_name == 'EDMPrecond' and not marker.exists()
  with pytest.raises(ValueError, match='network None inside EDMPrecond'):
    foreign_load.load(paths['persistence_source.pkl'][0], _tiny_config())
  assert not marker.exists()


def test_main_checkpoint_refuses_hostile_file_before_touching_workdir(hostile, tmp_path):
  marker, paths = hostile
  workdir = tmp_path / 'run'
  cmd = [sys.executable, 'main.py', '--config=configs/quickstart/digits.py', '--mode=sample',
         f'--workdir={workdir}', f'--checkpoint={paths["os_system.pkl"][0]}']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0 and not marker.exists() and not workdir.exists()
  last = out.stderr.strip().splitlines()[-1]
  assert 'UnsafePickleError' in last and 'system' in last, out.stderr[-2000:]


def test_plain_containers_and_numpy_round_trip():
  """What the allow-list lets through rebuilds exactly (protocols 2 and 5, NumPy arrays and
  scalars, sets, OrderedDicts)."""
  import collections  # pylint: disable=import-outside-toplevel
  obj = {'a': np.arange(12, dtype=np.float32).reshape(3, 4), 'b': np.float64(2.5), 'c': {1, 2},
         'd': collections.OrderedDict(x=[1, (2, 3)]), 'e': b'\x00\xff'}
  for protocol in (2, 4, 5):
    back = torch_pickle.read(io.BytesIO(pickle.dumps(obj, protocol=protocol)), 'mem')
    np.testing.assert_array_equal(back['a'], obj['a'])
    assert back['b'] == 2.5 and back['c'] == {1, 2} and back['d'] == obj['d'] and back['e'] == obj['e']


def test_object_arrays_are_refused():
  data = pickle.dumps(np.array([None, 1], dtype=object))
  with pytest.raises(pickle.UnpicklingError, match='object'):
    torch_pickle.read(io.BytesIO(data), 'mem')


@pytest.mark.parametrize('name', ['zip.pth', 'legacy.pth'])
def test_both_torch_save_formats_read_without_torch(name):
  """Files torch itself wrote (tools/make_torch_format_fixtures.py): dtypes, views and strides."""
  state = torch_pickle.read(os.path.join(ROOT, 'tests', 'fixtures', 'torch_formats', name))
  assert list(state) == ['weight', 'half', 'view', 'transposed']
  np.testing.assert_array_equal(state['weight'], np.arange(6.).reshape(2, 3))
  assert state['half'].dtype == np.float16 and state['view'].tolist() == [2, 4, 6]
  np.testing.assert_array_equal(state['transposed'], np.arange(6.).reshape(2, 3).T)
