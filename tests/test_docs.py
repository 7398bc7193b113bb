"""The documentation lives in the repository and matches the code it describes: README is a front
page (<= 200 lines) pointing into docs/, the generated config reference is current, links resolve,
and no file cites a path outside the repository."""
import pathlib
import re

from tools import config_reference

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ('design.md', 'evaluation.md', 'performance.md', 'config_reference.md', 'tests.md',
        'scale.md')
OUTSIDE = ('/' + 'work/', 'shared' + '/')       # split so that this file does not cite them
_LINK = re.compile(r'\]\(([^)\s]+)\)')


def _repo_files(*suffixes):
  """The repository's files with these suffixes, without hidden folders, virtual environments and
  the stored test fixtures."""
  for path in sorted(ROOT.rglob('*')):
    parts = path.relative_to(ROOT).parts
    if (path.suffix in suffixes and path.is_file()
        and not any(p.startswith('.') or p in ('venv', '__pycache__') for p in parts)
        and parts[:2] != ('tests', 'fixtures')):
      yield path


def _markdown():
  return [ROOT / 'README.md'] + [ROOT / 'docs' / name for name in DOCS]


def _slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_docs_pages_exist_and_readme_is_a_front_page():
  missing = [name for name in DOCS if not (ROOT / 'docs' / name).is_file()]
  assert not missing, missing
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  assert len(readme.splitlines()) <= 200, len(readme.splitlines())
  for name in DOCS:
    assert f'docs/{name}' in readme, f'README does not point to docs/{name}'


def test_config_reference_lists_every_field_as_default_lib_does():
  text = pathlib.Path(config_reference.DOC).read_text(encoding='utf-8')
  assert config_reference.with_table(text) == text, (
      'docs/config_reference.md is stale: run python tools/config_reference.py')
  assert '| `model.nf` | `128` | base channel count |' in text


def test_links_between_docs_resolve():
  broken = []
  for page in _markdown():
    for target in _LINK.findall(page.read_text(encoding='utf-8')):
      if re.match(r'[a-z]+:', target):
        continue                                        # http(s), mailto: not checked offline
      file, _, anchor = target.partition('#')
      dest = (page.parent / file).resolve() if file else page
      if not dest.exists():
        broken.append(f'{page.relative_to(ROOT)}: {target}')
      elif anchor and dest.suffix == '.md':
        headings = re.findall(r'^#+ (.*)$', dest.read_text(encoding='utf-8'), re.M)
        if anchor not in {_slug(h) for h in headings}:
          broken.append(f'{page.relative_to(ROOT)}: {target} (no such heading)')
  assert not broken, broken


def test_no_file_cites_a_path_outside_the_repository():
  hits = []
  for path in _repo_files('.md', '.py'):
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
      if any(outside in line for outside in OUTSIDE):
        hits.append(f'{path.relative_to(ROOT)}:{number}: {line.strip()}')
  assert not hits, '\n'.join(hits)
