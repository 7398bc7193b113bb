"""What resuming the input pipeline costs at an early and a late step (data_state.py).

For the quickstart config (digits, batch 64) the pipeline is run to step `early` and to step
`late`, its position saved as a training checkpoint saves it; then a fresh pipeline is built and
timed from construction to the first batch: restored from the saved position, and replayed with
`Dataset.skip` (what a resume without a saved position does). Prints the seconds and the ratio
late / early (the restore should not grow with the step; the replay does).

  python bench/resume_cost.py [--early 10] [--late 5000] [--repeats 3]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from configs.quickstart import digits
import data_state
import datasets
import hugepages
import utils


def _make(config):
  return lambda: {'train': datasets.get_dataset(config)[0]}


def first_batch_s(config, workdir, step, restore):
  """Seconds from building the pipeline to its first batch after `step` batches."""
  start = time.perf_counter()
  if restore:
    iterators = data_state.iterators(workdir, step, _make(config), {'train': step})
  else:
    iterators = {'train': iter(_make(config)()['train'].skip(step))}
  next(iterators['train'])
  return time.perf_counter() - start


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--early', type=int, default=10)
  parser.add_argument('--late', type=int, default=5000)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)
  utils.configure_cpu()
  config = digits.get_config()
  with tempfile.TemporaryDirectory() as workdir:
    for step in (args.early, args.late):
      iterator = iter(_make(config)()['train'])
      for _ in range(step):
        next(iterator)
      data_state.save(workdir, step, {'train': iterator})
    print(f'digits, batch {config.training.batch_size}; seconds to the first batch after resuming '
          f'(min of {args.repeats})')
    for name, restore in (('restored (data_state.py)', True), ('replayed (Dataset.skip)', False)):
      early, late = (min(first_batch_s(config, workdir, step, restore)
                         for _ in range(args.repeats)) for step in (args.early, args.late))
      print(f'{name:<26} step {args.early}: {early:.3f} s, step {args.late}: {late:.3f} s, '
            f'ratio {late / early:.2f}')


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
