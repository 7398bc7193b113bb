"""generate.py: an image depends only on its seed (batch size, device count), resume, formats.

Runs a tiny class-conditional EDM-preconditioned DDPM++ (configs/edm/cifar10_ddpmpp_cond.py,
shrunk; one class per seed) through the EDM sampler (Euler, to compile one network copy) with
churn (per-seed noise at every step), in float64 as EDM does; the 8-device case runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import evaluation
import generate
import sampling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = list(range(16))

SCRIPT = '''
import sys
import jax
from configs import quicktest
from configs.edm import cifar10_ddpmpp_cond
import datasets, sampling, sde_lib
from models import utils as mutils
import generate

def build():
  config = quicktest.shrink(cifar10_ddpmpp_cond.get_config())
  config.model.update(nf=16, ch_mult=(1,), attn_resolutions=())
  config.sampling.update(steps=3, S_churn=5., solver='euler')
  sde, eps = sde_lib.get_sde(config)
  model, params = mutils.init_model(jax.random.key(0), config)
  shape = (config.data.image_size, config.data.image_size, config.data.num_channels)
  sample_fn = sampling.get_sampling_fn(config, sde, model, shape,
                                       datasets.get_data_inverse_scaler(config), eps)
  return config, sample_fn, params

if __name__ == '__main__':
  config, sample_fn, params = build()
  assert jax.device_count() == int(sys.argv[2]), jax.devices()
  generate.generate_seeds(config, sample_fn, params, range(16), sys.argv[1], int(sys.argv[3]))
'''


@pytest.fixture(scope='module')
def built():
  """(config, sample_fn, params) of SCRIPT's build(), compiled once for the module."""
  namespace = {'__name__': 'generate_test'}
  exec(compile(SCRIPT, 'generate_test', 'exec'), namespace)   # pylint: disable=exec-used
  return namespace['build']()


def _pixels(out_dir, fmt='png'):
  paths = [generate.seed_path(out_dir, s, fmt) for s in SEEDS]
  if fmt == 'npz':
    return np.stack([np.load(p)['x'] for p in paths])
  return np.stack([np.asarray(Image.open(p)) for p in paths])


def test_seeds_do_not_depend_on_batch_or_devices(tmp_path, built):
  config, sample_fn, params = built
  for batch in (4, 16):
    written = generate.generate_seeds(config, sample_fn, params, SEEDS, str(tmp_path / f'b{batch}'),
                                      batch)
    assert written == SEEDS
  assert os.path.exists(tmp_path / 'b4' / '000000' / '000015.png')
  devices = '--xla_force_host_platform_device_count=8'   # on top of the run's XLA settings
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {devices}")
  script = tmp_path / 'gen.py'
  script.write_text(SCRIPT)
  subprocess.run([sys.executable, str(script), str(tmp_path / 'd8'), '8', '16'], check=True,
                 env=env, cwd=ROOT, timeout=300)
  b4, b16, d8 = (_pixels(str(tmp_path / d)) for d in ('b4', 'b16', 'd8'))
  assert b4.shape == (16, 8, 8, 3) and b4.dtype == np.uint8
  assert len({im.tobytes() for im in b4}) == 16          # 16 different images
  np.testing.assert_array_equal(b4, b16)
  np.testing.assert_array_equal(b4, d8)


def test_resume_skips_existing_files_and_npz(tmp_path, built, info_log):
  config, sample_fn, params = built
  out = str(tmp_path / 'out')
  assert generate.generate_seeds(config, sample_fn, params, SEEDS[:6], out, 4) == SEEDS[:6]
  assert 'image 4/6: ' in info_log.text and 'image 6/6: ' in info_log.text   # rate, ETA
  os.remove(generate.seed_path(out, 3))
  info_log.clear()
  assert generate.generate_seeds(config, sample_fn, params, SEEDS[:6], out, 4) == [3]
  assert 'image 6/6: ' in info_log.text and 'image 4/6' not in info_log.text   # counts the kept
  assert generate.generate_seeds(config, sample_fn, params, SEEDS[:6], out, 4) == []
  with open(os.path.join(out, 'class_labels.json')) as f:
    recorded = json.load(f)                     # each seed's class, kept across the resume
  want = np.asarray(sampling.class_labels(config, generate.keys_for_seeds(SEEDS[:6])))
  assert recorded == {str(s): int(c) for s, c in zip(SEEDS[:6], want)}
  assert len(set(recorded.values())) > 1
  npz = str(tmp_path / 'npz')
  generate.generate_seeds(config, sample_fn, params, SEEDS, npz, 16, fmt='npz')
  x = _pixels(npz, 'npz')
  assert x.shape == (16, 8, 8, 3) and x.dtype == np.float32
  assert [int(np.load(generate.seed_path(npz, s, 'npz'))['label']) for s in SEEDS[:6]] == list(want)
  # EDM quantization of the same float images gives the PNGs of the same seeds.
  png = np.stack([np.asarray(Image.open(generate.seed_path(out, s))) for s in SEEDS[:6]])
  quantized = np.clip((2. * x[:6].astype(np.float64) - 1.) * 127.5 + 128., 0, 255)
  np.testing.assert_array_equal(png, quantized.astype(np.uint8))


def test_eps_norm_plot_is_written(tmp_path):
  import sde_lib  # pylint: disable=import-outside-toplevel
  from closed_form import Gaussian  # pylint: disable=import-outside-toplevel
  from models import utils as mutils  # pylint: disable=import-outside-toplevel
  from streams import sample_keys  # pylint: disable=import-outside-toplevel
  gauss, sde = Gaussian.random(4), sde_lib.EDMSDE(0.002, 80.)
  score = mutils.denoiser_to_score(sde, gauss.denoiser)
  norms = generate.eps_norm_trajectory(sample_keys(jax.random.key(0), 32), score, sde, (4,), steps=8)
  assert norms.shape == (8, 32)
  path = generate.plot_eps_norms(norms, str(tmp_path / 'plots' / 'eps_norm.png'), reference=2.)
  with Image.open(path) as image:
    assert image.size == (480, 320) and image.mode == 'RGB'
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 2   # axes, curve, text


def test_seed_parsing_and_errors(tmp_path):
  assert generate.parse_seeds('0-3,7,10-11') == [0, 1, 2, 3, 7, 10, 11]
  assert generate.seed_path('o', 1234) == os.path.join('o', '001000', '001234.png')


def _hostile_latents(tmp_path):
  """{name: (path, piece of the LatentsError)} of files sampling.latents must refuse, for 2
  images of [8, 8, 1]."""
  z = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
  files = {'missing': (None, 'does not exist'),
           'pickled': (np.array([{'a': 1}, None], dtype=object), 'not a readable'),
           'scaled': (80. * z, 'standard deviation [0-9.]+: x_T must be standard normal'),
           'nan': (np.where(z > 1, np.nan, z), 'NaN or infinite'),
           'shape': (z[:1], 'channels last'),
           'radii': ({'z': z, 'radii': np.array([1., -1.])}, "'radii' must be 2 finite positive"),
           'no_z': ({'x': z}, "needs 'z'")}
  out = {}
  for name, (value, message) in files.items():
    path = str(tmp_path / f'{name}.{"npz" if isinstance(value, dict) else "npy"}')
    if isinstance(value, dict):
      np.savez(path, **value)
    elif value is not None:
      np.save(path, value, allow_pickle=True)
    out[name] = (path, message)
  for name, data in (('truncated', open(out['scaled'][0], 'rb').read()[:100]),
                     ('text', b'0.1 0.2 0.3\n')):
    path = str(tmp_path / f'{name}.npy')
    with open(path, 'wb') as f:
      f.write(data)
    out[name] = (path, 'not a readable')
  return out


def test_latents_are_read_as_data_and_checked(tmp_path):
  z = np.random.default_rng(1).standard_normal((3, 8, 8, 1))
  np.savez(tmp_path / 'ok.npz', latents=z, radii=np.array([.5, 1., 2.]))
  got = generate.read_latents(str(tmp_path / 'ok.npz'), 2, (8, 8, 1))
  np.testing.assert_array_equal(got['z'], z[:2].astype(np.float32))
  np.testing.assert_array_equal(got['radii'], [.5, 1.])
  for path, message in _hostile_latents(tmp_path).values():
    with pytest.raises(generate.LatentsError, match=message):
      generate.read_latents(path, 2, (8, 8, 1))


def test_settings_are_recorded_and_others_refused(tmp_path):
  from configs.quickstart import digits  # pylint: disable=import-outside-toplevel
  config = digits.get_config()
  out = str(tmp_path / 'seeds')
  settings = generate.image_settings(config, 'W (step 1000)')
  assert settings['sampling.steps'] == 18 and settings['model.nf'] == 32
  assert settings['sampling.S_max'] == float('inf') and 'sampling.seeds' not in settings
  generate.check_settings(out, settings)
  generate.check_settings(out, settings)                 # the same settings: a resume
  config.sampling.seeds, config.sampling.image_format = '0-9', 'npz'   # which files, not what
  generate.check_settings(out, generate.image_settings(config, 'W (step 1000)'))
  config.sampling.steps, config.model.nf = 9, 64
  with pytest.raises(generate.SettingsMismatchError,
                     match=r'model.nf = 32 there, 64 now; sampling.steps = 18 there, 9 now'):
    generate.check_settings(out, generate.image_settings(config, 'W (step 1000)'))
  with pytest.raises(generate.SettingsMismatchError, match=r"checkpoint = 'W \(step 1000\)'"):
    generate.check_settings(out, generate.image_settings(digits.get_config(), 'other.pkl'))
  record = json.loads((tmp_path / 'seeds' / generate.SETTINGS).read_text())
  del record['sampling.disc']             # a folder recorded before the field existed: its default
  (tmp_path / 'seeds' / generate.SETTINGS).write_text(json.dumps(record))
  generate.check_settings(out, settings)
  with pytest.raises(generate.SettingsMismatchError, match=r"sampling.disc = 'edm' there, 'vp'"):
    generate.check_settings(out, {**settings, 'sampling.disc': 'vp'})
  legacy = tmp_path / 'legacy'
  (legacy / '000000').mkdir(parents=True)
  (legacy / '000000' / '000001.png').write_bytes(b'')
  generate.check_settings(str(legacy), settings)        # images of unknown settings: resumed,
  assert not (legacy / generate.SETTINGS).exists()       # not recorded as these


def test_non_finite_samples_are_refused_and_not_written(tmp_path, built):
  """A diverging sampler (here: seed 5's image NaN in the second batch) would have written a
  plausible-looking uint8 file (NaN casts to 0); the batches before it are kept."""
  config, sample_fn, params = built
  calls = []

  def diverging(keys, params, given):
    images, nfe = sample_fn(keys, params, given)
    calls.append(1)
    if len(calls) == 2:
      images = np.array(images)
      images[1] = np.nan
    return images, nfe
  out = str(tmp_path / 'out')
  with pytest.raises(evaluation.SamplesNotFiniteError,
                     match=r'sampler gave NaN or inf for 1 of 4 images \(seed 5\), not written'):
    generate.generate_seeds(config, diverging, params, SEEDS[:8], out, 4)
  assert [s for s in SEEDS[:8] if os.path.exists(generate.seed_path(out, s))] == [0, 1, 2, 3]
