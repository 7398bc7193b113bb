"""Input pipelines: tf.data over TFDS sets, TFRecords, EDM-style image zips/folders, sklearn digits.

`get_dataset(config, uniform_dequantization=False, evaluation=False) -> (train_ds, eval_ds)`
returns two `tf.data.Dataset`s of dicts
  {'image': float32 [..., H, W, C] in [0, 1] (before `get_data_scaler`), 'label': int32 [...]}
(label -1 where a set has none), batched as
  training (evaluation=False): [n_jitted_steps, per_process_batch, H, W, C], repeated, shuffled;
  evaluation=True:             [per_process_eval_batch, H, W, C], one pass in file order,
with per_process_batch = batch_size // jax.process_count(); the batch must divide by
jax.device_count(). Training: each process reads its own shard. Evaluation: every process reads
the whole split, forms the global batches of eval.batch_size, with the same dequantization
noise, and keeps its rows (process p: rows [p·b, (p+1)·b)), so a P-process evaluation sees the
one-process batches exactly. Incomplete batches are dropped (fixed shapes for jit), as in score_sde. Iterate with `ds.as_numpy_iterator()`.

Conventions from yang-song/score_sde datasets.py (Song+21, arXiv:2011.13456): CelebA center crop
140 then resize to 64; LSUN resize-small + central crop (128 px) or crop + bicubic resize; FFHQ /
CelebA-HQ TFRecords with `shape` + raw uint8 CHW `data`; uniform dequantization
(u + 255x)/256 (Theis+16, arXiv:1511.01844), so level k lies in [k/256, (k+1)/256]. EDM-style
zips follow NVlabs/edm training/dataset.py (Karras+22, arXiv:2206.00364): images + optional
dataset.json {"labels": [[fname, label], ...]}.

Shuffling buffers light elements (encoded images, names, records); decoding comes after. Flips
and dequantization noise are stateless, seeded per element from config.seed: a pipeline is
reproducible. Nothing here downloads: a TFDS set that is not prepared fails at once with the fix.
More sets: register a function returning a `Source` under a new name in `SOURCES`.
TensorFlow is imported lazily (about 3 s), with GPUs hidden from it.
"""
import collections
import functools
import io
import json
import os
import zipfile

import jax
import numpy as np

import latent
import paths
from utils import Registry

SOURCES = Registry('dataset')      # config.data.dataset -> fn(config, evaluation) -> Source
SHUFFLE_BUFFER = 10000             # examples in the shuffle buffer (score_sde's value) ...
SHUFFLE_BYTES = 2 ** 31            # ... capped at 2 GiB of raw pixels (TFRecords hold raw pixels)
DIGITS_NUM_TRAIN = 1500            # sklearn digits: 1500 images train, the other 297 test ...
DIGITS_SPLIT_SEED = 0              # ... drawn by NumPy default_rng(0).permutation (an iid split)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')   # what tf.io.decode_image reads
UNLABELED = -1                     # 'label' of sets without labels
TFDS_NAMES = {'CIFAR10': 'cifar10', 'SVHN': 'svhn_cropped', 'CELEBA': 'celeb_a'}   # + lsun/<cat>


class DataError(Exception):
  """Data that are not there or not readable as the config says; the message names the fix
  (main.py logs it as one line)."""


class DataNotFoundError(DataError, FileNotFoundError):
  """The data a config names are not where it says."""


class MalformedDataError(DataError, ValueError):
  """The data are there but do not hold what the config needs."""


def get_data_scaler(config):
  """[0, 1] -> [-1, 1] (x ↦ 2x − 1) if `data.centered`, else identity."""
  if config.data.centered:
    return lambda x: x * 2. - 1.
  return lambda x: x


def get_data_inverse_scaler(config):
  """Inverse of `get_data_scaler`: [-1, 1] -> [0, 1] if `data.centered`, else identity."""
  if config.data.centered:
    return lambda x: (x + 1.) / 2.
  return lambda x: x


@functools.lru_cache(maxsize=1)
def load_digits():
  """All 1797 of sklearn's digits in its file order: (images float32 [1797, 8, 8, 1] in [0, 1],
  labels int32 [1797]), read-only."""
  import sklearn.datasets  # pylint: disable=import-outside-toplevel
  digits = sklearn.datasets.load_digits()
  images = (digits.images / 16.).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  for a in (images, labels):
    a.flags.writeable = False
  return images, labels


def digits_split():
  """The fixed split of sklearn's 1797 8×8 digits (values 0..16, divided by 16).

  Returns {'train_images' [1500, 8, 8, 1], 'train_labels' [1500], 'test_images' [297, 8, 8, 1],
  'test_labels' [297]}: images float32 in [0, 1] (NHWC), labels int32; deterministic. Test = the
  images at the first 297 entries of NumPy's default_rng(DIGITS_SPLIT_SEED).permutation(1797), train
  = the other 1500, each in file order. A random split, because sklearn keeps the UCI file's
  order (blocks of writers): its last 297 digits are not an iid draw of the first 1500, and as a
  held-out "real" reference they scored far from the train digits (FD 13.33 at n = 297 where this
  split's test digits score 4.24; bench/digits_reference.py) — a bar any model beat.
  """
  images, labels = load_digits()
  order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
  test, train = np.split(order, [len(images) - DIGITS_NUM_TRAIN])
  test, train = np.sort(test), np.sort(train)
  return {'train_images': images[train], 'train_labels': labels[train],
          'test_images': images[test], 'test_labels': labels[test]}


@functools.lru_cache(maxsize=1)
def tensorflow():
  """TensorFlow, imported on first use, with its GPUs hidden (JAX owns the accelerators)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:   # TF was initialised elsewhere first; nothing more to do
    pass
  return tf


def _tfds():
  tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds


# ------------------------------------------------------------------------------------------------
# Image operations (tf); images are HWC.

def central_crop(image, size):
  """The central size×size window of `image`."""
  tf = tensorflow()
  top = (tf.shape(image)[0] - size) // 2
  left = (tf.shape(image)[1] - size) // 2
  return tf.image.crop_to_bounding_box(image, top, left, size, size)


def resize_small(image, resolution):
  """Resize (antialiased bilinear) so that the shorter side is `resolution`."""
  tf = tensorflow()
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  ratio = resolution / tf.minimum(h, w)
  size = tf.cast(tf.round(tf.stack([h, w]) * ratio), tf.int32)
  return tf.image.resize(image, size, antialias=True)


def crop_resize(image, resolution):
  """Largest central square, bicubic antialiased resize; uint8 in, float32 in [0, 1] out.

  score_sde casts the bicubic result straight to uint8; here it is clipped and rounded first
  (bicubic overshoots [0, 255]).
  """
  tf = tensorflow()
  crop = tf.minimum(tf.shape(image)[0], tf.shape(image)[1])
  image = central_crop(image, crop)
  image = tf.image.resize(image, [resolution, resolution], method='bicubic', antialias=True)
  return tf.round(tf.clip_by_value(image, 0., 255.)) / 255.


def _to_float(image):
  tf = tensorflow()
  return tf.image.convert_image_dtype(image, tf.float32)


def _resize_to(config, native):
  """uint8 image of side `native` -> float32 [0, 1] at data.image_size (no-op if equal)."""
  tf, size = tensorflow(), config.data.image_size

  def op(image):
    image = _to_float(image)
    if size != native:
      image = tf.image.resize(image, [size, size], antialias=True)
    return image
  return op


# ------------------------------------------------------------------------------------------------
# Sources. A `Source` holds train and eval tf.data datasets of this process's examples, unbatched
# and light (encoded images, file names or records), and `decode`, which maps one element to
# {'image': float32 [H, W, C] in [0, 1], 'label': int32}; decoding runs after the shuffle buffer.

Source = collections.namedtuple('Source', ['train', 'eval', 'decode'])

def _tfds_builder(config, name):
  """The TFDS builder of `name`, after checking that it is prepared (never downloads)."""
  tfds = _tfds()
  data_dir = config.data.tfds_data_dir or None
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    where = data_dir or 'the TFDS default data dir (~/tensorflow_datasets or $TFDS_DATA_DIR)'
    raise DataNotFoundError(
        f'TFDS dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}). '
        f'This code never downloads. On a machine with internet run `tfds build {name} '
        f'--data_dir=DIR` (needs `pip install importlib_resources`), copy DIR here and pass '
        f'--config.data.tfds_data_dir=DIR.')
  return builder


def _tfds_source(config, evaluation, name, splits, image_op):
  """A prepared TFDS set; `splits` = (train split, eval split); `image_op`: uint8 -> float."""
  tfds, tf = _tfds(), tensorflow()
  builder = _tfds_builder(config, name)
  read_config = tfds.ReadConfig(shuffle_seed=config.seed)
  image_feature = builder.info.features['image']

  def load(split):
    if _shards(evaluation) > 1:
      split = tfds.even_splits(split, n=jax.process_count())[jax.process_index()]
    return builder.as_dataset(split=split, shuffle_files=not evaluation, read_config=read_config,
                              decoders={'image': tfds.decode.SkipDecoding()})

  def decode(d):
    label = tf.cast(d['label'], tf.int32) if 'label' in d else tf.constant(UNLABELED, tf.int32)
    return {'image': image_op(image_feature.decode_example(d['image'])), 'label': label}
  return Source(load(splits[0]), load(splits[1]), decode)


def _tfds_name(config):
  """The TFDS name of config.data.dataset (a TFDS_NAMES key or LSUN)."""
  d = config.data
  return f'lsun/{d.category}' if d.dataset == 'LSUN' else TFDS_NAMES[d.dataset]


@SOURCES.register('CIFAR10')
def _cifar10(config, evaluation):
  return _tfds_source(config, evaluation, _tfds_name(config), ('train', 'test'),
                      _resize_to(config, 32))


@SOURCES.register('SVHN')
def _svhn(config, evaluation):
  return _tfds_source(config, evaluation, _tfds_name(config), ('train', 'test'),
                      _resize_to(config, 32))


@SOURCES.register('CELEBA')
def _celeba(config, evaluation):
  def image_op(image):   # score_sde: center crop 140, then shorter side to image_size
    return resize_small(central_crop(_to_float(image), 140), config.data.image_size)
  return _tfds_source(config, evaluation, _tfds_name(config), ('train', 'validation'), image_op)


@SOURCES.register('LSUN')
def _lsun(config, evaluation):
  size = config.data.image_size
  if size == 128:   # score_sde: resize-small + central crop at 128 px, crop + bicubic otherwise
    def image_op(image):
      return central_crop(resize_small(_to_float(image), size), size)
  else:
    def image_op(image):
      return crop_resize(image, size)
  return _tfds_source(config, evaluation, _tfds_name(config), ('train', 'validation'), image_op)


def _shards(evaluation):
  """Into how many shards a source splits: one per process for training, none for evaluation
  (every process reads the whole split; `_pipeline` gives each its rows of each global batch)."""
  return 1 if evaluation else jax.process_count()


def _shard(ds, evaluation):
  return ds.shard(jax.process_count(), jax.process_index()) if _shards(evaluation) > 1 else ds


def _tfrecords(config, evaluation):
  """FFHQ / CelebA-HQ records of score_sde: features `shape` [3] (C, H, W) and raw uint8 `data`."""
  tf, path = tensorflow(), _tfrecords_path(config)
  size, channels = config.data.image_size, config.data.num_channels

  def decode(record):
    example = tf.io.parse_single_example(record, {
        'shape': tf.io.FixedLenFeature([3], tf.int64),
        'data': tf.io.FixedLenFeature([], tf.string)})
    image = tf.reshape(tf.io.decode_raw(example['data'], tf.uint8), example['shape'])
    image = tf.ensure_shape(tf.transpose(image, (1, 2, 0)), [size, size, channels])
    return {'image': _to_float(image), 'label': tf.constant(UNLABELED, tf.int32)}
  ds = _shard(tf.data.TFRecordDataset(path), evaluation)
  return Source(ds, ds, decode)   # score_sde evaluates on the same records


def _tfrecords_path(config):
  """data.tfrecords_path, checked to exist."""
  path = config.data.tfrecords_path
  if not tensorflow().io.gfile.exists(path):
    raise DataNotFoundError(f'data.tfrecords_path {path!r} does not exist: point '
                            '--config.data.tfrecords_path at score_sde\'s TFRecord file')
  return path


SOURCES.register('FFHQ')(_tfrecords)
SOURCES.register('CelebAHQ')(_tfrecords)


@SOURCES.register('DIGITS')
def _digits(config, evaluation):
  """sklearn digits (`digits_split`), resized if data.image_size ≠ 8, gray tiled to C channels."""
  tf, split = tensorflow(), digits_split()
  size, channels = config.data.image_size, config.data.num_channels

  def image_op(image):
    if size != 8:
      image = tf.image.resize(image, [size, size], antialias=True)
    return tf.tile(image, [1, 1, channels])

  def load(images, labels):
    return _shard(tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels}),
                  evaluation)
  return Source(load(split['train_images'], split['train_labels']),
                load(split['test_images'], split['test_labels']),
                lambda d: {'image': image_op(d['image']), 'label': d['label']})


class _ZipReader:
  """Reads members of one zip file through one handle, opened at the first read."""

  def __init__(self, path):
    self.path = path
    self._handle = None

  def __call__(self, name):
    if self._handle is None:
      self._handle = zipfile.ZipFile(paths.open(self.path, 'rb'))
    return self._handle.read(name)


def _image_zip_members(path):
  """(all member names with '/' separators, reader name -> bytes) of a zip file or a folder,
  local or remote (paths.py)."""
  if paths.isdir(path):
    return paths.list_files(path), lambda name: paths.read_bytes(paths.join(path, name))
  if not paths.exists(path):
    raise DataNotFoundError(f'data.path {path!r} does not exist (an EDM-style zip or folder)')
  try:
    with paths.open(path, 'rb') as f, zipfile.ZipFile(f) as z:
      names = z.namelist()
  except zipfile.BadZipFile as e:
    raise MalformedDataError(
        f'data.path {path!r} is not a readable zip file ({e}). Expected an EDM-style dataset: a '
        "zip or folder of same-sized PNG images, e.g. from NVlabs/edm's dataset_tool.py") from None
  return names, _ZipReader(path)


def _image_zip_labels(text, images, path):
  """int32 labels [len(images)] from dataset.json text {"labels": [[fname, label], ...]}, or None."""
  where = f'{path}/dataset.json'
  try:
    labels = json.loads(text)['labels']
  except (ValueError, KeyError, TypeError) as e:
    raise MalformedDataError(
        f'{where} must be JSON {{"labels": [[fname, label], ...]}}: {e!r}') from None
  if labels is None:   # EDM writes {"labels": null} for unlabeled sets
    return None
  try:
    table = {str(name): int(label) for name, label in labels}
  except (ValueError, TypeError) as e:
    raise MalformedDataError(
        f'{where}: "labels" must be [fname, integer class] pairs: {e!r}') from None
  missing = [name for name in images if name not in table]
  if missing:
    raise MalformedDataError(
        f'{where} has no label for {len(missing)} of {len(images)} images, e.g. {missing[:3]}')
  return np.array([table[name] for name in images], np.int32)


def _image_zip_index(config):
  """Sorted image names, int32 labels (UNLABELED if no dataset.json) and a reader, validated."""
  import PIL.Image  # pylint: disable=import-outside-toplevel
  path = config.data.path
  names, read = _image_zip_members(path)
  images = sorted(n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
  if not images:
    raise MalformedDataError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {path!r}')
  labels = None
  if 'dataset.json' in names:
    labels = _image_zip_labels(read('dataset.json').decode('utf-8'), images, path)
  if labels is None:
    labels = np.full([len(images)], UNLABELED, np.int32)
  with PIL.Image.open(io.BytesIO(read(images[0]))) as first:
    width, height = first.size
  size = config.data.image_size
  if (width, height) != (size, size):
    raise MalformedDataError(
        f'{path!r} holds {width}×{height} images (e.g. {images[0]}) but data.image_size = {size}; '
        f'set --config.data.image_size or rescale with EDM dataset_tool.py '
        f'--resolution={size}x{size}')
  return images, labels, read


@SOURCES.register('IMAGE_ZIP')
def _image_zip(config, evaluation):
  """EDM-style zip or folder at data.path (NVlabs/edm training/dataset.py conventions).

  This process's share of the encoded images is read into memory once (EDM caches the decoded
  set by default); tf.data then decodes the PNG bytes in parallel without calling back into
  Python (a tf.py_function per image cost ~15 ms on 8×8 digits).
  """
  tf = tensorflow()
  images, labels, read = _image_zip_index(config)
  count = _shards(evaluation)
  share = slice(jax.process_index() if count > 1 else 0, None, count)   # = _shard's order
  images, labels = images[share], labels[share]
  encoded = [read(name) for name in images]
  size, channels = config.data.image_size, config.data.num_channels

  def decode(d):
    image = tf.io.decode_image(d['encoded'], channels=channels, expand_animations=False)
    image = tf.ensure_shape(image, [size, size, channels])
    return {'image': _to_float(image), 'label': d['label']}
  ds = tf.data.Dataset.from_tensor_slices({'encoded': encoded, 'label': labels})
  return Source(ds, ds, decode)   # EDM-style sets have no separate test split


# ------------------------------------------------------------------------------------------------
# The pipeline

def _preprocess(config, decode, train, uniform_dequantization):
  """Per-example map: decode, random left-right flip (if `train`), uniform dequantization.

  Randomness is stateless, from a per-element seed, so a pipeline is reproducible from
  config.seed.
  """
  tf = tensorflow()
  flip = config.data.random_flip and train

  def op(element, element_seed):
    d = decode(element)
    image = d['image']
    flip_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([element_seed, 0]), 2))
    if flip:
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if uniform_dequantization:   # (u + 255x)/256, x rounded to its 8-bit level first (Theis+16)
      u = tf.random.stateless_uniform(tf.shape(image), noise_seed)
      image = (u + tf.round(image * 255.)) / 256.
    return {'image': image, 'label': d['label']}
  return op


def _pipeline(config, ds, decode, train, batch_dims, evaluation, uniform_dequantization):
  tf = tensorflow()
  # Randomness: per process and split in training; per split only in evaluation (all processes
  # draw the one-process noise for the whole split and keep their rows, `_own_rows`).
  stream = int(train) if evaluation else 2 * jax.process_index() + int(train)
  if not evaluation:
    pixels = config.data.image_size ** 2 * config.data.num_channels
    buffer = max(1, min(SHUFFLE_BUFFER, SHUFFLE_BYTES // pixels))
    ds = ds.repeat().shuffle(buffer, seed=config.seed + stream)
  # Element seeds: the same for a given config.seed on the first pass; new on each re-iteration
  # (so repeated bpd passes see new dequantization noise).
  seeds = tf.data.Dataset.random(seed=config.seed * 1000003 + stream,
                                 rerandomize_each_iteration=True)
  ds = tf.data.Dataset.zip(ds, seeds)
  ds = ds.map(_preprocess(config, decode, train and not evaluation, uniform_dequantization),
              num_parallel_calls=tf.data.AUTOTUNE)
  for size in reversed(batch_dims):
    ds = ds.batch(size, drop_remainder=True)
  if evaluation and jax.process_count() > 1:
    ds = ds.map(_own_rows(batch_dims[0] // jax.process_count()))
  return ds.prefetch(tf.data.AUTOTUNE)


def _own_rows(rows):
  """Map of a global evaluation batch to this process's `rows` rows (process p: [p·rows, ...))."""
  start = jax.process_index() * rows
  return lambda batch: {k: v[start:start + rows] for k, v in batch.items()}


def check_labels(config, labels, user='model.class_conditional=True',
                 instead=' or set model.class_conditional=False'):
  """`labels` (a NumPy batch) if every one is a class in [0, data.num_classes), else a MalformedDataError
  naming the dataset and `user`: a class-conditional model (or --mode=train_classifier) cannot
  train on unlabeled or out-of-range data."""
  k = config.data.num_classes
  if labels.size and (labels.min() < 0 or labels.max() >= k):
    what = 'has no labels' if labels.min() == UNLABELED else f'has labels up to {labels.max()}'
    raise MalformedDataError(
        f'{user} needs labels, but data.dataset={config.data.dataset!r} {what} '
        f'(data.num_classes = {k}): use a labeled set (an IMAGE_ZIP needs dataset.json){instead}')
  return labels


def _per_process_train_batch(config):
  """Images per training step on this process: with STF the reference batch
  (training.stf_ref_batch; the loss trains on batch_size of them), else training.batch_size;
  divisible by the device count (configs/rules.py)."""
  t = config.training
  return (t.stf_ref_batch or t.batch_size) // jax.process_count()


def check_source(config):
  """Raise a DataError now if the data config.data names are not there or not readable: the
  checks each built-in source makes when it opens its data, without reading the data, so that a
  run fails in seconds, before it builds a network. (DIGITS ships with scikit-learn; sets
  registered elsewhere are checked when they are read.)"""
  config, name = latent.pixel_config(config), config.data.dataset
  if name in TFDS_NAMES or name == 'LSUN':
    _tfds_builder(config, _tfds_name(config))
  elif name in ('FFHQ', 'CelebAHQ'):
    _tfrecords_path(config)
  elif name == 'IMAGE_ZIP':
    _image_zip_index(config)


def get_dataset(config, uniform_dequantization=False, evaluation=False):
  """(train_ds, eval_ds): tf.data datasets of {'image', 'label'} batches for this process.

  Args:
    config: the config; reads data.*, seed, training.batch_size (or stf_ref_batch) /
      n_jitted_steps (training) or eval.batch_size (evaluation). With data.autoencoder the images
      are read at the decoded latents' size (`latent.pixel_config`).
    uniform_dequantization: add U[0, 1)/256 noise to 8-bit levels: (u + 255x)/256.
    evaluation: one pass in file order, no flips, batches [per_process_eval_batch, H, W, C];
      otherwise repeated and shuffled, flips on the train split, batches
      [n_jitted_steps, per_process_batch, H, W, C] for both datasets (per_process_batch from
      training.stf_ref_batch when STF is on).
  Returns:
    train_ds, eval_ds; images float32 in [0, 1] (apply `get_data_scaler`), labels int32
    (UNLABELED = -1 where the set has none). For FFHQ / CelebAHQ / IMAGE_ZIP both read the same
    images (no test split); DIGITS uses `digits_split`.
  Raises:
    DataNotFoundError (a FileNotFoundError, with the fix) for data that are not there, at once;
    MalformedDataError (a ValueError) for malformed data. The config is one that passed
    configs/validate.py.
  """
  config = latent.pixel_config(config)   # a latent model reads the images it encodes
  if evaluation:   # global batches, cut to this process's rows in `_pipeline`
    batch_dims = [config.eval.batch_size]
  else:
    batch_dims = [config.training.n_jitted_steps, _per_process_train_batch(config)]
  source = SOURCES.get(config.data.dataset)(config, evaluation)
  return tuple(_pipeline(config, ds, source.decode, train, batch_dims, evaluation,
                         uniform_dequantization)
               for ds, train in ((source.train, True), (source.eval, False)))
