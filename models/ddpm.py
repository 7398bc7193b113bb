"""The DDPM U-Net of Ho+20 (registered as `ddpm`), as ported by score_sde.

Papers:
  Ho+20  Denoising Diffusion Probabilistic Models, arXiv:2006.11239 (App. B).
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (configs ve/ vp/ subvp/).

Labels are the (integer or scaled) time index, embedded sinusoidally; `scale_by_sigma` divides the
output by `get_sigmas(config)[label]` (VE discrete training with the DDPM net).
`model.dtype` is the compute dtype of the convolutions (the time embedding MLP stays float32:
precision.py); `model.remat` rematerialises each residual and attention block (`utils.remat`).
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from models import layers
from models.layers import conv3x3, default_init, ddpm_groups, group_norm
from models.utils import get_sigmas, register_model, remat
import precision


@register_model('ddpm')
class DDPM(nn.Module):
  """DDPM U-Net: x [B, H, W, C], labels [B] -> [B, H, W, C]."""
  config: Any

  @nn.compact
  def __call__(self, x, labels, train=False, cond=None):
    m, channels = self.config.model, self.config.data.num_channels   # x may hold coords
    size = self.config.data.image_size
    act = layers.get_act(self.config)
    nf, ch_mult, n_res = m.nf, tuple(m.ch_mult), m.num_res_blocks
    dtype = precision.compute_dtype(self.config)
    res = functools.partial(remat(layers.ResnetBlockDDPM, self.config, static_argnums=(3,)),
                            act=act, dropout=m.dropout, dtype=dtype)
    attn = functools.partial(remat(layers.AttnBlock, self.config), dtype=dtype)

    temb = None
    if m.conditional:  # Ho+20 App. B: sinusoidal embedding -> Dense -> act -> Dense
      temb = layers.get_timestep_embedding(labels, nf)
      temb = layers.add_conditioning(self, temb, cond, self.config, train)   # EDM's SongUNet
      temb = nn.Dense(4 * nf, kernel_init=default_init(), name='temb_0')(temb)
      temb = nn.Dense(4 * nf, kernel_init=default_init(), name='temb_1')(act(temb))
    h = x if self.config.data.centered else 2 * x - 1.

    hs = [conv3x3(nf, name='conv_in', dtype=dtype)(h)]
    for level, mult in enumerate(ch_mult):
      for i in range(n_res):
        h = res(out_ch=nf * mult, name=f'down_{level}_res_{i}')(hs[-1], temb, train)
        if (size >> level) in m.attn_resolutions:   # by level, as SongUNet (patches too)
          h = attn(name=f'down_{level}_attn_{i}')(h)
        hs.append(h)
      if level != len(ch_mult) - 1:
        hs.append(layers.Downsample(m.resamp_with_conv, dtype=dtype,
                                    name=f'down_{level}_resample')(hs[-1]))

    h = res(name='mid_res_0')(hs[-1], temb, train)
    h = attn(name='mid_attn')(h)
    h = res(name='mid_res_1')(h, temb, train)

    for level in reversed(range(len(ch_mult))):
      for i in range(n_res + 1):
        h = res(out_ch=nf * ch_mult[level], name=f'up_{level}_res_{i}')(
            jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
      if (size >> level) in m.attn_resolutions:   # by level, as SongUNet (patches too)
        h = attn(name=f'up_{level}_attn')(h)
      if level != 0:
        h = layers.Upsample(m.resamp_with_conv, dtype=dtype, name=f'up_{level}_resample')(h)

    h = act(group_norm(h.shape[-1], ddpm_groups, name='out_norm')(h))
    h = conv3x3(channels, init_scale=0., name='out_conv', dtype=dtype)(h)
    if m.scale_by_sigma:
      sigmas = jnp.asarray(get_sigmas(self.config), jnp.float32)[labels.astype(jnp.int32)]
      h = h / sigmas.reshape(-1, 1, 1, 1)
    return h
