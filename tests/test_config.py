"""Configuration files, --set overrides and their validation."""

import json

import pytest

from xmodal_tf.experiments.config import ConfigError, load_config_file, parse_overrides, resolve_config

DEFAULTS = {
    "data": "digits",
    "k": 10,
    "reg": [1e-4, 1e-3],
    "probe": True,
    "rate": 0.5,
    "anything": None,
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
}


def test_overrides_are_parsed_as_json_then_strings():
    parsed = parse_overrides(
        ["k=5", "data=mnist", "probe=false", "reg=[0.1, 0.2]", "optimizer.learning_rate=3e-4", 'anything="quoted"']
    )
    assert parsed == {
        "k": 5,
        "data": "mnist",
        "probe": False,
        "reg": [0.1, 0.2],
        "optimizer": {"learning_rate": 3e-4},
        "anything": "quoted",
    }


def test_layers_override_defaults_in_order_and_types_are_coerced():
    resolved = resolve_config(DEFAULTS, {"k": 3, "rate": 1}, {"k": 7.0, "reg": 0.5, "probe": "no"})
    assert resolved["k"] == 7 and isinstance(resolved["k"], int)
    assert resolved["rate"] == 1.0 and isinstance(resolved["rate"], float)
    assert resolved["reg"] == [0.5]  # one value for a list setting
    assert resolved["probe"] is False
    assert resolved["optimizer"] == {"name": "adam", "learning_rate": 1e-3}
    assert DEFAULTS["k"] == 10  # defaults are not mutated


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"kk": 3}, r"unknown setting 'kk'\. Did you mean 'k'\?"),
        ({"k": "ten"}, r"k must be an integer \(default 10\); got 'ten'"),
        ({"k": 2.5}, "k must be an integer"),
        ({"probe": "maybe"}, "probe must be true or false"),
        ({"rate": True}, "rate must be a number"),
        ({"reg": ["a"]}, r"reg\[0\] must be a number"),
        ({"optimizer": 3}, "optimizer is a group of settings"),
        ({"optimizer": {"momentum": 0.9}}, r"unknown setting 'optimizer.momentum'"),
        ({"data": "cifar"}, "data='cifar' is not one of: digits, mnist"),
    ],
)
def test_bad_settings_are_named(layer, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(DEFAULTS, layer, choices={"data": ("digits", "mnist")})


@pytest.mark.parametrize(
    "assignment, message",
    [("k", "--set expects key=value"), ("=3", "--set expects key=value"), ("a..b=1", "empty part")],
)
def test_malformed_overrides(assignment, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides([assignment])


def test_config_files(tmp_path):
    toml_file = tmp_path / "run.toml"
    toml_file.write_text("k = 4\nreg = [0.1]\n[optimizer]\nlearning_rate = 0.01\n")
    assert load_config_file(toml_file) == {"k": 4, "reg": [0.1], "optimizer": {"learning_rate": 0.01}}
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"k": 4}))
    assert load_config_file(json_file) == {"k": 4}


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.toml", "k = = 4", r"bad\.toml is not valid TOML"),
        ("bad.json", "{k: 4}", r"bad\.json is not valid JSON"),
        ("list.json", "[1, 2]", "must hold a table of settings"),
        ("run.yaml", "k: 4", "must end in .toml or .json"),
    ],
)
def test_malformed_config_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
