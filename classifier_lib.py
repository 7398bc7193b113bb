"""`main.py --mode=train_classifier`: score_sde's noise-conditional classifier (Song+21 App. I.4)
for `sampling.classifier`, trained on a labeled set.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. I.4, Eq. 14).

The WideResnet (`models.wideresnet`, classifier.blocks_per_group / widen) learns p_t(y | x_t) by
cross-entropy on training images perturbed as the score model's: x_t = mean_t(x) + std_t n with
t ~ U(eps, T) of the config's SDE (VE: x + σ(t) n; configs/rules_eval.py admits VE on [0, 1]
data, what the sampler's guidance feeds it), seen as the guidance sees it: standardised by
CIFAR-10's channel statistics, with the marginal std (controllable_generation.get_classifier_guide).
Adam (classifier.lr), training.batch_size images per step, training.n_jitted_steps steps per
call. Writes <workdir>/classifier/: checkpoint_<step> every classifier.snapshot_freq steps and at
the end (score_sde's format: a Flax msgpack of the parameters, the file sampling.classifier
reads), state.msgpack (parameters, Adam moments, step: a restart resumes from it) and the loss
and accuracy in stats.jsonl and TensorBoard, with the accuracy on the evaluation split at the end.
"""
from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

import controllable_generation as cg
import datasets
from models.wideresnet import NoiseConditionalWideResNet
import outputs
import paths
import run_lib
import sde_lib
import streams
import utils


def noisy_logits(module, params, sde, eps, x, key):
  """Logits of images x [B, ...] (model units) perturbed as the score model's: t ~ U(eps, T),
  x_t = mean_t(x) + std_t n (t and n from `key`), seen as the guidance sees them."""
  t_key, n_key = jax.random.split(key)
  t = jax.random.uniform(t_key, x.shape[:1], minval=eps, maxval=sde.T)
  x_mean, sigma = sde.marginal_prob(x, t)
  x_t = x_mean + utils.bcast(sigma, x) * jax.random.normal(n_key, x.shape)
  return module.apply({'params': params}, cg.classifier_input(x_t), sigma)


def make_step(module, sde, eps, optimizer):
  """A jitted `step(params, opt_state, images [n, B, ...], labels [n, B], key, start) ->
  (params, opt_state, loss [n], accuracy [n])`: n Adam steps; step s's t and noise from
  fold_in(key, s)."""
  def loss_fn(params, x, labels, key):
    logits = noisy_logits(module, params, sde, eps, x, key)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

  def one(carry, batch):
    params, opt_state = carry
    x, labels, key = batch
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, labels, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

  @jax.jit
  def step(params, opt_state, images, labels, key, start):
    keys = streams.sample_keys(key, len(labels), start=start)     # step s: fold_in(key, s)
    (params, opt_state), (loss, accuracy) = jax.lax.scan(one, (params, opt_state),
                                                         (images, labels, keys))
    return params, opt_state, loss, accuracy
  return step


def train(config, workdir):
  """Train (or resume) the classifier in <workdir>/classifier; returns its parameters."""
  c, folder = config.classifier, paths.join(workdir, 'classifier')
  module = NoiseConditionalWideResNet(c.blocks_per_group, c.widen, config.data.num_classes)
  sde, eps = sde_lib.get_sde(config)
  optimizer = optax.adam(c.lr)
  key = streams.run_key(config, streams.CLASSIFIER_STREAM)
  size, channels = config.data.image_size, config.data.num_channels
  params = module.init(jax.random.fold_in(key, streams.COUNTER_LIMIT),
                       jnp.zeros((1, size, size, channels)), jnp.ones((1,)))['params']
  state = {'params': params, 'opt_state': optimizer.init(params), 'step': 0}
  state_path = paths.join(folder, 'state.msgpack')
  if paths.exists(state_path):
    state = flax.serialization.from_bytes(state, paths.read_bytes(state_path))
    logging.info('train_classifier: resuming at step %d from %s', int(state['step']), state_path)
  train_ds, _ = datasets.get_dataset(config)
  step_fn = make_step(module, sde, eps, optimizer)
  scaler, writer = datasets.get_data_scaler(config), outputs.Writer(folder)
  params, opt_state, step = state['params'], state['opt_state'], int(state['step'])
  progress = utils.Progress('classifier steps', step, c.n_iters)
  for batch in train_ds.as_numpy_iterator():
    if step >= c.n_iters:
      break
    labels = _labels(config, batch['label'])
    params, opt_state, loss, accuracy = step_fn(params, opt_state, scaler(batch['image']), labels,
                                                key, step)
    step, last = step + len(labels), step + len(labels) >= c.n_iters
    log = step % c.log_freq < len(labels) or last
    save = step % c.snapshot_freq < len(labels) or last
    if (log or save) and not np.isfinite(float(loss.mean())):   # a NaN stays in the parameters
      raise run_lib.TrainingDivergedError(
          f'train_classifier: the loss is {float(loss.mean())} by step {step}; not saved (the '
          f'last checkpoint stays in {folder}). Lower classifier.lr ({c.lr})')
    if log:
      writer.write(step, {'classifier_loss': float(loss.mean()),
                          'classifier_accuracy': float(accuracy.mean())})
      progress.maybe_log(step)
    if save:
      _save(folder, step, params, opt_state)
  writer.write(step, {'classifier_eval_accuracy': _accuracy(config, module, params, sde, eps,
                                                            key)})
  return params


def _labels(config, labels):
  k = config.data.num_classes
  if labels.min() < 0 or labels.max() >= k:
    raise datasets.MalformedDataError(
        f'--mode=train_classifier needs labels in [0, data.num_classes = {k}); data.dataset = '
        f'{config.data.dataset!r} has {"none" if labels.min() < 0 else labels.max()}')
  return labels


def _save(folder, step, params, opt_state):
  paths.write_bytes(paths.join(folder, f'checkpoint_{step}'), flax.serialization.to_bytes(params))
  paths.write_bytes(paths.join(folder, 'state.msgpack'), flax.serialization.to_bytes(
      {'params': params, 'opt_state': opt_state, 'step': step}))
  logging.info('train_classifier: step %d, wrote %s/checkpoint_%d', step, folder, step)


def _accuracy(config, module, params, sde, eps, key):
  """Accuracy on the evaluation split (one pass, eval.batch_size), each image perturbed at
  t ~ U(eps, T) as in training."""
  _, eval_ds = datasets.get_dataset(config, evaluation=True)
  scaler, right, total = datasets.get_data_scaler(config), 0, 0
  eval_key = jax.random.fold_in(key, streams.COUNTER_LIMIT + 1)

  @jax.jit
  def predict(x, i):
    return jnp.argmax(noisy_logits(module, params, sde, eps, x, jax.random.fold_in(eval_key, i)),
                      -1)
  for i, batch in enumerate(eval_ds.as_numpy_iterator()):
    labels = _labels(config, batch['label'])
    right += int(np.sum(np.asarray(predict(scaler(batch['image']), i)) == labels))
    total += len(labels)
  logging.info('train_classifier: accuracy %.3f on %d evaluation images (t ~ U(eps, T))',
               right / max(total, 1), total)
  return right / max(total, 1)
