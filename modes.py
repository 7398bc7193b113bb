"""The run modes of `main.py --mode=...`, in one registry: name -> fn(config, workdir, options).

`options` holds main.py's flags that a mode may read: `checkpoint` (weights to use instead of the
workdir's newest state, `foreign.load`) and `eval_folder`. Register a new mode with
`@register_mode('name')` and add its name to main.py's --mode list. The library modules
(controllable_generation, sampling, ...) know nothing of runs; the inpaint / colorize runs live here.
"""
import errno
import math
import signal
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

import checkpointing
import classifier_lib
from configs import validate
import controllable_generation as cg
import datasets
import distributed
import eval_lib
import evaluation
import fid
from foreign import autoencoder, torch_pickle
import generate
import outputs
import paths
import run_lib
import streams
import utils
from utils import Registry
import workdir_lock

MODES = Registry('mode')
register_mode = MODES.register
TRAINING = ('train', 'train_classifier')    # stop at a step boundary on SIGTERM, after saving


@register_mode('train')
def _train(config, workdir, options):
  return run_lib.train(config, workdir, options['checkpoint'])


@register_mode('eval')
def _eval(config, workdir, options):
  return eval_lib.evaluate(config, workdir, options['eval_folder'], options['checkpoint'])


@register_mode('sample')
def _sample(config, workdir, options):
  return run_lib.sample(config, workdir, options['checkpoint'])


@register_mode('fid')
def _fid(config, workdir, options):
  del options
  return fid.run(config, workdir)


@register_mode('fid_stats')
def _fid_stats(config, workdir, options):
  del options
  return run_lib.fid_stats(config, workdir)


@register_mode('train_classifier')
def _train_classifier(config, workdir, options):
  del options
  validate.check_run(config, 'train_classifier')
  return classifier_lib.train(config, workdir)


@register_mode('inpaint')
def _inpaint(config, workdir, options):
  return run_task(config, workdir, 'inpaint', options['checkpoint'])


@register_mode('colorize')
def _colorize(config, workdir, options):
  return run_task(config, workdir, 'colorize', options['checkpoint'])


# ------------------------------------------------------------------------------------------------
# --mode=inpaint / colorize: a checkpoint on the first evaluation images (controllable_generation)

def _first_eval_images(run):
  """The first eval.batch_size images of the evaluation split in [0, 1], a global array sharded
  over the batch (each process reads its own share)."""
  config = run.config
  _, eval_ds = datasets.get_dataset(config, evaluation=True)
  batch = next(eval_ds.as_numpy_iterator(), None)
  if batch is None:
    raise ValueError(f'the evaluation split of data.dataset = {config.data.dataset!r} has fewer '
                     f'than eval.batch_size = {config.eval.batch_size} images; lower it')
  return jax.make_array_from_process_local_data(run.sharded(), batch['image'])


def _save(arrays, path_stem):
  """`<stem>.npz` (uint8 arrays; 'mask' 1 = known) and `<stem>.png`: one block of rows each for
  the originals, the model's input and the result (process 0)."""
  evaluation.check_finite(arrays['result'], [f'image {i}' for i in range(len(arrays['result']))],
                          path_stem)
  if jax.process_index() != 0:
    return
  u8 = {k: (v.astype(np.uint8) if k == 'mask' else evaluation.images_to_uint8(v, centered=False))
        for k, v in arrays.items()}
  outputs.save_npz(f'{path_stem}.npz', **u8)
  n = len(u8['original'])
  nrow = int(math.ceil(math.sqrt(n)))
  pad = np.zeros((-n % nrow,) + u8['original'].shape[1:], np.uint8)   # each block: whole rows
  blocks = [np.concatenate([u8[k], pad]) for k in ('original', 'input', 'result')]
  utils.save_image_grid(np.concatenate(blocks) / 255., f'{path_stem}.png', nrow=nrow)


def run_task(config, workdir, task, checkpoint=''):
  """`main.py --mode=inpaint|colorize`: `checkpoint` or the newest readable checkpoint in
  `workdir` (EMA parameters, as run_lib.sample) inpaints (mask `sampling.inpaint_mask`) or colorizes (from the
  gray level) the first eval.batch_size evaluation images by PC sampling with config.sampling's
  predictor and corrector (whatever sampling.method), one key per image as run_lib.sample.

  Writes <workdir>/controllable/<task>_<step>.{png,npz}. Returns the float arrays saved, [B, H,
  W, C] in [0, 1] before quantization: 'original', 'input' (inpainting: unknown pixels 0.5;
  colorization: the gray level in every channel), 'result', and 'mask' [B, H, W, 1] (1 = known).
  """
  validate.check_run(config, task)
  datasets.check_source(config)           # missing data fail now, not after the restore
  run = run_lib.build(config)
  scaler, inverse = datasets.get_data_scaler(config), datasets.get_data_inverse_scaler(config)
  get_fn = cg.get_inpainter if task == 'inpaint' else cg.get_colorizer
  fn = get_fn(config, run.sde, run.model, scaler, inverse, run.eps)
  state = run_lib.restore_newest(run, workdir, checkpoint)
  images, n, step = _first_eval_images(run), config.eval.batch_size, int(state.step)
  keys = streams.sample_keys(streams.run_key(config, streams.SAMPLE_STREAM), n,
                             sharding=run.sharded())
  s, start = config.sampling, time.time()
  logging.info('%s: %d evaluation images, step-%d checkpoint, PC %s / %s, %d noise levels%s',
               task, n, step, s.predictor, s.corrector, run.sde.N,
               f', mask {s.inpaint_mask!r}' if task == 'inpaint' else '')
  original = run_lib.gather(images)
  if task == 'inpaint':
    mask = cg.inpaint_mask(config, n)
    out = fn(keys, state.ema_params, images,
             jax.make_array_from_callback(mask.shape, run.sharded(), lambda i: mask[i]))
    arrays = {'input': original * mask + 0.5 * (1. - mask), 'mask': mask}
  else:
    gray = jnp.mean(images, axis=-1, keepdims=True)            # Song+21 App. I.3: the gray level
    out = fn(keys, state.ema_params, gray)
    arrays = {'input': np.repeat(run_lib.gather(gray), 3, axis=-1)}
  arrays.update(original=original, result=run_lib.gather(out))
  logging.info('%s: %d images in %.1f s (compilation included)', task, n, time.time() - start)
  stem = paths.join(workdir, 'controllable', f'{task}_{step}')
  _save(arrays, stem)
  logging.info('%s: wrote %s.png (originals / input / result) and %s.npz', task, stem, stem)
  return arrays


def run_inpaint(config, workdir, checkpoint=''):
  """`main.py --mode=inpaint` (`run_task`)."""
  return run_task(config, workdir, 'inpaint', checkpoint)


def run_colorize(config, workdir, checkpoint=''):
  """`main.py --mode=colorize` (`run_task`)."""
  return run_task(config, workdir, 'colorize', checkpoint)


def join(spec):
  """`distributed.init_distributed(spec)` for main.py: this process's index, or a one-line error
  and exit status 1 where --distributed is malformed or the run cannot be joined."""
  try:
    return distributed.init_distributed(spec)
  except distributed.DistributedError as err:
    logging.error('%s', err)
    raise SystemExit(1) from None


def run(mode, config, workdir, **options):
  """Run `mode`; the errors a user can fix (out of memory and a full disk included) are logged as
  one line and give exit status 1; a training run stopped by SIGTERM or Ctrl-C (after saving)
  exits with 143 or 130, as a process killed by the signal.

  Only the TRAINING modes stop at a step boundary on SIGTERM (run_lib.Preemption). In a
  multi-process run JAX's preemption notifier takes SIGTERM for that sync point, which no other
  mode reaches: eval and sample would run on until SIGKILL, so they get back the default action
  (eval and seeded sampling resume per batch)."""
  fn = MODES.get(mode)
  logging.info('--mode=%s on %d %s device(s)', mode, jax.device_count(), jax.default_backend())
  if mode not in TRAINING and jax.process_count() > 1:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    return fn(config, workdir, options)
  except run_lib.Preempted as stop:
    logging.warning('%s', stop)
    raise SystemExit(128 + stop.signum) from None
  except (validate.ConfigError, run_lib.TrainingDivergedError, evaluation.EvaluationFileError,
          checkpointing.CheckpointReadError, checkpointing.NoCheckpointError, fid.ImagesError,
          datasets.DataError, generate.LatentsError, generate.SettingsMismatchError,
          evaluation.SamplesNotFiniteError, torch_pickle.UnsafePickleError,
          workdir_lock.WorkdirBusyError, autoencoder.AutoencoderFileError) as err:
    logging.error('%s', err)
    raise SystemExit(1) from None
  except jax.errors.JaxRuntimeError as err:
    if 'RESOURCE_EXHAUSTED' not in str(err):
      raise
    logging.error('%s; lower training.batch_size (or eval.batch_size outside training), or fit '
                  'it with training.grad_accum, model.remat or model.dtype=bfloat16 '
                  '(docs/scale.md)', str(err).strip().splitlines()[0])
    raise SystemExit(1) from None
  except OSError as err:
    if err.errno != errno.ENOSPC:
      raise
    logging.error('%s', err.strerror if isinstance(err, checkpointing.CheckpointWriteError) else
                  f'no space left on device writing {err.filename}; free space or move the '
                  'workdir, then run the same command (training resumes from its newest '
                  'checkpoint)')
    raise SystemExit(1) from None
