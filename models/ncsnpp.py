"""NCSN++ and DDPM++ (registered as `ncsnpp`), Song+21 App. H, configured by `config.model.*`.

Papers:
  Song+21  Score-Based Generative Modeling through SDEs, arXiv:2011.13456 (App. H).
  Karras+20  StyleGAN2, arXiv:1912.04958 (FIR resampling, input/output skip pyramids).

DDPM++ is this network with `fir=False`, no progressive paths and positional embeddings; NCSN++
adds FIR resampling, the progressive input pyramid and (VE continuous) Fourier embeddings.
Labels: σ itself for `embedding_type='fourier'` (embedded as log σ), the time label (e.g. 999 t)
or the integer noise index for `'positional'`; `scale_by_sigma` divides the output by σ (the label
for Fourier, `get_sigmas(config)[label]` for positional).
Submodule names (`down_{level}_res_{i}`, `mid_attn`, `up_{level}_pyramid_conv`, ...) follow the
network's structure; `foreign.score_sde` maps score_sde checkpoints onto them.
`model.dtype` is the compute dtype of the convolutions (the noise embedding MLP stays float32:
precision.py); `model.remat` rematerialises each residual and attention block (`utils.remat`).
"""
import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from models import layers, layerspp
from models.layers import conv3x3, default_init, group_norm, pp_groups
from models.utils import get_sigmas, register_model, remat
import precision

@register_model('ncsnpp')
class NCSNpp(nn.Module):
  """NCSN++ / DDPM++ U-Net: x [B, H, W, C], labels [B] -> [B, H, W, C]; `cond`: class and
  augmentation labels (`layers.add_conditioning`)."""
  config: Any

  def _embed(self, labels, cond, train):
    """Noise/time embedding [B, 4 nf] (or None when unconditional) and the σ used for scaling;
    class and augmentation labels (`cond`) join before the MLP (`layers.add_conditioning`)."""
    m = self.config.model
    act = layers.get_act(self.config)
    if m.embedding_type.lower() == 'fourier':  # Song+21 App. H: Fourier features of log σ
      sigmas = labels
      temb = layerspp.GaussianFourierProjection(m.nf, m.fourier_scale, name='fourier')(jnp.log(labels))
    else:  # Ho+20: sinusoidal embedding of the time label
      sigmas = jnp.asarray(get_sigmas(self.config), jnp.float32)[labels.astype(jnp.int32)]
      temb = layers.get_timestep_embedding(labels, m.nf)
    if not m.conditional:
      return None, sigmas
    temb = layers.add_conditioning(self, temb, cond, self.config, train)
    temb = nn.Dense(4 * m.nf, kernel_init=default_init(), name='temb_0')(temb)
    temb = nn.Dense(4 * m.nf, kernel_init=default_init(), name='temb_1')(act(temb))
    return temb, sigmas

  def _rescaled_sum(self, a, b):
    """Song+21 App. H: residual sums are divided by √2 when `model.skip_rescale`."""
    return (a + b) / math.sqrt(2.) if self.config.model.skip_rescale else a + b

  def _input_pyramid(self, level, h, pyramid_in, resample):
    """`model.progressive_input` after downsampling level `level`: (h, the input pyramid)."""
    m, dtype = self.config.model, resample['dtype']
    mode = m.progressive_input.lower()
    if mode == 'input_skip':  # Karras+20 input skips
      pyramid_in = layerspp.Downsample(**resample, name=f'down_{level}_pyramid_down')(pyramid_in)
      h = layerspp.Combine(m.progressive_combine.lower(), dtype=dtype,
                           name=f'down_{level}_combine')(pyramid_in, h)
    elif mode == 'residual':
      pyramid_in = layerspp.Downsample(out_ch=h.shape[-1], with_conv=True, **resample,
                                       name=f'down_{level}_pyramid_down')(pyramid_in)
      h = pyramid_in = self._rescaled_sum(pyramid_in, h)
    return h, pyramid_in

  def _output_pyramid(self, level, h, pyramid, resample):
    """`model.progressive` at upsampling level `level`: (h, the output pyramid)."""
    m, dtype = self.config.model, resample['dtype']
    mode, top = m.progressive.lower(), level == len(m.ch_mult) - 1
    act = layers.get_act(self.config)
    if mode == 'output_skip':  # Karras+20 output skips, summed through FIR upsampling
      if not top:
        pyramid = layerspp.Upsample(**resample, name=f'up_{level}_pyramid_up')(pyramid)
      head = act(group_norm(h.shape[-1], pp_groups, name=f'up_{level}_pyramid_norm')(h))
      head = conv3x3(self.config.data.num_channels, m.init_scale,
                     name=f'up_{level}_pyramid_conv', dtype=dtype)(head)
      pyramid = head if top else pyramid + head
    elif mode == 'residual' and top:
      pyramid = act(group_norm(h.shape[-1], pp_groups, name=f'up_{level}_pyramid_norm')(h))
      pyramid = conv3x3(h.shape[-1], name=f'up_{level}_pyramid_conv', dtype=dtype)(pyramid)
    elif mode == 'residual':
      pyramid = layerspp.Upsample(out_ch=h.shape[-1], with_conv=True, **resample,
                                  name=f'up_{level}_pyramid_up')(pyramid)
      h = pyramid = self._rescaled_sum(pyramid, h)
    return h, pyramid

  @nn.compact
  def __call__(self, x, labels, train=False, cond=None):
    m, channels = self.config.model, self.config.data.num_channels   # x may hold coords
    size = self.config.data.image_size
    act = layers.get_act(self.config)
    nf, ch_mult, n_res = m.nf, tuple(m.ch_mult), m.num_res_blocks
    biggan = m.resblock_type.lower() == 'biggan'
    progressive = m.progressive.lower()
    skip_rescale, dtype = m.skip_rescale, precision.compute_dtype(self.config)
    resample = dict(fir=m.fir, fir_kernel=tuple(m.fir_kernel), dtype=dtype)
    attn = functools.partial(remat(layerspp.AttnBlockpp, self.config), init_scale=m.init_scale,
                             skip_rescale=skip_rescale, dtype=dtype)
    common = dict(act=act, dropout=m.dropout, init_scale=m.init_scale, skip_rescale=skip_rescale)
    if biggan:
      res = functools.partial(remat(layerspp.ResnetBlockBigGANpp, self.config, static_argnums=(3,)),
                              **common, **resample)
    else:
      res = functools.partial(remat(layerspp.ResnetBlockDDPMpp, self.config, static_argnums=(3,)),
                              **common, dtype=dtype)

    temb, sigmas = self._embed(labels, cond, train)
    if not self.config.data.centered:
      x = 2 * x - 1.  # data in [0, 1] -> [-1, 1]

    # Downsampling path.
    pyramid_in = x
    hs = [conv3x3(nf, name='conv_in', dtype=dtype)(x)]
    for level, mult in enumerate(ch_mult):
      for i in range(n_res):
        h = res(out_ch=nf * mult, name=f'down_{level}_res_{i}')(hs[-1], temb, train)
        if (size >> level) in m.attn_resolutions:   # by level, as SongUNet (patches too)
          h = attn(name=f'down_{level}_attn_{i}')(h)
        hs.append(h)
      if level == len(ch_mult) - 1:
        break
      if biggan:
        h = res(down=True, name=f'down_{level}_resample')(hs[-1], temb, train)
      else:
        h = layerspp.Downsample(with_conv=m.resamp_with_conv, **resample, name=f'down_{level}_resample')(hs[-1])
      h, pyramid_in = self._input_pyramid(level, h, pyramid_in, resample)
      hs.append(h)

    h = res(name='mid_res_0')(hs[-1], temb, train)
    h = attn(name='mid_attn')(h)
    h = res(name='mid_res_1')(h, temb, train)

    # Upsampling path.
    pyramid = None
    for level in reversed(range(len(ch_mult))):
      for i in range(n_res + 1):
        h = res(out_ch=nf * ch_mult[level], name=f'up_{level}_res_{i}')(
            jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
      if (size >> level) in m.attn_resolutions:   # by level, as SongUNet (patches too)
        h = attn(name=f'up_{level}_attn')(h)
      h, pyramid = self._output_pyramid(level, h, pyramid, resample)
      if level != 0:
        if biggan:
          h = res(up=True, name=f'up_{level}_resample')(h, temb, train)
        else:
          h = layerspp.Upsample(with_conv=m.resamp_with_conv, **resample, name=f'up_{level}_resample')(h)

    if progressive == 'output_skip':
      h = pyramid
    else:
      h = act(group_norm(h.shape[-1], pp_groups, name='out_norm')(h))
      h = conv3x3(channels, m.init_scale, name='out_conv', dtype=dtype)(h)
    if m.scale_by_sigma:
      h = h / sigmas.reshape(-1, 1, 1, 1)
    return h
