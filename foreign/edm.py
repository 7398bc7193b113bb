"""NVlabs/edm checkpoints (and its forks': EDM-ES, STF, PFGM++, Patch Diffusion) as our config
fields and parameters.

Files (NVlabs/edm training/training_loop.py): `network-snapshot-*.pkl` is
`pickle.dump(dict(ema=net, loss_fn=..., augment_pipe=..., dataset_kwargs=...))`;
`training-state-*.pt` is `torch.save(dict(net=net, optimizer_state=adam.state_dict()))`. `net` is
a preconditioner (`EDMPrecond`, `VPPrecond`, `VEPrecond`, `iDDPMPrecond`; PFGM++'s EDMPrecond adds
`pfgmpp`, `D`; Patch Diffusion's `Patch_EDMPrecond`) around a `SongUNet` (DDPM++ / NCSN++, our
`ddpm` / `ncsnpp`) or `DhariwalUNet` (ADM, our `adm`). All of it is read as data (`foreign.torch_pickle`);
the constructor arguments EDM's persistence stored (`_init_kwargs`) describe the network.
"""
import math

import numpy as np

from foreign import adm, songunet, torch_pickle
from models import precond as mprecond
import schedules

PRECONDS = {'EDMPrecond': 'edm', 'Patch_EDMPrecond': 'edm', 'VPPrecond': 'vp', 'VEPrecond': 've',
            'iDDPMPrecond': 'iddpm'}
IDDPM_FIXED = {'C_1': schedules.IDDPM_C1, 'C_2': schedules.IDDPM_C2, 'M': schedules.IDDPM_M}
UNETS = {'SongUNet': songunet, 'DhariwalUNet': adm}
PRECOND_KWARGS = ('beta_d', 'beta_min', 'M', 'epsilon_t', 'sigma_min', 'sigma_max', 'C_1',
                'C_2')   # the preconditioners' own, read here


class NotANetworkError(ValueError):
  """The file is readable but holds no EDM-style network."""


def read(path):
  """(ema, net, optimizer_state) of a network snapshot or training state, as data (None where
  the file lacks one; at least one network is there)."""
  return unpack(torch_pickle.read(path), path)


def unpack(obj, source):
  """(ema, net, optimizer_state) of an unpickled EDM snapshot ({'ema'}), training state
  ({'net', 'optimizer_state'}) or PFGM++ training state (both networks)."""
  get = lambda key: obj.get(key) if isinstance(obj, dict) else None   # noqa: E731
  ema, net = get('ema'), get('net')
  ema = ema if isinstance(ema, torch_pickle.Persistent) else None
  net = net if isinstance(net, torch_pickle.Persistent) else None
  if ema is None and net is None:
    found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise NotANetworkError(f'{source}: holds {found}, not an NVlabs/edm network snapshot (a dict '
                           f"with 'ema') or training state (with 'net'); pass a "
                           f'network-snapshot-*.pkl')
  return ema, net, (get('optimizer_state') if net is not None else None)


def _unet(net):
  if net.class_name not in PRECONDS:
    raise NotANetworkError(f'preconditioner {net.class_name} is not supported (one of '
                           f'{", ".join(sorted(PRECONDS))})')
  unet = torch_pickle.child(net, 'model')
  if unet is None or getattr(unet, 'class_name', None) not in UNETS:
    name = getattr(unet, 'class_name', None)
    raise NotANetworkError(f'network {name} inside {net.class_name} is not supported (one of '
                           f'{", ".join(sorted(UNETS))})')
  return unet


def describe(net):
  """(architecture fields, fields to check): {dotted config field: value} from the file.

  The first set says which network the weights fit (model name, widths, resolution, classes,
  preconditioning; not the training-only dropout rates); the second holds what changes the meaning of the weights without changing
  their shapes (PFGM++'s D, which Newbeeer/pfgmpp asserts at sampling time).
  """
  kw = torch_pickle.init_kwargs(net)
  unet = _unet(net)
  merged = {k: v for k, v in kw.items() if k not in PRECOND_KWARGS}
  merged.update(torch_pickle.init_kwargs(unet))
  fields = dict(UNETS[unet.class_name].config_overrides(merged))
  for training_only in ('model.dropout', 'model.label_dropout'):   # not the network's shape
    fields.pop(training_only, None)
  fields['model.precond'] = PRECONDS[net.class_name]
  if fields['model.precond'] == 'edm':
    fields['model.sigma_data'] = float(kw.get('sigma_data', 0.5))
  elif fields['model.precond'] == 'vp':
    if int(kw.get('M', mprecond.VP_M)) != mprecond.VP_M:
      raise NotANetworkError(f'VPPrecond with M = {kw["M"]} (only M = {mprecond.VP_M} is supported)')
    beta_min = float(kw.get('beta_min', 0.1))
    fields['model.beta_min'] = beta_min
    fields['model.beta_max'] = beta_min + float(kw.get('beta_d', 19.9))   # β(1) = β_min + β_d
  elif fields['model.precond'] == 'iddpm':
    for key, value in IDDPM_FIXED.items():
      if kw.get(key, value) != value:
        raise NotANetworkError(f'iDDPMPrecond with {key} = {kw[key]} (only {value} is supported)')
  pfgmpp = bool(kw.get('pfgmpp', False))
  checks = {'training.pfgmpp_D': float(kw.get('D', 128)) if pfgmpp else math.inf}
  return fields, checks


def params(net, config):
  """Our parameter tree for `config` from the network's weights (names relative to the UNet)."""
  unet = _unet(net)
  return UNETS[unet.class_name].to_params(torch_pickle.module_tensors(unet), config)


def adam_moments(net, optimizer_state, config):
  """(step, mu, nu) of a torch.optim.Adam state_dict, in our parameter layout (a parameter that
  never had a gradient has no state in torch: zero moments)."""
  state = optimizer_state.get('state') or {}
  order = optimizer_state['param_groups'][0]['params']
  unet = _unet(net)
  weights = torch_pickle.module_tensors(unet, groups=('_parameters',))
  if len(weights) != len(order) or not state:
    raise NotANetworkError(f'the optimizer state holds {len(order)} tensors for {len(weights)} '
                           f'parameters of the network')
  step = int(max(np.asarray(s['step']) for s in state.values()))
  def moment(key):
    return {name: np.asarray(state[i][key]) if i in state else np.zeros_like(w)
            for (name, w), i in zip(weights.items(), order)}
  convert = UNETS[unet.class_name].to_params
  return step, convert(moment('exp_avg'), config, moments=True), convert(
      moment('exp_avg_sq'), config, moments=True)
