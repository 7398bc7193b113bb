"""Sample-quality evaluation: FID, Inception Score and KID on FID Inception-v3 features (the 8x8
quickstart's digits metric is in digits_metric.py).

Papers: Heusel+17 FID (arXiv:1706.08500); Salimans+16 IS (arXiv:1606.03498); Binkowski+18 KID
(arXiv:1801.01401). Numerics follow the reference code: pytorch-fid (statistics, FID with its
sqrtm eps fallback), torch-fidelity (IS splits and shuffle, KID subsets) or TF-GAN (IS in one pass,
as score_sde reported it; config `eval.is_convention`), EDM fid.py (`.npz` with `mu`, `sigma`).
Everything after feature extraction is NumPy float64.

Reference statistics are found under score_sde's and EDM's file names too (`default_stats_path`);
a file of TF-GAN `pool_3` features (score_sde's, from the TF-Hub Inception graph) or one of ours
written with the other Inception file is refused unless `eval.allow_foreign_stats`.

Weights: the network is `models/inception.py`; its weights are read from pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` or EDM's `inception-2015-12-05.pkl` (read as data by
`foreign.torch_pickle`: neither torch nor EDM's code is needed, nothing in the file runs), from a pickled
{name: array} dict, or from our torch-free `.npz` (`export_inception_npz`). They are never
downloaded: a missing file raises `InceptionWeightsNotFoundError` with the URLs at once.
The input handling follows the file: pytorch-fid's (half-pixel bilinear resize, x / 127.5 - 1) or
EDM's detector (TF1 'asymmetric' bilinear resize, as its grid_sample with a shifted theta does,
then (x - 128) / 128).
"""
import functools
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special

from foreign import torch_pickle
import latent
from models import inception
import paths
import utils

PYTORCH_FID_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')
EDM_INCEPTION_URL = ('https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/'
                     'files/metrics/inception-2015-12-05.pkl')
INCEPTION_SIZE = 299


class EvaluationFileError(FileNotFoundError):
  """A file that evaluation needs is missing or unusable; the message says where to get a good one.
  Catch this in the pipeline and print `str(err)` instead of a traceback."""


class InceptionWeightsNotFoundError(EvaluationFileError):
  """The Inception weights file (config `eval.inception_path`) does not exist."""


class InceptionWeightsError(EvaluationFileError):
  """The Inception weights file is unreadable or holds other weights."""


class StatsNotFoundError(EvaluationFileError):
  """The reference statistics file (config `eval.fid_stats_path`) does not exist."""


class StatsError(EvaluationFileError):
  """The reference statistics file is unreadable or holds no usable mu/sigma or pool_3."""


class ForeignStatsError(EvaluationFileError):
  """The reference statistics come from another Inception extractor than ours (one line, naming
  the file and `eval.allow_foreign_stats`)."""


# ------------------------------------------------------------------------------------------------
# Inception weights

def load_inception(path_or_state_dict):
  """Inception weights -> {'params': Flax params, 'preprocessing': 'pytorch_fid' | 'edm'}.

  Args:
    path_or_state_dict: a path to pytorch-fid's `.pth`, EDM's `.pkl`, a pickled {name: array} dict
      in either naming, or our `.npz`; or an already-loaded {name: array} state dict.
  Raises:
    InceptionWeightsNotFoundError: the file does not exist (raised before anything heavy runs).
    foreign.torch_pickle.UnsafePickleError: the file names a global outside the allow-list.
    InceptionWeightsError: it is unreadable or holds other weights.
  """
  if isinstance(path_or_state_dict, dict):
    return inception_from_state_dict(path_or_state_dict)
  path = os.fspath(path_or_state_dict)
  if not paths.isfile(path):
    raise InceptionWeightsNotFoundError(
        f'Inception weights not found at {path!r} (config field eval.inception_path; never '
        f'downloaded automatically): download pytorch-fid\'s {PYTORCH_FID_URL} or EDM\'s '
        f'{EDM_INCEPTION_URL} and save it as {path!r}, or point --config.eval.inception_path at '
        f'the file.')
  try:
    if path.endswith('.npz'):
      flat = paths.load_npz(path)
      prep = str(flat.pop('preprocessing'))
      return {'params': unflatten_params(flat), 'preprocessing': prep}
    return inception_from_state_dict(_read_state_dict(path))
  except torch_pickle.UnsafePickleError:          # names the file and the global it refused
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as err:
    raise InceptionWeightsError(
        f'eval.inception_path = {path!r} is not usable Inception weights ({err}); use '
        f'pytorch-fid\'s {PYTORCH_FID_URL} or EDM\'s {EDM_INCEPTION_URL}') from None


def inception_from_state_dict(state_dict):
  """{name: array} in pytorch-fid or EDM naming -> {'params', 'preprocessing'} (every tensor checked)."""
  keys = list(state_dict)
  edm_key = next((k for k in keys if 'layers.' in k), None)
  if edm_key is None:
    return {'params': inception.convert_state_dict(state_dict), 'preprocessing': 'pytorch_fid'}
  prefix = edm_key[:edm_key.index('layers.')]     # EDM detector possibly wrapped in another module
  sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
  return {'params': inception.convert_state_dict(sd, inception.EDM_TO_TORCHVISION),
          'preprocessing': 'edm'}


def _read_state_dict(path):
  """{name: NumPy array} of a weights file, read as data by `foreign.torch_pickle` (torch.save
  archives of any age and pickles, EDM's persistence objects included; no torch, no code runs)."""
  with paths.open(path, 'rb') as f:
    obj = torch_pickle.read(f, source=path)
  if isinstance(obj, (torch_pickle.Persistent, torch_pickle.Module)):
    return torch_pickle.module_tensors(obj)
  if isinstance(obj, dict):
    return {k: np.asarray(v) for k, v in obj.items()}
  raise ValueError(f'{path}: holds a {type(obj).__name__}, not Inception weights (a state dict '
                   f'or an nn.Module); point eval.inception_path at pytorch-fid\'s .pth or EDM\'s .pkl')


def export_inception_npz(weights, path):
  """Save `load_inception(...)`'s result as a torch-free `.npz` that `load_inception` reads back."""
  flat = {'/'.join(p.key for p in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(weights['params'])[0]}
  paths.save_npz(path, preprocessing=np.array(weights['preprocessing']), **flat)


def unflatten_params(flat, sep='/'):
  """{'a/b/c': v} (keys joined by `sep`) -> the nested {'a': {'b': {'c': v}}}."""
  tree = {}
  for k, v in flat.items():
    *head, last = k.split(sep)
    node = tree
    for h in head:
      node = node.setdefault(h, {})
    node[last] = v
  return tree


# ------------------------------------------------------------------------------------------------
# Input handling and the jitted feature extractor

def resize_matrix(n_in, n_out, mode):
  """Bilinear interpolation as a matrix M [n_out, n_in]: resized = M @ signal along one axis.

  mode 'half_pixel': torch F.interpolate(mode='bilinear', align_corners=False, no antialias), as in
    pytorch-fid: src = (dst + 0.5) * n_in / n_out - 0.5, clamped at 0.
  mode 'asymmetric': TF1 resize_bilinear (EDM's detector emulates it with grid_sample):
    src = dst * n_in / n_out.
  """
  dst = np.arange(n_out, dtype=np.float64)
  scale = n_in / n_out
  src = (dst + 0.5) * scale - 0.5 if mode == 'half_pixel' else dst * scale
  src = np.clip(src, 0.0, n_in - 1)
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, n_in - 1)
  frac = src - i0
  m = np.zeros((n_out, n_in))
  np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
  np.add.at(m, (np.arange(n_out), i1), frac)
  return m.astype(np.float32)


def preprocess(images, preprocessing):
  """Images [B, H, W, C] (C = 1 or 3) with values in [0, 255] (uint8 or float) -> the network's input
  [B, 299, 299, 3] in about [-1, 1], as pytorch-fid (`'pytorch_fid'`) or EDM (`'edm'`) prepares it."""
  x = jnp.asarray(images).astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)      # grayscale -> RGB, as EDM fid.py does
  mode = 'half_pixel' if preprocessing == 'pytorch_fid' else 'asymmetric'
  if x.shape[1:3] != (INCEPTION_SIZE, INCEPTION_SIZE):
    my = resize_matrix(x.shape[1], INCEPTION_SIZE, mode)
    mx = resize_matrix(x.shape[2], INCEPTION_SIZE, mode)
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum('oh,bhwc->bowc', my, x, precision=hi)
    x = jnp.einsum('pw,bowc->bopc', mx, x, precision=hi)
  if preprocessing == 'pytorch_fid':
    return x / 127.5 - 1.0             # pytorch-fid: ToTensor (/255) then 2x - 1
  if preprocessing == 'edm':
    return (x - 128.0) / 128.0         # EDM detector
  raise ValueError(f"unknown preprocessing {preprocessing!r}; expected 'pytorch_fid' or 'edm'")


@functools.cache
def _network():
  """InceptionV3's apply, jitted once per process (compiled once per batch size), its
  convolutions on Eigen even where sampling set YNNPACK's (`utils.eigen_convolutions`: this
  network is wide)."""
  return jax.jit(inception.InceptionV3().apply, compiler_options=utils.eigen_convolutions())


_PREPROCESS = jax.jit(preprocess, static_argnums=1)


def get_inception_fn(params, preprocessing='pytorch_fid', mesh=None):
  """A batched, jitted extractor: images [B, H, W, C] in [0, 255] -> {'pool_3' [B, 2048],
  'logits' [B, 1008], 'logits_unbiased' [B, 1008]} as jax arrays.

  Args:
    params: `load_inception(...)['params']`.
    preprocessing: `load_inception(...)['preprocessing']`.
    mesh: optional `jax.sharding.Mesh`; the params are then replicated over it, and a batch sharded
      along its first axis stays sharded (outputs too). Without it the params live on the default device.
  The network is compiled once per batch size; the resize once per (batch, H, W). The function's
  attribute `preprocessing` names the extractor (`fid_stats_from_images` records it in the file).
  """
  if preprocessing not in ('pytorch_fid', 'edm'):
    raise ValueError(f"unknown preprocessing {preprocessing!r}; expected 'pytorch_fid' or 'edm'")
  if mesh is None:
    params = jax.tree.map(jnp.asarray, params)
  else:
    params = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

  def inception_fn(images):
    return _network()({'params': params}, _PREPROCESS(images, preprocessing))
  inception_fn.preprocessing = preprocessing
  return inception_fn


def inception_features(batches, inception_fn):
  """Run `inception_fn` over an iterable of image batches ([..., H, W, C] in [0, 255]; leading axes,
  e.g. [devices, B], are flattened) -> {'pool_3': [N, 2048], 'logits': [N, 1008], ...} float32 NumPy.

  A batch may be a NumPy array, a dict with key 'image' (tfds style), or a (sharded) jax.Array, which
  stays on its devices. A batch smaller than the first is zero-padded to its size (no recompile).
  """
  out, size = {}, None
  for images in batches:
    images = images['image'] if isinstance(images, dict) else images
    xp = jnp if isinstance(images, jax.Array) else np
    images = xp.asarray(images)
    images = images.reshape((-1,) + images.shape[-3:])
    n = images.shape[0]
    size = size or n
    if n < size:
      images = xp.concatenate([images, xp.zeros((size - n,) + images.shape[1:], images.dtype)])
    for k, v in inception_fn(images).items():
      out.setdefault(k, []).append(np.asarray(v, np.float32)[:n])
  return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------
# Metrics (NumPy float64)

def compute_stats(features):
  """Features [N, D] -> {'mu' [D], 'sigma' [D, D]}: the Gaussian fitted for FID (Heusel+17):
  mean and unbiased covariance (N - 1), as pytorch-fid (np.cov) and EDM fid.py."""
  f = np.asarray(features, np.float64)
  return {'mu': f.mean(axis=0), 'sigma': np.cov(f, rowvar=False)}


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), pytorch-fid's numerics.

  d² = ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½)   (Heusel+17 FID Eq.)
  If sqrtm is not finite, eps·I is added to both covariances; a small imaginary part is dropped.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'statistics differ in size: mu {mu1.shape} vs {mu2.shape}, '
                     f'sigma {sigma1.shape} vs {sigma2.shape}')
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f'sqrtm has an imaginary component {np.max(np.abs(covmean.imag))}')
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))  # Heusel+17 FID Eq.


def fid_from_stats(stats, ref_stats):
  """FID between two {'mu', 'sigma'} dicts (e.g. `compute_stats(...)` and `load_stats(...)`)."""
  return frechet_distance(stats['mu'], stats['sigma'], ref_stats['mu'], ref_stats['sigma'])


def inception_score(logits, splits=10, shuffle=True, seed=2020):
  """Inception Score (mean, std over `splits`) from logits [N, K], as torch-fidelity computes it.

  IS = exp(E_x KL(p(y|x) || p(y)))   (Salimans+16 IS)
  with p(y) the split's mean prediction; rows are shuffled with RandomState(seed) first, and split
  i holds rows [i N // splits, (i + 1) N // splits).
  """
  z = np.asarray(logits, np.float64)
  n = z.shape[0]
  if shuffle:
    z = z[np.random.RandomState(seed).permutation(n)]
  log_p = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
  p = np.exp(log_p)
  scores = []
  for i in range(splits):
    lo, hi = i * n // splits, (i + 1) * n // splits
    log_q = np.log(p[lo:hi].mean(axis=0, keepdims=True))
    kl = (p[lo:hi] * (log_p[lo:hi] - log_q)).sum(axis=1)     # KL(p(y|x) || p(y))
    scores.append(np.exp(kl.mean()))                         # Salimans+16 IS
  return float(np.mean(scores)), float(np.std(scores))


def classifier_score_from_logits(logits):
  """Inception Score as TF-GAN's `classifier_score_from_logits`, the IS score_sde reported.

  One pass over all N rows (no splits, no shuffle, no std), in float64:
    p(y|x) = softmax(z_x),  p(y) = mean_x p(y|x),
    IS = exp(mean_x sum_y p(y|x) (log_softmax(z_x)_y - log p(y)))   (Salimans+16 IS)
  What matches score_sde (run_lib.evaluate: `classifier_score_from_logits(all_logits)` over the
  first eval.num_samples rows): this formula, its float64 arithmetic, and the logits taken, which
  are the 'logits' output of TF-GAN's Inception (TF-Hub tfgan/eval/inception/1, the 2015-12-05
  graph): all 1008 entries, the 8 unused classes included and nothing dropped, with the output bias
  (the graph's softmax input W pool_3 + b, read from TF-GAN's node names, not from the module's
  weights; our network's 'logits', not 'logits_unbiased').
  What cannot match: the logits' values. Ours come from pytorch-fid's or EDM's port of that graph
  with its own resize to 299 (half-pixel bilinear, or TF1's asymmetric one), while score_sde fed
  its 32x32 samples, scaled by (x - 127.5) / 127.5, to the TF-Hub module; the IS then differs by
  that extractor gap, as FID does. score_sde computed no IS at image_size >= 256 (its
  feature-vector Inception v3 has no logits; it reported -1).
  """
  z = np.asarray(logits, np.float64)
  log_p = z - scipy.special.logsumexp(z, axis=1, keepdims=True)     # log_softmax
  p = np.exp(log_p)
  kl = (p * (log_p - np.log(p.mean(axis=0)))).sum(axis=1)          # KL(p(y|x) || p(y))
  return float(np.exp(kl.mean()))                                   # Salimans+16 IS


IS_CONVENTIONS = {'torch_fidelity': 'logits_unbiased', 'tfgan': 'logits'}   # convention -> logits


def inception_score_by_convention(features, convention='torch_fidelity', is_logits=None):
  """(IS, std) of `inception_features(...)` in `convention` (config `eval.is_convention`).

  'torch_fidelity': `inception_score` on 'logits_unbiased' (10 shuffled splits; torch-fidelity,
    StyleGAN's metrics). 'tfgan': `classifier_score_from_logits` on 'logits' (one pass, as
    score_sde); its std is NaN, TF-GAN reports none.
  is_logits: another key of `features` to score instead of the convention's own logits.
  """
  z = features[is_logits or IS_CONVENTIONS[convention]]
  if convention == 'tfgan':
    return classifier_score_from_logits(z), float('nan')
  return inception_score(z)


def _polynomial_mmd2(x, y, degree, gamma, coef0):
  """Unbiased MMD² with k(a, b) = (gamma a·b + coef0)^degree (Binkowski+18 KID)."""
  m = x.shape[0]
  k_xx = (x @ x.T * gamma + coef0) ** degree
  k_yy = (y @ y.T * gamma + coef0) ** degree
  k_xy = (x @ y.T * gamma + coef0) ** degree
  off_diag = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
  return off_diag / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)    # Binkowski+18 KID (unbiased MMD²)


def kernel_inception_distance(features1, features2, num_subsets=100, subset_size=1000, seed=2020,
                              degree=3, gamma=None, coef0=1.0):
  """KID (mean, std over subsets): the unbiased polynomial-kernel MMD² averaged over random subsets,
  as torch-fidelity (same RandomState draws; gamma None = 1 / dim). `subset_size` is clipped to the
  smaller set, as clean-fid and StyleGAN do (torch-fidelity refuses instead). Float64 throughout."""
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  gamma = 1.0 / f1.shape[1] if gamma is None else gamma
  m = min(subset_size, f1.shape[0], f2.shape[0])
  rng = np.random.RandomState(seed)
  mmds = []
  for _ in range(num_subsets):
    x = f1[rng.choice(f1.shape[0], m, replace=False)]
    y = f2[rng.choice(f2.shape[0], m, replace=False)]
    mmds.append(_polynomial_mmd2(x, y, degree, gamma, coef0))
  return float(np.mean(mmds)), float(np.std(mmds))


def sample_metrics(features, ref_stats, is_logits=None, kid_subsets=100, kid_subset_size=1000,
                   is_convention='torch_fidelity'):
  """All Inception metrics of samples against a reference.

  Args:
    features: `inception_features(...)` of the samples ({'pool_3', 'logits', 'logits_unbiased'}).
    ref_stats: `load_stats(...)`; KID needs its 'pool_3' features (else KID is NaN).
    is_logits: None (the convention's logits) or the key to score: 'logits_unbiased' (no output
      bias: torch-fidelity, StyleGAN/EDM) or 'logits' (with bias: the TF graph's, as TF-GAN).
    is_convention: 'torch_fidelity' or 'tfgan' (`inception_score_by_convention`).
  Returns: {'fid', 'inception_score', 'inception_score_std', 'kid', 'kid_std'} (floats).
  """
  out = {'fid': fid_from_stats(compute_stats(features['pool_3']), ref_stats)}
  out['inception_score'], out['inception_score_std'] = inception_score_by_convention(
      features, is_convention, is_logits)
  out['kid'], out['kid_std'] = (kernel_inception_distance(features['pool_3'], ref_stats['pool_3'],
                                                          kid_subsets, kid_subset_size)
                                if 'pool_3' in ref_stats else (float('nan'), float('nan')))
  return out


class SamplesNotFiniteError(ValueError):
  """The sampler returned NaN or infinite values; those images are not written."""


def check_finite(images, names, where):
  """Raise SamplesNotFiniteError naming the images (`names[i]`, e.g. 'seed 7') that hold NaN or
  inf: as uint8 they would be written as plausible-looking files and scored."""
  bad = np.flatnonzero(~np.isfinite(np.asarray(images)).reshape(len(images), -1).all(axis=1))
  if len(bad):
    shown = ', '.join(names[i] for i in bad[:5]) + (', ...' if len(bad) > 5 else '')
    raise SamplesNotFiniteError(
        f'{where}: the sampler gave NaN or inf for {len(bad)} of {len(images)} images ({shown}), '
        'not written; the weights or the sampler settings diverge: check the checkpoint, '
        'sampling.float64=True, model.dtype and the step settings (sampling.steps, S_churn, snr)')


def images_to_uint8(images, centered):
  """Model images in [0, 1] (centered=False) or [-1, 1] (centered=True) -> uint8 [0, 255] as EDM's
  generate.py quantises: x * 127.5 + 128 on the [-1, 1] scale, clipped, truncated (i.e. rounded to
  nearest on the [0, 255] scale). score_sde instead truncated x * 255."""
  x = np.asarray(images, np.float64)
  x = x if centered else 2.0 * x - 1.0
  return np.clip(x * 127.5 + 128.0, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Reference statistics files

STATS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets', 'stats')
INCEPTION_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets', 'inception',
                                 'pt_inception-2015-12-05-6726825d.pth')


def default_inception_path(config):
  """`eval.inception_path`, or pytorch-fid's weights under assets/inception/."""
  return config.eval.inception_path or INCEPTION_DEFAULT
_SCORE_SDE_STATS = {('CIFAR10', 32): 'cifar10_stats.npz', ('CELEBA', 64): 'celeba_stats.npz'}
_EDM_REFS = {'CIFAR10': 'cifar10', 'FFHQ': 'ffhq'}   # + IMAGE_ZIP: the zip's stem (afhqv2-64x64...)


def stats_path_candidates(config):
  """Where reference statistics for `config` may be, in the order `default_stats_path` tries them.

  [config.eval.fid_stats_path] when set; else, under assets/stats/: ours
  `<dataset>_<image_size>_stats.npz` (dataset lower-case; LSUN: lsun_<category>; IMAGE_ZIP: the
  stem of data.path), score_sde's `cifar10_stats.npz` (32x32) / `celeba_stats.npz` (64x64) (its LSUN
  name is ours), then EDM's fid-refs `cifar10-32x32.npz`, `ffhq-64x64.npz`, or `<zip stem>.npz`
  for IMAGE_ZIP (EDM's afhqv2-64x64, imagenet-64x64). The first is where `--mode=fid_stats` writes.
  """
  if config.eval.fid_stats_path:
    return [config.eval.fid_stats_path]
  d = latent.pixel_config(config).data     # a latent model: its images' size
  stem = os.path.splitext(os.path.basename(os.path.normpath(d.path)))[0] if d.path else ''
  if d.dataset == 'LSUN':
    name = f'lsun_{d.category}'
  elif d.dataset == 'IMAGE_ZIP' and stem:
    name = stem.lower()
  else:
    name = d.dataset.lower()
  sde = _SCORE_SDE_STATS.get((d.dataset, d.image_size))
  names = [f'{name}_{d.image_size}_stats.npz'] + ([sde] if sde else [])
  if d.dataset in _EDM_REFS:
    names.append(f'{_EDM_REFS[d.dataset]}-{d.image_size}x{d.image_size}.npz')
  elif d.dataset == 'IMAGE_ZIP' and stem:
    names.append(f'{stem}.npz')
  return [os.path.join(STATS_DIR, n) for n in names]


def default_stats_path(config):
  """The reference statistics file to read for `config`: the first of `stats_path_candidates`
  that exists, else the first (ours, so that the missing-file error names it)."""
  candidates = stats_path_candidates(config)
  return next((p for p in candidates if paths.isfile(p)), candidates[0])


def save_stats(path, stats):
  """Write EDM-compatible `.npz` (`mu`, `sigma`), plus `pool_3` features when `stats` has them and
  `extractor` ('pytorch_fid' | 'edm': the Inception file's preprocessing) when known."""
  keys = ('mu', 'sigma', 'pool_3', 'extractor')
  paths.save_npz(path, **{k: np.asarray(v) for k, v in stats.items() if k in keys})


def _check_provenance(path, data, extractor):
  """Refuse statistics from another Inception extractor than `extractor` (see `load_stats`)."""
  fix = 'recompute them with --mode=fid_stats, or set eval.allow_foreign_stats=True to use them anyway'
  if 'extractor' in data:
    theirs = str(data['extractor'])
    if extractor is not None and theirs != extractor:
      raise ForeignStatsError(
          f'{path!r} holds statistics of the {theirs!r} Inception extractor, but eval.inception_path '
          f'is the {extractor!r} one (FIDs across extractors are not comparable); {fix}')
  elif 'pool_3' in data and not ('mu' in data and 'sigma' in data):
    raise ForeignStatsError(
        f'{path!r} holds TF-GAN pool_3 features (score_sde\'s format, from the TF-Hub Inception '
        f'graph), but our Inception is pytorch-fid\'s or EDM\'s (the FID would not be comparable); {fix}')


def load_stats(path, extractor=None, allow_foreign_stats=False):
  """Reference statistics -> {'mu', 'sigma'} (+ 'pool_3' when stored, for KID; + 'extractor').

  Reads EDM fid-refs (`mu`, `sigma`), our `save_stats` files, and score_sde's stats files
  (`pool_3` features [N, 2048]; mu/sigma are computed from them).
  Provenance: a file with `pool_3` but no `mu`/`sigma` is TF-GAN's (score_sde's; its LSUN files
  come from yet another Inception v3), which neither of our extractors reproduces; a file with
  `extractor` (ours) must name `extractor` when that is given; files with `mu`/`sigma` and no
  `extractor` (EDM's fid-refs, our older files) are accepted. A refusal raises ForeignStatsError
  unless `allow_foreign_stats` (config eval.allow_foreign_stats).
  Args:
    extractor: the samples' `load_inception(...)['preprocessing']`, or None (not compared).
  Raises StatsNotFoundError (naming eval.fid_stats_path and --mode=fid_stats) if missing,
  StatsError if unreadable or without finite mu [D] and sigma [D, D] (or pool_3 [N, D]).
  """
  path = os.fspath(path)
  if not paths.isfile(path):
    raise StatsNotFoundError(
        f'Reference statistics not found at {path!r} (config field eval.fid_stats_path). Compute them '
        f'from the training data with `python main.py --mode=fid_stats ...` (same Inception weights '
        f'as for the samples), or download EDM fid-refs '
        f'(https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/cifar10-32x32.npz) to that path.')
  try:
    data = paths.load_npz(path)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
    raise StatsError(f'eval.fid_stats_path = {path!r} is not a readable .npz ({err}); recompute '
                     'it with --mode=fid_stats or download it again') from None
  if not allow_foreign_stats:
    _check_provenance(path, data, extractor)
  stats = {k: data[k] for k in ('mu', 'sigma', 'pool_3') if k in data}
  if 'mu' not in stats or 'sigma' not in stats:
    if 'pool_3' not in stats or stats['pool_3'].ndim != 2:
      raise StatsError(f'eval.fid_stats_path = {path!r} has neither mu/sigma nor pool_3 features '
                       f'[N, D] (keys: {sorted(data)}); recompute it with --mode=fid_stats')
    stats.update(compute_stats(stats['pool_3']))
  d = stats['mu'].shape
  if len(d) != 1 or stats['sigma'].shape != d * 2 or not (
      np.isfinite(stats['mu']).all() and np.isfinite(stats['sigma']).all()):
    raise StatsError(f'eval.fid_stats_path = {path!r}: mu {stats["mu"].shape} and sigma '
                     f'{stats["sigma"].shape} are not a finite [D] and [D, D]; recompute it with '
                     '--mode=fid_stats')
  if 'extractor' in data:
    stats['extractor'] = str(data['extractor'])
  return stats


def _counted(batches, total):
  """`batches` as they come, logging the images done (rate, ETA of `total`) as they pass."""
  progress, done = utils.Progress('reference image', 0, total), 0
  for images in batches:
    yield images
    shape = (images['image'] if isinstance(images, dict) else images).shape
    done += int(np.prod(shape[:-3]))
    progress.maybe_log(done)


def fid_stats_from_images(iterator, inception_fn, out_path, keep_features=True, total=None):
  """Reference statistics of a dataset, written to `out_path` (`--mode=fid_stats`).

  Args:
    iterator: yields image batches [..., H, W, C] with values in [0, 255] (uint8 or float).
    inception_fn: `get_inception_fn(...)`; its `preprocessing` is stored as the file's `extractor`.
    out_path: the `.npz` to write (`stats_path_candidates(config)[0]`).
    keep_features: also store the pool_3 features (needed for KID against this reference).
    total: the images `iterator` holds, for the progress lines' ETA (None: unknown).
  Returns: the stats dict that was written.
  """
  pool = inception_features(_counted(iterator, total), inception_fn)['pool_3']
  stats = compute_stats(pool)
  if keep_features:
    stats['pool_3'] = pool
  if getattr(inception_fn, 'preprocessing', None):
    stats['extractor'] = inception_fn.preprocessing
  save_stats(out_path, stats)
  return stats
