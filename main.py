"""scoreflow entry point.

  python main.py --config=configs/quickstart/digits.py --workdir=W --mode=train
  python main.py --config=configs/edm/cifar10_ddpmpp.py --workdir=W --mode=sample \
      --checkpoint=https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl
  python main.py --config=C --config.training.batch_size=64 --dry_run | --explain_config [--mode=M]

The config is locked: a missing file or mistyped override fails while the flags are parsed, a
combination the rules forbid (configs/rules.py) before the workdir is touched. Logs: stderr and
<workdir>/log.txt (process i > 0: log<i>.txt). --workdir may be gs:// or s3:// (paths.py).
"""
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

import hugepages

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file (ml_collections).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, samples, results.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample', 'fid', 'fid_stats', 'inpaint',
                                    'colorize', 'train_classifier'], 'What to run (modes.py).')
flags.DEFINE_string('eval_folder', 'eval', 'Sub-directory of workdir for --mode=eval results.')
flags.DEFINE_string('checkpoint', '', 'Weights instead of the workdir\'s newest state: a file or '
                    'URL of any format foreign/load.py reads, or an orbax step directory.')
flags.DEFINE_bool('dry_run', False, 'Print the resolved config and exit.')
flags.DEFINE_bool('explain_config', False, 'Print the config rules (and those --config breaks).')
flags.DEFINE_string('distributed', '', "Multi-process: 'auto' or ADDRESS:PORT,NUM_PROCESSES,ID.")


def _parse_flags(argv):
  if sum(a.split('=', 1)[0] == '--config' for a in argv[1:]) > 1:  # absl: 'config.X defined twice'
    sys.exit('FATAL --config given twice: pass one file, override fields with --config.FIELD=VALUE')
  try:
    argv = app.parse_flags_with_usage(argv)
    if FLAGS.config is not None:  # a config file that failed to load raises when first read
      FLAGS.config.keys()
  except AttributeError as err:   # ml_collections: an override names no field of the locked config
    cause = err.args[0]           # ml_collections wraps the KeyError that holds the message
    sys.exit(f'FATAL Flags parsing error: unknown config field '
             f'{cause.args[0] if isinstance(cause, KeyError) else cause}')
  except OSError as err:          # the load error's last line names the file and the cause
    sys.exit(f'FATAL cannot load --config: {str(err).strip().splitlines()[-1].strip()}')
  return argv


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import paths  # pylint: disable=import-outside-toplevel
  import utils  # pylint: disable=import-outside-toplevel
  paths.configure()                   # before the first path operation (orbax's included)
  sampling = FLAGS.mode in ('eval', 'sample', 'inpaint', 'colorize') and not FLAGS.distributed
  utils.configure_cpu(*utils.sampling_setup(FLAGS.config) if sampling and FLAGS.config else ())
  from configs import validate  # pylint: disable=import-outside-toplevel
  if FLAGS.explain_config or FLAGS.dry_run:
    return print(validate.explain(FLAGS.config, FLAGS.mode) if FLAGS.explain_config
                 else FLAGS.config)
  if FLAGS.config is None:
    raise app.UsageError('--config is required (except with --explain_config)')
  validate.check_or_exit(FLAGS.config, FLAGS.mode)   # device rules wait for the entry points
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required (except with --dry_run)')
  from foreign import load  # pylint: disable=import-outside-toplevel
  load.precheck(FLAGS.checkpoint, FLAGS.config)   # bad files fail in seconds, nothing written
  paths.precheck(FLAGS.workdir)      # an unreachable bucket fails in seconds, nothing written
  import datasets  # pylint: disable=import-outside-toplevel
  datasets.tensorflow()               # TF with its GPUs hidden, before anything else imports it
  import modes  # pylint: disable=import-outside-toplevel
  import outputs  # pylint: disable=import-outside-toplevel
  outputs.tee_logging(FLAGS.workdir, modes.join(FLAGS.distributed))
  modes.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, checkpoint=FLAGS.checkpoint,
            eval_folder=FLAGS.eval_folder)


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # restarts once with glibc's huge pages (hugepages.py)
  app.run(main, flags_parser=_parse_flags)
