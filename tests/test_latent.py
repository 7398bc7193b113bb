"""Latent models (data.autoencoder): Stable Diffusion's KL autoencoder (Rombach+22) read from a
diffusers file, against diffusers' own outputs (tests/fixtures/autoencoder/, made by
tools/make_autoencoder_fixture.py); hostile files; training, evaluation and sampling on latents.
Patch Diffusion's published latent ADM with cfg is a case of test_published_checkpoints.py
(patch_latent_cfg)."""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import validate
from configs.quickstart import digits
import evaluation
from foreign import autoencoder as fae
from foreign import files
from foreign import torch_pickle
import generate
import latent
import losses
from models import autoencoder as ae
import modes
import run_lib
import streams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'autoencoder')
VAE = os.path.join(FIXTURE, 'diffusion_pytorch_model.safetensors')
REF = dict(np.load(os.path.join(FIXTURE, 'reference.npz')))


def _apply(arch, params, x, method):
  model = ae.AutoencoderKL(arch)
  return model.apply({'params': params}, x, method=getattr(model, method))


@pytest.mark.parametrize('name', ['diffusion_pytorch_model.safetensors', 'old_names.bin',
                                  'ldm.ckpt'])
def test_encode_and_decode_equal_diffusers(name):
  """diffusers' AutoencoderKL on the same weights: q(z | x)'s mean and log-variance, D(z); also
  read from a float16 file under diffusers' old attention names, and from Stable Diffusion's
  original checkpoint layout (first_stage_model.*, LDM's names; diffusers' converter reads it
  as the same VAE, tools/make_autoencoder_fixture.py)."""
  arch, params = fae.load(os.path.join(FIXTURE, name))
  assert arch == ae.Arch(channels=(32, 64), layers=2, latent_channels=4) and arch.factor == 2
  mean, logvar = _apply(arch, params, REF['x'], 'encode')
  decoded = _apply(arch, params, REF['mean'], 'decode')
  if name != 'diffusion_pytorch_model.safetensors':     # float16 weights
    assert np.abs(decoded - REF['decoded_f16']).max() < 2e-5
    assert 1e-4 < np.abs(decoded - REF['decoded']).max()       # the rounding is seen
  else:
    assert np.abs(mean - REF['mean']).max() < 2e-5
    assert np.abs(logvar - REF['logvar']).max() < 2e-5
    assert np.abs(decoded - REF['decoded']).max() < 2e-5


def test_a_shifted_autoencoder_of_flux_layout():
  """Flux's / SD3's VAE layout (no quant convolutions, 16 latent channels) read off diffusers' file,
  its scaling_factor / shift_factor as data.latent_scale / latent_shift: latent.encoder's latents
  are diffusers' (mean − shift)·scale (Flux's training scripts) plus the posterior draw, and
  latent.decoder equals diffusers' decode(z / scale + shift) (FluxPipeline)."""
  folder = os.path.join(FIXTURE, 'flux')
  ref = dict(np.load(os.path.join(folder, 'reference.npz')))
  with open(os.path.join(folder, 'config.json'), encoding='utf-8') as f:
    stored = json.load(f)
  config = _latent_config()
  config.data.autoencoder, config.data.num_channels = folder, 16
  config.data.latent_scale, config.data.latent_shift = (stored['scaling_factor'],
                                                        stored['shift_factor'])
  arch, params = fae.read_for(config)
  assert (arch.quant_convs, arch.latent_channels, arch.layers) == (False, 16, 1)
  encode, _ = latent.encoder(config)
  key = jax.random.key(3)
  z = encode(params, ref['x'], key)
  logvar = _apply(arch, params, ref['x'], 'encode')[1]
  noise = jnp.stack([jax.random.normal(jax.random.fold_in(key, i), z.shape[1:])
                     for i in range(len(z))])
  want = ref['latents'] + config.data.latent_scale * jnp.exp(0.5 * logvar) * noise
  np.testing.assert_allclose(np.asarray(z), np.asarray(want), atol=2e-5)
  decode, _ = latent.decoder(config)
  np.testing.assert_allclose(np.asarray(decode(params, ref['latents'])), ref['decoded'],
                             atol=2e-5)


def test_a_bare_ldm_vae_file(tmp_path):
  """A VAE saved alone under LDM's names (as vae-ft-mse-840000-ema-pruned.safetensors; here with a
  training loss's tensor beside it, left out) reads as the whole checkpoint's first_stage_model."""
  ckpt = torch_pickle.read(os.path.join(FIXTURE, 'ldm.ckpt'))['state_dict']
  bare = {k.removeprefix('first_stage_model.'): v for k, v in ckpt.items()
          if k.startswith('first_stage_model.')}
  bare['loss.logvar'] = np.zeros((), np.float32)
  header, data = {}, b''
  for k, v in bare.items():
    raw = np.ascontiguousarray(v, np.float16).tobytes()
    header[k] = {'dtype': 'F16', 'shape': list(v.shape),
                 'data_offsets': [len(data), len(data) + len(raw)]}
    data += raw
  arch, params = fae.load(_safetensors(tmp_path / 'vae.safetensors', header, data))
  decoded = _apply(arch, params, REF['mean'], 'decode')
  assert np.abs(decoded - REF['decoded_f16']).max() < 2e-5
  assert fae.from_ldm({'x.weight': 1}) == {'x.weight': 1}            # diffusers' names: as they are


def _safetensors(path, header, data=b''):
  blob = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(blob)) + blob + data)
  return str(path)


def _rewritten(tmp_path, edit):
  sd = dict(fae.read_safetensors(VAE))
  edit(sd)
  header, data, offset = {}, b'', 0
  for k, v in sd.items():
    raw = np.ascontiguousarray(v, np.float32).tobytes()
    header[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [offset, offset + len(raw)]}
    data, offset = data + raw, offset + len(raw)
  return _safetensors(tmp_path / 'edited.safetensors', header, data)


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned > /tmp/scoreflow_pwned',))


def test_hostile_and_wrong_files_are_refused_as_data(tmp_path):
  with open(VAE, 'rb') as f:
    whole = f.read()
  (tmp_path / 'truncated.safetensors').write_bytes(whole[:len(whole) // 2])
  (tmp_path / 'text.safetensors').write_bytes(b'hello world, not tensors')
  evil = tmp_path / 'evil.bin'
  evil.write_bytes(pickle.dumps({'encoder.conv_in.weight': _Evil()}, protocol=2))
  cases = {
      str(tmp_path / 'truncated.safetensors'): 'does not fit its bytes',
      str(tmp_path / 'text.safetensors'): 'not a safetensors file',
      str(_bad_json(tmp_path)): 'header is not JSON',
      _safetensors(tmp_path / 'list.safetensors', [1, 2]): 'not a JSON object',
      _safetensors(tmp_path / 'dtype.safetensors', {'a': {'dtype': 'I8', 'shape': [1],
                                                          'data_offsets': [0, 1]}}): 'malformed',
      _safetensors(tmp_path / 'other.safetensors', {}): 'no AutoencoderKL tensors',
      _rewritten(tmp_path, lambda sd: sd.update(extra=np.zeros(3))): 'does not use: extra',
      _rewritten(tmp_path, lambda sd: sd.pop('decoder.mid_block.resnets.1.conv1.bias')): 'missing',
      _rewritten(tmp_path, lambda sd: sd.update({'decoder.conv_in.bias': np.zeros(7)})): 'shape',
  }
  for path, message in cases.items():
    with pytest.raises(fae.AutoencoderFileError, match=message):
      fae.load(path)
  with pytest.raises(torch_pickle.UnsafePickleError, match='system'):
    fae.load(str(evil))
  assert not os.path.exists('/tmp/scoreflow_pwned')


def _bad_json(tmp_path):
  path = tmp_path / 'notjson.safetensors'
  path.write_bytes(struct.pack('<Q', 5) + b'{{{{{' + b'\0' * 8)
  return path


def _latent_config(**training):
  """The quickstart digits on the fixture VAE's latents: 4×4×4 for 8×8 RGB digits."""
  c = digits.get_config()
  c.data.autoencoder, c.data.image_size, c.data.num_channels = VAE, 4, 4
  c.model.nf, c.model.ch_mult, c.model.attn_resolutions = 16, (1, 2), (2,)
  t = c.training
  t.batch_size, t.n_iters, t.eval_freq, t.log_freq = 16, 2, 2, 1
  t.snapshot_freq = t.snapshot_freq_for_preemption = 2
  for k, v in training.items():
    setattr(t, k, v)
  c.eval.batch_size = 9
  return c


def test_training_batches_are_posterior_draws_of_the_encoder():
  """Step s's image i is z = (μ + σ·normal(fold_in(fold_in(E, s), i)))·scale: the encoder's
  moments by hand, the stream of streams.py, for any start step."""
  config = _latent_config(n_jitted_steps=2)
  run = run_lib.build(config)
  rng = np.random.default_rng(0)
  elements = [{'image': rng.random((2, 16, 8, 8, 3), np.float32),
               'label': np.zeros((2, 16), np.int32)} for _ in range(2)]
  batches = list(run_lib.train_batches(iter(elements), run, start=6))
  arch, params = fae.load(VAE)
  base = streams.run_key(config, streams.ENCODE_STREAM)
  for call, (element, batch) in enumerate(zip(elements, batches)):
    assert batch.shape == (2, 16, 4, 4, 4)
    for k in range(2):
      mean, logvar = _apply(arch, params, 2. * element['image'][k] - 1., 'encode')
      key = jax.random.fold_in(base, 6 + 2 * call + k)
      noise = jnp.stack([jax.random.normal(jax.random.fold_in(key, i), (4, 4, 4))
                         for i in range(16)])
      want = (mean + jnp.exp(0.5 * logvar) * noise) * config.data.latent_scale
      np.testing.assert_allclose(np.asarray(batch[k]), np.asarray(want), atol=1e-5)


def test_train_eval_and_sample_on_latents(tmp_path, caplog):
  """A patch-trained latent model: the train loss and the eval loss on encoded digits, sample
  grids and per-seed PNGs decoded to 8×8 RGB."""
  config = _latent_config(patch_real_p=0.5, n_jitted_steps=1)
  config.model.patch_coords = True
  assert losses.patch_sizes(config) == ((2, 1), (0.5, 0.5))
  workdir = str(tmp_path / 'run')
  modes.run('train', config, workdir, checkpoint='', eval_folder='eval')
  stats = [json.loads(line) for line in open(os.path.join(workdir, 'stats.jsonl'))]
  assert all(np.isfinite(s.get('loss', 0.)) for s in stats) and any('eval_loss' in s for s in stats)
  grid = np.load(os.path.join(workdir, 'samples', 'iter_2.npz'))['samples']
  assert grid.shape[1:] == (8, 8, 3)
  config.eval.begin_step = config.eval.end_step = 2
  config.eval.enable_bpd = config.eval.enable_sampling = False
  modes.run('eval', config, workdir, checkpoint='', eval_folder='eval')
  config.sampling.seeds, config.eval.batch_size = '0-2', 3
  modes.run('sample', config, workdir, checkpoint='', eval_folder='eval')
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = np.asarray(Image.open(generate.seed_path(f'{workdir}/samples/seeds_2', 1, 'png')))
  assert image.shape == (8, 8, 3)
  config.data.latent_scale = 0.5                  # against the file's config.json: refused
  with pytest.raises(SystemExit):
    modes.run('sample', config, workdir, checkpoint='', eval_folder='eval')
  assert 'set --config.data.latent_scale=0.18215 --config.data.latent_shift=0' in caplog.text
  config.data.autoencoder = str(tmp_path / 'vae.safetensors')   # no config.json beside it
  shutil.copy(VAE, config.data.autoencoder)
  with pytest.raises(SystemExit):                 # another decoding: that folder is refused
    modes.run('sample', config, workdir, checkpoint='', eval_folder='eval')
  assert 'sampled with other settings (data.autoencoder' in caplog.records[-1].getMessage()


@pytest.mark.parametrize('mode, field, value, message', [
    ('inpaint', None, None, 'work on pixels'),
    ('train_classifier', None, None, 'work on pixels'),
    ('eval', 'eval.enable_bpd', True, 'no bits/dim'),
    ('sample', 'sampling.classifier', 'c.msgpack', 'guides in pixel space'),
    ('train', 'data.centered', False, 'data.centered=True'),
])
def test_rules_refuse_what_latents_cannot_do(mode, field, value, message):
  config = _latent_config()
  config.eval.begin_step = config.eval.end_step = 2
  if field:
    section, name = field.split('.')
    config[section][name] = value
  found = validate.violations(config, mode)
  assert any(message in m for _, m in found), found


def test_a_bad_autoencoder_file_stops_main_in_one_line(tmp_path):
  bad = tmp_path / 'vae.safetensors'
  bad.write_bytes(b'\0' * 64)
  cmd = [sys.executable, 'main.py', '--config=configs/patch/imagenet256_adm_latent_cond.py',
         '--mode=sample', f'--workdir={tmp_path / "w"}', f'--config.data.autoencoder={bad}']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0 and 'not a safetensors file' in out.stderr, out.stderr[-2000:]
  assert not (tmp_path / 'w').exists()


def test_the_file_of_a_folder_or_a_hugging_face_repository(tmp_path, monkeypatch):
  assert fae.weights_file('https://huggingface.co/stabilityai/sd-vae-ft-ema') == (
      'https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main/'
      'diffusion_pytorch_model.safetensors')
  assert fae.weights_file('https://huggingface.co/org/sd3/tree/main/vae/') == (   # the browser's
      'https://huggingface.co/org/sd3/resolve/main/vae/diffusion_pytorch_model.safetensors')
  assert fae.weights_file(FIXTURE) == VAE         # save_pretrained's folder: its safetensors
  assert fae.load(FIXTURE)[0] == fae.load(VAE)[0]
  with pytest.raises(fae.AutoencoderFileError, match='holds neither'):
    fae.weights_file(str(tmp_path))
  with pytest.raises(fae.AutoencoderFileError, match='does not exist'):
    fae.load(str(tmp_path / 'missing.safetensors'))
  monkeypatch.setenv('SCOREFLOW_CACHE_DIR', str(tmp_path / 'cache'))   # a repository's files,
  repo = 'https://huggingface.co/org/flux-vae'                          # downloaded before
  for name in ('config.json', fae.WEIGHTS[0]):
    target = files.cache_path(f'{repo}/resolve/main/{name}')
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy(os.path.join(FIXTURE, 'flux', name), target)
  assert fae.stored_factors(repo) == (0.3611, 0.1159)
  assert fae.stored_factors(FIXTURE) == fae.stored_factors(VAE) == (0.18215, 0.)
  shutil.copy(VAE, tmp_path / 'alone.safetensors')
  assert fae.stored_factors(str(tmp_path / 'alone.safetensors')) is None    # no config.json
  for hostile in (b'\x80\x04cos\nsystem\n.', b'[1, 2]', b'{"scaling_factor": "abc"}',
                  b'{"shift_factor": 0.1}'):     # a pickle, not an object, not a number, none
    (tmp_path / 'config.json').write_bytes(hostile)                 # read as JSON data: ignored
    assert fae.stored_factors(str(tmp_path / 'alone.safetensors')) is None
  config = _latent_config()
  config.data.autoencoder, config.data.num_channels = repo, 16
  with pytest.raises(fae.AutoencoderFileError, match='set --config.data.latent_scale=0.3611 '
                                                      '--config.data.latent_shift=0.1159'):
    fae.read_for(config)


def test_the_pipeline_and_the_statistics_see_the_images():
  """A latent model's data are read, and its reference statistics named, at the images' size."""
  config = _latent_config()
  config.data.dataset, config.data.path = 'IMAGE_ZIP', 'datasets/afhqv2-8x8.zip'
  pixel = latent.pixel_config(config)
  assert (pixel.data.image_size, pixel.data.num_channels) == (8, 3)
  assert (config.data.image_size, config.data.num_channels) == (4, 4)       # untouched
  names = [os.path.basename(p) for p in evaluation.stats_path_candidates(config)]
  assert names == ['afhqv2-8x8_8_stats.npz', 'afhqv2-8x8.npz']
