"""Shared test helpers: the ``.keras`` save/load round trip and the config round trip.

They imitate keras-hub's ``TestCase.run_model_saving_test`` and
``run_serialization_test``: one call saves, reloads and compares, and returns the
reloaded object for the checks particular to a test. Test files import them as
``from helpers import ...`` (pytest puts ``tests/``, the folder of ``conftest.py``, on
``sys.path``, as it does for ``from test_cgan import ...``).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

__all__ = [
    "assert_config_round_trip",
    "assert_keras_round_trip",
    "assert_same_optimizer_state",
    "assert_same_values",
    "assert_same_weights",
    "comparable_config",
]


def comparable_config(config: dict, ignore: Iterable[str] = ()) -> str:
    """A config as sorted JSON without the ``ignore`` keys (tuples and lists compare equal).

    Args:
        config: a ``get_config()`` dict.
        ignore: top-level keys to leave out (or key prefixes ending in ``*``, e.g. "encoder*").

    Returns:
        The JSON text, for an ``==`` whose failure shows both sides.
    """

    def ignored(key: str) -> bool:
        return any(key == name or (name.endswith("*") and key.startswith(name[:-1])) for name in ignore)

    kept = {key: value for key, value in config.items() if not ignored(key)}
    return json.dumps(kept, sort_keys=True, indent=1, default=repr)


def assert_same_values(actual: Any, expected: Any, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Every array of two nests (tuples, lists, dicts of arrays or tensors) is equal.

    Args:
        actual: a nest of arrays, tensors or numbers.
        expected: the same structure.
        rtol: relative tolerance; with ``atol`` both 0 (the default) the values must be identical.
        atol: absolute tolerance.
    """
    keras.tree.assert_same_structure(actual, expected)
    for got, want in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        got, want = keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want)
        if rtol == atol == 0.0:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def assert_same_weights(actual, expected) -> None:
    """Two lists of variables (``model.weights``, ``optimizer.variables`` ...) hold equal values.

    Args:
        actual: a list of variables.
        expected: a list of as many variables, in the same order.
    """
    assert len(actual) == len(expected), f"{len(actual)} variables against {len(expected)}"
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=getattr(want, "path", ""))


def assert_same_optimizer_state(restored, original) -> None:
    """A reloaded optimizer has the original's step count and slot values.

    Args:
        restored: the reloaded ``keras.optimizers.Optimizer``.
        original: the optimizer that was saved.
    """
    assert type(restored) is type(original), f"{type(restored).__name__} against {type(original).__name__}"
    assert int(restored.iterations.numpy()) == int(original.iterations.numpy())
    assert_same_weights(restored.variables, original.variables)


def assert_config_round_trip(instance, *, ignore: Iterable[str] = ()):
    """``type(instance).from_config(instance.get_config())`` has the same config.

    Args:
        instance: a layer or model with ``get_config``.
        ignore: config keys not to compare (see ``comparable_config``).

    Returns:
        The clone, for further checks.
    """
    config = instance.get_config()
    clone = type(instance).from_config(config)
    assert type(clone) is type(instance)
    assert comparable_config(clone.get_config(), ignore) == comparable_config(config, ignore)
    return clone


def assert_keras_round_trip(
    model: keras.Model,
    tmp_path: pathlib.Path,
    *,
    inputs: Any = None,
    outputs: Callable[[keras.Model], Any] | None = None,
    ignore_config: Iterable[str] = (),
    filename: str = "model.keras",
    rtol: float = 0.0,
    atol: float = 0.0,
) -> keras.Model:
    """Save ``model`` to a ``.keras`` file, load it, and compare the two.

    The loaded model must have the model's class and config, and give the same outputs
    (identical by default, or within ``rtol``/``atol``).

    Args:
        model: the model to save (built, and trained where a test wants trained state).
        tmp_path: the folder for the file (pytest's ``tmp_path``).
        inputs: when given, compare ``model(inputs)`` with ``loaded(inputs)``.
        outputs: when given, a function of a model returning a nest of arrays (predictions,
            transforms, scores ...), compared between the two models.
        ignore_config: config keys not to compare (see ``comparable_config``).
        filename: the file's name in ``tmp_path``.
        rtol: relative tolerance of the output comparison.
        atol: absolute tolerance of the output comparison.

    Returns:
        The loaded model, for the checks particular to a test.
    """
    path = pathlib.Path(tmp_path) / filename
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model), f"reloaded a {type(loaded).__name__}, saved a {type(model).__name__}"
    assert comparable_config(loaded.get_config(), ignore_config) == comparable_config(model.get_config(), ignore_config)
    if inputs is not None:
        assert_same_values(loaded(inputs), model(inputs), rtol=rtol, atol=atol)
    if outputs is not None:
        assert_same_values(outputs(loaded), outputs(model), rtol=rtol, atol=atol)
    return loaded
