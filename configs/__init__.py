"""ml_collections config files: `default_*_configs.py`, leaves under ve/, vp/, subvp/, quickstart/.

Library modules (no `get_config`): `default_lib` (the field tree), `presets` (SDE and model
presets), `quicktest` (`shrink(config)`, a tiny runnable version of any config).
"""
