"""Write EDM-style datasets: an uncompressed ZIP (or folder) of PNGs plus dataset.json.

Follows NVlabs/edm dataset_tool.py conventions (Karras+22, arXiv:2206.00364): images
`{idx // 1000:05d}/img{idx:08d}.png` (PNG compress_level 0, ZIP_STORED), root `dataset.json`
{"labels": [[fname, int], ...]} or {"labels": null}; images square, power-of-two sized, 1 or
3 channels. `datasets.py` reads the result with data.dataset='IMAGE_ZIP', data.path=DEST.

Sources (--source):
  DIR                        a folder of images (recursively, sorted by path; no labels)
  .../cifar-10-python.tar.gz the CIFAR-10 python tarball (the 50,000 training images, labels;
                             its pickles read as data, foreign/torch_pickle.py)
  .../*-images-idx3-ubyte.gz MNIST idx images, labels from the matching *-labels-idx1-ubyte.gz;
                             padded 28 -> 32 px as EDM does
  sklearn:digits             sklearn's 1797 8×8 digits, levels 0..16 -> round(v·255/16), labels

  python dataset_tool.py --source=sklearn:digits --dest=digits.zip
  python dataset_tool.py --source=DIR --dest=out.zip --resolution=64x64 --transform=center-crop
The FID reference statistics (mu, sigma .npz as EDM's fid.py ref) are made by evaluation.py.
"""
import argparse
import gzip
import io
import json
import os
import pickle
import shutil
import sys
import tarfile
import zipfile

import numpy as np

from foreign import torch_pickle

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
TRANSFORMS = ('center-crop',)


def _folder(path, max_images=None):
  """The folder's (first `max_images`) images in sorted path order: all gray where every one is
  ('L'), else all RGB (gray ones replicated: one channel count for the dataset). Unreadable files
  fail before any image is written."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                 if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
  if not files:
    raise ValueError(f'--source={path!r}: no images ({", ".join(IMAGE_EXTENSIONS)}) in the folder')
  files = files[:max_images]

  def unreadable(f, err):
    return ValueError(f'{f!r} is not a readable image ({err}); remove it from --source')
  modes = set()
  for f in files:                              # headers only
    try:
      with Image.open(f) as image:
        modes.add(image.mode)
    except (OSError, ValueError) as err:      # PIL: unidentified or corrupt image
      raise unreadable(f, err) from None
  gray = modes == {'L'}
  for f in files:
    try:
      with Image.open(f) as image:
        pixels = np.array(image if gray else image.convert('RGB'))
    except (OSError, ValueError) as err:      # PIL: truncated image data
      raise unreadable(f, err) from None
    yield pixels, None, f


def _cifar10(path):
  with tarfile.open(path, 'r:gz') as tar:
    for batch in range(1, 6):
      name = f'cifar-10-batches-py/data_batch_{batch}'
      try:
        member = tar.extractfile(name)
      except KeyError:
        raise ValueError(f'--source={path!r} is not the CIFAR-10 python tarball: no {name}') from None
      try:   # a pickle, read as data: an allow-list of NumPy's globals, nothing in it runs
        data = torch_pickle.read(io.BytesIO(member.read()), f'{path}:{name}', encoding='bytes')
      except (pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f'--source={path!r}: {name} is not CIFAR-10 data: {err}') from None
      images = data[b'data'].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
      yield from ((im, label, f'{name} image {i}')
                  for i, (im, label) in enumerate(zip(images, data[b'labels'])))


def _idx(path, magic):
  with gzip.open(path, 'rb') as f:
    raw = f.read()
  if int.from_bytes(raw[:4], 'big') != magic:
    raise ValueError(f'{path!r} is not an idx file with magic {magic} (MNIST idx, gzip)')
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(magic & 0xFF)]
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def _mnist(path):
  labels_path = path.replace('-images-idx3-ubyte.gz', '-labels-idx1-ubyte.gz')
  if not os.path.exists(labels_path):
    raise FileNotFoundError(f'MNIST labels {labels_path!r} (next to --source) do not exist')
  images, labels = _idx(path, 2051), _idx(labels_path, 2049)
  if len(images) != len(labels):
    raise ValueError(f'{len(images)} MNIST images but {len(labels)} labels')
  images = np.pad(images, [[0, 0], [2, 2], [2, 2]])   # 28 -> 32 px, as EDM's dataset_tool
  yield from ((im, label, f'{path} image {i}') for i, (im, label) in enumerate(zip(images, labels)))


def _digits(_):
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  digits = load_digits()
  images = np.round(digits.images * (255. / 16.)).astype(np.uint8)
  yield from ((im, label, f'digit {i}') for i, (im, label) in enumerate(zip(images, digits.target)))


def open_source(source, max_images=None):
  """An iterator of (uint8 image [H, W] or [H, W, C], int label or None, where: the file or
  index, for messages) for --source (a folder: its first `max_images` files are read)."""
  if source == 'sklearn:digits':
    return _digits(source)
  if not os.path.exists(source):
    raise FileNotFoundError(f'--source={source!r} does not exist')
  if os.path.isdir(source):
    return _folder(source, max_images)
  if source.endswith('cifar-10-python.tar.gz'):
    return _cifar10(source)
  if source.endswith('-images-idx3-ubyte.gz'):
    return _mnist(source)
  raise ValueError(f'--source={source!r}: not a folder, cifar-10-python.tar.gz, MNIST '
                   '*-images-idx3-ubyte.gz or sklearn:digits')


def parse_resolution(text):
  """'64x64' -> (64, 64)."""
  try:
    width, height = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'--resolution={text!r}: expected WxH, e.g. 32x32') from None
  return width, height


def transform(image, resolution, mode):
  """Center-crop to a square (--transform=center-crop) and/or LANCZOS-resize to (W, H)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if resolution is None:
    if mode:
      raise ValueError(f'--transform={mode} needs --resolution')
    return image
  pil = Image.fromarray(image)
  if mode:
    w, h = pil.size
    side = min(w, h)
    pil = pil.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
  if pil.size != tuple(resolution):
    pil = pil.resize(tuple(resolution), Image.LANCZOS)
  return np.array(pil)


def _check(image, first, where):
  if image.ndim == 3 and image.shape[2] not in (1, 3):
    raise ValueError(f'{where}: {image.shape[2]} channels; only 1 (gray) or 3 (RGB)')
  h, w = image.shape[:2]
  if h != w or w & (w - 1):
    raise ValueError(f'{where} is {w}×{h}: images must be square with a power-of-two size; '
                     'use --resolution=WxH (and --transform=center-crop)')
  if first is not None and image.shape[:2] != first[:2]:
    raise ValueError(f'{where} is {w}×{h}, the first image {first[1]}×{first[0]}: all images '
                     'must have one size (use --resolution=WxH)')


def write_dataset(source, dest, resolution=None, mode=None, max_images=None):
  """Convert `source` (see open_source) into an EDM-style `dest` (.zip, or a folder)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if mode is not None and mode not in TRANSFORMS:
    raise ValueError(f'--transform={mode!r}: one of {TRANSFORMS}')
  if os.path.exists(dest):
    raise FileExistsError(f'--dest={dest!r} exists; remove it first')
  items = open_source(source, max_images)
  is_zip = dest.lower().endswith('.zip')
  archive = zipfile.ZipFile(dest, 'w', compression=zipfile.ZIP_STORED) if is_zip else None

  def save(name, data):
    if archive is not None:
      archive.writestr(name, data)
    else:
      os.makedirs(os.path.dirname(os.path.join(dest, name)) or dest, exist_ok=True)
      with open(os.path.join(dest, name), 'wb') as f:
        f.write(data)

  labels, first, done = [], None, False
  try:
    for idx, (image, label, where) in enumerate(items):
      if max_images is not None and idx >= max_images:
        break
      image = transform(np.asarray(image, np.uint8), resolution, mode)
      _check(image, first, where)
      first = image.shape
      name = f'{idx // 1000:05d}/img{idx:08d}.png'
      buffer = io.BytesIO()
      Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(
          buffer, format='PNG', compress_level=0, optimize=False)
      save(name, buffer.getvalue())
      labels.append(None if label is None else [name, int(label)])
    if first is None:
      raise ValueError(f'--source={source!r} gave no images')
    has_labels = all(entry is not None for entry in labels)
    save('dataset.json', json.dumps({'labels': labels if has_labels else None}).encode('utf-8'))
    done = True
  finally:
    if archive is not None:
      archive.close()
    if not done and os.path.exists(dest):   # no half-written dataset is left behind
      if os.path.isdir(dest):
        shutil.rmtree(dest)
      else:
        os.remove(dest)
  return len(labels)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--source', required=True, help='folder, tarball, idx.gz or sklearn:digits')
  parser.add_argument('--dest', required=True, help='output .zip or folder (must not exist)')
  parser.add_argument('--max-images', type=int, default=None, help='stop after this many images')
  parser.add_argument('--transform', choices=TRANSFORMS, default=None, help='crop before resizing')
  parser.add_argument('--resolution', type=parse_resolution, default=None, help='WxH, e.g. 32x32')
  args = parser.parse_args(argv)
  try:
    count = write_dataset(args.source, args.dest, args.resolution, args.transform, args.max_images)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    parser.exit(1, f'dataset_tool.py: error: {e}\n')
  print(f'wrote {count} images to {args.dest}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
