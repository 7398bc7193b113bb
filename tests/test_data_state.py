"""The input pipeline resumes from its saved position (data_state.py), past epoch boundaries, in
time that does not depend on the step: no element is replayed (Dataset.skip is never called).
tests/test_pipeline.py checks that run_lib.train resumes through it."""
import os

from absl import logging
import numpy as np
import pytest
import tensorflow as tf

from configs import quicktest
from configs.quickstart import digits
import data_state
import datasets


def _config(batch=512):        # the 1,500 training digits are ~3 batches: epochs end often
  config = quicktest.shrink(digits.get_config())
  config.training.batch_size = batch
  config.data.uniform_dequantization = True
  return config


def _datasets(config):   # new objects: a second iteration of one Dataset draws new noise seeds
  return datasets.get_dataset(config, uniform_dequantization=True)


def _batches(iterator, n):
  return [next(iterator)['image'].numpy() for _ in range(n)]


@pytest.fixture
def no_replay(monkeypatch):
  def refuse(*_):
    raise AssertionError('the pipeline was replayed with Dataset.skip')
  monkeypatch.setattr(tf.data.Dataset, 'skip', refuse)


def test_restored_iterators_continue_as_the_uninterrupted_ones(tmp_path, no_replay):
  config, workdir = _config(), str(tmp_path)
  expected = _batches(iter(_datasets(config)[0]), 9)     # three epochs
  its = data_state.iterators(workdir, 0, lambda: dict(zip(('train', 'eval'), _datasets(config))),
                             {'train': 0, 'eval': 0})
  _batches(its['train'], 4)
  eval_next = _batches(its['eval'], 1)
  data_state.save(workdir, 4, its)
  expected_eval = _batches(its['eval'], 1)
  resumed = data_state.iterators(workdir, 4,
                                 lambda: dict(zip(('train', 'eval'), _datasets(config))),
                                 {'train': 4, 'eval': 1})
  for want, got in zip(expected[4:], _batches(resumed['train'], 5)):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(_batches(resumed['eval'], 1)[0], expected_eval[0])
  assert not np.array_equal(eval_next[0], expected_eval[0])


def test_only_the_newest_states_are_kept(tmp_path):
  config, workdir = _config(batch=4), str(tmp_path)
  its = {'train': iter(_datasets(config)[0])}
  for step in (1, 2, 3, 4):
    data_state.save(workdir, step, its)
  assert sorted(os.listdir(os.path.join(workdir, data_state.DATA))) == ['3', '4']


def test_a_missing_or_corrupt_state_is_logged_and_replayed(tmp_path, caplog):
  config, workdir = _config(batch=4), str(tmp_path)
  expected = _batches(iter(_datasets(config)[0]), 4)
  train = lambda: {'train': _datasets(config)[0]}  # pylint: disable=unnecessary-lambda-assignment
  its = data_state.iterators(workdir, 0, train, {'train': 0})
  _batches(its['train'], 2)
  data_state.save(workdir, 2, its)
  folder = os.path.join(workdir, data_state.DATA, '2')
  for f in os.listdir(folder):
    if f.endswith('.index'):
      with open(os.path.join(folder, f), 'r+b') as handle:
        handle.truncate(7)
  with caplog.at_level(logging.WARNING):
    for step in (2, 3):             # corrupt at 2, absent at 3: both replayed with skip
      resumed = data_state.iterators(workdir, step, train, {'train': step})
      np.testing.assert_array_equal(_batches(resumed['train'], 1)[0], expected[step])
  assert 'cannot read the input pipeline state' in caplog.text
  assert 'no input pipeline state for step 3' in caplog.text


@pytest.mark.parametrize('change', ['batch size', 'seed'])
def test_a_state_of_another_pipeline_starts_the_data_again(tmp_path, no_replay, caplog, change):
  """A resume with another batch size (or another config field the pipeline is built from) gets
  the new pipeline from its beginning, not a restored buffer of batches of the old shape."""
  config, workdir = _config(batch=4), str(tmp_path)
  its = data_state.iterators(workdir, 0, lambda: {'train': _datasets(config)[0]}, {'train': 0},
                             {'seed': config.seed})
  _batches(its['train'], 2)
  data_state.save(workdir, 2, its, {'seed': config.seed})
  now = _config(batch=8 if change == 'batch size' else 4)
  now.seed = config.seed + (change == 'seed')
  with caplog.at_level(logging.WARNING):
    resumed = data_state.iterators(workdir, 2, lambda: {'train': _datasets(now)[0]},
                                   {'train': 2}, {'seed': now.seed})
    first = _batches(resumed['train'], 1)[0]
  np.testing.assert_array_equal(first, _batches(iter(_datasets(now)[0]), 1)[0])
  assert 'was saved for another pipeline' in caplog.text
  assert ('elements.train.image [1, 4, 8, 8, 1] float32 -> [1, 8, 8, 8, 1] float32'
          if change == 'batch size' else f'seed {config.seed} -> {now.seed}') in caplog.text
