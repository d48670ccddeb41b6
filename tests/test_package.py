"""The installed package: version, public API, and a light import."""

import subprocess
import sys

import pytest

import xmodal_tf as xm


def test_public_api():
    assert xm.__version__.count(".") == 2
    assert xm.CCA is xm.cca.CCA and xm.MCCA is xm.cca.MCCA
    assert callable(xm.data.load_two_view_digits) and callable(xm.data.make_dataset)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        xm.nothing  # noqa: B018


def test_import_does_not_load_tensorflow():
    """`import xmodal_tf` (and the CLI's --help) must stay fast: TensorFlow loads on demand."""
    code = "import sys, xmodal_tf, xmodal_tf.data, xmodal_tf.train; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
