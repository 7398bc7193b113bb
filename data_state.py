"""The input pipeline's position, saved with every training checkpoint: O(1) resume.

workdir/checkpoints-data/<step>/process_<p>.*   tf.data's own checkpoint of this process's
                                                training and eval-loss iterators at <step>

A tf.data iterator checkpoint holds what the next element depends on: the position in the
(repeated, shuffled) file list, the shuffle buffer's contents and the random streams' state, so
a restart at step 800k costs the same as one at step 10 (without it, `Dataset.skip(n)` would
decode every skipped element again). Its size is about the shuffle buffer's (datasets.py:
SHUFFLE_BUFFER elements of encoded images, at most SHUFFLE_BYTES of raw pixels), which docs/scale.md
puts next to the checkpoint sizes.

The state of step s is written before the model checkpoint of step s and the newest KEEP are
kept, so a run killed between the two resumes from the previous pair. A missing or unreadable
state (a run from before this file, a deleted folder, a kill while writing) is logged and the
pipeline is replayed with `skip`, as before: slower, never wrong.
"""
import os
import tempfile

from absl import logging
import jax

import paths

DATA = 'checkpoints-data'
KEEP = 2


def _folder(workdir, step):
  return paths.join(workdir, DATA, str(step))


def _name():
  return f'process_{jax.process_index()}'


def _checkpoint(iterators):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel   # datasets.py set it up
  return tf.train.Checkpoint(**iterators)


def save(workdir, step, iterators):
  """Write the position of `iterators` ({name: tf.data iterator}) at `step`; keep the newest
  KEEP."""
  folder = _folder(workdir, step)
  with tempfile.TemporaryDirectory() as tmp:
    _checkpoint(iterators).write(os.path.join(tmp, _name()))
    # the index last: a state whose index exists was written whole
    for f in sorted(os.listdir(tmp), key=lambda f: f.endswith('.index')):
      with open(os.path.join(tmp, f), 'rb') as src:
        paths.write_bytes(paths.join(folder, f), src.read())
  _prune(workdir)


def _saved_steps(workdir):
  root = paths.join(workdir, DATA)
  if not paths.isdir(root):
    return []
  index = f'/{_name()}.index'
  return sorted({int(f.split('/')[0]) for f in paths.list_files(root)
                 if f.endswith(index) and f.split('/')[0].isdigit()})


def _prune(workdir):
  """Remove this process's states older than the newest KEEP."""
  for step in _saved_steps(workdir)[:-KEEP]:
    folder = _folder(workdir, step)
    for f in paths.list_files(folder):
      if f.startswith(_name() + '.'):
        paths.remove(paths.join(folder, f))
    if not paths.is_remote(folder):
      try:
        os.rmdir(folder)          # once every process has removed its files
      except OSError:
        pass


def restore(workdir, step, iterators):
  """Set `iterators` to their position at `step`; False (logged) if no readable state is there."""
  folder = _folder(workdir, step)
  if not paths.isfile(paths.join(folder, _name() + '.index')):
    return False
  try:
    with tempfile.TemporaryDirectory() as tmp:
      for f in paths.list_files(folder):
        if f.startswith(_name() + '.'):
          with open(os.path.join(tmp, f), 'wb') as dst:
            dst.write(paths.read_bytes(paths.join(folder, f)))
      _checkpoint(iterators).read(os.path.join(tmp, _name())).assert_consumed()
  except Exception as err:  # pylint: disable=broad-except   # TF raises many types here
    logging.error('cannot read the input pipeline state %s (%s: %s); replaying the pipeline '
                  'instead', folder, type(err).__name__, str(err).splitlines()[0])
    return False
  return True


def iterators(workdir, step, make, skips):
  """{name: tf.data iterator} positioned at training step `step`.

  Args:
    workdir: the run directory.
    step: the step training resumes from (0: a fresh run).
    make: () -> {name: tf.data.Dataset}, new objects on each call (a second iteration of one
      dataset would draw new element seeds: datasets.py, `rerandomize_each_iteration`).
    skips: {name: batches consumed by step `step`}.
  Returns:
    the iterators, restored from the state saved at `step`, else (logged) replayed with `skip`
    (time proportional to the step).
  """
  fresh = {name: iter(ds) for name, ds in make().items()}
  if step == 0 or restore(workdir, step, fresh):
    return fresh
  logging.warning('no input pipeline state for step %d in %s: replaying the pipeline up to it '
                  '(time proportional to the step)', step, paths.join(workdir, DATA))
  return {name: iter(ds.skip(skips[name])) for name, ds in make().items()}
