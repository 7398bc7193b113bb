"""A local Google Cloud Storage server for tests: gcp-storage-emulator (PyPI; the GCS JSON API
over HTTP, objects in memory) in a subprocess on a free port, with the bucket `bucket`.

One fidelity fix: GCS answers an object download with its `x-goog-generation` header, which the
emulator (2026.7.19) leaves out; tensorstore's GCS driver reads the generation from it, and
without it orbax's OCDBT manifest update fails ("Malformed StorageGeneration"). `serve` adds the
header. The emulator ignores preconditions (ifGenerationMatch), so tensorstore's
compare-and-swap always succeeds here: one writer per checkpoint, as in a run, is unaffected.

`client_env(url)` is the environment under which scoreflow's clients talk to it instead of
storage.googleapis.com: gcsfs (paths.py, and orbax's directory operations through etils.epath's
fsspec backend) reads STORAGE_EMULATOR_HOST; tensorstore (orbax's array data) reads
TENSORSTORE_GCS_HTTP_URL. GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs's zonal-bucket probe
asks the Storage Control API, which needs real credentials and, failing, costs ~3 s per
operation. tf.io.gfile's GCS client cannot be pointed here (its endpoint,
https://www.googleapis.com/storage/v1/, is compiled in; it ignores STORAGE_EMULATOR_HOST and
CLOUD_STORAGE_EMULATOR_ENDPOINT), which is why paths.configure() keeps TensorFlow out of the
chain.
"""
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BUCKET = 'bucket'


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def client_env(url):
  return {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
          'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false', 'EPATH_USE_TF': 'false'}


def serve(port):
  """Run the emulator on 127.0.0.1:`port` until killed (see the module docstring)."""
  from gcp_storage_emulator.handlers import objects  # pylint: disable=import-outside-toplevel
  download = objects.download

  def download_with_generation(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    if response.status.value < 300:
      obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
      response['x-goog-generation'] = str(obj['generation'])
      response['x-goog-metageneration'] = str(obj['metageneration'])
  objects.download = download_with_generation   # before server.py builds its routing table
  from gcp_storage_emulator import server  # pylint: disable=import-outside-toplevel
  server.create_server('127.0.0.1', port, in_memory=True, default_bucket=BUCKET).run()


@contextlib.contextmanager
def running():
  """Start the emulator; yields its URL, e.g. 'http://127.0.0.1:40123'; stopped on exit."""
  port, log = free_port(), tempfile.TemporaryFile()   # a file: a full pipe would block it
  proc = subprocess.Popen([sys.executable, __file__, str(port)], stdout=log, stderr=log)
  url = f'http://127.0.0.1:{port}'
  try:
    deadline = time.time() + 30
    while True:
      try:
        urllib.request.urlopen(f'{url}/storage/v1/b/{BUCKET}', timeout=1).close()
        break
      except OSError:
        if proc.poll() is not None or time.time() > deadline:
          log.seek(0)
          raise RuntimeError(f'the GCS emulator did not start: {log.read().decode()[-2000:]}')
        time.sleep(0.1)
    yield url
  finally:
    proc.kill()
    proc.wait()
    log.close()


def objects(url, prefix=''):
  """{name: size} of the bucket's objects under `prefix`, as the server holds them."""
  names, token = {}, ''
  while True:
    query = f'prefix={prefix}' + (f'&pageToken={token}' if token else '')
    with urllib.request.urlopen(f'{url}/storage/v1/b/{BUCKET}/o?{query}', timeout=10) as r:
      page = json.load(r)
    names.update({o['name']: int(o['size']) for o in page.get('items', [])})
    token = page.get('nextPageToken')
    if not token:
      return names


def upload(url, name, data):
  """Put an object into the bucket directly (the server's own upload API)."""
  query = urllib.parse.urlencode({'uploadType': 'media', 'name': name})
  request = urllib.request.Request(f'{url}/upload/storage/v1/b/{BUCKET}/o?{query}', data=data,
                                   method='POST')
  urllib.request.urlopen(request, timeout=10).close()


def download(url, name):
  """The bytes of an object (the server's own download API)."""
  quoted = urllib.parse.quote(name, safe='')
  with urllib.request.urlopen(f'{url}/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media',
                              timeout=10) as r:
    return r.read()


if __name__ == '__main__':
  serve(int(sys.argv[1]))
