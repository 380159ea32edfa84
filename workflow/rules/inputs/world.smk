# Input functions and params of the synthetic world and dataset indexing (rules/world.smk, rules/index.smk).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- world ------------------------------------------------------------------------------------------


def world_of(dataset):
    return config["worlds"][DATASETS[dataset]["world"]]


def get_world_spec(wildcards):
    """The world's resolved spec as JSON: a params value, so a config change re-renders the world."""
    return json.dumps(
        {"dataset": wildcards.dataset, **world_of(wildcards.dataset)}, sort_keys=True
    )


# ---- index ------------------------------------------------------------------------------------------


def get_world_shards(dataset):
    return shard_names(world_of(dataset)["shards"])


def get_world_shard_outputs(wildcards):
    shards = get_world_shards(wildcards.dataset)
    return {
        "sheets": expand(
            "results/world/{dataset}/sheets/{shard}.csv",
            dataset=wildcards.dataset,
            shard=shards,
        ),
        "groundtruth": expand(
            "results/world/{dataset}/groundtruth/{shard}.npz",
            dataset=wildcards.dataset,
            shard=shards,
        ),
    }


def get_dataset_spec(wildcards):
    return json.dumps(
        {"name": wildcards.dataset, **DATASETS[wildcards.dataset]}, sort_keys=True
    )
