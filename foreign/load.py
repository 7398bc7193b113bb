"""One reader for every checkpoint format the project meets, as our parameters.

  `load(path_or_url, config) -> Checkpoint`

| file | written by | holds |
|---|---|---|
| `network-snapshot-*.pkl` | NVlabs/edm and its forks (EDM-ES, STF, PFGM++, Patch Diffusion) | EMA network |
| `training-state-*.pt` | the same | raw network + Adam state (EMA from the sibling snapshot) |
| `checkpoint_*.pth` | yang-song/score_sde_pytorch | model, EMA (`shadow_params`), optimizer |
| `checkpoint_*` (msgpack) | yang-song/score_sde (Flax) | `params_ema`, `optimizer.target` |
| `params.msgpack` | our tools/convert_checkpoint.py | our parameter tree |
A directory (our orbax state) is read by `run_lib` with the run's own layout. Every file is read
as data (`foreign.torch_pickle`, msgpack): nothing in it runs, torch is not needed. A URL is
downloaded once (`foreign.files`). The architecture a file describes is checked against the config
(`check_config`): a mismatch names each field with both values.
"""
import math
import os
import re
import shlex
from typing import NamedTuple, Optional

import numpy as np

from foreign import autoencoder, classifier, edm, files, torch_pickle
from foreign import score_sde
import losses
import paths


class CheckpointMismatchError(ValueError):
  """The checkpoint describes another network than the config (fields, values and the fix)."""


class Checkpoint(NamedTuple):
  params: dict                  # weights to sample with (the EMA where the file has one)
  train_params: dict            # raw (trained) weights; `params` where the file has one set
  adam: Optional[tuple]         # (step, mu, nu) in our layout, from a saved Adam state
  step: int                     # training step the file records (0 if it records none)
  fields: dict                  # {config field: value} the file describes (checked)
  checks: dict                  # {config field: value} that must also agree
  path: str


_LAST = {}   # the last file read: main.py checks a checkpoint before any work, run_lib reuses it


def load(path_or_url, config):
  """Read a checkpoint file (any format above) for `config`'s network."""
  path = files.local_file(path_or_url)
  if os.path.isdir(path):
    raise ValueError(f'{path} is a directory: run_lib reads orbax checkpoint directories')
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, config.to_json())
  if key not in _LAST:
    with open(path, 'rb') as f:
      head = f.read(4)
    pickled = head[:1] == b'\x80' or head[:2] == b'PK'     # a pickle or a torch.save zip
    _LAST.clear()
    _LAST[key] = _load_pickled(path, config) if pickled else _load_msgpack(path, config)
  return _LAST[key]


def precheck(checkpoint, config):
  """Read --checkpoint's file, sampling.classifier's and data.autoencoder's once (kept for the
  run), or exit with one line naming the problem."""
  if config.sampling.classifier:
    classifier.precheck(config)
  if config.data.autoencoder:
    autoencoder.precheck(config)
  if not checkpoint:
    return
  try:
    path = files.local_file(checkpoint)
    if not paths.isdir(path):       # an orbax step directory (local or a bucket): checkpointing
      load(path, config)
  except Exception as err:  # pylint: disable=broad-except   # any reader error: one line, exit
    raise SystemExit(f'FATAL --checkpoint={checkpoint}: {type(err).__name__}: {err}') from None


def _load_pickled(path, config):
  obj = torch_pickle.read(path)
  if isinstance(obj, dict) and any(isinstance(obj.get(k), torch_pickle.Persistent)
                                   for k in ('ema', 'net')):
    return _load_edm(path, obj, config)
  if isinstance(obj, dict) and 'model' in obj and 'ema' in obj:
    return _load_score_sde_pytorch(path, obj, config)
  found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
  raise edm.NotANetworkError(f'{path}: holds {found}, not a checkpoint (an NVlabs/edm network '
                             f'snapshot or training state, or a score_sde_pytorch checkpoint)')


def _load_edm(path, obj, config):
  ema_net, net, opt = edm.unpack(obj, path)
  fields, checks = edm.describe(ema_net or net)
  check_config(fields, checks, config, path)
  raw = edm.params(net or ema_net, config)
  adam = edm.adam_moments(net, opt, config) if opt is not None else None
  sibling = None if ema_net is not None else _sibling_snapshot(path)
  if ema_net is not None:
    ema = edm.params(ema_net, config) if net is not None else raw
  elif sibling:                               # EDM keeps the EMA in the snapshot beside the state
    ema = edm.params(edm.read(sibling)[0], config)
  else:
    ema = raw
  return Checkpoint(ema, raw, adam, adam[0] if adam else _kimg_step(path, config), fields, checks,
                    path)


def _sibling_snapshot(path):
  """network-snapshot-<k>.pkl beside training-state-<k>.pt (EDM's --resume pairs them)."""
  match = re.match(r'training-state-(\d+)\.pt$', os.path.basename(path))
  if not match:
    return None
  sibling = os.path.join(os.path.dirname(path), f'network-snapshot-{match.group(1)}.pkl')
  return sibling if os.path.exists(sibling) else None


def _kimg_step(path, config):
  """EDM names files by thousands of images seen; as optimizer steps of this config's batch
  (Patch Diffusion's steps count the integer part of batch · batch_mul_avg images:
  `losses.images_per_step`)."""
  match = re.search(r'-(\d{6})\.(pkl|pt)$', os.path.basename(path))
  return int(match.group(1)) * 1000 // math.floor(losses.images_per_step(config)) if match else 0


def _load_score_sde_pytorch(path, obj, config):
  model = {score_sde.strip_prefix(k): np.asarray(v) for k, v in dict(obj['model']).items()}
  checks = score_sde.recorded_levels(model, config)
  check_config({}, checks, config, path)
  shadow = [np.asarray(p) for p in dict(obj['ema'])['shadow_params']]
  ema = score_sde.convert_pytorch(score_sde.ema_state_dict(model, shadow), config)
  raw = score_sde.convert_pytorch(model, config)
  return Checkpoint(ema, raw, None, int(obj.get('step', 0)), {}, checks, path)


def _load_msgpack(path, config):
  import flax.serialization  # pylint: disable=import-outside-toplevel
  with open(path, 'rb') as f:
    try:
      state = flax.serialization.msgpack_restore(f.read())
    except Exception as err:  # pylint: disable=broad-except   # msgpack raises several types
      raise edm.NotANetworkError(
          f'{path}: not a checkpoint this project reads ({type(err).__name__}: {err}); expected an '
          f'EDM .pkl/.pt, a score_sde .pth or Flax checkpoint, or a params.msgpack') from None
  if isinstance(state, dict) and 'params_ema' in state:          # score_sde (Flax) State
    ema = score_sde.convert_flax(state['params_ema'], config)
    raw = score_sde.convert_flax(state['optimizer']['target'], config)
    return Checkpoint(ema, raw, None, int(np.asarray(state.get('step', 0))), {}, {}, path)
  return Checkpoint(state, state, None, 0, {}, {}, path)         # our params.msgpack


def _same(a, b):
  if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
    return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b)))
  if isinstance(a, float) or isinstance(b, float):
    try:
      return math.isclose(float(a), float(b), rel_tol=1e-6) or (math.isinf(a) and a == b)
    except (TypeError, ValueError):
      return False
  return a == b


def _get(config, field):
  node = config
  for part in field.split('.'):
    node = node[part]
  return node


def apply_fields(config, fields):
  """Set {dotted field: value} in `config` (lists become tuples where the field holds a tuple)."""
  for field, value in fields.items():
    *path, name = field.split('.')
    node = _get(config, '.'.join(path)) if path else config
    if isinstance(node[name], tuple) and isinstance(value, list):
      value = tuple(value)
    node[name] = value
  return config


def check_config(fields, checks, config, source):
  """Raise CheckpointMismatchError listing every field where the file and the config differ."""
  wrong = [(k, v, _get(config, k)) for k, v in {**fields, **checks}.items()
           if not _same(v, _get(config, k))]
  if wrong:
    diffs = '; '.join(f'{k}: {v!r} in the file, {c!r} in the config' for k, v, c in wrong)
    flags = ' '.join(shlex.quote(f'--config.{k}={flag_value(v)}') for k, v, _ in wrong)
    raise CheckpointMismatchError(f'{source} does not fit the config: {diffs}. Use the config '
                                  f'made for this file, or set {flags}')


def flag_value(value):
  """`value` as main.py's --config.<field>= flag parses it back (tuples as '(1, 2)')."""
  return str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)
