"""Write tests/fixtures/official_param_counts.json: {config file: parameter count} of the
published network each leaf under configs/{edm,edm_es,pfgmpp,stf,patch}/ stands for, and
tests/fixtures/official_network_kwargs.json: {config file: {'precond': {'class_name',
'init_kwargs'}, 'unet': {...}}}, what a pickle of that network stores for its preconditioner
and its `model` (torch_utils.persistence: the meta of `__reduce__`, `class_name` and
`state['_init_kwargs']`, the constructor's keyword arguments as passed).

Each network is built with the official code, from the checkout given on the command line
(nothing is downloaded, no checkpoint is read), with the network options its train.py derives
from the flags the checkpoint was trained with (README commands), and counted as the official
code counts (training_loop.py's module summary, `misc.print_module_summary`):
`sum(p.numel() for p in net.parameters())` — registered buffers (SongUNet's Fourier
frequencies, `FourierEmbedding.freqs`) are not parameters there.

  python tools/count_official_params.py --edm=<NVlabs/edm> \
      --pfgmpp=<Newbeeer/pfgmpp> --stf=<Newbeeer/stf> \
      --patch=<Zhendong-Wang/Patch-Diffusion>   # checkouts; torch installed

Which code builds which entry: EDM's pkls and the EDM-ES leaves (EDM-ES samples EDM's pkls
unchanged) with NVlabs/edm; PFGM++ and STF checkpoints with their forks (EDMPrecond there only
adds attributes); Patch Diffusion with its `Patch_EDMPrecond`, whose UNet takes the image plus two
coordinate channels (training_loop.py: img_channels = C + 2, out_channels = C). The PFGM++
fork's training_loop.py passes `pfgmpp` and `D` (--pfgmpp, --aug_dim) to its EDMPrecond.
"""
import argparse
import json
import os
import sys

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'tests', 'fixtures')

# train.py --arch: the UNet options it sets (identical in NVlabs/edm and the four forks).
ARCH = {
    'ddpmpp': dict(model_type='SongUNet', embedding_type='positional', encoder_type='standard',
                   decoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1],
                   model_channels=128, channel_mult=[2, 2, 2]),
    'ncsnpp': dict(model_type='SongUNet', embedding_type='fourier', encoder_type='residual',
                   decoder_type='standard', channel_mult_noise=2, resample_filter=[1, 3, 3, 1],
                   model_channels=128, channel_mult=[2, 2, 2]),
    'adm': dict(model_type='DhariwalUNet', model_channels=192, channel_mult=[1, 2, 3, 4]),
}

# The train.py flags of each published network (README / repo tables). resolution, channels and
# label_dim are what train.py reads from the dataset zip.
CIFAR = dict(resolution=32, label_dim=0, augment=0.12, dropout=0.13, cres=None)
CIFAR_COND = dict(CIFAR, label_dim=10)
FFHQ = dict(resolution=64, label_dim=0, augment=0.15, dropout=0.05, cres=[1, 2, 2, 2])
AFHQV2 = dict(FFHQ, dropout=0.25)
CELEBA_PATCH = dict(resolution=64, label_dim=0, augment=0., dropout=0.05, cres=[1, 2, 2, 2])
IMAGENET = dict(resolution=64, label_dim=1000, augment=0., dropout=0.10, cres=None,
                fp16=True)                               # --fp16=1 (use_fp16)
# Patch Diffusion's published 256-px models: --arch=adm --train_on_latents=1 --fp16=1, on the
# 32x32x4 latents of Stable Diffusion's VAE (training_loop.py: img_channels 4 + 2, out_channels 4).
IMAGENET_LATENT = dict(resolution=32, label_dim=1000, augment=0., dropout=0.10, cres=None,
                       fp16=True, channels=4)
LSUN_LATENT = dict(IMAGENET_LATENT, label_dim=0)
# EDM's baselines (pretrained/baseline/, config A): score_sde's CIFAR-10 networks converted as they
# are: its widths (channel_mult [1, 2, 2, 2]), dropout 0.1, no augmentation. The ImageNet one is
# ADM (--arch=adm's widths, 1000 classes) in iDDPMPrecond, which gives it 2 x 3 output channels.
BASELINE = dict(resolution=32, label_dim=0, augment=0., dropout=0.1, cres=[1, 2, 2, 2])
# PFGM++ (README table): --pfgmpp=1 --aug_dim=D
CIFAR_D2048, CIFAR_D128 = dict(CIFAR, aug_dim=2048), dict(CIFAR, aug_dim=128)
CIFAR_COND_D2048, FFHQ_D128 = dict(CIFAR_COND, aug_dim=2048), dict(FFHQ, aug_dim=128)

# config file -> (repository, precond class, --arch, dataset flags)
ENTRIES = {
    # NVlabs/edm pretrained/edm-*.pkl
    'configs/edm/cifar10_ddpmpp.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR),          # uncond-vp
    'configs/edm/cifar10_ddpmpp_cond.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR_COND),  # cond-vp
    'configs/edm/cifar10_ncsnpp.py': ('edm', 'EDMPrecond', 'ncsnpp', CIFAR),          # uncond-ve
    'configs/edm/cifar10_ncsnpp_cond.py': ('edm', 'EDMPrecond', 'ncsnpp', CIFAR_COND),  # cond-ve
    'configs/edm/ffhq64_ddpmpp.py': ('edm', 'EDMPrecond', 'ddpmpp', FFHQ),
    'configs/edm/ffhq64_ncsnpp.py': ('edm', 'EDMPrecond', 'ncsnpp', FFHQ),
    'configs/edm/afhqv2_64_ddpmpp.py': ('edm', 'EDMPrecond', 'ddpmpp', AFHQV2),
    'configs/edm/afhqv2_64_ncsnpp.py': ('edm', 'EDMPrecond', 'ncsnpp', AFHQV2),
    'configs/edm/imagenet64_adm_cond.py': ('edm', 'EDMPrecond', 'adm', IMAGENET),
    'configs/edm/cifar10_baseline_vp.py': ('edm', 'VPPrecond', 'ddpmpp', BASELINE),
    'configs/edm/cifar10_baseline_ve.py': ('edm', 'VEPrecond', 'ncsnpp', BASELINE),
    'configs/edm/imagenet64_adm_baseline.py': ('edm', 'iDDPMPrecond', 'adm', IMAGENET),
    # forever208/EDM-ES: EDM's CIFAR-10 VP pkls
    'configs/edm_es/cifar10_uncond_heun.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR),
    'configs/edm_es/cifar10_uncond_euler.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR),
    'configs/edm_es/cifar10_cond_heun.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR_COND),
    'configs/edm_es/cifar10_cond_euler.py': ('edm', 'EDMPrecond', 'ddpmpp', CIFAR_COND),
    # Newbeeer/pfgmpp checkpoints (README table)
    'configs/pfgmpp/cifar10_ncsnpp.py': ('pfgmpp', 'EDMPrecond', 'ncsnpp', CIFAR_D2048),
    'configs/pfgmpp/cifar10_ncsnpp_d128.py': ('pfgmpp', 'EDMPrecond', 'ncsnpp', CIFAR_D128),
    'configs/pfgmpp/cifar10_ncsnpp_cond.py': ('pfgmpp', 'EDMPrecond', 'ncsnpp', CIFAR_COND_D2048),
    'configs/pfgmpp/ffhq64_ddpmpp_d128.py': ('pfgmpp', 'EDMPrecond', 'ddpmpp', FFHQ_D128),
    # Newbeeer/stf checkpoints (README table)
    'configs/stf/cifar10_ncsnpp.py': ('stf', 'EDMPrecond', 'ncsnpp', CIFAR),
    'configs/stf/cifar10_ddpmpp.py': ('stf', 'EDMPrecond', 'ddpmpp', CIFAR),
    # Zhendong-Wang/Patch-Diffusion README recipes (no pixel-space checkpoint is published) and
    # its Hugging Face files (latent ADM)
    'configs/patch/celeba64_ddpmpp.py': ('patch', 'Patch_EDMPrecond', 'ddpmpp', CELEBA_PATCH),
    'configs/patch/ffhq64_ddpmpp.py': ('patch', 'Patch_EDMPrecond', 'ddpmpp', CELEBA_PATCH),
    'configs/patch/imagenet256_adm_latent_cond.py': ('patch', 'Patch_EDMPrecond', 'adm',
                                                     IMAGENET_LATENT),
    'configs/patch/lsun256_adm_latent.py': ('patch', 'Patch_EDMPrecond', 'adm', LSUN_LATENT),
}


def network_kwargs(precond, arch, data):
  """The kwargs train.py + training_loop.py pass to the precond class, in their order
  (`construct_class_by_name(**network_kwargs, **interface_kwargs)`)."""
  kw = dict(ARCH[arch])
  if data['cres'] is not None:
    kw['channel_mult'] = data['cres']                  # --cres
  if data['augment']:
    kw['augment_dim'] = 9                              # --augment > 0
  kw.update(dropout=data['dropout'], use_fp16=data.get('fp16', False))
  channels = data.get('channels', 3)                   # 4: latents of Stable Diffusion's VAE
  kw.update(img_resolution=data['resolution'], img_channels=channels)
  if precond == 'Patch_EDMPrecond':                    # Patch-Diffusion training_loop.py
    kw.update(img_channels=channels + 2, out_channels=channels)
  kw['label_dim'] = data['label_dim']
  if 'aug_dim' in data:                                # Newbeeer/pfgmpp training_loop.py
    kw.update(pfgmpp=True, D=data['aug_dim'])
  return kw


def stored(module):
  """{'class_name', 'init_kwargs'} as torch_utils.persistence pickles `module` (the `meta` its
  `__reduce__` writes: the original class name and the state's `_init_kwargs`)."""
  meta = module.__reduce__()[1][0]
  return {'class_name': meta['class_name'], 'init_kwargs': meta['state']['_init_kwargs']}


def import_networks(checkout):
  """The checkout's training.networks, with any previously imported checkout's modules dropped."""
  for name in list(sys.modules):
    if name.split('.')[0] in ('training', 'torch_utils', 'dnnlib'):
      del sys.modules[name]
  sys.path.insert(0, checkout)
  try:
    import training.networks  # pylint: disable=import-outside-toplevel
    return training.networks
  finally:
    sys.path.remove(checkout)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  for repo in ('edm', 'pfgmpp', 'stf', 'patch'):
    parser.add_argument(f'--{repo}', required=True, help=f'checkout of the {repo} repository')
  parser.add_argument('--out', default=FIXTURES, help='folder for the two JSON files')
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  counts, kwargs = {}, {}
  for repo in ('edm', 'pfgmpp', 'stf', 'patch'):
    networks = import_networks(getattr(args, repo))
    for config, (entry_repo, precond, arch, data) in ENTRIES.items():
      if entry_repo != repo:
        continue
      # shapes only, nothing allocated or initialised (VPPrecond and iDDPMPrecond compute their
      # sigma_min on the CPU)
      with torch.device('cpu' if precond in ('VPPrecond', 'iDDPMPrecond') else 'meta'):
        net = getattr(networks, precond)(**network_kwargs(precond, arch, data))
      counts[config] = sum(p.numel() for p in net.parameters())
      kwargs[config] = {'precond': stored(net), 'unet': stored(net.model)}
      print(f'{config}: {counts[config]:,} ({repo} {precond} --arch={arch})')
  for name, table in (('official_param_counts.json', counts),
                      ('official_network_kwargs.json', kwargs)):
    with open(os.path.join(args.out, name), 'w') as f:
      json.dump(dict(sorted(table.items())), f, indent=1)
      f.write('\n')


if __name__ == '__main__':
  main()
