"""Inpainting and colorization against score_sde_pytorch's own (Song+21 App. I.2-I.3).

Fixtures (tools/make_controllable_fixture.py, run with score_sde_pytorch and torch): four 8-bit
images, the notebook's mask, every Gaussian draw of the official get_pc_inpainter /
get_pc_colorizer loop, the x it starts from, and its outputs with and without denoising, for the
files of the published-checkpoint fixtures (VE NCSN++ inpainting, VP DDPM++ colorization). Here
the same file and images go through `modes.run_task` (`main.py --mode=inpaint|colorize
--checkpoint=FILE`) with the draws replayed through `sampling.step_normal`. Our x_T differs by
design (its known part is a sample of the forward marginal at T, the original's is the clean
data: docs/design.md), so the replay gives our x_T the official one: the prior sample is the
official start and the known part's draw is the one that lands on it.
"""
import json
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

import controllable_generation as cg
import datasets
from foreign import load
import modes
from published_cases import ROOT, checkpoint_of, config_of
import sampling
import sde_lib

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'controllable')
CASES = sorted(f[:-5] for f in os.listdir(FIXTURES) if f.endswith('.json'))
TOLERANCE = 1e-3     # max abs difference on [0, 1] images, as the published-checkpoint tests


def known_space(task):
  """(to_known, the known values in it) of pc_replace for the task, from data in model units."""
  if task == 'inpaint':
    return lambda x: x, lambda data, mask: data * mask
  return cg.decouple, lambda data, mask: cg.decouple(
      jnp.repeat(jnp.mean(data, axis=-1, keepdims=True), 3, axis=-1))


def run_case(case, denoise, tmp_path, monkeypatch):
  """Our run_task's 'result' [B, H, W, C] in [0, 1] (unclipped) on the case's file and images,
  the official draws and start replayed; the fixture, the config and the task."""
  with open(os.path.join(FIXTURES, f'{case}.json')) as f:
    spec = json.load(f)
  ref = dict(np.load(os.path.join(FIXTURES, f'{case}.npz')))
  task = spec['task']
  config = config_of(spec['checkpoint_case'])
  load.apply_fields(config, spec['overrides'])
  folder = tmp_path / 'images'
  folder.mkdir()
  for i, image in enumerate(ref['images']):
    Image.fromarray(image).save(folder / f'{i}.png')
  config.data.dataset, config.data.path = 'IMAGE_ZIP', str(folder)
  config.eval.batch_size = len(ref['images'])
  config.sampling.noise_removal, config.sampling.inpaint_mask = denoise, 'right_half'
  sde, _ = sde_lib.get_sde(config)
  to_known, known_of = known_space(task)
  data = datasets.get_data_scaler(config)(jnp.asarray(ref['images'], jnp.float32) / 255.)
  known = known_of(data, jnp.asarray(ref['mask']))
  mean, std = sde.marginal_prob(known, jnp.full([len(known)], sde.T))
  x_init = jnp.asarray(ref['x_init'])
  start_draw = (to_known(x_init) - mean) / std[:, None, None, None]   # lands on the official start
  noise = jnp.asarray(ref['noise'])
  monkeypatch.setattr(sampling, 'step_normal', lambda keys, i, j, shape: noise[i, j])
  monkeypatch.setattr(sampling, 'prior_sample', lambda *args, **kwargs: x_init)
  monkeypatch.setattr(cg, 'per_sample_normal', lambda *args: start_draw)
  arrays = modes.run_task(config, str(tmp_path / 'run'), task,
                          checkpoint=checkpoint_of(spec['checkpoint_case']))
  return np.asarray(arrays['result']), ref, config, task


@pytest.mark.parametrize('case', CASES)
def test_official_result_from_the_same_file_images_and_draws(case, tmp_path, monkeypatch):
  ours, ref, _, _ = run_case(case, False, tmp_path, monkeypatch)
  diff = float(np.abs(ours - ref['result']).max())
  print(f'{case}: max |ours - official| = {diff:.2e} on [0, 1] images')
  assert ours.shape == ref['result'].shape and diff <= TOLERANCE, diff


def last_step_std(config):
  """The official predictor's noise scale at its last step, t = eps (index 0): reverse diffusion
  on VE sqrt(σ(eps)² − 0) (Song+21 Eq. 47's VE form), DDPM's ancestral step sqrt(β_0) with
  β_0 = β_min / N (Song+21 App. F)."""
  m = config.model
  if config.training.sde == 'vesde':
    return m.sigma_min * (m.sigma_max / m.sigma_min) ** 1e-5
  return np.sqrt(m.beta_min / m.num_scales)


@pytest.mark.parametrize('case', CASES)
def test_denoising_differs_from_the_official_by_its_last_noise_only(case, tmp_path, monkeypatch):
  """With denoising the official known part is ours; its unknown part is the undenoised x (its
  replacement sets x_mean = x (1 - mask) + mean mask), ours is x_mean: the two differ by the
  last predictor step's noise, std z, in the unknown part, and by nothing else."""
  ours, ref, config, task = run_case(case, True, tmp_path, monkeypatch)
  to_known, _ = known_space(task)
  mask = np.asarray(ref['mask']) if to_known is not cg.decouple else np.array([1., 0., 0.])
  units = 0.5 if config.data.centered else 1.               # model units -> [0, 1]
  unknown = lambda x: np.asarray(to_known(jnp.asarray(x))) * (1. - mask)     # noqa: E731
  known = lambda x: np.asarray(to_known(jnp.asarray(x))) * mask              # noqa: E731
  assert np.abs(unknown(ref['result_denoised'] - ref['result'])).max() < 1e-6
  assert np.abs(known(ours - ref['result_denoised'])).max() <= TOLERANCE
  noise = units * last_step_std(config) * unknown(ref['noise'][-1, 0])
  assert np.abs(unknown(ref['result_denoised'] - ours) - noise).max() <= TOLERANCE
  assert np.abs(noise).max() > 10 * TOLERANCE                # a difference the test can see
