"""streams.py is the one table of random streams: its names and values, that every stream is used
and documented, and that the per-sample keys and the mesh are built there and nowhere else."""
import collections
import pathlib
import re
import types

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

import sampling
import sde_lib
import streams

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = {p.relative_to(ROOT).as_posix(): p.read_text(encoding='utf-8')
           for p in sorted(ROOT.rglob('*.py'))
           if not any(part.startswith('.') or part in ('venv', 'tests')
                      for part in p.relative_to(ROOT).parts) and p.name != 'streams.py'}
# The values per-seed images, evaluation fixtures and resumed runs depend on: never change them.
PINNED = {'eval': 1073741824, 'sample': 1073741825, 'init': 1073741826, 'bpd': 1073741827,
          'patch': 1073741828, 'classifier': 1073741829, 'encode': 1073741830,
          'latent': 1073741824, 'class': 1073741825, 'known': 1073741825, 'perturb': 1073741826}


def _kd(keys):
  return np.asarray(jax.random.key_data(keys))


def test_names_values_and_module_constants_agree():
  assert streams.STREAMS == PINNED
  assert not set(streams.RUN_STREAMS) & set(streams.SAMPLE_STREAMS)
  assert streams.STREAMS == {**streams.RUN_STREAMS, **streams.SAMPLE_STREAMS}
  constants = {n: v for n, v in vars(streams).items() if n.endswith('_STREAM')}
  assert constants == {f'{k.upper()}_STREAM': v for k, v in streams.STREAMS.items()}
  assert all(v >= streams.COUNTER_LIMIT for v in streams.STREAMS.values())   # above every counter


def test_values_are_distinct_within_a_level_except_documented_aliases():
  for level in (streams.RUN_STREAMS, streams.SAMPLE_STREAMS):
    by_value = collections.defaultdict(set)
    for name, value in level.items():
      by_value[value].add(name)
    for names in by_value.values():    # one stream and its aliases, if any
      canonical = names - set(streams.ALIASES)
      assert len(canonical) == 1, names
      assert all(streams.ALIASES[n] in canonical for n in names - canonical), names
  doc = streams.__doc__
  for alias, target in streams.ALIASES.items():
    assert streams.STREAMS[alias] == streams.STREAMS[target]
    assert f'{alias.upper()}_STREAM = {target.upper()}_STREAM' in doc
  for name in streams.STREAMS:
    assert f'{name.upper()}_STREAM' in doc, name


def test_every_stream_and_helper_is_used_in_the_library():
  unused = [name for name in [f'{k.upper()}_STREAM' for k in streams.STREAMS]
            + ['run_key', 'sample_keys', 'keys_for_seeds', 'data_mesh']
            if not any(re.search(rf'\b{name}\b', text) for text in LIBRARY.values())]
  assert not unused, unused


def test_keys_constants_and_the_mesh_are_built_only_in_streams():
  rules = {'a mesh': r'\bMesh\(', 'a literal 2**30': r'2\s*\*\*\s*30|1\s*<<\s*30|1073741824',
           'a key helper': r'def (sample_keys|keys_for_seeds|run_key|stream_key|data_mesh)\b',
           'keys of seeds': r'vmap\(jax\.random\.key\)',
           'keys of an index range': r'fold_in\(.*arange|arange.*fold_in\('}
  hits = [f'{path}:{number}: {what}: {line.strip()}'
          for path, text in LIBRARY.items()
          for number, line in enumerate(text.splitlines(), 1)
          for what, pattern in rules.items() if re.search(pattern, line)]
  assert not hits, '\n'.join(hits)


def test_sample_keys_depend_on_the_index_only():
  base = jax.random.key(3)
  keys = streams.sample_keys(base, 6, start=4)
  assert (_kd(keys) == np.stack([_kd(jax.random.fold_in(base, 4 + i)) for i in range(6)])).all()
  assert (_kd(streams.sample_keys(base, 10)[4:]) == _kd(keys)).all()     # not on n or the batch
  sharded = NamedSharding(streams.data_mesh(), P('data'))
  n = 2 * jax.device_count()
  assert (_kd(streams.sample_keys(base, n, start=4, sharding=sharded))
          == _kd(streams.sample_keys(base, n, start=4))).all()


def test_run_keys_seed_keys_and_the_mesh():
  config = types.SimpleNamespace(seed=11)
  want = jax.random.fold_in(jax.random.fold_in(jax.random.key(11), 5), streams.EVAL_STREAM)
  assert (_kd(streams.run_key(config, 5, streams.EVAL_STREAM)) == _kd(want)).all()
  assert (_kd(streams.keys_for_seeds([0, 7, 70000]))
          == np.stack([_kd(jax.random.key(s)) for s in (0, 7, 70000)])).all()
  mesh = streams.data_mesh()
  assert mesh.axis_names == ('data',) and list(mesh.devices.flat) == jax.devices()


def test_samplers_draw_latents_and_classes_from_their_streams():
  keys = streams.keys_for_seeds([1, 2, 3])
  sde = sde_lib.VESDE(0.01, 50., 10)
  want = jnp.stack([jax.random.normal(jax.random.fold_in(k, streams.LATENT_STREAM), (4,))
                    for k in keys]) * sde.prior_std
  np.testing.assert_array_equal(sampling.prior_sample(sde, keys, (4,)), want)
  config = types.SimpleNamespace(data=types.SimpleNamespace(num_classes=10),
                                 sampling=types.SimpleNamespace(class_label=-1))
  want = [jax.random.randint(jax.random.fold_in(k, streams.CLASS_STREAM), (), 0, 10) for k in keys]
  np.testing.assert_array_equal(sampling.class_labels(config, keys), want)
