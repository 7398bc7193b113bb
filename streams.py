"""Every random stream of scoreflow in one table, the per-sample keys and the device mesh.

The promise: an image depends only on its seed (or on its index in an evaluation), never on the
batch size, the number of devices or what ran before a restart. Every JAX draw comes from a chain
of `jax.random.fold_in`s of one root key. A fold_in datum is either a counter (an optimizer step,
a sample index, a sampler step, a bits/dim pass), always < COUNTER_LIMIT = 2³⁰, or a named stream
below, COUNTER_LIMIT + k, so a counter and a stream folded into the same parent never meet.

Run streams, folded into the run key R = key(config.seed) (`run_key`):
  step s (counter)        training step s (losses.make_train_step): T_s = fold_in(R, s), split into
                          σ or t, noise and dropout (augmentation and patch crop split first)
  EVAL_STREAM = 2³⁰       evaluation losses (run_lib.train, eval_lib.eval_loss): fold_in(T_s, 2³⁰)
                          in training; batch i of --mode=eval: fold_in(fold_in(R, 2³⁰), i)
  SAMPLE_STREAM = 2³⁰+1   sample i's key K_i = fold_in(fold_in(R, 2³⁰ + 1), i) (`sample_keys`):
                          snapshots, sample grids, evaluation samples, inpainting and colorization
                          (run_lib, eval_lib, modes)
  INIT_STREAM = 2³⁰+2     parameter initialisation (run_lib): fold_in(R, 2³⁰ + 2)
  BPD_STREAM = 2³⁰+3      bits/dim (eval_lib): image i of pass r has the key
                          fold_in(fold_in(fold_in(R, 2³⁰ + 3), r), i) (`sample_keys`), from which
                          likelihood.log_likelihood draws its Hutchinson probe
  PATCH_STREAM = 2³⁰+4    Patch Diffusion's patch size of training step s: categorical of
                          fold_in(fold_in(R, 2³⁰ + 4), s), drawn on the host (losses.patch_schedule)
  CLASSIFIER_STREAM       --mode=train_classifier (classifier_lib): C = fold_in(R, 2³⁰ + 5); step s
    = 2³⁰+5               fold_in(C, s), split into t and noise; initialisation fold_in(C, 2³⁰);
                          evaluation batch i fold_in(fold_in(C, 2³⁰ + 1), i)
  ENCODE_STREAM = 2³⁰+6   a latent model's data (data.autoencoder): image i of training step s is
                          encoded as z ~ q(z | x) with noise normal(fold_in(fold_in(E, s), i)),
                          E = fold_in(R, 2³⁰ + 6); evaluation batch j: fold_in(fold_in(E, 2³⁰),
                          j) in place of fold_in(E, s), split n ways for training's [n, B, ...]
                          evaluation batches (latent.train_keys, eval_keys)

Per-sample streams, folded into a sample's key K: K_i above, or key(seed) for image `seed`
(`keys_for_seeds`: generate.py, --mode=sample with sampling.seeds):
  LATENT_STREAM = 2³⁰     x_T (the prior, EDM's latents, PFGM++'s prior): fold_in(K, 2³⁰)
                          (sampling.prior_sample, edm_sample, pfgmpp_latents)
  CLASS_STREAM = 2³⁰+1    the class when sampling.class_label = -1: fold_in(K, 2³⁰ + 1)
                          (sampling.class_labels)
  KNOWN_STREAM = 2³⁰+1    the known part of x_T in inpainting and colorization: fold_in(K, 2³⁰ + 1)
                          (controllable_generation.pc_replace); an alias of CLASS_STREAM
  PERTURB_STREAM = 2³⁰+2  PFGM++'s noise injection (sampling.perturb_alpha) before EDM sampler step i:
                          ε_i = normal(fold_in(fold_in(K, 2³⁰ + 2), i)) (sampling.edm_sample)
  step i (counter)        sampler step i: S_i = fold_in(K, i). EDM's churn noise ε_i = normal(S_i)
                          (sampling.edm_sample); PC's normal j of step i = normal(fold_in(S_i, j)):
                          predictor 0, corrector 1 + j (sampling.step_normal); inpainting and
                          colorization: predictor 0, replacements 1 and 2 + n_steps, corrector
                          2 + j (controllable_generation.pc_replace)

Aliases. KNOWN_STREAM = CLASS_STREAM by history, kept so that results do not change; harmless,
since controllable generation refuses class-conditional networks, so no key draws both. Across
the two lists values repeat (EVAL_STREAM = LATENT_STREAM, SAMPLE_STREAM = CLASS_STREAM =
KNOWN_STREAM) under different parents. One coincidence of parents: image `seed`'s key key(seed)
is also the run key R of a run with config.seed = seed, so for example that image's latents and
that run's evaluation losses share a key; they are different runs' draws and never meet.

Sources outside JAX keys (numbers kept where they are used):
  data order        tf.data shuffle seed config.seed + 2·process + train, tfds file order
                    config.seed (datasets)
  flip, uniform     per-element seed from tf.data.Dataset.random(config.seed·1000003 + 2·process +
  dequantization    train), stateless_split into (flip, dequantization) (datasets._pipeline);
                    bits/dim pass r runs the pipeline with config.seed + r (eval_lib)
  inpainting mask   'random': NumPy default_rng(config.seed) (controllable_generation)
  metrics           IS splits and KID subsets RandomState(2020) (evaluation); the FID image subset
                    RandomState(0) (fid, EDM's); the digits classifier's init key(0) (digits_metric)
  digits split      the 297 test digits: NumPy default_rng(0).permutation(1797)[:297]
                    (datasets.DIGITS_SPLIT_SEED, digits_split)

Devices: one 1-D mesh 'data' over all devices of all processes (`data_mesh`); batches and
per-sample keys are sharded along their batch axis.
"""
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

COUNTER_LIMIT = 2 ** 30     # fold_in data below are counters (steps, indices), from here streams

EVAL_STREAM = COUNTER_LIMIT           # run: evaluation losses
SAMPLE_STREAM = COUNTER_LIMIT + 1     # run: the base of the per-sample keys K_i
INIT_STREAM = COUNTER_LIMIT + 2       # run: parameter initialisation
BPD_STREAM = COUNTER_LIMIT + 3        # run: bits/dim probes
PATCH_STREAM = COUNTER_LIMIT + 4      # run: Patch Diffusion's patch size per training step
CLASSIFIER_STREAM = COUNTER_LIMIT + 5  # run: the noise-conditional classifier's training
ENCODE_STREAM = COUNTER_LIMIT + 6     # run: a latent model's posterior draws of its data
LATENT_STREAM = COUNTER_LIMIT         # per sample: x_T
CLASS_STREAM = COUNTER_LIMIT + 1      # per sample: the class drawn for sampling.class_label = -1
KNOWN_STREAM = COUNTER_LIMIT + 1      # per sample: the known part of x_T (alias of CLASS_STREAM)
PERTURB_STREAM = COUNTER_LIMIT + 2    # per sample: PFGM++'s injected noise per sampler step

RUN_STREAMS = {'eval': EVAL_STREAM, 'sample': SAMPLE_STREAM, 'init': INIT_STREAM,
               'bpd': BPD_STREAM, 'patch': PATCH_STREAM, 'classifier': CLASSIFIER_STREAM,
               'encode': ENCODE_STREAM}
SAMPLE_STREAMS = {'latent': LATENT_STREAM, 'class': CLASS_STREAM, 'known': KNOWN_STREAM,
                  'perturb': PERTURB_STREAM}
STREAMS = {**RUN_STREAMS, **SAMPLE_STREAMS}     # name -> value; name.upper() + '_STREAM' above
ALIASES = {'known': 'class'}                    # same value, same parent (see the docstring)


def run_key(config, *folds):
  """The run key R = key(config.seed), folded with `folds` in order (a stream, a step, ...)."""
  key = jax.random.key(config.seed)
  for f in folds:
    key = jax.random.fold_in(key, f)
  return key


@functools.partial(jax.jit, static_argnames=('n', 'sharding'))
def _fold_range(base, start, n, sharding):
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(start + jnp.arange(n))
  return keys if sharding is None else jax.lax.with_sharding_constraint(keys, sharding)


def sample_keys(base, n, start=0, sharding=None):
  """Per-sample keys [n]: key i = fold_in(base, start + i), so sample start + i depends on
  neither n nor the batch it is in; laid out by `sharding` (e.g. `run_lib.Run.sharded()`)."""
  return _fold_range(base, start, n=n, sharding=sharding)


def keys_for_seeds(seeds):
  """Per-image keys [B] = key(seed) (EDM's generate.py convention: image `seed` of any run)."""
  return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def data_mesh():
  """The 1-D device mesh 'data' over all devices of all processes."""
  return Mesh(np.array(jax.devices()), ('data',))
