"""NCSNv2 (Song&Ermon20, arXiv:2006.09011) on CIFAR-10: 232 levels σ ∈ [0.01, 50], ALD sampling.

Command: python main.py --config=configs/ve/ncsnv2/cifar10.py --mode=train --workdir=W
Expected: no number in score_sde's README; 33,970,563 parameters [verified: counted with the official code].
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.ve(config, continuous=False)
  presets.ncsnv2(config)
  config.model.num_scales = 232
  config.sampling.n_steps_each = 5
  config.sampling.snr = 0.176
  return config
