"""evaluation.py against truth we did not write: pytorch-fid's own network outputs (fixture made by
tools/make_inception_fixture.py), independent NumPy formulas, known-answer cases, and the data."""
import importlib.util
import json
import os
import pickle
import sys
import time
import types

import jax
import ml_collections
import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import scipy.stats

import datasets
import digits_metric
import evaluation as ev
from foreign import torch_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'inception_torch.npz')


def _load_tool():
  spec = importlib.util.spec_from_file_location(
      'make_inception_fixture', os.path.join(ROOT, 'tools', 'make_inception_fixture.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def fixture():
  with np.load(FIXTURE) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def torch_state_dict(fixture):
  """pytorch-fid-named state dict rebuilt from the recipe (the fixture stores names and shapes)."""
  recipe = _load_tool().recipe_tensor
  return {n: recipe(n, s) for n, s in json.loads(str(fixture['names_json']))}


@pytest.fixture(scope='module')
def weights(torch_state_dict):
  return ev.load_inception(torch_state_dict)


def _rel(a, b):
  return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


# ------------------------------------------------------------------------------------------------
# Inception network parity and loaders

@pytest.mark.parametrize('tag', ['up', 'down'])
def test_inception_matches_pytorch_fid(fixture, weights, tag):
  assert weights['preprocessing'] == 'pytorch_fid'
  out = ev.get_inception_fn(weights['params'])(fixture[f'images_{tag}'])   # uint8 [2, H, W, 3]
  for key in ('pool_3', 'logits'):
    ours, ref = np.asarray(out[key]), fixture[f'{key}_{tag}']
    assert ours.shape == ref.shape
    assert _rel(ours, ref) < 1e-4, key
    # The two images differ by only a few % of the features: check the difference too.
    assert _rel(ours[0] - ours[1], ref[0] - ref[1]) < 1e-3, key
  np.testing.assert_allclose(np.asarray(out['logits_unbiased']),
                             fixture[f'logits_{tag}'] - np.asarray(weights['params']['fc']['bias']),
                             rtol=1e-4, atol=1e-5)


def test_inception_edm_input_handling(fixture, weights):
  """EDM's detector resizes like TF1 (asymmetric) and maps x -> (x - 128) / 128."""
  out = ev.get_inception_fn(weights['params'], 'edm')(fixture['images_up'])
  ours, ref = np.asarray(out['pool_3']), fixture['pool_3_edm']
  assert _rel(ours, ref) < 1e-4
  assert _rel(ours[0] - ours[1], ref[0] - ref[1]) < 1e-3
  assert _rel(ours, fixture['pool_3_up']) > 1e-3    # and it is not pytorch-fid's handling


def test_grayscale_float_and_sharded_batch(fixture, weights):
  """[0, 255] floats = uint8; 1 channel = repeated RGB; a batch sharded over a mesh stays sharded."""
  images = fixture['images_up']
  gray = images[..., :1]
  fn = ev.get_inception_fn(weights['params'])
  ref = np.asarray(fn(np.repeat(gray, 3, axis=-1))['pool_3'])
  np.testing.assert_allclose(np.asarray(fn(gray.astype(np.float32))['pool_3']), ref, rtol=1e-5, atol=1e-6)
  devices = jax.devices()[:2]
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  batch = jax.device_put(np.repeat(gray, 3, axis=-1), sharding)
  out = ev.get_inception_fn(weights['params'], mesh=mesh)(batch)['pool_3']
  assert out.sharding.is_equivalent_to(sharding, 2)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)


def _leaves_equal(a, b, skip_scale=False):
  fa = jax.tree_util.tree_flatten_with_path(a)[0]
  fb = dict(jax.tree_util.tree_flatten_with_path(b)[0])
  assert len(fa) == len(fb) == 472
  for path, v in fa:
    if skip_scale and path[-1].key == 'scale':
      continue
    np.testing.assert_array_equal(np.asarray(v), np.asarray(fb[path]), err_msg=str(path))


def test_pth_file_loader_maps_every_tensor(tmp_path, torch_state_dict, weights):
  path = tmp_path / 'pt_inception.pth'        # a pickled plain dict stands in for torch.save
  path.write_bytes(pickle.dumps(torch_state_dict))
  loaded = ev.load_inception(str(path))
  assert loaded['preprocessing'] == 'pytorch_fid'
  _leaves_equal(loaded['params'], weights['params'])
  # A transposition slip would go unnoticed by shapes alone for square kernels: check one value.
  w = torch_state_dict['Mixed_5b.branch5x5_2.conv.weight']           # OIHW
  assert loaded['params']['Mixed_5b']['branch5x5_2']['kernel'][1, 3, 7, 11] == w[11, 7, 1, 3]
  broken = dict(torch_state_dict)
  del broken['Mixed_6c.branch7x7dbl_3.bn.running_var']
  with pytest.raises(ValueError, match='1 missing'):
    ev.load_inception(broken)
  with pytest.raises(ValueError, match='1 unused'):
    ev.load_inception({**torch_state_dict, 'AuxLogits.fc.weight': np.zeros((1008, 768))})
  bad = {**torch_state_dict, 'fc.bias': np.zeros(1000, np.float32)}
  with pytest.raises(ValueError, match='shape'):
    ev.load_inception(bad)


def test_edm_pkl_loader_maps_every_tensor(tmp_path, fixture, torch_state_dict, weights):
  """EDM's detector (TF names, BN without gamma), wrapped in an outer module, in a pickle."""
  pairs = json.loads(str(fixture['edm_names_json']))
  assert len(pairs) == 94 * 4 + 2
  edm = {f'detector.{e}': torch_state_dict[t] for e, t in pairs}
  path = tmp_path / 'inception-2015-12-05.pkl'
  path.write_bytes(pickle.dumps(edm))
  loaded = ev.load_inception(str(path))
  assert loaded['preprocessing'] == 'edm'
  _leaves_equal(loaded['params'], weights['params'], skip_scale=True)
  assert all(np.all(v == 1) for kp, v in jax.tree_util.tree_flatten_with_path(loaded['params'])[0]
             if kp[-1].key == 'scale')
  del edm['detector.layers.mixed_10.tower_1_mixed_conv_1.beta']
  with pytest.raises(ValueError, match='1 missing'):
    ev.load_inception(edm)


def _persistence_pickle(monkeypatch, tensors):
  """Bytes shaped like an EDM/StyleGAN `torch_utils.persistence` pickle of an nn.Module tree: every
  module is `_reconstruct_persistent_obj(meta)` with meta['state'] = {_parameters, _buffers, _modules}."""
  def _reconstruct_persistent_obj(meta):
    return meta

  class Persistent:
    def __init__(self):
      self.state = {'_parameters': {}, '_buffers': {}, '_modules': {}}

    def __reduce__(self):
      meta = dict(type='class', version=6, module_src='import torch', class_name='M', state=self.state)
      return _reconstruct_persistent_obj, (meta,)

  root = Persistent()
  for name, value in tensors.items():
    *path, leaf = name.split('.')
    node = root
    for p in path:
      node = node.state['_modules'].setdefault(p, Persistent())
    node.state['_buffers' if leaf in ('mean', 'var') else '_parameters'][leaf] = value
  module = types.ModuleType('torch_utils.persistence')
  module._reconstruct_persistent_obj = _reconstruct_persistent_obj
  _reconstruct_persistent_obj.__module__ = module.__name__
  _reconstruct_persistent_obj.__qualname__ = '_reconstruct_persistent_obj'
  with monkeypatch.context() as m:
    m.setitem(sys.modules, 'torch_utils', types.ModuleType('torch_utils'))
    m.setitem(sys.modules, 'torch_utils.persistence', module)
    return pickle.dumps(root)


def test_edm_persistence_pickle_needs_no_edm_code(tmp_path, monkeypatch, fixture, torch_state_dict,
                                                   weights):
  edm = {e: torch_state_dict[t] for e, t in json.loads(str(fixture['edm_names_json']))}
  path = tmp_path / 'inception-2015-12-05.pkl'
  path.write_bytes(_persistence_pickle(monkeypatch, edm))
  assert 'torch_utils' not in sys.modules
  loaded = ev.load_inception(str(path))
  assert loaded['preprocessing'] == 'edm'
  _leaves_equal(loaded['params'], weights['params'], skip_scale=True)


def test_npz_export_roundtrip(tmp_path, weights):
  path = str(tmp_path / 'inception.npz')
  ev.export_inception_npz(weights, path)
  back = ev.load_inception(path)
  assert back['preprocessing'] == 'pytorch_fid'
  _leaves_equal(back['params'], weights['params'])


class _RunsCode:
  def __reduce__(self):
    return os.system, ('echo ran',)


def test_unusable_weights_files_are_one_error_naming_the_file(tmp_path, torch_state_dict):
  files = {'junk.pth': os.urandom(4000), 'truncated.pth': pickle.dumps(torch_state_dict)[:5000],
           'other.pth': pickle.dumps({'fc.weight': np.zeros((3, 3), np.float32)}),
           'other.npz': None}
  np.savez(tmp_path / 'other.npz', x=np.zeros(3))
  for name, data in files.items():
    if data is not None:
      (tmp_path / name).write_bytes(data)
    with pytest.raises(ev.InceptionWeightsError, match=f"path = '.*{name}' is not usable"):
      ev.load_inception(str(tmp_path / name))
  (tmp_path / 'hostile.pkl').write_bytes(pickle.dumps(_RunsCode()))   # refused as such, one line
  with pytest.raises(torch_pickle.UnsafePickleError, match='refusing to load the global posix.sys'):
    ev.load_inception(str(tmp_path / 'hostile.pkl'))


def test_missing_weights_fail_fast_with_urls(tmp_path):
  path = str(tmp_path / 'nope' / 'pt_inception-2015-12-05-6726825d.pth')
  start = time.perf_counter()
  with pytest.raises(ev.InceptionWeightsNotFoundError) as err:
    ev.load_inception(path)
  assert time.perf_counter() - start < 1.0
  assert isinstance(err.value, FileNotFoundError)
  msg = str(err.value)
  for needle in (path, 'eval.inception_path', ev.PYTORCH_FID_URL, ev.EDM_INCEPTION_URL):
    assert needle in msg
  assert '\n' not in msg          # main.py logs it as one line


def test_missing_stats_fail_fast(tmp_path):
  path = str(tmp_path / 'cifar10_stats.npz')
  start = time.perf_counter()
  with pytest.raises(ev.StatsNotFoundError) as err:
    ev.load_stats(path)
  assert time.perf_counter() - start < 1.0
  assert isinstance(err.value, FileNotFoundError)
  for needle in (path, 'eval.fid_stats_path', '--mode=fid_stats'):
    assert needle in str(err.value)


# ------------------------------------------------------------------------------------------------
# Metrics against independent formulas and known answers

def _fid_reference(f1, f2):
  """FID via the symmetric form Tr((S1^½ S2 S1^½)^½) with eigendecompositions (not sqrtm)."""
  m1, m2 = f1.mean(0), f2.mean(0)
  s1 = (f1 - m1).T @ (f1 - m1) / (len(f1) - 1)
  s2 = (f2 - m2).T @ (f2 - m2) / (len(f2) - 1)
  w, v = np.linalg.eigh(s1)
  r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
  return np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr


def test_fid_matches_independent_formula():
  rng = np.random.RandomState(1)
  f1 = rng.randn(400, 24) @ rng.randn(24, 24)
  f2 = 0.5 + rng.randn(300, 24) @ rng.randn(24, 24) * 0.8
  got = ev.fid_from_stats(ev.compute_stats(f1), ev.compute_stats(f2))
  assert abs(got - _fid_reference(f1, f2)) < 1e-6 * abs(got)
  s = ev.compute_stats(f1)
  assert abs(ev.fid_from_stats(s, s)) < 1e-8 * np.trace(s['sigma'])
  # Known answer: two Gaussians' stats given directly, diagonal covariances.
  a, b = np.array([1., 4., 9.]), np.array([4., 1., 16.])
  expected = 3 + np.sum(a + b - 2 * np.sqrt(a * b))
  assert abs(ev.frechet_distance(np.ones(3), np.diag(a), np.zeros(3), np.diag(b)) - expected) < 1e-10


def _is_reference(logits, splits, seed):
  z = logits[np.random.RandomState(seed).permutation(len(logits))]
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  out = []
  for part in np.array_split(np.arange(len(z)), splits):
    pp = p[part]
    py = pp.mean(0)
    out.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in pp])))
  return np.mean(out), np.std(out)


def test_inception_score_matches_reference_and_known_answers():
  rng = np.random.RandomState(2)
  logits = rng.randn(1000, 50) * 3
  got = ev.inception_score(logits, splits=10)
  ref = _is_reference(logits, 10, 2020)
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  assert ev.inception_score(np.zeros((100, 7)))[0] == pytest.approx(1.0, abs=1e-12)   # no information
  confident = np.eye(10)[np.arange(200) % 10] * 60.0         # sure and uniform over 10 classes
  assert ev.inception_score(confident, shuffle=False)[0] == pytest.approx(10.0, rel=1e-6)


def _tfgan_is_reference(logits):
  """TF-GAN's classifier_score_from_logits written with scipy: softmax, KL by scipy.stats.entropy."""
  p = scipy.special.softmax(np.asarray(logits, np.float64), axis=1)
  q = p.mean(0)
  return np.exp(np.mean([scipy.stats.entropy(row, q) for row in p]))


def test_is_conventions_match_their_formulas():
  rng = np.random.RandomState(12)
  feats = {'logits': rng.randn(500, 1008) * 4, 'logits_unbiased': rng.randn(500, 1008) * 4}
  tfgan, tfgan_std = ev.inception_score_by_convention(feats, 'tfgan')
  assert abs(tfgan - _tfgan_is_reference(feats['logits'])) < 1e-12 * tfgan    # the biased logits
  assert np.isnan(tfgan_std)                                                  # TF-GAN reports none
  torch_fidelity = ev.inception_score_by_convention(feats, 'torch_fidelity')
  np.testing.assert_allclose(torch_fidelity, _is_reference(feats['logits_unbiased'], 10, 2020),
                             rtol=1e-12)
  assert ev.inception_score_by_convention(feats) == torch_fidelity          # the default
  assert ev.inception_score_by_convention(feats, 'tfgan', 'logits_unbiased')[0] == pytest.approx(
      _tfgan_is_reference(feats['logits_unbiased']), rel=1e-12)
  assert ev.classifier_score_from_logits(np.zeros((30, 7))) == pytest.approx(1.0, abs=1e-12)


def test_is_conventions_differ_where_splits_matter():
  """20 confident samples of 20 classes: one pass sees 20 classes (IS 20), torch-fidelity's 10
  splits of 2 samples see 2 each (IS 2)."""
  logits = np.eye(20) * 80.0
  feats = {'logits': logits, 'logits_unbiased': logits}
  assert ev.inception_score_by_convention(feats, 'tfgan')[0] == pytest.approx(20.0, rel=1e-9)
  assert ev.inception_score_by_convention(feats, 'torch_fidelity')[0] == pytest.approx(2.0, rel=1e-9)
  assert _tfgan_is_reference(logits) == pytest.approx(20.0, rel=1e-9)
  assert _is_reference(logits, 10, 2020)[0] == pytest.approx(2.0, rel=1e-9)
  rng = np.random.RandomState(13)                          # and on generic logits, by more than 1%
  z = rng.randn(60, 30) * 3
  generic = {'logits': z, 'logits_unbiased': z}
  a = ev.inception_score_by_convention(generic, 'tfgan')[0]
  b = ev.inception_score_by_convention(generic, 'torch_fidelity')[0]
  assert abs(a - b) > 0.01 * a


def _kid_reference(f1, f2, subsets, size, seed):
  rng = np.random.RandomState(seed)
  d = f1.shape[1]
  vals = []
  for _ in range(subsets):
    x = f1[rng.choice(len(f1), size, replace=False)]
    y = f2[rng.choice(len(f2), size, replace=False)]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    off = ~np.eye(size, dtype=bool)
    vals.append(k(x, x)[off].mean() + k(y, y)[off].mean() - 2 * k(x, y).mean())
  return np.mean(vals), np.std(vals)


def test_kid_matches_reference():
  rng = np.random.RandomState(3)
  f1, f2 = rng.randn(300, 16), 0.3 + rng.randn(250, 16)
  got = ev.kernel_inception_distance(f1, f2, num_subsets=20, subset_size=100)
  np.testing.assert_allclose(got, _kid_reference(f1, f2, 20, 100, 2020), rtol=1e-6)
  clipped = ev.kernel_inception_distance(f1, f2, num_subsets=5, subset_size=1000)   # clipped to 250
  np.testing.assert_allclose(clipped, _kid_reference(f1, f2, 5, 250, 2020), rtol=1e-6)
  same = ev.kernel_inception_distance(f1, rng.randn(300, 16), num_subsets=20, subset_size=100)[0]
  assert abs(same) < 0.2 * got[0]


def test_sample_metrics_and_uint8():
  rng = np.random.RandomState(8)
  feats = {'pool_3': rng.randn(120, 6), 'logits': rng.randn(120, 5), 'logits_unbiased': rng.randn(120, 5)}
  ref = {'pool_3': 0.2 + rng.randn(150, 6)}
  ref.update(ev.compute_stats(ref['pool_3']))
  got = ev.sample_metrics(feats, ref, kid_subsets=3, kid_subset_size=50)
  assert got['fid'] == pytest.approx(_fid_reference(feats['pool_3'], ref['pool_3']), rel=1e-6)
  assert got['inception_score'] == pytest.approx(_is_reference(feats['logits_unbiased'], 10, 2020)[0])
  assert got['kid'] == pytest.approx(_kid_reference(feats['pool_3'], ref['pool_3'], 3, 50, 2020)[0])
  assert np.isnan(ev.sample_metrics(feats, {'mu': ref['mu'], 'sigma': ref['sigma']})['kid'])
  tfgan = ev.sample_metrics(feats, ref, kid_subsets=3, kid_subset_size=50, is_convention='tfgan')
  assert tfgan['inception_score'] == pytest.approx(_tfgan_is_reference(feats['logits']), rel=1e-12)
  assert np.isnan(tfgan['inception_score_std']) and tfgan['fid'] == got['fid']
  assert ev.sample_metrics(feats, ref, is_logits='logits', kid_subsets=3, kid_subset_size=50)[
      'inception_score'] == pytest.approx(_is_reference(feats['logits'], 10, 2020)[0])
  np.testing.assert_array_equal(ev.images_to_uint8(np.array([-0.1, 0., 0.5, 1., 1.2]), False),
                                [0, 0, 128, 255, 255])
  x = np.linspace(-1, 1, 1001)
  np.testing.assert_array_equal(ev.images_to_uint8(x, True),            # EDM: x * 127.5 + 128, truncated
                                np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------
# Statistics files

def test_stats_files_edm_and_score_sde_formats(tmp_path):
  rng = np.random.RandomState(4)
  feats = rng.randn(50, 8)
  edm_path, sde_path = str(tmp_path / 'edm.npz'), str(tmp_path / 'sde.npz')
  np.savez(edm_path, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))   # EDM fid.py ref
  np.savez(sde_path, pool_3=feats)                                            # score_sde stats
  a, b = ev.load_stats(edm_path), ev.load_stats(sde_path, allow_foreign_stats=True)
  np.testing.assert_allclose(a['mu'], b['mu'], rtol=1e-12)
  np.testing.assert_allclose(a['sigma'], b['sigma'], rtol=1e-12)
  np.testing.assert_array_equal(b['pool_3'], feats)
  np.savez(str(tmp_path / 'bad.npz'), logits=feats)
  with pytest.raises(ev.StatsError, match='neither'):
    ev.load_stats(str(tmp_path / 'bad.npz'))
  np.savez(str(tmp_path / 'nan.npz'), mu=feats.mean(0), sigma=np.full((8, 8), np.nan))
  np.savez(str(tmp_path / 'shapes.npz'), mu=feats.mean(0), sigma=np.eye(7))
  (tmp_path / 'junk.npz').write_bytes(b'PK\x03\x04 not a zip')
  for name, message in (('nan', 'not a finite'), ('shapes', r'sigma \(7, 7\)'),
                        ('junk', 'not a readable .npz')):
    with pytest.raises(ev.StatsError, match=message):
      ev.load_stats(str(tmp_path / f'{name}.npz'))


def test_fid_stats_from_images_batches_and_writes_edm_npz(tmp_path, info_log):
  """Leading device axes are flattened, dict and jax batches accepted; a short last batch is padded
  and trimmed."""
  calls = []

  def fake_inception(images):
    calls.append(images.shape)
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    return {'pool_3': np.stack([x.mean(1), x.std(1), x[:, 0]], 1), 'logits': x[:, :4]}

  rng = np.random.RandomState(5)
  data = rng.randint(0, 256, size=(2 * 2 * 4 + 3, 8, 8, 1)).astype(np.uint8)
  batches = [data[:8].reshape(2, 4, 8, 8, 1), {'image': jax.numpy.asarray(data[8:16])}, data[16:]]
  out = str(tmp_path / 'ref' / 'digits.npz')
  stats = ev.fid_stats_from_images(iter(batches), fake_inception, out, total=19)
  assert calls == [(8, 8, 8, 1)] * 3
  assert 'reference image 8/19: ' in info_log.text and 'reference image 19/19: ' in info_log.text
  feats = np.asarray(fake_inception(data)['pool_3'], np.float32).astype(np.float64)   # kept as f32
  with np.load(out) as f:
    np.testing.assert_allclose(f['mu'], feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(f['sigma'], np.cov(feats, rowvar=False), rtol=1e-12)
    assert f['pool_3'].shape == (19, 3)
  assert ev.fid_from_stats(stats, ev.load_stats(out)) == pytest.approx(0.0, abs=1e-6)


def _config(dataset, image_size, category='', path='', fid_stats_path=''):
  return ml_collections.ConfigDict({
      'data': {'dataset': dataset, 'image_size': image_size, 'category': category, 'path': path,
               'autoencoder': ''},
      'eval': {'fid_stats_path': fid_stats_path}})


def test_default_stats_path_tries_ours_score_sde_then_edm(tmp_path, monkeypatch):
  monkeypatch.setattr(ev, 'STATS_DIR', str(tmp_path))
  names = lambda cfg: [os.path.basename(p) for p in ev.stats_path_candidates(cfg)]
  cifar = _config('CIFAR10', 32)
  assert names(cifar) == ['cifar10_32_stats.npz', 'cifar10_stats.npz', 'cifar10-32x32.npz']
  assert ev.default_stats_path(cifar) == str(tmp_path / 'cifar10_32_stats.npz')     # none exists
  for name, expected in (('cifar10-32x32.npz', 'cifar10-32x32.npz'),               # EDM's
                         ('cifar10_stats.npz', 'cifar10_stats.npz'),               # score_sde's first
                         ('cifar10_32_stats.npz', 'cifar10_32_stats.npz')):        # ours first
    np.savez(str(tmp_path / name), mu=np.zeros(2), sigma=np.eye(2))
    assert ev.default_stats_path(cifar) == str(tmp_path / expected)
  assert names(_config('CELEBA', 64)) == ['celeba_64_stats.npz', 'celeba_stats.npz']
  assert names(_config('LSUN', 256, category='church_outdoor')) == ['lsun_church_outdoor_256_stats.npz']
  assert names(_config('FFHQ', 64)) == ['ffhq_64_stats.npz', 'ffhq-64x64.npz']
  for stem in ('afhqv2-64x64', 'imagenet-64x64'):                  # EDM configs: IMAGE_ZIP + zip
    zipped = _config('IMAGE_ZIP', 64, path=f'datasets/{stem}.zip')
    assert names(zipped) == [f'{stem}_64_stats.npz', f'{stem}.npz']
  assert names(_config('IMAGE_ZIP', 64, path='data/my_folder/')) == ['my_folder_64_stats.npz',
                                                                     'my_folder.npz']
  explicit = _config('CIFAR10', 32, fid_stats_path=str(tmp_path / 'missing.npz'))
  assert ev.default_stats_path(explicit) == str(tmp_path / 'missing.npz')         # as given
  assert ev.stats_path_candidates(explicit) == [str(tmp_path / 'missing.npz')]


def test_foreign_stats_are_refused_with_the_reason(tmp_path):
  rng = np.random.RandomState(14)
  feats = rng.randn(40, 5)
  sde_path = str(tmp_path / 'cifar10_stats.npz')
  np.savez(sde_path, pool_3=feats)                                # TF-GAN pool_3 (score_sde)
  for extractor in (None, 'pytorch_fid', 'edm'):
    with pytest.raises(ev.ForeignStatsError) as err:
      ev.load_stats(sde_path, extractor=extractor)
    msg = str(err.value)
    assert '\n' not in msg and isinstance(err.value, ev.EvaluationFileError)   # one line, caught
    for needle in (sde_path, 'eval.allow_foreign_stats', 'TF-GAN pool_3', '--mode=fid_stats'):
      assert needle in msg
  allowed = ev.load_stats(sde_path, extractor='pytorch_fid', allow_foreign_stats=True)
  np.testing.assert_allclose(allowed['mu'], feats.mean(0), rtol=1e-12)

  ours = str(tmp_path / 'cifar10_32_stats.npz')                    # ours, marked with the extractor
  ev.save_stats(ours, dict(ev.compute_stats(feats), pool_3=feats, extractor='edm'))
  with np.load(ours) as f:
    assert str(f['extractor']) == 'edm' and sorted(f.files) == ['extractor', 'mu', 'pool_3', 'sigma']
  for extractor in (None, 'edm'):
    assert ev.load_stats(ours, extractor=extractor)['extractor'] == 'edm'
  with pytest.raises(ev.ForeignStatsError) as err:
    ev.load_stats(ours, extractor='pytorch_fid')
  assert '\n' not in str(err.value)
  for needle in (ours, 'eval.allow_foreign_stats', "'edm'", "'pytorch_fid'"):
    assert needle in str(err.value)
  assert ev.load_stats(ours, extractor='pytorch_fid', allow_foreign_stats=True)['mu'].shape == (5,)

  edm_ref = str(tmp_path / 'cifar10-32x32.npz')                    # EDM fid-refs / our older files
  np.savez(edm_ref, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
  old = str(tmp_path / 'old.npz')
  np.savez(old, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False), pool_3=feats)
  for path in (edm_ref, old):
    for extractor in (None, 'pytorch_fid', 'edm'):
      assert 'extractor' not in ev.load_stats(path, extractor=extractor)


def test_fid_stats_file_records_the_extractor(tmp_path, weights):
  assert ev.get_inception_fn(weights['params'], 'edm').preprocessing == 'edm'
  assert ev.get_inception_fn(weights['params']).preprocessing == 'pytorch_fid'

  def fake_inception(images):
    return {'pool_3': np.asarray(images, np.float64).reshape(len(images), -1)[:, :3]}
  fake_inception.preprocessing = 'pytorch_fid'
  data = np.random.RandomState(15).randint(0, 256, size=(12, 4, 4, 1)).astype(np.uint8)
  out = str(tmp_path / 'ref.npz')
  ev.fid_stats_from_images(iter([data[:6], data[6:]]), fake_inception, out)
  assert ev.load_stats(out, extractor='pytorch_fid')['extractor'] == 'pytorch_fid'
  with pytest.raises(ev.ForeignStatsError, match='eval.allow_foreign_stats'):
    ev.load_stats(out, extractor='edm')


# ------------------------------------------------------------------------------------------------
# Digits quickstart metric

@pytest.fixture(scope='module')
def digits_params(tmp_path_factory):
  cache = str(tmp_path_factory.mktemp('digits_cache'))
  start = time.perf_counter()
  params = digits_metric.load_digits_classifier(cache)
  assert time.perf_counter() - start < 20.0
  assert os.path.isfile(os.path.join(cache, f'{digits_metric.DIGITS_CLASSIFIER_VERSION}.npz'))
  cached = digits_metric.load_digits_classifier(cache)
  leaves, cached_leaves = jax.tree.leaves(params), jax.tree.leaves(cached)
  assert len(leaves) == len(cached_leaves) == 6
  assert all(np.array_equal(a, b) for a, b in zip(leaves, cached_leaves))
  return params


def test_digits_classifier(digits_params):
  split = datasets.digits_split()     # the split itself: tests/test_datasets.py
  rgb = np.random.RandomState(7).rand(3, 16, 24, 3)
  np.testing.assert_allclose(digits_metric.to_digits_resolution(rgb)[1, 2, 3, 0],
                             rgb[1, 4:6, 9:12].mean(), rtol=1e-6)     # channel mean, 2x3 pooling
  logits, _ = digits_metric.DigitsMLP().apply({'params': digits_params}, split['test_images'])
  assert (np.asarray(logits).argmax(1) == split['test_labels']).mean() > 0.85


def test_digits_metric_orders_early_and_trained_samples(digits_params):
  """Samples of the quickstart model (tools/make_digits_samples_fixture.py: the real train and
  eval commands; the recipe of 2026-12-03, constant lr and EMA ramp-up 0.05) after 500 and 1000 of
  its 1000 steps, 297 images each like the test split.
  Measured (2026-12-03): FD vs the train split 4.40 (step 500), 2.98 (step 1000), the real test
  split 4.31 (4.24 at XLA's default optimisation level); confident share 0.80, 0.86, real 0.97.
  Training lowers the FD and raises the confident share, which stays below the real split's; the
  trained samples' FD is at most 15% above the real split's (the quickstart's bar)."""
  with np.load(os.path.join(ROOT, 'tests', 'fixtures', 'digits_samples.npz')) as f:
    early, trained = f['early'] / 255., f['trained'] / 255.
    assert (int(f['early_step']), int(f['trained_step'])) == (500, 1000)
  test = datasets.digits_split()['test_images']
  assert len(early) == len(trained) == len(test) == 297      # FD's bias depends on the count
  reference = digits_metric.DigitsReference(digits_params)
  early_m, trained_m = (reference.metrics(reference.outputs(x)) for x in (early, trained))
  fd_test, fd_early, fd_trained = (early_m['digits_fd_equal_n_real_test'],
                                   early_m['digits_fd_equal_n'], trained_m['digits_fd_equal_n'])
  assert fd_trained < 0.85 * fd_early, (fd_trained, fd_early)
  assert fd_trained < 1.15 * fd_test, (fd_trained, fd_test)
  shares = [m['digits_confident_share'] for m in (early_m, trained_m)]
  assert shares[0] < shares[1] - 0.05 < early_m['digits_confident_share_real_test'] - 0.1, shares


def test_digits_fd_orders_corruption(digits_params):
  real = datasets.digits_split()['test_images']
  rng = np.random.RandomState(6)
  fd_real = digits_metric.digits_fd(real, digits_params)
  fd_light = digits_metric.digits_fd(np.clip(real + 0.2 * rng.randn(*real.shape), 0, 1), digits_params)
  fd_blur = digits_metric.digits_fd(scipy.ndimage.gaussian_filter(real, sigma=(0, 1, 1, 0)), digits_params)
  fd_noise = digits_metric.digits_fd(rng.rand(*real.shape), digits_params)
  assert fd_real < fd_light < fd_blur < fd_noise
  assert fd_noise > 10 * fd_real
  # 16x16 inputs are average-pooled to 8x8: a 2x nearest upsample gives the same distance.
  big = np.repeat(np.repeat(real, 2, axis=1), 2, axis=2)
  assert digits_metric.digits_fd(big, digits_params) == pytest.approx(fd_real, rel=1e-6)
