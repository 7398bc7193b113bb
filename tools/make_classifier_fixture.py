"""Write tests/fixtures/classifier/: class-conditional sampling with a noise-conditional classifier
as yang-song/score_sde (JAX) does it (Song+21 App. I.4, Eq. 14, arXiv:2011.13456:
controllable_generation.get_pc_conditional_sampler, models/wideresnet_noise_conditional.py,
models.utils.create_classifier / get_logit_fn), on small random-weight networks:
  python tools/make_classifier_fixture.py --score_sde=<yang-song/score_sde> [--out=...]
Run it with today's JAX/Flax (the project's requirements) and ml_collections, tensorflow; the
official code runs from its checkout with a `flax.optim` shim (a type hint only, removed in Flax
0.6); its sampler's pmap runs as a vmap over the one device (the same named axis for its
pmean) and its fori_loop as a Python loop, so that every jax.random.normal of the loop is
replayed from the fixture in call order. Nothing is downloaded.

Two cases, each a folder of checkpoint_1 (a score_sde Flax State, msgpack as
flax.training.checkpoints writes it), classifier_checkpoint_1 (the WideResnet's params, msgpack,
what create_classifier restores), reference.npz, settings.json:
  .    VE NCSN++ of configs/ve/cifar10_ncsnpp_continuous.py, shrunk; reverse diffusion + Langevin,
       [0, 1] data, eps 1e-5 (the notebook's)
  vp/  VP DDPM++ of configs/vp/cifar10_ddpmpp_continuous.py, shrunk; Euler-Maruyama + Langevin
       (VP's α_i), [-1, 1] data (inverse scaler (x + 1) / 2), eps 1e-3 (score_sde's VP
       sampling_eps); the official sampler feeds the classifier VP's marginal std
"""
import argparse
import json
import os
import sys
import types

import numpy as np

from make_model_fixtures import random_weight

SHRINK = {'data.image_size': 8, 'model.nf': 8, 'model.ch_mult': (1, 2),
          'model.num_res_blocks': 1, 'model.attn_resolutions': (4,), 'model.num_scales': 50}
WRN = dict(blocks_per_group=1, channel_multiplier=1, num_outputs=10)   # the notebook's: 4, 10, 10
BATCH, SIZE = 4, 8
LABELS = np.array([0, 3, 7, 9], np.int32)
# per case: config, its overrides, predictor, data centered, eps, seed, the last kernels' gains
# (score net, classifier: both terms of Eq. 14 matter)
CASES = {
    '.': dict(config='ve/cifar10_ncsnpp_continuous', shrink={'model.sigma_max': 1},
              predictor='ReverseDiffusionPredictor', centered=False, eps=1e-5, seed=120,
              gains=(0.1, 10.)),
    'vp': dict(config='vp/cifar10_ddpmpp_continuous',
               shrink={'sampling.corrector': 'langevin', 'model.beta_max': 5.},
               predictor='EulerMaruyamaPredictor', centered=True, eps=1e-3, seed=121,
               gains=(3., 3.)),
}


def import_official(repo):
  import flax  # pylint: disable=import-outside-toplevel
  flax.optim = types.SimpleNamespace(Optimizer=object)
  sys.path.insert(0, repo)
  import importlib  # pylint: disable=import-outside-toplevel
  names = ('models.ncsnpp', 'models.utils', 'models.wideresnet_noise_conditional', 'sde_lib',
           'sampling', 'controllable_generation')
  peer = types.SimpleNamespace(**{n.split('.')[-1]: importlib.import_module(n) for n in names})
  peer.configs = {c['config']: importlib.import_module('configs.' + c['config'].replace('/', '.'))
                  for c in CASES.values()}
  return peer


def randomized(tree, rng, fourier_scale, out_gain=None):
  """Every leaf random (make_model_fixtures.random_weight, float16-exact); `out_gain` = (module
  name, factor) scales one kernel."""
  import flax  # pylint: disable=import-outside-toplevel
  flat = flax.traverse_util.flatten_dict(dict(tree), sep='/')
  out = {}
  for name in sorted(flat):
    shape = flat[name].shape
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    v = random_weight(rng, name, shape, fan_in, fourier_scale).astype(np.float32)
    if out_gain and name == out_gain[0]:
      v = v * out_gain[1]
    out[name] = v
  return flax.traverse_util.unflatten_dict(out, sep='/')


def score_model(peer, rng, case):
  config = peer.configs[case['config']].get_config()
  for key, value in dict(SHRINK, **case['shrink']).items():
    group, field = key.split('.')
    config[group][field] = value
  import jax  # pylint: disable=import-outside-toplevel
  model = peer.utils.get_model(config.model.name)(config=config)   # utils.init_model, whose
  variables = dict(model.init(                                      # FrozenDict.pop Flax changed
      {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)},
      jax.numpy.zeros((1, SIZE, SIZE, 3)), jax.numpy.zeros((1,), jax.numpy.int32)))
  params = variables.pop('params')
  model_state = variables
  last_conv, = [k for k, v in _flat(params).items()          # the output conv: 3 channels
                if k.startswith('Conv_') and k.endswith('/kernel') and v.shape[-1] == 3]
  ema = randomized(params, rng, config.model.fourier_scale, (last_conv, case['gains'][0]))
  raw = randomized(params, rng, config.model.fourier_scale)
  return config, model, dict(model_state), ema, raw, last_conv


def _flat(tree):
  import flax  # pylint: disable=import-outside-toplevel
  return flax.traverse_util.flatten_dict(dict(tree), sep='/')


def classifier(peer, rng, gain):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  net = peer.wideresnet_noise_conditional.WideResnet(**WRN)
  shapes = net.init({'params': jax.random.PRNGKey(1), 'dropout': jax.random.PRNGKey(0)},
                    jnp.ones((BATCH, SIZE, SIZE, 3)), jnp.ones((BATCH,)), train=False)['params']
  return net, randomized(shapes, rng, 16., ('Dense_2/kernel', gain))


def official_sde(peer, config):
  """(score_sde's SDE of `config` with x_T = latents · its prior std, prior std)."""
  m = config.model
  if config.training.sde == 'vesde':
    return peer.sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales), \
        m.sigma_max
  return peer.sde_lib.VPSDE(beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales), 1.


def conditional_samples(peer, case, config, model, model_state, ema, net, net_params, latents,
                        noise):
  """get_pc_conditional_sampler(SDE, score net, WideResnet, ...) as the notebook calls it, its
  x_T = latents · prior std and every jax.random.normal of the loop replaying `noise` [N, 2, B,
  ...] (per step: the Langevin draw [i, 1], then the predictor's draw [i, 0])."""
  import flax  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  sde, prior_std = official_sde(peer, config)
  sde.prior_sampling = lambda rng, shape: jnp.asarray(latents) * prior_std
  real_pmap, real_loop, real_normal = jax.pmap, jax.lax.fori_loop, jax.random.normal
  jax.pmap = lambda f, axis_name: jax.vmap(f, axis_name=axis_name)   # one device: the same
  inverse_scaler = (lambda x: (x + 1.) / 2.) if case['centered'] else (lambda x: x)
  fn = peer.controllable_generation.get_pc_conditional_sampler(
      sde, model, net, net_params, (BATCH, SIZE, SIZE, 3),
      getattr(peer.sampling, case['predictor']), peer.sampling.LangevinCorrector, inverse_scaler,
      snr=config.sampling.snr, n_steps=1, probability_flow=False, continuous=True, denoise=True,
      eps=case['eps'])

  @flax.struct.dataclass
  class State:
    params_ema: dict
    model_state: dict
  state = jax.tree.map(lambda a: jnp.asarray(a)[None], State(ema, model_state))
  order = noise[:, [1, 0]].reshape(-1, *noise.shape[2:])
  drawn = []

  def replay(rng, shape, dtype=jnp.float32):
    del rng
    drawn.append(shape)
    return jnp.asarray(order[len(drawn) - 1], dtype).reshape(shape)

  def loop(lower, upper, body, value):
    for i in range(lower, upper):
      value = body(i, value)
    return value
  jax.random.normal, jax.lax.fori_loop = replay, loop
  try:
    x = fn(jax.random.PRNGKey(0)[None], state, jnp.asarray(LABELS)[None])[0]
  finally:
    jax.pmap, jax.lax.fori_loop, jax.random.normal = real_pmap, real_loop, real_normal
  assert len(drawn) == len(order), len(drawn)
  return np.asarray(x)


def write_case(peer, name, case, out):
  import flax.serialization  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(case['seed'])
  config, model, model_state, ema, raw, last_conv = score_model(peer, rng, case)
  net, net_params = classifier(peer, rng, case['gains'][1])
  inputs = (0.5 + 0.25 * rng.standard_normal((BATCH, SIZE, SIZE, 3))).astype(np.float32)
  sigmas = np.array([0.01, 0.1, 1., 10.], np.float32)
  logits = np.asarray(peer.utils.get_logit_fn(net, net_params)(jnp.asarray(inputs),
                                                              jnp.asarray(sigmas)))
  latents = rng.standard_normal((BATCH, SIZE, SIZE, 3)).astype(np.float32)
  noise = rng.standard_normal((config.model.num_scales, 2, BATCH, SIZE, SIZE, 3))
  noise = noise.astype(np.float32)
  run = (peer, case, config, model, model_state, ema, net, net_params, latents, noise)
  x = conditional_samples(*run)
  assert np.array_equal(x, conditional_samples(*run))
  inside = float(((x > 0) & (x < 1)).mean())
  print(f'{name}: x in [{x.min():.3f}, {x.max():.3f}], unclipped {inside:.3f}, logits '
        f'{logits.std():.3f}')
  assert np.isfinite(x).all() and np.abs(x).max() < 50, x   # compared unclipped
  out = os.path.normpath(os.path.join(out, name))
  os.makedirs(out, exist_ok=True)
  state = {'step': 1, 'optimizer': {'target': raw, 'state': {'step': 1}}, 'lr': 2e-4,
           'model_state': model_state, 'ema_rate': config.model.ema_rate, 'params_ema': ema,
           'rng': np.zeros(2, np.uint32)}
  with open(os.path.join(out, 'checkpoint_1'), 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(state))
  with open(os.path.join(out, 'classifier_checkpoint_1'), 'wb') as f:
    f.write(flax.serialization.to_bytes(net_params))
  np.savez(os.path.join(out, 'reference.npz'), latents=latents, noise=noise, labels=LABELS,
           images=x, inputs=inputs, sigmas=sigmas, logits=logits)
  with open(os.path.join(out, 'settings.json'), 'w') as f:
    json.dump(settings(case, config, last_conv), f, indent=1)


def settings(case, config, last_conv):
  m = config.model
  sde = (f'VESDE({m.sigma_min}, {m.sigma_max}, N={m.num_scales})' if case['config'][:2] == 've'
         else f'VPSDE({m.beta_min}, {m.beta_max}, N={m.num_scales})')
  network = 'NCSNpp' if case['config'].startswith('ve') else 'NCSNpp (DDPM++ settings)'
  scaler = '(x + 1) / 2: [-1, 1]' if case['centered'] else 'identity: [0, 1]'
  score_gain, classifier_gain = case['gains']
  return dict(
      base_config=f'configs/{case["config"]}.py',
      overrides={k: list(v) if isinstance(v, tuple) else v
                 for k, v in dict(SHRINK, **case['shrink']).items()},
      classifier=WRN,
      official='yang-song/score_sde: controllable_generation.get_pc_conditional_sampler('
               f'{sde}, {network}, WideResnet(**classifier), params, (4, 8, 8, 3), '
               f'{case["predictor"]}, LangevinCorrector, inverse_scaler ({scaler} '
               f'data), snr={config.sampling.snr}, n_steps=1, continuous=True, denoise=True, '
               f'eps={case["eps"]})(rng, state, labels); logits: models.utils.get_logit_fn('
               'WideResnet, params)(inputs, sigmas)',
      notes='Every weight random (make_model_fixtures.random_weight: N(0, 1/fan_in) kernels, '
            '1 + 0.2 N norm scales, 0.2 N biases, Fourier W N(0, scale^2)); the score net\'s '
            f'output kernel ({last_conv}) x {score_gain} and the classifier\'s Dense_2 kernel '
            f'x {classifier_gain}, so that both terms of Eq. 14 move x. checkpoint_1: '
            'params_ema = those weights, optimizer.target = other random ones. '
            + ('sigma_max 1; ' if case['config'].startswith('ve') else '') +
            'a random score does not pull x to the data, so x spreads (compare it '
            'unclipped). images: the sampler\'s output x '
            '[4, 8, 8, 3] (x_mean of the last step), labels [0, 3, 7, 9]; latents: x_T / '
            'prior std; noise [N, 2, B, H, W, C]: [i, 0] the predictor\'s draw of step i, [i, 1] '
            'the Langevin corrector\'s, replayed into jax.random.normal (corrector, then '
            'predictor).')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--score_sde', required=True, help='checkout of yang-song/score_sde (JAX)')
  parser.add_argument('--out', default='tests/fixtures/classifier')
  parser.add_argument('--case', choices=sorted(CASES), help='one case only (default: all)')
  args = parser.parse_args()
  peer = import_official(os.path.abspath(args.score_sde))
  for name, case in CASES.items():
    if args.case in (None, name):
      write_case(peer, name, case, args.out)


if __name__ == '__main__':
  main()
