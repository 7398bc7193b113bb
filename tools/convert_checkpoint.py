"""Convert an official score_sde checkpoint into our parameters (flax msgpack).

  python tools/convert_checkpoint.py --config=configs/ve/cifar10_ncsnpp_continuous.py \
      --checkpoint=checkpoint_24.pth --out=DIR [--no_ema] [--format=auto|pytorch|flax]

Inputs: a yang-song/score_sde_pytorch `.pth` (read as data, no torch needed) or a
yang-song/score_sde Flax checkpoint (msgpack of its `State`, e.g. `checkpoint_26`). The EMA weights
are taken unless --no_ema. Output: DIR/params.msgpack, our params tree serialised with
`flax.serialization.msgpack_serialize` (read it back with `flax.serialization.msgpack_restore`),
and DIR/config.json, the config it was converted for. Every main.py mode also reads the original
files directly (`--checkpoint=checkpoint_24.pth`), and the params.msgpack written here. Every
converted leaf is shape-checked against the model of `--config`, and every official weight must be
used. A file that cannot be read or converted, a config that cannot be loaded, or an --out that
cannot be written ends the tool with one line and exit status 1.
"""
import argparse
import importlib.util
import os
import sys

import flax.serialization
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import models  # registers  # pylint: disable=unused-import,wrong-import-position
from foreign import score_sde  # pylint: disable=wrong-import-position


def load_config(path):
  """`get_config()` of the config file at `path`."""
  spec = importlib.util.spec_from_file_location('converted_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def convert(checkpoint, config, fmt='auto', ema=True):
  """(our params tree as float32 NumPy, the format read) of an official checkpoint file."""
  if fmt == 'auto':
    fmt = 'pytorch' if checkpoint.endswith('.pth') else 'flax'
  if fmt == 'pytorch':
    params = score_sde.convert_pytorch(score_sde.load_pytorch_checkpoint(checkpoint, ema), config)
  else:
    params = score_sde.convert_flax(score_sde.load_flax_checkpoint(checkpoint, ema), config)
  return jax.tree.map(lambda v: np.asarray(v, np.float32), params), fmt


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--config', required=True, help='config file with get_config()')
  parser.add_argument('--checkpoint', required=True, help='official .pth or Flax checkpoint')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--no_ema', action='store_true', help='take the raw, not the EMA, weights')
  parser.add_argument('--format', choices=('auto', 'pytorch', 'flax'), default='auto',
                      help='auto: .pth means PyTorch, anything else a Flax msgpack')
  args = parser.parse_args(argv)
  name = os.path.basename(__file__)
  try:
    config = load_config(args.config)
  except Exception as err:  # pylint: disable=broad-except   # whatever the file raises: one line
    parser.exit(1, f'{name}: error: cannot load --config={args.config}: {type(err).__name__}: '
                   f'{err}\n')
  try:   # any reader or converter error (missing, corrupt or another network's file): one line
    params, fmt = convert(args.checkpoint, config, args.format, not args.no_ema)
  except Exception as err:  # pylint: disable=broad-except
    parser.exit(1, f'{name}: error: --checkpoint={args.checkpoint}: {type(err).__name__}: '
                   f'{err}\n')
  try:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'params.msgpack'), 'wb') as f:
      f.write(flax.serialization.msgpack_serialize(params))
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))
  except OSError as err:
    parser.exit(1, f'{name}: error: cannot write --out={args.out}: {err}\n')
  count = sum(v.size for v in jax.tree.leaves(params))
  print(f'{args.checkpoint} ({fmt}, {"raw" if args.no_ema else "EMA"}) -> '
        f'{args.out}/params.msgpack: {count:,} parameters of {config.model.name}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
