"""digits_metric's --mode=eval metrics: the estimators against direct formulas, and the real test
split against deliberately degraded sets at equal n, each degradation caught by the metric meant
for it (blur, noise: FD and KID; one-class collapse: the class histogram; copies of training
images: the memorisation measure, while FD looks better than real data)."""
import itertools
import os
import sys

import numpy as np
import pytest
import scipy.ndimage

import datasets
import digits_metric as dm
import evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
  """The DigitsReference of a classifier trained once into a temporary cache (a few s)."""
  return dm.DigitsReference(dm.load_digits_classifier(str(tmp_path_factory.mktemp('cls'))))


@pytest.fixture(scope='module')
def split():
  return datasets.digits_split()


def _metrics(ref, images):
  return ref.metrics(ref.outputs(images))


def _brute_mmd2(x, y):
  """Unbiased MMD² (Bińkowski+18) by explicit sums over pairs, k(a, b) = (a·b / d + 1)³."""
  d = x.shape[1]
  k = lambda a, b: (a @ b / d + 1.) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  xy = sum(k(a, b) for a in x for b in y) / (m * n)
  return xx + yy - 2 * xy


def test_kid_matches_the_direct_formula():
  rng = np.random.RandomState(0)
  x, y = rng.randn(9, 4), rng.randn(9, 4) + 0.5
  mean, std = evaluation.kernel_inception_distance(x, y, num_subsets=3, subset_size=9)
  assert mean == pytest.approx(_brute_mmd2(x, y), rel=1e-10) and std < 1e-9  # whole sets
  mean, std = evaluation.kernel_inception_distance(x, y, num_subsets=4, subset_size=5, seed=3)
  draws = np.random.RandomState(3)
  direct = [_brute_mmd2(x[draws.choice(9, 5, replace=False)], y[draws.choice(9, 5, replace=False)])
            for _ in range(4)]
  assert mean == pytest.approx(np.mean(direct), rel=1e-10)
  assert std == pytest.approx(np.std(direct), rel=1e-8) and std > 0


def test_fd_at_n_averages_disjoint_subsets():
  """Subset i = the reference set shifted by c_i: each FD is ||c_i||² (equal covariances)."""
  rng = np.random.RandomState(1)
  base = rng.randn(40, 3)
  stats = evaluation.compute_stats(base)
  shifts = [np.array([1., 0, 0]), np.array([0, 2., 0]), np.array([1., 1, 1])]
  feats = np.concatenate([base + c for c in shifts] + [base[:7] + 100.])   # remainder: unused
  fd, k = dm.fd_at_n(feats, stats, 40)
  assert k == 3 and fd == pytest.approx(np.mean([c @ c for c in shifts]), abs=1e-6)
  with pytest.raises(ValueError, match='fewer than n'):
    dm.fd_at_n(feats[:39], stats, 40)


def test_class_scores_and_nearest_l2():
  train_share = np.full(10, 0.1)
  logits = np.zeros((40, 10))
  logits[:20, 2], logits[20:39, 5], logits[39, 7] = 10., 1., 1.   # 2: p 0.9995; 5, 7: p 0.23
  got = dm.class_scores(logits, train_share)
  p = np.array([20, 19, 1]) / 40                                  # 7 (2.5% < 5%): not covered
  assert got == pytest.approx({'confident_share': 0.5, 'classes_covered': 2.,
                               'class_kl_train': np.sum(p * np.log(p / 0.1))})
  ref = np.array([[0., 0], [3, 4]])
  np.testing.assert_allclose(dm.nearest_l2(np.array([[0., 1], [3, 4], [6, 8]]), ref), [1, 0, 5],
                             atol=1e-7)


def test_real_split_is_its_own_reference(ref, split):
  m = _metrics(ref, split['test_images'])
  assert m['digits_equal_n'] == 297 and m['digits_fd_equal_n_subsets'] == 1
  for key in ('fd_equal_n', 'kid', 'confident_share', 'nn_train_l2_median', 'copy_share'):
    assert m[f'digits_{key}'] == m[f'digits_{key}_real_test']
  # README's number (297 vs train): 4.24; 4.31 under the tests' XLA optimisation level 0 (conftest)
  assert m['digits_fd'] == pytest.approx(4.24, abs=0.1)
  assert m['digits_confident_share'] > 0.85 and m['digits_classes_covered'] == 10
  assert m['digits_copy_share'] < 0.02                      # by construction ~1%
  assert sum(m[f'digits_class_share_{k}'] for k in range(10)) == pytest.approx(1.)
  assert all(isinstance(v, float) for v in m.values())      # outputs.Writer scalars


def test_more_samples_are_scored_in_subsets_of_the_test_split_size(ref, split):
  x = np.concatenate([split['test_images']] * 3)
  m = _metrics(ref, x)
  assert m['digits_fd_equal_n_subsets'] == 3 and m['digits_fd_equal_n_subsets_real_test'] == 1
  assert m['digits_fd_equal_n'] == pytest.approx(m['digits_fd_equal_n_real_test'], rel=1e-9)
  m = _metrics(ref, split['test_images'][:99])              # fewer samples: n = their count
  assert m['digits_equal_n'] == 99 and m['digits_fd_equal_n_subsets_real_test'] == 3


@pytest.mark.parametrize('name', ['blur', 'noise'])
def test_blur_and_noise_raise_fd_and_kid(ref, split, name):
  real = split['test_images']
  bad = (scipy.ndimage.gaussian_filter(real, sigma=(0, 1, 1, 0)) if name == 'blur' else
         np.clip(real + 0.2 * np.random.RandomState(2).randn(*real.shape), 0, 1))
  m = _metrics(ref, bad)
  assert m['digits_fd_equal_n'] > 1.3 * m['digits_fd_equal_n_real_test'], m
  assert m['digits_kid'] > m['digits_kid_real_test'] + 0.5 * m['digits_kid_std_real_test'], m
  assert m['digits_copy_share'] == 0                        # not copies


def test_one_class_collapse_is_flagged_by_the_class_histogram(ref, split):
  zeros = split['test_images'][split['test_labels'] == 0]
  m = _metrics(ref, np.resize(zeros, split['test_images'].shape))   # 297 test zeros, repeated
  assert m['digits_classes_covered'] <= 2 < m['digits_classes_covered_real_test'] == 10
  assert m['digits_class_share_0'] > 0.9
  assert m['digits_class_kl_train'] > 1.5 > 0.1 > m['digits_class_kl_train_real_test']
  assert m['digits_copy_share'] == 0


def test_copies_of_training_images_are_flagged_by_memorisation(ref, split):
  """Quantised to uint8 as eval stores samples: the copies are not exact, still flagged."""
  idx = np.random.RandomState(3).choice(1500, 297, replace=False)
  copies = np.round(split['train_images'][idx] * 255) / 255
  m = _metrics(ref, copies)
  assert m['digits_copy_share'] == 1 and m['digits_copy_share_real_test'] < 0.02
  assert m['digits_nn_train_l2_median'] < 0.05 < 1 < m['digits_nn_train_l2_median_real_test']
  # the feature metrics cannot tell: copies look better than real held-out digits
  assert m['digits_fd_equal_n'] < m['digits_fd_equal_n_real_test']
  assert m['digits_kid'] < m['digits_kid_real_test']


def test_comparison_line(ref, split):
  m = _metrics(ref, split['test_images'][::-1])
  m['digits_kid'] = 12.5                                    # model and real differ in the line
  line = dm.comparison_line(m)
  assert line.startswith(f'digits, model vs real test split at n=297: FD '
                         f'{m["digits_fd_equal_n"]:.4g} vs {m["digits_fd_equal_n_real_test"]:.4g} '
                         '(mean of 1 vs 1 subsets), KID 12.5±')
  assert f'vs {m["digits_kid_real_test"]:.4g}±{m["digits_kid_std_real_test"]:.2g},' in line
  share = m['digits_confident_share']
  assert f'confident (p>=0.9) {share:.3f} vs {share:.3f}' in line
  assert 'classes covered 10 vs 10' in line


@pytest.mark.slow   # ~40 s: a second classifier
def test_the_file_order_split_was_farther_from_train_than_the_iid_test_split():
  """bench/digits_reference.py: the classifier has seen every train digit (in-sample train digits
  score nearer than held-out ones), and sklearn's last 297 digits, the test split before
  2026-12-03, are far from its first 1500 by FD and KID, where the iid test split is not."""
  sys.path.insert(0, os.path.join(ROOT, 'bench'))
  import digits_reference  # pylint: disable=import-outside-toplevel
  (_, _, fd_real, kid_real, std_real), (_, _, fd_in, kid_in, _), (_, _, fd_held, kid_held, _), \
      (_, _, fd_file, kid_file, _), _ = digits_reference.rows(seed=0)
  assert fd_in < min(fd_held, fd_real) and kid_in < min(kid_held, kid_real)
  assert fd_file > 2 * max(fd_held, fd_real)
  assert kid_file > max(kid_held, kid_real) + 2 * std_real
