"""The configuration schema: defaults, unknown keys, wrong types and cross-references."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parent.parent


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


@pytest.mark.parametrize("path", ["config/demo.yaml", ".test/config.yaml"])
def test_shipped_configs_validate(path):
    config = load_config(ROOT / path)
    assert config["datasets"]


def test_defaults_are_filled():
    config = validate_config({"datasets": {"w": {"kind": "world", "world": "x"}}, "worlds": {"x": {}}})
    world = config["worlds"]["x"]
    assert world["identities"] == 24 and world["fps"] == 25 and world["camera"]["fov_deg"] == 45
    assert world["conditions"][0]["background"] == "studio"


def test_unknown_key_is_named():
    config = default_config()
    config["worlds"]["default"]["identites"] = 3
    with pytest.raises(ConfigError, match="identites"):
        validate_config(config)


def test_unknown_nested_key_is_named_with_its_path():
    config = default_config()
    config["worlds"]["default"]["conditions"][0]["umbrella"] = True
    with pytest.raises(ConfigError, match=r"worlds/default/conditions/0.*umbrella"):
        validate_config(config)


def test_wrong_type_is_named():
    config = default_config()
    config["worlds"]["default"]["frames"] = "many"
    with pytest.raises(ConfigError, match=r"worlds/default/frames"):
        validate_config(config)


def test_unknown_covariate_value_fails():
    config = default_config()
    config["worlds"]["default"]["conditions"][0]["background"] = "beach"
    with pytest.raises(ConfigError, match="beach"):
        validate_config(config)


def test_dangling_world_reference_fails():
    config = default_config()
    config["datasets"]["world"]["world"] = "nope"
    with pytest.raises(ConfigError, match="no world named 'nope'"):
        validate_config(config)


def test_external_dataset_needs_root():
    config = default_config()
    config["datasets"]["casiab"] = {"kind": "opengait", "partition": "p.json"}
    with pytest.raises(ConfigError, match="root"):
        validate_config(copy.deepcopy(config))


def test_gallery_condition_must_exist():
    config = default_config()
    config["worlds"]["default"]["gallery_conditions"] = ["nm-09"]
    with pytest.raises(ConfigError, match="nm-09"):
        validate_config(config)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
