"""What "the real test split" of the digits metric measures: the quickstart's reference, next to
other real digits scored the same way.

  python bench/digits_reference.py [--seed 0]

The digits metric (digits_metric.py) scores images against the 1500 train digits with features of
a classifier fitted to them, and reports the real 297-image test split's scores as "real data".
This script scores real digits at n = 297 (FD: the mean over disjoint n-subsets; KID ± its std
over 100 subsets, digits_metric's):
- the test split (an iid draw of all 1797, datasets.digits_split): the metric's "real";
- the classifier has seen every train image but no test image: an in-sample train subset, and
  an iid subset held out from both the reference and its own classifier (`--seed` draws it);
- sklearn keeps the UCI file's order (blocks of writers): its last 297 digits against its first
  1500, the split the metric used before 2026-12-03, are not an iid draw;
- another random split of the 1797 (`--seed`): how far the real split's own score moves with the
  draw.
Samples of a model of the train digits are in the train digits' style, so the in-sample row is the
closest real counterpart of a perfect model's samples. Prints a markdown table (~20 s on 2 cores).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import datasets
import digits_metric as dm
from evaluation import compute_stats, kernel_inception_distance
import utils


def score(params, images, reference):
  """(FD at n = 297, KID, KID std) of `images` vs `reference` under the classifier `params`."""
  features, ref = dm.digits_features(images, params), dm.digits_features(reference, params)
  fd, _ = dm.fd_at_n(features, compute_stats(ref), dm.EQUAL_N)
  kid, kid_std = kernel_inception_distance(features, ref, dm.KID_SUBSETS, dm.EQUAL_N)
  return fd, kid, kid_std


def rows(seed):
  """(description, classifier fitted to, FD, KID, KID std) per reference."""
  split = datasets.digits_split()
  train, labels, test = split['train_images'], split['train_labels'], split['test_images']
  held, rest = np.split(np.random.default_rng(seed).permutation(len(train)), [dm.EQUAL_N])
  on_train = dm.train_digits_classifier()                       # the metric's own classifier
  on_rest = dm.train_digits_classifier(images=train[rest], labels=labels[rest])
  images, file_labels = datasets.load_digits()
  first, last = slice(datasets.DIGITS_NUM_TRAIN), slice(datasets.DIGITS_NUM_TRAIN, None)
  on_first = dm.train_digits_classifier(images=images[first], labels=file_labels[first])
  other, drawn = np.split(np.random.default_rng(seed).permutation(len(images)),
                          [datasets.DIGITS_NUM_TRAIN])
  on_other = dm.train_digits_classifier(images=images[other], labels=file_labels[other])
  return [
      ('test split vs train: the metric\'s "real" (iid)', 'train', *score(on_train, test, train)),
      ('297 train digits vs train (in-sample)', 'train', *score(on_train, train[held], train)),
      ('297 held-out train digits vs the rest (unseen)', 'train minus held out',
       *score(on_rest, train[held], train[rest])),
      ('sklearn\'s last 297 vs its first 1500 (file order; the split before 2026-12-03)',
       'first 1500', *score(on_first, images[last], images[first])),
      (f'another random split (--seed {seed}): its 297 vs its 1500', 'its 1500',
       *score(on_other, images[drawn], images[other])),
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seed', type=int, default=0, help='held-out subset and random split')
  args = parser.parse_args()
  utils.configure_cpu()
  print(f'| real digits, n = {dm.EQUAL_N} | classifier fitted to | FD | KID |\n|---|---|---|---|')
  for name, fitted, fd, kid, kid_std in rows(args.seed):
    print(f'| {name} | {fitted} | {fd:.2f} | {kid:.1f} ± {kid_std:.1f} |')


if __name__ == '__main__':
  main()
