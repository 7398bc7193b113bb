"""Inception-v3, FID variant: the TF 2015-12-05 graph used by TTUR, pytorch-fid, torch-fidelity and EDM.

Szegedy+16 "Rethinking the Inception Architecture" (arXiv:1512.00567) with the FID graph's quirks
(Heusel+17, arXiv:1706.08500): 1008 classes, average pools that do not count padding, and a max pool
(not an average pool) in the last block. Module names follow torchvision / pytorch-fid
(`Mixed_5b.branch5x5_1`), so a pytorch-fid state dict maps name for name; EDM's detector
(a translation of the same graph, TF layer names `layers.mixed.tower.conv`) maps through
`EDM_TO_TORCHVISION`. Layout is NHWC; a conv's BatchNorm is folded in at inference (eps 1e-3).

This module holds the network and the name maps only; file loading, input handling and metrics
live in `evaluation.py`.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BN_EPS = 1e-3      # BatchNorm epsilon of the TF graph (torchvision's BasicConv2d uses the same)
NUM_CLASSES = 1008  # the 2015-12-05 graph has 1008 logits (1000 ImageNet classes + 8 unused)
POOL_DIM = 2048    # pool_3 feature size


def _pad(p):
  """Symmetric (ph, pw) padding -> lax padding pairs."""
  return ((p[0], p[0]), (p[1], p[1]))


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm with running statistics -> ReLU, as torchvision's BasicConv2d."""
  features: int                 # output channels
  kernel: tuple = (1, 1)        # (kh, kw)
  strides: tuple = (1, 1)
  padding: tuple = (0, 0)       # symmetric zero padding (ph, pw)

  @nn.compact
  def __call__(self, x):
    c = self.features
    kernel = self.param('kernel', nn.initializers.lecun_normal(), self.kernel + (x.shape[-1], c))
    scale = self.param('scale', nn.initializers.ones, (c,))    # BN gamma (all ones in the TF graph)
    bias = self.param('bias', nn.initializers.zeros, (c,))     # BN beta
    mean = self.param('mean', nn.initializers.zeros, (c,))     # BN running mean
    var = self.param('var', nn.initializers.ones, (c,))        # BN running variance
    y = jax.lax.conv_general_dilated(
        x, kernel, self.strides, _pad(self.padding), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision=jax.lax.Precision.HIGHEST)
    y = (y - mean) * (scale * jax.lax.rsqrt(var + BN_EPS)) + bias   # Ioffe+15 BN, inference form
    return nn.relu(y)


def _avg_pool_same(x):
  """3x3/1 average pool with padding 1 that averages only real pixels (TF 'SAME' pooling)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride, pad):
  return nn.max_pool(x, (3, 3), (stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name='branch1x1')(x)
    b5 = BasicConv(48, name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, name='branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """35 -> 17 reduction (Mixed_6a)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), (2, 2), name='branch3x3')(x)
    bd = BasicConv(64, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), (2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = BasicConv(192, name='branch1x1')(x)
    b7 = BasicConv(c7, name='branch7x7_1')(x)
    b7 = BasicConv(c7, **row, name='branch7x7_2')(b7)
    b7 = BasicConv(192, **col, name='branch7x7_3')(b7)
    bd = BasicConv(c7, name='branch7x7dbl_1')(x)
    bd = BasicConv(c7, **col, name='branch7x7dbl_2')(bd)
    bd = BasicConv(c7, **row, name='branch7x7dbl_3')(bd)
    bd = BasicConv(c7, **col, name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, **row, name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, name='branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """17 -> 8 reduction (Mixed_7a)."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), (2, 2), name='branch3x3_2')(b3)
    b7 = BasicConv(192, name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), (2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with split 1x3/3x1 branches (Mixed_7b: average pool; Mixed_7c: max pool, a quirk
  of the FID graph)."""
  pool: str  # 'avg' or 'max'

  @nn.compact
  def __call__(self, x):
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
    b1 = BasicConv(320, name='branch1x1')(x)
    b3 = BasicConv(384, name='branch3x3_1')(x)
    b3 = [BasicConv(384, **row, name='branch3x3_2a')(b3), BasicConv(384, **col, name='branch3x3_2b')(b3)]
    bd = BasicConv(448, name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = [BasicConv(384, **row, name='branch3x3dbl_3a')(bd), BasicConv(384, **col, name='branch3x3dbl_3b')(bd)]
    pooled = _avg_pool_same(x) if self.pool == 'avg' else _max_pool(x, 1, 1)
    bp = BasicConv(192, name='branch_pool')(pooled)
    return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """FID Inception-v3 on normalised NHWC input [B, 299, 299, 3] in [-1, 1].

  Returns a dict: `pool_3` [B, 2048] (the FID features), `logits` [B, 1008] and `logits_unbiased`
  [B, 1008] (the logits without the output bias, which torch-fidelity and StyleGAN/EDM use for IS).
  """

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), (2, 2), name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool(x, 2, 0)
    x = BasicConv(80, name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool(x, 2, 0)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE('avg', name='Mixed_7b')(x)
    x = InceptionE('max', name='Mixed_7c')(x)
    pool = jnp.mean(x, axis=(1, 2))   # pool_3: global average (8x8 at 299 input)
    fc = nn.Dense(NUM_CLASSES, name='fc', precision=jax.lax.Precision.HIGHEST)
    logits = fc(pool)
    unbiased = logits - fc.variables['params']['bias']
    return {'pool_3': pool, 'logits': logits, 'logits_unbiased': unbiased}


# ----------------------------------------------------------------------------------------------
# Name maps. Our parameter tree uses torchvision names; EDM's detector uses the TF graph's names.

def _block_map(kind):
  """(EDM sub-name, torchvision sub-name) pairs of one mixed block of `kind` A/B/C/D/E."""
  if kind == 'A':
    return [('conv', 'branch1x1'), ('tower.conv', 'branch5x5_1'), ('tower.conv_1', 'branch5x5_2'),
            ('tower_1.conv', 'branch3x3dbl_1'), ('tower_1.conv_1', 'branch3x3dbl_2'),
            ('tower_1.conv_2', 'branch3x3dbl_3'), ('tower_2.conv', 'branch_pool')]
  if kind == 'B':
    return [('conv', 'branch3x3'), ('tower.conv', 'branch3x3dbl_1'),
            ('tower.conv_1', 'branch3x3dbl_2'), ('tower.conv_2', 'branch3x3dbl_3')]
  if kind == 'C':
    return ([('conv', 'branch1x1'), ('tower_2.conv', 'branch_pool')]
            + [(f'tower.{n}', f'branch7x7_{i + 1}') for i, n in enumerate(['conv', 'conv_1', 'conv_2'])]
            + [(f'tower_1.{n}', f'branch7x7dbl_{i + 1}')
               for i, n in enumerate(['conv', 'conv_1', 'conv_2', 'conv_3', 'conv_4'])])
  if kind == 'D':
    return ([('tower.conv', 'branch3x3_1'), ('tower.conv_1', 'branch3x3_2')]
            + [(f'tower_1.{n}', f'branch7x7x3_{i + 1}')
               for i, n in enumerate(['conv', 'conv_1', 'conv_2', 'conv_3'])])
  return [('conv', 'branch1x1'), ('tower_conv', 'branch3x3_1'), ('tower_mixed_conv', 'branch3x3_2a'),
          ('tower_mixed_conv_1', 'branch3x3_2b'), ('tower_1_conv', 'branch3x3dbl_1'),
          ('tower_1_conv_1', 'branch3x3dbl_2'), ('tower_1_mixed_conv', 'branch3x3dbl_3a'),
          ('tower_1_mixed_conv_1', 'branch3x3dbl_3b'), ('tower_2_conv', 'branch_pool')]


def _edm_to_torchvision():
  """{EDM conv prefix: torchvision conv prefix} for all 94 convolutions."""
  table = {'layers.conv': 'Conv2d_1a_3x3', 'layers.conv_1': 'Conv2d_2a_3x3',
           'layers.conv_2': 'Conv2d_2b_3x3', 'layers.conv_3': 'Conv2d_3b_1x1',
           'layers.conv_4': 'Conv2d_4a_3x3'}
  blocks = [('mixed', 'Mixed_5b', 'A'), ('mixed_1', 'Mixed_5c', 'A'), ('mixed_2', 'Mixed_5d', 'A'),
            ('mixed_3', 'Mixed_6a', 'B'), ('mixed_4', 'Mixed_6b', 'C'), ('mixed_5', 'Mixed_6c', 'C'),
            ('mixed_6', 'Mixed_6d', 'C'), ('mixed_7', 'Mixed_6e', 'C'), ('mixed_8', 'Mixed_7a', 'D'),
            ('mixed_9', 'Mixed_7b', 'E'), ('mixed_10', 'Mixed_7c', 'E')]
  for edm, tv, kind in blocks:
    for e, t in _block_map(kind):
      table[f'layers.{edm}.{e}'] = f'{tv}.{t}'
  return table


EDM_TO_TORCHVISION = _edm_to_torchvision()

# Suffixes of one conv's tensors: ours -> accepted spellings (pytorch-fid first, then EDM's TF names).
CONV_SUFFIXES = {'kernel': ('conv.weight', 'weight'), 'scale': ('bn.weight', 'gamma'),
                 'bias': ('bn.bias', 'beta'), 'mean': ('bn.running_mean', 'mean'),
                 'var': ('bn.running_var', 'var')}
IGNORED_SUFFIXES = ('num_batches_tracked',)


def abstract_params():
  """Parameter shapes of `InceptionV3` without computing anything (a tree of ShapeDtypeStruct)."""
  x = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
  return jax.eval_shape(lambda: InceptionV3().init(jax.random.key(0), jnp.zeros(x.shape)))['params']


def convert_state_dict(state_dict, prefix_map=None):
  """Torch-style {name: array} -> our Flax params (NumPy float32), checking every tensor.

  Args:
    state_dict: names as in pytorch-fid (`Mixed_5b.branch1x1.conv.weight`, `fc.weight`) or, with
      `prefix_map=EDM_TO_TORCHVISION`, as in EDM's detector (`layers.mixed.conv.weight`,
      `...beta/mean/var`, `output.weight`). Values: arrays with torch layouts (OIHW, [out, in]).
    prefix_map: {source conv prefix: torchvision conv prefix}; None for pytorch-fid names.
  Raises:
    ValueError listing missing, unused or mis-shaped tensors.
  """
  sd = {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith(IGNORED_SUFFIXES)}
  fc = 'fc' if prefix_map is None else 'output'
  used, missing, params = set(), [], {}
  inverse = None if prefix_map is None else {v: k for k, v in prefix_map.items()}
  flat = jax.tree_util.tree_flatten_with_path(abstract_params())[0]
  for path, spec in flat:
    keys = [p.key for p in path]
    if keys[0] == 'fc':
      src_names = [f'{fc}.weight' if keys[1] == 'kernel' else f'{fc}.bias']
    else:
      tv_prefix = '.'.join(keys[:-1])
      src_prefix = tv_prefix if inverse is None else inverse[tv_prefix]
      src_names = [f'{src_prefix}.{s}' for s in CONV_SUFFIXES[keys[-1]]]
    name = next((n for n in src_names if n in sd), None)
    if name is None:
      if keys[-1] == 'scale':   # the TF graph has no BN gamma: EDM's file stores none
        value = np.ones(spec.shape, np.float32)
      else:
        missing.append(src_names[0])
        continue
    else:
      used.add(name)
      value = np.asarray(sd[name], np.float32)
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value   # OIHW -> HWIO
      value = value.T if value.ndim == 2 else value                       # [out, in] -> [in, out]
    if value.shape != spec.shape:
      missing.append(f'{name} has shape {value.shape}, expected {spec.shape} (after transpose)')
      continue
    _set(params, keys, value)
  unused = sorted(set(sd) - used)
  if missing or unused:
    raise ValueError(f'Inception state dict does not match the FID Inception-v3: {len(missing)} '
                     f'missing/mis-shaped (first: {missing[:3]}), {len(unused)} unused (first: {unused[:3]})')
  return params


def _set(tree, keys, value):
  for k in keys[:-1]:
    tree = tree.setdefault(k, {})
  tree[keys[-1]] = value
