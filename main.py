"""scoreflow entry point.

  python main.py --config=configs/quickstart/digits.py --workdir=W --mode=train
  python main.py --config=configs/edm/cifar10_ddpmpp.py --workdir=W --mode=sample \
      --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl
  python main.py --config=configs/ve/cifar10_ncsnpp_continuous.py --config.training.batch_size=64 \
      --dry_run                                    # print the resolved config and exit

The config is locked: an unknown or mistyped override fails while the flags are parsed, before
any work. Logs go to stderr and to <workdir>/log.txt (process i > 0 of a multi-process run:
log<i>.txt). --distributed joins a multi-process run (run_lib.init_distributed).
"""
import logging as pylogging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file (ml_collections).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, samples, results.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample', 'fid', 'fid_stats', 'inpaint',
                                    'colorize'], 'What to run (modes.py).')
flags.DEFINE_string('eval_folder', 'eval', 'Sub-directory of workdir for --mode=eval results.')
flags.DEFINE_string('checkpoint', '', 'Weights instead of the workdir\'s newest state: a file or '
                    'URL of any format foreign/load.py reads, or an orbax step directory.')
flags.DEFINE_bool('dry_run', False, 'Print the resolved config and exit.')
flags.DEFINE_string('distributed', '', "Multi-process: 'auto' or ADDRESS:PORT,NUM_PROCESSES,ID.")
flags.mark_flags_as_required(['config'])


def _parse_flags(argv):
  try:
    return app.parse_flags_with_usage(argv)
  except AttributeError as err:   # ml_collections: an override names no field of the locked config
    cause = err.args[0]           # ml_collections wraps the KeyError that holds the message
    sys.exit(f'FATAL Flags parsing error: unknown config field '
             f'{cause.args[0] if isinstance(cause, KeyError) else cause}')


def _hide_gpus_from_tensorflow():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.set_visible_devices([], 'GPU')


def _tee_logging(workdir, process):
  handler = pylogging.FileHandler(os.path.join(workdir, f'log{process or ""}.txt'))
  handler.setFormatter(pylogging.Formatter('%(levelname)s %(asctime)s %(filename)s:%(lineno)d] '
                                           '%(message)s'))
  logging.get_absl_logger().addHandler(handler)
  logging.set_verbosity(logging.INFO)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import utils  # pylint: disable=import-outside-toplevel
  utils.configure_cpu()               # before anything starts JAX's CPU backend
  if FLAGS.dry_run:
    print(FLAGS.config)
    return
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required (except with --dry_run)')
  if FLAGS.checkpoint:                # a bad file fails in seconds, before the workdir changes
    from foreign import load  # pylint: disable=import-outside-toplevel
    load.precheck(FLAGS.checkpoint, FLAGS.config)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  _hide_gpus_from_tensorflow()
  import modes  # pylint: disable=import-outside-toplevel   # after TF is told about GPUs
  import run_lib  # pylint: disable=import-outside-toplevel
  _tee_logging(FLAGS.workdir, run_lib.init_distributed(FLAGS.distributed))
  modes.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, checkpoint=FLAGS.checkpoint,
            eval_folder=FLAGS.eval_folder)

if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
