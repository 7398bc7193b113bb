"""The registry of score_sde checkpoint converters: `config.model.name` -> `Converter(pytorch=...,
flax=...)`, each `(old weights, config) -> our params` (foreign/score_sde.py: the U-Nets;
foreign/score_sde_refinenet.py: NCSN / NCSNv2)."""
from typing import Callable, NamedTuple

from utils import Registry


class Converter(NamedTuple):
  pytorch: Callable  # (state_dict: {name: array}, config) -> params
  flax: Callable     # (old_params: nested dict, config) -> params


CONVERTERS = Registry('converter')
register_converter = CONVERTERS.register


def strip_prefix(key):
  """A state-dict name without nn.DataParallel's `module.` prefix."""
  return key[len('module.'):] if key.startswith('module.') else key
