"""House rules that can be checked mechanically: module and function length, no config.get defaults
in library code, a thin main.py."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in ROOT.rglob('*.py')
                 if not any(part.startswith('.') or part in ('venv', 'tests') for part in
                            p.relative_to(ROOT).parts))


def test_modules_have_at_most_600_lines():
  long = [f'{p.relative_to(ROOT)}: {n}' for p in SOURCES
          if (n := len(p.read_text().splitlines())) > 600]
  assert not long, long


def test_functions_have_at_most_80_lines():
  """A model's `__call__` may take 120 (habit 11)."""
  long = []
  for path in SOURCES:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        limit = 120 if node.name == '__call__' else 80
        if node.end_lineno - node.lineno + 1 > limit:
          long.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.name} '
                      f'{node.end_lineno - node.lineno + 1}')
  assert not long, long


def test_no_config_get_with_defaults_in_library_code():
  hits = [f'{p.relative_to(ROOT)}' for p in SOURCES
          if 'configs' not in p.parts and re.search(r'config\w*\.get\(', p.read_text())]
  assert not hits, hits


def test_main_is_thin():
  assert len((ROOT / 'main.py').read_text().splitlines()) <= 80
