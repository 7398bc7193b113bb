"""Write tests/fixtures/autoencoder/: a small random diffusers AutoencoderKL and its outputs.

The network: diffusers' own AutoencoderKL class (Stable Diffusion VAE layout, Rombach+22
arXiv:2112.10752) with block_out_channels (32, 64) (f = 2; widths that change between levels, as
sd-vae-ft-ema's 128-256-512-512, so the shortcut convolutions are there), two layers per block (as
there), 4 latent channels, 32 GroupNorm groups, random weights (N(0, 1/fan_in) weights, 1 + 0.2 N norm scales, 0.2 N biases).
Written as diffusers writes it: `save_pretrained` -> config.json + diffusion_pytorch_model.safetensors;
and `old_names.bin`: the same tensors in float16 under diffusers' deprecated attention names
(query / key / value / proj_attn, as `stabilityai/sd-vae-ft-ema`'s first upload), by `torch.save`.
reference.npz: x [2, 16, 16, 3] in [-1, 1], diffusers' `encode(x).latent_dist` mean and logvar,
`decode(mean).sample`, and the float16 file's decode, all channels last.
ldm.ckpt: the same VAE in float16 as Stable Diffusion's original (CompVis latent-diffusion)
checkpoints hold it: `state_dict` of first_stage_model.encoder.down.0.block.0.conv1.weight, ...
(attention as 1×1 convolutions) beside a UNet tensor, by `torch.save`; diffusers' own converter
(`convert_ldm_vae_checkpoint`, what `AutoencoderKL.from_single_file` runs) gives back exactly the
diffusers tensors from it (checked here), so its decode is reference.npz's `decoded_f16`.
flux/: the layout of Flux's and SD3's VAEs (no quant convolutions, 16 latent channels; one layer
per block to stay small) with Flux's scaling_factor 0.3611 and shift_factor 0.1159 in its
config.json; its reference.npz: x, the mean, `latents` = (mean − shift) · scale (as diffusers'
Flux training scripts encode) and `decoded` = decode(latents / scale + shift) (as FluxPipeline
decodes). Nothing is downloaded:
  python tools/make_autoencoder_fixture.py --out=tests/fixtures/autoencoder
(torch==2.13.0 CPU, diffusers 0.42.1, safetensors)."""
import argparse
import os

import numpy as np
import torch

from fixture_common import nhwc, randomize

OLD = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out.0': 'proj_attn'}


def old_name(name):
  for new, old in OLD.items():
    name = name.replace(f'attentions.0.{new}.', f'attentions.0.{old}.')
  return name


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--out', default='tests/fixtures/autoencoder')
  out = parser.parse_args().out
  from diffusers import AutoencoderKL  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64),
                      down_block_types=('DownEncoderBlock2D',) * 2,
                      up_block_types=('UpDecoderBlock2D',) * 2, layers_per_block=2,
                      latent_channels=4, norm_num_groups=32, sample_size=16).eval()
  randomize(vae, 301)
  os.makedirs(out, exist_ok=True)
  vae.save_pretrained(out, safe_serialization=True)
  half = {old_name(k): v.to(torch.float16) for k, v in vae.state_dict().items()}
  torch.save(half, os.path.join(out, 'old_names.bin'))
  x = torch.rand([2, 3, 16, 16], generator=torch.Generator().manual_seed(1)) * 2 - 1
  with torch.no_grad():
    dist = vae.encode(x).latent_dist
    decoded = vae.decode(dist.mean).sample
    vae16 = AutoencoderKL.from_config(vae.config).eval()
    vae16.load_state_dict({k: v.to(torch.float16).to(torch.float32)
                           for k, v in vae.state_dict().items()})
    decoded16 = vae16.decode(dist.mean).sample
  arrays = dict(x=x, mean=dist.mean, logvar=dist.logvar, decoded=decoded, decoded_f16=decoded16)
  np.savez(os.path.join(out, 'reference.npz'),
           **{k: nhwc(v).astype(np.float32) for k, v in arrays.items()})
  print({k: (tuple(v.shape), float(v.std())) for k, v in arrays.items()})
  ldm(out, vae)
  flux(os.path.join(out, 'flux'), x)


LDM_NAMES = (('encoder.down_blocks.', 'encoder.down.'), ('.resnets.', '.block.'),
             ('.downsamplers.0.', '.downsample.'), ('.upsamplers.0.', '.upsample.'),
             ('.conv_shortcut.', '.nin_shortcut.'), ('conv_norm_out.', 'norm_out.'),
             ('mid_block.block.0.', 'mid.block_1.'), ('mid_block.block.1.', 'mid.block_2.'),
             ('mid_block.attentions.0.group_norm.', 'mid.attn_1.norm.'),
             ('mid_block.attentions.0.to_out.0.', 'mid.attn_1.proj_out.'))


def ldm_name(name, levels):
  """A diffusers AutoencoderKL tensor's name in an LDM checkpoint (decoder levels reversed)."""
  if name.startswith('decoder.up_blocks.'):
    i, rest = name[len('decoder.up_blocks.'):].split('.', 1)
    name = f'decoder.up.{levels - 1 - int(i)}.{rest}'
  for new, old in LDM_NAMES:
    name = name.replace(new, old)
  for q in 'qkv':
    name = name.replace(f'mid_block.attentions.0.to_{q}.', f'mid.attn_1.{q}.')
  return name


def ldm(out, vae):
  """`out`/ldm.ckpt (float16, under first_stage_model.), checked with diffusers' converter."""
  from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint  # pylint: disable=import-outside-toplevel
  sd, levels = vae.state_dict(), len(vae.config.block_out_channels)
  state = {}
  for k, v in sd.items():
    v = v.to(torch.float16)
    if '.attentions.' in k and k.endswith('weight') and v.ndim == 2:
      v = v[:, :, None, None]                       # LDM's attention: 1×1 convolutions
    state[f'first_stage_model.{ldm_name(k, levels)}'] = v
  back = convert_ldm_vae_checkpoint(state, vae.config)
  assert set(back) == set(sd), set(back) ^ set(sd)
  for k, v in sd.items():
    assert torch.equal(back[k], v.to(torch.float16)), k
  state['model.diffusion_model.out.2.bias'] = torch.zeros(4)    # a UNet tensor: not the VAE's
  torch.save({'state_dict': state, 'global_step': 0}, os.path.join(out, 'ldm.ckpt'))


def flux(out, x):
  """`out`/: Flux's VAE layout, its scale and shift, and the pipelines' encode / decode of x."""
  from diffusers import AutoencoderKL  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64),
                      down_block_types=('DownEncoderBlock2D',) * 2,
                      up_block_types=('UpDecoderBlock2D',) * 2, layers_per_block=1,
                      latent_channels=16, norm_num_groups=32, sample_size=16,
                      scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                      use_post_quant_conv=False).eval()
  randomize(vae, 302)
  os.makedirs(out, exist_ok=True)
  vae.save_pretrained(out, safe_serialization=True)
  scale, shift = vae.config.scaling_factor, vae.config.shift_factor
  with torch.no_grad():
    mean = vae.encode(x).latent_dist.mean
    latents = (mean - shift) * scale
    decoded = vae.decode(latents / scale + shift).sample
  arrays = dict(x=x, mean=mean, latents=latents, decoded=decoded)
  np.savez(os.path.join(out, 'reference.npz'),
           **{k: nhwc(v).astype(np.float32) for k, v in arrays.items()})
  print({k: (tuple(v.shape), float(v.std())) for k, v in arrays.items()})


if __name__ == '__main__':
  main()
