"""Write a published-size EDM network snapshot (CIFAR-10 cond DDPM++, 55,735,299 parameters) with
NVlabs/edm's own code, as its training loop pickles one, for `bench/load_checkpoint.py`.

  python tools/make_big_edm_pickle.py --edm=PATH_TO_NVlabs_edm --out=/tmp/edm-big.pkl

Needs torch (CPU wheel) and a checkout of NVlabs/edm; the weights are EDM's random init.
"""
import argparse
import copy
import pickle
import sys


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--edm', required=True, help='NVlabs/edm checkout')
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  sys.path.insert(0, args.edm)
  import dnnlib  # pylint: disable=import-outside-toplevel,import-error
  import torch  # pylint: disable=import-outside-toplevel,import-error
  torch.set_num_threads(1)
  net = dnnlib.util.construct_class_by_name(   # EDM train.py --arch=ddpmpp --cond=1 --augment=0.12
      class_name='training.networks.EDMPrecond', img_resolution=32, img_channels=3, label_dim=10,
      model_type='SongUNet', embedding_type='positional', encoder_type='standard',
      decoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1], model_channels=128,
      channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13, use_fp16=False)
  ema = copy.deepcopy(net).eval().requires_grad_(False)
  with open(args.out, 'wb') as f:
    pickle.dump(dict(ema=ema, loss_fn=None, augment_pipe=None,
                     dataset_kwargs=dnnlib.EasyDict(path='cifar10-32x32.zip')), f)
  print(f'{args.out}: {sum(p.numel() for p in net.parameters()):,} parameters')


if __name__ == '__main__':
  main()
