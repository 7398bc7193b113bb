"""docs/design.md's "add an SDE" recipe, as written there: the Brownian SDE registered in this file
(no library file changes) has the marginals of its moment ODEs, and a noise-conditional classifier
trains on its noise (`--mode=train_classifier`), recording its `noise_fields`, which the
classifier reader then checks against a model's."""
import inspect
import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest

import classifier_lib
from configs import quicktest
from configs.quickstart import digits
from foreign import classifier
import sde_lib
from sde_lib import SDE, SDES
from test_sde import _moments_by_ode


# --- the recipe (docs/design.md, "Add an SDE") -------------------------------------------------
@SDES.register('brownian')
class BrownianSDE(SDE):
  """dx = σ_max dw on [0, 1]: σ(t) = σ_max √t, s(t) = 1 (Karras+22 Table 1's VE σ(t) = √t with
  time scaled to [0, 1]); g(t)² = dσ²/dt = σ_max²."""
  noise_fields = ('model.sigma_max',)      # the config fields that set its marginals

  def __init__(self, sigma_min=0.002, sigma_max=80., N=1000):
    super().__init__(N)
    self.sigma_min, self.sigma_max = sigma_min, sigma_max

  @property
  def prior_std(self):
    return self.sigma_max                  # the marginal std at T = 1 (data ≪ σ_max)

  def sde(self, x, t):
    return jnp.zeros_like(x), jnp.full_like(t, self.sigma_max)

  def sigma(self, t):
    return self.sigma_max * jnp.sqrt(t)

  def scale(self, t):
    return jnp.ones_like(t)

  def sigma_inv(self, sigma):
    return (sigma / self.sigma_max) ** 2

  @classmethod
  def from_config(cls, config):
    m = config.model
    return cls(m.sigma_min, m.sigma_max, m.num_scales)

  @property
  def sampling_eps(self):                  # the time of σ_min
    return (self.sigma_min / self.sigma_max) ** 2
# -----------------------------------------------------------------------------------------------


def test_the_recipe_in_docs_is_this_code():
  design = (pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'design.md').read_text(
      encoding='utf-8')
  section = design[design.index('### Add an SDE'):design.index('### Add a loss switch')]
  blocks = re.findall(r'```python\n(.*?)```', section, re.S)
  source = inspect.getsource(BrownianSDE)
  assert len(blocks) == 2 and all(block in source for block in blocks)


def test_its_marginals_solve_the_moment_odes():
  sde = BrownianSDE(sigma_max=3.)
  for t_end in (0.3, 1.):
    m, v = _moments_by_ode(sde, t_end, steps=2000)
    mean, std = sde.marginal_prob(jnp.ones((1, 1)), jnp.array([t_end]))
    np.testing.assert_allclose(float(mean[0, 0]), m, rtol=1e-4)
    np.testing.assert_allclose(float(std[0]) ** 2, v, rtol=2e-3)
  t = jnp.linspace(1e-3, 1., 9)
  np.testing.assert_allclose(sde.sigma_inv(sde.sigma(t)), t, rtol=1e-5)


def test_a_classifier_trains_on_its_noise_and_records_it(tmp_path):
  config = quicktest.shrink(digits.get_config())
  config.training.sde, config.training.batch_size = 'brownian', 8
  c = config.classifier
  c.blocks_per_group, c.widen, c.n_iters, c.log_freq, c.snapshot_freq = 1, 1, 2, 1, 2
  classifier_lib.train(config, str(tmp_path))
  path = str(tmp_path / 'classifier' / 'checkpoint_2')
  with open(path + '.json') as f:
    assert json.load(f)['noise'] == {'training.sde': 'brownian', 'data.centered': True,
                                     'model.sigma_max': config.model.sigma_max}
  config.sampling.classifier = path
  classifier.read_for(config)
  config.model.sigma_max *= 2
  with pytest.raises(classifier.ClassifierFileError, match='train one on this noise'):
    classifier.read_for(config)
  assert isinstance(sde_lib.get_sde(config)[0], BrownianSDE)
