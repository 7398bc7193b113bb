"""ADM, the U-Net of Dhariwal & Nichol (registered as `adm`), as NVlabs/edm wrote it (DhariwalUNet).

Papers:
  Dhariwal&Nichol21  Diffusion Models Beat GANs on Image Synthesis, arXiv:2105.05233 (§3: BigGAN
    up/down residual blocks, adaptive group normalization, attention heads of 64 channels).
  Karras+22  Elucidating the Design Space of Diffusion-Based Generative Models, arXiv:2206.00364
    (ADM retrained on ImageNet-64 with EDM's preconditioning and loss; Table 2).
  Vaswani+17  Attention Is All You Need, arXiv:1706.03762 (positional embedding, attention).

F(x; c_noise, class, augment) [B, H, W, C] -> [B, H, W, data.num_channels], meant to run inside
`models.precond` (labels = c_noise; x as given, no rescaling). The config sets nf (EDM's
model_channels), ch_mult, num_res_blocks, attn_resolutions, dropout, class_conditional,
label_dropout and augment_dim; the rest is fixed by the design, as in DhariwalUNet: SiLU,
GroupNorm with min(32, C/4) groups and ε = 1e-5, an embedding of 4·nf channels, C // 64 heads
of attention (none where C < 64), box-filter downsampling and nearest upsampling (EDM's [1, 1]
filter), unit skip scale.

Submodules carry DhariwalUNet's names (`enc_16x16_block0` for `enc.16x16_block0`, inside it
norm0, conv0, affine, norm1, conv1, skip, norm2, qkv, proj), 3×3 convolutions are `nn.Conv`
(kernel HWIO), linear layers and 1×1 convolutions `layers.ChannelDense` (an `nn.Dense`, kernel
[in, out]); qkv keeps EDM's output-channel order (head, channel, q/k/v), so `foreign.adm.to_params`
only re-lays tensors out.
`model.dtype` is the compute dtype of the convolutions and dense layers of the blocks, with
attention logits and softmax in float32 as EDM's AttentionOp (the embedding MLP stays float32:
precision.py); `model.remat` rematerialises each UNetBlock (`models.utils.remat`).
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from models.utils import register_model, remat
import precision

EMB_MULT = 4            # embedding channels per model channel (EDM's channel_mult_emb)
HEAD_CHANNELS = 64      # channels per attention head (Dhariwal&Nichol21 §3)
MAX_POSITIONS = 10000   # positional embedding base (Vaswani+17 §3.5)

# EDM's initialisation: kaiming_uniform · √(1/3) = U(±1/√fan_in); zero for the last layer of each
# branch; biases start at zero here (EDM: U(±1/√fan_in)).
_INIT = nn.initializers.variance_scaling(1. / 3., 'fan_in', 'uniform')
_ZERO = nn.initializers.zeros


def adm_groups(channels):
  """GroupNorm groups in DhariwalUNet: min(32, C/4) (EDM's min_channels_per_group = 4)."""
  return min(32, channels // 4)


def _norm(channels, name):
  return layers.GroupNorm(num_groups=adm_groups(channels), epsilon=1e-5, name=name)


def _conv3x3(features, name, init=_INIT, dtype=None):
  return nn.Conv(features, (3, 3), padding='SAME', kernel_init=init, name=name, dtype=dtype)


def positional_embedding(labels, channels):
  """[B] -> [B, C]: [cos(c ω_i), sin(c ω_i)], ω_i = 10000^(−i/(C/2)), i < C/2 (Vaswani+17 §3.5
  without the endpoint, as EDM's PositionalEmbedding(endpoint=False))."""
  half = channels // 2
  freqs = (1. / MAX_POSITIONS) ** (jnp.arange(half, dtype=jnp.float32) / half)
  arg = labels.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=1)


class UNetBlock(nn.Module):
  """EDM's UNetBlock with ADM's settings (Dhariwal&Nichol21 §3, adaptive group normalization):

    h = conv0(resample(SiLU(GN(x)))),  (s, b) = affine(emb),  h = SiLU(b + GN(h)·(s + 1))
    x' = conv1(dropout(h)) + skip(resample(x));  then, with heads, x'' = x' + proj(MHA(GN(x')))

  skip is a 1×1 conv only when the width changes (else the identity); resample halves (2×2 mean)
  or doubles (nearest) the resolution for `down` / `up`.
  """
  out_ch: int
  up: bool = False
  down: bool = False
  attention: bool = False
  dropout: float = 0.
  dtype: Any = None

  def _dense(self, features, name, init=_INIT):
    return layers.ChannelDense(features, kernel_init=init, name=name, dtype=self.dtype)

  def _resample(self, x):
    if self.down:
      return layers.Downsample(with_conv=False)(x)
    return layers.Upsample(with_conv=False)(x) if self.up else x

  @nn.compact
  def __call__(self, x, emb, train=False):
    c, out = x.shape[-1], self.out_ch
    h = nn.silu(_norm(c, 'norm0')(x))
    if self.up:   # nearest upsampling commutes with convolutions: run them on the input grid
      h = layers.upsample_conv3x3(out, name='conv0', dtype=self.dtype, kernel_init=_INIT)(h)
    else:
      h = _conv3x3(out, 'conv0', dtype=self.dtype)(self._resample(h))
    scale, shift = jnp.split(self._dense(2 * out, 'affine')(emb), 2, axis=-1)
    h = nn.silu(shift[:, None, None, :] + _norm(out, 'norm1')(h) * (scale[:, None, None, :] + 1.))
    h = _conv3x3(out, 'conv1', init=_ZERO, dtype=self.dtype)(
        nn.Dropout(self.dropout)(h, deterministic=not train))
    skip = self._resample(x)
    if c != out:
      skip = self._dense(out, 'skip')(skip)
    x = h + skip
    heads = out // HEAD_CHANNELS if self.attention else 0
    return x + self._attend(x, heads) if heads else x

  def _attend(self, x, heads):
    """Multi-head self-attention over positions: softmax(q·k/√d) v, d = C/heads (Vaswani+17
    Eq. 1)."""
    b, hh, ww, c = x.shape
    if c % heads:
      raise ValueError(f'ADM attention: {c} channels do not split into {heads} heads')
    d = c // heads
    qkv = self._dense(3 * c, 'qkv')(_norm(c, 'norm2')(x))
    qkv = qkv.reshape(b, hh * ww, heads, d, 3)          # EDM's order: (head, channel, q/k/v)
    q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
    logits = jnp.einsum('bqhd,bkhd->bhqk', q.astype(jnp.float32),
                        (k / math.sqrt(d)).astype(jnp.float32))
    w = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    a = jnp.einsum('bhqk,bkhd->bqhd', w, v).reshape(b, hh, ww, c)
    return self._dense(c, 'proj', init=_ZERO)(a)


def _embedding(module, labels, cond, train):
  """emb = SiLU(L1(SiLU(L0(PE(c_noise) + A·aug))) + W·onehot) [B, 4·nf] (EDM's mapping).

  A (`map_augment`) and W (`map_label`, N(0, 1) init: EDM's √K-scaled kaiming_normal) have no
  bias; absent augment labels count as zeros (EDM skips the term). In training
  `model.label_dropout` zeroes each sample's class row with that probability (guidance).
  """
  m, cond = module.config.model, cond or {}
  emb = positional_embedding(labels, m.nf)
  if m.augment_dim:
    aug = cond.get('augment_labels', jnp.zeros(labels.shape[:1] + (m.augment_dim,), emb.dtype))
    emb = emb + nn.Dense(m.nf, use_bias=False, kernel_init=_ZERO, name='map_augment')(
        aug.astype(emb.dtype))
  emb = nn.silu(nn.Dense(EMB_MULT * m.nf, kernel_init=_INIT, name='map_layer0')(emb))
  emb = nn.Dense(EMB_MULT * m.nf, kernel_init=_INIT, name='map_layer1')(emb)
  if m.class_conditional:
    onehot = layers.class_onehot(module, module.config, cond, train, emb.dtype)
    emb = emb + nn.Dense(EMB_MULT * m.nf, use_bias=False, kernel_init=nn.initializers.normal(1.),
                         name='map_label')(onehot)
  return nn.silu(emb)


@register_model('adm')
class ADM(nn.Module):
  """DhariwalUNet: x [B, H, W, C], labels (c_noise) [B] -> [B, H, W, data.num_channels] (with
  model.learn_sigma the first C of its 2C output channels, as EDM's iDDPMPrecond reads them)."""
  config: Any

  @nn.compact
  def __call__(self, x, labels, train=False, cond=None):
    m, size = self.config.model, self.config.data.image_size   # names by level (patches too)
    emb, dtype = _embedding(self, labels, cond, train), precision.compute_dtype(self.config)
    unet_block = remat(UNetBlock, self.config, static_argnums=(3,))
    block = lambda out, name, **kw: unet_block(out, dropout=m.dropout, dtype=dtype, name=name,  # noqa: E731
                                               **kw)

    h = _conv3x3(m.nf * m.ch_mult[0], f'enc_{size}x{size}_conv', dtype=dtype)(x)
    skips = [h]
    for level, mult in enumerate(m.ch_mult):
      r = size >> level
      if level:
        h = block(h.shape[-1], f'enc_{r}x{r}_down', down=True)(h, emb, train)
        skips.append(h)
      for idx in range(m.num_res_blocks):
        h = block(m.nf * mult, f'enc_{r}x{r}_block{idx}', attention=r in m.attn_resolutions)(
            h, emb, train)
        skips.append(h)

    for level, mult in reversed(list(enumerate(m.ch_mult))):
      r = size >> level
      if level == len(m.ch_mult) - 1:
        h = block(h.shape[-1], f'dec_{r}x{r}_in0', attention=True)(h, emb, train)
        h = block(h.shape[-1], f'dec_{r}x{r}_in1')(h, emb, train)
      else:
        h = block(h.shape[-1], f'dec_{r}x{r}_up', up=True)(h, emb, train)
      for idx in range(m.num_res_blocks + 1):
        h = block(m.nf * mult, f'dec_{r}x{r}_block{idx}', attention=r in m.attn_resolutions)(
            jnp.concatenate([h, skips.pop()], axis=-1), emb, train)

    h = nn.silu(_norm(h.shape[-1], 'out_norm')(h))
    c = self.config.data.num_channels                # ADM's variance channels: unused here
    h = _conv3x3(c * (2 if m.learn_sigma else 1), 'out_conv', init=_ZERO, dtype=dtype)(h)
    return h[..., :c]
