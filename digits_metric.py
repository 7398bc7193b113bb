"""The digits quickstart's metrics, on sklearn's 8x8 digits and a small MLP classifier of them.

The split is datasets.digits_split (sklearn digits: a seeded random 297 test, the other 1500
train; values divided by 16), shared with the input pipeline. The classifier (`DigitsMLP`) is
trained on the train split; its 64-d penultimate features play Inception's part. They were fitted
to the train images, so images in their style (samples of a model of them) can score nearer the
train split than held-out real digits do: at n = 297, 297 train digits score FD 2.30 in-sample,
the test split 4.24 (bench/digits_reference.py). The classifier's confidence and the pixel
distances show what the features miss.

  digits_fd(images, params)   Fréchet distance (Heusel+17) of all `images` vs the train split
  DigitsReference(params)     --mode=eval's digits metrics (eval_lib.sample_scorer): each model
                              number next to the same number of the real 297-image test split

A Fréchet distance shrinks as the number n of scored images grows (FD_n ≈ FD_∞ + k/n, Chong &
Forsyth 2020, arXiv:1911.07023), so samples and the real split are compared at equal n, and by
KID, Bińkowski+18's (arXiv:1801.01401) unbiased estimator of MMD² with the cubic kernel
k(x, y) = (x·y / d + 1)³ (evaluation.kernel_inception_distance), whose expectation is the same
at every n. The keys (floats, for stats.jsonl and report_<step>.json):
  digits_equal_n               n = min(297, number of samples)
  digits_fd_equal_n[_subsets]  mean FD vs train over the disjoint subsets of n (and their count)
  digits_kid, digits_kid_std   KID vs train: mean and std over KID_SUBSETS random subsets of n
                               (torch-fidelity's kid / kid_std; std: the spread of one n-subset)
  digits_confident_share       share with max softmax >= CONFIDENT_PROB ("readable digits")
  digits_classes_covered       classes predicted for >= COVERED_SHARE of the images (of 10)
  digits_class_kl_train        KL(predicted-class histogram || train label histogram), nats
  digits_nn_train_l2_median    median pixel L2 (8x8, [0, 1]) to the nearest training image
  digits_copy_share            share nearer to a training image than 99% of the real test digits
                               are (COPY_PERCENTILE of their distances): samples that are copies
  digits_class_share_<k>       share of the images classified as k (model only)
  digits_fd                    FD of all samples vs train (as --mode=fid); depends on the count
The keys from digits_fd_equal_n to digits_copy_share come twice: for the samples, and with the
suffix `_real_test` for the real test split scored the same way (same n, same reference).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from datasets import digits_split
from evaluation import compute_stats, fid_from_stats, kernel_inception_distance, unflatten_params
import paths


DIGITS_CLASSIFIER_VERSION = 'digits_mlp_v2'   # cache key: change when the model, training or split changes
EQUAL_N = 297             # the size of the real test split: samples are scored in sets of this size
KID_SUBSETS = 100         # random subsets per KID (torch-fidelity's default)
CONFIDENT_PROB = 0.9      # a confidently classified digit: max softmax probability >= this
COVERED_SHARE = 0.05      # a covered class: at least half of the uniform share 1/10
COPY_PERCENTILE = 1.      # copies: nearer to a training image than this percentile of the test split


class DigitsMLP(nn.Module):
  """64 -> 256 -> 64 -> 10 MLP. Features: the 64-d penultimate layer before its ReLU (after the
  ReLU, dead units would make the covariance singular)."""

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(256)(x))
    features = nn.Dense(64)(x)
    return nn.Dense(10)(nn.relu(features)), features


def train_digits_classifier(seed=0, steps=400, learning_rate=3e-3, images=None, labels=None):
  """Train `DigitsMLP` on the train split (or on `images` [N, 8, 8, 1] in [0, 1] with `labels`):
  full batch, Adam, fixed seed and steps (a few s on CPU)."""
  if images is None:
    data = digits_split()
    images, labels = data['train_images'], data['train_labels']
  x, y = jnp.asarray(images), jnp.asarray(labels)
  model = DigitsMLP()
  params = model.init(jax.random.key(seed), x[:1])['params']
  opt = optax.adam(learning_rate)

  def step(carry, _):
    params, opt_state = carry
    def loss_fn(p):
      logits, _ = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((params, opt.init(params)))
  return jax.tree.map(np.asarray, params)


def load_digits_classifier(cache_dir):
  """Classifier params, cached as `<cache_dir>/<DIGITS_CLASSIFIER_VERSION>.npz` (trained and
  written if absent)."""
  path = paths.join(cache_dir, f'{DIGITS_CLASSIFIER_VERSION}.npz')
  if paths.exists(path):
    return unflatten_params(paths.load_npz(path))
  params = train_digits_classifier()
  paths.save_npz(path, **{'/'.join(p.key for p in kp): v         # atomic: never half a file
                          for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]})
  return params


def to_digits_resolution(images):
  """Images [N, H, W, C] in [0, 1] -> [N, 8, 8, 1]: channels averaged, HxW average-pooled to 8x8."""
  x = np.asarray(images, np.float32)
  x = x.mean(axis=-1, keepdims=True)
  n, h, w, _ = x.shape
  if h % 8 or w % 8:
    raise ValueError(f'digits metric needs a size divisible by 8, got {h}x{w}')
  return x.reshape(n, 8, h // 8, 8, w // 8, 1).mean(axis=(2, 4))


def _apply(images, params):
  """(logits [N, 10], features [N, 64]) of images [N, H, W, C] in [0, 1]."""
  logits, feats = DigitsMLP().apply({'params': params}, jnp.asarray(to_digits_resolution(images)))
  return np.asarray(logits, np.float64), np.asarray(feats, np.float64)


def digits_features(images, params):
  """Penultimate features [N, 64] of the digits classifier for images [N, H, W, C] in [0, 1]."""
  return _apply(images, params)[1]


def digits_fd(images, params, ref_images=None):
  """Fréchet distance (Heusel+17 FID Eq.) between classifier features of `images` and of
  `ref_images` (default: the digits train split), both [N, H, W, C] in [0, 1]."""
  ref = digits_split()['train_images'] if ref_images is None else ref_images
  a, b = compute_stats(digits_features(images, params)), compute_stats(digits_features(ref, params))
  return fid_from_stats(a, b)


def nearest_l2(x, ref):
  """Euclidean distance [N] from each row of x [N, D] to its nearest row of ref [M, D]
  (||a - b||² = ||a||² + ||b||² - 2 a·b, float64, clipped at 0)."""
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  d2 = (x * x).sum(1)[:, None] + (ref * ref).sum(1)[None] - 2 * x @ ref.T
  return np.sqrt(np.maximum(d2.min(axis=1), 0.))


def fd_of_subsets(features, ref_stats, n):
  """The FD of each of the k = N // n disjoint subsets features[i n : (i + 1) n] (the rest is
  unused): FD_n = ||mu - mu_ref||² + Tr(S + S_ref - 2 (S S_ref)^½) (Heusel+17)."""
  k = len(features) // n
  if k < 1:
    raise ValueError(f'{len(features)} images: fewer than n = {n}')
  return [fid_from_stats(compute_stats(features[i * n:(i + 1) * n]), ref_stats) for i in range(k)]


def fd_at_n(features, ref_stats, n):
  """(mean FD, count) over the disjoint n-subsets of `fd_of_subsets`."""
  values = fd_of_subsets(features, ref_stats, n)
  return float(np.mean(values)), len(values)


def class_shares(logits):
  """Share [10] of the images whose most probable class is k."""
  return np.bincount(np.argmax(logits, axis=1), minlength=10) / len(logits)


def class_scores(logits, train_share):
  """The classifier's view: confident share (max softmax >= CONFIDENT_PROB), classes covered
  (share >= COVERED_SHARE) and KL(p || q) = Σ_k p_k log(p_k / q_k) (nats; 0 log 0 = 0) of the
  predicted-class histogram p to the train labels' q."""
  z = logits - logits.max(axis=1, keepdims=True)
  probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
  p = class_shares(logits)
  nz = p > 0
  return {'confident_share': float(np.mean(probs.max(axis=1) >= CONFIDENT_PROB)),
          'classes_covered': float(np.sum(p >= COVERED_SHARE)),
          'class_kl_train': float(np.sum(p[nz] * np.log(p[nz] / train_share[nz])))}


class DigitsReference:
  """The train split (features, statistics, pixels, label histogram) and the real test split's
  scores, computed once; `metrics` scores samples against them (keys: the module docstring)."""

  def __init__(self, params):
    split = digits_split()
    self.params = params
    train = split['train_images']
    self.train_pixels = to_digits_resolution(train).reshape(len(train), -1)
    _, self.train_features = _apply(train, params)
    self.train_stats = compute_stats(self.train_features)
    self.train_share = np.bincount(split['train_labels'], minlength=10) / len(train)
    self.test_outputs = self.outputs(split['test_images'])
    self.copy_threshold = float(np.percentile(self.test_outputs['nn_train_l2'], COPY_PERCENTILE))
    self._real = {}

  def outputs(self, images):
    """What the metrics need of images [N, H, W, C] in [0, 1] (one sampling round at a time):
    {'features' [N, 64], 'logits' [N, 10], 'nn_train_l2' [N]: the pixel distance at 8x8}."""
    logits, features = _apply(images, self.params)
    pixels = to_digits_resolution(images).reshape(len(logits), -1)
    return {'features': features, 'logits': logits,
            'nn_train_l2': nearest_l2(pixels, self.train_pixels)}

  def scores(self, outputs, n):
    """The scores of `outputs` (all rounds concatenated) at equal n, without the digits_ prefix.
    KID per subset pair X, Y of n (Bińkowski+18): MMD²_u = Σ_{i≠j} k(x_i, x_j) / (n(n-1))
    + Σ_{i≠j} k(y_i, y_j) / (n(n-1)) - 2 Σ_{i,j} k(x_i, y_j) / n², Y drawn from the train
    split."""
    fd, subsets = fd_at_n(outputs['features'], self.train_stats, n)
    kid, kid_std = kernel_inception_distance(outputs['features'], self.train_features,
                                             KID_SUBSETS, n)
    nn = outputs['nn_train_l2']
    return {'fd_equal_n': fd, 'fd_equal_n_subsets': float(subsets), 'kid': kid, 'kid_std': kid_std,
            **class_scores(outputs['logits'], self.train_share),
            'nn_train_l2_median': float(np.median(nn)),
            'copy_share': float(np.mean(nn < self.copy_threshold))}

  def real(self, n):
    """The real test split's scores at n (computed once per n)."""
    if n not in self._real:
      self._real[n] = self.scores(self.test_outputs, n)
    return self._real[n]

  def metrics(self, outputs):
    """{digits_<score>, digits_<score>_real_test, digits_equal_n, digits_class_share_<k>,
    digits_fd}: floats, n = min(EQUAL_N, number of samples)."""
    n = min(EQUAL_N, len(outputs['features']))
    out = {'digits_equal_n': float(n)}
    out.update({f'digits_{k}': v for k, v in self.scores(outputs, n).items()})
    out.update({f'digits_{k}_real_test': v for k, v in self.real(n).items()})
    out.update({f'digits_class_share_{k}': float(v)
                for k, v in enumerate(class_shares(outputs['logits']))})
    out['digits_fd'] = fid_from_stats(compute_stats(outputs['features']), self.train_stats)
    return out


def comparison_line(m):
  """One log line: the model's numbers next to the real test split's at the same n."""
  def pair(key, fmt='.4g'):
    return f'{m[f"digits_{key}"]:{fmt}} vs {m[f"digits_{key}_real_test"]:{fmt}}'
  return (f'digits, model vs real test split at n={m["digits_equal_n"]:.0f}: '
          f'FD {pair("fd_equal_n")} '
          f'(mean of {m["digits_fd_equal_n_subsets"]:.0f} vs '
          f'{m["digits_fd_equal_n_subsets_real_test"]:.0f} subsets), KID '
          f'{m["digits_kid"]:.4g}±{m["digits_kid_std"]:.2g} vs '
          f'{m["digits_kid_real_test"]:.4g}±{m["digits_kid_std_real_test"]:.2g}, confident '
          f'(p>={CONFIDENT_PROB}) {pair("confident_share", ".3f")}, classes covered '
          f'{pair("classes_covered", ".0f")}, KL to train classes {pair("class_kl_train", ".3f")}, '
          f'nearest-train L2 median {pair("nn_train_l2_median", ".3f")}, copies '
          f'{pair("copy_share", ".3f")}; FD of all samples {m["digits_fd"]:.4g}')
