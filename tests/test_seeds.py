"""Aggregating several seeds' metrics (xmodal_tf.experiments.seeds)."""

import numpy as np
import pytest

from xmodal_tf.experiments.seeds import aggregate, seed_directory, spread_lines


def test_aggregate_nested_numbers_only():
    runs = [
        {
            "test": {"r1": 0.2, "r5": 0.5},
            "epochs": 3,
            "name": "a",
            "ok": True,
            "curve": [1, 2],
            "run": {"wall_seconds": 5.0},
            "only_first": 1.0,
        },
        {
            "test": {"r1": 0.4, "r5": 0.5},
            "epochs": 5,
            "name": "a",
            "ok": True,
            "curve": [1, 3],
            "run": {"wall_seconds": 9.0},
        },
    ]
    summary = aggregate(runs)
    assert summary["mean"] == {"test": {"r1": pytest.approx(0.3), "r5": 0.5}, "epochs": 4.0}
    assert summary["std"]["test"]["r1"] == pytest.approx(np.std([0.2, 0.4]))
    assert summary["std"]["test"]["r5"] == 0.0
    assert summary["values"] == {"test": {"r1": [0.2, 0.4], "r5": [0.5, 0.5]}, "epochs": [3, 5]}


def test_aggregate_skips_non_finite_and_refuses_nothing():
    assert aggregate([{"x": float("nan")}, {"x": 1.0}])["mean"] == {}
    with pytest.raises(ValueError, match="at least one run"):
        aggregate([])


def test_spread_lines_name_only_what_varies():
    lines = spread_lines(aggregate([{"a": {"b": 1.0}, "c": 2}, {"a": {"b": 3.0}, "c": 2}]))
    assert len(lines) == 1 and "a.b" in lines[0] and "2 ± 1" in lines[0] and "(1 / 3)" in lines[0]


def test_seed_directory(tmp_path):
    assert seed_directory(tmp_path, 7) == tmp_path / "seed-7"
