"""The peers' own code timed on the workloads of bench/model_forward.py and bench/edm_sampler.py.

A standalone script for a Python with torch (scoreflow never imports it; the two bench scripts run
it in a subprocess right after their own measurement when given --peer_python). The peer code is
imported at run time from the checkouts given (nothing of it is copied here):
  --score_sde_pytorch DIR   yang-song/score_sde_pytorch: NCSN++ "config A" (VE continuous)
  --edm DIR                 NVlabs/edm: the small DDPM++ SongUNet in EDMPrecond (1,771,203 params)

  TORCH_PYTHON bench/peers.py --score_sde_pytorch DIR --edm DIR [--batch 8] [--repeats 10]
      [--threads 2] [--pc_steps 4] [--check]
--check only imports torch and the peers' modules and prints {} (the benches run it before their
own measurement, so that a Python or checkout that cannot run the peer fails in seconds).
Needs torch (CPU wheel), numpy, scipy, ml_collections (score_sde_pytorch's configs) and requests
(imported by EDM's dnnlib); torchvision is not needed. score_sde_pytorch's CUDA kernels are not
built (`torch.utils.cpp_extension.load` is stubbed): its pure-PyTorch FIR path runs, as on any CPU.

Prints one JSON object on stdout, {workload: seconds, the minimum over the repeats}:
  ncsnpp_forward          config A forward (eval mode, no grad)
  ncsnpp_train_step       score_sde's VE continuous DSM loss (½ sum, λ = σ², Song+21 Eq. 7) +
                          global-norm clipping at 1 + Adam, their losses.py (no EMA, as ours)
  ncsnpp_pc_step          their PC sampler (reverse diffusion + Langevin, snr 0.16) over
                          --pc_steps noise levels, divided by the steps: 2 NFE per step
  ncsnpp_likelihood_nfe   their likelihood.py bits/dim (RK45 through scipy, rtol = atol = 1e-5,
                          from t = 1e-5), divided by its NFE (each NFE: drift + Hutchinson
                          divergence, i.e. two forwards and one vjp)
  edm_forward             EDMPrecond forward at σ = 1.3 (eval mode, no grad)
  edm_train_step          EDMLoss + Adam with EDM's lr ramp and its EMA update (training_loop.py)
  edm_heun                18-step Heun (35 NFE) in float64 (Karras+22 Alg. 2, generate.py)
  conv B,H,W,C,O          with --convs "B,H,W,C,O;...": one 3×3 'same' torch conv2d (the kernel
                          both peers' networks call) per listed shape, no checkout needed
                          (bench/conv_share.py); --conv_grad: each with its backward pass
The slow workloads (PC, likelihood, Heun) repeat max(2, repeats // 4) times, as ours; the PC
and likelihood workloads run config A's initial weights, before its train step, as ours do.
"""
import argparse
import json
import sys
import time
import types

import numpy as np


def best(fn, repeats, warmup=1):
  """Minimum wall time of `fn()` over `repeats` calls, after `warmup` calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def time_convs(torch, shapes, repeats, grad=False, per_call=10):
  """{'conv B,H,W,C,O': seconds of one 3×3 conv2d (padding 1) of [B, C, H, W] to O channels},
  timed as `per_call` convolutions of independent inputs in a row, as a network runs them;
  `grad`: each with its backward pass (input and weight gradients)."""
  out = {}
  conv = torch.nn.functional.conv2d
  for shape in shapes:
    b, h, w, c, o = shape
    xs = [torch.randn(b, c, h, w, requires_grad=grad) for _ in range(per_call)]
    weight = torch.randn(o, c, 3, 3, requires_grad=grad)
    cotangent = torch.randn(b, o, h, w)
    if grad:
      seconds = best(lambda: [conv(x, weight, padding=1).backward(cotangent) for x in xs],
                     repeats)
    else:
      with torch.no_grad():
        seconds = best(lambda: [conv(x, weight, padding=1) for x in xs], repeats)
    out['conv ' + ','.join(map(str, shape))] = seconds / per_call
  return out


# --- yang-song/score_sde_pytorch ---------------------------------------------------------------

def import_score_sde(root):
  """score_sde_pytorch's modules from the checkout `root`, without its CUDA kernel build."""
  import torch.utils.cpp_extension  # pylint: disable=import-outside-toplevel
  torch.utils.cpp_extension.load = lambda *a, **k: None   # pure-PyTorch upfirdn2d on CPU
  sys.path.insert(0, root)
  # pylint: disable=import-outside-toplevel
  import likelihood
  import losses
  import sampling
  import sde_lib
  from models import ncsnpp
  return types.SimpleNamespace(likelihood=likelihood, losses=losses, sampling=sampling,
                               sde_lib=sde_lib, ncsnpp=ncsnpp)


def config_a():
  """NCSN++ "config A" (bench/model_forward.py) as score_sde_pytorch's config fields."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(dict(
      training=dict(continuous=True, sde='vesde'),
      data=dict(image_size=32, num_channels=3, centered=False),
      model=dict(name='ncsnpp', sigma_min=0.01, sigma_max=50., num_scales=1000, beta_min=0.1,
                 beta_max=20., dropout=0.1, embedding_type='fourier', fourier_scale=16.,
                 scale_by_sigma=True, nonlinearity='swish', nf=32, ch_mult=(1, 2, 2, 2),
                 num_res_blocks=1, attn_resolutions=(16,), resamp_with_conv=True,
                 conditional=True, fir=True, fir_kernel=[1, 3, 3, 1], skip_rescale=True,
                 resblock_type='biggan', progressive='none', progressive_input='residual',
                 progressive_combine='sum', init_scale=0.),
      optim=dict(optimizer='Adam', lr=2e-4, beta1=0.9, eps=1e-8, weight_decay=0., warmup=0,
                 grad_clip=1.)))


def inference(torch, model, x, sigma):
  """A no-argument call of `model(x, sigma)` in eval mode without autograd."""
  def forward():
    model.eval()
    with torch.no_grad():
      model(x, sigma)
  return forward


def time_score_sde(root, batch, repeats, pc_steps):
  """Seconds of the four config A workloads (module docstring); the samplers run before the train
  step, on the initial weights (training them moves the ODE's NFE, not the cost of one)."""
  import torch  # pylint: disable=import-outside-toplevel
  sd = import_score_sde(root)
  config = config_a()
  model = sd.ncsnpp.NCSNpp(config)
  sde = sd.sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)
  x = torch.rand(batch, 3, 32, 32)
  sigma = torch.ones(batch)
  out = {}

  out['ncsnpp_forward'] = best(inference(torch, model, x, sigma), repeats)

  slow = max(2, repeats // 4)
  pc_sde = sd.sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, pc_steps)
  pc = sd.sampling.get_pc_sampler(
      pc_sde, (batch, 3, 32, 32), sd.sampling.get_predictor('reverse_diffusion'),
      sd.sampling.get_corrector('langevin'), lambda v: v, snr=0.16, n_steps=1,
      continuous=True, denoise=True, eps=1e-5, device='cpu')
  out['ncsnpp_pc_step'] = best(lambda: pc(model), slow) / pc_steps

  bpd = sd.likelihood.get_likelihood_fn(sde, lambda v: v, rtol=1e-5, atol=1e-5, eps=1e-5)
  nfe = bpd(model, x)[2]              # the warm-up call
  out['ncsnpp_likelihood_nfe'] = best(lambda: bpd(model, x), slow, warmup=0) / nfe

  loss_fn = sd.losses.get_sde_loss_fn(sde, train=True, reduce_mean=False, continuous=True,
                                      likelihood_weighting=False)
  optimizer = sd.losses.get_optimizer(config, model.parameters())
  optimize_fn = sd.losses.optimization_manager(config)

  def train_step():
    optimizer.zero_grad()
    loss_fn(model, x).backward()
    optimize_fn(optimizer, model.parameters(), step=1)
  out['ncsnpp_train_step'] = best(train_step, repeats)
  return out


# --- NVlabs/edm --------------------------------------------------------------------------------

def small_songunet(root):
  """EDM's small DDPM++ (bench/edm_sampler.py): SongUNet 32 px, 32 channels, mult [1, 2, 2, 2],
  one block, attention at 16, under EDMPrecond (train.py --arch=ddpmpp widths made small)."""
  sys.path.insert(0, root)
  from training import loss, networks  # pylint: disable=import-outside-toplevel
  net = networks.EDMPrecond(
      img_resolution=32, img_channels=3, model_type='SongUNet', model_channels=32,
      channel_mult=[1, 2, 2, 2], num_blocks=1, attn_resolutions=[16], dropout=0.13,
      embedding_type='positional', encoder_type='standard', decoder_type='standard',
      channel_mult_noise=1, resample_filter=[1, 1])
  return net, loss.EDMLoss()


def heun(torch, net, latents, steps=18, sigma_min=0.002, sigma_max=80., rho=7.):
  """EDM's deterministic sampler (Karras+22 Alg. 2, S_churn = 0) in float64, as generate.py."""
  f64 = torch.float64
  i = torch.arange(steps, dtype=f64)
  t = (sigma_max ** (1 / rho) + i / (steps - 1)
       * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho       # Karras+22 Eq. 5
  t = torch.cat([net.round_sigma(t), torch.zeros(1, dtype=f64)])        # t_N = 0
  x = latents.to(f64) * t[0]                                             # Alg. 2 line 2
  for n in range(steps):
    d = (x - net(x, t[n]).to(f64)) / t[n]                                # Alg. 2 line 7
    x_next = x + (t[n + 1] - t[n]) * d                                   # Alg. 2 line 8
    if n < steps - 1:                                                    # Alg. 2 line 9
      d_prime = (x_next - net(x_next, t[n + 1]).to(f64)) / t[n + 1]     # Alg. 2 line 10
      x_next = x + (t[n + 1] - t[n]) * (0.5 * d + 0.5 * d_prime)        # Alg. 2 line 11
    x = x_next
  return x


def time_edm(root, batch, repeats):
  """Seconds of EDM's forward, train step and 18-step Heun (module docstring)."""
  import copy  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  net, loss_fn = small_songunet(root)
  x = torch.randn(batch, 3, 32, 32)
  sigma = torch.full((batch,), 1.3)
  out = {}

  out['edm_forward'] = best(inference(torch, net, x, sigma), repeats)

  ema = copy.deepcopy(net).eval().requires_grad_(False)
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
  nimg = [0]

  def train_step():      # training_loop.py's step: lr ramp (10 Mimg), nan_to_num, Adam, EMA
    net.train()
    optimizer.zero_grad(set_to_none=True)
    loss_fn(net=net, images=x).sum().mul(1. / batch).backward()
    for group in optimizer.param_groups:
      group['lr'] = 1e-3 * min(nimg[0] / 10e6, 1.)
    for p in net.parameters():
      torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
    optimizer.step()
    beta = 0.5 ** (batch / max(min(500e3, nimg[0] * 0.05), 1e-8))   # half-life 500 kimg, ramp 0.05
    with torch.no_grad():
      for p_ema, p_net in zip(ema.parameters(), net.parameters()):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))
    nimg[0] += batch
  out['edm_train_step'] = best(train_step, repeats)

  net.eval()
  with torch.no_grad():
    out['edm_heun'] = best(lambda: heun(torch, net, x), max(2, repeats // 4))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--score_sde_pytorch', help='checkout of yang-song/score_sde_pytorch')
  parser.add_argument('--edm', help='checkout of NVlabs/edm')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--pc_steps', type=int, default=4)
  parser.add_argument('--convs', default='', help='"B,H,W,C,O;...": time 3x3 convolutions')
  parser.add_argument('--conv_grad', action='store_true', help='--convs with their backward')
  parser.add_argument('--check', action='store_true', help='import the peers, time nothing')
  args = parser.parse_args(argv)
  import torch  # pylint: disable=import-outside-toplevel
  if args.check:
    if args.score_sde_pytorch:
      import_score_sde(args.score_sde_pytorch)
      config_a()
    if args.edm:
      small_songunet(args.edm)
    print('{}')
    return
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  np.random.seed(0)
  out = {}
  if args.score_sde_pytorch:
    out.update(time_score_sde(args.score_sde_pytorch, args.batch, args.repeats, args.pc_steps))
  if args.edm:
    out.update(time_edm(args.edm, args.batch, args.repeats))
  if args.convs:
    shapes = [tuple(int(v) for v in item.split(',')) for item in args.convs.split(';')]
    out.update(time_convs(torch, shapes, args.repeats, args.conv_grad))
  print(json.dumps(out))


if __name__ == '__main__':
  main()
