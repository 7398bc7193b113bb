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
  flux(os.path.join(out, 'flux'), x)


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
