"""bench/digits_table.py --smoke: a small network trained for a second in two rows (EDM with and
without Epsilon Scaling, PFGM++ D = 128), sampled, scored, and the table and both figures written
(marked slow: ~90 s of compilations on 2 cores; SCOREFLOW_SLOW_TESTS=1 runs it)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'bench'))
import digits_table  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.slow
def test_smoke_rows_write_the_table_and_figures(tmp_path):
  out = str(tmp_path / 'table')
  rows = digits_table.main(['--smoke', '--budget_s', '1', '--out', out])
  assert [r['row'] for r in rows] == ['EDM heun 9 steps, b = 1', 'EDM-ES heun 9 steps, b = 1.01',
                                      'PFGM++ D = 128']
  text = open(f'{out}.md', encoding='utf-8').read()
  assert text.count('\n| ') == 5 and 'real test split' in text     # header + real + 3 rows
  for r in rows:
    assert r['fd'] > 0 and r['steps'] >= 1 and r['images_per_s'] > 0
  assert os.path.getsize(f'{out}.png') > 1000 and os.path.getsize(f'{out}_es.png') > 1000


def test_stf_reference_batch_lowers_the_target_variance():
  """The STF measurement itself (Xu+23b's claim, on digits at σ = 1): closer to the ideal
  denoiser than the plain target y, and both positive."""
  plain, stf = digits_table.stf_target_variance(batch=64)
  assert 0 < stf < plain
