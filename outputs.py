"""Run outputs written by process 0: atomic JSON and `.npz` files, sample grids (PNG + `.npz`),
scalars to `stats.jsonl` and TensorBoard (`Writer`); and every process's log file (`tee_logging`).
Every file goes through paths.py (local folders or gs:// / s3:// alike)."""
import json
import logging as pylogging
import os

from absl import logging
import jax

import checkpointing
import evaluation
import paths
import utils


def write_json(path, obj):
  """Atomic JSON write (process 0 only)."""
  if jax.process_index() == 0:
    paths.write_text(path, json.dumps(obj, indent=2))


def save_npz(path, **arrays):
  """Atomic `.npz` write (process 0 only)."""
  if jax.process_index() == 0:
    paths.save_npz(path, **arrays)


def tee_logging(workdir, process):
  """Also log to <workdir>/log.txt (process i > 0: log<i>.txt), appending. For a gs:// or s3://
  workdir the file is written locally and uploaded by paths.sync (paths.staged): a logging
  handler cannot append to an object. orbax's INFO lines are left out (the progress lines would
  drown in ~20 per save), and so are its tracebacks of a full disk (`checkpointing.save` reports
  that in one line)."""
  name = f'log{process or ""}.txt'
  handler = pylogging.FileHandler(os.path.join(paths.staged(workdir, carry=(name,)), name))
  handler.setFormatter(pylogging.Formatter('%(levelname)s %(asctime)s %(filename)s:%(lineno)d] '
                                           '%(message)s'))
  logging.get_absl_logger().addHandler(handler)
  logging.set_verbosity(logging.INFO)
  checkpointing.quiet_orbax_logging()


def save_samples(images, path_stem):
  """Images [N, H, W, C] in [0, 1] -> `<stem>.png` (grid) and `<stem>.npz` (uint8 'samples');
  an evaluation.SamplesNotFiniteError (nothing written) where an image holds NaN or inf."""
  evaluation.check_finite(images, [f'sample {i}' for i in range(len(images))], path_stem)
  if jax.process_index() == 0:
    save_npz(f'{path_stem}.npz', samples=evaluation.images_to_uint8(images, centered=False))
    utils.save_image_grid(images, f'{path_stem}.png')
    logging.info('samples written to %s.png', path_stem)


class Writer:
  """Scalars to `<logdir>/stats.jsonl` and TensorBoard `<logdir>/tensorboard` (process 0).

  Events hold plain `simple_value` summaries, written without the tensorboard package (which
  tensorflow-cpu does not pull in); TensorBoard reads them as scalars. Both files grow, so for a
  gs:// or s3:// `logdir` they are written in paths.staged(logdir) and uploaded by paths.sync
  (at most every paths.SYNC_INTERVAL_S seconds, at every checkpoint and at exit).
  """

  def __init__(self, logdir):
    self._tb = None
    if jax.process_index() == 0:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      local = paths.staged(logdir, carry=('stats.jsonl',))
      self._path, self._tf = os.path.join(local, 'stats.jsonl'), tf
      self._tb = tf.summary.create_file_writer(os.path.join(local, 'tensorboard'))

  def write(self, step, scalars):
    if self._tb is None:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self._path, 'a') as f:
      f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    summary = self._tf.compat.v1.Summary(value=[
        self._tf.compat.v1.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()])
    with self._tb.as_default():
      self._tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))
    self._tb.flush()
    paths.sync()
