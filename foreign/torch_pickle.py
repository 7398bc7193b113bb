"""Read PyTorch files and NVlabs/edm pickles as data: no torch, and no code from the file ever runs.

A pickle is a program: `pickle.load` calls whatever callables the file names (`os.system`,
`builtins.eval`, EDM's `torch_utils.persistence`, which `exec`s source code stored in the file).
`read` unpickles with an allow-list: each global a file may name maps to a function or class of
*this* module that rebuilds plain data, and any other global stops the read with
`UnsafePickleError` naming it, before anything of it is called.

What comes back:
- tensors and parameters -> NumPy arrays (bfloat16 through ml_dtypes), rebuilt from their
  storages, offsets and strides (`torch._utils._rebuild_tensor_v2`'s arguments);
- storages of a `torch.save` zip archive (`<archive>/data/<key>`, named by the persistent ids
  `('storage', <torch.XStorage>, key, location, numel)`), and EDM's storages pickled as nested
  `torch.save` archives in bytes (`torch.storage._load_from_bytes`) -> read from the zip, as data;
- `torch_utils.persistence` objects (EDM's networks, losses, augment pipes) -> `Persistent`
  (class name, the nn.Module `__dict__` as `state`); their embedded `module_src` is dropped
  unread; `nn.ModuleDict` / `ModuleList` / `Sequential` -> `Module`;
- `collections.OrderedDict`, `dnnlib.EasyDict` -> dicts; NumPy scalars, dtypes and arrays; sets.

Formats: `torch.save` zip archives (PyTorch >= 1.6: `.pt`, `.pth`, EDM's `training-state-*.pt`)
and plain pickles (EDM's `network-snapshot-*.pkl`, StyleGAN-style `.pkl`s).
"""
import collections
import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """The file names a global outside the allow-list (it could run code); nothing of it ran."""


class Persistent:
  """An object pickled by `torch_utils.persistence` (EDM), as data: its class name and state."""

  def __init__(self, class_name, state):
    self.class_name = class_name
    self.state = state

  def __repr__(self):
    return f'Persistent({self.class_name})'


class Module:
  """A torch.nn container module (ModuleDict, ModuleList, Sequential) as data."""

  def __init__(self, *args):
    del args
    self.class_name = type(self).__name__
    self.state = {}

  def __setstate__(self, state):
    self.state = dict(state)


class Storage:
  """A typed storage: its raw little-endian bytes and element type."""

  def __init__(self, buffer, dtype):
    self.buffer, self.dtype = buffer, np.dtype(dtype)

  def array(self):
    return np.frombuffer(self.buffer, self.dtype)


class _StorageType:
  """Stands for `torch.FloatStorage` & co. in a persistent id: only its element type is used."""

  def __init__(self, dtype):
    self.dtype = dtype


_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_, 'UntypedStorage': np.uint8,
}
_TORCH_DTYPES = ('float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8',
                 'uint8', 'bool')


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """`torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` -> ndarray."""
  del unused
  if storage is None:   # first pass over a pre-1.6 torch.save file (see _read_legacy)
    return None
  if not isinstance(storage, Storage):
    raise pickle.UnpicklingError(f'a tensor is built from {type(storage).__name__}, not a storage')
  flat = storage.array()
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if 0 in size:
    return np.zeros(size, flat.dtype)
  last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
  if offset < 0 or min(stride, default=0) < 0 or last >= len(flat):
    raise pickle.UnpicklingError(f'a tensor of size {size}, stride {stride} and offset {offset} '
                                 f'overruns its storage of {len(flat)} elements')
  item = flat.itemsize
  view = np.lib.stride_tricks.as_strided(flat[offset:], size, [s * item for s in stride])
  return np.array(view)   # own, contiguous memory


def _rebuild_parameter(data, *unused):
  """`torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])` -> the data."""
  del unused
  return data


def _reconstruct_persistent(meta):
  """EDM's `_reconstruct_persistent_obj(meta)`, as data: `meta['module_src']` is never read."""
  if not isinstance(meta, dict) or meta.get('type') != 'class':
    raise pickle.UnpicklingError('a torch_utils.persistence object without its class meta')
  return Persistent(str(meta.get('class_name')), dict(meta.get('state') or {}))


def _numpy_scalar(dtype, data=None):
  """`numpy.core.multiarray.scalar(dtype, bytes)` without calling NumPy's pickle helpers."""
  dtype = np.dtype(dtype)
  if dtype.hasobject:
    raise pickle.UnpicklingError('an object-dtype NumPy scalar')
  return np.frombuffer(data, dtype, count=1)[0]


def _numpy_dtype(spec, align=False, copy=False):
  del align, copy
  dtype = np.dtype(spec)
  if dtype.hasobject:
    raise pickle.UnpicklingError('an object dtype')
  return dtype


def _numpy_reconstruct(cls, shape, dtype):
  del cls
  return np.ndarray.__new__(np.ndarray, shape, _numpy_dtype(dtype))


def _latin1_bytes(text, encoding='latin1'):
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError('_codecs.encode outside its protocol-2 use for bytes')
  return text.encode('latin1')


def _numpy_frombuffer(buffer, dtype, shape, order='C'):
  """`numpy._core.numeric._frombuffer`: how pickle protocol 5 stores an ndarray."""
  return np.frombuffer(buffer, _numpy_dtype(dtype)).reshape(shape, order=order).copy()


def _module_class(name):
  return type(name, (Module,), {})


def _allowed():
  table = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('builtins', 'set'): set, ('builtins', 'frozenset'): frozenset,
      ('_codecs', 'encode'): _latin1_bytes,   # how protocol 2 pickles bytes
      ('__builtin__', 'set'): set, ('__builtin__', 'frozenset'): frozenset,   # protocol 2
      ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
      ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
      ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
      ('torch.storage', '_load_from_bytes'): _load_from_bytes,
      ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent,
      ('dnnlib.util', 'EasyDict'): dict, ('dnnlib', 'EasyDict'): dict,
  }
  for np_module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    table[(np_module, 'scalar')] = _numpy_scalar
    table[(np_module, '_reconstruct')] = _numpy_reconstruct
  for np_module in ('numpy.core.numeric', 'numpy._core.numeric'):
    table[(np_module, '_frombuffer')] = _numpy_frombuffer
  table[('numpy', 'dtype')] = _numpy_dtype
  table[('numpy', 'ndarray')] = np.ndarray
  for name in ('ModuleDict', 'ModuleList', 'Sequential'):
    table[('torch.nn.modules.container', name)] = _module_class(name)
  for name, dtype in _STORAGE_DTYPES.items():
    table[('torch', name)] = _StorageType(dtype)
    table[('torch.storage', name)] = _StorageType(dtype)
  for name in _TORCH_DTYPES:
    table[('torch', name)] = f'torch.{name}'
  table[('torch', 'device')] = str
  return table



ALLOWED = {}   # filled below, once the readers are defined


class _Unpickler(pickle.Unpickler):
  """Allow-list unpickler; `archive` (a ZipFile and its root) serves persistent storage ids."""

  def __init__(self, file, source, archive=None, encoding='ASCII'):
    super().__init__(file, encoding=encoding)
    self._source, self._archive = source, archive

  def find_class(self, module, name):
    try:
      found = ALLOWED[(module, name)]
      if found is _load_from_bytes:        # nested archives report the outer file
        return lambda data: _load_from_bytes(data, f'{self._source} (an embedded storage)')
      return found
    except (KeyError, TypeError):
      raise UnsafePickleError(
          f'{self._source}: refusing to load the global {module}.{name} (only tensors, storages, '
          f'containers and EDM network data are allowed; nothing was run). The file is not a '
          f'checkpoint this reader knows, or it was crafted to run code.') from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ('storage', b'storage')
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f'{self._source}: unknown persistent id {str(pid)[:80]}')
    _, storage_type, key, _, numel = pid[:5]
    dtype = np.dtype(storage_type.dtype)
    if isinstance(self._archive, dict):   # pre-1.6 torch.save: the storages follow the pickle
      return _legacy_storage(self._archive, key, dtype, pid[5] if len(pid) > 5 else None)
    if self._archive is None:
      raise pickle.UnpicklingError(f'{self._source}: a persistent id outside a torch.save file')
    zf, root = self._archive
    buffer = zf.read(f'{root}data/{key}')
    if len(buffer) < int(numel) * dtype.itemsize:
      raise pickle.UnpicklingError(f'{self._source}: storage {key} is truncated')
    return Storage(buffer, dtype)


def _legacy_storage(legacy, key, dtype, view):
  """A storage of a pre-1.6 torch.save file (None in the first pass, which records dtypes)."""
  dtypes, data = legacy['dtypes'], legacy['data']
  if key not in data:
    dtypes[key] = dtype
    return None
  buffer = data[key]
  if view is not None:
    _, offset, size = view
    buffer = buffer[offset * dtype.itemsize:(offset + size) * dtype.itemsize]
  return Storage(buffer, dtype)


def _read_zip(data, source):
  """Unpickle the `data.pkl` of a torch.save zip archive (bytes or a file object)."""
  with zipfile.ZipFile(data if not isinstance(data, bytes) else io.BytesIO(data)) as zf:
    names = [n for n in zf.namelist() if n.endswith('data.pkl') and n.count('/') == 1]
    if len(names) != 1:
      raise pickle.UnpicklingError(f'{source}: a zip without one <archive>/data.pkl: not a '
                                   f'torch.save file')
    root = names[0][:-len('data.pkl')]
    with zf.open(names[0]) as f:
      return _Unpickler(io.BytesIO(f.read()), source, (zf, root)).load()


def _load_from_bytes(data, source):
  """`torch.storage._load_from_bytes(b)`: b is a whole torch.save file of one storage (EDM's
  pickles hold each storage so, in the pre-1.6 format)."""
  if not isinstance(data, bytes):
    raise pickle.UnpicklingError(f'{source} is not bytes')
  is_zip = zipfile.is_zipfile(io.BytesIO(data))
  f = io.BytesIO(data)
  return _read_zip(f, source) if is_zip else _read_legacy(f, source)


_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c   # torch/serialization.py MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001
_LEGACY_HEAD = pickle.dumps(_LEGACY_MAGIC, protocol=2)[:-1]   # without STOP


def _read_legacy(f, source):
  """A pre-1.6 torch.save file: pickles of (magic, protocol, sys info, the object, storage keys),
  then each storage as an int64 element count and its raw bytes. The object is unpickled twice:
  once to find where the storages start, then with them."""
  head = [_Unpickler(f, source).load() for _ in range(3)]
  if head[0] != _LEGACY_MAGIC or head[1] != _LEGACY_PROTOCOL:
    raise pickle.UnpicklingError(f'{source}: not a torch.save file (bad magic number)')
  start, legacy = f.tell(), {'dtypes': {}, 'data': {}}
  _Unpickler(f, source, legacy).load()
  for key in _Unpickler(f, source).load():
    count = int(np.frombuffer(f.read(8), '<i8')[0])
    nbytes = count * legacy['dtypes'][key].itemsize
    legacy['data'][key] = f.read(nbytes)
    if len(legacy['data'][key]) != nbytes:
      raise pickle.UnpicklingError(f'{source}: storage {key} is truncated')
  end = f.tell()
  f.seek(start)
  obj = _Unpickler(f, source, legacy).load()
  f.seek(end)
  return obj


def read(path_or_file, source=None, encoding='ASCII'):
  """The object in a torch.save archive or a pickle, as data (see the module docstring);
  `encoding` reads a plain pickle's Python 2 strings as pickle.Unpickler's does ('bytes': bytes).

  Raises:
    UnsafePickleError: the file names a global outside the allow-list (nothing of it ran).
    pickle.UnpicklingError / zipfile.BadZipFile: a truncated or malformed file (pickle's own
      ValueError, EOFError, ... raised as UnpicklingError naming `source`).
  """
  source = source or str(path_or_file)
  if isinstance(path_or_file, (str, os.PathLike)):
    with open(path_or_file, 'rb') as f:
      return _read_file(f, source, encoding)
  return _read_file(path_or_file, source, encoding)


def _read_file(f, source, encoding='ASCII'):
  if zipfile.is_zipfile(f):
    f.seek(0)
    return _read_zip(f, source)
  f.seek(0)
  head = f.read(len(_LEGACY_HEAD))
  f.seek(0)
  try:
    if head == _LEGACY_HEAD:
      return _read_legacy(f, source)
    return _Unpickler(f, source, encoding=encoding).load()
  except pickle.UnpicklingError:
    raise
  except (ValueError, EOFError, IndexError, KeyError, TypeError) as err:   # pickle's opcodes
    raise pickle.UnpicklingError(f'{source}: not a pickle or torch.save file, or a damaged one '
                                 f'({type(err).__name__}: {err})') from None


ALLOWED.update(_allowed())


def module_tensors(obj, prefix='', groups=('_parameters', '_buffers')):
  """{dotted name: array} of an nn.Module read as data (`Persistent` / `Module`): its
  `_parameters` and `_buffers` and, recursively, those of its `_modules` (state_dict order;
  with groups=('_parameters',) the order of `module.parameters()`)."""
  state = obj.state
  out = {}
  for group in groups:
    for name, value in dict(state.get(group) or {}).items():
      if value is not None:
        out[prefix + name] = value
  for name, sub in dict(state.get('_modules') or {}).items():
    if sub is not None:
      out.update(module_tensors(sub, f'{prefix}{name}.', groups))
  return out


def init_kwargs(obj):
  """The constructor keyword arguments EDM's persistence stored (`_init_kwargs`), as a dict."""
  return dict(obj.state.get('_init_kwargs') or {})


def child(obj, name):
  """The sub-module `name` of a module read as data, or None."""
  return dict(obj.state.get('_modules') or {}).get(name)
