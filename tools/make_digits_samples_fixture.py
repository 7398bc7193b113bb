"""Write tests/fixtures/digits_samples.npz: quickstart samples from an early and a trained checkpoint.

The samples come from the real pipeline — the quickstart run and its evaluation, which saves
every checkpoint's samples (uint8) in <workdir>/eval/step_<step>/samples_<round>.npz:

  python main.py --mode=train --config=configs/quickstart/digits.py --workdir=W   # ~5 min
  python main.py --mode=eval --config=configs/quickstart/digits.py --workdir=W    # ~4 min
  python tools/make_digits_samples_fixture.py --workdir=W

Checkpoint 1 (step 500 of 1000) is "early training", checkpoint 2 (step 1000) "trained". The
fixture keeps the first 297 samples of each (the size of the digits test split, so the three
Fréchet distances of tests/test_evaluation.py compare sets of equal size): 2 × 297 × 64 bytes.
  early, trained   uint8 [297, 8, 8, 1] in 0..255 (x·255, rounded)
  early_step, trained_step, command
"""
import argparse
import glob
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = 297


def checkpoint_samples(workdir, k):
  """The first NUM samples evaluated for checkpoint k, and its training step."""
  with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
    step = k * json.load(f)['training']['snapshot_freq']
  files = sorted(glob.glob(os.path.join(workdir, 'eval', f'step_{step}', 'samples_*.npz')),
                 key=lambda f: int(f.rsplit('_', 1)[1].split('.')[0]))
  if not files:
    raise FileNotFoundError(f'no samples of checkpoint {k} (step {step}) in {workdir}/eval: run '
                            'the train and eval commands of this file\'s docstring first')
  samples = np.concatenate([np.load(f)['samples'] for f in files])[:NUM]
  return samples, step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--early', type=int, default=1, help='checkpoint index of early training')
  parser.add_argument('--trained', type=int, default=2, help='checkpoint index of the trained model')
  parser.add_argument('--out', default=os.path.join(ROOT, 'tests', 'fixtures', 'digits_samples.npz'))
  args = parser.parse_args()
  early, early_step = checkpoint_samples(args.workdir, args.early)
  trained, trained_step = checkpoint_samples(args.workdir, args.trained)
  assert early.shape == trained.shape == (NUM, 8, 8, 1), (early.shape, trained.shape)
  np.savez_compressed(args.out, early=early, trained=trained, early_step=early_step,
                      trained_step=trained_step,
                      command='python main.py --mode=train|eval --config=configs/quickstart/digits.py')
  print(f'wrote {args.out}: steps {early_step} and {trained_step}, {NUM} samples each')


if __name__ == '__main__':
  main()
