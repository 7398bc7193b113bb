"""--checkpoint as a path or URL: a real HTTP server on loopback serves a file once into the cache;
an unreachable URL fails fast with the cache path to fill by hand."""
import functools
import http.server
import os
import socket
import threading
import time

import pytest

from foreign import files


@pytest.fixture(name='server')
def _server(tmp_path):
  served = tmp_path / 'served'
  served.mkdir()
  requests = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      requests.append(self.path)

  httpd = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(Handler, directory=str(served)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}', served, requests
  httpd.shutdown()


def test_url_is_downloaded_once_into_the_cache(server, tmp_path, monkeypatch):
  monkeypatch.setenv('SCOREFLOW_CACHE_DIR', str(tmp_path / 'cache'))
  base, served, requests = server
  (served / 'network-snapshot-000000.pkl').write_bytes(b'weights')
  url = f'{base}/network-snapshot-000000.pkl'
  path = files.local_file(url)
  assert path == files.cache_path(url) and path.startswith(str(tmp_path / 'cache'))
  assert open(path, 'rb').read() == b'weights' and path.endswith('network-snapshot-000000.pkl')
  assert files.local_file(url) == path and len(requests) == 1      # second call: from the cache
  assert not [f for f in os.listdir(os.path.dirname(path)) if '.part' in f]


def test_missing_url_names_the_cache_path(server, tmp_path, monkeypatch):
  monkeypatch.setenv('SCOREFLOW_CACHE_DIR', str(tmp_path / 'cache'))
  url = f'{server[0]}/absent.pkl'
  with pytest.raises(files.CheckpointNotFoundError, match='copy it to') as info:
    files.local_file(url)
  assert files.cache_path(url) in str(info.value) and not os.path.exists(files.cache_path(url))


def test_offline_url_fails_fast(tmp_path, monkeypatch):
  monkeypatch.setenv('SCOREFLOW_CACHE_DIR', str(tmp_path / 'cache'))
  with socket.socket() as s:                     # a port with nobody listening
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  url = f'http://127.0.0.1:{port}/edm-cifar10-32x32-cond-vp.pkl'
  start = time.perf_counter()
  with pytest.raises(files.CheckpointNotFoundError) as info:
    files.local_file(url)
  assert time.perf_counter() - start < 5 and files.cache_path(url) in str(info.value)


def test_missing_local_path():
  with pytest.raises(files.CheckpointNotFoundError, match='does not exist'):
    files.local_file('/nonexistent/network-snapshot.pkl')


def test_a_web_page_is_not_a_checkpoint(server, tmp_path, monkeypatch):
  """Google Drive 'file' links serve an HTML page: refused, nothing cached."""
  monkeypatch.setenv('SCOREFLOW_CACHE_DIR', str(tmp_path / 'cache'))
  base, served, _ = server
  (served / 'view').write_bytes(b'<!DOCTYPE html><html><body>Google Drive</body></html>')
  with pytest.raises(files.CheckpointNotFoundError, match='web page'):
    files.local_file(f'{base}/view')
  assert not os.path.exists(files.cache_path(f'{base}/view'))
