"""Latent models (`data.autoencoder`): the network runs on z = (E(x) − data.latent_shift) ·
data.latent_scale of a diffusers AutoencoderKL (Rombach+22 §3, arXiv:2112.10752; Patch
Diffusion's 256-px models, Wang+23 arXiv:2304.12526; SD3's and Flux's VAEs shift).
data.image_size / num_channels are the latents'; the images' are `image_shape(config)`, and the
data pipeline and the reference statistics see `pixel_config`.

  `encoder(config)`, `decoder(config)`: the jittable maps, with the file's parameters;
  `encoded(batches, config, replicated, keys)`: training / evaluation batches as latents;
  `train_keys(config, start)`, `eval_keys(config, start, n)`: their ENCODE-stream keys.
The file is read by `foreign.autoencoder` (as data), once per run.
"""
import copy
import itertools

import jax
import jax.numpy as jnp

from foreign import autoencoder
import losses
from models import autoencoder as ae
import streams


def image_shape(config):
  """The images' shape (H, W, C): the data's, or the decoded latents' with data.autoencoder."""
  d = config.data
  if not d.autoencoder:
    return (d.image_size, d.image_size, d.num_channels)
  arch = autoencoder.read_for(config)[0]
  return (d.image_size * arch.factor, d.image_size * arch.factor, arch.image_channels)


def decoder(config):
  """(decode, params): decode(params, z) = D(z / latent_scale + latent_shift), images in [-1, 1]
  from latents z (Rombach+22 §3; diffusers' pipelines decode so with the VAE's scaling_factor and
  shift_factor; float32 whatever z's dtype, as Patch Diffusion's generate.py decodes)."""
  arch, params = autoencoder.read_for(config)
  model, scale, shift = ae.AutoencoderKL(arch), config.data.latent_scale, config.data.latent_shift
  def decode(p, z):
    return model.apply({'params': p}, z.astype(jnp.float32) / scale + shift,
                       method=model.decode)
  return decode, params


def pixel_config(config):
  """`config` as the data pipeline and the Inception statistics see it: with data.autoencoder a
  copy whose data.image_size / num_channels are the images' (`image_shape`), else `config`."""
  if not config.data.autoencoder:
    return config
  pixel = copy.deepcopy(config)
  pixel.data.image_size, _, pixel.data.num_channels = image_shape(config)
  return pixel


def encoder(config):
  """(encode, params): encode(params, x, key) = (z − latent_shift) · latent_scale, z ~ q(z | x) =
  N(μ(x), σ(x)²) (Rombach+22 §3; Patch Diffusion trains on `latent_dist.sample()`), images x
  [B, H, W, C] in [-1, 1], the noise of image i normal(fold_in(key, i)) (independent of the
  batch's layout)."""
  arch, params = autoencoder.read_for(config)
  model, scale, shift = ae.AutoencoderKL(arch), config.data.latent_scale, config.data.latent_shift
  def encode(p, x, key):
    mean, logvar = model.apply({'params': p}, x.astype(jnp.float32), method=model.encode)
    noise = jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:]))(
        streams.sample_keys(key, x.shape[0]))
    return (mean + jnp.exp(0.5 * logvar) * noise - shift) * scale
  return encode, params


def train_keys(config, start):
  """Per call from step `start`: the keys [n_jitted_steps] fold_in(E, s) of its steps s."""
  base, n = streams.run_key(config, streams.ENCODE_STREAM), config.training.n_jitted_steps
  for s in itertools.count(start, n):
    yield streams.sample_keys(base, n, start=s)


def eval_keys(config, start, n=None):
  """Per evaluation batch j from `start`: fold_in(fold_in(E, 2³⁰), j), split into n (per step of
  an [n, B, ...] batch) where n is given."""
  base = streams.run_key(config, streams.ENCODE_STREAM, streams.EVAL_STREAM)
  for j in itertools.count(start):
    key = jax.random.fold_in(base, j)
    yield key if n is None else jax.random.split(key, n)


_ENCODER = {}    # the jitted encoder and its replicated parameters: one of each per run


def _jitted_encoder(config, replicated):
  d = config.data
  key = (d.autoencoder, d.latent_scale, d.latent_shift, d.num_channels, replicated)
  if key not in _ENCODER:
    encode, params = encoder(config)

    @jax.jit
    def encode_batch(params, batch, key):
      x, cond = losses.split_batch(batch)
      z = encode(params, x, key) if key.ndim == 0 else jax.vmap(
          lambda x, k: encode(params, x, k))(x, key)
      return z if cond is None else {**batch, 'image': z}
    _ENCODER.clear()
    _ENCODER[key] = encode_batch, jax.device_put(params, replicated)
  return _ENCODER[key]


def encoded(batches, config, replicated, keys):
  """Rombach+22 §3: each batch's images x (scaled to [-1, 1]) replaced by their latents z ~
  q(z | x), shifted and scaled (`encoder`), one key per batch (or per step of an [n, B, ...]
  batch), on the devices: one jitted encoder per run (each evaluated checkpoint reuses it), no
  host round-trip."""
  encode_batch, params = _jitted_encoder(config, replicated)
  for batch, key in zip(batches, keys):
    yield encode_batch(params, batch, key)
