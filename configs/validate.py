"""Every cross-field rule of a resolved config, in one list, checked once at the boundary.

  python main.py --explain_config                     # print the rules (the legal combinations)
  python main.py --explain_config --config=C [--mode=M]   # ... and which of them C breaks

`check(config, mode)` raises `ConfigError` (a ValueError) with one line per broken rule, each
naming the fields and the fix; `main.py` calls it before the workdir is touched and every run
entry point (`run_lib.train` / `sample` / `fid_stats`, `eval_lib.evaluate`, `fid.run`,
`modes.run_task`) calls it again, with the device count known. Library functions trust a config
that passed: they do not re-check combinations (they may assert shapes, and they still reject
bad *files*). A rule is a function `config -> message or None` registered with `@rule(modes)`
in configs/rules.py; `CHOICES` here lists the fields that must name one of a set (often a
registry) and `RANGES` the numbers that must lie in an interval, each its own rule, and
`fields_are_known` refuses a field configs/default_lib.py lacks. Adding a switch: add its field to
configs/default_lib.py, its rules to configs/rules.py, and a breaking case to
tests/test_validate.py (the test fails for a rule without one).
"""
import difflib

import ml_collections

from configs import default_lib
from configs.rules import (BUILD, DATA, EVAL, FID, INPAINT, MODES, RULES, SAMPLE, TRAIN_CLASSIFIER,
                           get, rule)


# ------------------------------------------------------------------------------------------------
# Fields: a config holds only the fields of configs/default_lib.py (a config file's typo would
# otherwise set a field nothing reads).

def _names(config, prefix=''):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _names(value, f'{prefix}{key}.')
    else:
      yield prefix + key


@rule(*MODES)
def fields_are_known(config):
  """Every field is one of configs/default_lib.py's (a config file cannot add one by a typo)."""
  known = sorted(_names(default_lib.get_base_config()))
  for name in _names(config):
    if name not in known:
      section, _, leaf = name.rpartition('.')
      close = difflib.get_close_matches(leaf, [k.rpartition('.')[2] for k in known
                                               if k.rpartition('.')[0] == section], 1)
      hint = f' (did you mean {section}.{close[0]}?)' if close else ''
      return (f'{name} is not a config field{hint}; configs/default_lib.py lists them all: a new '
              'one is added there')
  return None


# ------------------------------------------------------------------------------------------------
# Choices: a field names one of a set (a registry's names where there is one).

def _registry(module, name, *more):
  def names(config):
    del config
    import importlib  # pylint: disable=import-outside-toplevel
    table = getattr(importlib.import_module(module), name)
    return [*(table.names() if hasattr(table, 'names') else table), *more]
  names.source = f'{module}.{name}' + ''.join(f" or '{m}'" for m in more)
  return names


def _fixed(*values):
  def names(config):
    del config
    return values
  names.source = ', '.join(values)
  return names


def _always(config):
  del config
  return True


def _model_in(*names):
  return lambda config: config.model.name in names


def _pc(config):
  return config.sampling.method == 'pc'


def _ncsnv2(config):
  return config.model.name.startswith('ncsn') and config.model.name != 'ncsnpp'


_NCSNPP = _model_in('ncsnpp')
_edm_sampler = lambda config: config.sampling.method == 'edm'   # noqa: E731
# (field, its choices(config), when the field is read, modes)
CHOICES = (
    ('model.name', _registry('models.utils', 'MODELS'), _always, BUILD),
    ('training.sde', _registry('sde_lib', 'SDES'), _always, BUILD),
    ('training.loss', _registry('losses', 'LOSSES'), _always, BUILD),
    ('model.precond', _registry('models.precond', 'PRECONDS', 'none'), _always, BUILD),
    ('model.nonlinearity', _registry('models.layers', 'ACTIVATIONS'), _always, BUILD),
    ('model.dtype', _registry('precision', 'DTYPES'), _always, BUILD),
    ('model.remat', _registry('models.utils', 'REMAT_POLICIES', 'none'), _always, BUILD),
    ('optim.optimizer', _fixed('Adam'), _always, BUILD),
    ('optim.lr_decay', _fixed('none', 'cosine'), _always, BUILD),
    ('sampling.method', _registry('sampling', 'SAMPLERS'), _always, BUILD),
    ('sampling.predictor', _registry('sampling', 'PREDICTORS'), _pc, BUILD),
    ('sampling.corrector', _registry('sampling', 'CORRECTORS'), _pc, BUILD),
    ('sampling.solver', _fixed('heun', 'euler'), _edm_sampler, BUILD),
    ('sampling.disc', _registry('schedules', 'DISCS'), _edm_sampler, BUILD),
    ('sampling.schedule', _registry('schedules', 'SCHEDULES', ''), _edm_sampler, BUILD),
    ('sampling.scaling', _registry('schedules', 'SCALINGS', ''), _edm_sampler, BUILD),
    ('model.resblock_type', _fixed('ddpm', 'biggan'), _NCSNPP, BUILD),
    ('model.progressive', _fixed('none', 'output_skip', 'residual'), _NCSNPP, BUILD),
    ('model.progressive_input', _fixed('none', 'input_skip', 'residual'), _NCSNPP, BUILD),
    ('model.progressive_combine', _fixed('cat', 'sum'), _NCSNPP, BUILD),
    ('model.embedding_type', _fixed('fourier', 'positional'), _NCSNPP, BUILD),
    ('model.interpolation', _registry('models.refinenet_layers', 'INTERPOLATIONS'), _ncsnv2,
     BUILD),
    ('model.normalization', _registry('models.normalization', 'NORMALIZATIONS'), _ncsnv2, BUILD),
    ('data.dataset', _registry('datasets', 'SOURCES'), _always, DATA),
    ('eval.bpd_dataset', _fixed('train', 'test'), lambda config: config.eval.enable_bpd, (EVAL,)),
    ('eval.is_convention', _registry('evaluation', 'IS_CONVENTIONS'),
     lambda config: config.data.dataset != 'DIGITS', (EVAL, FID)),
    ('sampling.inpaint_mask', _registry('controllable_generation', 'INPAINT_MASKS'), _always,
     (INPAINT,)),
    ('sampling.image_format', _registry('generate', 'FORMATS'),
     lambda config: bool(config.sampling.seeds), (SAMPLE,)),
    ('classifier.dtype', _fixed('float32', 'bfloat16'), _always, (TRAIN_CLASSIFIER,)),
)


def _choice_rule(field, choices, applies, modes):
  def fn(config):
    if not applies(config):
      return None
    valid = list(choices(config))
    value = get(config, field)
    if value not in valid and not (isinstance(value, str) and value.lower() in valid):
      return f'{field} = {value!r} is not one of {", ".join(map(repr, sorted(valid)))}'
    return None
  fn.__name__ = f'known_{field.replace(".", "_")}'
  fn.__doc__ = f'{field} is one of: {choices.source}.'
  rule(*modes)(fn)


for _field, _choices, _applies, _modes in CHOICES:
  _choice_rule(_field, _choices, _applies, _modes)


# ------------------------------------------------------------------------------------------------
# Ranges: a number lies in an interval ('(' and ')' are open ends), one rule per field.

RANGES = (
    ('training.batch_size', '[1, inf)'), ('eval.batch_size', '[1, inf)'),
    ('data.image_size', '[1, inf)'), ('data.num_channels', '[1, inf)'), ('model.nf', '[1, inf)'),
    ('model.num_scales', '[1, inf)'), ('training.n_jitted_steps', '[1, inf)'),
    ('training.grad_accum', '[1, inf)'), ('eval.bpd_num_repeats', '[1, inf)'),
    ('training.patch_real_p', '[0, 1]'), ('training.augment_p', '[0, 1]'),
    ('model.dropout', '[0, 1)'), ('model.label_dropout', '[0, 1)'), ('model.ema_rate', '[0, 1]'),
    ('model.ema_halflife_kimg', '[0, inf)'), ('model.ema_rampup_ratio', '[0, inf)'),
    ('optim.lr', '(0, inf)'), ('optim.beta1', '[0, 1)'), ('optim.eps', '(0, inf)'),
    ('optim.weight_decay', '[0, inf)'), ('optim.warmup', '[0, inf)'),
    ('optim.lr_rampup_kimg', '[0, inf)'), ('training.P_std', '(0, inf)'),
    ('model.sigma_data', '(0, inf)'), ('model.sigma_min', '(0, inf)'),
    ('model.sigma_max', '(0, inf)'), ('model.beta_min', '[0, inf)'),
    ('model.fourier_scale', '(0, inf)'), ('sampling.steps', '[2, inf)'),
    ('sampling.sigma_min', '[0, inf)'), ('sampling.sigma_max', '[0, inf)'),
    ('sampling.epsilon_s', '(0, 1)'),
    ('sampling.rho', '(0, inf)'), ('sampling.S_churn', '[0, inf)'),
    ('sampling.S_noise', '[0, inf)'), ('sampling.eps_scaler', '(0, inf)'),
    ('sampling.perturb_alpha', '[0, inf)'),
    ('sampling.classifier_scale', '[0, inf)'), ('sampling.quantize_bits', '[0, 24]'),
    ('sampling.snr', '[0, inf)'),
    ('sampling.n_steps_each', '[0, inf)'),
    ('sampling.ode_rtol', '(0, inf)'), ('sampling.ode_atol', '(0, inf)'),
    ('eval.wait_timeout_s', '[0, inf)'), ('eval.poll_interval_s', '(0, inf)'),
    ('classifier.blocks_per_group', '[1, inf)'), ('classifier.widen', '[1, inf)'),
    ('classifier.n_iters', '[0, inf)'), ('classifier.lr', '(0, inf)'),
    ('classifier.log_freq', '[1, inf)'), ('classifier.snapshot_freq', '[1, inf)'),
    ('data.latent_scale', '(0, inf)'), ('data.latent_shift', '(-inf, inf)'),
)


def within(value, interval):
  """`value` lies in `interval`, e.g. '[0, 1)' (NaN never does)."""
  lo, hi = (float(v) for v in interval[1:-1].split(','))
  return ((lo < value) if interval[0] == '(' else (lo <= value)) and (
      (value < hi) if interval[-1] == ')' else (value <= hi))


def _range_rule(field, interval):
  def fn(config):
    value = get(config, field)
    return None if within(value, interval) else f'{field} = {value} must be in {interval}'
  fn.__name__ = f'{field.replace(".", "_")}_in_range'
  fn.__doc__ = f'{field} is in {interval}.'
  rule(*MODES)(fn)


for _field, _interval in RANGES:
  _range_rule(_field, _interval)


class ConfigError(ValueError):
  """A config that breaks one or more rules; the message has one line per rule."""


def violations(config, mode, device_count=None):
  """[(rule name, message)] of the rules of `mode` (one of MODES) that `config` breaks."""
  assert mode in MODES, mode
  found = []
  for r in RULES:
    if mode not in r.modes or (r.devices and device_count is None):
      continue
    message = r.fn(config, device_count) if r.devices else r.fn(config)
    if message:
      found.append((r.name, message))
  return found


def check(config, mode, device_count=None):
  """Raise ConfigError listing every broken rule of `mode`; `device_count` None skips the rules
  that need it (main.py checks before jax.distributed starts)."""
  found = violations(config, mode, device_count)
  if found:
    raise ConfigError('\n'.join(f'{message} [rule {name}]' for name, message in found))


def explain(config=None, mode='train'):
  """The rules as text (name, modes, what they require); with a config, the ones it breaks."""
  lines = ['Config rules (configs/rules.py); each applies in the modes listed.']
  for r in RULES:
    lines.append(f'- {r.name} [{", ".join(r.modes)}]: {r.doc}')
  if config is not None:
    broken = violations(config, mode)
    lines.append(f'\n--mode={mode}: ' + ('; '.join(f'{m} [rule {n}]' for n, m in broken)
                                         if broken else 'the config breaks no rule'))
  return '\n'.join(lines)


def check_or_exit(config, mode):
  """`check` (without the device rules) as main.py's one-line exit: 'FATAL config error: ...'."""
  try:
    check(config, mode)
  except ConfigError as err:
    raise SystemExit(f'FATAL config error: {err}') from None


def check_run(config, mode):
  """`check` with this run's device count: the entry points' call (after jax.distributed)."""
  import jax  # pylint: disable=import-outside-toplevel
  check(config, mode, jax.device_count())
