"""The input pipeline's position, saved with every training checkpoint: O(1) resume.

workdir/checkpoints-data/<step>/process_<p>.*   tf.data's own checkpoint of this process's
                                                training and eval-loss iterators at <step>, and
                                                (.pipeline.json) the pipeline it is valid for

A tf.data iterator checkpoint holds what the next element depends on: the position in the
(repeated, shuffled) file list, the shuffle buffer's contents and the random streams' state, so
a restart at step 800k costs the same as one at step 10 (without it, `Dataset.skip(n)` would
decode every skipped element again). Its size is about the shuffle buffer's (datasets.py:
SHUFFLE_BUFFER elements of encoded images, at most SHUFFLE_BYTES of raw pixels), which docs/scale.md
puts next to the checkpoint sizes.

The state of step s is written before the model checkpoint of step s and the newest KEEP are
kept, so a run killed between the two resumes from the previous pair. A missing or unreadable
state (a run from before this file, a deleted folder, a kill while writing) is logged and the
pipeline is replayed with `skip`, as before: slower, never wrong. A state saved for another
pipeline (a resume with another training.batch_size, n_jitted_steps, process count, seed or data
field: tf.data would restore it and fail at the first batch, its buffers holding batches of the old
shape) is not used: the data start again from their beginning, logged with what changed (O(1); the
batches no longer repeat an uninterrupted run's, which a changed pipeline cannot anyway).
"""
import json
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


def _pipeline(iterators, about):
  """What a saved position is valid for, as {dotted name: value} (JSON types): the process
  count, `about` (the config fields the pipeline is built from) and each iterator's element
  shapes and dtypes."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  spec = lambda s: [list(s.shape), s.dtype.name]  # noqa: E731
  tree = {'processes': jax.process_count(), **about,
          'elements': {name: tf.nest.map_structure(spec, it.element_spec)
                       for name, it in iterators.items()}}
  flat = {}

  def walk(prefix, node):
    if isinstance(node, dict):
      for k, v in node.items():
        walk(f'{prefix}.{k}' if prefix else str(k), v)
    else:
      flat[prefix] = node
  walk('', json.loads(json.dumps(tree, default=str)))
  return flat


def save(workdir, step, iterators, about=None):
  """Write the position of `iterators` ({name: tf.data iterator}) at `step`, and what it is
  valid for (`_pipeline`, with `about`); keep the newest KEEP."""
  folder = _folder(workdir, step)
  with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, f'{_name()}.pipeline.json'), 'w', encoding='utf-8') as f:
      json.dump(_pipeline(iterators, about or {}), f, indent=1, sort_keys=True)
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


class _Changed(Exception):
  """The state was saved for another pipeline; the message says what differs."""


def _show(value):
  """A `_pipeline` value for a log line: [shape, dtype] as 'shape dtype'."""
  if value is None:
    return '(none)'
  if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
    return f'{value[0]} {value[1]}'
  return value


def _changes(folder, iterators, about):
  """Raise _Changed where `folder`'s state was saved for another pipeline than `iterators`'
  (a state without a record, from before it was kept, is taken as it is)."""
  try:
    saved = json.loads(paths.read_text(paths.join(folder, f'{_name()}.pipeline.json')))
  except FileNotFoundError:
    return
  now = _pipeline(iterators, about)
  changed = [f'{k} {_show(saved.get(k))} -> {_show(now.get(k))}'
             for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
  if changed:
    more = f' (and {len(changed) - 4} more)' if len(changed) > 4 else ''
    raise _Changed('; '.join(changed[:4]) + more)


def restore(workdir, step, iterators, about=None):
  """Set `iterators` to their position at `step`: True; False (logged) if no readable state is
  there; raises _Changed for a state of another pipeline."""
  folder = _folder(workdir, step)
  if not paths.isfile(paths.join(folder, _name() + '.index')):
    return False
  try:
    _changes(folder, iterators, about or {})
    with tempfile.TemporaryDirectory() as tmp:
      for f in paths.list_files(folder):
        if f.startswith(_name() + '.'):
          with open(os.path.join(tmp, f), 'wb') as dst:
            dst.write(paths.read_bytes(paths.join(folder, f)))
      _checkpoint(iterators).read(os.path.join(tmp, _name())).assert_consumed()
  except _Changed:
    raise
  except Exception as err:  # pylint: disable=broad-except   # TF raises many types here
    logging.error('cannot read the input pipeline state %s (%s: %s); replaying the pipeline '
                  'instead', folder, type(err).__name__, str(err).splitlines()[0])
    return False
  return True


def iterators(workdir, step, make, skips, about=None):
  """{name: tf.data iterator} positioned at training step `step`.

  Args:
    workdir: the run directory.
    step: the step training resumes from (0: a fresh run).
    make: () -> {name: tf.data.Dataset}, new objects on each call (a second iteration of one
      dataset would draw new element seeds: datasets.py, `rerandomize_each_iteration`).
    skips: {name: batches consumed by step `step`}.
    about: {name: JSON value}, the config fields the pipeline is built from (see `save`).
  Returns:
    the iterators, restored from the state saved at `step`, else (logged) replayed with `skip`
    (time proportional to the step); from their beginning where that state was saved for
    another pipeline (logged).
  """
  fresh = {name: iter(ds) for name, ds in make().items()}
  try:
    if step == 0 or restore(workdir, step, fresh, about):
      return fresh
  except _Changed as change:
    logging.warning('the input pipeline state of step %d in %s was saved for another pipeline '
                    '(%s): the data start again from their beginning', step,
                    paths.join(workdir, DATA), change)
    return fresh
  logging.warning('no input pipeline state for step %d in %s: replaying the pipeline up to it '
                  '(time proportional to the step)', step, paths.join(workdir, DATA))
  return {name: iter(ds.skip(skips[name])) for name, ds in make().items()}
