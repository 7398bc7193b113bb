"""What "the real test split" of the digits metric measures: the quickstart's reference, next to
real digits drawn from the training distribution.

  python bench/digits_reference.py [--seed 0]

The digits metric (digits_metric.py) scores images against the 1500 train digits with features of
a classifier fitted to them, and reports the real 297-image test split's scores as "real data".
Two things separate that split from the train distribution, and this script measures each at
n = 297 (FD: the mean over disjoint n-subsets; KID ± its std over 100 subsets, digits_metric's):
- the classifier has seen every train image but no test image (an in-sample train subset vs an
  iid subset held out from both the reference and the classifier);
- sklearn's digits keep the UCI file's order, and the last 297 are not an iid draw from the rest
  (the test split vs the same held-out reference; a seeded random split of all 1797 for scale).
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
  rng = np.random.default_rng(seed)
  held, rest = np.split(rng.permutation(len(train)), [dm.EQUAL_N])
  on_train = dm.train_digits_classifier()                       # the metric's own classifier
  on_rest = dm.train_digits_classifier(images=train[rest], labels=labels[rest])
  whole, whole_labels = np.concatenate([train, test]), np.concatenate([labels, split['test_labels']])
  shuffled = rng.permutation(len(whole))
  other, first = shuffled[dm.EQUAL_N:], shuffled[:dm.EQUAL_N]
  on_other = dm.train_digits_classifier(images=whole[other], labels=whole_labels[other])
  return [
      ('test split (last 297) vs train: the metric\'s "real"', 'train', *score(on_train, test, train)),
      ('297 train digits vs train (in-sample)', 'train', *score(on_train, train[held], train)),
      ('test split vs train minus 297 held out', 'train minus held out',
       *score(on_rest, test, train[rest])),
      ('297 held-out train digits vs the rest (iid, unseen)', 'train minus held out',
       *score(on_rest, train[held], train[rest])),
      ('random 297 of all 1797 vs the other 1500 (iid split)', 'the other 1500',
       *score(on_other, whole[first], whole[other])),
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
