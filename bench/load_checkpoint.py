"""Time to read a published-size EDM network snapshot into our parameters (no torch).

  python bench/load_checkpoint.py PATH.pkl --config=configs/edm/cifar10_ddpmpp_cond.py

Prints the time to unpickle the file as data (`foreign.torch_pickle.read`) and the whole
`foreign.load.load` (read + re-layout into our tree), and the parameter count. A 56M-parameter
file of EDM's CIFAR-10 DDPM++ shape (what edm-cifar10-32x32-cond-vp.pkl holds) is written with
NVlabs/edm's own code by `tools/make_big_edm_pickle.py` (torch needed there only).
"""
import argparse
import importlib.util
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from foreign import load, torch_pickle
import hugepages


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('path')
  parser.add_argument('--config', default='configs/edm/cifar10_ddpmpp_cond.py')
  args = parser.parse_args()
  spec = importlib.util.spec_from_file_location('config', args.config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  start = time.perf_counter()
  torch_pickle.read(args.path)
  read_s = time.perf_counter() - start
  start = time.perf_counter()
  given = load.load(args.path, config)
  total_s = time.perf_counter() - start
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(given.params))
  print(f'{args.path}: read {read_s:.2f} s, read + convert {total_s:.2f} s, {count:,} parameters')


if __name__ == '__main__':
  hugepages.reexec_with_huge_pages()   # as main.py runs (hugepages.py)
  main()
