"""configs/validate.py: every rule is hit by a config that breaks only it, with its message;
the shipped configs break none; main.py checks before the workdir exists and explains the rules."""
import os
import re
import subprocess
import sys

import pytest

from configs import validate
from configs.quickstart import digits
from configs.ve import cifar10_ncsnpp_continuous as ve_continuous
from configs.ve.ncsnv2 import cifar10 as ncsnv2_cifar10
from configs.vp.ddpm import cifar10 as ddpm_cifar10

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASES = {'edm': digits.get_config,                   # EDM preconditioning, loss and sampler
         've': ve_continuous.get_config,             # score_sde: VE, DSM, NCSN++ (Fourier), PC
         'ddpm': ddpm_cifar10.get_config,            # score_sde: VP, discrete DDPM loss, ancestral
         'ncsnv2': ncsnv2_cifar10.get_config}        # RefineNet
BS = 64                                              # the 'edm' base's training.batch_size

# rule -> (base, overrides, mode, a piece of the message); the overrides break that rule only.
CASES = {
    'fields_are_known': ('edm', {'training.n_iter': 5}, 'train',
                         r'training.n_iter is not a config field \(did you mean training.n_iters\?\)'),
    'smld_loss_needs_ve': ('ddpm', {'training.loss': 'smld'}, 'train', "training.sde='vesde'"),
    'ddpm_loss_needs_vp': ('ddpm', {'training.sde': 'vesde'}, 'train', "training.sde='vpsde'"),
    'continuous_matches_loss': ('edm', {'training.continuous': False}, 'train', 'continuous'),
    'likelihood_weighting_needs_dsm': ('edm', {'training.likelihood_weighting': True}, 'train',
                                       'training.loss=dsm'),
    'denoiser_switches_need_denoiser_loss': ('ve', {'training.stf_ref_batch': 256}, 'train',
                                             'need a D-loss'),
    'stf_ref_batch_is_a_multiple': ('edm', {'training.stf_ref_batch': BS + 1}, 'train',
                                    'positive multiple of training.batch_size = 64'),
    'stf_is_unconditional': ('edm', {'training.stf_ref_batch': 2 * BS,
                                     'model.class_conditional': True}, 'train', 'unlabeled'),
    'stf_or_patches': ('edm', {'training.stf_ref_batch': 2 * BS, 'training.patch_real_p': 0.5,
                               'model.patch_coords': True}, 'train', 'cannot be combined'),
    'patches_halve_through_the_unet': ('edm', {'training.patch_real_p': 0.5, 'data.image_size': 12,
                                               'model.patch_coords': True}, 'train',
                                       'not a multiple of 8'),
    'patches_need_coordinates': ('edm', {'training.patch_real_p': 0.5}, 'train',
                                 'model.patch_coords=True'),
    'patches_compile_per_size_tuple': ('edm', {'training.patch_real_p': 0.5,
                                               'model.patch_coords': True,
                                               'training.n_jitted_steps': 5,
                                               'training.patch_batch_mul': False}, 'train', '(243)'),
    'patch_batches_step_one_at_a_time': ('edm', {'training.patch_real_p': 0.5,
                                                 'model.patch_coords': True,
                                                 'training.n_jitted_steps': 2}, 'train',
                                         r'training.n_jitted_steps = 1 \(now 2\)'),
    'patch_coords_need_precond': ('ve', {'model.patch_coords': True}, 'sample', 'model.precond'),
    'augmentation_conditions_the_network': ('edm', {'training.augment_p': 0.1}, 'train',
                                            'model.augment_dim=9'),
    'one_lr_ramp': ('edm', {'optim.lr_rampup_kimg': 10.}, 'train', 'optim.warmup=0'),
    'frequencies_are_multiples': ('edm', {'training.log_freq': 0}, 'train', 'training.log_freq'),
    'train_batch_splits_over_devices': ('edm', {'devices': 3}, 'train',
                                        r'training.batch_size = 64 .* devices \(3\)'),
    'eval_batch_splits_over_devices': ('edm', {'devices': 2}, 'sample',
                                       r'eval.batch_size = 99 .* devices \(2\)'),
    'grad_accum_splits_the_batch': ('edm', {'training.grad_accum': 3}, 'train',
                                    r'training.batch_size = 64 .*grad_accum × devices = 3 × 1'),
    'loss_scale_is_usable': ('edm', {'model.dtype': 'float16', 'optim.loss_scale_init': 0.5},
                             'train', 'optim.loss_scale_init = 0.5'),
    'precond_needs_a_noise_embedding': ('edm', {'model.name': 'ncsn'}, 'sample',
                                        'continuous noise label'),
    'precond_scales_by_c_out': ('edm', {'model.scale_by_sigma': True}, 'sample',
                                'scale_by_sigma=False'),
    'precond_needs_centered_data': ('edm', {'data.centered': False}, 'sample', 'centered=True'),
    'vp_precond_needs_a_positional_label': ('edm', {'model.precond': 'vp',
                                                    'model.embedding_type': 'fourier'}, 'sample',
                                            "embedding_type='positional'"),
    'conditioning_needs_a_noise_embedding': ('ncsnv2', {'model.augment_dim': 9}, 'sample',
                                             "not model.name='ncsnv2_64'"),
    'classes_are_counted': ('edm', {'model.class_conditional': True, 'data.num_classes': 0},
                            'sample', 'data.num_classes'),
    'image_size_halves_through_the_unet': ('edm', {'data.image_size': 9}, 'sample',
                                           r'2\*\*\(len\(model.ch_mult\)-1\) = 2'),
    'widths_split_into_groups': ('edm', {'model.nf': 130, 'model.ch_mult': (1,)}, 'sample',
                                 'width 130'),
    'adm_heads_split_the_width': ('edm', {'model.name': 'adm', 'model.nf': 352,
                                          'model.ch_mult': (1,), 'model.attn_resolutions': (8,)},
                                  'sample', '352'),
    'fir_kernel_is_a_1d_filter': ('edm', {'model.fir_kernel': []}, 'sample', 'fir_kernel'),
    'fourier_labels_are_continuous': ('ve', {'training.continuous': False, 'training.loss': 'smld'},
                                      'train', 'training.continuous=True'),
    'vp_betas_below_one': ('ddpm', {'model.num_scales': 10}, 'sample',
                           r'model.num_scales = 10 .* β_N = model.beta_max / N = 2 '),
    'pfgmpp_D_above_two': ('edm', {'training.pfgmpp_D': 2.}, 'train', 'D > 2'),
    'pfgmpp_samples_with_edm': ('edm', {'training.pfgmpp_D': 128., 'sampling.method': 'ode'},
                                'sample', "sampling.method='edm'"),
    'perturb_needs_edm_sampler': ('ve', {'sampling.perturb_alpha': 0.1}, 'sample',
                                  "perturb_alpha = 0.1 acts in EDM steps"),
    'quantize_needs_a_songunet': ('ddpm', {'sampling.quantize_bits': 6}, 'sample',
                                  "quantize_bits = 6 quantizes SongUNet weights by name, but "
                                  "config.model.name='ddpm'"),
    'ancestral_needs_ve_or_vp': ('ve', {'sampling.predictor': 'ancestral_sampling',
                                        'sampling.probability_flow': True}, 'sample',
                                 'ancestral_sampling'),
    'class_label_is_a_class': ('edm', {'model.class_conditional': True, 'sampling.class_label': 10},
                               'sample', 'sampling.class_label = 10'),
    'seeds_are_ranges': ('edm', {'sampling.seeds': 'abc'}, 'sample', "sampling.seeds = 'abc'"),
    'guidance_needs_classes': ('edm', {'sampling.guidance': 2.}, 'sample',
                               'model.class_conditional=True'),
    'guidance_needs_a_null_label': ('edm', {'model.class_conditional': True,
                                            'sampling.guidance': 2.}, 'sample', 'label_dropout'),
    'checkpoints_to_evaluate': ('edm', {'eval.begin_step': 5, 'eval.end_step': 5}, 'eval',
                                'no checkpoint to evaluate'),
    'likelihood_eps_positive': ('edm', {'eval.likelihood_eps': 0.}, 'eval', 'likelihood_eps'),
    'bpd_needs_a_gaussian_model': ('edm', {'training.pfgmpp_D': 128.}, 'eval', 'enable_bpd'),
    'bpd_needs_an_unconditional_model': ('edm', {'model.class_conditional': True}, 'eval',
                                         'class-conditional'),
    'fid_images_given': ('edm', {}, 'fid', '--config.eval.images'),
    'fid_stats_not_for_digits': ('edm', {}, 'fid_stats', 'digits classifier'),
    'lsun_category_given': ('ve', {'data.dataset': 'LSUN'}, 'train', 'data.category'),
    'tfrecords_path_given': ('ve', {'data.dataset': 'FFHQ'}, 'train', 'tfrecords_path'),
    'image_zip_path_given': ('edm', {'data.dataset': 'IMAGE_ZIP'}, 'train', 'data.path'),
    'digits_channels': ('edm', {'data.num_channels': 2}, 'train', '1 or 3 channels'),
    'controllable_needs_an_unconditional_model': ('ve', {'model.class_conditional': True,
                                                         'data.num_classes': 10}, 'inpaint',
                                                  'unconditional model'),
    'controllable_needs_a_gaussian_model': ('edm', {'training.pfgmpp_D': 128.}, 'inpaint',
                                            'PFGM'),
    'colorize_needs_rgb': ('edm', {}, 'colorize', 'data.num_channels = 1'),
    'classifier_guides_an_unconditional_sde_model': ('edm', {'sampling.classifier': 'c',
                                                             'model.class_conditional': True,
                                                             'data.num_classes': 10},
                                                     'sample', 'guides an unconditional model'),
    'controllable_takes_no_classifier': ('ve', {'sampling.classifier': 'c'}, 'inpaint',
                                         'do not use sampling.classifier'),
    'latent_models_are_not_controlled': ('edm', {'data.autoencoder': 'vae.safetensors'},
                                         'inpaint', 'work on pixels'),
    'latent_models_take_no_classifier': ('ve', {'data.autoencoder': 'v', 'data.centered': True,
                                                'sampling.classifier': 'c'}, 'sample',
                                         'guides in pixel space'),
    'latent_models_have_no_bits_per_dim': ('edm', {'data.autoencoder': 'v',
                                                   'eval.enable_bpd': True}, 'eval', 'bits/dim'),
    'latent_models_read_centered_images': ('ve', {'data.autoencoder': 'v'}, 'sample',
                                           'data.centered=True'),
    'classifier_trains_on_sde_noise': ('ve', {'training.pfgmpp_D': 128.}, 'train_classifier',
                                       'train_classifier needs Gaussian noise'),
}
# More cases of rules that check several fields or forms: (rule, base, overrides, mode, message).
MORE_CASES = [
    ('class_label_is_a_class', 'edm', {'sampling.class_label': 3}, 'sample',
     'needs a class-conditional model'),
    ('seeds_are_ranges', 'edm', {'sampling.seeds': '5-2'}, 'sample', "'5-2'"),
    ('seeds_are_ranges', 'edm', {'sampling.seeds': '0-'}, 'sample', "'0-'"),
    ('seeds_are_ranges', 'edm', {'sampling.seeds': '1,,2'}, 'sample', "'1,,2'"),
]
# Choice rules (validate.CHOICES) are broken by an unknown name, in this base and mode:
CHOICE_BASES = {'model.precond': ('edm', 'sample'), 'sampling.solver': ('edm', 'sample'),
                'sampling.disc': ('edm', 'sample'), 'sampling.schedule': ('edm', 'sample'),
                'sampling.scaling': ('edm', 'sample'),
                'eval.bpd_dataset': ('edm', 'eval'), 'eval.is_convention': ('ve', 'eval'),
                'model.interpolation': ('ncsnv2', 'sample'),
                'model.normalization': ('ncsnv2', 'sample'),
                'sampling.inpaint_mask': ('ve', 'inpaint'), 'data.dataset': ('ve', 'train'),
                'sampling.image_format': ('edm', 'sample'),
                'classifier.dtype': ('ve', 'train_classifier')}


def _config(base, overrides):
  config = BASES[base]()
  for field, value in overrides.items():
    if field != 'devices':
      section, name = field.split('.')
      setattr(getattr(config, section), name, value)
  return config


def _cases():
  cases = dict(CASES)
  for field, _, _, _ in validate.CHOICES:
    base, mode = CHOICE_BASES.get(field, ('ve', 'sample'))
    overrides = {field: 'no_such_name'}
    if field == 'sampling.image_format':
      overrides['sampling.seeds'] = '0-3'
    cases[f'known_{field.replace(".", "_")}'] = (base, overrides, mode, "'no_such_name' is not")
  base = BASES['edm']()
  for field, interval in validate.RANGES:     # just outside the lower end (patch_real_p: upper;
    lo, hi = (float(v) for v in interval[1:-1].split(','))     # < 1 asks for patch rules too)
    value = hi + 1 if field == 'training.patch_real_p' else lo if interval[0] == '(' else lo - 1
    value = type(validate.get(base, field))(value)             # the field's type
    cases[f'{field.replace(".", "_")}_in_range'] = (
        'edm', {field: value}, 'sample', re.escape(f'{field} = {value} must be in {interval}'))
  return cases


def test_every_rule_has_a_breaking_case():
  assert sorted(_cases()) == sorted(r.name for r in validate.RULES)


@pytest.mark.parametrize('name', sorted(_cases()))
def test_each_case_breaks_only_its_rule(name):
  base, overrides, mode, message = _cases()[name]
  config = _config(base, overrides)
  devices = overrides.get('devices', 1)
  found = validate.violations(config, mode, devices)
  assert [n for n, _ in found] == [name], found
  with pytest.raises(validate.ConfigError, match=message):
    validate.check(config, mode, devices)
  assert not validate.violations(_config(base, {}), mode, 1) or name in (
      'fid_images_given', 'fid_stats_not_for_digits', 'colorize_needs_rgb')   # the base's mode


@pytest.mark.parametrize('name, base, overrides, mode, message', MORE_CASES)
def test_more_cases_break_only_their_rule(name, base, overrides, mode, message):
  found = validate.violations(_config(base, overrides), mode, 1)
  assert [n for n, _ in found] == [name], found
  assert message in found[0][1]


@pytest.mark.parametrize('value, inside', [(0., True), (1., False), (0.5, True), (-1e-9, False),
                                           (float('nan'), False), (float('inf'), False)])
def test_interval_ends(value, inside):
  assert validate.within(value, '[0, 1)') == inside


@pytest.mark.parametrize('seeds', ['', '7', '0-49999', '0-3,7,10-11'])
def test_edm_seed_lists_pass(seeds):
  assert not validate.violations(_config('edm', {'sampling.seeds': seeds}), 'sample', 1)


def test_a_config_breaking_two_rules_gets_one_line_each():
  config = _config('edm', {'training.likelihood_weighting': True, 'data.centered': False})
  with pytest.raises(validate.ConfigError) as err:
    validate.check(config, 'train')
  lines = str(err.value).splitlines()
  assert len(lines) == 2 and all('[rule ' in line for line in lines)


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def test_main_refuses_a_broken_config_before_the_workdir_exists(tmp_path):
  workdir = tmp_path / 'run'
  done = _main('--config=configs/quickstart/digits.py', f'--workdir={workdir}',
               '--config.training.likelihood_weighting=True')
  assert done.returncode != 0 and not workdir.exists()
  assert 'FATAL config error: training.likelihood_weighting needs' in done.stderr
  assert 'Traceback' not in done.stderr


def test_main_names_a_missing_config_file_in_one_line(tmp_path):
  done = _main('--config=configs/no_such_config.py', f'--workdir={tmp_path / "run"}')
  assert done.returncode != 0 and not (tmp_path / 'run').exists()
  assert done.stderr.strip().splitlines()[-1] == (
      "FATAL cannot load --config: [Errno 2] No such file or directory: "
      "'configs/no_such_config.py'"), done.stderr[-2000:]
  assert 'Traceback' not in done.stderr


def test_main_explains_the_rules_and_what_a_config_breaks():
  done = _main('--explain_config', '--config=configs/quickstart/digits.py', '--mode=colorize')
  assert done.returncode == 0, done.stderr
  for r in validate.RULES:
    assert f'- {r.name} [' in done.stdout
  assert done.stdout.strip().endswith('[rule colorize_needs_rgb]')


def _shipped_configs():
  import glob  # pylint: disable=import-outside-toplevel
  import importlib  # pylint: disable=import-outside-toplevel
  library = {'__init__.py', 'default_lib.py', 'presets.py', 'quicktest.py', 'rules.py',
             'rules_eval.py', 'validate.py'}
  for path in sorted(glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)):
    if os.path.basename(path) not in library:
      name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
      yield name, importlib.import_module(name).get_config()


def test_shipped_configs_break_no_rule_once_their_data_is_named():
  """Every leaf config trains, evaluates and samples as shipped; those whose data the user must
  point to (an EDM zip, a TFRecord file) break only the rule that asks for it."""
  for name, config in _shipped_configs():
    asks = {'IMAGE_ZIP': 'image_zip_path_given', 'FFHQ': 'tfrecords_path_given',
            'CelebAHQ': 'tfrecords_path_given'}.get(config.data.dataset)
    for mode in ('train', 'eval', 'sample'):
      found = [n for n, _ in validate.violations(config, mode, 1)]
      assert found in ([], [asks] if mode != 'sample' else []), (name, mode, found)
