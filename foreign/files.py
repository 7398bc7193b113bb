"""A checkpoint given as a local path or a URL: `http(s)://`, `gs://` and `s3://` files are
downloaded once into a cache directory (NVlabs/edm's `--network=URL` habit; its dnnlib cache plays
this role); a gs:// / s3:// folder (an orbax step directory) is read in place.

Cache: `$SCOREFLOW_CACHE_DIR`, else `~/.cache/scoreflow`; a URL's file is
`<cache>/checkpoints/<sha1 of the URL>-<file name>`. Offline, a download fails within
`TIMEOUT_S` seconds with that path, so the file can be copied there by hand.
"""
import hashlib
import os
import shutil
import urllib.error
import urllib.request

import paths

TIMEOUT_S = 15


class CheckpointNotFoundError(FileNotFoundError):
  """A checkpoint path that does not exist or a URL that cannot be fetched (the message says how)."""


def cache_dir():
  return os.path.join(os.environ.get('SCOREFLOW_CACHE_DIR')
                      or os.path.join(os.path.expanduser('~'), '.cache', 'scoreflow'), 'checkpoints')


def cache_path(url):
  """Where the download of `url` is kept."""
  name = os.path.basename(url.split('?')[0].rstrip('/')) or 'checkpoint'
  return os.path.join(cache_dir(), f'{hashlib.sha1(url.encode()).hexdigest()[:16]}-{name}')


def is_url(path):
  return '://' in str(path) and not str(path).startswith('file://')


def local_file(path_or_url):
  """A local path for `path_or_url` (downloading a URL into the cache on first use).

  Raises:
    CheckpointNotFoundError: a missing local path, or a URL that could not be fetched (with the
      cache path to fill by hand).
  """
  path = str(path_or_url)
  if path.startswith('file://'):
    path = path[len('file://'):]
  if not is_url(path):
    if not os.path.exists(path):
      raise CheckpointNotFoundError(f'checkpoint {path!r} does not exist: pass an existing file or '
                                    f'directory, or an http(s):// / gs:// URL to --checkpoint')
    return path
  if not path.startswith(('http://', 'https://')) and paths.isdir(path):
    return path                 # an orbax step directory in a bucket: orbax reads it there
  target = cache_path(path)
  if os.path.exists(target):
    return target
  os.makedirs(os.path.dirname(target), exist_ok=True)
  tmp = f'{target}.part{os.getpid()}'
  try:
    _download(path, tmp)
  except Exception as err:  # pylint: disable=broad-except   # network, auth, missing object
    if os.path.exists(tmp):
      os.remove(tmp)
    raise CheckpointNotFoundError(
        f'cannot download {path} ({type(err).__name__}: {err}); offline, download it elsewhere '
        f'and copy it to {target}') from None
  with open(tmp, 'rb') as f:
    if f.read(64).lstrip().lower().startswith((b'<!doctype html', b'<html')):
      os.remove(tmp)
      raise CheckpointNotFoundError(
          f'{path} returned a web page, not a checkpoint (Google Drive and similar pages need a '
          f'download by hand): save the file and pass its local path, or copy it to {target}')
  os.replace(tmp, target)   # atomic: an interrupted download never looks complete
  return target


def _download(url, dest):
  if url.startswith(('gs://', 's3://')):
    with paths.open(url, 'rb') as source, open(dest, 'wb') as f:
      shutil.copyfileobj(source, f, length=1 << 20)
    return
  if not url.startswith(('http://', 'https://')):
    raise ValueError(f'unsupported URL scheme in {url!r} (http, https, gs, s3)')
  with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, 'wb') as f:
    shutil.copyfileobj(response, f, length=1 << 20)


def read_or_exit(read, field, value, known):
  """`read()`, or exit with one line: a `known` error's own message, any other prefixed with the
  config field and its value (`main.py`'s precheck of a file a field names)."""
  try:
    return read()
  except known as err:
    raise SystemExit(f'FATAL {err}') from None
  except Exception as err:  # pylint: disable=broad-except   # any reader error: one line, exit
    raise SystemExit(f'FATAL {field}={value}: {type(err).__name__}: {err}') from None
