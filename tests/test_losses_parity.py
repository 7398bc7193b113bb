"""Training losses against the official code (tools/make_loss_fixtures.py): NVlabs/edm's EDMLoss,
VPLoss and VELoss (Karras+22 Table 1), Newbeeer/stf's EDMLoss with its stable targets (Xu+23b),
Patch-Diffusion's Patch_EDMLoss on crops with their coordinates (Wang+23), Newbeeer/pfgmpp's
EDMLoss with its perturbation kernel (Xu+23; its radius R/σ and direction fed to ours, the radius
law itself is checked against scipy in test_pfgmpp_stf.py) and score_sde_pytorch's
continuous DSM (VE ½·sum, VP mean, VP with likelihood weighting), SMLD and DDPM losses (Song+21),
each on a published-checkpoint fixture's network, with the official run's random draws (σ or t or
the level, and the noise) fed to ours in place of jax.random's. The minimiser tests of
test_losses.py cannot see a weighting or reduction constant; these can.
"""
import contextlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import losses
from models import utils as mutils
import published_cases
import sde_lib

LOSSES = os.path.join(published_cases.ROOT, 'tests', 'fixtures', 'losses')
CASES = sorted(f[:-4] for f in os.listdir(LOSSES) if f.endswith('.npz'))


@contextlib.contextmanager
def replayed_draws(ref):
  """jax.random.normal / uniform / randint return the fixture's draws, told apart by shape (the
  per-sample σ, t or level [B]; the noise [B, H, W, C]; patch corners [B, 2]); any other draw
  fails the test."""
  image_shape = ref['images'].shape
  def normal(key, shape=(), dtype=jnp.float32):
    del key
    if 'normal_image' in ref.files and tuple(shape) == ref['normal_image'].shape:
      return jnp.asarray(ref['normal_image'], dtype)
    assert tuple(shape) == image_shape[:1] and 'normal_b' in ref.files, shape
    return jnp.asarray(ref['normal_b'], dtype)
  def uniform(key, shape=(), dtype=jnp.float32, minval=0., maxval=1.):
    del key
    assert tuple(shape) == image_shape[:1] and 'uniform' in ref.files, shape
    draw = jnp.asarray(ref['uniform'], dtype)
    assert bool(jnp.all((draw >= minval) & (draw <= maxval))), (minval, maxval)
    return draw
  def randint(key, shape, minval, maxval, dtype=jnp.int32):
    del key
    assert 'randint' in ref.files and tuple(shape) == ref['randint'].shape, shape
    draw = jnp.asarray(ref['randint'], dtype)
    assert bool(jnp.all((draw >= minval) & (draw < maxval))), (minval, maxval)
    return draw
  with pytest.MonkeyPatch.context() as mp:
    for name, fake in (('normal', normal), ('uniform', uniform), ('randint', randint)):
      mp.setattr(jax.random, name, fake)
    if 'pfgmpp_radius' in ref.files:     # PFGM++'s R u for σ = 1: the official direction and R/σ
      direction, radius = jnp.asarray(ref['pfgmpp_direction']), jnp.asarray(ref['pfgmpp_radius'])
      mp.setattr(sde_lib.PFGMPPNoise, 'sample', lambda self, rng, shape: jax.vmap(
          lambda k, g, r: self._one(k, g.shape, g, r))(    # pylint: disable=protected-access
              jax.random.split(rng, shape[0]), direction, radius))
    yield


def stf_layout(reference, batch):
  """Newbeeer/stf's reference batch (its first `batch` images the trained batch) in ours: a
  reference set [k·B, ...] whose images 0, k, 2k, ... are the batch (losses.denoiser_loss)."""
  k = len(reference) // batch
  rest = reference[batch:].reshape((batch, k - 1) + reference.shape[1:])
  return np.concatenate([reference[:batch, None], rest], axis=1).reshape(reference.shape)


@pytest.mark.parametrize('case', CASES)
def test_loss_of_the_official_code_on_its_draws(case):
  ref = np.load(os.path.join(LOSSES, f'{case}.npz'))
  with open(os.path.join(LOSSES, f'{case}.json')) as f:
    info = json.load(f)
  config, model, params, sde = published_cases.network_of(info['checkpoint_case'])
  config.training.likelihood_weighting = case.endswith('_lw')
  x = ref['images']
  if 'stf_reference' in ref.files:     # STF: the training loss (its target), no augmentation
    config.training.batch_size, config.training.stf_ref_batch = len(x), len(ref['stf_reference'])
    x = stf_layout(ref['stf_reference'], len(x))
  patch = {'patch': int(ref['patch_divisor'])} if 'patch_divisor' in ref.files else {}
  loss_fn = losses.get_loss_fn(config, sde, train=bool(patch) or 'stf_reference' in ref.files)
  model_fn = mutils.get_model_fn(model, params, train=False)
  with replayed_draws(ref):
    ours = float(loss_fn(jax.random.key(0), model_fn, jnp.asarray(x), **patch))
  # The EDM family's files ('per_element': the loss tensor) hold loss.sum() / B; ours keeps
  # score_sde's ½·sum per sample (training.reduce_mean=False): with Adam, EDM's step with ε doubled.
  official = (0.5 if 'per_element' in ref.files else 1.) * float(ref['loss'])
  print(f'{case}: ours {ours:.7g}, official {official:.7g}')
  assert ours == pytest.approx(official, rel=5e-6), (ours, official)   # measured ≤ 1.2e-6
