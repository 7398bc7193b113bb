"""Small shared helpers: the one `Registry`, batch broadcasting, per-sample randomness, PNG grids."""
import os

import jax
import jax.numpy as jnp
import numpy as np


class Registry:
  """Name -> object table behind every `@register_*` decorator (models, SDEs, losses, samplers).

  An unknown name raises a `KeyError` that lists the registered names, so a config typo is
  answered with the valid choices.
  """

  def __init__(self, kind):
    self.kind = kind          # what is registered, for error messages ("predictor", "model", ...)
    self._table = {}

  def register(self, name):
    """Decorator: `@REG.register('name')` stores the decorated object under `name`."""
    def wrap(obj):
      if name in self._table:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._table[name] = obj
      return obj
    return wrap

  def get(self, name):
    try:
      return self._table[name]
    except KeyError:
      raise KeyError(f'unknown {self.kind} {name!r}; registered {self.kind}s: '
                     f'{", ".join(sorted(self._table))}') from None

  def names(self):
    return sorted(self._table)

  def __contains__(self, name):
    return name in self._table


def bcast(v, x):
  """Reshape a per-sample vector `v` [B] so that it broadcasts against `x` [B, ...]."""
  v = jnp.asarray(v)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def sample_keys(rng, n):
  """Per-sample keys [n] from one key: key i = fold_in(rng, i), so sample i does not depend on n."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(n))


def per_sample_normal(keys, step, shape, dtype=jnp.float32):
  """N(0, I) noise [B, *shape] for step `step`; row i depends only on keys[i] and `step`."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), shape, dtype))(keys)


def image_grid(images, nrow=None, padding=2):
  """Tile images [N, H, W, C] in [0, 1] into one uint8 grid [H', W', C]."""
  images = np.clip(np.asarray(images, np.float32), 0., 1.)
  n, h, w, c = images.shape
  nrow = nrow or int(np.ceil(np.sqrt(n)))
  ncol = int(np.ceil(n / nrow))
  grid = np.zeros((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), np.float32)
  for i in range(n):
    r, q = divmod(i, nrow)
    y, x = padding + r * (h + padding), padding + q * (w + padding)
    grid[y:y + h, x:x + w] = images[i]
  return np.round(grid * 255).astype(np.uint8)


def save_image_grid(images, path, nrow=None):
  """Save images [N, H, W, C] in [0, 1] as one PNG grid at `path` (directories are created)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  grid = image_grid(images, nrow)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
