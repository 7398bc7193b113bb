"""Fixture cases of EDM's baselines (NVlabs/edm pretrained/baseline/: config A, score_sde's
networks in VPPrecond / VEPrecond; ADM in iDDPMPrecond) and Karras+22 §3's sampler axes,
generate.py --solver --disc --schedule --scaling (its ablation_sampler; Karras+22,
arXiv:2206.00364, Table 1, Fig. 2), and its edm_sampler with churn and iDDPM's σ rounding. Used
by make_published_fixtures.py (cases baseline_*)."""
import json
import os

import numpy as np

from fixture_common import SEEDS, nchw, replayer
from fixture_edm import (CLASS, EDM_NOTES, EDM_SAMPLER, PEER, RES, load_snapshot, one_hot, quiet,
                         rnd, snapshot_case)

# Karras+22 §3's samplers (generate.py --solver/--disc/--schedule/--scaling) on the baselines,
# from sigma_max = 1: VPPrecond's D = x - sigma F (VE: + sigma F) does not damp a random F, and
# from sigma_max = 80 its images would be all clipped.
TOP = dict(sigma_max=1.0)
BASELINE_VP = dict(num_steps=24, solver='euler', discretization='vp', schedule='vp', scaling='vp',
                   **TOP)
BASELINE_VE = dict(num_steps=12, solver='heun', discretization='ve', schedule='ve',
                   scaling='none', **TOP)
IDDPM = dict(num_steps=10, solver='heun', discretization='iddpm', schedule='linear',
             scaling='none', **TOP)


def ablation(net, latents, kw):
  """generate.py's ablation_sampler with `kw`, or its edm_sampler from TOP with the defaults."""
  sampler = PEER.generate.ablation_sampler if 'solver' in kw else PEER.generate.edm_sampler
  return quiet(sampler, net, latents, None, randn_like=rnd().randn_like, **kw)


def ablation_settings(kw):
  """Our fields for generate.py's arguments `kw`; σ_min 0: each discretization's default, as
  generate.py's (both sides clamp to the network's range)."""
  fields = {'sampling.sigma_min': 0.0, 'sampling.sigma_max': kw['sigma_max']}
  if 'solver' in kw:
    fields.update({'sampling.steps': kw['num_steps'], 'sampling.solver': kw['solver'],
                   'sampling.disc': kw['discretization'], 'sampling.schedule': kw['schedule'],
                   'sampling.scaling': kw['scaling']})
  return dict(EDM_SAMPLER, **fields)


def build_baseline(out, precond, kw):
  """A config-A network (VPPrecond + DDPM++ or VEPrecond + NCSN++, dropout 0.1) and its file."""
  arch = 'ddpmpp' if precond == 'vp' else 'ncsnpp'
  net, latents, kwargs = snapshot_case(
      out, 107 if precond == 'vp' else 108, arch, dropout=0.1,
      precond=f'training.networks.{precond.upper()}Precond',
      loss=f'training.loss.{precond.upper()}Loss')
  name = 'ablation_sampler' if 'solver' in kw else 'edm_sampler'
  call = f'{name}(net, latents, None, randn_like, **{kw})'
  settings = dict(
      base_config=f'configs/edm/cifar10_baseline_{precond}.py', overrides=ablation_settings(kw),
      official=f'NVlabs/edm generate.py: {call}', network_kwargs=kwargs,
      notes=EDM_NOTES + f' {precond.upper()}Precond (config A, the pretrained/baseline files): '
            'its sigma_min / sigma_max bound the sampler\'s range (VP: sigma_VP(1e-5), '
            'sigma_VP(1); VE: 0.02, 100). sigma_max = 1: its D = x -/+ sigma F does not damp a '
            'random F (from 80 the images would be all clipped).')
  return net, latents, settings, {}


def build_baseline_variant(out, kw):
  """Another sampler on the baseline_vp_heun case's file and latents (read from there)."""
  source = os.path.join(os.path.dirname(out), 'baseline_vp_heun')
  with open(os.path.join(source, 'settings.json')) as f:
    settings = json.load(f)
  settings.update(checkpoint_case='baseline_vp_heun', overrides=ablation_settings(kw),
                  official=f'NVlabs/edm generate.py: ablation_sampler(net, latents, None, '
                           f'randn_like, **{kw}); net, latents as in baseline_vp_heun')
  return (load_snapshot(source), nchw(np.load(os.path.join(source, 'latents.npy'))), settings,
          {})


CHURN = dict(num_steps=10, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003, sigma_max=0.5)


def build_adm_iddpm(out):
  """EDM's ImageNet baseline: iDDPMPrecond around a DhariwalUNet (label_dim 10 here), sampled
  by edm_sampler with churn at class 3; its noise replays perturb[i] [10, 4, H, W, C]."""
  net, latents, kwargs = snapshot_case(out, 109, 'adm', label_dim=10, dropout=0.1,
                                       precond='training.networks.iDDPMPrecond', loss=None,
                                       out_gain=0.3)
  perturb = np.random.default_rng(6).standard_normal([10, len(SEEDS), RES, RES, 3])
  overrides = dict(ablation_settings({'sigma_max': 0.5}), **{
      'sampling.steps': 10, 'sampling.class_label': CLASS, 'sampling.S_churn': 40.0,
      'sampling.S_min': 0.05, 'sampling.S_max': 50.0, 'sampling.S_noise': 1.003})
  settings = dict(
      base_config='configs/edm/imagenet64_adm_baseline.py', overrides=overrides,
      official=f'NVlabs/edm generate.py --class=3: edm_sampler(net, latents, class_labels, '
               f'randn_like=replay, **{CHURN}) (19 NFE)', network_kwargs=kwargs,
      notes=EDM_NOTES + ' iDDPMPrecond (baseline-imagenet-64x64-cond-adm.pkl): out_channels '
            '2 x 3 (the first 3 read), c_noise = M - 1 - argmin_j |u_j - sigma| over its 1000 '
            'float32 levels u_j, and round_sigma applied to every t_i and t_hat. Churn (gamma = '
            'min(40/10, sqrt 2 - 1) for 0.05 <= t_i <= 50): the i-th randn_like returns '
            'perturb[i] (NHWC in reference.npz; our side feeds it for its churn stream). '
            'sigma_max = 0.5 (c_out = -sigma; the churn adds noise the random net leaves), '
            'the output conv x 0.3.')
  return net, latents, settings, dict(perturb=perturb.astype(np.float32))


def adm_churn(net, latents, extra):
  """edm_sampler with CHURN at class 3, its i-th randn_like replaying extra['perturb'][i]."""
  replay, drawn = replayer(extra['perturb'])
  x = quiet(PEER.generate.edm_sampler, net, latents, one_hot(10), randn_like=replay, **CHURN)
  assert len(drawn) == len(extra['perturb']), drawn
  return x


def load_baseline_vp(case_dir):
  return load_snapshot(os.path.join(os.path.dirname(case_dir), 'baseline_vp_heun'))


CASES = {   # as make_published_fixtures.CASES
    'baseline_vp_heun': ('edm', lambda o: build_baseline(o, 'vp', TOP), load_snapshot,
                         lambda n, z, e: ablation(n, z, TOP)),
    'baseline_vp_euler_vp': ('edm', lambda o: build_baseline_variant(o, BASELINE_VP),
                             load_baseline_vp, lambda n, z, e: ablation(n, z, BASELINE_VP)),
    'baseline_vp_iddpm': ('edm', lambda o: build_baseline_variant(o, IDDPM), load_baseline_vp,
                          lambda n, z, e: ablation(n, z, IDDPM)),
    'baseline_adm_iddpm': ('edm', build_adm_iddpm, load_snapshot, adm_churn),
    'baseline_ve_heun_ve': ('edm', lambda o: build_baseline(o, 've', BASELINE_VE), load_snapshot,
                            lambda n, z, e: ablation(n, z, BASELINE_VE)),
}
