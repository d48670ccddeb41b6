"""Test-wide settings: quiet TensorFlow, and no real data folders leaking into tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("XMODAL_DATA_DIR", None)
