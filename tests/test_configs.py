"""Every file under configs/: loads, is a tree of differences, documents itself, is consistent.

The values table below was read from yang-song/score_sde's own config files (HEAD 0acb9e0) by
executing them; it records the intended values where the original had typos
(ve/ncsn/celeba set `training.loss` for `training.sde`; ve/ncsnv2/bedroom set
`training.continuouse`). `None` = the original does not set that field.
"""
import contextlib
import glob
import importlib.util
import os
import re
import sys

import ml_collections
import pytest

from configs import default_lib, quicktest
import sde_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = {'__init__.py', 'default_lib.py', 'presets.py', 'quicktest.py', 'rules.py',
           'rules_eval.py', 'validate.py'}
CONFIGS = sorted(os.path.relpath(p, os.path.join(ROOT, 'configs'))
                 for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if os.path.basename(p) not in LIBRARY)
LEAVES = [c for c in CONFIGS if not c.startswith('default_')]

FIELDS = ('training.sde', 'training.continuous', 'training.reduce_mean', 'training.batch_size',
          'sampling.predictor', 'sampling.corrector', 'sampling.snr', 'sampling.n_steps_each',
          'data.image_size', 'data.centered', 'model.name', 'model.ema_rate', 'model.sigma_max',
          'model.num_scales', 'model.nf', 'model.ch_mult', 'model.num_res_blocks', 'model.fir',
          'model.progressive_input', 'model.embedding_type', 'optim.lr')
_C10 = ('reverse_diffusion', 'langevin', 0.16, 1, 32, False)
_VPC = ('euler_maruyama', 'none', 0.16, 1, 32, True)
_VPD = ('ancestral_sampling', 'none', 0.16, 1, 32, True)
_NCSNPP = (128, (1, 2, 2, 2), 4, True, 'residual')
_DDPMPP = (128, (1, 2, 2, 2), 4, False, 'none')
_DDPM = (128, (1, 2, 2, 2), 2, None, None)
_HI = (128, (1, 1, 2, 2, 2, 2, 2), 2, True, 'input_skip')
_K = (16, (1, 2, 4, 8, 16, 32, 32, 32), 1, True, 'input_skip')
_RN = (128, None, None, None, None)
_LSUN = ('reverse_diffusion', 'langevin', 0.075, 1, 256, False)
_DDPM256 = ('ancestral_sampling', 'none', 0.075, 1, 256, True, 'ddpm', .9999, 378, 1000, 128,
            (1, 1, 2, 2, 4, 4), 2, None, None, 'fourier', 2e-5)
ORIGINAL = {
    'subvp/cifar10_ddpm_continuous.py': ('subvpsde', True, True, 128, *_VPC, 'ddpm', .9999, 50, 1000, *_DDPM, 'fourier', 2e-4),
    'subvp/cifar10_ddpmpp_continuous.py': ('subvpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, *_DDPMPP, 'positional', 2e-4),
    'subvp/cifar10_ddpmpp_deep_continuous.py': ('subvpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, 128, (1, 2, 2, 2), 8, False, 'none', 'positional', 2e-4),
    'subvp/cifar10_ncsnpp_continuous.py': ('subvpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, *_NCSNPP, 'positional', 2e-4),
    'subvp/cifar10_ncsnpp_deep_continuous.py': ('subvpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, 128, (1, 2, 2, 2), 8, True, 'residual', 'positional', 2e-4),
    've/bedroom_ncsnpp_continuous.py': ('vesde', True, False, 64, *_LSUN, 'ncsnpp', .999, 378, 2000, *_HI, 'fourier', 2e-4),
    've/celeba_ncsnpp.py': ('vesde', False, False, 128, 'reverse_diffusion', 'langevin', 0.17, 1, 64, False, 'ncsnpp', .999, 90, 1000, *_NCSNPP, 'positional', 2e-4),
    've/celebahq_256_ncsnpp_continuous.py': ('vesde', True, False, 64, *_LSUN, 'ncsnpp', .999, 348, 2000, *_HI, 'fourier', 2e-4),
    've/celebahq_ncsnpp_continuous.py': ('vesde', True, False, 8, 'reverse_diffusion', 'langevin', 0.15, 1, 1024, False, 'ncsnpp', .9999, 1348, 2000, *_K, 'fourier', 2e-4),
    've/church_ncsnpp_continuous.py': ('vesde', True, False, 64, *_LSUN, 'ncsnpp', .999, 380, 2000, *_HI, 'fourier', 2e-4),
    've/cifar10_ddpm.py': ('vesde', False, False, 128, *_C10, 'ddpm', .999, 50, 1000, *_DDPM, 'fourier', 2e-4),
    've/cifar10_ncsnpp.py': ('vesde', False, False, 128, *_C10, 'ncsnpp', .999, 50, 1000, *_NCSNPP, 'positional', 2e-4),
    've/cifar10_ncsnpp_continuous.py': ('vesde', True, False, 128, *_C10, 'ncsnpp', .999, 50, 1000, *_NCSNPP, 'fourier', 2e-4),
    've/cifar10_ncsnpp_deep_continuous.py': ('vesde', True, False, 128, *_C10, 'ncsnpp', .999, 50, 1000, 128, (1, 2, 2, 2), 8, True, 'residual', 'fourier', 2e-4),
    've/ffhq_256_ncsnpp_continuous.py': ('vesde', True, False, 64, *_LSUN, 'ncsnpp', .999, 348, 2000, *_HI, 'fourier', 2e-4),
    've/ffhq_ncsnpp_continuous.py': ('vesde', True, True, 8, 'reverse_diffusion', 'langevin', 0.15, 1, 1024, False, 'ncsnpp', .9999, 1348, 2000, *_K, 'fourier', 2e-4),
    've/ncsn/celeba.py': ('vesde', False, False, 128, 'none', 'ald', 0.316, 100, 64, False, 'ncsn', 0., 1., 10, *_RN, 'fourier', 1e-3),
    've/ncsn/celeba_124.py': ('vesde', False, False, 128, 'none', 'ald', 0.128, 5, 64, False, 'ncsn', 0., 90., 500, *_RN, 'fourier', 1e-3),
    've/ncsn/celeba_1245.py': ('vesde', False, False, 128, 'none', 'ald', 0.128, 5, 64, False, 'ncsn', .999, 90., 500, *_RN, 'fourier', 1e-3),
    've/ncsn/celeba_5.py': ('vesde', False, False, 128, 'none', 'ald', 0.316, 100, 64, False, 'ncsn', .999, 1., 10, *_RN, 'fourier', 1e-3),
    've/ncsn/cifar10.py': ('vesde', False, False, 128, 'none', 'ald', 0.316, 100, 32, False, 'ncsn', 0., 1, 10, *_RN, 'fourier', 1e-3),
    've/ncsn/cifar10_124.py': ('vesde', False, False, 128, 'none', 'ald', 0.176, 5, 32, False, 'ncsn', 0., 50, 232, *_RN, 'fourier', 1e-3),
    've/ncsn/cifar10_1245.py': ('vesde', False, False, 128, 'none', 'ald', 0.176, 5, 32, False, 'ncsn', .999, 50, 232, *_RN, 'fourier', 1e-3),
    've/ncsn/cifar10_5.py': ('vesde', False, False, 128, 'none', 'ald', 0.316, 100, 32, False, 'ncsn', .999, 1, 10, *_RN, 'fourier', 1e-3),
    've/ncsnv2/bedroom.py': ('vesde', False, False, 128, 'none', 'ald', 0.095, 3, 128, False, 'ncsnv2_128', .9999, 190, 1086, *_RN, 'fourier', 1e-4),
    've/ncsnv2/celeba.py': ('vesde', False, False, 128, 'none', 'ald', 0.128, 5, 64, False, 'ncsnv2_64', .999, 90., 500, *_RN, 'fourier', 1e-4),
    've/ncsnv2/cifar10.py': ('vesde', False, False, 128, 'none', 'ald', 0.176, 5, 32, False, 'ncsnv2_64', .999, 50, 232, *_RN, 'fourier', 1e-4),
    'vp/cifar10_ddpmpp.py': ('vpsde', False, True, 128, *_VPD, 'ncsnpp', .9999, 50, 1000, *_DDPMPP, 'positional', 2e-4),
    'vp/cifar10_ddpmpp_continuous.py': ('vpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, *_DDPMPP, 'positional', 2e-4),
    'vp/cifar10_ddpmpp_deep_continuous.py': ('vpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, 128, (1, 2, 2, 2), 8, False, 'none', 'positional', 2e-4),
    'vp/cifar10_ncsnpp.py': ('vpsde', False, True, 128, 'reverse_diffusion', 'none', 0.16, 1, 32, True, 'ncsnpp', .9999, 50, 1000, *_NCSNPP, 'positional', 2e-4),
    'vp/cifar10_ncsnpp_continuous.py': ('vpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, *_NCSNPP, 'positional', 2e-4),
    'vp/cifar10_ncsnpp_deep_continuous.py': ('vpsde', True, True, 128, *_VPC, 'ncsnpp', .9999, 50, 1000, 128, (1, 2, 2, 2), 8, True, 'residual', 'positional', 2e-4),
    'vp/ddpm/bedroom.py': ('vpsde', False, True, 64, *_DDPM256),
    'vp/ddpm/celebahq.py': ('vpsde', False, True, 64, *_DDPM256),
    'vp/ddpm/church.py': ('vpsde', False, True, 64, *_DDPM256),
    'vp/ddpm/cifar10.py': ('vpsde', False, True, 128, *_VPD, 'ddpm', .9999, 50, 1000, *_DDPM, 'fourier', 2e-4),
    'vp/ddpm/cifar10_continuous.py': ('vpsde', True, True, 128, *_VPC, 'ddpm', .9999, 50, 1000, *_DDPM, 'fourier', 2e-4),
    'vp/ddpm/cifar10_unconditional.py': ('vpsde', False, True, 128, *_VPD, 'ddpm', .9999, 50, 1000, *_DDPM, 'fourier', 2e-4),
}
DATASETS = {'CIFAR10', 'SVHN', 'CELEBA', 'LSUN', 'FFHQ', 'CelebAHQ', 'DIGITS', 'IMAGE_ZIP'}
PREDICTORS = {'euler_maruyama', 'reverse_diffusion', 'ancestral_sampling', 'none'}
CORRECTORS = {'langevin', 'ald', 'none'}


def _path(rel):
  return os.path.join(ROOT, 'configs', rel)


def _module(rel):
  name = 'cfgtest_' + re.sub(r'\W', '_', rel)
  spec = importlib.util.spec_from_file_location(name, _path(rel))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flat(config, prefix=''):
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, prefix + key + '.'))
    else:
      out[prefix + key] = tuple(value) if isinstance(value, (list, tuple)) else value
  return out


def _same(a, b):
  norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v   # noqa: E731
  return type(a) is type(b) and norm(a) == norm(b) or (
      isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
      and not isinstance(b, bool) and a == b)


@contextlib.contextmanager
def _noop_assignments(filename):
  """Record `cfg.field = value` statements in `filename` that leave the field's value unchanged."""
  original = ml_collections.ConfigDict.__setattr__
  found = []

  def setattr_(self, name, value):
    frame = sys._getframe(1)   # pylint: disable=protected-access
    if frame.f_code.co_filename == filename and name in self and _same(self[name], value):
      found.append(f'line {frame.f_lineno}: {name} = {value!r}')
    original(self, name, value)

  ml_collections.ConfigDict.__setattr__ = setattr_
  try:
    yield found
  finally:
    ml_collections.ConfigDict.__setattr__ = original


def _config(rel):
  return _module(rel).get_config()


def test_every_config_file_is_listed():
  assert len(ORIGINAL) == 39   # score_sde's 42 files = 3 defaults + 39 leaves
  assert set(ORIGINAL) | {'quickstart/digits.py'} <= set(LEAVES)
  assert {'default_cifar10_configs.py', 'default_celeba_configs.py',
          'default_lsun_configs.py'} <= set(CONFIGS)


@pytest.mark.parametrize('rel', CONFIGS)
def test_loads_with_exactly_the_base_fields(rel):
  config = _config(rel)
  assert isinstance(config, ml_collections.ConfigDict)
  extra = set(_flat(config)) ^ set(_flat(default_lib.get_base_config()))
  assert not extra, f'{rel} adds or drops fields (typo?): {sorted(extra)}'


@pytest.mark.parametrize('rel', CONFIGS)
def test_assigns_no_field_its_current_value(rel):
  module = _module(rel)
  build = module.get_config if rel in LEAVES else module.get_default_configs
  with _noop_assignments(_path(rel)) as found:
    build()
  assert not found, f'{rel}: no-op assignments {found}'


@pytest.mark.parametrize('rel', LEAVES)
def test_leaf_differs_from_its_default_and_is_short(rel):
  """A leaf starts from a default_*_configs file or from one other leaf (e.g. STF = the EDM leaf
  plus one field) and changes something."""
  source = open(_path(rel), encoding='utf-8').read()
  base = re.search(r'from configs\.(default_\w+_configs) import get_default_configs', source)
  leaf = re.search(r'from configs\.(\w+) import (\w+) as \w+', source)
  assert base or leaf, f'{rel} must start from a default_*_configs file or another leaf'
  parent = base.group(1) + '.py' if base else f'{leaf.group(1)}/{leaf.group(2)}.py'
  assert parent in CONFIGS and parent != rel
  assert _flat(_config(rel)) != _flat(_config(parent))
  assert len(source.splitlines()) <= 40, f'{rel} is longer than 40 lines'


@pytest.mark.parametrize('rel', CONFIGS)
def test_docstring_gives_command_and_a_number(rel):
  doc = _module(rel).__doc__ or ''
  assert f'python main.py --config=configs/{rel} --mode=train --workdir=' in doc, doc
  expected = doc[doc.find('Expected'):] if 'Expected' in doc else doc
  assert re.search(r'\d', expected.replace(rel, '')), f'{rel}: docstring names no number'


@pytest.mark.parametrize('rel', CONFIGS)
def test_training_mode_loss_and_sampler_agree(rel):
  config = _config(rel)
  training, sampling = config.training, config.sampling
  assert training.sde in ('vesde', 'vpsde', 'subvpsde', 'edm')
  if training.continuous:
    assert training.loss in ('dsm', 'edm', 'edm_vp', 'edm_ve'), rel
  else:
    assert training.sde != 'subvpsde', 'score_sde has no discrete sub-VP loss'
    assert training.loss == {'vesde': 'smld', 'vpsde': 'ddpm'}[training.sde], rel
    assert not training.likelihood_weighting
  assert sampling.method in ('pc', 'ode', 'edm')
  assert sampling.predictor in PREDICTORS and sampling.corrector in CORRECTORS
  if training.sde == 'subvpsde':   # subVPSDE has no alphas (score_sde's sde_lib)
    assert sampling.predictor != 'ancestral_sampling' and sampling.corrector != 'langevin'
  for freq in ('log_freq', 'eval_freq', 'snapshot_freq', 'snapshot_freq_for_preemption'):
    assert training[freq] % training.n_jitted_steps == 0, freq
  assert config.data.dataset in DATASETS
  assert config.data.dataset != 'LSUN' or config.data.category


@pytest.mark.parametrize('rel', CONFIGS)
def test_no_torch_and_no_hard_coded_paths(rel):
  source = open(_path(rel), encoding='utf-8').read()
  assert 'torch' not in re.sub(r'""".*?"""', '', source, flags=re.S)
  config = _config(rel)
  assert config.data.tfrecords_path == config.data.path == config.data.tfds_data_dir == ''
  assert config.eval.inception_path == config.eval.fid_stats_path == ''


@pytest.mark.parametrize('rel', sorted(ORIGINAL))
def test_values_match_score_sde(rel):
  ours = _flat(_config(rel))
  for field, value in zip(FIELDS, ORIGINAL[rel]):
    if value is not None:
      assert _same(ours[field], value) or ours[field] == value, (rel, field, ours[field], value)


def test_fixed_typos_of_the_original():
  assert _config('ve/ncsn/celeba.py').training.sde == 'vesde'
  bedroom = _config('ve/ncsnv2/bedroom.py')
  assert not bedroom.training.continuous and bedroom.training.loss == 'smld'


def test_quickstart_digits():
  config = _config('quickstart/digits.py')
  assert (config.data.dataset, config.data.image_size, config.data.num_channels) == ('DIGITS', 8, 1)
  assert config.data.centered and not config.data.random_flip
  assert (config.model.name, config.model.nf, config.model.ch_mult) == ('ncsnpp', 32, (1, 2))
  assert not config.model.fir and config.model.embedding_type == 'positional'
  assert config.eval.enable_loss and config.eval.enable_bpd


@pytest.mark.parametrize('rel', CONFIGS)
def test_shrink_gives_a_tiny_copy(rel):
  config = _config(rel)
  before = _flat(config)
  small = quicktest.shrink(config)
  assert _flat(config) == before, 'shrink changed its argument'
  assert set(_flat(small)) == set(before)
  assert small.training.batch_size == small.eval.batch_size == 2
  assert small.training.n_jitted_steps == 1 and small.model.num_res_blocks == 1
  assert small.data.dataset == 'DIGITS' and small.data.image_size in (8, 16)
  vp_family = small.training.sde in ('vpsde', 'subvpsde')   # DDPM's β_N = β_max/N must be < 1
  assert small.model.num_scales <= (25 if vp_family else 10) and small.sampling.n_steps_each == 1
  sde_lib.get_sde(small)                                     # raises for an invalid discretization
  for field in ('training.sde', 'training.loss', 'training.continuous', 'model.name',
                'data.centered', 'data.num_channels', 'sampling.predictor', 'sampling.corrector'):
    assert _flat(small)[field] == before[field], field
  resolutions = [small.data.image_size // 2 ** i for i in range(len(small.model.ch_mult))]
  assert set(small.model.attn_resolutions) <= set(resolutions)
