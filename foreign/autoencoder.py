"""A diffusers `AutoencoderKL` weights file (Stable Diffusion's VAE) as `models.autoencoder` params.

  `load(path_or_url) -> (Arch, params)`     (cached per file)
  `read_for(config) -> (Arch, params)`: config.data.autoencoder's, its latents, scale and shift
                                         checked (a config.json beside the weights)

Files: `diffusion_pytorch_model.safetensors` (read here as data: an 8-byte header length, a JSON
header of {name: dtype, shape, offsets}, raw little-endian tensors) or `diffusion_pytorch_model.bin`
(a `torch.save` state dict, read by `foreign.torch_pickle`'s allow-list). Nothing in a file runs.
The architecture comes from the tensors' names and shapes (levels, layers per level, latent and
image channels, the quant convolutions); GroupNorm has 32 groups as in every Stable Diffusion VAE.
Attention weights may carry diffusers' old names (query / key / value / proj_attn, as
`stabilityai/sd-vae-ft-ema`'s first upload) or 1×1-convolution shapes. Stable Diffusion's original
(CompVis LDM) layout is read too (`from_ldm`): a VAE file such as vae-ft-mse-840000-ema-pruned
(.safetensors or .ckpt), or a whole model checkpoint's first_stage_model.*. Every tensor of the
VAE must be used and every shape match, else `AutoencoderFileError` names the tensor.
"""
import json
import os
import re
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from foreign import files, torch_pickle
from models import autoencoder as ae

_DTYPES = {'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16, 'F64': np.float64}
_OLD_ATTENTION = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out.0': 'proj_attn'}
_EXPECTED = ('expected a diffusers AutoencoderKL file (diffusion_pytorch_model.safetensors or '
             '.bin, e.g. https://huggingface.co/stabilityai/sd-vae-ft-ema) or an LDM / Stable '
             'Diffusion VAE or model checkpoint (.safetensors, .ckpt)')
_CACHE = {}


class AutoencoderFileError(ValueError):
  """The file is not a diffusers AutoencoderKL state dict this project can read."""


def read_safetensors(path):
  """{name: np.ndarray} of a .safetensors file, checked as data (sizes, offsets, dtypes)."""
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(8)
    n = struct.unpack('<Q', head)[0] if len(head) == 8 else -1
    if not 2 <= n <= min(size - 8, 100 << 20):
      raise AutoencoderFileError(f'{path}: not a safetensors file (header length {n} of a '
                                 f'{size}-byte file); {_EXPECTED}')
    try:
      header = json.loads(f.read(n))
    except ValueError as err:
      raise AutoencoderFileError(f'{path}: safetensors header is not JSON ({err})') from None
    data = f.read()
  if not isinstance(header, dict):
    raise AutoencoderFileError(f'{path}: safetensors header is not a JSON object')
  out = {}
  for name, meta in header.items():
    if name == '__metadata__':
      continue
    try:
      dtype, shape = np.dtype(_DTYPES[meta['dtype']]), tuple(int(s) for s in meta['shape'])
      begin, end = (int(o) for o in meta['data_offsets'])
    except (KeyError, TypeError, ValueError):
      raise AutoencoderFileError(f'{path}: tensor {name!r} has a malformed entry {meta!r} (dtypes '
                                 f'read: {", ".join(_DTYPES)})') from None
    if not 0 <= begin <= end <= len(data) or end - begin != dtype.itemsize * int(np.prod(shape)):
      raise AutoencoderFileError(f'{path}: tensor {name!r} {shape} {meta["dtype"]} does not fit '
                                 f'its bytes {begin}..{end} of {len(data)} (truncated file?)')
    out[name] = np.frombuffer(data, dtype, offset=begin, count=int(np.prod(shape))).reshape(shape)
  return out


def read_state_dict(path):
  with open(path, 'rb') as f:
    head = f.read(4)
  if head[:1] == b'\x80' or head[:2] == b'PK':
    obj = torch_pickle.read(path)
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
      obj = obj['state_dict']
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
      raise AutoencoderFileError(f'{path}: holds no state dict of tensors; {_EXPECTED}')
    return {str(k): v for k, v in obj.items()}
  return read_safetensors(path)


_LDM_PREFIXES = ('first_stage_model.', 'vae.', '')   # a whole LDM / SD checkpoint's VAE, or a VAE's
_LDM_NAMES = ((r'^encoder\.down\.(\d+)\.', r'encoder.down_blocks.\1.'),
              (r'\.block\.(\d+)\.', r'.resnets.\1.'), (r'\.downsample\.', '.downsamplers.0.'),
              (r'\.upsample\.', '.upsamplers.0.'), (r'\.nin_shortcut\.', '.conv_shortcut.'),
              (r'\.mid\.block_1\.', '.mid_block.resnets.0.'),
              (r'\.mid\.block_2\.', '.mid_block.resnets.1.'),
              (r'\.mid\.attn_1\.norm\.', '.mid_block.attentions.0.group_norm.'),
              (r'\.mid\.attn_1\.(q|k|v)\.', r'.mid_block.attentions.0.to_\1.'),
              (r'\.mid\.attn_1\.proj_out\.', '.mid_block.attentions.0.to_out.0.'),
              (r'^(encoder|decoder)\.norm_out\.', r'\1.conv_norm_out.'))


def from_ldm(sd):
  """`sd` under diffusers' names: an LDM (CompVis latent-diffusion, Stable Diffusion's original
  repository) VAE's tensors renamed (encoder.down.i.block.j -> down_blocks.i.resnets.j, decoder
  up.i -> up_blocks.(levels − 1 − i), mid.block_1 / attn_1, nin_shortcut, norm_out; attention as
  1×1 convolutions), taken from a whole checkpoint's first_stage_model.* where it is one (its other
  tensors, e.g. the UNet's or the training loss's, left out); a diffusers state dict unchanged."""
  prefix = next((p for p in _LDM_PREFIXES if f'{p}encoder.down.0.block.0.conv1.weight' in sd), None)
  if prefix is None:
    return sd
  vae = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and
         k[len(prefix):].split('.')[0] in ('encoder', 'decoder', 'quant_conv', 'post_quant_conv')}
  levels = _count(vae, r'decoder\.up\.(\d+)\.')
  out = {}
  for name, value in vae.items():
    name = re.sub(r'^decoder\.up\.(\d+)\.',
                  lambda m: f'decoder.up_blocks.{levels - 1 - int(m.group(1))}.', name)
    for pattern, replacement in _LDM_NAMES:
      name = re.sub(pattern, replacement, name)
    out[name] = value
  return out


def _count(sd, pattern):
  return len({m.group(1) for k in sd for m in [re.match(pattern, k)] if m})


def arch_of(sd, path):
  """models.autoencoder.Arch from the tensors' names and shapes."""
  try:
    levels = _count(sd, r'encoder\.down_blocks\.(\d+)\.')
    channels = tuple(sd[f'decoder.up_blocks.{levels - 1 - i}.resnets.0.conv1.weight'].shape[0]
                     for i in range(levels))
    return ae.Arch(channels=channels, layers=_count(sd, r'encoder\.down_blocks\.0\.resnets\.(\d+)\.'),
                   latent_channels=int(sd['decoder.conv_in.weight'].shape[1]),
                   quant_convs='quant_conv.weight' in sd,
                   image_channels=int(sd['decoder.conv_out.weight'].shape[0]))
  except (KeyError, IndexError):
    found = ', '.join(sorted(sd)[:4])
    raise AutoencoderFileError(f'{path}: no AutoencoderKL tensors (found {found}, ...); '
                               f'{_EXPECTED}') from None


def torch_name(path):
  """Our flattened parameter path -> diffusers' tensor name ('encoder/down_blocks_0_resnets_1/
  conv1/kernel' -> 'encoder.down_blocks.0.resnets.1.conv1.weight')."""
  *modules, leaf = path
  name = '.'.join(modules)
  name = re.sub(r'_(\d+)(_?)', lambda m: '.' + m.group(1) + ('.' if m.group(2) else ''), name)
  return f'{name}.{"bias" if leaf == "bias" else "weight"}'


def _tensor(sd, name, used):
  if name not in sd:
    module, _, leaf = name.rpartition('.')
    for new, old in _OLD_ATTENTION.items():
      if module.endswith(new):
        name = f'{module[:-len(new)]}{old}.{leaf}'
  used.add(name)
  return sd[name]


def to_params(sd, arch, path):
  """diffusers tensors -> our parameter tree (convolutions HWIO, dense layers IO)."""
  model = ae.AutoencoderKL(arch)
  x = jnp.zeros((1, 2 * arch.factor, 2 * arch.factor, arch.image_channels))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  flat, used = {}, set()
  for key, spec in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    key = tuple(k.key for k in key)
    name = torch_name(key)
    try:
      t = np.asarray(_tensor(sd, name, used), np.float32)
    except KeyError:
      raise AutoencoderFileError(f'{path}: tensor {name} missing ({arch})') from None
    if key[-1] == 'kernel':
      t = t.reshape(t.shape[:2]).T if len(spec.shape) == 2 else t.transpose(2, 3, 1, 0)
    if t.shape != spec.shape:
      raise AutoencoderFileError(f'{path}: tensor {name} has shape {t.shape} in our layout, the '
                                 f'network {arch} needs {spec.shape}')
    flat[key] = t
  unused = sorted(set(sd) - used)
  if unused:
    raise AutoencoderFileError(f'{path}: {len(unused)} tensor(s) the AutoencoderKL {arch} does not '
                               f'use: {", ".join(unused[:4])}')
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  return traverse_util.unflatten_dict(flat)


WEIGHTS = ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin')  # save_pretrained's
# A Hugging Face repository, or a folder of it as the browser shows it (ORG/NAME/tree/REV/vae).
_HF_REPO = r'https://huggingface\.co/([\w.-]+/[\w.-]+)(?:/tree/([\w.-]+)((?:/[\w.-]+)*))?/?'


def _hf_file(url, name):
  """The download URL of file `name` of a Hugging Face repository (folder) URL, else None."""
  m = re.fullmatch(_HF_REPO, url)
  return m and f'https://huggingface.co/{m[1]}/resolve/{m[2] or "main"}{m[3] or ""}/{name}'


def weights_file(path_or_url):
  """The weights file of a file, a URL, a folder diffusers' save_pretrained wrote, or a Hugging
  Face repository URL (https://huggingface.co/ORG/NAME: its safetensors file on main; a folder of
  it: https://huggingface.co/ORG/NAME/tree/REV/vae)."""
  if _hf_file(path_or_url, WEIGHTS[0]):
    return _hf_file(path_or_url, WEIGHTS[0])
  if not files.is_url(path_or_url) and not os.path.exists(path_or_url):
    raise AutoencoderFileError(f'data.autoencoder={path_or_url} does not exist; {_EXPECTED}')
  if os.path.isdir(path_or_url):
    found = [os.path.join(path_or_url, n) for n in WEIGHTS
             if os.path.isfile(os.path.join(path_or_url, n))]
    if not found:
      raise AutoencoderFileError(f'{path_or_url} holds neither {" nor ".join(WEIGHTS)}')
    return found[0]
  return path_or_url


def load(path_or_url):
  """(Arch, params) of a diffusers AutoencoderKL (`weights_file`), read once per file."""
  path = files.local_file(weights_file(path_or_url))
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
  if key not in _CACHE:
    sd = from_ldm(read_state_dict(path))
    arch = arch_of(sd, path)
    _CACHE[key] = arch, to_params(sd, arch, path)
  return _CACHE[key]


def stored_factors(path_or_url):
  """(scaling_factor, shift_factor) of the config.json diffusers' save_pretrained writes beside
  the weights (a folder, a file in one, a Hugging Face repository's), read as JSON data; None
  where there is none, or it names no scaling_factor."""
  if _hf_file(path_or_url, 'config.json'):
    path = files.local_file(_hf_file(path_or_url, 'config.json'))
  elif files.is_url(path_or_url):
    return None
  else:
    path = os.path.join(os.path.dirname(weights_file(path_or_url)), 'config.json')
    if not os.path.isfile(path):
      return None
  try:
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
    return float(stored['scaling_factor']), float(stored.get('shift_factor') or 0.)
  except (ValueError, TypeError, KeyError, AttributeError):
    return None


def read_for(config):
  """(Arch, params) of config.data.autoencoder, its latents checked against data.num_channels and
  its config.json's scaling and shift (`stored_factors`) against data.latent_scale, latent_shift."""
  d = config.data
  arch, params = load(d.autoencoder)
  if arch.latent_channels != d.num_channels:
    raise AutoencoderFileError(
        f'data.autoencoder={d.autoencoder} has {arch.latent_channels} latent channels, '
        f'data.num_channels={d.num_channels}: set '
        f'--config.data.num_channels={arch.latent_channels}')
  stored = stored_factors(d.autoencoder)
  if stored is not None and not np.allclose(stored, (d.latent_scale, d.latent_shift)):
    raise AutoencoderFileError(
        f'data.autoencoder={d.autoencoder}: its config.json has scaling_factor {stored[0]:g}, '
        f'shift_factor {stored[1]:g}, the config latent_scale {d.latent_scale:g}, latent_shift '
        f'{d.latent_shift:g}: set --config.data.latent_scale={stored[0]:g} '
        f'--config.data.latent_shift={stored[1]:g}')
  return arch, params


def precheck(config):
  """Read data.autoencoder once (kept for the run), or exit with one line naming the problem."""
  files.read_or_exit(lambda: read_for(config), 'data.autoencoder', config.data.autoencoder,
                     AutoencoderFileError)
