"""Helpers shared by the fixture makers that run the official code (make_published_fixtures.py
and its case modules, make_loss_fixtures.py, make_likelihood_fixture.py,
make_controllable_fixture.py): the seeds, stubs for unused imports, random weights, layouts,
replayed noise."""
import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import torch

SEEDS = (0, 1, 2, 3)           # generate.py --seeds=0-3: latents (and PFGM++ radii) per seed, CPU


def stub(name, **attrs):
  """A placeholder for an importable-but-unused module, only where the real one is missing."""
  top = name.split('.')[0]
  if top in sys.modules or importlib.util.find_spec(top) is None:
    module = sys.modules.setdefault(name, types.ModuleType(name))
    module.__dict__.update(attrs, __spec__=importlib.machinery.ModuleSpec(name, None))


def randomize(module, seed, out_gain=1.):
  """Every parameter random (zero-initialised ones too); `out_gain` scales the last weight."""
  rng = np.random.default_rng(seed)
  params = [(n, p) for n, p in module.named_parameters() if p.numel()]
  for i, (name, p) in enumerate(params):
    shape = tuple(p.shape)
    if len(shape) >= 2:
      v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    elif name.endswith('weight'):                  # GroupNorm scale
      v = 1 + 0.2 * rng.standard_normal(shape)
    else:
      v = 0.2 * rng.standard_normal(shape)
    if len(shape) >= 2 and all(len(q.shape) < 2 for _, q in params[i + 1:]):
      v = v * out_gain                             # the output conv (only biases follow it)
    with torch.no_grad():
      p.copy_(torch.from_numpy(v.astype(np.float32)))


def nhwc(x):
  return np.ascontiguousarray(x.detach().permute(0, 2, 3, 1).numpy())


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def replayer(perturb):
  """(randn_like, calls): the i-th call returns perturb[i] (given NHWC [steps, N, H, W, C], as
  reference.npz stores it), so a sampler's draws are the fixture's; `calls` lists their shapes."""
  perturb = torch.from_numpy(np.ascontiguousarray(np.transpose(perturb, (0, 1, 4, 2, 3))))
  calls = []

  def replay(x):
    calls.append(x.shape)
    return perturb[len(calls) - 1].to(x.dtype)
  return replay, calls
