"""Read score_sde's noise-conditional classifier checkpoint (`sampling.classifier`): a Flax msgpack
of the WideResnet's parameters, what score_sde's models.utils.create_classifier restores (its
CIFAR-10 WRN-28-10 for Song+21 Fig. 4's class-conditional samples), read as data.

The architecture comes from the file: blocks per group (WideResnetGroup_0's blocks), width (its
first convolution's channels / 16), classes (Dense_2's outputs) and input channels (init_conv's);
every tensor's shape is then
checked against that network's (entries besides them are ignored with a warning, as score_sde's
restore_checkpoint(path, params) ignores them).

The file does not say which noise it was trained on. `--mode=train_classifier` writes it beside
each file, `<file>.json` = {'noise': `noise_record(config)`}: the SDE, its parameters and the data
scaling. Where that record is there it must match the model's (a classifier of VE noise on [0, 1]
images guiding a VP model on [-1, 1] ones would see inputs it never saw); where it is not (a
score_sde file: its CIFAR-10 classifier saw VE noise σ in [0.01, 50] on [0, 1] images) a model of
other noise gets a warning.
"""
import functools
import json
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from foreign import files
import paths
from models.wideresnet import NoiseConditionalWideResNet


class ClassifierFileError(ValueError):
  """The file is not a noise-conditional WideResnet checkpoint."""


_LAST = {}   # the last file read: main.py checks it before any work, the sampler reuses it


def precheck(config):
  """Read sampling.classifier once (kept for the run) or exit with one line naming the problem."""
  files.read_or_exit(lambda: read_for(config), 'sampling.classifier', config.sampling.classifier,
                     ClassifierFileError)


def read_for(config):
  """(module, params) of sampling.classifier, its classes and input channels checked against
  data.num_classes and data.num_channels."""
  module, params = read(config.sampling.classifier)
  channels = params['init_conv']['kernel'].shape[-2]
  for what, theirs, ours in (('classes', module.num_classes, config.data.num_classes),
                             ('channels', channels, config.data.num_channels)):
    if theirs != ours:
      raise ClassifierFileError(
          f'sampling.classifier={config.sampling.classifier} has {theirs} {what}, data.num_{what} '
          f'= {ours}: set --config.data.num_{what}={theirs}')
  _check_noise(config)
  return module, params


_SCORE_SDE_CIFAR10 = {'training.sde': 'vesde', 'data.centered': False, 'model.sigma_min': 0.01,
                      'model.sigma_max': 50.}


def noise_record(config):
  """{dotted config field: value}: the noise a classifier of `config`'s model sees (the SDE, its
  parameters `noise_fields`, the data scaling)."""
  from sde_lib import SDES  # pylint: disable=import-outside-toplevel
  fields = ('training.sde', 'data.centered') + SDES.get(config.training.sde).noise_fields
  return {f: config[f.split('.')[0]][f.split('.')[1]] for f in fields}


def describe_noise(record):
  """A noise record as 'field=value, ...'."""
  return ', '.join(f'{k}={v}' for k, v in record.items())


_CHECKED = set()   # (file, the model's noise) pairs already checked: main.py, then the sampler


def _check_noise(config):
  """The record beside sampling.classifier (`<file>.json`) against the model's noise, once per
  file and noise."""
  path, ours = config.sampling.classifier, noise_record(config)
  if (path, describe_noise(ours)) in _CHECKED:
    return
  _compare_noise(path, ours)
  _CHECKED.add((path, describe_noise(ours)))


def _compare_noise(path, ours):
  record = path + '.json'
  if path.startswith(('http://', 'https://')) or not paths.exists(record):   # gs://: read
    if ours != _SCORE_SDE_CIFAR10:
      logging.warning('sampling.classifier=%s has no record of the noise it was trained on (%s, '
                      'written by --mode=train_classifier); score_sde\'s CIFAR-10 classifier '
                      'saw %s, this model\'s is %s', path, record,
                      describe_noise(_SCORE_SDE_CIFAR10), describe_noise(ours))
    return
  try:
    theirs = json.loads(paths.read_text(record))['noise']
  except (ValueError, KeyError, TypeError) as err:
    raise ClassifierFileError(
        f'sampling.classifier={path}: its record {record} is unreadable '
        f'({type(err).__name__}: {err}); delete it or write it again') from None
  if theirs != ours:
    raise ClassifierFileError(
        f'sampling.classifier={path} was trained on {describe_noise(theirs)} ({record}), this '
        f'model samples {describe_noise(ours)}: train one on this noise (--mode=train_classifier '
        'with this config) or use a model of that noise')


def read(path_or_url):
  """(module, params) of the classifier file (a path or URL, downloaded once as --checkpoint)."""
  if not files.is_url(path_or_url) and not os.path.exists(path_or_url):
    raise ClassifierFileError(f'sampling.classifier={path_or_url} does not exist: pass '
                              "score_sde's classifier checkpoint file (or its http(s):// / gs:// "
                              'URL)')
  path = files.local_file(path_or_url)
  if os.path.isdir(path):
    raise ClassifierFileError(f'sampling.classifier={path} is a directory; give the checkpoint '
                              'file in it (score_sde: checkpoint_<n>)')
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
  if key not in _LAST:
    _LAST.clear()
    _LAST[key] = _read(path)
  return _LAST[key]


def _read(path):
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import flax.traverse_util  # pylint: disable=import-outside-toplevel
  with open(path, 'rb') as f:
    try:
      tree = flax.serialization.msgpack_restore(f.read())
    except Exception as err:  # pylint: disable=broad-except   # msgpack raises several types
      raise ClassifierFileError(f'sampling.classifier={path}: not a Flax msgpack checkpoint '
                                f'({type(err).__name__}: {err})') from None
  module, channels = _describe(tree, path)
  shapes = _init_shapes(module, channels)
  flat = flax.traverse_util.flatten_dict(tree, sep='/')
  missing = sorted(set(shapes) - set(flat))
  wrong = [f'{k}: {np.shape(flat[k])} in the file, {shapes[k]} expected' for k in sorted(shapes)
           if k in flat and tuple(np.shape(flat[k])) != shapes[k]]
  if missing or wrong:
    problems = ([f'missing {", ".join(missing[:3])}'] if missing else []) + wrong[:3]
    raise ClassifierFileError(f'sampling.classifier={path}: not the WideResnet of '
                              f'{_name(module)}: {"; ".join(problems)}')
  extra = sorted(set(flat) - set(shapes))
  if extra:      # score_sde's restore_checkpoint(path, params) reads the params' keys only
    logging.warning('sampling.classifier=%s: %d entries besides the WideResnet\'s are not used '
                    '(e.g. %s)', path, len(extra), ', '.join(extra[:3]))
  params = {k: np.asarray(flat[k], np.float32) for k in shapes}
  return module, flax.traverse_util.unflatten_dict(params, sep='/')


def _describe(tree, path):
  try:
    group = tree['WideResnetGroup_0']
    blocks = sum(1 for k in group if k.startswith('WideResnetBlock_'))
    width = np.shape(group['WideResnetBlock_0']['conv1']['kernel'])[-1] // 16
    classes = np.shape(tree['Dense_2']['kernel'])[-1]
    channels = np.shape(tree['init_conv']['kernel'])[-2]
  except (KeyError, TypeError, IndexError) as err:
    raise ClassifierFileError(
        f'sampling.classifier={path}: no noise-conditional WideResnet in the file (no '
        f'{err} in its tree); expected score_sde\'s classifier checkpoint (WideResnetGroup_0..2, '
        'Dense_2)') from None
  return NoiseConditionalWideResNet(blocks_per_group=blocks, widen=width,
                                    num_classes=classes), channels


@functools.lru_cache(maxsize=8)
def _init_shapes(module, channels):
  import flax.traverse_util  # pylint: disable=import-outside-toplevel
  tree = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, channels)),
                                            jnp.ones((1,))))['params']
  return {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(tree, sep='/').items()}


def _name(module):
  depth = 6 * module.blocks_per_group + 4
  return f'WRN-{depth}-{module.widen} with {module.num_classes} classes'
