"""main.py with --workdir=gs://bucket/run against a local GCS emulator (tests/gcs_emulator.py:
gcp-storage-emulator, the GCS JSON API over HTTP), every mode a subprocess as a user runs it.

The chain under test is the one a gs:// run uses: paths.py and orbax's directory operations
through etils.epath's fsspec backend (gcsfs), orbax's arrays through tensorstore's GCS driver,
TensorBoard events and logs staged locally and uploaded by paths.sync. Not covered: TensorFlow's
own GCS client (tf.io.gfile, which tf.data uses for TFDS / TFRecord data in a bucket): its
endpoint is compiled in (https://www.googleapis.com/storage/v1/; it ignores
STORAGE_EMULATOR_HOST and CLOUD_STORAGE_EMULATOR_ENDPOINT), so nothing in scoreflow's own file
handling goes through it. Emulator gaps: no preconditions (ifGenerationMatch), so tensorstore's
compare-and-swap of the OCDBT manifest always succeeds here; `x-goog-generation` is added to
downloads by tests/gcs_emulator.py.

The full run (train with a checkpoint, resume, eval, sample from a gs:// checkpoint, --mode=fid
on gs:// images) takes several minutes on 2 cores: SCOREFLOW_SLOW_TESTS=1. The bad-bucket test
(fails before any JAX work) runs always.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from digits_metric import DIGITS_CLASSIFIER_VERSION as CLASSIFIER
import gcs_emulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = f'gs://{gcs_emulator.BUCKET}/run'
OVERRIDES = [f'--config={ROOT}/configs/quickstart/digits.py', '--config.training.batch_size=4',
             '--config.training.n_jitted_steps=1', '--config.training.log_freq=1',
             '--config.training.eval_freq=1', '--config.training.snapshot_freq=1',
             '--config.training.snapshot_freq_for_preemption=1', '--config.model.nf=16',
             '--config.model.num_res_blocks=1', '--config.sampling.steps=4']
SLOW = pytest.mark.skipif(not os.environ.get('SCOREFLOW_SLOW_TESTS'),
                          reason='five main.py runs on a gs:// workdir (~8 min on 2 shared cores): '
                                 'set SCOREFLOW_SLOW_TESTS=1')


def _main(url, cwd, *args, timeout=900):
  """main.py ARGS with the emulator's client environment; (returncode, stderr, seconds)."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **gcs_emulator.client_env(url)}
  start = time.time()
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
  return out.returncode, out.stderr, time.time() - start


def _fatal_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('FATAL')]


def test_unreachable_or_missing_bucket_fails_in_seconds_and_keeps_the_run(tmp_path):
  with gcs_emulator.running() as url:
    for name in ('config.json', 'stats.jsonl', 'checkpoints/1/commit_success.txt'):
      gcs_emulator.upload(url, f'run/{name}', b'an earlier run')
    saved = gcs_emulator.objects(url)
    closed = f'http://127.0.0.1:{gcs_emulator.free_port()}'
    rc, err, seconds = _main(closed, tmp_path, '--mode=train', f'--workdir={RUN}', *OVERRIDES,
                             timeout=300)
    assert rc != 0 and seconds < 60, (rc, seconds, err[-2000:])
    fatal = _fatal_lines(err)
    assert len(fatal) == 1 and f'cannot write to {RUN} ' in fatal[0], err[-2000:]
    assert 'bucket exists' in fatal[0] and closed in fatal[0], fatal
    rc, err, seconds = _main(url, tmp_path, '--mode=train', '--workdir=gs://no-such-bucket/run',
                             *OVERRIDES, timeout=300)
    assert rc != 0 and 'cannot write to gs://no-such-bucket/run' in ''.join(_fatal_lines(err))
    assert gcs_emulator.objects(url) == saved          # nothing written, nothing lost
  assert os.listdir(tmp_path) == []                    # no local folder named gs:


@SLOW
def test_train_resume_eval_sample_fid_in_a_bucket(tmp_path):
  with gcs_emulator.running() as url:
    rc, err, _ = _main(url, tmp_path, '--mode=train', f'--workdir={RUN}', *OVERRIDES,
                       '--config.training.n_iters=1')
    assert rc == 0, err[-3000:]
    rc, err, _ = _main(url, tmp_path, '--mode=train', f'--workdir={RUN}', *OVERRIDES,
                       '--config.training.n_iters=2')
    assert rc == 0 and f'resumed from {RUN}/checkpoints-meta/1' in err, err[-3000:]
    names = gcs_emulator.objects(url, 'run/')
    for name in ('config.json', 'samples/iter_1.png', 'samples/iter_2.npz',
                 'checkpoints/1/commit_success.txt', 'checkpoints/2/commit_success.txt',
                 'checkpoints-meta/2/commit_success.txt'):
      assert f'run/{name}' in names, sorted(names)
    assert not any(n.startswith('run/checkpoints-meta/1/') for n in names)   # one resume point
    assert any(n.startswith('run/tensorboard/events.out.tfevents') for n in names)
    stats = [json.loads(line) for line in gcs_emulator.download(url, 'run/stats.jsonl').decode().splitlines()]
    assert [s['step'] for s in stats if 'loss' in s] == [1, 2]     # both runs, one file
    assert gcs_emulator.download(url, 'run/log.txt').decode().count('training done at step') == 2

    eval_args = ['--config.eval.begin_step=2', '--config.eval.end_step=2',
                 '--config.eval.batch_size=8', '--config.eval.num_samples=8']
    rc, err, _ = _main(url, tmp_path, '--mode=eval', f'--workdir={RUN}', *OVERRIDES, *eval_args)
    assert rc == 0, err[-3000:]
    cores = len(os.sched_getaffinity(0))                 # sampling: one CPU device per core
    per_core = lambda batch: max(d for d in range(1, cores + 1) if batch % d == 0)
    assert f'--mode=eval on {per_core(8)} cpu device(s)' in err, err[-3000:]
    report = json.loads(gcs_emulator.download(url, 'run/eval/report_2.json'))
    assert report['step'] == 2 and 'digits_fd' in report['sample_metrics']
    names = gcs_emulator.objects(url, 'run/eval/')
    assert {'run/eval/report_2.npz', 'run/eval/step_2/loss.npz', 'run/eval/step_2/samples_0.npz',
            f'run/eval/digits_classifier/{CLASSIFIER}.npz', 'run/eval/stats.jsonl'} <= set(names)

    rc, err, _ = _main(url, tmp_path, '--mode=sample', f'--workdir={RUN}', *OVERRIDES,
                       f'--checkpoint={RUN}/checkpoints/2', '--config.sampling.seeds=0-3',
                       '--config.eval.batch_size=4')
    assert rc == 0 and f'--mode=sample on {per_core(4)} cpu device(s)' in err, err[-3000:]
    assert all(f'run/samples/seeds_2/000000/00000{s}.png' in gcs_emulator.objects(url, 'run/')
               for s in range(4))

    rc, err, _ = _main(url, tmp_path, '--mode=fid', f'--workdir={RUN}', *OVERRIDES,
                       f'--config.eval.images={RUN}/samples/seeds_2', '--config.eval.num_samples=4',
                       '--config.eval.batch_size=4')
    assert rc == 0, err[-3000:]
    results = json.loads(gcs_emulator.download(url, 'run/fid/results.json'))
    assert results['num_found'] == 4 and results['metric'] == 'digits_fd'
    assert f'run/fid/digits_classifier/{CLASSIFIER}.npz' in gcs_emulator.objects(url, 'run/fid/')
  assert os.listdir(tmp_path) == []                    # no local folder named gs:


@SLOW
def test_train_classifier_in_a_bucket_resumes_and_its_record_is_read_there(tmp_path):
  """--mode=train_classifier on a gs:// workdir (a VP model's noise): its files, input pipeline
  position and lock in the bucket, a resume from there; a sampler given the gs:// file of a model
  of other noise stops at its record, read from the bucket."""
  flags = [f'--config={ROOT}/configs/quickstart/digits.py', '--config.training.sde=vpsde',
           '--config.model.precond=none', '--config.training.batch_size=4',
           '--config.classifier.blocks_per_group=1', '--config.classifier.widen=1',
           '--config.classifier.log_freq=1', '--config.classifier.snapshot_freq=2']
  with gcs_emulator.running() as url:
    for steps in (2, 3):
      rc, err, _ = _main(url, tmp_path, '--mode=train_classifier', f'--workdir={RUN}', *flags,
                         f'--config.classifier.n_iters={steps}')
      assert rc == 0, err[-3000:]
    assert 'resuming at step 2' in err
    names = gcs_emulator.objects(url, 'run/classifier/')
    assert {f'run/classifier/{n}' for n in (
        'checkpoint_2', 'checkpoint_2.json', 'checkpoint_3', 'checkpoint_3.json', 'state.msgpack',
        'stats.jsonl', 'checkpoints-data/3/process_0.index')} <= set(names), sorted(names)
    assert 'run/classifier/train.lock' not in names
    rc, err, _ = _main(url, tmp_path, '--mode=sample', '--workdir=unused', *flags,
                       '--config.training.sde=subvpsde',
                       f'--config.sampling.classifier={RUN}/classifier/checkpoint_3')
    assert rc != 0 and not os.path.exists(tmp_path / 'unused')
    fatal, = _fatal_lines(err)
    assert 'was trained on training.sde=vpsde' in fatal and 'subvpsde' in fatal, fatal

