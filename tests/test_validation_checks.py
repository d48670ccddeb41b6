"""The shared argument checks (xmodal_tf._validation): TypeError for a wrong type,
ValueError for a wrong value, each naming the argument."""

import numpy as np
import pytest

from xmodal_tf._validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_positive_int,
    check_shape,
    describe,
)


def test_check_int_types_and_bounds():
    assert check_int(np.int64(4), "n", minimum=1, maximum=4) == 4 and type(check_int(np.int64(4), "n")) is int
    assert check_positive_int(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match=r"n must be an int >= 1; got True \(bool\)"):
        check_positive_int(True, "n")
    with pytest.raises(TypeError, match="2.0"):
        check_positive_int(2.0, "n")
    with pytest.raises(ValueError, match=r"epochs must be an int >= 1; got 0\."):
        check_positive_int(0, "epochs")
    with pytest.raises(ValueError, match="<= 3"):
        check_int(4, "k", maximum=3)


def test_check_number_bounds_and_non_finite():
    assert check_number(1, "lr", minimum=0, exclusive_minimum=True) == 1.0
    for bad in (0.0, float("nan"), float("inf"), -1):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            check_number(bad, "lr", minimum=0, exclusive_minimum=True)
    with pytest.raises(TypeError, match="lr"):
        check_number("0.1", "lr")
    with pytest.raises(ValueError, match="< 1"):
        check_number(1.0, "rate", minimum=0, maximum=1, exclusive_maximum=True)


def test_check_bool_choice_shape_describe():
    assert check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="flag must be True or False"):
        check_bool(1, "flag")
    with pytest.raises(ValueError, match="pooling must be one of 'avg', 'max'; got 'min'"):
        check_choice("min", "pooling", ("avg", "max"))
    assert check_shape((28, None, 1), "input_shape", rank=3, allow_none=True) == (28, None, 1)
    with pytest.raises(ValueError, match=r"must have 3 entries; got \(28, 28\)\. add"):
        check_shape((28, 28), "input_shape", rank=3, hint="add a channel axis")
    with pytest.raises(ValueError, match="positive ints"):
        check_shape((28, 0, 1), "input_shape")
    with pytest.raises(TypeError):
        check_shape("28x28", "input_shape")
    assert describe([np.zeros((2, 3)), "a"]) == "a list of 2 (a ndarray of shape (2, 3), str)"
