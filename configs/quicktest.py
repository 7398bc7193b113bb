"""`shrink(config)`: a tiny, offline, runnable version of ANY config, for tests (style habit 7).

The result keeps what makes the config what it is (SDE, loss, sampler, model family and its
options, data scaling, channels) and shrinks only cost: batch 2, one jitted step, one residual
block, two resolutions, width 16 (32 for DDPM), at most 10 noise levels (25 for VP and sub-VP) and one corrector step, and the
built-in DIGITS data (sklearn's 8×8 digits; no network) at 8 px, or 16 px for the RefineNet
models (NCSN / NCSNv2), whose fixed trunk downsamples up to three times.

    from configs import quicktest
    from configs.ve import cifar10_ncsnpp_continuous
    config = quicktest.shrink(cifar10_ncsnpp_continuous.get_config())
"""

_REFINENETS = ('ncsn', 'ncsnv2_64', 'ncsnv2_128', 'ncsnv2_256')


def _shrink_training(training):
  training.batch_size = 2
  training.stf_ref_batch = 4 if training.stf_ref_batch else 0   # STF: a reference of 2 batches
  training.n_jitted_steps = 1
  training.n_iters = 2
  training.log_freq = 1
  training.eval_freq = 1
  training.snapshot_freq = 1
  training.snapshot_freq_for_preemption = 1


def _shrink_model(model, image_size, sde):
  model.nf = 32 if model.name == 'ddpm' else 16   # DDPM's GroupNorm has 32 groups (Ho+20)
  model.ch_mult = tuple(model.ch_mult[:2])
  model.num_res_blocks = 1
  model.attn_resolutions = (image_size // 2,)   # keep one attention layer
  # 10 noise levels; VP/sub-VP keep 25, since DDPM's discrete β_N = β_max / N must stay < 1
  model.num_scales = min(model.num_scales, 25 if sde in ('vpsde', 'subvpsde') else 10)


def shrink(config):
  """A tiny copy of `config` (the argument is not changed); see the module docstring."""
  config = config.copy_and_resolve_references()
  _shrink_training(config.training)
  image_size = 16 if config.model.name in _REFINENETS else 8
  config.data.dataset = 'DIGITS'
  config.data.image_size = image_size
  _shrink_model(config.model, image_size, config.training.sde)
  config.sampling.n_steps_each = 1
  evaluate = config.eval
  evaluate.batch_size = 2
  evaluate.num_samples = 2
  evaluate.bpd_num_repeats = 1
  evaluate.begin_ckpt = 1
  evaluate.end_ckpt = 1
  return config
