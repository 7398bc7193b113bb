"""Run outputs written by process 0: atomic JSON and `.npz` files, sample grids (PNG + `.npz`),
and scalars to `stats.jsonl` and TensorBoard (`Writer`)."""
import json
import os

from absl import logging
import jax
import numpy as np

import evaluation
import utils


def write_json(path, obj):
  """Atomic JSON write (process 0 only)."""
  if jax.process_index() == 0:
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def save_npz(path, **arrays):
  if jax.process_index() == 0:
    tmp = f'{path}.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def save_samples(images, path_stem):
  """Images [N, H, W, C] in [0, 1] -> `<stem>.png` (grid) and `<stem>.npz` (uint8 'samples')."""
  if jax.process_index() == 0:
    save_npz(f'{path_stem}.npz', samples=evaluation.images_to_uint8(images, centered=False))
    utils.save_image_grid(images, f'{path_stem}.png')
    logging.info('samples written to %s.png', path_stem)


class Writer:
  """Scalars to `<logdir>/stats.jsonl` and TensorBoard `<logdir>/tensorboard` (process 0).

  Events hold plain `simple_value` summaries, written without the tensorboard package (which
  tensorflow-cpu does not pull in); TensorBoard reads them as scalars.
  """

  def __init__(self, logdir):
    self._path, self._tb = os.path.join(logdir, 'stats.jsonl'), None
    if jax.process_index() == 0:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      os.makedirs(logdir, exist_ok=True)
      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(logdir, 'tensorboard'))

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
