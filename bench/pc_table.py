"""Song+21 Table 1 on digits: predictor-only, corrector-only and predictor–corrector samplers.

  python bench/pc_table.py [--sdes vesde,vpsde] [--seeds 3] [--budget_steps 400]
                           [--predictors 'ancestral sampling,reverse diffusion,probability flow']
                           [--tolerances 1e-5,1e-4,1e-3,1e-2,1e-1]
                           [--out bench/results/digits_table_pc] [--smoke]

The paper's claim (Song+21 §4.2, Table 1, CIFAR-10 FID): at equal computation a PC sampler (1000
predictor and 1000 corrector steps, PC1000) beats the predictor alone at 2000 steps (P2000) and the
Langevin corrector alone at 2000 steps (C2000), for every predictor — ancestral sampling (Eqs. 47,
48), reverse diffusion (Eq. 46) and the probability-flow ODE (reverse diffusion's discretization
of Eq. 13, as score_sde's ReverseDiffusionPredictor(probability_flow=True)); and reverse diffusion
is at least as good as ancestral sampling. Here: per SDE (VE: SMLD's, VP: DDPM's) and training
seed, score_sde's recipe on the quickstart network (bench/digits_table.py's SDE rows: DSM,
continuous time, Langevin snr 0.16 as score_sde's CIFAR-10 configs; not tuned) trains for
--budget_steps, then the ten samplers of Table 1 draw 297 images each from the same keys, and
the probability-flow ODE at Fig. 3's tolerances (its claim: 10⁻⁵ → 10⁻¹ cuts the NFE by > 90%
at about the same quality); FD₂₉₇ by the digits metric, NFE per image, each claim a difference
paired by seed (bench/digits_table.combine).
Runtime, 2-core AMD EPYC Zen 5, alone: ~13 min per SDE and seed for Table 1's ten samplers
(1000–2000 NFE each), 2–6 min for Fig. 3's five ODE rows. Results: bench/results/digits_table_pc.md.
"""
import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import datasets
import digits_metric
import digits_plots
import digits_table
import hugepages
import run_lib
import utils

SDES = {'vesde': 'VE', 'vpsde': 'VP'}
PREDICTORS = {'ancestral sampling': {'predictor': 'ancestral_sampling'},
              'reverse diffusion': {'predictor': 'reverse_diffusion'},
              'probability flow': {'predictor': 'reverse_diffusion', 'probability_flow': True}}
# Table 1's columns: (number of noise levels N, corrector); C2000 has no predictor.
COLUMNS = {'P1000': (1000, 'none'), 'P2000': (2000, 'none'), 'PC1000': (1000, 'langevin')}
# Fig. 3: the probability-flow ODE (RK45, adaptive) at rtol = atol = each of these.
TOLERANCES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def samplers(sde, predictors=PREDICTORS, columns=COLUMNS, tolerances=TOLERANCES):
  """(row, {'section.field': value}, [(row, 'fd') it is compared with]) of Table 1 for `sde`,
  then Fig. 3's ODE tolerances. Each claim is one comparison: PC1000 vs P2000 and vs C2000
  (equal computation), P2000 vs P1000, ancestral sampling vs reverse diffusion in the same column,
  each tolerance vs the first (Song+21 §4.3: NFE falls by > 90% without harming quality)."""
  name = SDES[sde]
  row = lambda p, c: f'{name} {p} {c}'
  out = []
  for p, fields in predictors.items():
    for c, (n, corrector) in columns.items():
      vs = {'P2000': [row(p, 'P1000')],
            'PC1000': [row(p, 'P2000'), f'{name} C2000']}.get(c, [])
      if p == 'ancestral sampling':
        vs.append(row('reverse diffusion', c))
      out.append((row(p, c), {'model.num_scales': n, 'sampling.corrector': corrector,
                              **{f'sampling.{k}': v for k, v in fields.items()}},
                  [(b, 'fd') for b in vs]))
  if predictors:
    out.append((f'{name} C2000', {'model.num_scales': 2000, 'sampling.predictor': 'none',
                                  'sampling.corrector': 'langevin'}, []))
  for tol in tolerances:
    out.append((f'{name} ODE tol {tol:g}', {'sampling.method': 'ode', 'sampling.ode_rtol': tol,
                                            'sampling.ode_atol': tol},
                [(f'{name} ODE tol {tolerances[0]:g}', 'fd')] if tol != tolerances[0] else []))
  return out


def rows(reference, plan, sde, table):
  """One seed's rows for `sde`: train score_sde's recipe for plan's budget, then every sampler of
  `table` (`samplers`) on the same sampling keys, each with its own N."""
  config = digits_table._sde_config(sde, plan)  # pylint: disable=protected-access
  config.sampling.method, config.sampling.probability_flow = 'pc', False
  run, state, steps, rate = digits_table.train_for(config, plan)
  out, figures = [], {}
  for label, fields, vs in table:
    began, c = time.time(), digits_table.with_fields(config, fields)
    images, nfe = digits_table.sample_nfe(run_lib.build(c), state.ema_params, plan, c)
    out.append({'row': label, 'steps': steps, 'images_per_s': rate, 'vs': vs, 'nfe': nfe,
                **digits_table.scores(reference, images)})
    print(f'  {label}: FD {out[-1]["fd"]:.2f}, {nfe:.0f} NFE ({time.time() - began:.0f} s)',
          flush=True)
    figures[label] = images
  return out, figures


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--sdes', default='vesde,vpsde', help=f'subset of {",".join(SDES)}')
  parser.add_argument('--seeds', type=int, default=3, help='training seeds 42, 43, ...')
  parser.add_argument('--budget_steps', type=int, default=400)
  parser.add_argument('--predictors', default=','.join(PREDICTORS),
                      help=f"subset of {','.join(PREDICTORS)} (with any: C2000; '': no Table 1)")
  parser.add_argument('--tolerances', default=','.join(f'{t:g}' for t in TOLERANCES),
                      help="Fig. 3's probability-flow ODE rows ('' for none)")
  parser.add_argument('--out', default=os.path.join('bench', 'results', 'digits_table_pc'))
  parser.add_argument('--smoke', action='store_true',
                      help='a small network, 99 samples, two samplers at N = 50 (CI)')
  args = parser.parse_args(argv)
  utils.configure_cpu()
  predictors = {p: PREDICTORS[p] for p in args.predictors.split(',') if p}
  tolerances = tuple(float(t) for t in args.tolerances.split(',') if t)
  table = lambda sde: samplers(sde, predictors, COLUMNS, tolerances)
  if args.smoke:
    digits_table.N_SAMPLES, digits_table.MODEL = 99, digits_table.SMOKE_MODEL
    table = lambda sde: [(label, {**f, 'model.num_scales': 50}, vs) for label, f, vs in
                         samplers(sde, {'reverse diffusion': PREDICTORS['reverse diffusion']},
                                  {'PC1000': COLUMNS['PC1000']}, (1e-3, 1e-1))]
  reference = digits_metric.DigitsReference(digits_metric.train_digits_classifier())
  real = digits_table.scores(reference, datasets.digits_split()['test_images'])
  plan = digits_table.Plan(steps=args.budget_steps)
  per_seed, began = [[] for _ in range(args.seeds)], time.time()
  for sde in args.sdes.split(','):
    figures = {}
    for i in range(args.seeds):
      result = rows(reference, dataclasses.replace(plan, seed=plan.seed + i), sde, table(sde))
      per_seed[i] += result[0]
      figures.update(result[1] if i == 0 else {})
      print(f'{sde} seed {i + 1} of {args.seeds} done, {time.time() - began:.0f} s', flush=True)
    combined = digits_table.combine(per_seed)
    text = digits_table.markdown(combined, real, plan, args.seeds)
    print(text, flush=True)
    with open(f'{args.out}.md', 'w', encoding='utf-8') as f:    # after every SDE
      f.write(text)
    digits_plots.plots(figures, {}, combined, f'{args.out}_{sde}')   # samples of seed 42
  return combined


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
