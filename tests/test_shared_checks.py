"""The checks added to xmodal_tf._validation for issue 18 (the layer, encoder, decoder
and model modules use them instead of their private copies): ``expected`` phrases,
sequences of ints, dropout rates and image shapes, each under the one rule (TypeError
for a type, ValueError for a value)."""

import numpy as np
import pytest

from xmodal_tf._validation import check_image_shape, check_int, check_int_sequence, check_number, check_rate


def test_expected_replaces_the_generated_description_in_both_errors():
    with pytest.raises(ValueError, match=r"^n must be a positive integer \(images per condition\); got 0\.$"):
        check_int(0, "n", minimum=1, expected="a positive integer (images per condition)")
    with pytest.raises(TypeError, match=r"^n must be a positive integer; got '2' \(str\)\.$"):
        check_int("2", "n", minimum=1, expected="a positive integer")
    with pytest.raises(ValueError, match=r"^decay must be a float in \(0, 1\); got 1\.0\.$"):
        check_number(1, "decay", minimum=0, maximum=1, exclusive_maximum=True, expected="a float in (0, 1)")


def test_check_int_sequence():
    assert check_int_sequence(8, "units") == (8,)
    assert check_int_sequence([np.int64(4), 2], "units") == (4, 2)
    assert check_int_sequence(None, "units", allow_empty=True) == () == check_int_sequence((), "u", allow_empty=True)
    assert check_int_sequence((0, 3), "sizes", minimum=0) == (0, 3)
    with pytest.raises(ValueError, match=r"filters must not be empty; pass e.g. \(32, 64\)"):
        check_int_sequence((), "filters", example="(32, 64)")
    with pytest.raises(TypeError, match="units must be a sequence of ints >= 1 such as"):
        check_int_sequence("64", "units")
    with pytest.raises(ValueError, match=r"each entry of units must be an int >= 1; got 0"):
        check_int_sequence((8, 0), "units")
    with pytest.raises(TypeError, match=r"each entry of units must be an int >= 1; got 2.5 \(float\)"):
        check_int_sequence((8, 2.5), "units")


def test_check_rate():
    assert check_rate(0, "dropout") == 0.0 and check_rate(0.5, "dropout") == 0.5
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"dropout must be a rate in \[0, 1\)"):
            check_rate(bad, "dropout")
    with pytest.raises(TypeError, match="dropout"):
        check_rate("0.1", "dropout")


def test_check_image_shape():
    assert check_image_shape([28, 14, 1], "input_shape") == (28, 14, 1)
    assert check_image_shape((None, None, 3), "input_shape", allow_none=True) == (None, None, 3)
    with pytest.raises(
        ValueError,
        match=r"input_shape must be \(height, width, channels\), rank 3; got \(28, 28\)\. "
        r"For grayscale images add a channel axis, e.g\. \(28, 28, 1\)\.",
    ):
        check_image_shape((28, 28), "input_shape")
    with pytest.raises(ValueError, match="rank 3; got 28"):
        check_image_shape(28, "input_shape")
    with pytest.raises(ValueError, match="known number of channels"):
        check_image_shape((8, 8, None), "input_shape", allow_none=True)
    with pytest.raises(ValueError, match="positive ints"):
        check_image_shape((8, None, 1), "input_shape")
    with pytest.raises(TypeError):
        check_image_shape("28x28x1", "input_shape")
