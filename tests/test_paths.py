"""paths.py, the one path layer: the same helpers on a local folder and on a GCS bucket served by
a local emulator (tests/gcs_emulator.py; the real GCS JSON protocol through gcsfs, the client a
gs:// run uses). The end-to-end runs of main.py with a gs:// workdir are in test_gcs_workdir.py.
"""
import io
import os
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image
import pytest

import checkpointing
import datasets
import evaluation
import fid
import gcs_emulator
import losses
import paths


def test_files_round_trip(root):
  paths.check_writable(root)
  paths.write_text(paths.join(root, 'config.json'), '{"a": 1}')
  paths.write_bytes(paths.join(root, 'sub', 'deeper', 'raw.bin'), b'\x00\x01')
  paths.save_npz(paths.join(root, 'sub', 'x.npz'), x=np.arange(3.), y=np.eye(2, dtype=np.uint8))
  pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
  paths.save_png(paths.join(root, 'img.png'), pixels)
  assert paths.read_text(paths.join(root, 'config.json')) == '{"a": 1}'
  assert paths.read_bytes(paths.join(root, 'sub', 'deeper', 'raw.bin')) == b'\x00\x01'
  loaded = paths.load_npz(paths.join(root, 'sub', 'x.npz'))
  np.testing.assert_array_equal(loaded['x'], np.arange(3.))
  assert loaded['y'].dtype == np.uint8
  with paths.open(paths.join(root, 'img.png'), 'rb') as f, Image.open(f) as image:
    np.testing.assert_array_equal(np.asarray(image), pixels)
  # no temporary or probe file is left behind
  assert paths.list_files(root) == ['config.json', 'img.png', 'sub/deeper/raw.bin', 'sub/x.npz']
  assert paths.isdir(paths.join(root, 'sub')) and not paths.isfile(paths.join(root, 'sub'))
  assert paths.isfile(paths.join(root, 'sub', 'x.npz'))
  assert not paths.exists(paths.join(root, 'missing.json'))
  paths.write_text(paths.join(root, 'config.json'), '{"a": 2}')        # replaced whole
  assert paths.read_text(paths.join(root, 'config.json')) == '{"a": 2}'
  paths.remove(paths.join(root, 'img.png'))
  assert not paths.exists(paths.join(root, 'img.png'))


def test_fid_statistics_files(root):
  """evaluation.save_stats / load_stats (--mode=fid_stats writes, --mode=eval reads)."""
  rng = np.random.default_rng(0)
  pool = rng.normal(size=(20, 4))
  stats = {**evaluation.compute_stats(pool), 'pool_3': pool, 'extractor': 'edm'}
  evaluation.save_stats(paths.join(root, 'stats', 'ref.npz'), stats)
  back = evaluation.load_stats(paths.join(root, 'stats', 'ref.npz'), 'edm')
  np.testing.assert_array_equal(back['sigma'], stats['sigma'])
  np.testing.assert_array_equal(back['pool_3'], pool)
  with pytest.raises(evaluation.StatsNotFoundError, match='ref2.npz'):
    evaluation.load_stats(paths.join(root, 'stats', 'ref2.npz'))


def test_image_zip_and_folder_readers(root):
  """The readers of data.path (IMAGE_ZIP, datasets.py) and eval.images (--mode=fid, fid.py)."""
  pixels = [np.full((8, 8, 3), 40 * i, np.uint8) for i in range(3)]
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as z:
    for i, x in enumerate(pixels):
      png = io.BytesIO()
      Image.fromarray(x).save(png, format='PNG')
      z.writestr(f'00000/img{i:08d}.png', png.getvalue())
      paths.write_bytes(paths.join(root, 'folder', f'{i:06d}.png'), png.getvalue())
    z.writestr('dataset.json', '{"labels": null}')
  paths.write_bytes(paths.join(root, 'set.zip'), buffer.getvalue())
  names, read = datasets._image_zip_members(paths.join(root, 'set.zip'))
  assert sorted(names)[-1] == 'dataset.json' and read('dataset.json') == b'{"labels": null}'
  names, read = datasets._image_zip_members(paths.join(root, 'folder'))
  assert names == ['000000.png', '000001.png', '000002.png']
  for where in ('set.zip', 'folder'):
    images = fid.ImageSet(paths.join(root, where))
    assert len(images) == 3 and images.shape == (8, 8, 3)
    np.testing.assert_array_equal(images.load(2), pixels[2])
  assert fid.ImageSet(paths.join(root, 'folder')).seeds == [0, 1, 2]


def test_staged_files_are_uploaded_whole_and_resume_appending(root, monkeypatch):
  monkeypatch.setattr(paths, '_STAGED', {})     # no staging folder outlives the emulator
  paths.write_text(paths.join(root, 'stats.jsonl'), 'line 1\n')     # an earlier run's file
  local = paths.staged(root, carry=('stats.jsonl',))
  assert (local == root) == (not paths.is_remote(root))
  with open(os.path.join(local, 'stats.jsonl'), 'a') as f:
    f.write('line 2\n')
  os.makedirs(os.path.join(local, 'tensorboard'), exist_ok=True)
  with open(os.path.join(local, 'tensorboard', 'events.out'), 'wb') as f:
    f.write(b'event')
  paths.sync(force=True)
  assert paths.read_text(paths.join(root, 'stats.jsonl')) == 'line 1\nline 2\n'
  assert paths.read_bytes(paths.join(root, 'tensorboard', 'events.out')) == b'event'
  assert paths.staged(root) == local                # one staging folder per folder
  paths.write_text(paths.join(root, 'log.txt'), 'earlier\n')
  paths.staged(root, carry=('log.txt', 'stats.jsonl'))   # a second user of the folder
  with open(os.path.join(local, 'log.txt')) as f:
    assert f.read() == 'earlier\n'
  with open(os.path.join(local, 'stats.jsonl')) as f:
    assert f.read() == 'line 1\nline 2\n'           # not fetched again over the local one


def test_checkpoints_in_a_bucket(emulator, monkeypatch):
  """checkpointing.py on gs://: orbax's folders through etils.epath (gcsfs), its arrays through
  tensorstore's GCS driver; a saved step is never overwritten, the newest one is restored."""
  monkeypatch.setattr(paths, '_STAGED', {})
  optimizer = optax.adam(1e-3)
  state = losses.init_train_state({'w': jnp.arange(6.).reshape(2, 3), 'b': jnp.ones(3)},
                                  optimizer)
  workdir = f'gs://{gcs_emulator.BUCKET}/ckpt'
  kept, meta = checkpointing.kept_manager(workdir), checkpointing.meta_manager(workdir)
  for step in (1, 2):
    state = state.replace(step=jnp.int32(step), params={'w': state.params['w'] + 1,
                                                         'b': state.params['b']})
    assert checkpointing.save(kept, state) and checkpointing.save(meta, state)
  assert not checkpointing.save(kept, state)                    # exists: left as it is
  assert checkpointing.step_path(kept, 2) == f'{workdir}/checkpoints/2'
  names = gcs_emulator.objects(emulator, 'ckpt/')
  assert 'ckpt/checkpoints/1/commit_success.txt' in names
  assert not any(n.startswith('ckpt/checkpoints-meta/1/') for n in names)   # one resume point
  target = checkpointing.abstract(state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  managers = (checkpointing.meta_manager(workdir), checkpointing.kept_manager(workdir))
  restored = checkpointing.restore_latest(managers, target)
  assert int(restored.step) == 2
  np.testing.assert_array_equal(restored.params['w'], np.arange(6.).reshape(2, 3) + 2)


def test_append_to_an_object_is_refused(emulator):
  path = f'gs://{gcs_emulator.BUCKET}/append/log.txt'
  paths.write_text(path, 'kept\n')
  with pytest.raises(ValueError, match='cannot append'):
    paths.open(path, 'a')
  assert paths.read_text(path) == 'kept\n'     # gcsfs's own 'a' would have emptied it


def test_missing_bucket_fails_at_once_with_the_path(emulator):
  start = time.time()
  with pytest.raises(paths.PathError, match=r'cannot write to gs://no-such-bucket/run .*bucket '
                     r'exists.*STORAGE_EMULATOR_HOST') as err:
    paths.check_writable('gs://no-such-bucket/run')
  assert time.time() - start < 5 and '\n' not in str(err.value)
  assert 'no-such-bucket' not in str(gcs_emulator.objects(emulator))   # no bucket was created


def test_unwritable_local_folder_fails_with_the_path(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  with pytest.raises(paths.PathError, match=f'cannot write to {blocker}/run .*permissions'):
    paths.check_writable(str(blocker / 'run'))


def test_join_keeps_uris():
  assert paths.join('gs://b/run', 'eval', 'x.npz') == 'gs://b/run/eval/x.npz'
  assert paths.join('run', 'x') == os.path.join('run', 'x')
  assert paths.is_remote('s3://b/x') and not paths.is_remote('/tmp/x')
