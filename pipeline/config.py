"""Configuration loading and validation outside Snakemake (CLI, tests).

The schema is the one Snakemake's ``validate`` uses (workflow/schemas/config.schema.yaml), so a config
accepted here is accepted by the workflow and vice versa; defaults from the schema are filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not follow the schema; the message names the offending key."""


def _with_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = _copy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def key_path(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "<top level>"


NO_DATASETS = (
    "no datasets configured: add your datasets under `datasets` in config/config.yaml, or pass your study "
    "with --configfile (see config/README.md); the demo study on the synthetic world is config/demo.yaml "
    "(make demo)"
)


def require_datasets(config: dict) -> None:
    """A study names at least one dataset. The workflow's default config file (config/config.yaml) has
    none, so that a user's --configfile, which Snakemake merges into it, plans only the user's datasets."""
    if not isinstance(config, dict) or not config.get("datasets"):
        raise ConfigError(NO_DATASETS)


def validate_config(
    config: dict, checks: Sequence[Callable[[dict], None]] = (), *, allow_empty: bool = False
) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise :class:`ConfigError`.

    ``checks`` are the owning packages' checks of their own sections (run after the schema and the
    cross-references; :func:`pipeline.study.config.validate_study` passes them all), so this module
    imports no stage. ``allow_empty``: a study without datasets is valid (it plans nothing)."""
    if not allow_empty:
        require_datasets(config)
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Two passes: defaults are filled while validating, and nested defaults may enable further checks.
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  {key_path(e)}: {e.message}" for e in errors[:10]]
            raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    check_references(config)
    for check in checks:
        check(config)
    return config


def check_references(config: dict) -> None:
    """Cross-key rules a JSON schema cannot express."""
    check_train_on(config)
    worlds = config.get("worlds", {})
    for name, dataset in config["datasets"].items():
        if dataset["kind"] == "world" and dataset["world"] not in worlds:
            raise ConfigError(f"datasets/{name}/world: no world named '{dataset['world']}' under worlds")
    for name, world in worlds.items():
        if world["train_identities"] >= world["identities"]:
            raise ConfigError(
                f"worlds/{name}/train_identities must be < identities (test identities are needed)"
            )
        names = [c["name"] for c in world["conditions"]]
        if len(set(names)) != len(names):
            raise ConfigError(f"worlds/{name}/conditions: duplicate condition names {names}")
        unknown = sorted(set(world["gallery_conditions"]) - set(names))
        if unknown:
            raise ConfigError(f"worlds/{name}/gallery_conditions: unknown conditions {unknown}")
        if world["motion_source"] == "mixed" and world["mocap_identities"] > world["identities"]:
            raise ConfigError(f"worlds/{name}/mocap_identities exceeds identities")


def check_train_on(config: dict) -> None:
    """``recognisers.train_on``: each entry maps a dataset of the study to another dataset of the study
    that trains its own recognisers (no self-reference, no chain: the trainer is not itself scored by
    another dataset's recognisers)."""
    train_on = config.get("recognisers", {}).get("train_on", {})
    datasets = config["datasets"]
    for scored, trainer in train_on.items():
        where = f"recognisers/train_on/{scored}"
        if scored not in datasets:
            raise ConfigError(f"{where}: '{scored}' is not a dataset of the study (datasets: {sorted(datasets)})")
        if trainer not in datasets:
            raise ConfigError(f"{where}: '{trainer}' is not a dataset of the study (datasets: {sorted(datasets)})")
        if trainer == scored:
            raise ConfigError(
                f"{where}: a dataset cannot be scored with its own recognisers through train_on; leave it out to "
                "train on its own train split"
            )
        if trainer in train_on:
            raise ConfigError(
                f"{where}: '{trainer}' is itself scored with the recognisers of '{train_on[trainer]}' (a chain); "
                f"name the dataset that trains them: {scored}: {train_on[trainer]}"
            )


def load_config(path: str | Path, checks: Sequence[Callable[[dict], None]] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return validate_config(config, checks)
