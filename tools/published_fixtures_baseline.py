"""Fixture cases of EDM's baselines (NVlabs/edm pretrained/baseline/: config A, score_sde's
networks in VPPrecond / VEPrecond) and Karras+22 §3's sampler axes, generate.py --solver --disc
--schedule --scaling (its ablation_sampler; Karras+22, arXiv:2206.00364, Table 1, Fig. 2). Used by
make_published_fixtures.py (cases baseline_*)."""
import json
import os

import numpy as np

from fixture_common import nchw
from fixture_edm import EDM_NOTES, EDM_SAMPLER, PEER, load_snapshot, quiet, rnd, snapshot_case

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


def load_baseline_vp(case_dir):
  return load_snapshot(os.path.join(os.path.dirname(case_dir), 'baseline_vp_heun'))


CASES = {   # as make_published_fixtures.CASES
    'baseline_vp_heun': ('edm', lambda o: build_baseline(o, 'vp', TOP), load_snapshot,
                         lambda n, z, e: ablation(n, z, TOP)),
    'baseline_vp_euler_vp': ('edm', lambda o: build_baseline_variant(o, BASELINE_VP),
                             load_baseline_vp, lambda n, z, e: ablation(n, z, BASELINE_VP)),
    'baseline_vp_iddpm': ('edm', lambda o: build_baseline_variant(o, IDDPM), load_baseline_vp,
                          lambda n, z, e: ablation(n, z, IDDPM)),
    'baseline_ve_heun_ve': ('edm', lambda o: build_baseline(o, 've', BASELINE_VE), load_snapshot,
                            lambda n, z, e: ablation(n, z, BASELINE_VE)),
}
