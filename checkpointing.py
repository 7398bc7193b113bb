"""Orbax checkpoints of a `losses.TrainState` in a run directory.

workdir/checkpoints/<step>/       kept snapshots, every training.snapshot_freq steps (all kept);
                                  --mode=eval picks steps by run_lib.eval_steps
workdir/checkpoints-meta/<step>/  the newest resume point, every snapshot_freq_for_preemption
                                  steps (only one kept)
workdir/checkpoints-data/<step>/  the input pipeline's position at each of those steps
                                  (data_state.py)

Saving is synchronous (no background thread can write a state that the next donated train step
has already overwritten) and refuses a step that already exists, so a failing run never replaces
or deletes a kept checkpoint. A checkpoint that cannot be read (cut short, corrupt, or holding
arrays of other names or shapes than the config's state: checked on its metadata first) is
reported with its path and the next older one is used; where none can be read, the run stops
(`restore_latest`) instead of starting afresh beside them. The workdir may be a gs:// or s3://
URI (orbax and paths.py share etils.epath's client).
"""
import errno
import glob
import logging as pylogging
import os
import shutil

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import paths

KEPT = 'checkpoints'
META = 'checkpoints-meta'


def _not_orbax_info(record):
  """Logging filter: False for orbax's INFO chatter (~20 lines per save), which would bury the
  training progress lines, and for its errors about a full disk (one traceback per writer
  thread), which `save` reports in one line; orbax's other warnings and errors still pass."""
  if f'{os.sep}orbax{os.sep}' not in record.pathname:
    return True
  return record.levelno >= pylogging.WARNING and _NO_SPACE not in record.getMessage()


_NO_SPACE = 'No space left on device'


def _add_filter_once(logger, record_filter):
  if record_filter not in logger.filters:
    logger.addFilter(record_filter)


def quiet_orbax_logging():
  """Drop orbax's INFO chatter and its full-disk tracebacks from the absl log (`_not_orbax_info`);
  the run's logging setup (`outputs.tee_logging`) calls it, importing this module does not."""
  _add_filter_once(logging.get_absl_logger(), _not_orbax_info)


class CheckpointReadError(RuntimeError):
  """A checkpoint directory exists but cannot be restored (truncated, corrupt, wrong structure)."""


class NoCheckpointError(FileNotFoundError):
  """A mode that needs a trained state found no readable checkpoint in the workdir."""


def _manager(directory, max_to_keep):
  if not paths.is_remote(directory):         # orbax refuses relative paths (gs://... stays as is)
    directory = os.path.abspath(directory)
  # create=False: a read-only mode pointed at a mistyped workdir leaves no empty folders behind
  # (the first save makes the directory)
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())   # item_metadata


def kept_manager(workdir):
  return _manager(paths.join(workdir, KEPT), None)


def meta_manager(workdir):
  return _manager(paths.join(workdir, META), 1)


def step_path(manager, step):
  return paths.join(os.fspath(manager.directory), str(step))


class CheckpointWriteError(OSError):
  """No space for a checkpoint (errno ENOSPC): nothing of it is left, the older ones are intact."""


def _no_space(path, need=None):
  have = f' ({need / 2**20:.0f} MiB needed)' if need else ''
  return CheckpointWriteError(errno.ENOSPC, f'no space left on device for checkpoint {path}{have}; '
                              'free space or move the workdir, then run the same command: it '
                              'resumes from the newest checkpoint, which is intact')


def _size(state):
  """Bytes of a checkpoint of `state` (orbax stores the arrays as they are), with a margin."""
  return sum(x.nbytes for x in jax.tree.leaves(state)) * 1.05 + 2**20


def _free(path):
  """Free bytes on the file system that holds `path` (or would: its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def _check_space(manager, state, step):
  """Refuse a local save that cannot fit before orbax starts writing (its failed writes leave a
  partial directory and a screenful of asyncio errors)."""
  directory, need = os.fspath(manager.directory), _size(state)
  if not paths.is_remote(directory) and _free(directory) < need:
    raise _no_space(step_path(manager, step), need)


def check_room(workdir, state, count):
  """Before training: a local workdir without room for one checkpoint of `state` fails now
  (CheckpointWriteError) rather than at the first save, hours later; without room for the
  `count` the run will write, a warning."""
  if paths.is_remote(workdir):
    return
  need, free = _size(state), _free(workdir)
  if free < need:
    raise _no_space(paths.join(workdir, META), need)
  if free < need * count:
    logging.warning('the workdir has %.0f MiB free; this run writes %d checkpoints of %.0f MiB '
                    '(training.n_iters / snapshot_freq and a resume point): the disk fills before '
                    'the end', free / 2**20, count, need / 2**20)


def _not_unretrieved_no_space(record):
  """Logging filter: False for asyncio's "Task/Future exception was never retrieved" records of
  writes that failed for lack of space: the sibling writes of a checkpoint whose failure `save`
  reports in one line (orbax raises the first; each other one would print a screenful of
  tensorstore spec whenever Python collects it). Installed only after such a failure."""
  text = record.getMessage()
  return not ('exception was never retrieved' in text and _NO_SPACE in text)


def save(manager, state):
  """Save `state` under its step; a step that is already there is left as it is (False). The
  logs staged for a remote workdir are uploaded with it (paths.sync). No space: a
  CheckpointWriteError, and no partial checkpoint left behind."""
  step = int(state.step)
  if step in manager.all_steps():
    logging.warning('checkpoint %s exists; not overwritten', step_path(manager, step))
    return False
  _check_space(manager, state, step)
  try:
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
  except (OSError, ValueError) as err:     # orbax/tensorstore: ValueError('RESOURCE_EXHAUSTED...')
    if getattr(err, 'errno', None) != errno.ENOSPC and _NO_SPACE not in str(err):
      raise
    for partial in glob.glob(glob.escape(step_path(manager, step)) + '.orbax-checkpoint-tmp*'):
      shutil.rmtree(partial, ignore_errors=True)
    _add_filter_once(pylogging.getLogger('asyncio'), _not_unretrieved_no_space)
    raise _no_space(step_path(manager, step)) from None
  paths.sync(force=True)
  return True


def abstract(tree, sharding):
  """`tree` (arrays or ShapeDtypeStructs) as ShapeDtypeStructs placed with `sharding`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _shapes(tree):
  """{'a/b/c': shape} of the leaves of a state or of its saved metadata."""
  return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _mismatch(manager, step, target):
  """What the state saved at `step` lacks or holds otherwise than `target` (the first few
  arrays, from the checkpoint's metadata), or '' — also where the metadata cannot be read
  (restoring then says why). Dtypes are left to the restore."""
  try:
    saved = _shapes(manager.item_metadata(step))
  except Exception:  # pylint: disable=broad-except   # orbax raises many types here
    return ''
  wanted = _shapes(target)
  problems = [f'{k} is {saved[k]} there, {wanted[k]} here'
              for k in sorted(wanted.keys() & saved.keys()) if saved[k] != wanted[k]]
  problems += [f'{k} is not saved' for k in sorted(wanted.keys() - saved.keys())]
  problems += [f'{k} is saved but not in this config' for k in sorted(saved.keys() - wanted.keys())]
  if not problems:
    return ''
  more = f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''
  return 'another network or optimizer than this config: ' + '; '.join(problems[:3]) + more


def restore(manager, step, target):
  """The state saved at `step`, laid out as `target` (see `abstract`: shapes, dtypes, shardings).

  Raises:
    CheckpointReadError naming the directory, if it cannot be read or holds arrays of other
    shapes or names than `target` (checked on its metadata first: a restore that fails midway
    leaves orbax's threads failing on a closed event loop until the process ends).
  """
  problem = _mismatch(manager, step, target)
  if problem:
    raise CheckpointReadError(f'cannot read checkpoint {step_path(manager, step)}: {problem}')
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as err:  # pylint: disable=broad-except   # orbax raises many types here
    raise CheckpointReadError(f'cannot read checkpoint {step_path(manager, step)}: '
                              f'{type(err).__name__}: {err}') from err


def restore_latest(managers, target, verb='resumed from'):
  """The newest readable state over all `managers` (unreadable ones are logged and skipped, e.g.
  one cut short by a preemption; the one used is logged as "`verb` PATH"), or None where there is
  no checkpoint at all.

  Raises:
    CheckpointReadError: there are checkpoints, but none is readable as `target` (typically
      another config's network): a run must neither start afresh beside them nor mix its own
      checkpoints with them.
  """
  candidates = sorted(((step, m) for m in managers for step in m.all_steps()),
                      key=lambda c: c[0], reverse=True)
  errors = []
  for step, manager in candidates:
    try:
      state = restore(manager, step, target)
    except CheckpointReadError as err:
      logging.error('%s; trying the next older checkpoint', err)
      errors.append(err)
      continue
    logging.info('%s %s', verb, step_path(manager, step))
    return state
  if errors:
    newest = ' '.join(str(errors[0]).split('. ')[0].split())   # one line: orbax's first sentence
    workdir = os.path.dirname(os.fspath(candidates[0][1].directory))
    raise CheckpointReadError(
        f'none of the {len(errors)} checkpoints in {workdir} can be read with this config '
        f'(newest: {newest}); resume with the config the run was started with (its config.json) '
        'or use a new --workdir. Nothing was written.')
  return None


def load_given(path_or_url, config, optimizer, target):
  """The state of `--checkpoint=PATH_OR_URL`, laid out as `target` (an abstract TrainState).

  An orbax step directory (`<workdir>/checkpoints/<step>`) is restored as saved; any other file
  is read by `foreign.load` (EDM pickles, score_sde files, params.msgpack): its EMA weights are
  `ema_params`, its raw weights `params` and a saved Adam state the optimizer's moments (else a
  fresh optimizer state).
  """
  from foreign import load as foreign_load  # pylint: disable=import-outside-toplevel
  from foreign import files  # pylint: disable=import-outside-toplevel
  path = files.local_file(path_or_url)
  if paths.isdir(path):
    path = path.rstrip('/') if paths.is_remote(path) else os.path.abspath(path)
    folder, _, step = path.rpartition('/')
    if not step.isdigit():
      raise files.CheckpointNotFoundError(
          f'{path} is a directory but not an orbax checkpoint step (<workdir>/checkpoints/<step>)')
    return restore(_manager(folder, None), int(step), target)
  given = foreign_load.load(path, config)
  params = _fit(given.train_params, target.params, path)
  ema = _fit(given.params, target.ema_params, path)
  opt_state = optimizer.init(params)
  if given.adam is not None:
    step, mu, nu = given.adam
    opt_state = optax.tree_utils.tree_set(opt_state, mu=_fit(mu, target.params, path),
                                          nu=_fit(nu, target.params, path),
                                          count=jnp.asarray(step, jnp.int32))
  state = type(target)(step=jnp.asarray(given.step, jnp.int32), params=params, ema_params=ema,
                       opt_state=opt_state)
  logging.info('loaded %s (step %d%s)', path, given.step,
               ', with its Adam state' if given.adam is not None else '')
  # np.array: every leaf its own buffer (shared ones, e.g. one step count in two optimizer
  # states, could not be donated to the train step twice)
  return jax.tree.map(lambda x, t: jax.device_put(np.array(x), t.sharding), state, target)


def _fit(tree, target, source):
  """`tree` as float32 arrays with `target`'s structure; a mismatch names the first leaf."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  want = jax.tree_util.tree_flatten_with_path(target)[0]
  got = {jax.tree_util.keystr(k): v for k, v in flat}
  leaves = []
  for k, t in want:
    name = jax.tree_util.keystr(k)
    if name not in got or tuple(got[name].shape) != tuple(t.shape):
      shape = tuple(got[name].shape) if name in got else 'missing'
      raise CheckpointReadError(f'{source}: parameter {name} is {shape} in the file, {t.shape} in '
                                f'the config; the checkpoint is for another network')
    leaves.append(np.asarray(got[name], np.float32))
  if len(got) != len(want):
    raise CheckpointReadError(f'{source}: {len(got)} parameters in the file, {len(want)} in the '
                              f'config; the checkpoint is for another network')
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target), leaves)
