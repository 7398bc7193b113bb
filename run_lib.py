"""Training and sampling runs (score_sde's run_lib; Song+21, arXiv:2011.13456).

  train(config, workdir[, checkpoint])     train with checkpoints, logs and snapshot samples
  sample(config, workdir[, checkpoint])    per-seed images or one grid (newest checkpoint)
  fid_stats(config, workdir)               Inception reference statistics of the training set
Each takes `checkpoint`, --checkpoint's file, URL or orbax step directory (foreign.load).
Evaluation runs (loss, bits/dim, sample metrics) are in eval_lib.py; the helpers they share
(build, keys, batches, config checks) are here.

Devices: one 1-D mesh 'data' over all devices of all processes. Batches are sharded along
their batch axis, the train state is replicated, and each process feeds its own share of the
data (`jax.make_array_from_process_local_data`). Randomness is a function of (config.seed,
step): optimizer step s uses fold_in(key(seed), s) (losses.make_train_step), so a resumed run
repeats an uninterrupted one exactly; the input pipeline resumes from its position saved with
the checkpoint (data_state.py: checkpoints-data/). Sample i of an evaluation uses
fold_in(key(seed), SAMPLE_STREAM) folded with i, whatever the batch size (every stream:
streams.py).

Run directory (see checkpointing.py for checkpoints/ and checkpoints-meta/, eval_lib.py for
<eval_folder>/), a local folder or a gs:// / s3:// URI (every file goes through paths.py):
  config.json  stats.jsonl  tensorboard/  train.lock (while training: workdir_lock.py)
  samples/iter_<step>.{png,npz}  log.txt (main.py)
"""
import dataclasses
import functools
import json
import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

import checkpointing
from configs import validate
import controllable_generation
import data_state
import datasets
import evaluation
import latent
import generate
import losses
import outputs
import paths
import models  # pylint: disable=unused-import   # registers the architectures
from models import utils as mutils
import sampling
import sde_lib
import streams
import utils
import workdir_lock



class TrainingDivergedError(FloatingPointError):
  """The training loss became NaN or infinite; the message says where and what to try."""


class Preempted(Exception):
  """Training stopped on SIGTERM or Ctrl-C after saving a resume checkpoint; `signum` is the
  signal (main.py exits with 128 + signum, as a process killed by it)."""

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum


class Preemption:
  """SIGTERM (a preempted VM, `scancel`, Kubernetes) or Ctrl-C as a request to save and stop at
  the next step boundary; a second Ctrl-C stops at once (KeyboardInterrupt). Handlers are set for
  the loop only (`close` restores the previous ones; an ignored signal stays ignored). Several
  processes stop together at JAX's preemption sync point, which the coordination service sets at
  the same step on every process when any of them gets SIGTERM: JAX takes SIGTERM there, and
  Ctrl-C sends this process a SIGTERM."""
  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum, self._previous, self._synced = None, {}, jax.process_count() > 1
    if threading.current_thread() is threading.main_thread():
      previous = {s: signal.signal(s, self._request) for s in self.SIGNALS
                  if signal.getsignal(s) is not signal.SIG_IGN        # e.g. Ctrl-C in `cmd &`
                  and not (self._synced and s == signal.SIGTERM)}
      self._previous = {s: signal.SIG_DFL if h is None else h for s, h in previous.items()}

  def _request(self, signum, frame):
    del frame
    if self.signum == signal.SIGINT == signum:
      signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
      raise KeyboardInterrupt
    self.signum = signum
    if signum == signal.SIGINT:
      logging.warning('Ctrl-C: stopping after the next step and its resume checkpoint '
                      '(Ctrl-C again stops at once, losing the steps since the last checkpoint)')
    if self._synced:
      os.kill(os.getpid(), signal.SIGTERM)      # JAX's preemption notice to every process

  def reached(self, step):
    if not self._synced:
      return self.signum is not None
    if not multihost_utils.reached_preemption_sync_point(step):
      return False
    self.signum = self.signum or signal.SIGTERM
    return True

  def close(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


@dataclasses.dataclass(frozen=True)
class Run:
  """What every mode builds once from a config."""
  config: object
  mesh: Mesh
  model: object
  sde: object
  eps: float                # smallest sampling time (bits/dim: eval.likelihood_eps)
  optimizer: object
  loss_fn: object           # training loss
  eval_loss_fn: object      # evaluation loss (STF's target replaced by the plain one)

  @property
  def replicated(self):
    return sharding(self.mesh)

  def sharded(self, axis=0):
    """Sharding of an array whose axis `axis` is the (global) batch."""
    return sharding(self.mesh, axis)

  @property
  def sample_shape(self):
    d = self.config.data
    return (d.image_size, d.image_size, d.num_channels)


def sharding(mesh, axis=None):
  """Replicated over `mesh` (axis None), or sharded along 'data' on the batch axis `axis`."""
  return NamedSharding(mesh, P() if axis is None else P(*([None] * axis), 'data'))


def pipeline_fields(config):
  """The config fields an input pipeline is built from, besides its shapes (data_state.py)."""
  return {'seed': config.seed, 'data': config.data.to_dict()}


def build(config):
  mesh = streams.data_mesh()
  sde, eps = sde_lib.get_sde(config)
  return Run(config, mesh, mutils.get_model(config), sde, eps, losses.get_optimizer(config),
             losses.get_loss_fn(config, sde), losses.get_loss_fn(config, sde, train=False))


def gather(x):
  """A (possibly multi-process) global array as one NumPy array on every process."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def init_state(run):
  """A fresh TrainState (parameters from the INIT stream), replicated over the mesh."""
  params = mutils.init_model(streams.run_key(run.config, streams.INIT_STREAM), run.config)[1]
  return jax.device_put(losses.init_train_state(params, run.optimizer), run.replicated)


def _abstract_state(run):
  state = jax.eval_shape(lambda: losses.init_train_state(mutils.init_model(
      streams.run_key(run.config, streams.INIT_STREAM), run.config)[1], run.optimizer))
  return checkpointing.abstract(state, run.replicated)


def global_batches(elements, run, axis):
  """Scaled global batches (batch axis `axis`) of a tf.data dataset or iterator `elements`:
  images, or {'image', 'class_labels' (one-hot)} for a class-conditional model (labels checked
  on the host)."""
  config, scaler = run.config, datasets.get_data_scaler(run.config)
  put = functools.partial(jax.make_array_from_process_local_data, run.sharded(axis))
  onehot = np.eye(config.data.num_classes, dtype=np.float32)
  for element in elements:
    batch = {k: np.asarray(v) for k, v in element.items()}
    images = put(scaler(batch['image']))
    yield {'image': images, 'class_labels': put(onehot[datasets.check_labels(
        config, batch['label'])])} if config.model.class_conditional else images


def train_batches(elements, run, start):
  """`global_batches` of the training elements for the calls from step `start`: with Patch
  Diffusion's batch multiplier (`losses.patch_batch_multipliers`) step s joins the next m(s)
  elements along the batch axis (the reference reads m DataLoader batches), else one element per
  call. A latent model's (data.autoencoder) are encoded (`latent.encoded`)."""
  muls = losses.patch_batch_multipliers(run.config)
  if muls is not None:
    elements = _joined(iter(elements), muls, start)
  batches = global_batches(elements, run, axis=1)
  if run.config.data.autoencoder:
    batches = latent.encoded(batches, run.config, run.replicated,
                             latent.train_keys(run.config, start))
  return batches


def eval_batches(elements, run, axis, start=0):
  """`global_batches` of evaluation elements, a latent model's encoded (`latent.eval_keys` from
  batch `start`)."""
  batches = global_batches(elements, run, axis)
  if run.config.data.autoencoder:
    batches = latent.encoded(batches, run.config, run.replicated, latent.eval_keys(
        run.config, start, run.config.training.n_jitted_steps if axis else None))
  return batches


def _joined(elements, muls, step):
  while parts := [e for _, e in zip(range(muls(step)), elements)]:
    yield {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=1) for k in parts[0]}
    step += 1


def train_elements_before(config, step):
  """The training elements the calls before `step` read (data_state's replay count)."""
  if losses.patch_batch_multipliers(config) is None:
    return step // config.training.n_jitted_steps
  return sum(losses.patch_schedule(config)(0, step))


# ------------------------------------------------------------------------------------------------
# Training

@dataclasses.dataclass(frozen=True)
class TrainFns:
  train_step: object    # (state, batch [n, B, ...], rng, step) -> (state, metrics): jitted, 'loss'
  #                       [n] and, with float16's loss scaling, 'loss_scale' [n]; step = the host's
  #                       state.step (Patch Diffusion draws its patch sizes from it)
  jitted_step: object   # the jax.jit behind train_step: one compilation (per patch-size tuple)
  pack: object          # TrainState -> train_step's state: laid out flat (jitted) with
  #                       training.flat_params (losses.FlatParams), else the same object
  unpack: object        # the inverse of pack: the TrainState of trees (checkpoints, eval)
  eval_loss: object     # jitted (state, batch [n, B, ...], rng) -> EMA loss over the n·B images
  all_finite: object    # jitted state -> bool
  sample: object        # jitted (keys [B], params) -> (images in [0, 1], nfe)


def _same(state):
  return state


def make_train_fns(run, template=None):
  """The jitted functions of a training run; each compiles once (state donated to train_step),
  the train step once per tuple of patch sizes with Patch Diffusion (losses.patch_schedule).
  `template`: the run's abstract TrainState (`_abstract_state`) if the caller has it."""
  config, repl, batch = run.config, run.replicated, run.sharded(axis=1)
  template = template or _abstract_state(run)
  layout = losses.FlatParams.of(template.params) if config.training.flat_params else None
  jitted = jax.jit(
      losses.make_train_step(run.model, run.loss_fn, run.optimizer, losses.get_ema_rate(config),
                             config.training.grad_accum, layout.unravel if layout else None),
      in_shardings=(repl, batch, repl), out_shardings=(repl, repl), static_argnums=3,
      donate_argnums=0)
  schedule = losses.patch_schedule(config) if config.training.patch_real_p < 1 else None

  def train_step(state, batch, rng, step):
    patches = schedule(step, config.training.n_jitted_steps) if schedule else None
    return jitted(state, batch, rng, patches)
  eval_step = losses.make_eval_step(run.model, run.eval_loss_fn)

  def eval_loss(state, batch, rng):   # one forward over all n·B images (equal-size batches)
    return eval_step(state, jax.tree.map(lambda b: b.reshape((-1,) + b.shape[2:]), batch), rng)

  def all_finite(state):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state)
                              if jnp.issubdtype(x.dtype, jnp.inexact)]))
  return TrainFns(
      train_step, jitted,
      jax.jit(layout.flat, out_shardings=repl) if layout else _same,
      jax.jit(lambda state: layout.tree(state, template), out_shardings=repl) if layout else _same,
      jax.jit(eval_loss, in_shardings=(repl, batch, repl), out_shardings=repl),
      jax.jit(all_finite, out_shardings=repl),
      make_sample_fn(run))


def make_sample_fn(run):
  """config.sampling's jitted sampler `(keys [B], params[, x_T]) -> (images in [0, 1], nfe)`,
  guided by `sampling.classifier` where one is given."""
  guide = decoder = None
  if run.config.sampling.classifier:
    guide = controllable_generation.get_classifier_guide(run.config, run.sde)
  if run.config.data.autoencoder:
    decode, params = latent.decoder(run.config)
    decoder = decode, jax.device_put(params, run.replicated)
  return sampling.get_sampling_fn(run.config, run.sde, run.model, run.sample_shape,
                                  datasets.get_data_inverse_scaler(run.config), run.eps, guide,
                                  decoder)


class _Trainer:
  """The state of one training run and its periodic actions (log, eval, save, sample)."""

  def __init__(self, run, workdir, lock):
    self.run, self.workdir, self.config, self.lock = run, workdir, run.config, lock
    self.template = _abstract_state(run)   # traced once: the layout and the restore target
    self.fns = make_train_fns(run, self.template)
    self.kept = checkpointing.kept_manager(workdir)
    self.meta = checkpointing.meta_manager(workdir)
    self.writer = outputs.Writer(workdir)
    self.iterators = {}   # 'train', 'eval' -> tf.data iterators, set by data(), saved by save()

  def initial_state(self, checkpoint=''):
    """(state, resumed): the newest state in the workdir (resumed); else --checkpoint's, else a
    fresh one."""
    target = self.template
    restored = checkpointing.restore_latest((self.meta, self.kept), target)
    if restored is not None:
      if checkpoint:
        logging.warning('resuming from the workdir; --checkpoint=%s is not used', checkpoint)
      return restored, True
    if checkpoint:
      return checkpointing.load_given(checkpoint, self.config, self.run.optimizer, target), False
    return init_state(self.run), False

  def data(self, start, resumed):
    """The training and eval-loss batches from step `start`: where the run left them if
    `resumed` (data_state.py), else from their beginning (a fresh or fine-tuning run)."""
    config, t = self.config, self.config.training

    def make():
      return dict(zip(('train', 'eval'), datasets.get_dataset(
          config, uniform_dequantization=config.data.uniform_dequantization)))
    self.iterators = data_state.iterators(
        self.workdir, start if resumed else 0, make,
        {'train': train_elements_before(config, start), 'eval': start // t.eval_freq},
        pipeline_fields(self.config))
    return (train_batches(self.iterators['train'], self.run, start),
            eval_batches(self.iterators['eval'], self.run, 1, start // t.eval_freq))

  def last_good_checkpoint(self):
    saved = [(s, m) for m in (self.kept, self.meta) for s in m.all_steps()]
    if not saved:
      return 'none (no checkpoint was written yet)'
    return checkpointing.step_path(*max(saved, key=lambda c: c[0])[::-1])

  def diverged(self, first_step, losses_):
    bad = int(np.argmin(np.isfinite(losses_)))
    raise TrainingDivergedError(
        f'Training diverged: the loss is {losses_[bad]} at optimizer step {first_step + bad + 1}. '
        f'Stopped without saving it; the last good checkpoint is {self.last_good_checkpoint()} '
        f'(a restart resumes from there and would diverge again). Try a lower optim.lr '
        f'(now {self.config.optim.lr}), a longer optim.warmup (now {self.config.optim.warmup}), '
        f'gradient clipping optim.grad_clip > 0 (now {self.config.optim.grad_clip}), or check '
        f'the data scaling (data.centered).')

  def save(self, state, step, kept):
    if not bool(self.fns.all_finite(state)):
      self.diverged(step - 1, np.array([np.nan]))
    data_state.save(self.workdir, step, self.iterators, pipeline_fields(self.config))
    checkpointing.save(self.meta, state)
    if kept and checkpointing.save(self.kept, state) and self.config.training.snapshot_sampling:
      self.snapshot(state, step)

  def snapshot(self, state, step):
    n = self.config.training.batch_size
    keys = streams.sample_keys(streams.run_key(self.config, streams.SAMPLE_STREAM), n,
                               sharding=self.run.sharded())
    images, _ = self.fns.sample(keys, state.ema_params)
    try:
      outputs.save_samples(gather(images), paths.join(self.workdir, 'samples', f'iter_{step}'))
    except evaluation.SamplesNotFiniteError as err:     # the loss was finite: training goes on
      logging.warning('%s', err)


def _config_path(workdir):
  return paths.join(workdir, 'config.json')


def _write_config(config, workdir):
  if jax.process_index() == 0:
    paths.write_text(_config_path(workdir), config.to_json(indent=2))


def trained_n_iters(workdir):
  """training.n_iters of the run in `workdir` as its config.json records it (rewritten when the
  run is resumed), or None where there is no readable record."""
  try:
    return int(json.loads(paths.read_text(_config_path(workdir)))['training']['n_iters'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def train(config, workdir, checkpoint=''):
  """Train from scratch, or from `checkpoint` (fine-tuning published weights), or resume from the
  newest readable checkpoint in `workdir`."""
  validate.check_run(config, 'train')
  datasets.check_source(config)           # missing data fail now, not after the network's init
  lock = workdir_lock.acquire(workdir)    # before any file is written: one run per workdir
  try:
    return _train(config, workdir, checkpoint, lock)
  finally:
    lock.release()


def _train(config, workdir, checkpoint, lock):
  t = config.training
  trainer = _Trainer(build(config), workdir, lock)
  state, resumed = trainer.initial_state(checkpoint)
  state = _aligned(state, resumed, t)
  step = int(state.step)
  checkpointing.check_room(workdir, state, max(t.n_iters - step, 0) // t.snapshot_freq + 2)
  _write_config(config, workdir)          # after the resume: a refused one leaves the run's own
  train_iter, eval_iter = trainer.data(step, resumed)
  logging.info('training from step %d to %d on %d devices', step, t.n_iters, jax.device_count())
  preemption = Preemption()
  packed = trainer.fns.pack(state)
  del state                               # its arrays go: the loop holds the packed state only
  try:
    return _train_loop(trainer, packed, step, train_iter, eval_iter, preemption)
  finally:
    preemption.close()


def _aligned(state, resumed, t):
  """`state`, at a step that training.n_jitted_steps divides: from it, the run reaches every log,
  eval and checkpoint step. A fine-tuning run's step (a file's count: EDM's kimg as steps) is
  rounded down; a resumed run at another step (stopped, e.g. by Ctrl-C, with another
  n_jitted_steps) is refused with a ConfigError naming the fix."""
  step, n = int(state.step), t.n_jitted_steps
  if step % n == 0 or step >= t.n_iters:
    return state
  if not resumed:
    logging.info('starting the fine-tuning run at step %d, a multiple of training.n_jitted_steps '
                 '(the file records %d)', step - step % n, step)
    return state.replace(step=jax.device_put(np.int32(step - step % n), state.step.sharding))
  raise validate.ConfigError(
      f'the run resumes at step {step}, which training.n_jitted_steps = {n} does not divide: '
      f'its log, eval and checkpoint steps would never come. Resume with '
      f'--config.training.n_jitted_steps=1 --config.training.n_iters={-(-step // n) * n} '
      f'first, then with n_jitted_steps = {n}. Nothing was written.')


def _train_loop(trainer, packed, step, train_iter, eval_iter, preemption):
  """`train`'s steps from `step` to training.n_iters on the state `packed` (TrainFns.pack); the
  final TrainState."""
  config, fns = trainer.config, trainer.fns
  t, train_key = config.training, streams.run_key(config)
  progress = utils.Progress('step', step, t.n_iters)
  while step < t.n_iters:
    trainer.lock.check()
    packed, metrics = fns.train_step(packed, next(train_iter), train_key, step)
    losses_ = np.asarray(metrics['loss'])
    if not np.isfinite(losses_).all():
      trainer.diverged(step, losses_)
    step += t.n_jitted_steps
    if step % t.log_freq == 0:
      logging.info('%s, loss %.5f', progress.line(step), losses_.mean())
      latest = {k: float(np.asarray(v)[-1]) for k, v in metrics.items() if k != 'loss'}
      trainer.writer.write(step, {'loss': losses_.mean(), 'steps_per_s': progress.rate,
                                  **latest})     # float16: the loss scale
    done = step >= t.n_iters
    saved = step % t.snapshot_freq_for_preemption == 0 or step % t.snapshot_freq == 0 or done
    stop = preemption.reached(step) and not done
    if step % t.eval_freq == 0 or saved or stop:
      state = fns.unpack(packed)
    if step % t.eval_freq == 0:
      eval_loss = fns.eval_loss(state, next(eval_iter),
                                streams.run_key(config, step, streams.EVAL_STREAM))
      trainer.writer.write(step, {'eval_loss': eval_loss})
    if saved:
      trainer.save(state, step, kept=step % t.snapshot_freq == 0 or done)
    if stop:
      if not saved:
        trainer.save(state, step, kept=False)
      raise Preempted(f'{signal.Signals(preemption.signum).name}: stopped at step {step} after '
                      f'saving a resume checkpoint in {trainer.workdir}; run the same command to '
                      'go on from there', preemption.signum)
  logging.info('training done at step %d', step)
  return fns.unpack(packed)


# ------------------------------------------------------------------------------------------------
# Evaluation (the runs are in eval_lib.py)

def eval_steps(config):
  """The checkpoint steps `--mode=eval` evaluates: the multiples of training.snapshot_freq in
  [begin, end], with begin / end = eval.begin_step / end_step, or where those are -1,
  eval.begin_ckpt / end_ckpt × snapshot_freq (score_sde's checkpoint indices)."""
  e, freq = config.eval, config.training.snapshot_freq
  begin = e.begin_step if e.begin_step >= 0 else e.begin_ckpt * freq
  end = e.end_step if e.end_step >= 0 else e.end_ckpt * freq
  return list(range(-(-begin // freq) * freq, end + 1, freq))


# ------------------------------------------------------------------------------------------------
# Sampling and reference statistics

def restore_newest(run, workdir, checkpoint=''):
  """`checkpoint` (a file, URL or orbax step directory) if given, else the newest readable
  checkpoint in `workdir` (resume or kept), or a checkpointing.NoCheckpointError."""
  if checkpoint:
    return checkpointing.load_given(checkpoint, run.config, run.optimizer, _abstract_state(run))
  managers = (checkpointing.meta_manager(workdir), checkpointing.kept_manager(workdir))
  state = checkpointing.restore_latest(managers, _abstract_state(run), verb='restored')
  if state is None:
    raise checkpointing.NoCheckpointError(
        f'no readable checkpoint in {workdir}/{checkpointing.KEPT} or {workdir}/'
        f'{checkpointing.META}; train first (--mode=train) or pass --checkpoint=PATH_OR_URL')
  return state


def sample(config, workdir, checkpoint=''):
  """Samples from `checkpoint` or the newest readable checkpoint in `workdir`: one image per
  seed of sampling.seeds (generate.py, EDM layout, in sampling.out_dir or samples/seeds_<step>/,
  which records the settings and refuses others), or else one grid of eval.batch_size images
  (samples/sample_<step>.{png,npz}); sampling.latents gives x_T."""
  validate.check_run(config, 'sample')
  run, s = build(config), config.sampling
  seeds = generate.parse_seeds(s.seeds) if s.seeds else None
  n = len(seeds) if seeds else config.eval.batch_size
  latents = generate.read_latents(s.latents, n, run.sample_shape) if s.latents else None
  state = restore_newest(run, workdir, checkpoint)
  sample_fn, step = make_sample_fn(run), int(state.step)
  if seeds:
    out_dir = s.out_dir or paths.join(workdir, 'samples', f'seeds_{step}')
    generate.check_settings(out_dir, generate.image_settings(
        config, checkpoint or f'{workdir} (step {step})'))
    done = generate.generate_seeds(config, sample_fn, state.ema_params, seeds, out_dir,
                                   config.eval.batch_size, s.image_format, latents)
    logging.info('wrote %d images to %s', len(done), out_dir)
    return
  keys = streams.sample_keys(streams.run_key(config, streams.SAMPLE_STREAM), n,
                             sharding=run.sharded())
  given = None if latents is None else jax.device_put(latents, run.sharded())
  images, nfe = sample_fn(keys, state.ema_params, given)
  logging.info('sampled %d images with %d network evaluations each', len(keys), int(nfe))
  outputs.save_samples(gather(images), paths.join(workdir, 'samples', f'sample_{step}'))


def fid_stats(config, workdir):
  """Inception statistics (mu, sigma, pool_3) of the training split -> eval.fid_stats_path, or
  where --mode=eval looks first (evaluation.stats_path_candidates)."""
  del workdir
  validate.check_run(config, 'fid_stats')
  inception = evaluation.load_inception(evaluation.default_inception_path(config))
  inception_fn = evaluation.get_inception_fn(inception['params'], inception['preprocessing'])
  train_ds, _ = datasets.get_dataset(config, evaluation=True)
  batches = (b['image'] * 255. for b in train_ds.as_numpy_iterator())
  path = evaluation.stats_path_candidates(config)[0]     # where --mode=eval looks first
  n = int(train_ds.cardinality())                        # batches; < 0: unknown (TFRecords)
  total = n * (config.eval.batch_size // jax.process_count()) if n >= 0 else None
  stats = evaluation.fid_stats_from_images(batches, inception_fn, path, total=total)
  logging.info('wrote %s (%d images)', path, len(stats['pool_3']))
