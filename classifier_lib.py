"""`main.py --mode=train_classifier`: score_sde's noise-conditional classifier (Song+21 App. I.4)
for `sampling.classifier`, trained on a labeled set.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. I.4, Eq. 14).

The WideResnet (`models.wideresnet`, classifier.blocks_per_group / widen) learns p_t(y | x_t) by
cross-entropy on training images perturbed as the score model's: x_t = mean_t(x) + std_t n with
t ~ U(eps, T) of the config's SDE (VE: x + σ(t) n, VP: √ᾱ(t) x + √(1 − ᾱ(t)) n, sub-VP; EDM's
x + t n with log t uniform: `sde_lib.SDE.classifier_times`; the SDEs configs/rules_eval.py
admits), seen as the guidance sees it: standardised by CIFAR-10's
channel statistics, with the marginal std (controllable_generation.get_classifier_guide).
Adam (classifier.lr), training.batch_size images per step, training.n_jitted_steps steps per
call; convolutions in classifier.dtype (bfloat16 halves their cost on TPUs and recent GPUs; the
file holds float32 parameters either way, and the sampler's guidance runs in float32).

Devices and processes as the score model's training (run_lib): the parameters and Adam moments
are replicated over the 1-D mesh 'data' of every device of every process, each batch is sharded
along its batch axis from each process's own share of the data, and step s draws its t and noise
from fold_in(key, s) for the global batch, so the device count changes the result only by float
reduction order. A restart resumes the uninterrupted run: the state and the input pipeline's
position (data_state.py) are saved together; SIGTERM or Ctrl-C saves them and stops
(run_lib.Preemption); one run per folder (workdir_lock.py).

Writes <workdir>/classifier/ (process 0; the input pipeline's position: every process):
  checkpoint_<step>   every classifier.snapshot_freq steps and at the end: score_sde's format,
                      a Flax msgpack of the parameters, the file sampling.classifier reads
  checkpoint_<step>.json   the noise it was trained on (foreign/classifier.py checks it)
  state.msgpack       parameters, Adam moments, step and noise: a restart resumes from it
  checkpoints-data/   the input pipeline's position at the step of state.msgpack
  stats.jsonl, tensorboard/   loss and accuracy, and the accuracy on the evaluation split at
                      the end
"""
import dataclasses
import functools
import json
import signal

from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

import checkpointing
from configs import validate
import controllable_generation as cg
import data_state
import datasets
from foreign import classifier
from models.wideresnet import NoiseConditionalWideResNet
import outputs
import paths
import precision
import run_lib
import sde_lib
import streams
import utils
import workdir_lock


def noisy_logits(module, params, sde, eps, x, key):
  """Logits of images x [B, ...] (model units) perturbed as the score model's: t from
  `sde.classifier_times` (U(eps, T)), x_t = mean_t(x) + std_t n (t and n from `key`), seen as
  the guidance sees them."""
  t_key, n_key = jax.random.split(key)
  t = sde.classifier_times(t_key, x.shape[:1], eps)
  x_mean, sigma = sde.marginal_prob(x, t)
  x_t = x_mean + utils.bcast(sigma, x) * jax.random.normal(n_key, x.shape)
  return cg.classifier_logits(module, params, x_t, sigma)


@dataclasses.dataclass(frozen=True)
class _Run:
  """What a classifier training run builds once from its config."""
  config: object
  folder: str
  module: object
  sde: object
  eps: float
  optimizer: object
  key: object            # the CLASSIFIER_STREAM key
  mesh: object

  def sharding(self, axis=None):
    return run_lib.sharding(self.mesh, axis)


def _build(config, folder):
  c = config.classifier
  sde, eps = sde_lib.get_sde(config)
  return _Run(config, folder,
              NoiseConditionalWideResNet(c.blocks_per_group, c.widen, config.data.num_classes,
                                         precision.DTYPES[c.dtype.lower()]),
              sde, eps, optax.adam(c.lr), streams.run_key(config, streams.CLASSIFIER_STREAM),
              streams.data_mesh())


def make_step(run):
  """A jitted `step(params, opt_state, images [n, B, ...], labels [n, B], start) -> (params,
  opt_state, loss [n], accuracy [n])`: n Adam steps on the global batches; step s's t and noise
  from fold_in(run.key, s). The state is donated and replicated, the batches sharded."""
  def loss_fn(params, x, labels, key):
    logits = noisy_logits(run.module, params, run.sde, run.eps, x, key)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

  def one(carry, batch):
    params, opt_state = carry
    x, labels, key = batch
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, labels, key)
    updates, opt_state = run.optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

  def step(params, opt_state, images, labels, start):
    keys = streams.sample_keys(run.key, len(labels), start=start)     # step s: fold_in(key, s)
    (params, opt_state), (loss, accuracy) = jax.lax.scan(one, (params, opt_state),
                                                         (images, labels, keys))
    return params, opt_state, loss, accuracy
  repl, batch = run.sharding(), run.sharding(axis=1)
  return jax.jit(step, in_shardings=(repl, repl, batch, batch, repl),
                 out_shardings=repl, donate_argnums=(0, 1))


def train(config, workdir):
  """Train (or resume) the classifier in <workdir>/classifier; returns its parameters."""
  folder = paths.join(workdir, 'classifier')
  lock = workdir_lock.acquire(folder)      # before any file is written: one run per folder
  try:
    return _train(_build(config, folder), lock)
  finally:
    lock.release()


def _initial(run):
  """(params, opt_state, step): state.msgpack's where the folder has one, else fresh (parameters
  from the stream's key folded with COUNTER_LIMIT); replicated over the mesh."""
  size, channels = run.config.data.image_size, run.config.data.num_channels
  params = run.module.init(jax.random.fold_in(run.key, streams.COUNTER_LIMIT),
                           jnp.zeros((1, size, size, channels)), jnp.ones((1,)))['params']
  state = {'params': params, 'opt_state': run.optimizer.init(params), 'step': 0}
  path = paths.join(run.folder, 'state.msgpack')
  if paths.exists(path):
    try:
      saved = flax.serialization.msgpack_restore(paths.read_bytes(path))
      noise = json.loads(saved.pop('noise', 'null'))   # absent in states of before the record
    except Exception as err:  # pylint: disable=broad-except   # msgpack raises several types
      raise checkpointing.CheckpointReadError(
          f'{path} is unreadable ({type(err).__name__}: {err}); delete it to train the classifier '
          'from the start (its checkpoint_<step> files stay)') from None
    if noise not in (None, classifier.noise_record(run.config)):
      raise validate.ConfigError(
          f'{path} trains on {classifier.describe_noise(noise)}, not on this config\'s '
          f'{classifier.describe_noise(classifier.noise_record(run.config))}: resume with those '
          'fields, or train in another workdir. Nothing was written.')
    state = flax.serialization.from_state_dict(state, saved)
    logging.info('train_classifier: resuming at step %d from %s', int(state['step']), path)
  params, opt_state = jax.device_put((state['params'], state['opt_state']), run.sharding())
  return params, opt_state, int(state['step'])


def _global(run, element, axis):
  """(images, labels) of a tf.data element as global arrays sharded along batch axis `axis`;
  the labels checked on the host."""
  put = lambda x: jax.make_array_from_process_local_data(run.sharding(axis), x)  # noqa: E731
  return (put(datasets.get_data_scaler(run.config)(np.asarray(element['image']))),
          put(datasets.check_labels(run.config, np.asarray(element['label']),
                                  '--mode=train_classifier', '')))


def _train(run, lock):
  c, n = run.config.classifier, run.config.training.n_jitted_steps
  params, opt_state, step = _initial(run)

  def make():
    return {'train': datasets.get_dataset(run.config)[0]}
  iterators = data_state.iterators(run.folder, step, make, {'train': step // n},
                                   run_lib.pipeline_fields(run.config))
  step_fn, writer = make_step(run), outputs.Writer(run.folder)
  progress, preemption = utils.Progress('classifier steps', step, c.n_iters), run_lib.Preemption()
  logging.info('train_classifier: from step %d to %d on %d devices', step, c.n_iters,
               jax.device_count())
  try:
    while step < c.n_iters:
      lock.check()
      images, labels = _global(run, next(iterators['train']), axis=1)
      params, opt_state, loss, accuracy = step_fn(params, opt_state, images, labels, step)
      step, last = step + n, step + n >= c.n_iters
      log, kept = step % c.log_freq < n or last, step % c.snapshot_freq < n or last
      mean = float(loss.mean()) if log or kept else 0.    # a host sync only where needed
      if not np.isfinite(mean):                           # a NaN stays in the parameters
        raise run_lib.TrainingDivergedError(
            f'train_classifier: the loss is {mean} by step {step}; not saved (the last '
            f'checkpoint stays in {run.folder}). Lower classifier.lr ({c.lr})')
      if log:
        writer.write(step, {'classifier_loss': mean, 'classifier_accuracy': float(accuracy.mean())})
        progress.maybe_log(step)
      stop = preemption.reached(step) and not last
      if kept or stop:
        _save(run, step, params, opt_state, iterators, kept)
      if stop:
        raise run_lib.Preempted(
            f'{signal.Signals(preemption.signum).name}: train_classifier stopped at step {step} '
            f'after saving {run.folder}/state.msgpack; run the same command to go on from there',
            preemption.signum)
  finally:
    preemption.close()
  writer.write(step, {'classifier_eval_accuracy': _accuracy(run, params)})
  return jax.device_get(params)


def _save(run, step, params, opt_state, iterators, kept):
  """The input pipeline's position (every process), then state.msgpack and, if `kept`,
  checkpoint_<step> (process 0): a run killed between the two resumes from the previous pair."""
  params, opt_state = jax.device_get((params, opt_state))     # replicated: every process
  if not all(np.isfinite(x).all() for x in jax.tree.leaves(params)):
    raise run_lib.TrainingDivergedError(
        f'train_classifier: the parameters are not finite at step {step}; not saved (the last '
        f'checkpoint stays in {run.folder}). Lower classifier.lr ({run.config.classifier.lr})')
  data_state.save(run.folder, step, iterators, run_lib.pipeline_fields(run.config))
  if jax.process_index() != 0:
    return
  noise = classifier.noise_record(run.config)
  if kept:
    path = paths.join(run.folder, f'checkpoint_{step}')
    paths.write_text(path + '.json', json.dumps({'noise': noise}, indent=1))
    paths.write_bytes(path, flax.serialization.to_bytes(params))
  paths.write_bytes(paths.join(run.folder, 'state.msgpack'), flax.serialization.to_bytes(
      {'params': params, 'opt_state': opt_state, 'step': step, 'noise': json.dumps(noise)}))
  logging.info('train_classifier: step %d, wrote %s', step,
               f'{run.folder}/checkpoint_{step}' if kept else f'{run.folder}/state.msgpack')


def _accuracy(run, params):
  """Accuracy on the evaluation split (one pass of global batches of eval.batch_size), each
  image perturbed at a time drawn as in training, the same draws on any device count."""
  _, eval_ds = datasets.get_dataset(run.config, evaluation=True)
  eval_key, right, total = jax.random.fold_in(run.key, streams.COUNTER_LIMIT + 1), 0, 0

  @functools.partial(jax.jit, out_shardings=run.sharding())
  def correct(params, x, labels, i):
    logits = noisy_logits(run.module, params, run.sde, run.eps, x, jax.random.fold_in(eval_key, i))
    return jnp.sum(jnp.argmax(logits, -1) == labels)
  for i, element in enumerate(eval_ds.as_numpy_iterator()):
    images, labels = _global(run, element, axis=0)
    right += int(correct(params, images, labels, i))
    total += labels.shape[0]
  logging.info('train_classifier: accuracy %.3f on %d evaluation images (noise as in training)',
               right / max(total, 1), total)
  return right / max(total, 1)
