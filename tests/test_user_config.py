"""A user's study plans only the user's datasets; the demo study is its own file (config/demo.yaml).

Snakemake merges a `--configfile` into the Snakefile's `configfile: "config/config.yaml"` (relative to
the working directory), so these dry-runs work in a folder laid out like the repository: the shipped
config/config.yaml (the template) and config/demo.yaml copied into it.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from dataset_fixtures import make_custom_folder
from test_workflow import ROOT, snakemake

from pipeline.config import ConfigError, load_config


def planned_datasets(output: str) -> set[str]:
    return set(re.findall(r"results/manifests/([^/\s,]+)\.parquet", output))


@pytest.fixture
def repo_like(tmp_path):
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "demo.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / "config" / name)
    return tmp_path


def test_user_configfile_plans_only_the_users_datasets(repo_like):
    custom = make_custom_folder(repo_like / "data")
    user = repo_like / "my-study.yaml"
    user.write_text(yaml.safe_dump({"datasets": {"mine": {"kind": "custom", "root": str(custom.root)}}}))
    result = snakemake(repo_like, "-n", config=user)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert planned_datasets(result.stdout) == {"mine"}
    assert "world" not in result.stdout  # no world spec, render, index or embedding job of the demo


def test_demo_study_plans_the_world(repo_like):
    """What `make dryrun` runs: the demo study replacing config/config.yaml."""
    result = snakemake(repo_like, "-n", "--replace-workflow-config", config=repo_like / "config/demo.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert planned_datasets(result.stdout) == {"world", "world_b"}  # world_b: the cross-domain leg
    assert "rule render_world_shard:" in result.stdout and "rule train_recogniser:" in result.stdout


def test_no_study_plans_nothing_and_says_where_datasets_go(repo_like):
    """`snakemake` with only the template: no job, and a warning saying where datasets go (a dry-run,
    also with the SLURM profile, still runs from the repository root)."""
    result = snakemake(repo_like, "-n", config=repo_like / "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no datasets configured" in result.stderr + result.stdout
    assert "config/demo.yaml" in result.stderr + result.stdout
    assert not (repo_like / "results").exists()
    with pytest.raises(ConfigError, match="no datasets configured"):
        load_config(ROOT / "config/config.yaml")


def test_makefile_runs_the_demo_file():
    makefile = (ROOT / "Makefile").read_text()
    assert "DEMO := --configfile config/demo.yaml --replace-workflow-config" in makefile
    for target in ("demo", "dryrun", "lint"):
        recipe = makefile.split(f"\n{target}: install\n", 1)[1].split("\n\n", 1)[0]
        assert "$(DEMO)" in recipe, target
