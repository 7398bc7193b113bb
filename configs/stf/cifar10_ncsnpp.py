"""STF (Xu+23b, arXiv:2302.00670): EDM's NCSN++ recipe with stable-target-field training targets.

Command: python main.py --config=configs/stf/cifar10_ncsnpp.py --mode=train --workdir=W
Expected: FID 1.90 uncond, 35 NFE Heun (EDM NCSN++: 1.98) [README of Newbeeer/stf, with EDM's
augmentation, as here].
Each step reads 8192 images (the reference set; Newbeeer/stf: 1024 per GPU on 8 GPUs) and
trains on 512 of them; the targets average the whole set (one reference for all devices, so
results do not depend on the device count). Evaluation losses use the plain EDM target.
Combine with PFGM++: --config.training.pfgmpp_D=2048 (the weights then use its kernel).
Published: python main.py --config=configs/stf/cifar10_ncsnpp.py --mode=sample --workdir=W \
  --checkpoint=https://drive.google.com/file/d/1H4aMDHtL2_av9EaYUFHioHaEQcBCVrAu/view
(Google Drive file `stf/cifar10_ncsnpp/`, trained with --rbatch 1024; Drive serves a page:
download the file, pass its path); DDPM++: configs/stf/cifar10_ddpmpp.py.
"""
from configs.edm import cifar10_ncsnpp as edm_ncsnpp


def get_config():
  config = edm_ncsnpp.get_config()
  config.training.stf_ref_batch = 8192
  return config
