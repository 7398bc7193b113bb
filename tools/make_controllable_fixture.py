"""Write tests/fixtures/controllable/<case>.npz (+ .json): yang-song/score_sde_pytorch's
inpainting and colorization (Song+21 App. I.2-I.3, arXiv:2011.13456: controllable_generation.
get_pc_inpainter / get_pc_colorizer, as its notebook calls them) of four 8-bit images under the
files of the published-checkpoint fixtures, with every Gaussian draw stored, so that ours can run
on the same file, images and draws:
  python tools/make_controllable_fixture.py --score_sde=<yang-song/score_sde_pytorch> \
      [--published=tests/fixtures/published] [--out=tests/fixtures/controllable]
(torch==2.13.0 CPU, numpy, scipy, ml_collections). Nothing is downloaded.

Cases: score_sde_inpaint (score_sde_pc's VE NCSN++ file, the notebook's mask: left half known;
reverse diffusion + Langevin) and score_sde_colorize_vp (score_sde_ode's VP DDPM++ file, the
sampler settings of score_sde_pc_vp: ancestral + Langevin). Both are sampled twice with the same
draws, denoise=False ('result') and denoise=True ('result_denoised').
"""
import json
import os

import numpy as np
import torch

import published_fixtures_score_sde as score_sde
from fixture_common import nchw, nhwc, replayer

CASES = {   # case -> (task, setup of published_fixtures_score_sde, published case, trained as)
    'score_sde_inpaint': ('inpaint', 've_pc', 'score_sde_pc', 've_pc'),
    'score_sde_colorize_vp': ('colorize', 'vp_pc', 'score_sde_ode', 'vp_ode'),
}
SIZE, BATCH = 8, 4


def images_and_mask():
  """uint8 images [4, 8, 8, 3] (clip(128 + 64 N(0, 1)), numpy default_rng(5)) and the notebook's
  mask [4, 8, 8, 1]: 1 on the left half (known), 0 on the right half (inpainted)."""
  rng = np.random.default_rng(5)
  images = np.clip(np.rint(128. + 64. * rng.standard_normal((BATCH, SIZE, SIZE, 3))), 0, 255)
  mask = np.broadcast_to(np.arange(SIZE) < SIZE // 2, (BATCH, SIZE, SIZE))[..., None]
  return images.astype(np.uint8), mask.astype(np.float32)


def noise_draws(config):
  """Every draw of the loop [N, 3 + corrector steps, B, H, W, C] (NHWC), indexed as our
  sampling.step_normal in controllable_generation.pc_replace: [i, 0] the predictor's of step i,
  [i, 1] the replacement after it, [i, 2 + j] the j-th corrector step's, [i, 2 + n] the
  replacement after the corrector."""
  gen = torch.Generator().manual_seed(6)
  n = config.sampling.n_steps_each
  return torch.randn([config.model.num_scales, 3 + n, BATCH, SIZE, SIZE, 3], generator=gen).numpy()


def official(task, model, config, sde, images, mask, noise, prior, denoise):
  """The notebook's call (controllable_generation.get_pc_inpainter / get_pc_colorizer with the
  config's predictor, corrector, snr, n_steps; eps = run_lib's sampling eps of the SDE), its
  torch.randn_like draws replaying `noise` (per step: corrector, its replacement, predictor, its
  replacement), sde.prior_sampling giving `prior`. Returns (output [B, H, W, C] in [0, 1] units,
  x_init: the x its loop starts from, in the model's units)."""
  cg, sampling = score_sde.PEER.controllable_generation, score_sde.PEER.sampling
  s, eps = config.sampling, score_sde.SAMPLING_EPS[config.training.sde]
  n = s.n_steps_each
  order = list(range(2, 3 + n)) + [0, 1]
  replay, drawn = replayer(noise[:, order].reshape(-1, *noise.shape[2:]))
  starts, real_corrector = [], cg.shared_corrector_update_fn

  def corrector(x, t, **kwargs):
    starts.append(x.clone())
    return real_corrector(x, t, **kwargs)

  cg.shared_corrector_update_fn, real_randn = corrector, torch.randn_like
  sde.prior_sampling = lambda shape: prior
  get = cg.get_pc_inpainter if task == 'inpaint' else cg.get_pc_colorizer
  fn = get(sde, sampling.get_predictor(s.predictor), sampling.get_corrector(s.corrector),
           score_sde.PEER.datasets.get_data_inverse_scaler(config), snr=s.snr, n_steps=n,
           probability_flow=s.probability_flow, continuous=config.training.continuous,
           denoise=denoise, eps=eps)
  scaler = score_sde.PEER.datasets.get_data_scaler(config)
  data = nchw(images.astype(np.float32) / 255.)
  torch.randn_like = replay
  try:
    with torch.no_grad():
      if task == 'inpaint':
        out = fn(model, scaler(data), nchw(mask).repeat(1, 3, 1, 1))
      else:
        out = fn(model, scaler(torch.mean(data, dim=1, keepdim=True).repeat(1, 3, 1, 1)))
  finally:
    torch.randn_like, cg.shared_corrector_update_fn = real_randn, real_corrector
  assert len(drawn) == noise.shape[0] * noise.shape[1], len(drawn)
  return nhwc(out), nhwc(starts[0])


NOTES = (
    'images: uint8 [4, 8, 8, 3], clip(round(128 + 64 N(0, 1))) from numpy default_rng(5), fed as '
    'images / 255 through the config\'s data scaler (the notebook\'s scaler(img)); colorization '
    'takes scaler(mean over channels, repeated to 3). mask [4, 8, 8, 1]: the notebook\'s, 1 on '
    'the left half (known). noise [N, 3 + n, B, H, W, C] (NHWC): [i, 0] the predictor\'s draw of '
    'step i, [i, 1] the replacement after it, [i, 2 + j] corrector step j\'s, [i, 2 + n] the '
    'replacement after the corrector, replayed into the official torch.randn_like calls (per step: '
    'corrector, its replacement, predictor, its replacement). prior: latents (torch.manual_seed(0) '
    'randn [4, 3, 8, 8]) times the prior std, given as sde.prior_sampling. x_init: the x the '
    'official loop starts from (NHWC, model units): inpainting data * mask + prior * (1 - mask), '
    'colorization couple(decouple(gray) * mask + decouple(prior * (1 - mask))) (its mask, channel '
    '0, applied to the RGB prior: the R channel is dropped and the gray axis keeps (G + B) / '
    'sqrt(3) of prior noise). result / result_denoised: the official output in [0, 1] units '
    '(unclipped), denoise False / True. With denoise the official x_mean of the replacement is '
    'x * (1 - mask) + mean * mask: the unknown part keeps the last predictor step\'s noise.')


def write_case(case, published, out_dir):
  task, setup, folder, trained_as = CASES[case]
  state = score_sde.PEER.utils.restore_checkpoint(
      os.path.join(published, folder, 'checkpoint_1.pth'), score_sde.state_of_the_loop(trained_as)[2],
      'cpu')
  config, sde, _ = score_sde.state_of_the_loop(setup)
  model = state['model']
  state['ema'].copy_to(model.parameters())
  images, mask = images_and_mask()
  noise = noise_draws(config)
  torch.manual_seed(0)
  prior = torch.randn(BATCH, 3, SIZE, SIZE) * getattr(sde, 'sigma_max', 1.)
  out = dict(images=images, mask=mask, noise=noise)
  out['result'], out['x_init'] = official(task, model, config, sde, images, mask, noise, prior,
                                          False)
  out['result_denoised'], _ = official(task, model, config, sde, images, mask, noise, prior, True)
  again, _ = official(task, model, config, sde, images, mask, noise, prior, False)
  assert np.array_equal(again, out['result'])
  gap = np.abs(out['result'] - out['result_denoised']).max()
  print(f'{case}: result in [{out["result"].min():.3f}, {out["result"].max():.3f}], '
        f'max |result - result_denoised| = {gap:.3g}')
  np.savez(os.path.join(out_dir, f'{case}.npz'), **out)
  s, eps = config.sampling, score_sde.SAMPLING_EPS[config.training.sde]
  get = 'get_pc_inpainter' if task == 'inpaint' else 'get_pc_colorizer'
  with open(os.path.join(out_dir, f'{case}.json'), 'w') as f:
    json.dump(dict(
        task=task, checkpoint_case=folder,
        overrides={'model.num_scales': sde.N, 'sampling.predictor': s.predictor,
                   'sampling.corrector': s.corrector},
        official=f'score_sde_pytorch notebook: restore_checkpoint({folder}/checkpoint_1.pth), '
                 f'ema.copy_to(model.parameters()), controllable_generation.{get}('
                 f'{type(sde).__name__}(N={sde.N}), {s.predictor}, {s.corrector}, inverse_scaler, '
                 f'snr={s.snr}, n_steps={s.n_steps_each}, probability_flow=False, '
                 f'continuous={config.training.continuous}, denoise, eps={eps}) (the notebook '
                 'leaves eps at its default 1e-5 for every SDE; run_lib\'s sampling eps here)',
        notes=NOTES), f, indent=1)


def main():
  score_sde.fixture_main(__doc__, 'tests/fixtures/controllable', CASES, write_case,
                         'controllable_generation')


if __name__ == '__main__':
  main()
