"""Classifier guidance on digits: Song+21's class-conditional sampling with a noise-conditional
classifier (App. I.4, Eq. 14, Fig. 4) reproduced on sklearn's 8×8 digits.

  python bench/classifier_guidance.py [--sde vesde] [--steps 1000] [--classifier_steps 1500]
                                      [--n 297] [--scale 1] [--workdir W]

A score model of --sde (score_sde's recipe on the quickstart network, as bench/digits_table.py's
SDE rows: DSM, no preconditioning; VE: σ 0.01..12 on [0, 1] digits, PC with reverse diffusion +
Langevin; VP / sub-VP: β 0.1..20 on [-1, 1] digits, Euler–Maruyama; edm: the quickstart's EDM
model, σ up to 80, Heun 18 steps, the classifier at log-uniform σ; 1000 steps) trains for
--steps, a noise-conditional WideResnet (`--mode=train_classifier`: 1 block per group, width ×1)
for --classifier_steps on the same noise; then --n samples with `sampling.classifier`, each asked
for a class drawn from its key, and the same keys without it. Each set is labeled
by digits_metric's classifier (an MLP on the digits train split): the share of samples labeled as
the class asked for, guided against unguided (where it is the chance that the unguided sample
happens to be that class), and each set's digits FD at n = min(--n, 297) (sample quality).
"""
import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
import classifier_lib
import digits_metric
import digits_table
import run_lib
import sampling
import streams
import utils


def config_for(args):
  plan = digits_table.Plan(steps=args.steps)
  if args.sde == 'edm':      # the quickstart's EDM model and Heun sampler (σ up to 80)
    config = digits_table._digits_config(plan)  # pylint: disable=protected-access
  else:
    config = digits_table._sde_config(args.sde, plan)  # pylint: disable=protected-access
  t, c = config.training, config.classifier
  t.n_iters, t.snapshot_sampling = args.steps, False
  t.snapshot_freq = t.snapshot_freq_for_preemption = t.eval_freq = args.steps
  c.blocks_per_group, c.widen, c.n_iters = 1, 1, args.classifier_steps
  c.snapshot_freq = c.log_freq = args.classifier_steps
  return config


def samples(config, run, state, n, classifier):
  """(images [n, 8, 8, 1] in [0, 1], the class asked of each [n]): one class per sample drawn
  from its key (sampling.class_label = -1), guided by `classifier` ('' unguided, same keys)."""
  config.sampling.class_label, config.sampling.classifier = -1, classifier
  keys = streams.sample_keys(streams.run_key(config, streams.SAMPLE_STREAM), n)
  images, _ = run_lib.make_sample_fn(run)(keys, state.ema_params)
  return np.clip(np.asarray(images), 0., 1.), np.asarray(sampling.class_labels(config, keys))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--sde', default='vesde', choices=['vesde', 'vpsde', 'subvpsde', 'edm'])
  parser.add_argument('--steps', type=int, default=1000, help='score-model training steps')
  parser.add_argument('--classifier_steps', type=int, default=1500)
  parser.add_argument('--n', type=int, default=297, help='samples, guided and unguided each')
  parser.add_argument('--scale', type=float, default=1., help='sampling.classifier_scale')
  parser.add_argument('--workdir', default='/tmp/classifier_guidance')
  args = parser.parse_args()
  utils.configure_cpu()
  config = config_for(args)
  config.sampling.classifier_scale = args.scale
  start = time.time()
  run_lib.train(config, args.workdir)
  classifier_lib.train(config, args.workdir)
  trained = time.time() - start
  path = os.path.join(args.workdir, 'classifier', f'checkpoint_{args.classifier_steps}')
  run = run_lib.build(config)
  state = run_lib.restore_newest(run, args.workdir)
  params = digits_metric.train_digits_classifier()
  reference = digits_metric.DigitsReference(params)
  shares, fds = [], []
  for classifier in (path, ''):
    images, asked = samples(config, run, state, args.n, classifier)
    logits = digits_metric._apply(images, params)[0]  # pylint: disable=protected-access
    labeled = np.argmax(logits, 1)
    shares.append(float(np.mean(labeled == asked)))
    fds.append(digits_metric.fd_at_n(reference.outputs(images)['features'],
                                     reference.train_stats, min(args.n, digits_table.N_SAMPLES)))
    print(f'{"guided" if classifier else "unguided"}: {shares[-1]:.1%} labeled as asked, digits FD '
          f'{fds[-1][0]:.2f} ({time.time() - start:.0f} s)', flush=True)
  print(f'\n{jax.devices()[0].device_kind}, {args.sde} score model {args.steps} steps, classifier '
        f'{args.classifier_steps} steps ({trained:.0f} s training), {args.n} samples each, scale '
        f'{args.scale}: share labeled as the class asked for {shares[0]:.1%} guided vs '
        f'{shares[1]:.1%} unguided; digits FD at n = '
        f'{min(args.n, digits_table.N_SAMPLES)}: {fds[0][0]:.2f} guided, {fds[1][0]:.2f} unguided;'
        f' {time.time() - start:.0f} s in all')


if __name__ == '__main__':
  main()
