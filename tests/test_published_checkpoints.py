"""Published-checkpoint parity: the official code's files and images, reproduced here.

Fixtures (tools/make_published_fixtures.py, run with each seed's own code and torch): small
random-weight networks saved exactly as the official training loops save them, standard-normal
latents, and the official sampler's images for those latents, per case in
tests/fixtures/published/<case>/ (settings.json says which official call made them). Here the
same file goes through `--mode=sample --checkpoint=FILE --config.sampling.latents=Z` (run_lib, and
main.py itself for one case) and the images must match to 1e-3 on [0, 1]. No torch is needed.
"""
import glob
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpointing
from foreign import edm, load, score_sde
import generate
import modes
from published_cases import CASES, FIXTURES, ROOT, checkpoint_of, config_of, settings_of
import run_lib
import sampling

TOLERANCE = 1e-3     # max abs difference on [0, 1] images (the issue's criterion)


def latents_of(case, tmp_path):
  """latents.npy, or for PFGM++ an .npz with the official radii in our units (‖x_T‖ / σ_max)."""
  path = os.path.join(FIXTURES, case, 'latents.npy')
  ref = np.load(os.path.join(FIXTURES, case, 'reference.npz'))
  if 'radii' not in ref.files:
    return path
  out = str(tmp_path / 'latents.npz')
  np.savez(out, z=np.load(path), radii=ref['radii'] / settings_of(case)['overrides'].get(
      'sampling.sigma_max', 80.))
  return out


def sample_case(case, tmp_path, monkeypatch):
  """Our images [N, H, W, C] in [0, 1] for the case's latents, through modes.run('sample'), and
  the official ones. Adaptive ODE solves are compared converged: at score_sde's rtol = atol = 1e-5
  its RK45 and our Dopri5 each carry their own ~5e-3 error, so both sides run tight (the
  official side at 1e-8: `x_tight`). PFGM++'s injected noise (sampling.perturb_alpha) is the
  official run's, fed in place of the draws of our PERTURB stream (`perturb` [steps, N, ...]);
  so are the PC sampler's (`pc_noise` [steps, draw, N, ...], as `sampling.step_normal` draws)."""
  config = config_of(case)
  ref = np.load(os.path.join(FIXTURES, case, 'reference.npz'))
  if 'perturb' in ref.files:
    perturb = jnp.asarray(ref['perturb'])
    monkeypatch.setattr(sampling, 'per_sample_normal', lambda keys, i, shape: perturb[i])
  if 'pc_noise' in ref.files:
    pc_noise = jnp.asarray(ref['pc_noise'])
    monkeypatch.setattr(sampling, 'step_normal', lambda keys, i, j, shape: pc_noise[i, j])
  if 'x_tight' in ref.files:
    config.sampling.ode_rtol = config.sampling.ode_atol = 1e-7
    ref = np.clip((ref['x_tight'] + 1.) / 2., 0., 1.)
  else:
    ref = ref['images']
  n = len(ref)
  s = config.sampling
  s.seeds, s.image_format, s.latents = f'0-{n - 1}', 'npz', latents_of(case, tmp_path)
  config.eval.batch_size = n
  workdir = str(tmp_path / 'run')
  modes.run('sample', config, workdir, checkpoint=checkpoint_of(case), eval_folder='eval')
  out_dir, = glob.glob(os.path.join(workdir, 'samples', 'seeds_*'))
  ours = np.stack([np.load(generate.seed_path(out_dir, i, 'npz'))['x'] for i in range(n)])
  return np.clip(ours, 0., 1.), ref        # the .npz keeps the unclipped float image


@pytest.mark.parametrize('case', CASES)
def test_official_images_from_the_same_file_and_latents(case, tmp_path, monkeypatch):
  ours, ref = sample_case(case, tmp_path, monkeypatch)
  diff = float(np.abs(ours - ref).max())
  print(f'{case}: max |ours - official| = {diff:.2e} on [0, 1] images')
  assert ours.shape == ref.shape and diff <= TOLERANCE, diff


def test_main_samples_a_snapshot_as_the_official_code(tmp_path):
  """The full command line: flags from the file's description, one process, same images."""
  case = 'edm_uncond_heun'
  settings = settings_of(case)
  fields = {**edm.describe(edm.read(checkpoint_of(case))[0])[0], **settings['overrides']}
  flags = [f'--config.{k}={load.flag_value(v)}' for k, v in fields.items()]
  workdir = tmp_path / 'run'
  cmd = [sys.executable, 'main.py', f'--config={settings["base_config"]}', '--mode=sample',
         f'--workdir={workdir}', f'--checkpoint={checkpoint_of(case)}', *flags,
         '--config.sampling.seeds=0-3', '--config.sampling.image_format=npz',
         f'--config.sampling.latents={FIXTURES}/{case}/latents.npy', '--config.eval.batch_size=4']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  ref = np.load(os.path.join(FIXTURES, case, 'reference.npz'))['images']
  ours = np.clip(np.stack([np.load(generate.seed_path(f'{workdir}/samples/seeds_0', i, 'npz'))['x']
                           for i in range(4)]), 0., 1.)
  assert float(np.abs(ours - ref).max()) <= TOLERANCE


def test_training_state_gives_raw_weights_ema_and_adam_moments():
  """training-state-*.pt: the trained net, the EMA from the sibling snapshot, Adam's moments in
  our layout (EDM's first step: lr 0, exp_avg = 0.1 g, exp_avg_sq = 0.001 g²: nu = mu² / 10)."""
  case = 'edm_uncond_heun'
  config = config_of(case)
  state_path = glob.glob(os.path.join(FIXTURES, case, 'training-state-*.pt'))[0]
  given = load.load(state_path, config)
  snapshot = load.load(checkpoint_of(case), config)
  step, mu, nu = given.adam
  assert step == 1 and given.step == 1
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
  np.testing.assert_allclose(flat(given.params), flat(snapshot.params))
  np.testing.assert_allclose(flat(nu), 0.1 * flat(mu) ** 2, rtol=1e-4, atol=1e-12)
  assert np.abs(flat(mu)).max() > 0
  run = run_lib.build(config)
  state = checkpointing.load_given(state_path, config, run.optimizer, run_lib._abstract_state(run))  # pylint: disable=protected-access
  assert int(state.step) == 1


def _main_error(tmp_path, checkpoint, *flags, config='configs/edm/cifar10_ddpmpp.py'):
  workdir = tmp_path / 'untouched'
  workdir.mkdir(parents=True)
  (workdir / 'keep.txt').write_text('saved work')
  cmd = [sys.executable, 'main.py', f'--config={config}', '--mode=sample', f'--workdir={workdir}',
         f'--checkpoint={checkpoint}', *flags]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0 and sorted(os.listdir(workdir)) == ['keep.txt']
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('FATAL --checkpoint='), out.stderr[-2000:]
  return last


def test_bad_checkpoints_fail_in_one_line_and_leave_the_workdir(tmp_path):
  snapshot = checkpoint_of('edm_uncond_heun')
  truncated = tmp_path / 'network-snapshot-truncated.pkl'
  truncated.write_bytes(open(snapshot, 'rb').read()[:50000])
  cut = _main_error(tmp_path / 'a', truncated)
  assert str(truncated) in cut and ('EOFError' in cut or 'UnpicklingError' in cut), cut
  mismatch = _main_error(tmp_path / 'b', snapshot)         # a 16-px toy net vs CIFAR-10's config
  assert 'data.image_size: 16 in the file, 32 in the config' in mismatch
  assert '--config.data.image_size=16' in mismatch
  not_a_net = tmp_path / 'stats.pkl'
  not_a_net.write_bytes(pickle.dumps({'mu': [0.], 'sigma': [1.]}))
  assert 'not a checkpoint' in _main_error(tmp_path / 'c', not_a_net)
  offline = _main_error(tmp_path / 'e', 'http://127.0.0.1:9/edm-cifar10-32x32-cond-vp.pkl')
  assert 'copy it to' in offline


def test_pfgmpp_checkpoint_with_another_D_is_refused():
  case = 'pfgmpp_D128'
  config = config_of(case)
  config.training.pfgmpp_D = 2048.
  with pytest.raises(load.CheckpointMismatchError, match='training.pfgmpp_D: 128.0 in the file, 2048.0'):
    load.load(checkpoint_of(case), config)


def test_cases_are_the_ones_the_issue_names():
  assert {'edm_uncond_heun', 'edm_cond_ncsnpp_heun', 'edm_es_euler', 'pfgmpp_D128', 'adm_cond',
          'score_sde_ode'} <= set(CASES), CASES


def test_score_sde_file_fixes_its_noise_levels():
  """score_sde_pytorch's `sigmas` buffer records the training config's levels: a VE file against
  another σ range, or a discrete-time model against another N, is one line naming the fields
  (the official restore_checkpoint fails on the buffer's shape; a continuous model samples with
  any N here, as score_sde_pc_vp takes 50 PC steps with a 1000-level file)."""
  config = config_of('score_sde_pc')
  config.model.sigma_max = 348.
  with pytest.raises(load.CheckpointMismatchError, match=r'model\.sigma_max: 50\.0.* in the file'):
    load.load(checkpoint_of('score_sde_pc'), config)
  config = config_of('score_sde_pc')
  config.training.continuous, config.model.num_scales = False, 1000
  with pytest.raises(load.CheckpointMismatchError, match=r'model\.num_scales: 50 in the file, '
                     r'1000 in the config.*--config\.model\.num_scales=50'):
    load.load(checkpoint_of('score_sde_pc'), config)
  config.model.num_scales = 50
  assert load.load(checkpoint_of('score_sde_pc'), config).checks['model.num_scales'] == 50
  for malformed in ({}, {'sigmas': np.zeros((2, 2))}, {'sigmas': np.zeros(0)}):   # no levels read:
    assert score_sde.recorded_levels(malformed, config) == {}    # the converter judges the file


@pytest.mark.skipif(not os.environ.get('SCOREFLOW_SLOW_TESTS'),
                    reason='three training runs (~110 s): set SCOREFLOW_SLOW_TESTS=1')
def test_train_fine_tunes_from_a_training_state(tmp_path):
  """--mode=train --checkpoint=training-state-*.pt: starts at the file's step with its weights,
  EMA and Adam moments, takes optimizer steps, and saves; a second call resumes from the workdir."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  case = 'edm_uncond_heun'
  config = config_of(case)
  data = tmp_path / 'images'
  data.mkdir()
  rng = np.random.default_rng(0)
  for i in range(8):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f'{i}.png')
  config.data.dataset, config.data.path = 'IMAGE_ZIP', str(data)
  t = config.training
  t.batch_size, t.n_jitted_steps, t.n_iters, t.snapshot_sampling = 4, 1, 3, False
  t.log_freq = t.eval_freq = t.snapshot_freq = t.snapshot_freq_for_preemption = 1
  state_path = glob.glob(os.path.join(FIXTURES, case, 'training-state-*.pt'))[0]
  given = load.load(state_path, config)
  workdir = str(tmp_path / 'run')
  state = run_lib.train(config, workdir, checkpoint=state_path)
  assert int(state.step) == 3
  assert sorted(checkpointing.kept_manager(workdir).all_steps()) == [2, 3]   # from step 1
  moved = max(float(np.abs(np.asarray(a) - b).max()) for a, b in
              zip(jax.tree.leaves(state.params), jax.tree.leaves(given.train_params)))
  assert 0 < moved < 0.1
  t.n_iters = 4                              # the workdir's own state wins over --checkpoint
  assert int(run_lib.train(config, workdir, checkpoint=state_path).step) == 4
  assert sorted(checkpointing.kept_manager(workdir).all_steps()) == [2, 3, 4]
  # 2 steps per call: the file's step 1 is rounded down to 0, so the run meets its save steps
  t.n_jitted_steps = t.log_freq = t.eval_freq = t.snapshot_freq = 2
  t.snapshot_freq_for_preemption = 2
  workdir = str(tmp_path / 'run2')
  assert int(run_lib.train(config, workdir, checkpoint=state_path).step) == 4
  assert sorted(checkpointing.kept_manager(workdir).all_steps()) == [2, 4]
