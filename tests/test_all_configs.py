"""Every file under configs/ runs one shrunk train step and one sample step (style habit 7).

`quicktest.shrink` makes each config tiny (DIGITS data at 8 px, or 16 px for RefineNets). The
whole sweep (49 files, ~30 s each on 2 CPU cores) is marked `slow`; by default one config runs:
NCSN++ (continuous VE DSM, reverse diffusion + Langevin). STF's reference batch goes through the
data pipeline and the train step in test_data_parallel (1 vs 8 devices). EDM
(precond, loss, Heun) and DDPM++ run in tests/test_pipeline.py; Patch Diffusion in test_patch
(each patch size through run_lib's train step, a slow test; the score of full images sees the
full grid); class-conditional EDM's labels through the pipeline in test_dataset_tool, its
training (slow) and sampling in test_conditional, its augmentation in test_augment; the DDPM and
NCSNv2 networks and their samplers have their own tests (test_models, test_refinenet,
test_sampling). A last test takes one train step of the VE config on CIFAR-10 through tfds
(mocked).
The rest are skipped unless SCOREFLOW_SLOW_TESTS=1: `SCOREFLOW_SLOW_TESTS=1 pytest -m slow
tests/test_all_configs.py` runs the whole sweep.
"""
import contextlib
import glob
import importlib.util
import os
from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import quicktest
import datasets
import latent
import run_lib
import streams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = {'__init__.py', 'default_lib.py', 'presets.py', 'quicktest.py', 'rules.py',
           'rules_eval.py', 'validate.py'}
CONFIGS = sorted(os.path.relpath(p, ROOT)
                 for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if os.path.basename(p) not in LIBRARY)
DEFAULT = {'configs/ve/cifar10_ncsnpp_continuous.py'}


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.splitext(path)[0].replace('/', '.'),
                                                os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _offline(config):
  """A latent config's autoencoder (Stable Diffusion's, a download) replaced by the fixture VAE
  (f = 2): 4×4×4 latents of the shrunk 8-px digits."""
  if config.data.autoencoder:
    config.data.autoencoder = os.path.join(ROOT, 'tests', 'fixtures', 'autoencoder')
    config.data.image_size = 4
  return config


def _one_train_and_sample_step(config):
  config = _offline(config)
  run = run_lib.build(config)
  fns = run_lib.make_train_fns(run)
  state = run_lib.init_state(run)
  train_ds, _ = datasets.get_dataset(config)
  batch = next(run_lib.train_batches(train_ds, run, 0))
  packed, metrics = fns.train_step(fns.pack(state), batch, streams.run_key(config), 0)
  state = fns.unpack(packed)
  assert np.isfinite(np.asarray(metrics['loss'])).all() and int(state.step) == 1
  keys = streams.sample_keys(streams.run_key(config, 0), 2, sharding=run.sharded())
  images, nfe = fns.sample(keys, state.ema_params)
  assert images.shape == (2, *latent.image_shape(config)) and int(nfe) > 0
  assert np.isfinite(np.asarray(images)).all()


SLOW = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get('SCOREFLOW_SLOW_TESTS'),
                                             reason='full sweep: set SCOREFLOW_SLOW_TESTS=1')]


@pytest.mark.parametrize('path', [p if p in DEFAULT else pytest.param(p, marks=SLOW)
                                  for p in CONFIGS])
def test_config_trains_and_samples(path):
  _one_train_and_sample_step(quicktest.shrink(_load(path)))


def test_every_config_file_is_in_the_sweep():
  assert set(DEFAULT) <= set(CONFIGS) and len(CONFIGS) >= 40
  assert 'configs/quickstart/digits.py' in CONFIGS


@contextlib.contextmanager
def _mock_cifar(num_examples=8):
  """tfds's mock CIFAR-10 (random uint8 images), seen as prepared (as tests/test_datasets.py)."""
  with tfds.testing.mock_data(num_examples=num_examples), \
       mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    yield


def test_one_train_step_on_cifar10_through_tfds(monkeypatch):
  monkeypatch.setattr(datasets, 'SHUFFLE_BUFFER', 16)   # the mock makes each example anew
  # The README's CIFAR-10 config: its shrunk train and sample steps are the sweep's, so they come
  # from the run's compilation cache; only the data differ.
  config = quicktest.shrink(_load('configs/ve/cifar10_ncsnpp_continuous.py'))
  config.data.dataset = 'CIFAR10'                        # resized 32 -> 8 px by the pipeline
  assert config.data.num_channels == 3 and jax.device_count() >= 1
  with _mock_cifar():
    _one_train_and_sample_step(config)
