"""Shared by the benchmarks that run a study through the workflow (not a benchmark itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def demo_world_only(study: str) -> dict:
    """config/demo.yaml reduced to its first world dataset: the second world (the cross-domain leg) and
    the guidance-source ablation go, since a benchmark replaces the models and scenarios they name."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["study"] = study
    first = next(iter(config["datasets"]))
    config["datasets"] = {first: config["datasets"][first]}
    config["worlds"] = {config["datasets"][first]["world"]: config["worlds"][config["datasets"][first]["world"]]}
    config["sweep"].pop("guidance_ablation", None)
    config["recognisers"].pop("train_on", None)
    return config


def run_study(config: dict, work: Path, cores: int, *targets: str) -> subprocess.CompletedProcess:
    """Write ``config`` to ``work/study.yaml`` and run the workflow on it alone (no default config merged
    in) in ``work``, with this Python's environment and the SLURM plugin's import-time probe disarmed."""
    config_path = work / "study.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.setdefault("SLURM_CONF", "/dev/null")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
               "--directory", str(work), "--configfile", str(config_path), "--replace-workflow-config",
               "--cores", str(cores), *targets, "-q"]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True)


if __name__ == "__main__":
    print(__doc__)
