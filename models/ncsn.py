"""NCSN (v1) score networks `ncsn` and `ncsn_torch`: the noise-conditional dilated RefineNet.

Papers:
  Song&Ermon19  Generative Modeling by Estimating Gradients of the Data Distribution,
                arXiv:1907.05600 (§4.2; App. A: architecture, conditional InstanceNorm++).

Same body as NCSNv2's 64 px model (models/ncsnv2.py), but every normalization is conditional:
it looks up its γ, α, β by the integer noise index (num_classes = config.model.num_scales).
Call: `model.apply({'params': p}, x, labels)` with labels [B] integer indices into the
DESCENDING noise list `models.utils.get_sigmas(config)`. With `config.model.scale_by_sigma`
(False in score_sde's NCSN configs) the output is divided by σ_label.

`ncsn` is score_sde's Flax layout (refine3 with 2nf channels; 34,428,675 parameters for
ve/ncsn/cifar10); `ncsn_torch` is the layout of ermongroup/ncsn's CondRefineNetDilated, whose
checkpoints are the published ones (refine3 with nf channels).

score_sde's Flax NCSN could not run (no `config.model.num_classes`; a normalizer class called
without being instantiated) and score_sde_pytorch's built unconditional norms into conditional
blocks. Here the number of classes is `num_scales` and every block is conditional, as in
ermongroup/ncsn.
"""
from typing import Any

from models.ncsnv2 import REFINES_64, REFINES_64_TORCH, STAGES_64, RefineNetScore
from models.utils import register_model


@register_model('ncsn')
class NCSN(RefineNetScore):
  """NCSN v1: conditional InstanceNorm++ everywhere, pooling once, then dilations 2 and 4."""
  stages: Any = STAGES_64
  refines: Any = REFINES_64
  conditional: bool = True


@register_model('ncsn_torch')
class NCSNTorch(RefineNetScore):
  """`ncsn` as ermongroup/ncsn's CondRefineNetDilated: refine3 has nf channels."""
  stages: Any = STAGES_64
  refines: Any = REFINES_64_TORCH
  conditional: bool = True
