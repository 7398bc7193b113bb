"""The digits quickstart's metric: a Fréchet distance on the penultimate features of a small MLP
classifier of sklearn's 8x8 digits (Heusel+17's FID formula, evaluation.fid_from_stats).

The split is datasets.digits_split (sklearn digits: first 1500 images train, last 297 test; values
divided by 16), shared with the input pipeline.
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from datasets import digits_split
from evaluation import compute_stats, fid_from_stats, unflatten_params


DIGITS_CLASSIFIER_VERSION = 'digits_mlp_v1'   # cache key: change when the model, training or split changes


class DigitsMLP(nn.Module):
  """64 -> 256 -> 64 -> 10 MLP. Features: the 64-d penultimate layer before its ReLU (after the
  ReLU, dead units would make the covariance singular)."""

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(256)(x))
    features = nn.Dense(64)(x)
    return nn.Dense(10)(nn.relu(features)), features


def train_digits_classifier(seed=0, steps=400, learning_rate=3e-3):
  """Train `DigitsMLP` on the train split: full batch, Adam, fixed seed and steps (a few s on CPU)."""
  data = digits_split()
  x, y = jnp.asarray(data['train_images']), jnp.asarray(data['train_labels'])
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
  """Classifier params, cached as `<cache_dir>/digits_mlp_v1.npz` (trained and written if absent)."""
  path = os.path.join(cache_dir, f'{DIGITS_CLASSIFIER_VERSION}.npz')
  if os.path.isfile(path):
    with np.load(path) as f:
      return unflatten_params({k: f[k] for k in f.files})
  params = train_digits_classifier()
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp.npz'      # write then rename: a reader never sees half a file
  np.savez(tmp, **{'/'.join(p.key for p in kp): v
                   for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]})
  os.replace(tmp, path)
  return params


def to_digits_resolution(images):
  """Images [N, H, W, C] in [0, 1] -> [N, 8, 8, 1]: channels averaged, HxW average-pooled to 8x8."""
  x = np.asarray(images, np.float32)
  x = x.mean(axis=-1, keepdims=True)
  n, h, w, _ = x.shape
  if h % 8 or w % 8:
    raise ValueError(f'digits metric needs a size divisible by 8, got {h}x{w}')
  return x.reshape(n, 8, h // 8, 8, w // 8, 1).mean(axis=(2, 4))


def digits_features(images, params):
  """Penultimate features [N, 64] of the digits classifier for images [N, H, W, C] in [0, 1]."""
  _, feats = DigitsMLP().apply({'params': params}, jnp.asarray(to_digits_resolution(images)))
  return np.asarray(feats, np.float64)


def digits_fd(images, params, ref_images=None):
  """Fréchet distance (Heusel+17 FID Eq.) between classifier features of `images` and of
  `ref_images` (default: the digits train split), both [N, H, W, C] in [0, 1]."""
  ref = digits_split()['train_images'] if ref_images is None else ref_images
  a, b = compute_stats(digits_features(images, params)), compute_stats(digits_features(ref, params))
  return fid_from_stats(a, b)
