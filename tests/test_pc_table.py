"""bench/pc_table.py (Song+21 Table 1 and Fig. 3 on digits): its samplers are the paper's columns —
each a config the checker accepts, at the score evaluations per sample the table compares (P2000,
C2000 and PC1000 equal) — the ODE rows its tolerances, and its smoke run writes the table and
figures with each row's NFE (slow: ~60 s on 2 cores)."""
import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'bench'))
# pylint: disable=wrong-import-position
import digits_table  # noqa: E402
import pc_table  # noqa: E402
from configs import validate  # noqa: E402
import sampling  # noqa: E402
import sde_lib  # noqa: E402

NFE = {'P1000': 1000, 'P2000': 2000, 'PC1000': 2000, 'C2000': 2000}


@pytest.mark.parametrize('sde', ['vesde', 'vpsde'])
def test_table_1_columns_at_their_computation(sde):
  """Ten rows per SDE (3 predictors × P1000 / P2000 / PC1000, and C2000); pc_sample run with each
  row's config counts the NFE of Table 1's column (a zero score: only the count is checked), and
  every claim's comparison names a row of the table."""
  base = digits_table._sde_config(sde, digits_table.Plan())  # pylint: disable=protected-access
  table = pc_table.samplers(sde)
  labels = [label for label, _, _ in table]
  assert len(labels) == len(set(labels)) == 10 + len(pc_table.TOLERANCES)
  for label, fields, vs in table[:10]:
    config = digits_table.with_fields(base, fields)
    validate.check(config, 'sample', 1)
    s = config.sampling
    _, nfe = sampling.pc_sample(jax.random.split(jax.random.key(0), 2),
                                lambda x, t: jnp.zeros_like(x), sde_lib.get_sde(config)[0],
                                (1, 1, 1), s.predictor, s.corrector, s.snr, s.n_steps_each,
                                s.probability_flow)
    assert nfe == NFE[label.split()[-1]], label
    assert s.probability_flow == ('probability flow' in label)
    assert all(base_row in labels for base_row, _ in vs)
    if label.endswith('PC1000'):
      assert [b for b, _ in vs][:2] == [label.replace('PC1000', 'P2000'),
                                        f'{pc_table.SDES[sde]} C2000']
  for (label, fields, vs), tol in zip(table[10:], pc_table.TOLERANCES):   # Fig. 3
    config = digits_table.with_fields(base, fields)
    validate.check(config, 'sample', 1)
    s = config.sampling
    assert (s.method, s.ode_rtol, s.ode_atol) == ('ode', tol, tol)
    assert vs == ([] if tol == 1e-5 else [(f'{pc_table.SDES[sde]} ODE tol 1e-05', 'fd')])


@pytest.mark.slow
def test_smoke_writes_the_table_and_figures(tmp_path):
  out = str(tmp_path / 'pc')
  rows = pc_table.main(['--smoke', '--seeds', '2', '--budget_steps', '2', '--sdes', 'vesde',
                        '--out', out])
  assert [r['row'] for r in rows] == ['VE reverse diffusion PC1000', 'VE C2000',
                                      'VE ODE tol 0.001', 'VE ODE tol 0.1']
  (base, key, delta, se), = rows[0]['deltas']
  assert (base, key) == ('VE C2000', 'fd') and se > 0
  assert delta == pytest.approx(rows[0]['fd'] - rows[1]['fd'])
  assert (rows[0]['nfe'], rows[1]['nfe']) == (100, 50)        # N = 50 in the smoke run
  assert rows[3]['deltas'][0][0] == 'VE ODE tol 0.001' and 0 < rows[3]['nfe'] <= rows[2]['nfe']
  assert 'VE C2000' in open(f'{out}.md', encoding='utf-8').read()
  assert os.path.getsize(f'{out}_vesde.png') > 1000
