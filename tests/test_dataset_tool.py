"""dataset_tool.py: EDM-style ZIPs from digits / CIFAR-10 tarball / MNIST idx / folders, read back
by datasets.py (IMAGE_ZIP) and trained from; clear errors for bad inputs.

Truth: sklearn's digits levels (0..16 -> round(v·255/16)), synthetic CIFAR-10 pickles and MNIST
idx files whose pixels we choose, and PIL's own crop/LANCZOS resize.
"""
import gzip
import io
import json
import os
import pickle
import tarfile
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from configs import default_lib
import dataset_tool
import datasets


def _zip_images(path):
  with zipfile.ZipFile(path) as z:
    names = sorted(n for n in z.namelist() if n.endswith('.png'))
    images = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
    meta = json.loads(z.read('dataset.json'))
    stored = all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
  return names, np.stack(images), meta, stored


def _zip_config(path, size, channels):
  config = default_lib.get_base_config()
  config.data.update(dataset='IMAGE_ZIP', path=str(path), image_size=size, num_channels=channels,
                     random_flip=False)
  return config


def test_digits_round_trip_through_datasets(tmp_path):
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  dest = tmp_path / 'digits.zip'
  assert dataset_tool.main(['--source=sklearn:digits', f'--dest={dest}']) == 0
  names, images, meta, stored = _zip_images(dest)
  digits = load_digits()
  expected = np.round(digits.images * 255. / 16.).astype(np.uint8)
  assert stored and names[0] == '00000/img00000000.png' and names[1000] == '00001/img00001000.png'
  np.testing.assert_array_equal(images, expected)
  assert meta['labels'][:2] == [['00000/img00000000.png', 0], ['00000/img00000001.png', 1]]

  config = _zip_config(dest, 8, 1)
  config.eval.batch_size = n = 600   # the first batch, in file order
  _, eval_ds = datasets.get_dataset(config, evaluation=True)
  batch = next(eval_ds.as_numpy_iterator())
  got = batch['image'][..., 0]
  np.testing.assert_allclose(got, expected[:n] / 255., rtol=1e-6)      # uint8 / 255 in float32
  np.testing.assert_array_equal(np.round(got * 255.).astype(np.uint8), expected[:n])
  np.testing.assert_array_equal(batch['label'], digits.target[:n])
  reference, _ = datasets.load_digits()   # the built-in DIGITS set in file order, in [0, 1]
  np.testing.assert_allclose(got, reference[:n, ..., 0], atol=0.5 / 255 + 1e-6)


@pytest.mark.slow   # ~1 min
def test_the_zip_trains_a_class_conditional_edm_model(tmp_path):
  """The ZIP's dataset.json labels reach a class-conditional EDM model: in file order they are
  sklearn's digit classes, and run_lib's batches carry them one-hot next to the images."""
  from configs import quicktest  # pylint: disable=import-outside-toplevel
  from configs.edm import cifar10_ddpmpp_cond  # pylint: disable=import-outside-toplevel
  import losses  # pylint: disable=import-outside-toplevel
  from models import utils as mutils  # pylint: disable=import-outside-toplevel
  import run_lib  # pylint: disable=import-outside-toplevel
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  dest = tmp_path / 'digits.zip'
  dataset_tool.write_dataset('sklearn:digits', str(dest), max_images=64)
  config = quicktest.shrink(cifar10_ddpmpp_cond.get_config())
  config.data.update(dataset='IMAGE_ZIP', path=str(dest), num_channels=1, num_classes=10)
  config.model.update(nf=16, ch_mult=(1,), attn_resolutions=())
  config.training.batch_size = config.eval.batch_size = 8
  _, eval_ds = datasets.get_dataset(config, evaluation=True)
  np.testing.assert_array_equal(next(eval_ds.as_numpy_iterator())['label'],
                                load_digits().target[:8])
  run = run_lib.build(config)
  train_ds, _ = datasets.get_dataset(config)
  batch = next(run_lib.global_batches(train_ds, run, axis=1))
  assert batch['image'].shape == (1, 8, 8, 8, 1) and batch['class_labels'].shape == (1, 8, 10)
  np.testing.assert_array_equal(np.asarray(batch['class_labels']).sum(-1), 1.)
  model, params = mutils.init_model(jax.random.key(0), config)
  optimizer = losses.get_optimizer(config)
  step = jax.jit(losses.make_train_step(model, run.loss_fn, optimizer,
                                        losses.get_ema_rate(config)))
  state = losses.init_train_state(params, optimizer)
  equal = lambda x, y: all(jax.tree.leaves(jax.tree.map(np.array_equal, x, y)))   # noqa: E731
  state, metrics = step(state, batch, jax.random.key(1))
  assert np.all(np.isfinite(metrics['loss'])) and int(state.step) == 1
  assert equal(state.params, params)          # EDM lr ramp: lr = 0 at the first step
  state, metrics = step(state, batch, jax.random.key(2))
  assert np.all(np.isfinite(metrics['loss'])) and not equal(state.params, params)


def _cifar_tarball(path, per_batch=2, protocol=2):
  """CIFAR-10's python tarball layout (its pickles are Python 2's protocol 2)."""
  rs = np.random.RandomState(0)
  data = rs.randint(0, 256, (5, per_batch, 3072), dtype=np.uint8)
  labels = rs.randint(0, 10, (5, per_batch))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tarfile.open(path, 'w:gz') as tar:
    for b in range(5):
      blob = pickle.dumps({b'data': data[b], b'labels': labels[b].tolist()}, protocol)
      info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{b + 1}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.reshape(-1)


def _idx(path, magic, array):
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_cifar10_tarball_and_mnist_idx(tmp_path):
  for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
    images, labels = _cifar_tarball(tmp_path / f'{protocol}' / 'cifar-10-python.tar.gz',
                                    protocol=protocol)
    dest = tmp_path / f'cifar{protocol}.zip'
    dataset_tool.write_dataset(str(tmp_path / f'{protocol}' / 'cifar-10-python.tar.gz'), str(dest))
    _, got, meta, _ = _zip_images(dest)
    np.testing.assert_array_equal(got, images)
    assert [label for _, label in meta['labels']] == labels.tolist()

  digits = np.random.RandomState(1).randint(0, 256, (3, 28, 28))
  _idx(tmp_path / 'train-images-idx3-ubyte.gz', 2051, digits)
  _idx(tmp_path / 'train-labels-idx1-ubyte.gz', 2049, np.array([7, 0, 3]))
  dataset_tool.write_dataset(str(tmp_path / 'train-images-idx3-ubyte.gz'), str(tmp_path / 'm'))
  names = sorted(os.listdir(tmp_path / 'm' / '00000'))
  got = np.stack([np.asarray(Image.open(tmp_path / 'm' / '00000' / n)) for n in names])
  np.testing.assert_array_equal(got, np.pad(digits, [[0, 0], [2, 2], [2, 2]]))   # EDM pads to 32
  meta = json.loads((tmp_path / 'm' / 'dataset.json').read_text())
  assert [label for _, label in meta['labels']] == [7, 0, 3]


def test_folder_with_center_crop_and_resolution(tmp_path):
  src = tmp_path / 'src'
  os.makedirs(src / 'sub')
  rs = np.random.RandomState(2)
  originals = [rs.randint(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(3)]
  for k, image in enumerate(originals):
    Image.fromarray(image).save(src / ('sub' if k == 2 else '') / f'{k}.png')
  dest = tmp_path / 'out.zip'
  assert dataset_tool.main([f'--source={src}', f'--dest={dest}', '--resolution=16x16',
                            '--transform=center-crop']) == 0
  _, got, meta, _ = _zip_images(dest)
  assert meta == {'labels': None}
  expected = [np.asarray(Image.fromarray(im).crop((5, 0, 35, 30)).resize((16, 16), Image.LANCZOS))
              for im in originals]           # os.walk order: 0.png, 1.png, sub/2.png
  np.testing.assert_array_equal(got, np.stack(expected))


def test_a_folder_of_gray_and_rgb_images_becomes_rgb(tmp_path):
  """One channel count per dataset: a gray image among RGB ones is replicated to RGB (as PIL's
  convert('RGB')); an all-gray folder stays gray. A corrupt file fails before anything is
  written, naming it."""
  src = tmp_path / 'src'
  os.makedirs(src)
  gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
  rgb = np.random.RandomState(3).randint(0, 256, (8, 8, 3), dtype=np.uint8)
  Image.fromarray(gray).save(src / 'a.png')
  dataset_tool.write_dataset(str(src), str(tmp_path / 'gray.zip'))
  assert _zip_images(tmp_path / 'gray.zip')[1].shape == (1, 8, 8)
  Image.fromarray(rgb).save(src / 'b.png')
  dataset_tool.write_dataset(str(src), str(tmp_path / 'mixed.zip'))
  _, got, _, _ = _zip_images(tmp_path / 'mixed.zip')
  np.testing.assert_array_equal(got, np.stack([np.repeat(gray[..., None], 3, -1), rgb]))
  (src / 'c.png').write_bytes(b'not a png')
  with pytest.raises(ValueError, match='c.png.* is not a readable image'):
    dataset_tool.write_dataset(str(src), str(tmp_path / 'bad.zip'))
  assert not os.path.exists(tmp_path / 'bad.zip')
  dataset_tool.write_dataset(str(src), str(tmp_path / 'first.zip'), max_images=1)   # a.png only
  assert _zip_images(tmp_path / 'first.zip')[1].shape == (1, 8, 8)


class _RunsCode:
  """Unpickled by a plain pickle.load, this creates the file `path` (through os.system)."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return os.system, (f'touch {self.path}',)


def test_input_errors_are_clear(tmp_path, capsys):
  def fails(args, match):
    with pytest.raises(SystemExit) as info:
      dataset_tool.main(args)
    assert info.value.code != 0
    assert match in capsys.readouterr().err
  fails(['--source=nowhere', f'--dest={tmp_path}/a.zip'], 'does not exist')
  (tmp_path / 'notes.txt').write_text('x')
  fails([f'--source={tmp_path}/notes.txt', f'--dest={tmp_path}/a.zip'], 'not a folder')
  src = tmp_path / 'src'
  os.makedirs(src)
  fails([f'--source={src}', f'--dest={tmp_path}/a.zip'], 'no images')
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / 'a.png')
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / 'b.png')
  fails([f'--source={src}', f'--dest={tmp_path}/b.zip'],
        f"{src / 'b.png'} is 16×16, the first image 8×8: all images must have one size")
  Image.fromarray(np.zeros((6, 8), np.uint8)).save(src / 'a.png')
  fails([f'--source={src}', f'--dest={tmp_path}/c.zip'], 'square with a power-of-two')
  fails([f'--source={src}', f'--dest={tmp_path}/d.zip', '--transform=center-crop'], 'needs --resolution')
  fails([f'--source={src}', f'--dest={tmp_path}/e.zip', '--resolution=32'], 'WxH')
  os.makedirs(tmp_path / 'taken')
  fails([f'--source={src}', f'--dest={tmp_path}/taken'], 'exists')
  with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz'):
    pass
  fails([f'--source={tmp_path}/cifar-10-python.tar.gz', f'--dest={tmp_path}/f.zip'], 'data_batch_1')
  os.makedirs(tmp_path / 'hostile')
  with tarfile.open(tmp_path / 'hostile' / 'cifar-10-python.tar.gz', 'w:gz') as tar:
    blob = pickle.dumps(_RunsCode(str(tmp_path / 'ran')))      # a pickle that would run code
    info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))
  fails([f'--source={tmp_path}/hostile/cifar-10-python.tar.gz', f'--dest={tmp_path}/h.zip'],
        'refusing to load the global')
  assert not os.path.exists(tmp_path / 'ran')
  (src / 'c.png').write_bytes(b'not a png')
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / 'a.png')
  os.remove(src / 'b.png')
  fails([f'--source={src}', f'--dest={tmp_path}/i.zip'], "c.png' is not a readable image")
  _idx(tmp_path / 'x-images-idx3-ubyte.gz', 2049, np.zeros((2, 28, 28)))
  fails([f'--source={tmp_path}/x-images-idx3-ubyte.gz', f'--dest={tmp_path}/g.zip'], 'labels')
  _idx(tmp_path / 'x-labels-idx1-ubyte.gz', 2049, np.zeros(2))
  fails([f'--source={tmp_path}/x-images-idx3-ubyte.gz', f'--dest={tmp_path}/g.zip'], 'magic 2051')
  assert not os.path.exists(tmp_path / 'g.zip')             # failed runs leave nothing behind


def test_datasets_rejects_malformed_zips(tmp_path):
  bad = tmp_path / 'bad.zip'
  bad.write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='not a readable zip'):
    datasets.get_dataset(_zip_config(bad, 8, 1), evaluation=True)
  good = tmp_path / 'good.zip'
  dataset_tool.write_dataset('sklearn:digits', str(good), max_images=4)
  broken = tmp_path / 'broken.zip'
  with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, 'w') as dst:
    for name in src.namelist():
      dst.writestr(name, b'{"labels": 3' if name == 'dataset.json' else src.read(name))
  with pytest.raises(ValueError, match='dataset.json'):
    datasets.get_dataset(_zip_config(broken, 8, 1), evaluation=True)
  with pytest.raises(ValueError, match='image_size'):
    datasets.get_dataset(_zip_config(good, 32, 1), evaluation=True)
