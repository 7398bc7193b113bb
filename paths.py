"""One path layer for every file scoreflow reads or writes: local paths and object-store URIs
(`gs://bucket/run`, `s3://...`) through the same few functions, on etils.epath, the path layer
orbax already uses for checkpoints, so checkpoints and every other file share one client.

Backend: `configure()` (main.py and tests/conftest.py call it first) makes epath use fsspec for
URIs (gcsfs for gs://, s3fs for s3://) instead of tf.io.gfile, unless EPATH_USE_TF is set:
gcsfs honours STORAGE_EMULATOR_HOST, so the tests run the very client a run uses against a
local GCS emulator (tf.io.gfile's GCS client has its endpoint compiled in), and TensorFlow 2.21
has no s3:// file system at all.

Object stores have no folders, no append and no rename. So `makedirs` does nothing there (gcsfs
would create a missing *bucket*), a write uploads one whole object, which is atomic (a reader
sees the old object or the new one), and files that grow (logs, stats.jsonl, TensorBoard events)
are written in a local staging folder (`staged`) and uploaded whole by `sync`: at most every
SYNC_INTERVAL_S seconds, at every checkpoint and at exit. Local writes go to a temporary file
renamed over the target, so they are atomic too; a local folder is its own staging folder.
"""
import atexit
import builtins
import io
import logging as pylogging
import os
import posixpath
import socket
import tempfile
import threading
import time

from absl import logging
from etils import epath
import numpy as np

CHECK_TIMEOUT_S = 10.     # `check_writable` gives up after this long (clients retry for ~30 s)
SYNC_INTERVAL_S = 60.     # `sync` uploads staged files at most this often (unless forced)
_STAGED = {}              # remote folder -> {'local': staging folder, 'sent': {name: (size, mtime)}}
_LAST_SYNC = [0.]


class PathError(OSError):
  """A path that cannot be written; the message is one line with the path and what to check."""


def configure():
  """Remote paths through fsspec (gcsfs / s3fs) in this process, orbax's included (see the module
  docstring); EPATH_USE_TF=1 keeps tf.io.gfile. Call before the first path operation."""
  os.environ.setdefault('EPATH_USE_TF', 'false')
  pylogging.getLogger('fsspec').setLevel(pylogging.WARNING)   # a line per file opened


def is_remote(path):
  return '://' in str(path)


def join(*parts):
  return (posixpath if is_remote(parts[0]) else os.path).join(*map(str, parts))


def exists(path):
  return epath.Path(path).exists()


def isdir(path):
  return epath.Path(path).is_dir()


def isfile(path):
  return exists(path) and not isdir(path)


def makedirs(path):
  """Create a local folder and its parents; nothing for a URI (objects need no folders)."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)


def open(path, mode='r'):  # pylint: disable=redefined-builtin
  """A file object for 'r', 'rb', 'w' or 'wb' (a remote 'w' uploads on close). Append is refused
  for a URI: gcsfs would silently overwrite the object (use `staged`)."""
  if 'a' in mode and is_remote(path):
    raise ValueError(f'{path}: object stores cannot append; write in paths.staged(...) instead')
  return epath.Path(path).open(mode)


def read_bytes(path):
  with open(path, 'rb') as f:
    return f.read()


def read_text(path):
  return read_bytes(path).decode('utf-8')


def write_bytes(path, data):
  """Write `data` atomically: one object upload, or a local temporary file renamed over `path`."""
  if is_remote(path):
    with open(path, 'wb') as f:
      f.write(data)
    return
  makedirs(os.path.dirname(os.path.abspath(path)))
  tmp = f'{path}.{os.getpid()}.{threading.get_ident()}.tmp'
  try:
    with builtins.open(tmp, 'wb') as f:
      f.write(data)
  except OSError as err:           # a full disk: no partial file left, `path` untouched
    if os.path.exists(tmp):
      os.remove(tmp)
    err.filename = err.filename or path
    raise
  os.replace(tmp, path)


def write_text(path, text):
  write_bytes(path, text.encode('utf-8'))


def save_npz(path, **arrays):
  """`np.savez` to `path`, atomically (`write_bytes`)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def load_npz(path):
  """{name: array} of an `.npz` file (no pickles)."""
  with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def save_png(path, pixels):
  """uint8 [H, W] or [H, W, C] as a PNG, atomically."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  write_bytes(path, buffer.getvalue())


def remove(path):
  epath.Path(path).unlink()


def _bare(path):
  """'gs://b/x/' -> 'b/x' (gcsfs's walk drops the scheme)."""
  return str(path).split('://', 1)[-1].rstrip('/')


def list_files(root):
  """Sorted names ('/'-separated, relative to `root`) of every file under the folder `root`."""
  if not is_remote(root):
    return sorted(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, '/')
                  for folder, _, files in os.walk(root) for f in files)
  top, names = _bare(root), []
  for folder, _, files in epath.Path(root).walk():
    rel = _bare(folder)[len(top):].strip('/')
    names += [f'{rel}/{f}' if rel else f for f in files]
  return sorted(names)


def check_writable(path, timeout_s=CHECK_TIMEOUT_S):
  """Make the folder `path` and write, read back and delete a small file in it, or raise
  PathError (one line: the path, the cause, what to check) within about `timeout_s` seconds."""
  probe = join(path, f'.write-check-{socket.gethostname()}-{os.getpid()}')
  failure = []

  def attempt():
    try:
      makedirs(path)
      write_bytes(probe, b'ok')
      if read_bytes(probe) != b'ok':
        raise OSError('the file read back differs from the one written')
      remove(probe)
    except Exception as err:  # pylint: disable=broad-except   # any client error is reported
      failure.append(err)
  worker = threading.Thread(target=attempt, daemon=True)   # a hung client cannot block the exit
  worker.start()
  worker.join(timeout_s)
  if not worker.is_alive() and not failure:
    return
  cause = (f'{type(failure[0]).__name__}: {" ".join(str(failure[0]).split())[:300]}' if failure
           else f'no answer within {timeout_s:.0f} s')
  fix = ('check that the bucket exists and that this machine\'s credentials may write to it '
         '(gcloud auth application-default login, GOOGLE_APPLICATION_CREDENTIALS'
         + (f', STORAGE_EMULATOR_HOST={os.environ["STORAGE_EMULATOR_HOST"]}'
            if os.environ.get('STORAGE_EMULATOR_HOST') else '') + ')'
         if is_remote(path) else 'check the path and its permissions')
  raise PathError(f'cannot write to {path} ({cause}); {fix}')


def precheck(workdir):
  """`check_writable(workdir)`, or exit with its one line (main.py, before anything is written)."""
  try:
    check_writable(workdir)
  except PathError as err:
    raise SystemExit(f'FATAL --workdir: {err}') from None


def staged(folder, carry=()):
  """The local folder to write the growing files of `folder` in: `folder` itself when local; for a
  URI a staging folder (one per URI and process) that `sync` uploads, first given the remote
  copies of the files named in `carry` (those a resumed run appends to)."""
  if not is_remote(folder):
    makedirs(folder)
    return folder
  if folder not in _STAGED:
    if not _STAGED:
      atexit.register(sync, force=True)
    _STAGED[folder] = {'local': tempfile.mkdtemp(prefix='scoreflow-staged-'), 'sent': {}}
  staging = _STAGED[folder]
  for name in carry:
    local = os.path.join(staging['local'], name)
    if not os.path.exists(local) and exists(join(folder, name)):
      with builtins.open(local, 'wb') as f:
        f.write(read_bytes(join(folder, name)))
      staging['sent'][name] = _version(local)
  return staging['local']


def _version(local):
  stat = os.stat(local)
  return stat.st_size, stat.st_mtime_ns


def sync(force=False):
  """Upload every staged file that changed since its last upload, whole; unless `force`, only if
  SYNC_INTERVAL_S seconds have passed since the last sync. A failed upload is logged and tried
  again at the next sync (the local copy is kept)."""
  if not _STAGED or (not force and time.monotonic() - _LAST_SYNC[0] < SYNC_INTERVAL_S):
    return
  _LAST_SYNC[0] = time.monotonic()
  for folder, staging in _STAGED.items():
    for name in list_files(staging['local']):
      local = os.path.join(staging['local'], name)
      version = _version(local)
      if staging['sent'].get(name) == version:
        continue
      try:
        with builtins.open(local, 'rb') as f:
          write_bytes(join(folder, name), f.read())
        staging['sent'][name] = version
      except Exception as err:  # pylint: disable=broad-except   # retried at the next sync
        logging.warning('cannot upload %s to %s (%s: %s); kept in %s, retried at the next sync',
                        name, folder, type(err).__name__, err, staging['local'])
