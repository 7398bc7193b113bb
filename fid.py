"""`--mode=fid`: FID / IS / KID of a set of images on disk, as EDM's `fid.py calc` computes it.

Papers: Heusel+17 FID (arXiv:1706.08500); Karras+22 EDM (arXiv:2206.00364), whose NVlabs/edm
fid.py this mirrors: `fid.py calc --images=PATH --ref=NPZ --num=50000 --seed=0`.

  python main.py --mode=fid --config=configs/edm/cifar10_ddpmpp.py --workdir=W \
      --config.eval.images=W/samples/seeds_200000 --config.eval.fid_stats_path=cifar10-32x32.npz

`eval.images` is a folder (searched recursively; png, jpg, ... as datasets.IMAGE_EXTENSIONS), an
EDM-style zip (dataset_tool.py), one `.npz` or a folder of `.npz` files: our sample batches
('samples', uint8 [N, H, W, C]) or generate.py's per-seed files ('x', float in [0, 1], quantized
as generate.py writes its PNGs, so a seed's .npz and .png score the same). Images are taken in
sorted file order (EDM), .npz files in natural order (samples_2 before samples_10).

Exactly `eval.num_samples` = n images are scored. Fewer is an error; more: EDM's
ImageFolderDataset(max_size=n, random_seed=0) subset, i.e. the file indices shuffled by
np.random.RandomState(0), the first n kept, sorted (SUBSET_SEED = EDM's default --seed).
`eval.fid_repeats` = R > 1 (EDM's protocol: the minimum of 3 FIDs) needs seed-named files
(--mode=sample with sampling.seeds): repeat r scores seeds r·n .. (r+1)·n − 1; all R values and
their minimum are reported.

Features run data-parallel: global batches of eval.batch_size images sharded over a 1-D 'data'
mesh of all devices (each process decodes its share), with the Inception weights and reference
statistics of `--mode=eval` (evaluation.py). With data.dataset = 'DIGITS' the metric is the digits
Fréchet distance, computed as `--mode=eval` scores samples (eval_lib.sample_scorer).
Results: <workdir>/fid/results.json, stats.jsonl (one record per repeat, step = repeat index)
and TensorBoard.
"""
import concurrent.futures
import functools
import os
import re
import threading
import zipfile

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from configs import validate
import datasets
import digits_metric
import evaluation
import outputs
import paths
import streams
import utils

SUBSET_SEED = 0                  # EDM fid.py calc --seed default: which images when there are more
NPZ_KEYS = ('samples', 'x')      # our sample batches (uint8), generate.py's per-seed files (float)
DECODE_THREADS = 8


class ImagesError(ValueError):
  """eval.images cannot give the images asked for; the message is one line naming the field."""


# ------------------------------------------------------------------------------------------------
# The images of eval.images

def _natural_key(name):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _npz_count(opener, name):
  """Images in one .npz (key, count or None for a single [H, W, C] image), from the header only."""
  try:
    with opener(name) as file, zipfile.ZipFile(file) as z:
      keys = {os.path.splitext(n)[0]: n for n in z.namelist()}
      key = next((k for k in NPZ_KEYS if k in keys), None)
      if key is None:
        raise ImagesError(f'eval.images: {name} holds {sorted(keys)}, none of {list(NPZ_KEYS)}')
      with z.open(keys[key]) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape = read_header(f)[0]
  except ImagesError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
    raise ImagesError(f'eval.images: {name} is not a readable .npz ({err}); remove or rewrite '
                      'it') from None
  if len(shape) not in (3, 4):
    raise ImagesError(f'eval.images: {name}[{key!r}] has shape {shape}, not [N,] H, W, C')
  return key, (shape[0] if len(shape) == 4 else None)


def _members(path):
  """(file names with '/' separators, name -> open binary file) of a folder (recursive), zip or
  .npz file, local or remote (paths.py)."""
  if paths.isdir(path):
    return paths.list_files(path), lambda name: paths.open(paths.join(path, name), 'rb')
  if not paths.exists(path):
    raise ImagesError(f'eval.images = {path!r} does not exist (a folder, zip or .npz of images)')
  if path.lower().endswith('.npz'):
    return [os.path.basename(path)], lambda name: paths.open(path, 'rb')
  file = paths.open(path, 'rb')
  if not zipfile.is_zipfile(file):
    raise ImagesError(f'eval.images = {path!r} is neither a folder, a zip nor an .npz file')
  handle = zipfile.ZipFile(file)      # thread-safe reads: each open() gets its own position
  return handle.namelist(), handle.open


class ImageSet:
  """The images under eval.images, one item per image: (file name, row in an .npz or None).

  `seeds[i]` is image i's seed when every file is one image named by its seed (EDM generate.py's
  `000000/000123.png`), else `seeds` is None. `shape` is image 0's [H, W, C]; every image is
  checked against it when loaded.
  """

  def __init__(self, path):
    self.path = path
    names, self._open = _members(path)
    images = sorted(n for n in names if os.path.splitext(n)[1].lower() in datasets.IMAGE_EXTENSIONS)
    npz = sorted((n for n in names if n.lower().endswith('.npz')), key=_natural_key)
    if images and npz:
      raise ImagesError(f'eval.images = {path!r} holds both images ({len(images)}, e.g. '
                        f'{images[0]}) and .npz files ({len(npz)}, e.g. {npz[0]}); point it at '
                        'one kind')
    self.items, self._keys = [(n, None) for n in images], {}
    self._npz = functools.lru_cache(maxsize=4)(self._read_npz)   # a batch file is read once ...
    self._npz_lock = threading.Lock()                            # ... by one decoding thread
    for name in npz:
      self._keys[name], count = _npz_count(self._open, name)
      self.items += [(name, None)] if count is None else [(name, r) for r in range(count)]
    stems = [os.path.splitext(os.path.basename(n))[0] for n, r in self.items if r is None]
    self.seeds = ([int(s) for s in stems] if len(stems) == len(self.items) and self.items
                  and all(s.isdigit() for s in stems) else None)
    if self.seeds is not None and len(set(self.seeds)) < len(self.seeds):
      raise ImagesError(f'eval.images = {path!r}: some seed appears in two files')
    self.shape = None                                   # load() checks every image against it
    self.shape = self.load(0).shape if self.items else None

  def __len__(self):
    return len(self.items)

  def _read_npz(self, name):
    """The images of one .npz as uint8 (floats quantized as generate.py writes its PNGs)."""
    with self._open(name) as file, np.load(file) as f:
      x = f[self._keys[name]]
    if x.dtype != np.uint8 and not np.isfinite(x).all():
      raise ImagesError(f'eval.images: {name} holds NaN or inf (a diverged sampler?); its images '
                        'cannot be scored: remove it or sample it again')
    return x if x.dtype == np.uint8 else evaluation.images_to_uint8(x, centered=False)

  def load(self, i):
    """Image i as uint8 [H, W, C] (grayscale: C = 1; other modes converted to RGB)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    name, row = self.items[i]
    try:
      if name in self._keys:
        with self._npz_lock:
          x = self._npz(name)
        x = x if row is None else x[row]
      else:
        with self._open(name) as file, Image.open(file) as image:
          x = np.asarray(image if image.mode in ('L', 'RGB') else image.convert('RGB'))
    except ImagesError:
      raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:   # PIL's, np.load's
      raise ImagesError(f'eval.images: {name} is not a readable image ({err}); remove or '
                        'rewrite it') from None
    x = x[..., None] if x.ndim == 2 else x
    if self.shape is not None and x.shape != self.shape:
      raise ImagesError(f'eval.images: {name} is {x.shape}, {self.items[0][0]} is {self.shape}; '
                        'all images must have one size')
    return x


def select(images, n, repeats):
  """Indices into `images`, one array of n per repeat (see the module docstring)."""
  where = f'eval.images = {images.path!r} holds {len(images)} images'
  if n < 2:
    raise ImagesError(f'eval.num_samples = {n}: statistics need at least 2 images')
  if repeats < 1:
    raise ImagesError(f'eval.fid_repeats = {repeats} must be >= 1')
  if repeats == 1:
    if len(images) < n:
      raise ImagesError(f'{where}, fewer than eval.num_samples = {n}')
    idx = np.arange(len(images), dtype=np.int64)
    if len(images) > n:                       # EDM training/dataset.py, max_size + random_seed
      np.random.RandomState(SUBSET_SEED % (1 << 31)).shuffle(idx)
      idx = np.sort(idx[:n])
    return [idx]
  if images.seeds is None:
    raise ImagesError(f'{where}, not named by seed; eval.fid_repeats = {repeats} needs the '
                      'per-seed files of --mode=sample (sampling.seeds, e.g. 000000/000042.png)')
  if len(images) < repeats * n:
    raise ImagesError(f'{where}; eval.fid_repeats = {repeats} x eval.num_samples = {n} needs '
                      f'{repeats * n} (seeds 0-{repeats * n - 1})')
  row = {s: i for i, s in enumerate(images.seeds)}
  missing = [s for s in range(repeats * n) if s not in row]
  if missing:
    raise ImagesError(f'{where} but lacks {len(missing)} of seeds 0-{repeats * n - 1} '
                      f'(eval.fid_repeats = {repeats} x eval.num_samples = {n}), '
                      f'e.g. {missing[:3]}')
  return [np.array([row[s] for s in range(r * n, (r + 1) * n)]) for r in range(repeats)]


# ------------------------------------------------------------------------------------------------
# Features and metrics

def _global_batches(images, idx, batch_size, mesh, pool):
  """Global uint8 batches [batch_size, H, W, C] of images[idx] sharded over mesh 'data' (the last
  padded with zeros); each process decodes its own rows, the next batch while this one runs."""
  sharding = NamedSharding(mesh, P('data'))
  per = batch_size // jax.process_count()
  lo = jax.process_index() * per
  blank = np.zeros(images.shape, np.uint8)

  def submit(start):
    rows = idx[start + lo:start + lo + per]
    return [pool.submit(images.load, int(i)) for i in rows] + [None] * (per - len(rows))
  pending = submit(0)
  for start in range(0, len(idx), batch_size):
    local = np.stack([blank if f is None else f.result() for f in pending])
    if start + batch_size < len(idx):
      pending = submit(start + batch_size)
    yield jax.make_array_from_process_local_data(sharding, local,
                                                 (batch_size,) + images.shape)


def inception_metric_fn(config, mesh):
  """A function (images, idx, done) -> Inception metrics of images[idx]: FID against the reference
  statistics --mode=eval finds (evaluation.default_stats_path, provenance checked against the
  Inception file unless eval.allow_foreign_stats), IS in eval.is_convention, KID. Missing or
  foreign files fail here, before any image is read."""
  e = config.eval
  inception = evaluation.load_inception(evaluation.default_inception_path(config))
  ref_stats = evaluation.load_stats(evaluation.default_stats_path(config),
                                    inception['preprocessing'], e.allow_foreign_stats)
  net = evaluation.get_inception_fn(inception['params'], inception['preprocessing'], mesh=mesh)

  def gathered(batch):
    return {k: multihost_utils.process_allgather(v, tiled=True) for k, v in net(batch).items()}

  def metrics(images, idx, done):
    """done(k) is called after each batch with the number of images scored so far."""
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
      batches = _global_batches(images, idx, e.batch_size, mesh, pool)

      def logged():
        for i, batch in enumerate(batches):
          yield batch
          done(min((i + 1) * e.batch_size, len(idx)))
      features = evaluation.inception_features(logged(), gathered)
    return evaluation.sample_metrics({k: v[:len(idx)] for k, v in features.items()}, ref_stats,
                                     is_convention=e.is_convention)
  return metrics


def digits_metric_fn(out_dir):
  """The digits Fréchet distance of images[idx], as --mode=eval scores DIGITS samples
  (eval_lib.sample_scorer): digits_metric.digits_fd(uint8 / 255, classifier) vs the train split, the
  classifier cached in <workdir>/fid/digits_classifier/."""
  params = digits_metric.load_digits_classifier(paths.join(out_dir, 'digits_classifier'))

  def metrics(images, idx, done):
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
      x = np.stack(list(pool.map(images.load, (int(i) for i in idx))))
    done(len(idx))
    return {'digits_fd': digits_metric.digits_fd(x / 255., params)}
  return metrics


def _check(config, images):
  if config.data.dataset == 'DIGITS' and (images.shape[0] % 8 or images.shape[1] % 8):
    raise ImagesError(f'eval.images = {images.path!r}: the digits metric needs sizes divisible '
                      f'by 8, the images are {images.shape[0]}x{images.shape[1]}')


def run(config, workdir):
  """Score eval.images; results to <workdir>/fid/ (results.json, stats.jsonl). Returns them."""
  validate.check_run(config, 'fid')
  e = config.eval
  images = ImageSet(e.images)
  indices = select(images, e.num_samples, e.fid_repeats)
  _check(config, images)
  out_dir = paths.join(workdir, 'fid')
  paths.makedirs(out_dir)
  mesh = streams.data_mesh()
  digits = config.data.dataset == 'DIGITS'
  metric_fn = digits_metric_fn(out_dir) if digits else inception_metric_fn(config, mesh)
  key = 'digits_fd' if digits else 'fid'
  subset = ('all' if len(images) == e.num_samples and e.fid_repeats == 1 else
            f'random subset (RandomState({SUBSET_SEED}), EDM)' if e.fid_repeats == 1 else
            f'seed ranges of {e.num_samples}')
  logging.info('eval.images = %s: %d images of %s; scoring %d x %d (%s) on %d devices', e.images,
               len(images), images.shape, e.fid_repeats, e.num_samples, subset, jax.device_count())
  progress = utils.Progress('image', 0, e.fid_repeats * e.num_samples)
  writer, repeats = outputs.Writer(out_dir), []
  for r, idx in enumerate(indices):
    metrics = metric_fn(images, idx, lambda k, r=r: progress.maybe_log(r * e.num_samples + k))
    writer.write(r, metrics)
    seeds = f'{r * e.num_samples}-{(r + 1) * e.num_samples - 1}'
    repeats.append({**({} if e.fid_repeats == 1 else {'seeds': seeds}), **metrics})
    logging.info('repeat %d/%d: %s', r + 1, e.fid_repeats, metrics)
  values = [m[key] for m in repeats]
  results = {'images': e.images, 'num_found': len(images), 'num_samples': e.num_samples,
             'fid_repeats': e.fid_repeats, 'subset': subset, 'metric': key, 'values': values,
             'min': min(values), 'repeats': repeats}
  outputs.write_json(paths.join(out_dir, 'results.json'), results)
  logging.info('%s %.6g (min of %d: %s); written to %s', key, min(values), len(values),
               ', '.join(f'{v:.6g}' for v in values), paths.join(out_dir, 'results.json'))
  return results
