"""Experiment configuration: defaults, TOML/JSON files, ``--set key=value`` overrides, checks.

A configuration is a (possibly nested) dict of plain values. Every key a file or an
override sets must exist in the experiment's defaults, and its value must have the
default's type (int, float, bool, str, list, dict); a default of ``None`` accepts any
value, and a list setting accepts one value as a one-item list. Nested keys are written
with dots: ``--set optimizer.learning_rate=1e-3``.

What values a setting allows is declared, not programmed: a table {dotted key: [allowed
kinds]}, in the manner of scikit-learn's ``_parameter_constraints``, with the kinds
``Interval``, ``Options``, ``ListOf``, ``None``, ``bool`` and ``str``. A value is valid if
it meets one kind of its list; ``check_settings`` raises a ConfigError naming the key,
the value, what is allowed and the ``--set`` fix for the first one that meets none.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import numbers
import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "Interval",
    "ListOf",
    "Options",
    "Prefixed",
    "check_settings",
    "fill_data_defaults",
    "load_config_file",
    "lookup_setting",
    "make_constraint",
    "parse_overrides",
    "resolve_config",
]


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
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start} cannot be decoded); save it as UTF-8."
        ) from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}.") from None
    try:
        if suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .toml or .json (got '{suffix or 'no suffix'}').")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        kind = suffix[1:].upper()
        raise ConfigError(f"config file {path} is not valid {kind}: {error}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} is nested too deeply; settings are plain values and short lists."
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path} must hold a table of settings (key = value), not a {type(values).__name__}."
        )
    return values


def parse_overrides(assignments) -> dict:
    """Turn ``["a=1", "b.c=true"]`` into the nested dict ``{"a": 1, "b": {"c": True}}``.

    Values are read as JSON where possible (numbers, true/false, null, lists, quoted
    strings) and as plain strings otherwise.

    Args:
        assignments: the ``--set`` strings ``key=value`` (None: none).

    Returns:
        The nested dict of overrides.

    Raises:
        ConfigError: an assignment without ``=`` or key, a key with an empty part, or
            keys that conflict.
    """
    overrides: dict = {}
    for assignment in assignments or ():
        key, separator, raw = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(f"--set expects key=value (for example --set n_components=5); got {assignment!r}.")
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
        raise ConfigError(
            f"--set value {raw[:20]}... is nested too deeply; settings are plain values and short lists."
        ) from None


def resolve_config(defaults: dict, *layers: dict, choices: dict | None = None) -> dict:
    """Merge ``layers`` (file values, then overrides ...) onto a copy of ``defaults``.

    Args:
        defaults: the experiment's defaults.
        *layers: nested dicts merged in order (file values, then overrides ...).
        choices: maps dotted keys to their allowed values.

    Returns:
        The resolved configuration.

    Raises:
        ConfigError: a key that is not in the defaults, a value of the wrong type, a
            number that is not finite, or a value outside its ``choices``.
    """
    resolved = copy.deepcopy(defaults)
    for layer in layers:
        _merge(resolved, layer, prefix="")
    for key, allowed in (choices or {}).items():
        value = lookup_setting(resolved, key)
        if value not in allowed:
            options = ", ".join(map(str, allowed))
            raise ConfigError(f"{key}={value!r} is not one of: {options}.")
    return resolved


def fill_data_defaults(config: dict, per_data_defaults: dict) -> dict:
    """``config`` with every None replaced by its data set's default.

    Args:
        config: the resolved configuration; ``config["data"]`` names the data set.
        per_data_defaults: {data set: {setting: default}}.

    Returns:
        A copy of ``config`` (its top level) with the Nones filled in.
    """
    filled = dict(config)
    for key, value in per_data_defaults[config["data"]].items():
        if filled[key] is None:
            filled[key] = value
    return filled


def lookup_setting(config: dict, dotted_key: str):
    """The value of a dotted key in a nested configuration.

    Args:
        config: the nested configuration.
        dotted_key: e.g. "optimizer.learning_rate".

    Returns:
        The value.

    Raises:
        KeyError: the configuration has no such key.
    """
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
    raise ConfigError(f"{name} must be {_type_name(expected)} (default {default!r}); got {value!r}.")


def _type_name(expected: type) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list like [1, 2]",
        tuple: "a list like [1, 2]",
    }.get(expected, expected.__name__)


# ----------------------------------------------------------------------------- constraints
class Constraint:
    """One kind of value a setting allows (see ``check_settings``)."""

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is a value of this kind."""
        raise NotImplementedError

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        """What the kind allows, for messages, e.g. "a positive integer".

        Args:
            plural: describe several values ("positive integers").
            noun: names the items where the kind has a noun ("ridges").

        Returns:
            The description.
        """
        raise NotImplementedError

    def detail(self, value) -> str:
        """Which part of ``value`` fails, for messages ("" when the value shows it)."""
        return ""


_BRACKETS = {"both": ("[", "]"), "left": ("[", ")"), "right": ("(", "]"), "neither": ("(", ")")}


class Interval(Constraint):
    """Numbers of one kind in a range.

    ``Interval(int, 1, None)``: integers >= 1; ``Interval(float, 0, 1, closed="left")``:
    numbers in [0, 1). ``float`` takes ints too (1 means 1.0) but no NaN or infinity; no
    kind takes booleans.

    Args:
        kind: ``int`` or ``float``.
        low: the lower bound; None leaves that side open-ended.
        high: the upper bound; None leaves that side open-ended.
        closed: which bounds belong to the interval: "both", "left", "right" or "neither".
    """

    def __init__(self, kind: type, low, high, *, closed: str = "both"):
        if kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float; got {kind!r}.")
        if closed not in _BRACKETS:
            raise ValueError(f"Interval closed must be one of {', '.join(map(repr, _BRACKETS))}; got {closed!r}.")
        if low is not None and high is not None and low > high:
            raise ValueError(f"Interval low must not exceed high; got low={low!r}, high={high!r}.")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def __repr__(self) -> str:
        return f"Interval({self.kind.__name__}, {self.low!r}, {self.high!r}, closed={self.closed!r})"

    def is_of_kind(self, value) -> bool:
        """Whether ``value`` is a number of this kind, in the interval or not."""
        if isinstance(value, bool):
            return False
        if self.kind is int:
            return isinstance(value, numbers.Integral)
        return isinstance(value, numbers.Real) and math.isfinite(value)

    def is_satisfied_by(self, value) -> bool:
        if not self.is_of_kind(value):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return self.high is None or value < self.high or (value == self.high and right)

    def _is_positive_int(self) -> bool:
        if self.kind is not int or self.high is not None or self.low is None:
            return False
        return (self.low if self.closed in ("both", "left") else self.low + 1) == 1

    def bounds(self) -> str:
        """ ">= 0", "> 0", "in (0, 1]" or "" (no bounds)."""
        left, right = _BRACKETS[self.closed]
        if self.low is not None and self.high is not None:
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>=' if left == '[' else '>'} {self.low:g}"
        if self.high is not None:
            return f"{'<=' if right == ']' else '<'} {self.high:g}"
        return ""

    def describe(self, *, plural: bool = False, noun: str | None = None, bounds_only: bool = False) -> str:
        """What the interval allows, for messages.

        Args:
            plural: describe several values.
            noun: names the items.
            bounds_only: just ">= 0" for a one-sided range (the value was a number, the
                bound is what it missed).

        Returns:
            The description.
        """
        if self._is_positive_int() and noun is None:
            return "positive integers" if plural else "a positive integer"
        bounds = self.bounds()
        if bounds_only and bounds and not bounds.startswith("in "):
            return bounds
        if noun is None:
            noun = {
                (int, False): "an integer",
                (int, True): "integers",
                (float, False): "a number",
                (float, True): "numbers",
            }[self.kind, plural]
        return f"{noun} {bounds}".strip()


class Options(Constraint):
    """One of a fixed set of values: ``Options("avg", "max", "flatten")``."""

    def __init__(self, *values):
        if not values:
            raise ValueError("Options needs at least one value.")
        self.values = tuple(values)

    def __repr__(self) -> str:
        return f"Options{self.values!r}"

    def is_satisfied_by(self, value) -> bool:
        # The type too: True is not 1, and 1 is not "1".
        return any(type(value) is type(option) and value == option for option in self.values)

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        if plural:
            return f"{noun or 'names'} from {list(self.values)!r}"
        return f"one of {', '.join(map(repr, self.values))}"


class Prefixed(Constraint):
    """A string that starts with ``prefix`` and names something after it:
    ``Prefixed("pretrained:", "<preset name or directory>")``."""

    def __init__(self, prefix: str, what: str):
        self.prefix = prefix
        self.what = what

    def __repr__(self) -> str:
        return f"Prefixed({self.prefix!r})"

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str) and value.startswith(self.prefix) and bool(value[len(self.prefix) :].strip())

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        return f"{'strings' if plural else 'a string'} {self.prefix}{self.what}"


class ListOf(Constraint):
    """A list whose items each meet ``item``.

    ``ListOf(Interval(int, 1, None), min_length=1)``: "a non-empty list of positive integers".

    Args:
        item: the constraint of every item (any kind ``make_constraint`` takes).
        min_length: the list's shortest length.
        max_length: the list's longest length (None: no upper bound).
        distinct: no item may repeat.
        noun: the items' name in messages ("ridges" in "a non-empty list of ridges >= 0").
    """

    def __init__(
        self,
        item,
        *,
        min_length: int = 0,
        max_length: int | None = None,
        distinct: bool = False,
        noun: str | None = None,
    ):
        self.item = make_constraint(item)
        if isinstance(self.item, ListOf):
            raise TypeError("ListOf items cannot be lists themselves; settings are plain values and short lists.")
        self.min_length, self.max_length, self.distinct, self.noun = min_length, max_length, distinct, noun

    def __repr__(self) -> str:
        return f"ListOf({self.item!r}, min_length={self.min_length}, max_length={self.max_length})"

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, (list, tuple)) and self._problem(value) is None

    def _problem(self, items) -> str | None:
        """None if ``items`` (a list) is valid, else the detail for the message."""
        if len(items) < self.min_length or (self.max_length is not None and len(items) > self.max_length):
            return ""
        for index, item in enumerate(items):
            if not self.item.is_satisfied_by(item):
                return f" (item [{index}] is {item!r})"
        if self.distinct:
            repeated = [item for index, item in enumerate(items) if item in items[:index]]
            if repeated:
                return f" ({repeated[0]!r} repeats)"
        return None

    def detail(self, value) -> str:
        return (self._problem(value) or "") if isinstance(value, (list, tuple)) else ""

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        low, high = self.min_length, self.max_length
        if high is None:
            length = {0: "a list of", 1: "a non-empty list of"}.get(low, f"a list of at least {low}")
        elif low == high:
            length = f"a list of {low}"
        elif low == 0:
            length = f"a list of at most {high}"
        else:
            length = f"a list of {low} {'or' if high == low + 1 else 'to'} {high}"
        items = self.item.describe(plural=True, noun=self.noun)
        return f"{length} {'distinct ' if self.distinct else ''}{items}"


class _Null(Constraint):
    def is_satisfied_by(self, value) -> bool:
        return value is None

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        return "nulls" if plural else "null"


class _Boolean(Constraint):
    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, bool)

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        return "true/false values" if plural else "true or false"


class _String(Constraint):
    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str)

    def describe(self, *, plural: bool = False, noun: str | None = None) -> str:
        return (noun or "strings") if plural else "a string"


def make_constraint(kind) -> Constraint:
    """A ``Constraint`` from a table entry.

    Args:
        kind: a Constraint itself, or None (null), ``bool`` or ``str``.

    Returns:
        The ``Constraint``.

    Raises:
        TypeError: anything else.
    """
    if isinstance(kind, Constraint):
        return kind
    if kind is None:
        return _Null()
    if kind is bool:
        return _Boolean()
    if kind is str:
        return _String()
    raise TypeError(f"a setting constraint must be an Interval, Options, ListOf, None, bool or str; got {kind!r}.")


def check_settings(config: dict, constraints: dict, *, notes: dict | None = None, defaults: dict | None = None) -> None:
    """Check a resolved configuration against a table of constraints.

    Args:
        config: the configuration (nested dicts; the table's keys are dotted).
        constraints: {dotted key: [kind, ...]}; a setting's value must meet one of its
            kinds (see ``make_constraint``). Settings not in the table are not checked.
        notes: {dotted key: text}: what the setting means or what null stands for,
            added to its message in brackets.
        defaults: the defaults the configuration was resolved from: their value is
            named in the message's fix.

    Raises:
        ConfigError: for the first setting that meets none of its kinds, e.g.
            "epochs must be a positive integer or null (null: the data set's); got 0.
            Fix: --set epochs=... (default: null)."
    """
    for key, kinds in constraints.items():
        value = _setting(config, key)
        kinds = [make_constraint(kind) for kind in kinds]
        if not any(kind.is_satisfied_by(value) for kind in kinds):
            raise ConfigError(_setting_message(key, value, kinds, (notes or {}).get(key), _default(defaults, key)))


_NO_DEFAULT = object()


def _setting(config: dict, dotted_key: str):
    try:
        return lookup_setting(config, dotted_key)
    except (KeyError, TypeError):
        raise ConfigError(
            f"the configuration has no setting {dotted_key!r}; resolve it from the experiment's "
            "defaults (resolve_config) first."
        ) from None


def _default(defaults: dict | None, dotted_key: str):
    try:
        return lookup_setting(defaults, dotted_key)
    except (KeyError, TypeError):
        return _NO_DEFAULT


def _setting_message(key: str, value, kinds: list, note: str | None, default) -> str:
    # A number that missed its bound hears just the bound ("must be >= 0"); anything else hears every kind.
    parts = [
        kind.describe(bounds_only=True) if isinstance(kind, Interval) and kind.is_of_kind(value) else kind.describe()
        for kind in kinds
    ]
    allowed = (
        parts[0]
        if len(parts) == 1
        else (
            ", ".join(parts[:-1]) + ", or " + parts[-1] if any(" or " in part for part in parts) else " or ".join(parts)
        )
    )
    detail = next((kind.detail(value) for kind in kinds if kind.detail(value)), "")
    fix = f"Fix: --set {key}=..."
    if default is not _NO_DEFAULT:
        fix += f" (default: {_as_override(default)})"
    return f"{key} must be {allowed}{f' ({note})' if note else ''}; got {value!r}{detail}. {fix}."


def _as_override(value) -> str:
    """``value`` as one writes it after ``--set key=``."""
    return value if isinstance(value, str) else json.dumps(value)
