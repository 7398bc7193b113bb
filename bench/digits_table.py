"""Each seed's headline claim on sklearn digits: one table, one training budget per row.

  python bench/digits_table.py [--budget_s 120 | --budget_steps N] [--seeds S] [--subsets K]
                               [--sde_subsets K] [--out bench/results/digits_table] [--smoke]
                               [--parts sde,edm_es,stf,pfgmpp,patch] [--patch_px 32]
                               [--sde_names vesde,vpsde,subvpsde]

Every row trains the quickstart's network (configs/quickstart/digits.py; constant learning rate,
EMA ramp-up 0.05: RECIPE) from scratch for the same budget (wall-clock seconds, compilation
excluded, or a number of steps: independent of the host's speed and load), then samples K × 297
images and scores them with the digits metric (digits_metric.DigitsReference: FD at n = 297 vs
the train split, the mean over the K disjoint subsets; KID ± std), with S training seeds per row
(config.seed 42, 43, ...: initialisation, data order, noise and latents). ± is the standard error
over the seeds (one seed: over the subsets, sampling noise only); each claim's comparison (b vs
b = 1, finite D vs EDM, ODE vs PC, sub-VP vs VP bits/dim, ...) is a difference paired by seed,
so a gap is read against its own standard error. Writes
<out>.md (the table, with the CPU, date and budget), <out>.png (samples of every row, first seed)
and <out>_es.png (Epsilon Scaling: FD vs b, and ‖ε̂‖ of sampling vs of training, per step).
Rows that do not reproduce a paper's direction are reported as measured, not tuned.

  - score-SDE (Song+21): VE / VP / sub-VP with DSM, PC and probability-flow ODE samplers, and
    bits/dim on the test split (the paper's claim: sub-VP the best likelihood); EDM's samplers
    on the same models against PC's 2000 NFE: Heun 18 (35 NFE, Karras+22 §3) and stochastic
    (Table 5's settings, 511 NFE, §4); Fig. 2's ladder at 35 NFE (--sde_names picks the SDEs).
  - EDM vs Epsilon Scaling (Ning+24): one EDM model; Euler 13 and Heun 9 steps, b swept (the
    claim: b slightly > 1 lowers FD at few steps, because sampling's ‖ε̂‖ exceeds training's).
  - STF (Xu+23b): the variance of the training target at σ = 1 around the ideal denoiser of the
    train split, with and without a 512-image reference batch (measured), and FD.
  - PFGM++ (Xu+23): D = 64, 128, 2048 (∞ is the EDM row); per model the robustness probes of
    Xu+23 §6 (noise injection α, fewer steps, fewer weight bits): the FD's rise, and that rise
    against EDM's (the claim: smaller D, smaller rise); --no-pfgmpp_probes skips them.
  - Patch Diffusion (Wang+23): digits upsampled to 32×32 (--patch_px), real_p = 0.5 vs 1: images/s
    and FD; a step of R/d patches reads d batches, as the reference (training.patch_batch_mul).
--smoke runs two rows for a few seconds each (tests/test_digits_table.py). Runtime with
--budget_steps 400 --seeds 3 --subsets 5 --sde_subsets 1 (the published tables), 2-core AMD EPYC
Zen 4 (2026-12-05): edm_es 8 min, pfgmpp 14 min (32 with its probes), stf 3 min, sde ~50 min (per
SDE: 1000-step PC, ODE and five EDM samplers, bits/dim of BPD_N test digits).
`--parts` runs a subset; the md and png are rewritten after every part.
"""
import argparse
import dataclasses
import datetime
import functools
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from configs import presets
from configs import validate
from configs.quickstart import digits
import datasets
import digits_metric
import digits_plots
import eval_lib
import hugepages
import losses
from models import precond
from models import utils as mutils
import run_lib
import sampling
import schedules
import sde_lib
import streams
import utils

N_SAMPLES = 297                 # = the test split: the metric's equal n
ES_B = (1.0, 1.002, 1.005, 1.01, 1.02)
BPD_N = 99                      # test digits in the bits/dim column (one eval batch)
STF_REF = 512                   # STF reference batch (8 × the batch of 64)
EDM_ROW = 'EDM (PFGM++ D = ∞)'  # the baseline of the PFGM++ and STF rows
# Xu+23 §6's robustness probes of a trained model (pfgmpp generate_alpha.py, generate_steps.py,
# generate_quant.py): noise injected before every step (sampling.perturb_alpha), fewer Heun steps
# than 18, the weights at fewer bits (sampling.quantize_bits).
PFGMPP_PROBES = (('α = 0.1', {'perturb_alpha': 0.1}), ('α = 0.2', {'perturb_alpha': 0.2}),
                 ('Heun 6 steps', {'steps': 6}), ('Heun 4 steps', {'steps': 4}),
                 ('7 bits', {'quantize_bits': 7}), ('5 bits', {'quantize_bits': 5}))
# Karras+22 Table 5: their stochastic sampler's settings for score_sde's pre-trained models (VP's
# also for sub-VP, which the paper does not run); S_min, S_max in σ of data in [-1, 1].
STOCHASTIC = {'vesde': {'S_churn': 80., 'S_min': 0.05, 'S_max': 1., 'S_noise': 1.007},
              'vpsde': {'S_churn': 30., 'S_min': 0.01, 'S_max': 1., 'S_noise': 1.007}}
STOCHASTIC_STEPS = 256          # 511 NFE (Karras+22 Fig. 4's VE / VP curves reach ~1000)
SMOKE_MODEL = {'model.nf': 16, 'model.ch_mult': (1,), 'model.attn_resolutions': ()}
MODEL = {}                      # --smoke: SMOKE_MODEL (a network that compiles in seconds)
# Rows train for a budget (time or steps), not to training.n_iters: no cosine decay to aim at its
# end, and the EMA ramp-up of the measured table (the quickstart's before 2026-12-05).
RECIPE = {'optim.lr_decay': 'none', 'model.ema_rampup_ratio': 0.05}


@dataclasses.dataclass(frozen=True)
class Plan:
  """One repetition of the table: a training budget (wall-clock `seconds` after compilation, or
  `steps` optimizer steps when set: independent of the host and of its load), N_SAMPLES ×
  `subsets` samples per row, and the training seed (config.seed: initialisation, data order,
  training noise and the sampling latents)."""
  seconds: float = 120.
  steps: int = 0
  subsets: int = 1
  seed: int = 42


def _digits_config(plan, **overrides):
  """The quickstart config with `plan`'s seed, RECIPE's, MODEL's and `overrides`
  ({'section.field': value})."""
  config = digits.get_config()
  config.seed = plan.seed
  return with_fields(config, {**RECIPE, **MODEL, **overrides}, copy=False)


def with_fields(config, fields, copy=True):
  """`config` (a copy unless copy=False) with `fields` ({'section.field': value}) set."""
  config = config.copy_and_resolve_references() if copy else config
  for field, value in fields.items():
    section, name = field.split('.')
    setattr(getattr(config, section), name, value)
  return config


def _sde_config(name, plan):
  """score_sde's recipe for `name` on the quickstart network: DSM, no preconditioning. The EMA
  stays the quickstart's (EDM's half-life with ramp-up, as every row): score_sde's constant
  0.999 / 0.9999 from the initialisation leaves 61% / 95% of the random init in the EMA after
  500 steps (measured: FD 89–197 at 60 s)."""
  config = _digits_config(plan)
  ema = (config.model.ema_halflife_kimg, config.model.ema_rampup_ratio)
  {'vesde': presets.ve, 'vpsde': presets.vp, 'subvpsde': presets.subvp}[name](config)
  m = config.model
  m.precond, (m.ema_halflife_kimg, m.ema_rampup_ratio) = 'none', ema
  m.embedding_type = 'fourier' if name == 'vesde' else 'positional'
  m.sigma_min, m.sigma_max = 0.01, 12.   # σ_max ≈ the largest digit distance (Song&Ermon20)
  m.num_scales = 1000
  config.sampling.snr = 0.16
  return config


def images_trained(config, batch):
  """The images a train call's `batch` [n, images of the step, ...] trains on: Patch Diffusion's
  d batches of a step, STF's batch_size of its reference batch (the element holds all of it)."""
  t, shape = config.training, jax.tree.leaves(batch)[0].shape
  return shape[0] * shape[1] * t.batch_size // (t.stf_ref_batch or t.batch_size)


def train_for(config, plan):
  """(run, state, optimizer steps, images/s): train from scratch for `plan.steps` steps, or for
  `plan.seconds` of wall time after the first (compiling) step; each step waits for the one before
  it, so that the steps queued by JAX's asynchronous dispatch cannot run past the budget. With
  Patch Diffusion the first step of each patch size compiles too: its time is not counted."""
  validate.check_run(config, 'train')
  run, n = run_lib.build(config), config.training.n_jitted_steps
  fns = run_lib.make_train_fns(run)
  state = run_lib.init_state(run)
  batches = run_lib.train_batches(datasets.get_dataset(config)[0], run, 0)
  key = streams.run_key(config)
  schedule = losses.patch_schedule(config) if config.training.patch_real_p < 1 else None
  compiled = {schedule(0, n) if schedule else None}
  state, _ = fns.train_step(state, next(batches), key, 0)
  jax.block_until_ready(state)
  steps, start, excluded, images, metrics = n, time.time(), 0., 0, None
  while (steps < plan.steps if plan.steps else time.time() - start - excluded < plan.seconds):
    previous, sizes, batch = metrics, schedule(steps, n) if schedule else None, next(batches)
    if sizes not in compiled:                  # a new patch size: time its compilation apart
      jax.block_until_ready(state)
      began = time.time()
      state, metrics = fns.train_step(state, batch, key, steps)
      jax.block_until_ready(state)
      compiled.add(sizes)
      excluded += time.time() - began
    else:
      state, metrics = fns.train_step(state, batch, key, steps)
      images += images_trained(config, batch)
    steps += n
    jax.block_until_ready(previous)   # at most two steps in flight: JAX dispatches ahead
  jax.block_until_ready(state)
  rate = images / (time.time() - start - excluded)
  print(f'  trained {steps} steps (seed {plan.seed}), {rate:.0f} images/s', flush=True)
  if not np.isfinite(np.asarray(metrics['loss'])).all():
    raise FloatingPointError(f'{config.training.sde}/{config.training.loss}: the loss diverged')
  return run, state, steps, rate


def sample(run, params, plan, config=None):
  """N_SAMPLES × plan.subsets images in [0, 1] from the run's sampling keys 0.. with
  `config.sampling` (default: the run's)."""
  return sample_nfe(run, params, plan, config)[0]


def sample_nfe(run, params, plan, config=None):
  """(`sample`'s images, the sampler's mean score evaluations per image)."""
  config, n = config or run.config, N_SAMPLES * plan.subsets
  fn = sampling.get_sampling_fn(config, run.sde, run.model, run.sample_shape,
                                datasets.get_data_inverse_scaler(config), run.eps)
  keys = streams.sample_keys(streams.run_key(config, streams.SAMPLE_STREAM), n,
                             sharding=run.sharded())
  images, nfe = fn(keys, params)
  return np.clip(np.asarray(run_lib.gather(images)), 0., 1.), float(np.mean(nfe))


def scores(reference, images):
  """The digits metric at n = N_SAMPLES (FD: the mean over the disjoint subsets of n, each
  subset's FD in 'fd_subsets'; KID ± its std over random subsets)."""
  outputs = reference.outputs(images)
  m = reference.metrics(outputs)
  subsets = digits_metric.fd_of_subsets(outputs['features'], reference.train_stats, N_SAMPLES)
  return {'fd': float(np.mean(subsets)), 'fd_subsets': subsets,
          'fd_real': m['digits_fd_equal_n_real_test'],
          'kid': m['digits_kid'], 'kid_std': m['digits_kid_std'],
          'confident': m['digits_confident_share'], 'copies': m['digits_copy_share']}


def bits_per_dim(run, params, n=BPD_N):
  """Mean bits/dim of the first `n` test digits (whole eval batches), uniformly dequantized
  (Song+21 App. D.2, t from eval.likelihood_eps, the config's ODE tolerances)."""
  fns = eval_lib.make_eval_fns(run)
  config = run.config
  test = datasets.get_dataset(config, uniform_dequantization=True, evaluation=True)[1]
  values, start = [], time.time()
  for b, x in enumerate(run_lib.global_batches(test, run, axis=0)):
    if b * x.shape[0] >= n:
      break
    keys = streams.sample_keys(streams.run_key(config, streams.BPD_STREAM), x.shape[0],
                               start=b * x.shape[0], sharding=run.sharded())
    bpd, _, nfe = fns.bpd(keys, x, params)
    values.append(np.asarray(run_lib.gather(bpd)))
    print(f'  bits/dim batch {b}: {values[-1].mean():.3f}, {int(np.max(nfe))} NFE, '
          f'{time.time() - start:.0f} s', flush=True)
  return float(np.mean(np.concatenate(values)))


def _with_sampling(config, **fields):
  config = config.copy_and_resolve_references()
  config.sampling.update(fields)
  return config


def stochastic_sampling(config):
  """Karras+22 §4's stochastic sampler for the config's SDE: Table 5's settings at
  STOCHASTIC_STEPS, the σ thresholds halved where the data are in [0, 1] (σ is in data units)."""
  fields = dict(STOCHASTIC['vesde' if config.training.sde == 'vesde' else 'vpsde'])
  scale = 1. if config.data.centered else 0.5
  fields['S_min'], fields['S_max'] = fields['S_min'] * scale, fields['S_max'] * scale
  return _with_sampling(config, method='edm', steps=STOCHASTIC_STEPS, **fields)


FIG2 = {'vesde': {'disc': 've', 'schedule': 've', 'scaling': 'none', 'sigma_min': 0.01},
        'vpsde': {'disc': 'vp', 'schedule': 'vp', 'scaling': 'vp'}}   # Karras+22 Table 1
EULER, HEUN, ROOT_T = 'Euler 35, original ODE', 'EDM Heun 18', 'EDM Heun 18, σ(t) = √t'


def sde_samplers(name, config):
  """(label, config, labels of the rows its FD is compared with) of the sde part's samplers.
  Karras+22 Fig. 2 at 35 NFE for VE and VP: Euler on the original ODE (Table 1's time steps,
  σ(t), s(t)); Heun on EDM's time steps (the SDE's own σ(t), s(t)); then σ(t) = t, s = 1."""
  edm = _with_sampling(config, method='edm')
  out = [('PC', config, ()), ('ODE', _with_sampling(config, method='ode'), ('PC',)),
         (HEUN, edm, ('PC', EULER) if name in FIG2 else ('PC',)),
         (f'EDM stochastic {STOCHASTIC_STEPS}', stochastic_sampling(config), ('PC',))]
  if name in FIG2:
    out += [(EULER, _with_sampling(edm, solver='euler', steps=35, **FIG2[name]), ()),
            (f'{HEUN}, σ(t) = t', _with_sampling(edm, schedule='linear', scaling='none'),
             (HEUN, ROOT_T) if name == 'vesde' else (HEUN,))]
  if name == 'vesde':   # Fig. 2b's middle point: Heun on EDM's time steps with VE's σ(t) = √t
    out.append((ROOT_T, _with_sampling(edm, schedule='ve', scaling='none'), (EULER,)))
  return out


def sde_rows(reference, plan, names=('vesde', 'vpsde', 'subvpsde')):
  """Per SDE: PC, probability-flow ODE and the EDM samplers (`sde_samplers`), bits/dim; their FD
  against PC's (Karras+22 §3: their sampler, 35 NFE, on score_sde's own models; §4: their
  stochastic sampler, 511 NFE) and Fig. 2's steps, sub-VP's bits/dim against VP's (Song+21)."""
  rows, figures = [], {}
  for name in names:
    config = _sde_config(name, plan)
    run, state, steps, rate = train_for(config, plan)
    params = state.ema_params
    samplers = sde_samplers(name, config)
    images = {label: sample(run, params, plan, c) for label, c, _ in samplers}
    bpd = bits_per_dim(run, params)
    for label, _, bases in samplers:
      vs = [(f'score-SDE {name} ({b})', 'fd') for b in bases]
      if name == 'subvpsde':
        vs.append((f'score-SDE vpsde ({label})', 'bpd'))
      rows.append({'row': f'score-SDE {name} ({label})', 'steps': steps, 'images_per_s': rate,
                   'bpd': bpd, 'vs': vs, **scores(reference, images[label])})
    figures[f'{name} PC'] = images['PC']
  return rows, figures


def _eps_norms_of_training(run, params, sigmas):
  """Mean ‖ε̂‖ over the test digits noised to each σ: ε̂ = (x − D(x; σ)) / σ, x = y + σ n."""
  config = run.config
  test = datasets.get_data_scaler(config)(datasets.digits_split()['test_images'])
  denoiser = precond.get_denoiser(config, mutils.get_model_fn(run.model, params, train=False))
  key = jax.random.key(0)
  out = []
  for i, sigma in enumerate(sigmas):
    x = test + sigma * jax.random.normal(jax.random.fold_in(key, i), test.shape)
    eps = (x - denoiser(x, jnp.full((len(x),), sigma))) / sigma
    out.append(float(jnp.mean(jnp.linalg.norm(eps.reshape(len(x), -1), axis=1))))
  return np.array(out)


def _eps_norms_of_sampling(run, params, solver, steps):
  """Mean ‖ε̂‖ per step of the EDM sampler (b = 1) and its noise levels σ_i."""
  config, s = run.config, run.config.sampling
  score_fn = precond.get_score_fn(config, run.sde, mutils.get_model_fn(run.model, params,
                                                                         train=False))
  keys = streams.sample_keys(streams.run_key(config, streams.SAMPLE_STREAM), N_SAMPLES)
  sigma_min, sigma_max = sampling.sigma_range(config, run.sde, run.eps)
  _, _, norms = sampling.edm_sample(keys, score_fn, run.sde, run.sample_shape, steps=steps,
                                    sigma_min=sigma_min, sigma_max=sigma_max, rho=s.rho,
                                    solver=solver, record_eps_norm=True)
  sigmas = schedules.edm_sigmas(steps, sigma_min, sigma_max, rho=s.rho)
  return np.asarray(norms).mean(axis=1), np.asarray(sigmas)


def edm_es_rows(reference, plan, bs=ES_B, solvers=(('euler', 13), ('heun', 9))):
  """EDM trained once; Euler 13 / Heun 9 with ε̂ / b (Ning+24), each b's FD against b = 1's
  (the same latents); the ‖ε̂‖ curves at b = 1."""
  config = _digits_config(plan)
  run, state, steps, rate = train_for(config, plan)
  params, rows, curves = state.ema_params, [], {}
  for solver, n in solvers:
    for b in bs:
      images = sample(run, params, plan,
                      _with_sampling(config, solver=solver, steps=n, eps_scaler=b))
      vs = [(f'EDM {solver} {n} steps, b = 1', 'fd')] if b != 1 else []
      rows.append({'row': f'EDM{"-ES" if b != 1 else ""} {solver} {n} steps, b = {b:g}',
                   'steps': steps, 'images_per_s': rate, 'b': b, 'vs': vs,
                   **scores(reference, images)})
    sample_norms, sigmas = _eps_norms_of_sampling(run, params, solver, n)
    curves[f'{solver} {n}'] = (sigmas, sample_norms, _eps_norms_of_training(run, params, sigmas))
  figures = {'EDM heun 9': sample(run, params, plan,
                                  _with_sampling(config, solver='heun', steps=9))}
  return rows, figures, curves


def stf_target_variance(sigma=1., batch=256, seed=0):
  """E‖target − E[y | x̃]‖² per pixel at σ for the plain target y and STF's with a reference batch
  of STF_REF train images (the batch among them); E[y | x̃] is STF's target with the whole train
  split as reference (the ideal denoiser of the empirical distribution, Karras+22 Eq. 3)."""
  train = jnp.asarray(datasets.digits_split()['train_images'] * 2. - 1.)
  rng = np.random.default_rng(seed)
  noise = sde_lib.GaussianNoise()
  plain, stf = [], []
  for key in jax.random.split(jax.random.key(seed), 4):
    ref = train[rng.choice(len(train), STF_REF, replace=False)]
    y = ref[:batch]
    x = y + sigma * jax.random.normal(key, y.shape)
    sig = jnp.full((batch,), sigma)
    ideal = losses.stf_target(x, sig, train, noise)
    plain.append(float(jnp.mean((y - ideal) ** 2)))
    stf.append(float(jnp.mean((losses.stf_target(x, sig, ref, noise) - ideal) ** 2)))
  return float(np.mean(plain)), float(np.mean(stf))


def stf_rows(reference, plan):
  """STF's target variance (measured) and its model's FD against EDM's (the pfgmpp part's D = ∞
  row, when run)."""
  plain_var, stf_var = stf_target_variance()
  config = _digits_config(plan, **{'training.stf_ref_batch': STF_REF})
  run, state, steps, rate = train_for(config, plan)
  images = sample(run, state.ema_params, plan)
  row = {'row': f'STF (reference batch {STF_REF})', 'steps': steps, 'images_per_s': rate,
         'vs': [(EDM_ROW, 'fd')],
         'target_var': stf_var, 'target_var_plain': plain_var, **scores(reference, images)}
  return [row], {'STF': images}


def pfgmpp_rows(reference, plan, dims=(64, 128, 2048, float('inf')), probes=PFGMPP_PROBES):
  """PFGM++ at each D, its FD against D = ∞'s: EDM (Gaussian noise, the kernel's limit, Xu+23),
  the same sampler (Heun, 18 steps). Then each of Xu+23 §6's robustness probes on the same model
  and latents: the FD's rise over the unprobed row ('fd_rise'), and how that rise differs from
  EDM's under the same probe (the claim: smaller D, smaller rise)."""
  rows, figures = [], {}
  for D in dims:
    config = _digits_config(plan, **{'training.pfgmpp_D': float(D)})
    run, state, steps, rate = train_for(config, plan)
    images = sample(run, state.ema_params, plan)
    name = f'PFGM++ D = {D:g}' if np.isfinite(D) else EDM_ROW
    base = {'row': name, 'steps': steps, 'images_per_s': rate,
            'vs': [(EDM_ROW, 'fd')] if np.isfinite(D) else [], **scores(reference, images)}
    rows.append(base)
    for label, fields in probes:
      probed = scores(reference, sample(run, state.ema_params, plan,
                                        _with_sampling(config, **fields)))
      vs = [(name, 'fd')] + ([(f'{EDM_ROW}, {label}', 'fd_rise')] if np.isfinite(D) else [])
      rows.append({'row': f'{name}, {label}', 'steps': steps, 'images_per_s': rate, 'vs': vs,
                   'probe': label, 'D': D, 'fd_rise': probed['fd'] - base['fd'], **probed})
    figures[name] = images
  return rows, figures


def patch_rows(reference, plan, real_ps=(0.5, 1.0), size=32):
  """Patch Diffusion at each real_p, its FD against real_p = 1's (full-size training)."""
  rows, figures = [], {}
  for p in real_ps:
    config = _digits_config(plan, **{'data.image_size': size, 'model.patch_coords': True,
                                     'training.patch_real_p': p})
    run, state, steps, rate = train_for(config, plan)
    images = sample(run, state.ema_params, plan)
    vs = [(f'Patch Diffusion {size} px, real_p = 1', 'fd')] if p != 1 else []
    rows.append({'row': f'Patch Diffusion {size} px, real_p = {p:g}', 'steps': steps,
                 'images_per_s': rate, 'vs': vs, **scores(reference, images)})
    figures[f'patch p={p:g}'] = images
  return rows, figures


def _cpu():
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or 'unknown CPU'


NUMERIC = ('steps', 'images_per_s', 'fd', 'fd_real', 'kid', 'kid_std', 'confident', 'copies',
           'bpd', 'target_var', 'target_var_plain', 'fd_rise', 'nfe')


def _mean_se(values):
  """(mean, standard error of the mean: std with ddof 1 / √n; None for one value)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None)


def _repeats(reps, key):
  """A row's repeated measurements of `key`: one per training seed; with one seed, FD's of the
  disjoint subsets (sampling noise only)."""
  return reps[0]['fd_subsets'] if len(reps) == 1 and key == 'fd' else [r[key] for r in reps]


def combine(per_seed):
  """One row per name over the training seeds (`per_seed`: a list of rows per seed, the same names
  in each): the mean of every number; 'fd_se', 'bpd_se': the standard error over the seeds (one
  seed: FD's over its subsets); 'deltas': [(baseline row, key, mean, standard error)] of the
  row's value minus each 'vs' row's, paired by seed (one seed: by subset, the same latents)."""
  by_name = {}
  for rows in per_seed:
    for r in rows:
      by_name.setdefault(r['row'], []).append(r)
  out = []
  for name, reps in by_name.items():
    row = {k: reps[0][k] for k in ('row', 'b', 'probe', 'D') if k in reps[0]}
    row.update({k: float(np.mean([r[k] for r in reps])) for k in NUMERIC if k in reps[0]})
    row.update(seeds=len(reps), samples=N_SAMPLES * len(reps[0]['fd_subsets']))
    row.update({f'{k}_se': _mean_se(_repeats(reps, k))[1] for k in ('fd', 'bpd') if k in reps[0]})
    row['deltas'] = [(base, key, *_mean_se(np.subtract(_repeats(reps, key),
                                                       _repeats(by_name[base], key))))
                     for base, key in reps[0].get('vs', []) if base in by_name]
    out.append(row)
  return out


LABELS = {'fd': 'FD', 'bpd': 'bits/dim', 'fd_rise': 'FD rise'}


def _pm(mean, se, digits=2, sign=''):
  return f'{mean:{sign}.{digits}f}' + ('' if se is None else f' ± {se:.{digits}f}')


def _row_line(r):
  other = []
  if 'bpd' in r:
    other.append(f'{_pm(r["bpd"], r["bpd_se"], 3)} bits/dim')
  if 'target_var' in r:
    other.append(f'target var {r["target_var"]:.2e} (plain {r["target_var_plain"]:.2e})')
  if 'nfe' in r:
    other.append(f'{r["nfe"]:.0f} NFE')
  deltas = '; '.join(f'{LABELS[k]} {_pm(d, se, 3 if k == "bpd" else 2, "+")} vs {base}'
                     for base, k, d, se in r['deltas'])
  return (f'| {r["row"]} | {r["steps"]:.0f} | {r["images_per_s"]:.0f} | {r["samples"]} | '
          f'{_pm(r["fd"], r["fd_se"])} | {deltas or "–"} | {r["kid"]:.3g} ± {r["kid_std"]:.2g} | '
          f'{r["confident"]:.2f} | {r["copies"]:.3f} | {", ".join(other) or "–"} |')


def markdown(rows, real, plan, seeds):
  """The table (`combine`'s rows): one line per row, the real test split's scores on top."""
  head = ('| row | steps | images/s | samples | FD₂₉₇ | Δ (paired) | KID | confident | copies | '
          'other |\n|---|---|---|---|---|---|---|---|---|---|')
  budget = f'{plan.steps} steps' if plan.steps else f'{plan.seconds:g} s'
  spread = (f'± over the {seeds} training seeds {plan.seed}–{plan.seed + seeds - 1} (each '
            "seed's FD the mean over its subsets)" if seeds > 1 else
            f'± over the subsets of one model (seed {plan.seed}; sampling noise only)')
  lines = [f'Digits, {budget} of training per row (compilation excluded), {seeds} training '
           f'seed(s); {_cpu()}, {datetime.date.today().isoformat()}. FD₂₉₇: the digits FD at '
           f'n = {N_SAMPLES} against the train split, the mean over the disjoint '
           f'{N_SAMPLES}-subsets of the samples (the real test split: {real["fd"]:.2f}); ± the '
           f'standard error of the mean, {spread}. Δ: the row minus the named row, paired the '
           f'same way. KID ± std over subsets (real: {real["kid"]:.3g} ± {real["kid_std"]:.2g}).',
           '', head,
           f'| real test split | – | – | {digits_metric.EQUAL_N} | {real["fd"]:.2f} | – | '
           f'{real["kid"]:.3g} ± {real["kid_std"]:.2g} | {real["confident"]:.2f} | '
           f'{real["copies"]:.3f} | – |']
  lines += [_row_line(r) for r in rows]
  return '\n'.join(lines) + '\n'


PARTS = {'sde': sde_rows, 'edm_es': edm_es_rows, 'stf': stf_rows, 'pfgmpp': pfgmpp_rows,
         'patch': patch_rows}


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--budget_s', type=float, default=120.)
  parser.add_argument('--budget_steps', type=int, default=0,
                      help='train every row for this many optimizer steps instead of --budget_s')
  parser.add_argument('--seeds', type=int, default=1,
                      help='training seeds per row (config.seed 42, 43, ...): ± over seeds')
  parser.add_argument('--subsets', type=int, default=1,
                      help=f'samples per row: this many disjoint {N_SAMPLES}-subsets')
  parser.add_argument('--sde_subsets', type=int, default=1,
                      help="the sde part's subsets (its 1000-step PC sampler: ~90 s per subset)")
  parser.add_argument('--sde_names', default='vesde,vpsde,subvpsde', help="the sde part's SDEs")
  parser.add_argument('--out', default=os.path.join('bench', 'results', 'digits_table'))
  parser.add_argument('--smoke', action='store_true',
                      help='two rows of a small network, a few seconds each, 99 samples (CI)')
  parser.add_argument('--parts', default=','.join(PARTS),
                      help=f'comma-separated subset of {",".join(PARTS)}')
  parser.add_argument('--pfgmpp_D', default='64,128,2048,inf',
                      help="the pfgmpp part's D values (inf: EDM)")
  parser.add_argument('--pfgmpp_probes', action=argparse.BooleanOptionalAction, default=True,
                      help="the pfgmpp part's robustness probes (PFGMPP_PROBES) on each model")
  parser.add_argument('--patch_px', type=int, default=32,
                      help="the patch part's image size (digits upsampled; a multiple of 8)")
  return parser.parse_args(argv)


def main(argv=None):
  args = _parse(argv)
  global N_SAMPLES, MODEL  # pylint: disable=global-statement
  N_SAMPLES, MODEL = (99, SMOKE_MODEL) if args.smoke else (N_SAMPLES, MODEL)
  utils.configure_cpu()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  reference = digits_metric.DigitsReference(digits_metric.train_digits_classifier())
  real = scores(reference, datasets.digits_split()['test_images'])
  plan = Plan(args.budget_s, args.budget_steps, args.subsets)
  if args.smoke:
    parts = [('edm_es', functools.partial(edm_es_rows, bs=(1.0, 1.01), solvers=(('heun', 9),))),
             ('pfgmpp', functools.partial(pfgmpp_rows, dims=(128,), probes=PFGMPP_PROBES[:1]))]
  else:
    dims = {'pfgmpp': {'dims': tuple(float(d) for d in args.pfgmpp_D.split(',')),
                       'probes': PFGMPP_PROBES if args.pfgmpp_probes else ()},
            'patch': {'size': args.patch_px}, 'sde': {'names': tuple(args.sde_names.split(','))}}
    parts = [(name, functools.partial(PARTS[name], **dims.get(name, {})))
             for name in args.parts.split(',')]
  per_seed, figures, curves = [[] for _ in range(args.seeds)], {}, {}
  for p, (name, part) in enumerate(parts):
    began = time.time()
    for i in range(args.seeds):        # the figures: the first seed's
      subsets = args.sde_subsets if name == 'sde' else args.subsets
      result = part(reference, dataclasses.replace(plan, seed=plan.seed + i, subsets=subsets))
      per_seed_s = (time.time() - began) / (i + 1)
      print(f'part {name} ({p + 1} of {len(parts)}), seed {i + 1} of {args.seeds} done: '
            f'{per_seed_s:.0f} s per seed, the part ends in '
            f'~{per_seed_s * (args.seeds - i - 1):.0f} s', flush=True)
      per_seed[i] += result[0]
      if i == 0:
        figures.update(result[1])
        curves.update(result[2] if len(result) > 2 else {})
    rows = combine(per_seed)
    text = markdown(rows, real, plan, args.seeds)
    print(text, flush=True)
    with open(f'{args.out}.md', 'w', encoding='utf-8') as f:    # after every part
      f.write(text)
    digits_plots.plots(figures, curves, rows, args.out)
  return rows


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
