"""Write tests/fixtures/inception_torch.npz: pytorch-fid's FID Inception outputs on fixed inputs.

Run in a venv with torch + torchvision + pytorch-fid (pip install --no-deps pytorch-fid):

  /tmp/fidvenv/bin/python tools/make_inception_fixture.py
  /tmp/fidvenv/bin/python tools/make_inception_fixture.py --check-loaders   # + jax flax optax
                                                                            # scikit-learn ml_collections

No weights are downloaded: every tensor of the state dict is made by `recipe_tensor(name, shape)`,
a NumPy function of the tensor's name and shape that tests/test_evaluation.py calls too, so the
fixture stores only the names and shapes, the inputs and the outputs (0.7 MB, mostly the random
test images, instead of 95 MB of weights).
pytorch-fid's own `InceptionV3` (resize, normalisation, FID blocks) is built with its weight loader
swapped for the recipe. Outputs:
  names_json           JSON [[name, shape], ...] of the pytorch-fid state dict
  edm_names_json       JSON [[edm name, pytorch-fid name], ...]: EDM's detector (TF names) per tensor
  images_up / _down    uint8 NHWC [2, 32, 40, 3] / [2, 320, 311, 3] (upsampled / downsampled to 299)
  pool_3_*, logits_*   pytorch-fid pool3 [2, 2048] and fc logits [2, 1008] for each image set
  pool_3_edm           pool3 of images_up with EDM's detector input handling (TF1 'asymmetric'
                       bilinear resize via affine_grid/grid_sample, then (x - 128) / 128)
"""
import json
import os
import sys
import zlib

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'fixtures',
                   'inception_torch.npz')


def _hash_uniform(n, seed):
  """n numbers in [-1, 1) from an integer hash of (index, seed): exact on any NumPy version."""
  u = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503))
  u &= np.uint64(0xFFFFFFFF)
  for _ in range(2):
    u ^= u >> np.uint64(16)
    u = (u * np.uint64(0x45D9F3B)) & np.uint64(0xFFFFFFFF)
  u ^= u >> np.uint64(16)
  return u.astype(np.float64) / 2.0 ** 31 - 1.0


def recipe_tensor(name, shape):
  """Deterministic float32 tensor for state-dict entry `name` (no RNG state, same on any machine).

  Uniform [-1, 1) numbers from an integer hash of the flat index and crc32(name), scaled like a He
  init for conv/linear weights (so the signal neither dies nor explodes through 94 convolutions)
  and to plausible BatchNorm statistics otherwise.
  """
  n = int(np.prod(shape))
  u = _hash_uniform(n, zlib.crc32(name.encode()))
  if name.endswith('running_var'):
    v = 1.0 + 0.2 * u
  elif name.endswith('running_mean'):
    v = 0.05 * u
  elif name.endswith('bn.weight'):
    v = 1.0 + 0.2 * u
  elif name.endswith('bias'):
    v = 0.02 * u
  elif len(shape) >= 2:                        # conv OIHW or linear [out, in]: He-uniform
    v = u * np.sqrt(6.0 / int(np.prod(shape[1:])))
  else:
    v = u
  return v.reshape(shape).astype(np.float32)


# EDM's detector names (TF graph), independent transcription: block kind -> [(TF name, torchvision name)].
_TF_BLOCKS = {
    'A': 'conv:branch1x1 tower.conv:branch5x5_1 tower.conv_1:branch5x5_2 tower_1.conv:branch3x3dbl_1 '
         'tower_1.conv_1:branch3x3dbl_2 tower_1.conv_2:branch3x3dbl_3 tower_2.conv:branch_pool',
    'B': 'conv:branch3x3 tower.conv:branch3x3dbl_1 tower.conv_1:branch3x3dbl_2 tower.conv_2:branch3x3dbl_3',
    'C': 'conv:branch1x1 tower.conv:branch7x7_1 tower.conv_1:branch7x7_2 tower.conv_2:branch7x7_3 '
         'tower_1.conv:branch7x7dbl_1 tower_1.conv_1:branch7x7dbl_2 tower_1.conv_2:branch7x7dbl_3 '
         'tower_1.conv_3:branch7x7dbl_4 tower_1.conv_4:branch7x7dbl_5 tower_2.conv:branch_pool',
    'D': 'tower.conv:branch3x3_1 tower.conv_1:branch3x3_2 tower_1.conv:branch7x7x3_1 '
         'tower_1.conv_1:branch7x7x3_2 tower_1.conv_2:branch7x7x3_3 tower_1.conv_3:branch7x7x3_4',
    'E': 'conv:branch1x1 tower_conv:branch3x3_1 tower_mixed_conv:branch3x3_2a '
         'tower_mixed_conv_1:branch3x3_2b tower_1_conv:branch3x3dbl_1 tower_1_conv_1:branch3x3dbl_2 '
         'tower_1_mixed_conv:branch3x3dbl_3a tower_1_mixed_conv_1:branch3x3dbl_3b tower_2_conv:branch_pool',
}
_TF_LAYERS = ('conv:Conv2d_1a_3x3 conv_1:Conv2d_2a_3x3 conv_2:Conv2d_2b_3x3 conv_3:Conv2d_3b_1x1 '
              'conv_4:Conv2d_4a_3x3 mixed:Mixed_5b:A mixed_1:Mixed_5c:A mixed_2:Mixed_5d:A '
              'mixed_3:Mixed_6a:B mixed_4:Mixed_6b:C mixed_5:Mixed_6c:C mixed_6:Mixed_6d:C '
              'mixed_7:Mixed_6e:C mixed_8:Mixed_7a:D mixed_9:Mixed_7b:E mixed_10:Mixed_7c:E')


def edm_names():
  """[(EDM tensor name, pytorch-fid tensor name)] for every tensor EDM's detector holds."""
  convs = []
  for item in _TF_LAYERS.split():
    parts = item.split(':')
    if len(parts) == 2:
      convs.append((f'layers.{parts[0]}', parts[1]))
    else:
      for pair in _TF_BLOCKS[parts[2]].split():
        tf, tv = pair.split(':')
        convs.append((f'layers.{parts[0]}.{tf}', f'{parts[1]}.{tv}'))
  out = []
  for tf, tv in convs:   # the TF graph's BN has no gamma: beta, moving mean and variance only
    out += [(f'{tf}.weight', f'{tv}.conv.weight'), (f'{tf}.beta', f'{tv}.bn.bias'),
            (f'{tf}.mean', f'{tv}.bn.running_mean'), (f'{tf}.var', f'{tv}.bn.running_var')]
  return out + [('output.weight', 'fc.weight'), ('output.bias', 'fc.bias')]


def _edm_input(torch, x):
  """EDM detector input handling on uint8-valued NCHW floats, transcribed from its TorchScript code."""
  b, c, h, w = x.shape
  theta = torch.eye(2, 3, dtype=torch.float32)
  theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
  theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
  grid = torch.nn.functional.affine_grid(theta.unsqueeze(0).repeat([b, 1, 1]), [b, c, 299, 299], False)
  x = torch.nn.functional.grid_sample(x, grid, 'bilinear', 'border', False)
  return (x - 128.0) / 128.0


def main():
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  from pytorch_fid import inception as pfi  # pylint: disable=import-outside-toplevel
  torch.set_grad_enabled(False)
  skeleton = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                             init_weights=False)
  shapes = [(k, list(v.shape)) for k, v in skeleton.state_dict().items()]
  state = {k: torch.from_numpy(recipe_tensor(k, s)) if 'num_batches' not in k else torch.tensor(0)
           for k, s in shapes}
  pfi.load_state_dict_from_url = lambda *a, **k: state   # pytorch-fid's loader, minus the download
  net = pfi.InceptionV3([3]).eval()
  rng = np.random.RandomState(0)
  out = {'names_json': np.array(json.dumps(shapes)), 'edm_names_json': np.array(json.dumps(edm_names()))}
  for tag, hw in (('up', (32, 40)), ('down', (320, 311))):
    images = rng.randint(0, 256, size=(2,) + hw + (3,)).astype(np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.   # pytorch-fid's ToTensor
    pool = net(x)[0].flatten(1)
    out[f'images_{tag}'] = images
    out[f'pool_3_{tag}'] = pool.numpy()
    out[f'logits_{tag}'] = torch.nn.functional.linear(pool, state['fc.weight'], state['fc.bias']).numpy()
  x = torch.from_numpy(out['images_up']).permute(0, 3, 1, 2).float()
  no_resize = pfi.InceptionV3([3], resize_input=False, normalize_input=False).eval()
  out['pool_3_edm'] = no_resize(_edm_input(torch, x))[0].flatten(1).numpy()
  for k in ('pool_3_up', 'pool_3_down', 'logits_up'):
    print(k, 'mean %.4g std %.4g' % (out[k].mean(), out[k].std()))
  np.savez_compressed(OUT, **out)
  print('wrote', OUT, os.path.getsize(OUT), 'bytes')


def check_loaders():
  """`--check-loaders` (needs torch and jax/flax in the same venv): evaluation.load_inception on real
  torch files: torch.save zip and legacy (pytorch-fid's 2019 .pth) formats, a TorchScript archive and
  a plain-pickled nn.Module tree in EDM's naming; each must give the same params."""
  # pylint: disable=import-outside-toplevel
  import pickle
  import tempfile
  import jax
  import torch
  import torchvision
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import evaluation
  skeleton = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                             init_weights=False)
  sd = {k: torch.from_numpy(recipe_tensor(k, list(v.shape))) if 'num_batches' not in k else v
        for k, v in skeleton.state_dict().items()}
  ref = jax.tree.leaves(evaluation.load_inception({k: v.numpy() for k, v in sd.items()})['params'])
  edm = torch.nn.Module()
  for tf_name, tv_name in edm_names():
    *path, leaf = tf_name.split('.')
    node = edm
    for p in path:
      if not hasattr(node, p):
        node.add_module(p, torch.nn.Module())
      node = getattr(node, p)
    node.register_parameter(leaf, torch.nn.Parameter(sd[tv_name].clone()))

  class Wrap(torch.nn.Module):   # scriptable holder: torch.jit.save writes a TorchScript archive
    def __init__(self, inner):
      super().__init__()
      self.layers, self.output = inner.layers, inner.output

    def forward(self, x):
      return x

  tmp = tempfile.mkdtemp()
  files = {'zip.pth': lambda f: torch.save(sd, f),
           'legacy.pth': lambda f: torch.save(sd, f, _use_new_zipfile_serialization=False),
           'script.pt': lambda f: torch.jit.save(torch.jit.script(Wrap(edm)), f),
           'module.pkl': lambda f: open(f, 'wb').write(pickle.dumps(edm))}
  for name, write in files.items():
    path = os.path.join(tmp, name)
    write(path)
    got = evaluation.load_inception(path)
    same = all(np.array_equal(a, b) or (a.ndim == 1 and np.all(np.asarray(a) == 1))
               for a, b in zip(jax.tree.leaves(got['params']), ref))
    print(f'{name:11s} {got["preprocessing"]:12s} params equal: {same}')
    assert same, name


if __name__ == '__main__':
  if '--check-loaders' in sys.argv:
    check_loaders()
  else:
    main()
