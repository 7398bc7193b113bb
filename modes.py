"""The run modes of `main.py --mode=...`, in one registry: name -> fn(config, workdir, options).

`options` holds main.py's flags that a mode may read: `checkpoint` (weights to use instead of the
workdir's newest state, `foreign.load`) and `eval_folder`. Register a new mode with
`@register_mode('name')`; main.py lists MODES' names as the valid --mode values.
"""
from absl import logging

import checkpointing
import controllable_generation as cg
import eval_lib
import evaluation
import fid
import run_lib
from utils import Registry

MODES = Registry('mode')
register_mode = MODES.register


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


@register_mode('inpaint')
def _inpaint(config, workdir, options):
  return cg.run_inpaint(config, workdir, options['checkpoint'])


@register_mode('colorize')
def _colorize(config, workdir, options):
  return cg.run_colorize(config, workdir, options['checkpoint'])


def run(mode, config, workdir, **options):
  """Run `mode`; the errors a user can fix are logged as one line and give exit status 1."""
  try:
    return MODES.get(mode)(config, workdir, options)
  except (run_lib.TrainingDivergedError, evaluation.EvaluationFileError,
          checkpointing.CheckpointReadError, fid.ImagesError) as err:
    logging.error('%s', err)
    raise SystemExit(1) from None
