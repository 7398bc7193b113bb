"""Write tests/fixtures/torch_formats/: one small state dict saved by torch in both torch.save
formats (the zip archive of PyTorch >= 1.6 and the pre-1.6 stream pytorch-fid's .pth uses), with
a float16 tensor and a strided view, for foreign/torch_pickle.py's tests.

  python tools/make_torch_format_fixtures.py      # needs torch (CPU wheel)
"""
import collections
import os

import torch  # pylint: disable=import-error

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests',
                   'fixtures', 'torch_formats')


def main():
  os.makedirs(OUT, exist_ok=True)
  state = collections.OrderedDict(
      weight=torch.arange(6.).reshape(2, 3), half=torch.ones(4, dtype=torch.float16),
      view=torch.arange(10)[2:7:2], transposed=torch.arange(6.).reshape(2, 3).t())
  torch.save(state, os.path.join(OUT, 'zip.pth'))
  torch.save(state, os.path.join(OUT, 'legacy.pth'), _use_new_zipfile_serialization=False)


if __name__ == '__main__':
  main()
