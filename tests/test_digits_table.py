"""bench/digits_table.py --smoke: a small network trained for two steps in two rows (EDM with and
without Epsilon Scaling, PFGM++ D = 128), two seeds, sampled, scored, and the table and both
figures written (marked slow: ~70 s of compilations on 2 cores; SCOREFLOW_SLOW_TESTS=1 runs it);
the table's means, standard errors and paired differences on worked numbers."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'bench'))
import digits_table  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.slow
def test_smoke_rows_write_the_table_and_figures(tmp_path):
  out = str(tmp_path / 'table')
  rows = digits_table.main(['--smoke', '--budget_steps', '2', '--seeds', '2', '--subsets', '2',
                            '--out', out])
  assert [r['row'] for r in rows] == ['EDM heun 9 steps, b = 1', 'EDM-ES heun 9 steps, b = 1.01',
                                      'PFGM++ D = 128', 'PFGM++ D = 128, α = 0.1']
  text = open(f'{out}.md', encoding='utf-8').read()
  assert text.count('\n| ') == 6 and 'real test split' in text     # header + real + 4 rows
  for r in rows:
    assert r['fd'] > 0 and r['fd_se'] > 0 and r['images_per_s'] > 0
    assert r['steps'] == 2 and r['seeds'] == 2 and r['samples'] == 2 * digits_table.N_SAMPLES
  (base, key, delta, se), = rows[1]['deltas']
  assert (base, key) == (rows[0]['row'], 'fd') and se > 0
  assert delta == pytest.approx(rows[1]['fd'] - rows[0]['fd'])
  (base, key, rise, _), = rows[3]['deltas']          # the probe's rise (no EDM row to compare)
  assert (base, key) == ('PFGM++ D = 128', 'fd') and rise == pytest.approx(rows[3]['fd_rise'])
  assert rise == pytest.approx(rows[3]['fd'] - rows[2]['fd'])
  for suffix in ('', '_es', '_robust'):
    assert os.path.getsize(f'{out}{suffix}.png') > 1000


def test_images_trained_per_call():
  """What images/s counts: a call's steps × the images each trains on, not STF's reference batch
  (which every element of its pipeline holds), and Patch Diffusion's joined batches."""
  config = digits_table._digits_config(digits_table.Plan())   # pylint: disable=protected-access
  config.training.batch_size = 64
  batch = lambda n, b: {'image': np.zeros((n, b, 8, 8, 1)), 'label': np.zeros((n, b))}
  assert digits_table.images_trained(config, batch(1, 64)) == 64
  assert digits_table.images_trained(config, batch(5, 64)) == 320
  assert digits_table.images_trained(config, batch(1, 4 * 64)) == 256    # 4 batches of patches
  config.training.stf_ref_batch = 512
  assert digits_table.images_trained(config, batch(1, 512)) == 64
  assert digits_table.images_trained(config, batch(2, 512)) == 128


def _row(name, subsets, **fields):
  return {'row': name, 'fd': sum(subsets) / len(subsets), 'fd_subsets': subsets, **fields}


def test_combine_over_seeds_and_over_subsets():
  """Means, standard errors (ddof 1) and paired differences, against numbers worked by hand."""
  vs = [('b = 1', 'fd')]
  seed_a = [_row('b = 1', [10., 12.], bpd=5.0), _row('b = 1.02', [9., 10.], vs=vs, bpd=5.2)]
  seed_b = [_row('b = 1', [14., 14.], bpd=5.4), _row('b = 1.02', [12., 13.], vs=vs, bpd=5.4)]
  base, es = digits_table.combine([seed_a, seed_b])
  assert base['fd'] == 12.5 and base['fd_se'] == pytest.approx(1.5)   # seeds' FDs 11, 14
  assert base['bpd'] == pytest.approx(5.2) and base['bpd_se'] == pytest.approx(0.2)
  assert base['deltas'] == [] and es['seeds'] == 2
  assert es['deltas'] == [('b = 1', 'fd', -1.5, 0.)]                 # -1.5 in both seeds
  base, es = digits_table.combine([seed_a])                          # one seed: the subsets
  assert base['fd'] == 11. and base['fd_se'] == pytest.approx(1.)    # subsets 10, 12
  assert base['bpd_se'] is None
  (_, _, delta, se), = es['deltas']                                  # subsets -1, -2
  assert delta == -1.5 and se == pytest.approx(0.5)


def test_stf_reference_batch_lowers_the_target_variance():
  """The STF measurement itself (Xu+23b's claim, on digits at σ = 1): closer to the ideal
  denoiser than the plain target y, and both positive."""
  plain, stf = digits_table.stf_target_variance(batch=64)
  assert 0 < stf < plain


def test_stochastic_sampling_takes_table_5_in_the_data_units():
  """Karras+22 Table 5's settings per SDE, σ thresholds in [-1, 1] units: halved for VE's [0, 1]
  data, as they are for VP's centered data; the rest of the config untouched."""
  plan = digits_table.Plan()
  sde_config = digits_table._sde_config   # pylint: disable=protected-access
  ve = digits_table.stochastic_sampling(sde_config('vesde', plan))
  assert (ve.sampling.method, ve.sampling.steps, ve.sampling.S_churn) == ('edm', 256, 80.)
  assert (ve.sampling.S_min, ve.sampling.S_max, ve.sampling.S_noise) == (0.025, 0.5, 1.007)
  for name in ('vpsde', 'subvpsde'):
    config = sde_config(name, plan)
    s = digits_table.stochastic_sampling(config).sampling
    assert (s.S_churn, s.S_min, s.S_max, s.S_noise) == (30., 0.01, 1., 1.007)
    assert config.sampling.method == 'pc' and config.sampling.S_churn == 0.
