"""Write tests/fixtures/likelihood/<case>.npz (+ .json): yang-song/score_sde_pytorch's bits/dim
(Song+21 App. D.2, arXiv:2011.13456: likelihood.get_likelihood_fn) of four uniformly dequantized
8-bit images under the VP DDPM++ file of the published-checkpoint fixture score_sde_ode
(score_sde_bpd: centered data) and the VE NCSN++ file of score_sde_pc (score_sde_bpd_ve: [0, 1]
data, VE prior), with the Rademacher probe stored, so that ours can run on the same file, data and
probe:
  python tools/make_likelihood_fixture.py --score_sde=<yang-song/score_sde_pytorch> \
      [--published=tests/fixtures/published] [--out=tests/fixtures/likelihood]
(torch==2.13.0 CPU, numpy, scipy, ml_collections). Nothing is downloaded; the official code runs
as run_lib.evaluate runs it (EMA weights, its data scaler, eps = 1e-5 whatever the SDE).
"""
import json
import os

import numpy as np
import torch

import published_fixtures_score_sde as score_sde
from fixture_common import nchw, nhwc


def dequantized_images(n=4, size=8):
  """datasets.py's uniform dequantization: (U + 255 x) / 256 with x = level / 255, U ~ U[0, 1)."""
  rng = np.random.default_rng(0)
  levels = rng.integers(0, 256, (n, size, size, 3))
  return ((rng.uniform(size=levels.shape) + levels) / 256.).astype(np.float32)


def official_bpd(model, config, sde, data, probe, tol):
  """run_lib.evaluate's bpd path: get_likelihood_fn(sde, inverse_scaler, rtol=atol=tol, eps=1e-5)
  (model, scaler(data)), its torch.randint_like probe replaced by the given one (Rademacher:
  2 randint - 1)."""
  likelihood = score_sde.PEER.likelihood
  fn = likelihood.get_likelihood_fn(sde, score_sde.PEER.datasets.get_data_inverse_scaler(config),
                                    rtol=tol, atol=tol, eps=1e-5)
  real, torch.randint_like = torch.randint_like, lambda x, low, high: (probe + 1.) / 2.
  try:
    bpd, z, nfe = fn(model, score_sde.PEER.datasets.get_data_scaler(config)(data))
  finally:
    torch.randint_like = real
  return bpd.numpy(), nhwc(z), nfe


CASES = {   # case -> (setup of published_fixtures_score_sde, published-checkpoint case)
    'score_sde_bpd': ('vp_ode', 'score_sde_ode'),       # centered data: offset 7
    'score_sde_bpd_ve': ('ve_pc', 'score_sde_pc'),      # [0, 1] data: offset 8, VE prior
}


def write_case(case, published, out_dir):
  """The official bits/dim at rtol = atol = 1e-5 and 1e-8 for the case's file: <case>.npz/.json."""
  setup, folder = CASES[case]
  config, sde, state = score_sde.state_of_the_loop(setup)
  state = score_sde.PEER.utils.restore_checkpoint(
      os.path.join(published, folder, 'checkpoint_1.pth'), state, 'cpu')
  model = state['model']
  state['ema'].copy_to(model.parameters())
  images = dequantized_images()
  probe = torch.randint(0, 2, (len(images), 3, 8, 8), generator=torch.Generator().manual_seed(4))
  probe = probe.float() * 2. - 1.
  out = dict(images=images, probe=nhwc(probe))
  for name, tol in (('', 1e-5), ('_tight', 1e-8)):
    out['bpd' + name], out['z' + name], nfe = official_bpd(model, config, sde, nchw(images),
                                                           probe, tol)
    out['nfe' + name] = np.int64(nfe)
    print(f'{case}, rtol = atol = {tol}: bpd {out["bpd" + name]}, {nfe} NFE')
  np.savez(os.path.join(out_dir, f'{case}.npz'), **out)
  offset = 7. - float(score_sde.PEER.datasets.get_data_inverse_scaler(config)(-1.))
  with open(os.path.join(out_dir, f'{case}.json'), 'w') as f:
    json.dump(dict(
        checkpoint_case=folder,
        official="score_sde_pytorch run_lib.evaluate's bpd path: restore_checkpoint, ema.copy_to("
                 f"model.parameters()), likelihood.get_likelihood_fn({type(sde).__name__}, "
                 "inverse_scaler, hutchinson_type='Rademacher', rtol, atol, method='RK45', "
                 "eps=1e-5)(model, scaler(images))",
        notes='images [4, 8, 8, 3] in [0, 1]: (U + level) / 256 (datasets.py uniform '
              'dequantization), levels and U from numpy default_rng(0); probe: the Rademacher '
              'epsilon [4, 8, 8, 3] (NHWC) that torch.randint_like(data, 0, 2) * 2 - 1 gives in '
              'likelihood_fn, replayed; bpd = -(prior_logp(z) + delta_logp) / (D ln 2) + 7 - '
              f'inverse_scaler(-1) (= {offset:g} here); bpd / z / nfe at the paper\'s rtol = '
              'atol = 1e-5, *_tight at 1e-8 (the ODE solved to ~1e-6: compare a tight solve '
              'with it).'),
        f, indent=1)


def main():
  score_sde.fixture_main(__doc__, 'tests/fixtures/likelihood', CASES, write_case, 'likelihood')


if __name__ == '__main__':
  main()
