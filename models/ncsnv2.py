"""NCSNv2 score networks `ncsnv2_64`, `ncsnv2_128`, `ncsnv2_256` and their shared RefineNet body.

Papers:
  Song&Ermon20  Improved Techniques for Training Score-Based Generative Models (NCSNv2),
                arXiv:2006.09011 (Technique 3: s_θ(x, σ) = s_θ(x)/σ; bodies of ermongroup/ncsnv2).
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution,
                arXiv:1907.05600 (the dilated RefineNet that NCSNv2 inherits).

Call: `model.apply({'params': p}, x, labels)` with x [B, H, W, C] in [0, 1] (or [−1, 1] when
`config.data.centered`) and labels [B] integer indices into the DESCENDING noise list
`models.utils.get_sigmas(config)` (floats are cast to int32). Returns the score [B, H, W, C].
Pick the variant by resolution as score_sde does: `ncsnv2_64` below 96 px, `ncsnv2_128` up to
128 px, `ncsnv2_256` up to 256 px. `ncsnv2_64` is score_sde's Flax layout (33,970,563 parameters
for CIFAR-10); `ncsnv2_64_torch` is the layout of ermongroup/ncsnv2 and score_sde_pytorch
(refine3 with nf channels, 29,694,083 parameters), needed to load their checkpoints.
`model.dtype`: the trunk computes in it from the first convolution on, the normalizations in
float32 (precision.py); `model.remat` rematerialises each residual and RefineNet block
(`models.utils.remat`).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from models import normalization, refinenet_layers as rl
from models.layers import get_act
from models.utils import get_sigmas, register_model, remat
import precision
from utils import bcast

# Backbone stages (name, channels / nf, resample of the first block, dilation); each stage is
# two residual blocks and its output feeds a RefineBlock (ermongroup/ncsnv2, score_sde).
STAGES_64 = (('res1', 1, None, 1), ('res2', 2, 'down', 1), ('res3', 2, 'down', 2),
             ('res4', 2, 'down', 4))
STAGES_128 = (('res1', 1, None, 1), ('res2', 2, 'down', 1), ('res3', 2, 'down', 1),
              ('res4', 4, 'down', 2), ('res5', 4, 'down', 4))
STAGES_256 = (('res1', 1, None, 1), ('res2', 2, 'down', 1), ('res3', 2, 'down', 1),
              ('res31', 2, 'down', 1), ('res4', 4, 'down', 2), ('res5', 4, 'down', 4))
# RefineBlocks from the deepest stage up: (name, channels / nf). score_sde's Flax port widened
# refine3 of the 64 px body to 2nf; the PyTorch codebases (ermongroup/ncsn, ermongroup/ncsnv2,
# score_sde_pytorch), whose checkpoints are the published ones, keep nf: `*_torch` models.
REFINES_64 = (('refine1', 2), ('refine2', 2), ('refine3', 2), ('refine4', 1))
REFINES_64_TORCH = (('refine1', 2), ('refine2', 2), ('refine3', 1), ('refine4', 1))
REFINES_128 = (('refine1', 4), ('refine2', 2), ('refine3', 2), ('refine4', 1), ('refine5', 1))
REFINES_256 = (('refine1', 4), ('refine2', 2), ('refine31', 2), ('refine3', 2), ('refine4', 1),
               ('refine5', 1))


class RefineNetScore(nn.Module):
  """Dilated RefineNet score model; subclasses fix `stages`, `refines` and `conditional`.

  conditional=False is NCSNv2 (InstanceNorm++ without noise input, Song&Ermon20 Technique 3);
  conditional=True is NCSN v1 (every normalization looks up its parameters by noise index,
  Song&Ermon19 App. A). With `config.model.scale_by_sigma` the output is divided by σ_label.
  """
  config: ml_collections.ConfigDict
  stages: Any = STAGES_64
  refines: Any = REFINES_64
  conditional: bool = False

  @nn.compact
  def __call__(self, x, labels, train=False):
    del train  # no dropout and no batch statistics in these models
    config = self.config
    nf = config.model.nf
    act = get_act(config)
    interpolation = config.model.interpolation
    norm = normalization.get_normalization(config, conditional=self.conditional)
    labels = labels.astype(jnp.int32)  # index into the descending σ list
    cond = (labels,) if self.conditional else ()
    block = remat(rl.ConditionalResidualBlock if self.conditional else rl.ResidualBlock, config)
    refine_block = remat(rl.CondRefineBlock if self.conditional else rl.RefineBlock, config)
    extra = {'normalizer': norm} if self.conditional else {}

    h = x if config.data.centered else 2. * x - 1.   # data in [0, 1] → [−1, 1]
    h = rl.ncsn_conv3x3(h.astype(precision.compute_dtype(config)), nf, name='begin_conv')
    layers = []
    for name, mult, resample, dilation in self.stages:
      h = block(mult * nf, norm, resample, act, dilation, name=f'{name}_0')(h, *cond)
      h = block(mult * nf, norm, None, act, dilation, name=f'{name}_1')(h, *cond)
      layers.append(h)

    ref = None
    for i, (name, mult) in enumerate(self.refines):
      layer = layers[len(layers) - 1 - i]
      xs = [layer] if ref is None else [layer, ref]
      ref = refine_block(mult * nf, tuple(layer.shape[1:3]), act=act, interpolation=interpolation,
                         end=i == len(self.refines) - 1, name=name, **extra)(xs, *cond)

    h = act(norm(name='normalizer')(ref, *cond))
    h = rl.ncsn_conv3x3(h, x.shape[-1], name='end_conv').astype(jnp.float32)
    if config.model.scale_by_sigma:
      sigmas = jnp.asarray(get_sigmas(config), h.dtype)
      h = h / bcast(sigmas[labels], h)   # Song&Ermon20 Technique 3: s_θ(x, σ) = s_θ(x)/σ
    return h


@register_model('ncsnv2_64')
class NCSNv2(RefineNetScore):
  """NCSNv2 for images below 96 px (CIFAR-10 32 px, CelebA 64 px): 1 pooling + 2 dilations."""
  stages: Any = STAGES_64
  refines: Any = REFINES_64


@register_model('ncsnv2_64_torch')
class NCSNv2Torch(RefineNetScore):
  """`ncsnv2_64` as in ermongroup/ncsnv2 and score_sde_pytorch: refine3 has nf channels."""
  stages: Any = STAGES_64
  refines: Any = REFINES_64_TORCH


@register_model('ncsnv2_128')
class NCSNv2_128(RefineNetScore):  # pylint: disable=invalid-name
  """NCSNv2 for 96–128 px (LSUN 128 px): 2 poolings, dilations 2 and 4, 4nf channels deep."""
  stages: Any = STAGES_128
  refines: Any = REFINES_128


@register_model('ncsnv2_256')
class NCSNv2_256(RefineNetScore):  # pylint: disable=invalid-name
  """NCSNv2 for 129–256 px: one more pooled stage (res31/refine31) than ncsnv2_128."""
  stages: Any = STAGES_256
  refines: Any = REFINES_256
