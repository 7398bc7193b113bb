"""The leaves for published checkpoints: each network has the official parameter count, and each
docstring opens with its command and names its paper.

tests/fixtures/official_param_counts.json ({config file: count}) is written by
tools/count_official_params.py, which builds every published network with the official code
(NVlabs/edm and the STF, PFGM++ and Patch Diffusion forks) and counts it as that code does,
`sum(p.numel() for p in net.parameters())`. Ours is `models.utils.count_params` (abstract
evaluation, nothing allocated) minus one known difference: NCSN++'s Fourier embedding keeps its
fixed frequencies W (nf numbers, `layerspp.GaussianFourierProjection`) as a parameter, as
score_sde does, where EDM's SongUNet registers them as a buffer (`FourierEmbedding.freqs`).
"""
import glob
import importlib.util
import json
import os
import re

import pytest

from foreign import edm, load, torch_pickle
from models import utils as mutils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'official_param_counts.json')
with open(FIXTURE, encoding='utf-8') as _f:
  COUNTS = json.load(_f)
with open(os.path.join(ROOT, 'tests', 'fixtures', 'official_network_kwargs.json'),
          encoding='utf-8') as _f:
  STORED = json.load(_f)
FAMILIES = ('edm', 'edm_es', 'pfgmpp', 'stf', 'patch')
LEAVES = sorted(os.path.relpath(p, ROOT) for family in FAMILIES
                for p in glob.glob(os.path.join(ROOT, 'configs', family, '*.py')))
ADM = 'configs/edm/imagenet64_adm_cond.py'       # written by another change; counted once it exists
EARLIER = {'configs/edm/cifar10_ddpmpp.py', 'configs/edm/cifar10_ddpmpp_cond.py',
           'configs/edm/cifar10_ncsnpp.py', 'configs/pfgmpp/cifar10_ncsnpp.py',
           'configs/stf/cifar10_ncsnpp.py', 'configs/patch/celeba64_ddpmpp.py', ADM}
NEW = [rel for rel in LEAVES if rel not in EARLIER]
EDM_PKL = re.compile(r'--checkpoint=https://nvlabs-fi-cdn\.nvidia\.com/edm/pretrained/'
                     r'edm-(\w+)-(\d+)x\d+-(cond|uncond)-(vp|ve|adm)\.pkl')


def _module(rel):
  spec = importlib.util.spec_from_file_location('published_' + re.sub(r'\W', '_', rel),
                                                os.path.join(ROOT, rel))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_COUNTED = {}   # leaves that differ only in training or sampling fields share one count


def _count(config):
  """models.utils.count_params, once per distinct (model, data, training.continuous)."""
  key = json.dumps([config.model.to_dict(), config.data.to_dict(), config.training.continuous],
                   sort_keys=True)
  if key not in _COUNTED:
    _COUNTED[key] = mutils.count_params(config)
  return _COUNTED[key]


def _fourier_w(config):
  """Parameters of ours that are a buffer in EDM's SongUNet: NCSN++'s Fourier frequencies W."""
  m = config.model
  return m.nf if m.name == 'ncsnpp' and m.embedding_type == 'fourier' else 0


def test_every_leaf_of_the_families_has_an_official_count():
  assert set(LEAVES) <= set(COUNTS), sorted(set(LEAVES) - set(COUNTS))
  assert set(COUNTS) - set(LEAVES) <= {ADM}     # the ADM leaf may not exist yet


@pytest.mark.parametrize('rel', sorted(COUNTS))
def test_network_has_the_official_parameter_count(rel):
  if not os.path.exists(os.path.join(ROOT, rel)):
    pytest.skip(f'{rel} does not exist (yet)')
  config = _module(rel).get_config()
  ours = _count(config)
  assert ours - _fourier_w(config) == COUNTS[rel], (rel, ours, _fourier_w(config))


@pytest.mark.parametrize('rel', NEW)
def test_new_leaf_docstring_opens_with_its_command_and_names_its_paper(rel):
  doc = _module(rel).__doc__ or ''
  assert doc.startswith(f'Command: python main.py --config={rel} --mode='), doc[:120]
  assert re.search(r'arXiv:\d{4}\.\d{5}', doc), f'{rel}: no arXiv number'
  assert '--checkpoint=https://' in doc or '(no --checkpoint: ' in doc, rel


@pytest.mark.parametrize('rel', LEAVES)
def test_edm_checkpoint_names_match_the_config(rel):
  """EDM's file names say the data, resolution, conditioning and architecture ('vp' = DDPM++,
  've' = NCSN++); its README samples 32 px with 18 Heun steps and 64 px with 40."""
  doc = _module(rel).__doc__ or ''
  for dataset, res, cond, arch in EDM_PKL.findall(doc):
    config = _module(rel).get_config()
    assert int(res) == config.data.image_size, rel
    assert (cond == 'cond') == config.model.class_conditional, rel
    if arch != 'adm':
      expected = 'positional' if arch == 'vp' else 'fourier'
      assert (config.model.name, config.model.embedding_type) == ('ncsnpp', expected), rel
    if not rel.startswith('configs/edm_es/') and dataset in ('cifar10', 'ffhq', 'afhqv2'):
      assert config.sampling.steps == {32: 18, 64: 40}[int(res)], rel


def _stand_in(stored):
  """The preconditioner a published pickle holds, as `foreign.torch_pickle` reads it (no
  weights)."""
  unet = torch_pickle.Persistent(stored['unet']['class_name'],
                                 {'_init_kwargs': stored['unet']['init_kwargs']})
  return torch_pickle.Persistent(stored['precond']['class_name'], {
      '_init_kwargs': stored['precond']['init_kwargs'], '_modules': {'model': unet}})


def test_every_counted_network_has_its_stored_kwargs():
  assert set(STORED) == set(COUNTS)


@pytest.mark.parametrize('rel', sorted(STORED))
def test_published_checkpoint_passes_the_config_check(rel):
  """What `--mode=sample --config=<rel> --checkpoint=<official URL>` checks before any work."""
  if not os.path.exists(os.path.join(ROOT, rel)):
    pytest.skip(f'{rel} does not exist (yet)')
  config = _module(rel).get_config()
  fields, checks = edm.describe(_stand_in(STORED[rel]))
  load.check_config(fields, checks, config, rel)
  if rel.startswith('configs/pfgmpp/'):      # PFGM++ (Xu+23): the D the network was trained with
    assert checks['training.pfgmpp_D'] == config.training.pfgmpp_D == STORED[rel][
        'precond']['init_kwargs']['D'], rel


def test_conditional_checkpoint_fails_the_unconditional_config():
  config = _module('configs/edm/cifar10_ddpmpp.py').get_config()
  fields, checks = edm.describe(_stand_in(STORED['configs/edm/cifar10_ddpmpp_cond.py']))
  with pytest.raises(load.CheckpointMismatchError, match=r'model\.class_conditional'):
    load.check_config(fields, checks, config, 'edm-cifar10-32x32-cond-vp.pkl')


def test_the_imagenet_baseline_fails_config_f_and_another_iddpm_is_refused():
  """EDM's ImageNet baseline (iDDPMPrecond, 2 × 3 outputs) against config F's leaf: the check
  names the preconditioning and the variance channels; an iDDPMPrecond of other levels (M =
  500) cannot be represented."""
  baseline = STORED['configs/edm/imagenet64_adm_baseline.py']
  config = _module('configs/edm/imagenet64_adm_cond.py').get_config()
  fields, checks = edm.describe(_stand_in(baseline))
  with pytest.raises(load.CheckpointMismatchError, match=r'model\.learn_sigma.*model\.precond'):
    load.check_config(fields, checks, config, 'baseline-imagenet-64x64-cond-adm.pkl')
  other = {**baseline, 'precond': {**baseline['precond'], 'init_kwargs': {
      **baseline['precond']['init_kwargs'], 'M': 500}}}
  with pytest.raises(edm.NotANetworkError, match='iDDPMPrecond with M = 500'):
    edm.describe(_stand_in(other))
