"""The published-checkpoint fixtures (tests/fixtures/published/<case>/, made by
tools/make_published_fixtures.py): each case's checkpoint file and the config that reads it, for
the tests that run our code on them (images, bits/dim, losses)."""
import glob
import importlib.util
import json
import os

from foreign import edm, load
from models import utils as mutils
import sde_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'published')
CASES = sorted(os.listdir(FIXTURES)) if os.path.isdir(FIXTURES) else []
CHECKPOINT_GLOBS = ('network-snapshot-*.pkl', 'training-state-*.pt', 'checkpoint_*.pth')


def settings_of(case):
  with open(os.path.join(FIXTURES, case, 'settings.json')) as f:
    return json.load(f)


def checkpoint_of(case):
  """The case's checkpoint file (a network snapshot where there is one), or that of the case its
  settings name ('checkpoint_case': another sampler on the same file)."""
  folder = settings_of(case).get('checkpoint_case', case)
  for pattern in CHECKPOINT_GLOBS:
    found = sorted(glob.glob(os.path.join(FIXTURES, folder, pattern)))
    if found:
      return found[0]
  raise FileNotFoundError(f'no checkpoint in {FIXTURES}/{folder}')


def base_config(relative_path):
  """get_config() of the config file at `relative_path` (from the repository root)."""
  spec = importlib.util.spec_from_file_location('base', os.path.join(ROOT, relative_path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def config_of(case):
  """The base config with the file's network fields and the case's sampler settings."""
  settings = settings_of(case)
  config = base_config(settings['base_config'])
  path = checkpoint_of(case)
  if path.endswith(('.pkl', '.pt')):
    ema, net, _ = edm.read(path)
    load.apply_fields(config, edm.describe(ema or net)[0])
  load.apply_fields(config, settings['overrides'])
  if config.data.autoencoder:           # the fixture VAE, relative to the repository
    config.data.autoencoder = os.path.join(ROOT, config.data.autoencoder)
  if not config.model.augment_dim:      # a network without augmentation labels trains without it
    config.training.augment_p = 0.
  return config


def network_of(case):
  """(config, model, params, sde) of the case's file: its EMA weights where it has them."""
  config = config_of(case)
  params = load.load(checkpoint_of(case), config).params
  return config, mutils.get_model(config), params, sde_lib.get_sde(config)[0]
