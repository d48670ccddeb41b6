"""The experiments' tables of setting constraints (``xmodal_tf.experiments.config``), the
messages they give, and ``RunContext.log_figure``, the one way an experiment writes its key figure."""

import pytest
from figure_checks import assert_figure

from xmodal_tf.experiments import EXPERIMENT_MODULES, get_experiment
from xmodal_tf.experiments.base import Experiment, RunContext
from xmodal_tf.experiments.config import ConfigError, Interval, ListOf, Options, check_settings, make_constraint

# Each experiment's filling of its null (per data set) settings, where it has one.
FILLERS = {
    "cca": None,
    "transfer": None,
    "deepcca": "resolved",
    "retrieval": "resolved",
    "fusion": "settings_for",
    "crossmodal": "settings_for",
    "mae": "settings_for",
    "cgan": "resolve_data_defaults",
}
# Tried in order: the first value that meets none of a setting's kinds is its bad value.
BAD_VALUES = ("not-a-valid-value", -1, 10**9, -0.5, 1.5, [], [0], {"a": 1})


def flat_keys(config: dict, prefix: str = "") -> set:
    keys = set()
    for key, value in config.items():
        keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


# ----------------------------------------------------------------------------- the kinds
@pytest.mark.parametrize(
    "kind, inside, outside, text",
    [
        (Interval(int, 1, None), [1, 7, 10**12], [0, -3, 2.0, True, "1", None], "a positive integer"),
        (Interval(int, 0, 4), [0, 4], [-1, 5, 0.5], "an integer in [0, 4]"),
        (
            Interval(float, 0, 1, closed="left"),
            [0, 0.0, 0.999],
            [1, 1.0, -1e-9, float("nan"), False],
            "a number in [0, 1)",
        ),
        (Interval(float, 0, None, closed="neither"), [1e-12, 3], [0, 0.0, float("inf"), "3"], "a number > 0"),
        (Interval(float, None, 2, closed="right"), [-5, 2], [2.5], "a number <= 2"),
        (Options("avg", "max"), ["avg", "max"], ["mean", None, ["avg"]], "one of 'avg', 'max'"),
        (Options(1, 2), [1, 2], [True, 1.0, "1"], "one of 1, 2"),
        (ListOf(Interval(int, 1, None)), [[], [1, 2], (3,)], [[0], [1.5], 3, "12"], "a list of positive integers"),
        (
            ListOf(Interval(int, 1, None), min_length=1, max_length=2),
            [[1], [1, 2]],
            [[], [1, 2, 3]],
            "a list of 1 or 2 positive integers",
        ),
        (
            ListOf(Options("a", "b"), min_length=1, distinct=True),
            [["a"], ["b", "a"]],
            [["a", "a"], ["c"], []],
            "a non-empty list of distinct names from ['a', 'b']",
        ),
        (
            ListOf(Interval(float, 0, None), min_length=1, noun="ridges"),
            [[0, 1e-4]],
            [[-1.0], []],
            "a non-empty list of ridges >= 0",
        ),
        (make_constraint(None), [None], [0, "", []], "null"),
        (make_constraint(bool), [True, False], [0, 1, "true"], "true or false"),
        (make_constraint(str), ["", "left"], [None, 1], "a string"),
    ],
)
def test_each_kind_accepts_and_describes_its_values(kind, inside, outside, text):
    assert kind.describe() == text
    for value in inside:
        assert kind.is_satisfied_by(value), value
    for value in outside:
        assert not kind.is_satisfied_by(value), value


@pytest.mark.parametrize("kind, error", [(int, TypeError), ("positive", TypeError), ([1, 2], TypeError)])
def test_a_table_entry_must_be_a_kind(kind, error):
    with pytest.raises(error, match="must be an Interval, Options, ListOf, None, bool or str"):
        make_constraint(kind)


def test_kinds_refuse_bad_definitions():
    with pytest.raises(TypeError, match="Interval kind must be int or float"):
        Interval(complex, 0, 1)
    with pytest.raises(ValueError, match="closed must be one of"):
        Interval(float, 0, 1, closed="right-ish")
    with pytest.raises(ValueError, match="low must not exceed high"):
        Interval(int, 5, 1)
    with pytest.raises(ValueError, match="at least one value"):
        Options()
    with pytest.raises(TypeError, match="cannot be lists themselves"):
        ListOf(ListOf(bool))


# ----------------------------------------------------------------------------- messages
TABLE = {
    "k": [Interval(int, 1, None), None],
    "rate": [Interval(float, 0, None)],
    "reg": [ListOf(Interval(float, 0, None), min_length=1, noun="ridges")],
    "optimizer.name": [Options("adam", "sgd")],
}
DEFAULTS = {"k": None, "rate": 0.5, "reg": [1e-4, 1e-3], "optimizer": {"name": "adam"}}


@pytest.mark.parametrize(
    "setting, value, message",
    [
        # The key, what is allowed, the note, the value, and the fix with the default.
        (
            "k",
            0,
            "k must be a positive integer or null (null: the data set's); got 0. Fix: --set k=... (default: null).",
        ),
        ("k", "ten", "k must be a positive integer or null (null: the data set's); got 'ten'."),
        # A number that misses its bound hears the bound; anything else every kind.
        ("rate", -0.5, "rate must be >= 0; got -0.5. Fix: --set rate=... (default: 0.5)."),
        ("rate", "high", "rate must be a number >= 0; got 'high'."),
        ("rate", float("inf"), "rate must be a number >= 0; got inf."),
        # A list names its first bad item.
        (
            "reg",
            [1e-4, -1.0],
            "reg must be a non-empty list of ridges >= 0; got [0.0001, -1.0] (item [1] is -1.0). "
            "Fix: --set reg=... (default: [0.0001, 0.001]).",
        ),
        ("reg", [], "reg must be a non-empty list of ridges >= 0; got []. Fix"),
    ],
)
def test_messages_name_the_key_value_allowed_values_and_fix(setting, value, message):
    with pytest.raises(ConfigError) as error:
        check_settings({**DEFAULTS, setting: value}, TABLE, notes={"k": "null: the data set's"}, defaults=DEFAULTS)
    assert message in str(error.value)


def test_nested_settings_use_dotted_keys():
    check_settings(DEFAULTS, TABLE)
    with pytest.raises(
        ConfigError,
        match=r"optimizer.name must be one of 'adam', 'sgd'; got 'rmsprop'\. "
        r"Fix: --set optimizer.name=\.\.\. \(default: adam\)\.",
    ):
        check_settings({**DEFAULTS, "optimizer": {"name": "rmsprop"}}, TABLE, defaults=DEFAULTS)
    with pytest.raises(ConfigError, match="the configuration has no setting 'optimizer.name'"):
        check_settings({**DEFAULTS, "optimizer": {}}, TABLE)


# ----------------------------------------------------------------------------- Experiment
def _run(config, context):
    return {}


def test_a_table_must_name_settings_of_the_defaults():
    with pytest.raises(ValueError, match="constraints name 'kk', which is not a setting of its defaults"):
        Experiment("tiny", "", {"k": 1}, _run, constraints={"kk": [Interval(int, 1, None)]})
    with pytest.raises(ValueError, match="the constraints of 'k' are empty"):
        Experiment("tiny", "", {"k": 1}, _run, constraints={"k": []})
    with pytest.raises(TypeError, match="must be an Interval"):
        Experiment("tiny", "", {"k": 1}, _run, constraints={"k": [int]})


def test_validate_checks_the_table_then_the_rules_and_one_option_kind_is_a_choice():
    calls = []

    def rules(config):
        calls.append(config)
        if config["low"] >= config["high"]:
            raise ConfigError("low must be smaller than high.")

    experiment = Experiment(
        "tiny",
        "",
        {"low": 1, "high": 2, "mode": "a"},
        _run,
        rules=rules,
        constraints={"low": [Interval(int, 0, None)], "high": [Interval(int, 0, None)], "mode": [Options("a", "b")]},
    )
    assert experiment.choices == {"mode": ("a", "b")}  # checked while the configuration is resolved
    experiment.validate({"low": 1, "high": 2, "mode": "b"})
    with pytest.raises(ConfigError, match="low must be smaller than high"):
        experiment.validate({"low": 3, "high": 2, "mode": "a"})
    calls.clear()
    with pytest.raises(ConfigError, match="low must be >= 0"):
        experiment.validate({"low": -3, "high": 2, "mode": "a"})
    assert not calls  # the rules see only settings that passed the table


@pytest.mark.parametrize("name", sorted(EXPERIMENT_MODULES))
def test_every_setting_of_every_experiment_has_its_constraints(name):
    experiment = get_experiment(name)
    assert flat_keys(experiment.defaults) == set(experiment.constraints), "a setting without constraints"
    assert set(experiment.notes) <= set(experiment.constraints)
    experiment.validate(experiment.defaults)


@pytest.mark.parametrize("name", sorted(EXPERIMENT_MODULES))
def test_every_data_sets_defaults_pass(name):
    """The settings each data set fills in for null pass the table too (they skip it)."""
    import importlib

    module = importlib.import_module(f"xmodal_tf.experiments.{EXPERIMENT_MODULES[name]}")
    experiment = module.EXPERIMENT
    for data in experiment.choices["data"]:
        config = {**experiment.defaults, "data": data}
        experiment.validate(config)
        if FILLERS[name] is not None:
            check_settings(getattr(module, FILLERS[name])(config), experiment.constraints)


@pytest.mark.parametrize("name", sorted(EXPERIMENT_MODULES))
def test_every_refused_setting_names_itself_and_its_fix(name):
    experiment = get_experiment(name)
    checked = 0
    for key, kinds in experiment.constraints.items():
        kinds = [make_constraint(kind) for kind in kinds]
        bad = next((value for value in BAD_VALUES if not any(kind.is_satisfied_by(value) for kind in kinds)), None)
        if bad is None:  # a free string: its rules check it
            continue
        with pytest.raises(ConfigError) as error:
            experiment.validate({**experiment.defaults, key: bad})
        message = str(error.value)
        assert message.startswith(f"{key} must be ") and f"got {bad!r}" in message, message
        assert f"Fix: --set {key}=..." in message, message
        checked += 1
    assert checked >= len(experiment.constraints) - 2


# ----------------------------------------------------------------------------- figures
def _figure():
    from xmodal_tf import plots

    return plots.correlation_spectrum({"test": [0.9, 0.5, 0.1]}, title="tiny")


def test_log_figure_writes_a_png_and_a_tensorboard_image(tmp_path):
    context = RunContext(tmp_path / "run")
    path = context.log_figure("canonical_correlations", _figure())
    context.close()
    assert path == tmp_path / "run" / "canonical_correlations.png"
    assert assert_figure(tmp_path / "run", "canonical_correlations") == (640, 400)
    assert not list((tmp_path / "run").glob(".*.tmp"))  # written atomically, nothing left over


def test_only_the_chief_writes_figures(tmp_path):
    context = RunContext(tmp_path / "run")
    context.is_chief = False  # as on another worker of a multi-worker run
    assert context.log_figure("spectrum", _figure()) is None
    context.close()
    assert not (tmp_path / "run" / "spectrum.png").exists()
    assert not list((tmp_path / "run").glob("events.*"))


@pytest.mark.parametrize(
    "name, step, error, message",
    [
        ("../escape", 1, ValueError, "figure name must be letters, digits"),
        (".hidden", 1, ValueError, "figure name must be letters, digits"),
        ("", 1, ValueError, "figure name must be letters, digits"),
        (3, 1, TypeError, "figure name must be a str"),
        ("spectrum", 0, ValueError, "step must be"),
    ],
)
def test_log_figure_refuses_bad_names_and_steps(tmp_path, name, step, error, message):
    context = RunContext(tmp_path / "run")
    with pytest.raises(error, match=message):
        context.log_figure(name, _figure(), step=step)
    context.close()
    assert not list((tmp_path / "run").glob("*.png"))
