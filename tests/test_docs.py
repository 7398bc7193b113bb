"""The README's generated parts match the code they describe."""
import os

from tools import config_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_config_reference_lists_every_field_as_default_lib_does():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  assert config_reference.readme_with_table(text) == text, (
      'README config table is stale: run python tools/config_reference.py')
  assert '| `model.nf` | `128` | base channel count |' in text
