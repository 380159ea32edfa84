# Configuration validation, shared constants and input functions (no rules here).
import json
import sys
from pathlib import Path

from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
# The workflow runs from the repository root, so `python -m pipeline.cli` in a job imports the
# package from this checkout even inside a per-rule conda env where it is not pip-installed.
sys.path.insert(0, str(REPO))

from pipeline.config import validate_config  # noqa: E402
from pipeline.contracts import shard_names  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
validate_config(config)  # fills nested defaults and checks cross-references (names the key on error)

DATASETS = config["datasets"]
WORLD_DATASETS = sorted(name for name, d in DATASETS.items() if d["kind"] == "world")
EXTERNAL_DATASETS = sorted(name for name, d in DATASETS.items() if d["kind"] != "world")


def alternation(names):
    """A wildcard regex matching exactly these names (or nothing, for an empty list)."""
    return "|".join(names) if names else "(?!x)x"


def world_of(dataset):
    return config["worlds"][DATASETS[dataset]["world"]]


def get_world_spec(wildcards):
    """The world's resolved spec as JSON: a params value, so a config change re-renders the world."""
    return json.dumps({"dataset": wildcards.dataset, **world_of(wildcards.dataset)}, sort_keys=True)


def get_world_shards(dataset):
    return shard_names(world_of(dataset)["shards"])


def get_world_shard_outputs(wildcards):
    shards = get_world_shards(wildcards.dataset)
    return {
        "sheets": expand("results/world/{dataset}/sheets/{shard}.csv", dataset=wildcards.dataset, shard=shards),
        "groundtruth": expand(
            "results/world/{dataset}/groundtruth/{shard}.npz", dataset=wildcards.dataset, shard=shards
        ),
    }


def get_dataset_spec(wildcards):
    return json.dumps({"name": wildcards.dataset, **DATASETS[wildcards.dataset]}, sort_keys=True)


def get_final_outputs():
    return expand("results/manifests/{dataset}.parquet", dataset=sorted(DATASETS))
