"""--mode=fid (fid.py): the digits metric of the 297 real test digits through main.py equals the
in-eval computation (eval_lib.sample_scorer); folders, EDM zips and .npz files give the same
numbers; EDM's seeded subset; fid_repeats over seed ranges; one-line errors; the Inception path's
batching and sharding over 4 host devices with a stand-in feature extractor (no weights, no
network).
"""
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import datasets
import eval_lib
import digits_metric
import evaluation
import fid
import generate
import modes
import run_lib
from configs.quickstart import digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 297
ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu'}


class _NoTensorBoard:
  """outputs.Writer without TensorFlow (importing it takes seconds); main.py's run writes the
  real stats.jsonl (test_main_fid_equals_the_in_eval_digits_metric)."""

  def __init__(self, logdir):
    del logdir

  def write(self, step, scalars):
    del step, scalars


@pytest.fixture(autouse=True)
def no_tensorboard(monkeypatch):
  monkeypatch.setattr(fid.outputs, 'Writer', _NoTensorBoard)


def _config(images, n=N, repeats=1):
  config = digits.get_config()
  config.eval.images, config.eval.num_samples, config.eval.fid_repeats = str(images), n, repeats
  return config


@pytest.fixture(scope='module')
def pixels():
  """The real digits test split as generate.py quantizes images: uint8 [297, 8, 8, 1]."""
  return evaluation.images_to_uint8(datasets.digits_split()['test_images'], centered=False)


@pytest.fixture(scope='module')
def png_dir(tmp_path_factory, pixels):
  """The 297 digits as seed-named PNGs, EDM generate.py --subdirs layout (seed i = test image i)."""
  out = tmp_path_factory.mktemp('pngs')
  for seed, image in enumerate(pixels):
    path = generate.seed_path(str(out), seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image[..., 0]).save(path)
  (out / 'class_labels.json').write_text('{}')      # not an image: ignored
  return out


@pytest.fixture(scope='module')
def fid_run(tmp_path_factory, png_dir):
  """main.py --mode=fid on the PNG folder (one subprocess): (workdir, results.json, stderr); later
  tests score into the same workdir (its digits classifier is reused)."""
  workdir = tmp_path_factory.mktemp('work')
  out = subprocess.run([sys.executable, 'main.py', '--mode=fid',
                        '--config=configs/quickstart/digits.py', f'--workdir={workdir}',
                        f'--config.eval.images={png_dir}', f'--config.eval.num_samples={N}'],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(workdir / 'fid' / 'results.json') as f:
    return workdir, json.load(f), out.stderr


@pytest.fixture(scope='module')
def classifier(fid_run):
  return digits_metric.load_digits_classifier(os.path.join(fid_run[0], 'fid', 'digits_classifier'))


def _fd(x, params):
  return digits_metric.digits_fd(x / 255., params)


def test_main_fid_equals_the_in_eval_digits_metric(fid_run, pixels):
  workdir, results, log = fid_run
  scorer = eval_lib.sample_scorer(run_lib.build(_config('')), str(workdir / 'fid'))  # --mode=eval's
  expected = scorer.metrics(scorer.features(pixels))
  assert results['metric'] == 'digits_fd' and results['subset'] == 'all'
  assert results['num_found'] == results['num_samples'] == N
  assert abs(results['min'] - expected['digits_fd']) < 1e-6
  assert results['values'] == [results['min']] == [results['repeats'][0]['digits_fd']]
  # the real test split's own FD at n = 297 (README / configs/quickstart/digits.py: 4.24)
  assert abs(results['min'] - expected['digits_fd_equal_n_real_test']) < 0.05
  assert f"digits_fd {results['min']:.6g}" in log
  lines = (workdir / 'fid' / 'stats.jsonl').read_text().splitlines()
  assert [json.loads(line) for line in lines] == [{'step': 0, 'digits_fd': results['min']}]


def test_too_few_images_is_one_line_error(tmp_path, png_dir):
  start = time.perf_counter()
  with pytest.raises(fid.ImagesError) as err:
    fid.run(_config(png_dir, n=N + 1), str(tmp_path))
  message = str(err.value)
  assert '\n' not in message and f'holds {N} images' in message
  assert str(png_dir) in message and f'eval.num_samples = {N + 1}' in message
  assert time.perf_counter() - start < 10.
  assert not os.path.exists(tmp_path / 'fid')
  with pytest.raises(SystemExit) as exit_:                  # main.py: logged, exit status 1
    modes.run('fid', _config(png_dir, n=N + 1), str(tmp_path))
  assert exit_.value.code == 1
  with pytest.raises(fid.ImagesError, match='does not exist'):
    fid.run(_config(tmp_path / 'nowhere'), str(tmp_path))
  with pytest.raises(ValueError, match='eval.images is empty'):    # configs/rules.py
    fid.run(_config(''), str(tmp_path))


def test_more_images_take_edms_seeded_subset(fid_run, png_dir, pixels, classifier):
  images = fid.ImageSet(str(png_dir))
  assert len(images) == N and images.shape == (8, 8, 1) and images.seeds == list(range(N))
  subset = fid.select(images, 100, 1)
  assert len(subset) == 1 and np.array_equal(subset[0], fid.select(images, 100, 1)[0])
  order = np.arange(N)
  np.random.RandomState(0).shuffle(order)                   # EDM ImageFolderDataset(max_size)
  assert np.array_equal(subset[0], np.sort(order[:100]))
  results = fid.run(_config(png_dir, n=100), str(fid_run[0]))
  assert results['num_found'] == N and 'random subset' in results['subset']
  assert abs(results['min'] - _fd(pixels[subset[0]], classifier)) < 1e-9


def test_repeats_over_seed_ranges(fid_run, png_dir, pixels, classifier, tmp_path):
  results = fid.run(_config(png_dir, n=99, repeats=3), str(fid_run[0]))
  expected = [_fd(pixels[r * 99:(r + 1) * 99], classifier) for r in range(3)]
  np.testing.assert_allclose(results['values'], expected, rtol=0, atol=1e-9)
  assert results['min'] == min(results['values']) and len(set(results['values'])) == 3
  assert [r['seeds'] for r in results['repeats']] == ['0-98', '99-197', '198-296']
  with pytest.raises(fid.ImagesError, match='needs 400 .seeds 0-399.'):
    fid.run(_config(png_dir, n=100, repeats=4), str(tmp_path))
  np.savez(tmp_path / 'batch.npz', samples=pixels)
  with pytest.raises(fid.ImagesError, match='not named by seed; eval.fid_repeats = 3'):
    fid.run(_config(tmp_path / 'batch.npz', n=99, repeats=3), str(tmp_path))


def test_zip_and_npz_give_the_folders_numbers(fid_run, png_dir, pixels, tmp_path):
  folder = fid_run[1]['min']
  with zipfile.ZipFile(tmp_path / 'digits.zip', 'w') as z:    # EDM dataset_tool.py layout
    for seed in range(N):
      z.write(generate.seed_path(str(png_dir), seed), os.path.relpath(
          generate.seed_path(str(png_dir), seed), png_dir))
  np.savez(tmp_path / 'samples.npz', samples=pixels)         # our samples/*.npz
  rounds = tmp_path / 'rounds'                               # eval's samples_<r>.npz, natural order
  rounds.mkdir()
  for r, chunk in enumerate(np.array_split(pixels, 11)):
    np.savez(rounds / f'samples_{r}.npz', samples=chunk)
  seeds = tmp_path / 'seeds'                                 # generate.py's per-seed float .npz
  for seed, image in enumerate(pixels):
    path = generate.seed_path(str(seeds), seed, 'npz')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, x=image.astype(np.float32) / 255.)
  for source in ('digits.zip', 'samples.npz', 'rounds', 'seeds'):
    images = fid.ImageSet(str(tmp_path / source))
    assert len(images) == N and images.shape == (8, 8, 1)
    np.testing.assert_array_equal(np.stack([images.load(i) for i in range(N)]), pixels)
    results = fid.run(_config(tmp_path / source), str(fid_run[0]))
    assert abs(results['min'] - folder) < 1e-9, source
  assert fid.ImageSet(str(seeds)).seeds == list(range(N))
  results = fid.run(_config(seeds, n=99, repeats=3), str(fid_run[0]))
  assert len(results['values']) == 3


def test_mixed_or_unequal_images_and_missing_inception_fail_clearly(tmp_path, pixels):
  np.savez(tmp_path / 'a.npz', samples=pixels)
  Image.fromarray(pixels[0, ..., 0]).save(tmp_path / 'b.png')
  with pytest.raises(fid.ImagesError, match='both images .1, e.g. b.png. and .npz files'):
    fid.ImageSet(str(tmp_path))
  sizes = tmp_path / 'sizes'
  sizes.mkdir()
  Image.fromarray(pixels[0, ..., 0]).save(sizes / 'a.png')
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(sizes / 'b.png')
  with pytest.raises(fid.ImagesError, match=r'b.png is \(16, 16, 3\), a.png is \(8, 8, 1\)'):
    fid.ImageSet(str(sizes)).load(1)
  (sizes / 'b.png').write_bytes(b'not a png')               # corrupt files: named, one line
  with pytest.raises(fid.ImagesError, match=r'b.png is not a readable image \(cannot identify'):
    fid.ImageSet(str(sizes)).load(1)
  broken = tmp_path / 'broken'
  broken.mkdir()
  np.savez(broken / 'a.npz', samples=pixels)
  (broken / 'b.npz').write_bytes(open(broken / 'a.npz', 'rb').read()[:200])
  with pytest.raises(fid.ImagesError, match=r'b.npz is not a readable .npz \(File is not a zip'):
    fid.ImageSet(str(broken))
  nan = tmp_path / 'nan'                                    # float images with a NaN: named
  nan.mkdir()
  np.savez(nan / 'a.npz', x=np.full((2, 8, 8, 1), np.nan, np.float32))
  with pytest.raises(fid.ImagesError, match=r'a.npz holds NaN or inf'):
    fid.ImageSet(str(nan))
  config = _config(tmp_path / 'a.npz')
  config.data.dataset = 'CIFAR10'
  config.eval.inception_path = str(tmp_path / 'missing.pth')
  with pytest.raises(evaluation.InceptionWeightsNotFoundError, match='eval.inception_path'):
    fid.run(config, str(tmp_path))


SHARDED = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import evaluation, fid
from configs.quickstart import digits
fid.outputs.Writer = lambda logdir: type('NoTensorBoard', (), {'write': lambda *args: None})()
calls = []
def fake_inception_fn(params, preprocessing, mesh=None):
  def fn(images):
    calls.append((images.shape, len(images.sharding.device_set)))
    x = images.astype(jnp.float32).reshape(images.shape[0], -1) / 255.
    logits = 4. * x[:, :12]
    return {'pool_3': jnp.stack([x.mean(1), x.std(1), x[:, 19], x[:, 44]], 1), 'logits': logits,
            'logits_unbiased': logits - 1.}
  return fn
evaluation.load_inception = lambda path: {'params': None, 'preprocessing': 'pytorch_fid'}
evaluation.get_inception_fn = fake_inception_fn
pixels = np.load(sys.argv[2])['samples']
ref = fake_inception_fn(None, None)(jnp.asarray(pixels[::-1].copy() // 2))
evaluation.save_stats(sys.argv[3], {**evaluation.compute_stats(np.asarray(ref['pool_3'])),
                                    'pool_3': np.asarray(ref['pool_3'])})
config = digits.get_config()
config.data.dataset = 'CIFAR10'
e = config.eval
e.images, e.num_samples, e.batch_size, e.fid_stats_path = sys.argv[2], 297, 8, sys.argv[3]
e.is_convention = 'tfgan'
calls.clear()
results = fid.run(config, sys.argv[1])
calls_run = list(calls)
feats = {k: np.asarray(v) for k, v in fake_inception_fn(None, None)(jnp.asarray(pixels)).items()}
expected = evaluation.sample_metrics(feats, evaluation.load_stats(sys.argv[3]),
                                     is_convention='tfgan')
print(json.dumps({'devices': jax.device_count(), 'calls': calls_run, 'results': results,
                  'expected': expected}))
"""


def test_inception_path_shards_pads_and_scores(tmp_path, pixels):
  """4 host devices, eval.batch_size 8: 38 global batches (the last padded), each sharded over all
  4; FID / IS (eval.is_convention = 'tfgan') / KID equal evaluation.sample_metrics of the same
  features in one piece."""
  np.savez(tmp_path / 'samples.npz', samples=pixels)
  env = {**ENV, 'XLA_FLAGS': f"{ENV.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"}
  out = subprocess.run([sys.executable, '-c', SHARDED, str(tmp_path / 'w'),
                        str(tmp_path / 'samples.npz'), str(tmp_path / 'ref.npz')], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got['devices'] == 4
  assert got['calls'] == [[[8, 8, 8, 1], 4]] * 38
  results, expected = got['results'], got['expected']
  assert results['metric'] == 'fid' and set(results['repeats'][0]) == set(expected)
  assert np.isnan(expected['inception_score_std'])       # TF-GAN's IS (eval.is_convention) has none
  for key, value in expected.items():   # a std to 1e-6 of its mean (KID's is rounding noise here)
    scale = max(1., abs(expected[key.replace('_std', '')]))
    np.testing.assert_allclose(results['repeats'][0][key], value, rtol=0, atol=1e-6 * scale,
                               err_msg=key)
  assert results['min'] == results['repeats'][0]['fid'] > 0
