"""Evaluation runs, `--mode=eval` (score_sde's run_lib.evaluate; Song+21, arXiv:2011.13456): the
eval loss, bits/dim and sample metrics of a run's checkpoints, beside training and resumable.

  evaluate(config, workdir, eval_folder[, checkpoint])

Checkpoints: the kept steps `run_lib.eval_steps(config)` (multiples of training.snapshot_freq in
eval.begin_step..end_step; -1 = eval.begin_ckpt..end_ckpt × snapshot_freq, score_sde's indices),
in order. With eval.wait_for_checkpoints one that is not written yet is polled for every
eval.poll_interval_s, with a log line, up to eval.wait_timeout_s, then skipped with a warning; a
step older than the newest kept one, or after the end of a finished run (its config.json's
training.n_iters reached), will never be written and is skipped at once. Nothing evaluated is a
checkpointing.NoCheckpointError. `checkpoint` (--checkpoint: a file, URL or orbax step
directory) evaluates only that one.

Results in <workdir>/<eval_folder>/, L = the step (--checkpoint: its file name without suffix):
  report_<L>.json   {'step', 'eval_loss', 'bpd', 'sample_metrics': {...}}; written last, so a
                    checkpoint with a report is done (skipped when the eval runs again)
  report_<L>.npz    all_losses [batches], bpd [passes · images]
  step_<L>/         work files, each written as soon as its unit is done; a restarted eval reads
                    them instead of redoing the work:
                      loss.npz, bpd_<pass>_<batch>.npz, samples_<round>.npz (uint8),
                      statistics_<round>.npz (the round's features: Inception pool_3 / logits /
                      logits_unbiased, or for DIGITS the classifier's 'features')
  stats.jsonl, tensorboard/   the scalars per step

Bits/dim integrate the probability-flow ODE from t = eval.likelihood_eps (Song+21 App. D.2: 1e-5
for every SDE; for EDM's process t = σ), not from the sampling eps. Randomness does not depend on
what was done before a restart: pass r over the bpd split draws its dequantization noise with
seed config.seed + r, the trace-estimator probe of image i is fold_in(fold_in(fold_in(key(seed),
BPD_STREAM), r), i), and sample i is drawn from fold_in(fold_in(key(seed), SAMPLE_STREAM), i)
(the streams: streams.py).

Multi-process: every process computes, process 0 writes, and every read of a file that process
0 writes comes after a barrier (`_sync`); whether a checkpoint has arrived is process 0's view,
broadcast to the others.
"""
import dataclasses
import functools
import math
import os
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

import checkpointing
from configs import validate
import datasets
import digits_metric
import evaluation
import likelihood
import losses
from models import precond
from models import utils as mutils
import outputs
import paths
import run_lib
import streams
import utils
import workdir_lock

_WAIT, _FOUND, _SKIP = 0, 1, 2     # states of a polled checkpoint (_poll)


@dataclasses.dataclass(frozen=True)
class EvalFns:
  loss: object          # jitted (state, x [B, ...], rng) -> mean EMA loss
  bpd: object           # jitted (keys [B], x [B, ...], params) -> (bpd [B], z, nfe)
  sample: object        # jitted (keys [B], params) -> (images in [0, 1], nfe)


def make_eval_fns(run, make_score_fn=None):
  """The jitted functions of an evaluation; bits/dim from t = eval.likelihood_eps.

  Args:
    make_score_fn: params -> score_fn(x, t); default: the run's network through its
      preconditioning (tests pass an exact score).
  """
  config = run.config
  repl, batch = run.replicated, run.sharded()

  def network_score_fn(params):
    return precond.get_score_fn(config, run.sde,
                                mutils.get_model_fn(run.model, params, train=False))
  return EvalFns(
      jax.jit(losses.make_eval_step(run.model, run.eval_loss_fn), in_shardings=(repl, batch, repl),
              out_shardings=repl),
      likelihood.get_likelihood_fn(run.sde, make_score_fn or network_score_fn,
                                   datasets.get_data_inverse_scaler(config),
                                   rtol=config.sampling.ode_rtol, atol=config.sampling.ode_atol,
                                   eps=config.eval.likelihood_eps),
      run_lib.make_sample_fn(run))


@dataclasses.dataclass(frozen=True)
class SampleScorer:
  """Sample metrics in two parts, so that a finished sampling round keeps its features."""
  features: object      # uint8 images [B, H, W, C] -> {name: [B, ...]} (one round)
  metrics: object       # {name: [N, ...]} (all rounds) -> {metric: float}


def sample_scorer(run, eval_dir):
  """For DIGITS the digits metrics (digits_metric.DigitsReference: each model number next to the
  real test split's at equal n, logged on one line), else Inception FID / IS (eval.is_convention)
  / KID against the reference statistics (evaluation.default_stats_path; provenance checked unless
  eval.allow_foreign_stats). Missing or foreign files fail here, before any work."""
  config = run.config
  if config.data.dataset == 'DIGITS':
    ref = digits_metric.DigitsReference(
        digits_metric.load_digits_classifier(os.path.join(eval_dir, 'digits_classifier')))
    n = min(digits_metric.EQUAL_N, config.eval.num_samples)
    logging.info('digits metrics of the real test split (vs train) at n=%d: %s', n, ref.real(n))

    def metrics(outputs):
      scores = ref.metrics(outputs)
      logging.info(digits_metric.comparison_line(scores))
      return scores
    return SampleScorer(lambda images: ref.outputs(images / 255.), metrics)
  e = config.eval
  inception = evaluation.load_inception(evaluation.default_inception_path(config))
  ref_stats = evaluation.load_stats(evaluation.default_stats_path(config),
                                    inception['preprocessing'], e.allow_foreign_stats)
  inception_fn = evaluation.get_inception_fn(inception['params'], inception['preprocessing'],
                                             mesh=run.mesh)
  return SampleScorer(lambda images: evaluation.inception_features([images], inception_fn),
                      lambda f: evaluation.sample_metrics(f, ref_stats,
                                                          is_convention=e.is_convention))


def _sync(name):
  """A barrier of all processes; a file process 0 wrote before it can be read after it."""
  multihost_utils.sync_global_devices(name)


def _batch_count(ds):
  """The number of batches of `ds`, the same on every process (each reads the whole evaluation
  split, datasets.py). A count tf.data does not know (TFRecord sets) is counted by one pass."""
  n = int(ds.cardinality())
  return n if n >= 0 else int(ds.reduce(np.int64(0), lambda count, _: count + 1))


class Work:
  """The files of one checkpoint's evaluation (see the module docstring). `has` and `load` read
  process 0's files: call them after a `_sync`."""

  def __init__(self, eval_dir, label):
    self.label = label
    self.dir = paths.join(eval_dir, f'step_{label}')
    self.report = paths.join(eval_dir, f'report_{label}')

  def path(self, name):
    return paths.join(self.dir, name)

  def has(self, name):
    return paths.exists(self.path(name))

  def load(self, name):
    return paths.load_npz(self.path(name))

  def save(self, name, **arrays):
    outputs.save_npz(self.path(name), **arrays)


def eval_loss(run, fns, state, work):
  """The EMA loss over the eval split (loss.npz) -> ({'eval_loss'}, {'all_losses'})."""
  _sync(f'loss {work.label}')
  if not work.has('loss.npz'):
    ds = datasets.get_dataset(run.config, evaluation=True)[1]
    key = streams.run_key(run.config, streams.EVAL_STREAM)
    values = [float(fns.loss(state, x, jax.random.fold_in(key, i)))
              for i, x in enumerate(run_lib.eval_batches(ds, run, axis=0))]
    work.save('loss.npz', all_losses=np.array(values), mean_loss=np.mean(values))
    _sync(f'loss saved {work.label}')
  all_losses = work.load('loss.npz')['all_losses']
  return {'eval_loss': float(np.mean(all_losses))}, {'all_losses': all_losses}


def _bpd_pass(run, fns, params, work, r):
  """Bits/dim of pass r over eval.bpd_dataset (uniformly dequantized), each batch b stored in
  bpd_<r>_<b>.npz when it is done; stored batches are not recomputed. Returns the batch count."""
  config = run.config.copy_and_resolve_references()
  config.seed = run.config.seed + r        # pass r's own dequantization noise, after any restart
  train_ds, test_ds = datasets.get_dataset(config, uniform_dequantization=True, evaluation=True)
  ds = train_ds if config.eval.bpd_dataset == 'train' else test_ds
  n = _batch_count(ds)
  _sync(f'bpd pass {r} {work.label}')
  todo = [b for b in range(n) if not work.has(f'bpd_{r}_{b}.npz')]
  if not todo:
    return n
  base = streams.run_key(run.config, streams.BPD_STREAM, r)
  progress = utils.Progress(f'bits/dim of step_{work.label}, pass {r}, batch', todo[0], n, 0.)
  for b, x in enumerate(run_lib.global_batches(ds.skip(todo[0]), run, axis=0), start=todo[0]):
    if b not in todo:
      continue
    size = x.shape[0]
    keys = streams.sample_keys(base, size, start=b * size, sharding=run.sharded())
    bpd, _, _ = fns.bpd(keys, x, params)
    bpd = run_lib.gather(bpd)
    work.save(f'bpd_{r}_{b}.npz', bpd=bpd)
    logging.info('%s; %.4f bits/dim', progress.line(b + 1), bpd.mean())
  return n


def eval_bpd(run, fns, params, work):
  """Bits/dim of every image of eval.bpd_dataset (test: eval.bpd_num_repeats passes; train: one)
  by the probability-flow ODE (Song+21 App. D.2) -> ({'bpd': mean}, {'bpd': per image})."""
  e = run.config.eval
  passes = 1 if e.bpd_dataset == 'train' else e.bpd_num_repeats
  batches = [_bpd_pass(run, fns, params, work, r) for r in range(passes)]
  _sync(f'bpd done {work.label}')
  bpd = np.concatenate([work.load(f'bpd_{r}_{b}.npz')['bpd']
                        for r, n in enumerate(batches) for b in range(n)])
  return {'bpd': float(np.mean(bpd))}, {'bpd': bpd}


def eval_samples(run, fns, params, work, scorer):
  """eval.num_samples samples in rounds of eval.batch_size; each round stores its images
  (samples_<r>.npz) and their features (statistics_<r>.npz) and is not redone after a restart.
  -> ({'sample_metrics': scorer.metrics of all features}, {})."""
  e = run.config.eval
  rounds = math.ceil(e.num_samples / e.batch_size)
  _sync(f'samples {work.label}')
  todo = [r for r in range(rounds) if not work.has(f'statistics_{r}.npz')]
  base = streams.run_key(run.config, streams.SAMPLE_STREAM)
  progress = utils.Progress(f'sampling of step_{work.label}, round', todo[0] if todo else 0,
                            rounds, 0.)
  for r in todo:
    keys = streams.sample_keys(base, e.batch_size, start=r * e.batch_size, sharding=run.sharded())
    images, _ = fns.sample(keys, params)
    images = run_lib.gather(images)
    evaluation.check_finite(images, [f'sample {r * e.batch_size + i}' for i in range(len(images))],
                            f'sampling of step_{work.label}, round {r}')
    images = evaluation.images_to_uint8(images, centered=False)
    work.save(f'samples_{r}.npz', samples=images)
    work.save(f'statistics_{r}.npz', **scorer.features(images))
    logging.info(progress.line(r + 1))
  _sync(f'samples done {work.label}')
  stats = [work.load(f'statistics_{r}.npz') for r in range(rounds)]
  features = {k: np.concatenate([s[k] for s in stats])[:e.num_samples] for k in stats[0]}
  return {'sample_metrics': scorer.metrics(features)}, {}


def _poll(e, kept, workdir, path, step, waited):
  """_FOUND, _WAIT or _SKIP (logged) for the kept checkpoint at `step` after `waited` seconds."""
  kept.reload()                       # orbax caches the steps; training may have added some
  steps = kept.all_steps()
  if step in steps:
    return _FOUND
  if steps and max(steps) > step:
    logging.warning('checkpoint %s was not kept (the run has step %d); skipped', path, max(steps))
    return _SKIP
  n_iters = run_lib.trained_n_iters(workdir)    # re-read: a resumed run may have raised it
  if steps and n_iters is not None and max(steps) >= n_iters:
    logging.warning('checkpoint %s will not be written: the training run finished at step %d '
                    '(training.n_iters = %d in its config.json); skipped (train on with a larger '
                    '--config.training.n_iters first)', path, max(steps), n_iters)
    return _SKIP
  if not e.wait_for_checkpoints or waited >= e.wait_timeout_s:
    waited_for = f' after {waited:.0f} s (eval.wait_timeout_s)' if e.wait_for_checkpoints else ''
    logging.warning('checkpoint %s does not exist%s; skipped', path, waited_for)
    return _SKIP
  training = workdir_lock.holder(workdir)
  if training:
    hint = f'; a training run is writing the workdir ({training})'
  else:
    hint = '; no training run holds the workdir now' + ('' if steps else (
        ' and it has no checkpoint yet (is --workdir the training run\'s? '
        'eval.wait_for_checkpoints=False skips missing ones)'))
  logging.info('waiting for checkpoint %s: %.0f s of eval.wait_timeout_s = %.0f s%s', path, waited,
               e.wait_timeout_s, hint)
  return _WAIT


def _restore_when_written(run, kept, workdir, target, step):
  """The kept checkpoint at `step` once it exists (eval.wait_for_checkpoints), or None when it
  is not written in time or cannot be read (logged; the eval goes on with the next one)."""
  e, path, start = run.config.eval, checkpointing.step_path(kept, step), time.time()
  while True:
    waited = time.time() - start
    status = _poll(e, kept, workdir, path, step, waited) if jax.process_index() == 0 else _WAIT
    status = int(multihost_utils.broadcast_one_to_all(np.int32(status)))
    if status == _SKIP:
      return None
    if status == _FOUND:
      break
    paths.sync()                      # a gs:// workdir's log shows the wait (rate-limited)
    time.sleep(e.poll_interval_s)
  try:
    return checkpointing.restore(kept, step, target)
  except checkpointing.CheckpointReadError as err:
    logging.error('%s; skipped, going on with the next checkpoint', err)
    return None


def _evaluate_checkpoint(run, fns, state, work, scorer, writer):
  """Loss, bits/dim and sample metrics of one state (as enabled) -> report_<L>.{npz,json}."""
  e, step = run.config.eval, int(state.step)
  results, arrays = {'step': step}, {}
  parts = [eval_loss(run, fns, state, work)] if e.enable_loss else []
  if e.enable_bpd:
    parts.append(eval_bpd(run, fns, state.ema_params, work))
  if e.enable_sampling:
    parts.append(eval_samples(run, fns, state.ema_params, work, scorer))
  for scalars, part_arrays in parts:
    results.update(scalars)
    arrays.update(part_arrays)
  scalars = {k: v for k, v in results.items() if k in ('eval_loss', 'bpd')}
  scalars.update({f'sample/{k}': v for k, v in results.get('sample_metrics', {}).items()})
  writer.write(step, scalars)
  outputs.save_npz(f'{work.report}.npz', **arrays)
  outputs.write_json(f'{work.report}.json', results)     # last: the checkpoint is done
  logging.info('step_%s (step %d): %s', work.label, step, scalars)


def evaluate(config, workdir, eval_folder='eval', checkpoint=''):
  """Evaluate the checkpoints `run_lib.eval_steps(config)` of `workdir`, waiting for those not
  written yet, or only `checkpoint` (a file, URL or orbax step directory); resumable."""
  validate.check_run(config, 'eval')
  e = config.eval
  if e.enable_loss or e.enable_bpd:
    datasets.check_source(config)         # missing data fail now, not at the first checkpoint
  run = run_lib.build(config)
  eval_dir = paths.join(workdir, eval_folder)
  paths.makedirs(eval_dir)
  scorer = sample_scorer(run, eval_dir) if e.enable_sampling else None
  fns, writer = make_eval_fns(run), outputs.Writer(eval_dir)
  target = run_lib._abstract_state(run)
  if checkpoint:
    todo = [(os.path.splitext(os.path.basename(checkpoint.rstrip('/')))[0], functools.partial(
        checkpointing.load_given, checkpoint, config, run.optimizer, target))]
  else:
    kept = checkpointing.kept_manager(workdir)
    todo = [(str(step), functools.partial(_restore_when_written, run, kept, workdir, target,
                                          step)) for step in run_lib.eval_steps(config)]
  done = 0
  for label, restore in todo:
    work = Work(eval_dir, label)
    _sync(f'report {label}')
    if paths.exists(f'{work.report}.json'):
      logging.info('%s.json exists: step_%s is already evaluated; skipped', work.report, label)
      done += 1
      continue
    state = restore()
    if state is not None:
      _evaluate_checkpoint(run, fns, state, work, scorer, writer)
      done += 1
  if not done:
    have = '' if checkpoint else f' (it keeps steps {sorted(kept.all_steps())})'
    raise checkpointing.NoCheckpointError(
        f'no checkpoint evaluated: steps {[label for label, _ in todo]} of {workdir} were skipped '
        f'(above){have}; pick existing ones with eval.begin_ckpt / end_ckpt (or begin_step / '
        'end_step)')
