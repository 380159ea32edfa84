"""The study's configuration: the schema and cross-references (:mod:`pipeline.config`) plus each
package's check of its own section. The workflow (``rules/common.smk``) and the CLI validate through
:func:`validate_study`."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config, validate_config
from pipeline.datasets import check_datasets
from pipeline.gaitcrafter.config import check_gaitcrafter
from pipeline.generation.config import check_generation

SECTION_CHECKS = (check_datasets, check_gaitcrafter, check_generation)


def validate_study(config: dict, *, allow_empty: bool = False) -> dict:
    """Validate ``config`` in place (filling defaults) with every section check; return it.
    ``allow_empty``: no datasets is valid (the workflow then plans nothing and says why)."""
    return validate_config(config, SECTION_CHECKS, allow_empty=allow_empty)


def load_study(path: str | Path) -> dict:
    """Read, validate and return a study configuration file."""
    return load_config(path, SECTION_CHECKS)
