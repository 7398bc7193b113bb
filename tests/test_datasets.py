"""datasets.py against data whose pixels we know: mocked CIFAR-10, sklearn digits, zips and
TFRecords written here. Nothing touches the network."""
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from unittest import mock

import jax
import numpy as np
import pytest

import datasets
from configs import default_cifar10_configs, quicktest
from configs.quickstart import digits as digits_config

tf = pytest.importorskip('tensorflow')
tfds = pytest.importorskip('tensorflow_datasets')


def _cifar_config(**eval_and_training):
  config = default_cifar10_configs.get_config()
  config.training.batch_size = 4
  config.training.n_jitted_steps = 2
  config.eval.batch_size = 4
  for key, value in eval_and_training.items():
    section, field = key.split('__')
    config[section][field] = value
  return config


@contextlib.contextmanager
def _mock_cifar(num_examples=8):
  """tfds's mock CIFAR-10 (random uint8 images, the same on each entry), seen as prepared."""
  with tfds.testing.mock_data(num_examples=num_examples), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    yield


def _all(ds, key='image'):
  return np.concatenate([b[key] for b in ds.as_numpy_iterator()])


def _cifar_eval_images(**kwargs):
  with _mock_cifar():
    return _all(datasets.get_dataset(_cifar_config(), evaluation=True, **kwargs)[1])


# ------------------------------------------------------------------------------------------------
# CIFAR-10 through tfds (mocked)

def test_cifar10_training_batches(monkeypatch):
  monkeypatch.setattr(datasets, 'SHUFFLE_BUFFER', 16)   # the mock makes each example anew
  with _mock_cifar():
    train_ds, eval_ds = datasets.get_dataset(_cifar_config())
    batches = [b for _, b in zip(range(3), train_ds.as_numpy_iterator())]   # repeats past 8
    eval_batch = next(eval_ds.as_numpy_iterator())
  for batch in batches + [eval_batch]:
    assert batch['image'].shape == (2, 4, 32, 32, 3) and batch['image'].dtype == np.float32
    assert batch['label'].shape == (2, 4) and batch['label'].dtype == np.int32
    assert 0 <= batch['image'].min() and batch['image'].max() <= 1
    assert set(np.unique(batch['label'])) <= set(range(10))
    np.testing.assert_allclose(batch['image'] * 255, np.round(batch['image'] * 255), atol=1e-4)


def test_cifar10_evaluation_is_one_ordered_pass_without_flips():
  with _mock_cifar():
    train_ds, eval_ds = datasets.get_dataset(_cifar_config(data__random_flip=True),
                                             evaluation=True)
    shapes = [b['image'].shape for b in eval_ds.as_numpy_iterator()]
    assert len(list(train_ds.as_numpy_iterator())) == 2
  assert shapes == [(4, 32, 32, 3)] * 2
  np.testing.assert_array_equal(_cifar_eval_images(), _cifar_eval_images())


def test_cifar10_training_flips_left_right_only(monkeypatch):
  monkeypatch.setattr(datasets, 'SHUFFLE_BUFFER', 1)    # keep file order
  with _mock_cifar():
    plain = _all(datasets.get_dataset(_cifar_config(), evaluation=True)[0])    # train split
  with _mock_cifar():
    batch = next(datasets.get_dataset(_cifar_config())[0].as_numpy_iterator())['image']
  flips = [np.array_equal(x, p[:, ::-1]) for x, p in zip(batch.reshape(-1, 32, 32, 3), plain)]
  same = [np.array_equal(x, p) for x, p in zip(batch.reshape(-1, 32, 32, 3), plain)]
  assert all(f or s for f, s in zip(flips, same)) and any(flips) and any(same)


def test_cifar10_uniform_dequantization_stays_in_the_pixel_bin():
  plain = _cifar_eval_images()
  noisy = _cifar_eval_images(uniform_dequantization=True)
  k = np.round(plain * 255)
  # (u + 255x)/256 with u ∈ [0, 1): pixel level k lands in [k/256, (k+1)/256)
  assert np.all(noisy >= k / 256 - 1e-7) and np.all(noisy < (k + 1) / 256 + 1e-7)
  u = noisy * 256 - k
  assert abs(u.mean() - 0.5) < 0.03 and 0.2 < u.std() < 0.38   # U[0,1): mean ½, std 0.289


def test_unknown_dataset_lists_the_valid_names():
  config = _cifar_config(data__dataset='IMAGENET')
  with pytest.raises(KeyError, match='CIFAR10.*DIGITS.*IMAGE_ZIP'):
    datasets.get_dataset(config)


def test_missing_tfds_dataset_fails_fast_with_the_fix(tmp_path, monkeypatch):
  def no_network(*args, **kwargs):
    raise AssertionError(f'network attempted: {args}')
  monkeypatch.setattr(socket, 'getaddrinfo', no_network)
  monkeypatch.setattr(socket.socket, 'connect', no_network)
  config = _cifar_config(data__tfds_data_dir=str(tmp_path))
  start = time.time()
  with pytest.raises(FileNotFoundError) as error:
    datasets.get_dataset(config)
  assert time.time() - start < 10
  message = str(error.value)
  assert '--config.data.tfds_data_dir' in message and 'tfds build cifar10' in message
  assert str(tmp_path) in message


def test_check_source_finds_missing_data_without_reading_any(tmp_path):
  """datasets.check_source: each built-in source's missing data, as the typed error main.py logs
  in one line (a FileNotFoundError still); the digits ship with scikit-learn."""
  missing = str(tmp_path / 'nothing_here')
  cases = [(_cifar_config(data__tfds_data_dir=missing), 'tfds build cifar10'),
           (_cifar_config(data__tfds_data_dir=missing, data__dataset='SVHN'), 'svhn_cropped'),
           (_cifar_config(data__tfds_data_dir=missing, data__dataset='LSUN',
                          data__category='church_outdoor'), 'lsun/church_outdoor'),
           (_cifar_config(data__dataset='FFHQ', data__tfrecords_path=missing), 'tfrecords_path'),
           (_cifar_config(data__dataset='IMAGE_ZIP', data__path=missing), 'data.path')]
  for config, fix in cases:
    with pytest.raises(datasets.DataNotFoundError, match=fix) as error:
      datasets.check_source(config)
    assert isinstance(error.value, FileNotFoundError) and missing in str(error.value)
  datasets.check_source(digits_config.get_config())


@pytest.mark.parametrize('mode', ['train', 'eval', 'inpaint'])
def test_a_run_on_missing_data_stops_in_one_line_before_building_anything(mode, tmp_path,
                                                                           monkeypatch, caplog):
  """main.py's modes check the data before the network is built (train: minutes of init and
  compile on a large config; eval: before waiting hours for a checkpoint) and log one line."""
  import modes     # pylint: disable=import-outside-toplevel
  import run_lib   # pylint: disable=import-outside-toplevel

  def build(config):
    raise AssertionError('the network was built before the data were checked')
  monkeypatch.setattr(run_lib, 'build', build)
  config = _cifar_config(data__tfds_data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(SystemExit) as stop:
    modes.run(mode, config, str(tmp_path / 'workdir'), checkpoint='', eval_folder='eval')
  assert stop.value.code == 1
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert len(errors) == 1 and '\n' not in errors[0] and 'tfds build cifar10' in errors[0]
  assert not os.path.exists(tmp_path / 'workdir')


# ------------------------------------------------------------------------------------------------
# sklearn digits

def _file_indices(images, raw):
  """Each of `images`' index in sklearn's file (`raw` [1797, 8, 8]); duplicates take one each."""
  where = {}
  for i, image in enumerate(raw.astype(np.int64)):
    where.setdefault(image.tobytes(), []).append(i)
  ours = np.round(images[..., 0] * 16).astype(np.int64)     # values 0..16, divided by 16: exact
  return np.array([where[image.tobytes()].pop(0) for image in ours])


def test_digits_split_is_a_fixed_random_partition():
  """Train and test partition sklearn's 1797 digits (each in file order), drawn at random: the
  test digits spread over the whole file (its writers), not its last 297, and every class keeps
  about its share (an iid draw: 297 · p ± a few σ)."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  split, again = datasets.digits_split(), datasets.digits_split()
  assert split['train_images'].shape == (1500, 8, 8, 1)
  assert split['test_images'].shape == (297, 8, 8, 1)
  assert split['train_labels'].shape == (1500,) and split['test_labels'].dtype == np.int32
  for key in split:
    np.testing.assert_array_equal(split[key], again[key])
  raw = load_digits()
  train = _file_indices(split['train_images'], raw.images)
  test = _file_indices(split['test_images'], raw.images)
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(1797))   # a partition
  assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)           # each in file order
  np.testing.assert_array_equal(split['train_labels'], raw.target[train])
  np.testing.assert_array_equal(split['test_labels'], raw.target[test])
  assert np.histogram(test, bins=6, range=(0, 1797))[0].min() > 30          # 297/6 ≈ 50 per sixth
  expected = 297 * np.bincount(raw.target) / 1797
  assert np.all(np.abs(np.bincount(split['test_labels']) - expected) < 4 * np.sqrt(expected))


def test_digits_pipeline_gives_the_test_split_in_order():
  config = digits_config.get_config()
  train_ds, eval_ds = datasets.get_dataset(config, evaluation=True)
  split = datasets.digits_split()
  np.testing.assert_array_equal(_all(eval_ds), split['test_images'])
  np.testing.assert_array_equal(_all(eval_ds, 'label'), split['test_labels'])
  assert len(_all(train_ds)) == 1500 // 99 * 99
  batch = next(datasets.get_dataset(config)[0].as_numpy_iterator())
  t = config.training
  assert batch['image'].shape == (t.n_jitted_steps, t.batch_size, 8, 8, 1)


def test_pipelines_are_reproducible_from_the_seed():
  config = digits_config.get_config()
  config.data.random_flip = True

  def first_batch():
    train_ds = datasets.get_dataset(config, uniform_dequantization=True)[0]
    return next(train_ds.as_numpy_iterator())['image']
  before = first_batch()
  np.testing.assert_array_equal(first_batch(), before)
  config.seed += 1
  assert not np.array_equal(first_batch(), before)
  eval_ds = datasets.get_dataset(config, uniform_dequantization=True, evaluation=True)[1]
  assert not np.array_equal(_all(eval_ds), _all(eval_ds))   # each pass: new dequantization noise


def _as_process(monkeypatch, index, count=2):
  monkeypatch.setattr(jax, 'process_count', lambda: count)
  monkeypatch.setattr(jax, 'process_index', lambda: index)


def test_training_processes_read_disjoint_shards(monkeypatch):
  config = digits_config.get_config()
  config.training.batch_size, config.training.n_jitted_steps = 2, 1
  config.data.random_flip = False
  firsts = []
  for index in range(2):
    _as_process(monkeypatch, index)
    train_ds = datasets.get_dataset(config)[0]          # [1, 1, 8, 8, 1]: one image a process
    firsts.append({float(b['image'].sum()) for b in train_ds.take(200).as_numpy_iterator()})
  train = datasets.digits_split()['train_images']
  assert firsts[0] <= {float(x.sum()) for x in train[0::2]}
  assert firsts[1] <= {float(x.sum()) for x in train[1::2]}


@pytest.mark.parametrize('dequantize', [False, True])
def test_evaluation_processes_take_their_rows_of_the_one_process_batches(monkeypatch,
                                                                         dequantize):
  """Process p keeps rows [2p, 2p + 2) of each global batch of 4, noise included: the two
  processes together see the one-process batches exactly (296 of the 297 test digits)."""
  config = digits_config.get_config()
  config.eval.batch_size = 4

  def batches():
    ds = datasets.get_dataset(config, uniform_dequantization=dequantize, evaluation=True)[1]
    return np.stack([b['image'] for b in ds.as_numpy_iterator()])
  one = batches()
  rows = []
  for index in range(2):
    _as_process(monkeypatch, index)
    rows.append(batches())
  assert one.shape == (74, 4, 8, 8, 1) and rows[0].shape == (74, 2, 8, 8, 1)
  np.testing.assert_array_equal(np.concatenate(rows, axis=1), one)
  if not dequantize:
    np.testing.assert_array_equal(one.reshape(-1, 8, 8, 1),
                                  datasets.digits_split()['test_images'][:296])


def test_quicktest_configs_read_digits_at_their_size():
  from configs.ve.ncsnv2 import bedroom  # pylint: disable=import-outside-toplevel
  config = quicktest.shrink(bedroom.get_config())
  batch = next(datasets.get_dataset(config)[0].as_numpy_iterator())
  assert batch['image'].shape == (1, 2, 16, 16, 3)
  np.testing.assert_array_equal(batch['image'][..., 0], batch['image'][..., 2])


def test_scalers_are_inverse():
  config = digits_config.get_config()
  x = np.linspace(0., 1., 5)
  np.testing.assert_allclose(datasets.get_data_scaler(config)(x), 2 * x - 1)
  np.testing.assert_allclose(datasets.get_data_inverse_scaler(config)(2 * x - 1), x)
  config.data.centered = False
  assert datasets.get_data_scaler(config)(x) is x


# ------------------------------------------------------------------------------------------------
# EDM-style zips and folders

def _png(array):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, 'PNG')
  return buffer.getvalue()


def _images(n, size=8, channels=3, seed=0):
  """n images whose pixels are random but whose left half is brighter, so a flip shows."""
  images = np.random.RandomState(seed).randint(0, 128, (n, size, size, channels)).astype(np.uint8)
  images[:, :, :size // 2] += 128
  return images


def _write_zip(path, images, labels=None, json_text=None):
  names = [f'{i // 10:05d}/img{i:08d}.png' for i in range(len(images))]   # dataset_tool layout
  with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
    for name, image in zip(names, images):
      z.writestr(name, _png(image))
    if labels is not None:
      z.writestr('dataset.json', json.dumps({'labels': [[n, int(l)] for n, l in zip(names, labels)]}))
    if json_text is not None:
      z.writestr('dataset.json', json_text)
  return names


def _zip_config(path, size=8, channels=3, batch=4):
  config = _cifar_config(data__dataset='IMAGE_ZIP', data__path=str(path), data__image_size=size,
                         data__num_channels=channels, eval__batch_size=batch)
  return config


def test_image_zip_round_trip(tmp_path):
  images, labels = _images(12), np.arange(12) % 5
  _write_zip(tmp_path / 'set.zip', images, labels)
  train_ds, eval_ds = datasets.get_dataset(_zip_config(tmp_path / 'set.zip'), evaluation=True)
  np.testing.assert_allclose(_all(eval_ds) * 255, images, atol=1e-3)
  np.testing.assert_array_equal(_all(eval_ds, 'label'), labels)
  np.testing.assert_array_equal(_all(train_ds), _all(eval_ds))


def test_image_folder_gray_without_labels(tmp_path):
  images = _images(8, channels=1)
  for i, image in enumerate(images):
    (tmp_path / f'{i}.png').write_bytes(_png(image))
  eval_ds = datasets.get_dataset(_zip_config(tmp_path, channels=1), evaluation=True)[1]
  np.testing.assert_allclose(_all(eval_ds) * 255, images, atol=1e-3)
  assert set(_all(eval_ds, 'label')) == {datasets.UNLABELED}


def test_image_zip_training_flips_and_dequantizes(tmp_path):
  images = _images(8)
  _write_zip(tmp_path / 'set.zip', images, labels=np.arange(8))   # label = image index
  config = _zip_config(tmp_path / 'set.zip')
  train_ds = datasets.get_dataset(config, uniform_dequantization=True)[0]
  batches = [b for _, b in zip(range(8), train_ds.as_numpy_iterator())]
  flipped = 0
  for x, label in zip(np.concatenate([b['image'].reshape(-1, 8, 8, 3) for b in batches]),
                      np.concatenate([b['label'].ravel() for b in batches])):
    def in_bins(k, y=x * 256):                # dequantized: pixel k sits in [k/256, (k+1)/256]
      return np.all((y >= k - 1e-3) & (y <= k + 1 + 1e-3))
    original = images[label].astype(np.float32)
    assert in_bins(original) or in_bins(original[:, ::-1])
    flipped += in_bins(original[:, ::-1])
  assert 0 < flipped < 64                     # random flips, about half


def test_malformed_zip_is_a_clear_error(tmp_path):
  (tmp_path / 'bad.zip').write_bytes(b'this is not a zip file')
  with pytest.raises(ValueError, match='not a readable zip file'):
    datasets.get_dataset(_zip_config(tmp_path / 'bad.zip'))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    datasets.get_dataset(_zip_config(tmp_path / 'missing.zip'))


def test_dataset_json_missing_a_label(tmp_path):
  names = _write_zip(tmp_path / 'a.zip', _images(3), json_text=json.dumps(
      {'labels': [[f'{0:05d}/img{0:08d}.png', 1], [f'{0:05d}/img{1:08d}.png', 2]]}))
  with pytest.raises(ValueError, match=r'no label for 1 of 3 images.*' + names[2]):
    datasets.get_dataset(_zip_config(tmp_path / 'a.zip'))


@pytest.mark.parametrize('text', ['{not json', '{"classes": []}', '{"labels": [["a.png"]]}'])
def test_dataset_json_malformed(tmp_path, text):
  _write_zip(tmp_path / 'a.zip', _images(2), json_text=text)
  with pytest.raises(ValueError, match='dataset.json'):
    datasets.get_dataset(_zip_config(tmp_path / 'a.zip'))


def test_image_zip_wrong_resolution(tmp_path):
  _write_zip(tmp_path / 'a.zip', _images(2, size=16))
  with pytest.raises(ValueError, match=r'16×16 images.*image_size = 8'):
    datasets.get_dataset(_zip_config(tmp_path / 'a.zip'))


# ------------------------------------------------------------------------------------------------
# TFRecords (FFHQ / CelebA-HQ layout of score_sde)

def test_tfrecords_round_trip(tmp_path):
  images = _images(4)
  path = str(tmp_path / 'r03.tfrecords')
  with tf.io.TFRecordWriter(path) as writer:
    for image in images:
      chw = np.ascontiguousarray(image.transpose(2, 0, 1))
      feature = {'shape': tf.train.Feature(int64_list=tf.train.Int64List(value=chw.shape)),
                 'data': tf.train.Feature(bytes_list=tf.train.BytesList(value=[chw.tobytes()]))}
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  config = _zip_config('', batch=2)
  config.data.dataset, config.data.tfrecords_path = 'FFHQ', path
  eval_ds = datasets.get_dataset(config, evaluation=True)[1]
  np.testing.assert_allclose(_all(eval_ds) * 255, images, atol=1e-3)


def test_no_tensorflow_on_import():
  root = os.path.dirname(os.path.abspath(datasets.__file__))
  code = 'import sys, datasets; assert "tensorflow" not in sys.modules, "TF imported eagerly"'
  subprocess.run([sys.executable, '-c', code], cwd=root, check=True,
                 env=dict(os.environ, JAX_PLATFORMS='cpu'))
