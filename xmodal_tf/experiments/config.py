"""Experiment configuration: defaults, TOML/JSON files and ``--set key=value`` overrides.

A configuration is a (possibly nested) dict of plain values. Every key a file or an
override sets must exist in the experiment's defaults, and its value must have the
default's type (int, float, bool, str, list, dict); a default of ``None`` accepts any
value, and a list setting accepts one value as a one-item list. Nested keys are written with dots: ``--set optimizer.learning_rate=1e-3``.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["ConfigError", "load_config_file", "parse_overrides", "resolve_config"]


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message says how to fix it."""


def load_config_file(path) -> dict:
    """Read a ``.toml`` or ``.json`` file holding a table/object of settings."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start} cannot be decoded); "
                          "save it as UTF-8.") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}.") from None
    try:
        if suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(
                f"config file {path} must end in .toml or .json (got '{suffix or 'no suffix'}')."
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        kind = suffix[1:].upper()
        raise ConfigError(f"config file {path} is not valid {kind}: {error}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply; settings are plain values and short "
                          "lists.") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path} must hold a table of settings (key = value), "
            f"not a {type(values).__name__}."
        )
    return values


def parse_overrides(assignments) -> dict:
    """Turn ``["a=1", "b.c=true"]`` into the nested dict ``{"a": 1, "b": {"c": True}}``.

    Values are read as JSON where possible (numbers, true/false, null, lists, quoted
    strings) and as plain strings otherwise.
    """
    overrides: dict = {}
    for assignment in assignments or ():
        key, separator, raw = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(
                f"--set expects key=value (for example --set n_components=5); got {assignment!r}."
            )
        parts = key.split(".")
        if any(not part for part in parts):
            raise ConfigError(f"--set key {key!r} has an empty part; write keys like a.b=1.")
        target = overrides
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {key!r} conflicts with an earlier --set of {part!r}.")
        target[parts[-1]] = _parse_value(raw.strip())
    return overrides


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
    except RecursionError:
        raise ConfigError(f"--set value {raw[:20]}... is nested too deeply; settings are plain values and "
                          "short lists.") from None


def resolve_config(defaults: dict, *layers: dict, choices: dict | None = None) -> dict:
    """Merge ``layers`` (file values, then overrides ...) onto a copy of ``defaults``.

    ``choices`` maps dotted keys to their allowed values.
    """
    resolved = copy.deepcopy(defaults)
    for layer in layers:
        _merge(resolved, layer, prefix="")
    for key, allowed in (choices or {}).items():
        value = _lookup(resolved, key)
        if value not in allowed:
            options = ", ".join(map(str, allowed))
            raise ConfigError(f"{key}={value!r} is not one of: {options}.")
    return resolved


def _lookup(config: dict, dotted_key: str):
    value = config
    for part in dotted_key.split("."):
        value = value[part]
    return value


def _merge(target: dict, updates: dict, prefix: str) -> None:
    for key, value in updates.items():
        name = f"{prefix}{key}"
        if key not in target:
            raise ConfigError(_unknown_key_message(name, target, prefix))
        default = target[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} is a group of settings; set its keys, e.g. {name}.KEY=VALUE.")
            _merge(default, value, prefix=f"{name}.")
        else:
            _check_finite(name, value)
            target[key] = _coerce(name, value, default)


def _check_finite(name: str, value) -> None:
    """ConfigError for NaN or an infinity (JSON's NaN / Infinity, TOML's nan / inf, or a
    number too large for a float such as 1e400), anywhere in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}.")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite(f"{name}[{index}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{name}.{key}", item)


def _unknown_key_message(name: str, known: dict, prefix: str) -> str:
    names = [f"{prefix}{key}" for key in known]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {name!r}.{hint} Known settings: {', '.join(names)}."


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(name: str, value, default):
    """Return ``value`` converted to the type of ``default``, or raise ConfigError."""
    if default is None:
        return value
    expected = type(default)
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif expected in (list, tuple):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not default:  # an empty default list does not constrain its items
            return items
        return [_coerce(f"{name}[{index}]", item, default[0]) for index, item in enumerate(items)]
    raise ConfigError(
        f"{name} must be {_type_name(expected)} (default {default!r}); got {value!r}."
    )


def _type_name(expected: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list like [1, 2]", tuple: "a list like [1, 2]"}.get(expected, expected.__name__)
