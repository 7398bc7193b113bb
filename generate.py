"""Per-seed image generation (EDM's generate.py conventions) and the ‖ε̂‖ trajectory plot.

Papers:
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364.
  Ning+24    Elucidating the Exposure Bias in Diffusion Models (Epsilon Scaling), arXiv:2308.15321.

`generate_seeds` writes one file per seed, `{seed - seed % 1000:06d}/{seed:06d}.png` (EDM's
--subdirs layout), quantized as EDM does (x·127.5 + 128 on the [-1, 1] scale, clipped, truncated)
or `.npz` with the float image. Image i depends only on seed i: its key is jax.random.key(seed)
(`streams.keys_for_seeds`), and every sampler draws per-sample noise from that key alone, so
neither the batch size nor the number of devices changes it. Existing files are skipped
(resume; `out_dir` may be a gs:// or s3:// URI, paths.py). Batches are sharded over `streams.data_mesh()`; only process 0 writes. A
class-conditional model's class of each seed (`sampling.class_labels`, itself a function of the
seed) is recorded in `out_dir/class_labels.json` ({seed: class}) and, for `.npz`, as 'label'.
"""
import io
import json
import zipfile

from absl import logging
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

import evaluation
import latent
import paths
import sampling
import utils
from streams import data_mesh, keys_for_seeds

FORMATS = ('png', 'npz')
SETTINGS = 'settings.json'          # what the images of a folder were sampled with


def parse_seeds(text):
  """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11] (EDM's --seeds syntax, ranges inclusive)."""
  seeds = []
  for part in text.split(','):
    lo, _, hi = part.partition('-')
    seeds.extend(range(int(lo), int(hi or lo) + 1))
  return seeds


def seed_name(seed, fmt='png'):
  """EDM --subdirs layout: {seed - seed % 1000:06d}/{seed:06d}.{fmt} (in out_dir)."""
  return f'{seed - seed % 1000:06d}/{seed:06d}.{fmt}'


def seed_path(out_dir, seed, fmt='png'):
  return paths.join(out_dir, *seed_name(seed, fmt).split('/'))


def _write(path, image, fmt, label=None):
  """Atomic (paths.py): an interrupted run never leaves a half-written file."""
  if fmt == 'npz':
    paths.save_npz(path, x=np.asarray(image, np.float32),
                   **({} if label is None else {'label': label}))
  else:
    pixels = evaluation.images_to_uint8(image[None], centered=False)[0]
    paths.save_png(path, pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def generate_seeds(config, sample_fn, params, seeds, out_dir, batch_size, fmt='png', latents=None):
  """Write one image per seed into `out_dir`; returns the seeds generated (missing ones only).

  Args:
    config: the run's config; the images must have its shape (`latent.image_shape`:
      the data's, or the decoded latents').
    sample_fn: `(keys [B], params) -> (images in [0, 1] [B, H, W, C], nfe)`, e.g.
      `sampling.get_sampling_fn(config, sde, model, shape, inverse_scaler, eps)`.
    params: network parameters (EMA), replicated over the mesh.
    seeds: iterable of non-negative ints (see `parse_seeds`).
    batch_size: images per call; a multiple of jax.device_count(). The last batch is padded
      with repeats of its last seed, so every call has the same shape (one compilation).
    fmt: 'png' (uint8, EDM quantization) or 'npz' (float32 image on the [0, 1] scale, key 'x',
      not clipped).
    latents: optional `read_latents(...)` dict, row i for seeds[i], replacing the seeds' latents.
  """
  assert fmt in FORMATS and batch_size % jax.device_count() == 0, (fmt, batch_size)
  shape = latent.image_shape(config)
  row = {s: i for i, s in enumerate(seeds)}
  done = set(paths.list_files(out_dir)) if paths.isdir(out_dir) else set()   # one listing
  todo = [s for s in seeds if seed_name(s, fmt) not in done]
  progress = utils.Progress('image', len(seeds) - len(todo), len(seeds))
  mesh = data_mesh()
  params = jax.device_put(params, NamedSharding(mesh, P()))
  batched = NamedSharding(mesh, P('data'))
  for start in range(0, len(todo), batch_size):
    chunk = todo[start:start + batch_size]
    padded = np.array(chunk + [chunk[-1]] * (batch_size - len(chunk)), np.uint32)
    given = None if latents is None else {
        k: jax.device_put(v[[row[int(s)] for s in padded]], batched) for k, v in latents.items()}
    images, _ = sample_fn(keys_for_seeds(jax.device_put(padded, batched)), params, given)
    images = np.asarray(multihost_utils.process_allgather(images, tiled=True), np.float64)
    if images.shape[1:] != shape:
      raise ValueError(f'sample_fn gave images {images.shape[1:]}, the config says {shape}')
    evaluation.check_finite(images[:len(chunk)], [f'seed {s}' for s in chunk], out_dir)
    labels = _class_labels(config, padded)
    if jax.process_index() == 0:
      for i, (seed, image) in enumerate(zip(chunk, images)):
        _write(seed_path(out_dir, seed, fmt), image, fmt, None if labels is None else labels[i])
      if labels is not None:
        _record_labels(out_dir, dict(zip(chunk, labels[:len(chunk)].tolist())))
    progress.maybe_log(len(seeds) - len(todo) + start + len(chunk))
  return todo


class SettingsMismatchError(ValueError):
  """A folder of per-seed images holds images sampled with other settings."""


def image_settings(config, source):
  """{field: value} of what decides a seed's image besides the seed: `source` (the checkpoint),
  config.sampling (but which seeds and their file format), config.model, the data's shape,
  centering, classes and autoencoder, and the forward process."""
  fields = {f'sampling.{k}': v for k, v in config.sampling.items()
            if k not in ('seeds', 'image_format', 'out_dir')}
  fields.update({f'model.{k}': v for k, v in config.model.items()})
  fields.update({f'{section}.{k}': config[section][k] for section, keys in (
      ('data', ('image_size', 'num_channels', 'centered', 'num_classes', 'autoencoder',
                'latent_scale', 'latent_shift')),
      ('training', ('sde', 'continuous', 'pfgmpp_D'))) for k in keys})
  return json.loads(json.dumps({'checkpoint': source, **fields}, default=str))


def _default_settings():
  from configs import default_lib  # pylint: disable=import-outside-toplevel
  return image_settings(default_lib.get_base_config(), None)


def check_settings(out_dir, settings):
  """Record `settings` (`image_settings`) in out_dir/settings.json, or refuse a folder that
  records others: its images would be skipped as done though they differ (SettingsMismatchError
  naming the fields). A folder of images from before settings were recorded is resumed as is,
  with a warning, and left unrecorded. A field added to scoreflow after a folder was recorded
  counts there as its default (the value every sample then had)."""
  path = paths.join(out_dir, SETTINGS)
  if paths.exists(path):
    old = json.loads(paths.read_text(path))
    defaults = _default_settings()
    old.update({k: defaults[k] for k in set(settings) - set(old) if k in defaults})
    diff = [f'{k} = {old.get(k)!r} there, {settings.get(k)!r} now'
            for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
    if diff:
      raise SettingsMismatchError(
          f'{out_dir} holds images sampled with other settings ({"; ".join(diff[:3])}'
          f'{"; ..." if len(diff) > 3 else ""}): write these to another folder with '
          '--config.sampling.out_dir=DIR, or delete that one')
  elif paths.isdir(out_dir) and any(name.endswith(FORMATS) for name in paths.list_files(out_dir)):
    logging.warning('%s holds images but no record of their settings (sampled before scoreflow '
                    'recorded them): the seeds there are skipped whatever made them', out_dir)
  elif jax.process_index() == 0:
    paths.write_text(path, json.dumps(settings, indent=1, sort_keys=True))


def _class_labels(config, seeds):
  """Each seed's class for a class-conditional model or a classifier's guidance (as the sampler
  draws it), else None."""
  if not (config.model.class_conditional or config.sampling.classifier):
    return None
  return np.asarray(sampling.class_labels(config, keys_for_seeds(seeds)))


def _record_labels(out_dir, new):
  """Merge {seed: class} into out_dir/class_labels.json (atomic; a resumed run adds to it)."""
  path = paths.join(out_dir, 'class_labels.json')
  table = json.loads(paths.read_text(path)) if paths.exists(path) else {}
  table.update({str(k): int(v) for k, v in new.items()})
  paths.write_text(path, json.dumps(dict(sorted(table.items(), key=lambda kv: int(kv[0])))))


def eps_norm_trajectory(keys, score_fn, sde, sample_shape, **edm_kwargs):
  """‖ε̂‖ per EDM sampler step [N, B] (at (x̂_i, t̂_i), before Epsilon Scaling; Ning+24 Fig. 6)."""
  return sampling.edm_sample(keys, score_fn, sde, sample_shape, record_eps_norm=True,
                             **edm_kwargs)[2]


def plot_eps_norms(norms, path, size=(480, 320), reference=None):
  """Line plot PNG of the mean ‖ε̂‖ over samples against the step index (PIL, no matplotlib).

  Args:
    norms: [N, B] from `eps_norm_trajectory` (or [N]).
    reference: optional constant drawn as a dashed line, e.g. √d, the norm of true noise.
  """
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  curve = np.asarray(norms, np.float64).reshape(len(norms), -1).mean(axis=1)
  lo, hi = min(curve.min(), reference or curve.min()), max(curve.max(), reference or curve.max())
  hi = hi if hi > lo else lo + 1.
  width, height = size
  pad = 40
  def xy(i, v):
    return (pad + i * (width - 2 * pad) / max(len(curve) - 1, 1),
            height - pad - (v - lo) * (height - 2 * pad) / (hi - lo))
  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  draw.line([(pad, pad), (pad, height - pad), (width - pad, height - pad)], fill='black')
  if reference is not None:
    y = xy(0, reference)[1]
    for x in range(pad, width - pad, 12):
      draw.line([(x, y), (x + 6, y)], fill='gray')
  draw.line([xy(i, v) for i, v in enumerate(curve)], fill='blue', width=2)
  draw.text((pad, 8), f'mean |eps_hat| per step: {curve[0]:.4g} -> {curve[-1]:.4g}', fill='black')
  draw.text((pad, height - pad + 8), f'step 0 .. {len(curve) - 1}', fill='black')
  paths.save_png(path, np.asarray(image))
  return path


class LatentsError(ValueError):
  """sampling.latents cannot be used: missing, unreadable, or not standard-normal x_T of the
  run's shape (one line, main.py exits 1)."""


def read_latents(path, n, sample_shape):
  """Given latents for n images: `.npy` of standard-normal x_T [N ≥ n, H, W, C] (our layout; for
  EDM's NCHW latents save x.transpose(0, 2, 3, 1)), or `.npz` with 'z' (or 'latents') and
  optionally PFGM++'s prior 'radii' [N] = ‖x_T‖ / σ_max. -> {'z'[, 'radii']}, float32, n rows.
  Read as data (no pickles); NaN, infinite or non-positive radii, and z whose standard deviation
  is not near 1 (e.g. already multiplied by σ_max, which the sampler does) are a LatentsError."""
  what = f'sampling.latents = {path!r}'
  if not paths.isfile(path):
    raise LatentsError(f'{what} does not exist (a .npy or .npz of standard-normal x_T)')
  try:
    with io.BytesIO(paths.read_bytes(path)) as f:
      loaded = np.load(f, allow_pickle=False)
      arrays = ({'z': loaded} if isinstance(loaded, np.ndarray) else
                {('z' if k == 'latents' else k): loaded[k] for k in loaded.files})
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
    raise LatentsError(f'{what} is not a readable .npy or .npz of numbers: {err}') from None
  if 'z' not in arrays:
    raise LatentsError(f"{what}: an .npz needs 'z' (or 'latents'), found {sorted(arrays)}")
  z = arrays['z']
  if z.ndim != 1 + len(sample_shape) or tuple(z.shape[1:]) != tuple(sample_shape) or len(z) < n:
    raise LatentsError(f'{what} holds {z.shape}; {n} images need '
                       f'[>= {n}, {", ".join(map(str, sample_shape))}] (channels last)')
  out = {k: np.asarray(v[:n], np.float32) for k, v in arrays.items() if k in ('z', 'radii')}
  _check_latents(what, out, n)
  return out


def _check_latents(what, latents, n):
  """LatentsError unless z is finite with a standard deviation in (0.5, 2) (a standard-normal
  draw of ≥ 64 numbers is within it with near certainty) and radii [n] are finite and > 0."""
  z = latents['z']
  if not np.isfinite(z).all():
    raise LatentsError(f'{what} holds NaN or infinite values')
  if not 0.5 < float(np.std(z)) < 2:
    raise LatentsError(f'{what} has standard deviation {np.std(z):.4g}: x_T must be standard '
                       'normal (the sampler multiplies it by sigma_max itself)')
  radii = latents.get('radii')
  if radii is not None and (radii.shape != (n,) or not (np.isfinite(radii) & (radii > 0)).all()):
    raise LatentsError(f"{what}: 'radii' must be {n} finite positive numbers, one per image "
                       f'(found shape {radii.shape})')
