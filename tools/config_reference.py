"""Write docs/config_reference.md's table from configs/default_lib.py (the one field tree).

Every field of `default_lib.get_base_config()` is listed with its default and the comment that
follows it in default_lib.py, so the table cannot drift from the code (tests/test_docs.py
compares docs/config_reference.md with this output).

  python tools/config_reference.py            # rewrite the table in docs/config_reference.md
  python tools/config_reference.py --print    # print it instead
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import default_lib  # pylint: disable=wrong-import-position

DOC = os.path.join(ROOT, 'docs', 'config_reference.md')
BEGIN, END = '<!-- config-reference:begin -->', '<!-- config-reference:end -->'
_FIELD = re.compile(r'^\s+(\w+)\.(\w+) = .*?#\s?(.*)$')
_MORE = re.compile(r'^\s+#\s{20,}(.*)$')   # a comment continued under the previous one


def field_comments(path=default_lib.__file__):
  """{'section.field': comment} from the assignment lines of default_lib.py."""
  comments, last = {}, None
  with open(path, encoding='utf-8') as f:
    for line in f:
      field, more = _FIELD.match(line), _MORE.match(line)
      if field:
        last = _key(field.group(1), field.group(2))
        comments[last] = field.group(3).strip()
      elif more and last:
        comments[last] += ' ' + more.group(1).strip()
  return comments


def _key(variable, name):
  """`evaluate.batch_size` -> 'eval.batch_size'; `config.seed` -> 'seed'."""
  if variable == 'config':
    return name
  return f"{'eval' if variable == 'evaluate' else variable}.{name}"


def table():
  """The markdown table: field, default, meaning."""
  config, comments = default_lib.get_base_config(), field_comments()
  rows = ['| field | default | meaning |', '|---|---|---|']
  for section in config.keys():
    value = config[section]
    items = value.items() if hasattr(value, 'items') else [(None, value)]
    for name, default in items:
      key = section if name is None else f'{section}.{name}'
      rows.append(f'| `{key}` | `{default!r}` | {comments[key].replace("|", "/")} |')
  return '\n'.join(rows)


def with_table(text):
  """`text` with the table between its BEGIN and END markers replaced by `table()`."""
  start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
  return text[:start] + '\n' + table() + '\n' + text[stop:]


def main():
  if '--print' in sys.argv:
    print(table())
    return
  with open(DOC, encoding='utf-8') as f:
    text = f.read()
  with open(DOC, 'w', encoding='utf-8') as f:
    f.write(with_table(text))


if __name__ == '__main__':
  main()
