"""NCSN++ deep (8 blocks per resolution) with the VP SDE, continuous DSM, on CIFAR-10.

Command: python main.py --config=configs/vp/cifar10_ncsnpp_deep_continuous.py --mode=train --workdir=W
Expected: no number in the README for this config; 950,001 training iterations.
"""
from configs import presets
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  presets.vp(config)
  presets.ncsnpp(config, embedding_type='positional')
  config.model.num_res_blocks = 8
  config.training.n_iters = 950001
  return config
