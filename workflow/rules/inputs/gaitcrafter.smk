# Input functions and params of GaitCrafter: training, sampling experiments and the augmentation experiment (rules/gaitcrafter.smk).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- gaitcrafter ------------------------------------------------------------------------------------


from pipeline.gaitcrafter.stage import variant_names, variant_needs  # noqa: E402

GC_EVAL = GAITCRAFTER["evaluation"]
GC_AUG = GAITCRAFTER["augmentation"]
GC_KINDS = ("same", "novel")
GC_VARIANTS = variant_names(GC_AUG["variants"], GC_AUG["low_label_percents"])


def gaitcrafter_sampling():
    """gaitcrafter.sampling without its nulls (null = the checkpoint's own setting)."""
    return {k: v for k, v in GAITCRAFTER["sampling"].items() if v is not None}


def silhouette_stores(dataset):
    return [
        f"results/perception/{dataset}/silhouettes/{shard}.npz"
        for shard in shard_names(shards_of(dataset))
    ]


def gaitcrafter_source_inputs(wildcards):
    """A dataset's manifest and silhouette summary (the stores sit beside the summary's statuses)."""
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "silhouettes": f"results/perception/{wildcards.dataset}/silhouettes/summary.parquet",
    }


def get_gaitcrafter_train_spec(wildcards):
    return json.dumps(
        {
            "manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "silhouettes": silhouette_stores(wildcards.dataset),
            "out_dir": f"results/gaitcrafter/{wildcards.dataset}",
            "model": gaitcrafter_model_file(wildcards.dataset),
            "dataset": wildcards.dataset,
            "preset": GAITCRAFTER["preset"],
            "settings": {
                "threads": GAITCRAFTER["threads"],
                "progress": False,
                **GAITCRAFTER["settings"],
            },
            "enrol": GAITCRAFTER["enrol"],
            # A shipped checkpoint is used only when it was made from this world and training config.
            "pretrained": GAITCRAFTER.get("pretrained"),
            "world": gaitcrafter_world(wildcards.dataset),
        },
        sort_keys=True,
    )


def gaitcrafter_world(dataset):
    """The world config of a world dataset (part of a shipped checkpoint's fingerprint); None otherwise."""
    return world_of(dataset) if DATASETS[dataset]["kind"] == "world" else None


def gaitcrafter_resource(name):
    def resource(wildcards, attempt):
        value = GAITCRAFTER["resources"][name]
        if name == "gpu":
            return value or None  # CPU: request no GPU at all
        return value * attempt

    return resource


def gaitcrafter_partition(wildcards):
    return (
        CLUSTER["gpu_partition"]
        if GAITCRAFTER["resources"]["gpu"]
        else CLUSTER["cpu_partition"]
    )


def gaitcrafter_gpu_model(wildcards):
    return CLUSTER["gpu_model"] if GAITCRAFTER["resources"]["gpu"] else None


def get_gaitcrafter_quality_spec(wildcards):
    return json.dumps(
        {
            "model": gaitcrafter_model_file(wildcards.dataset),
            "manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "silhouettes": silhouette_stores(wildcards.dataset),
            "dataset": wildcards.dataset,
            "out": f"results/gaitcrafter/{wildcards.dataset}/quality.parquet",
            "sampling": gaitcrafter_sampling(),
            "samples_per_cell": GC_EVAL["quality"]["samples_per_cell"],
            "threads": GAITCRAFTER["threads"],
        },
        sort_keys=True,
    )


def get_gaitcrafter_novelty_inputs(wildcards):
    name = GC_EVAL["novelty"]["recogniser"]
    return {
        **gaitcrafter_source_inputs(wildcards),
        "model": gaitcrafter_model_file(wildcards.dataset),
        "recogniser": checkpoint_of(wildcards.dataset, name),
    }


def get_gaitcrafter_novelty_spec(wildcards):
    novelty = GC_EVAL["novelty"]
    return json.dumps(
        {
            "model": gaitcrafter_model_file(wildcards.dataset),
            "recogniser": novelty["recogniser"],
            "recogniser_checkpoint": checkpoint_of(
                wildcards.dataset, novelty["recogniser"]
            ),
            "manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "silhouettes": silhouette_stores(wildcards.dataset),
            "dataset": wildcards.dataset,
            "out": f"results/gaitcrafter/{wildcards.dataset}/novelty.parquet",
            "novel_identities": novelty["novel_identities"],
            "samples": novelty["samples"],
            "parents": novelty["parents"],
            "view": novelty["view"],
            "seed": novelty["seed"],
            "sampling": gaitcrafter_sampling(),
            "threads": GAITCRAFTER["threads"],
        },
        sort_keys=True,
    )


def get_gaitcrafter_synthesize_spec(wildcards):
    return json.dumps(
        {
            "model": gaitcrafter_model_file(wildcards.dataset),
            "out_dir": f"results/gaitcrafter/{wildcards.dataset}/synthetic/{wildcards.kind}",
            "kind": wildcards.kind,
            "dataset": wildcards.dataset,
            "per_identity": GC_AUG["clips_per_identity"],
            "novel_identities": GC_AUG["novel_identities"],
            "parents": GC_AUG["parents"],
            "covariates": GC_AUG["covariates"],
            "sampling": gaitcrafter_sampling(),
            "seed": GC_AUG["seed"],
            "threads": GAITCRAFTER["threads"],
        },
        sort_keys=True,
    )


def get_gaitcrafter_augment_inputs(wildcards):
    inputs = gaitcrafter_source_inputs(wildcards)
    for kind in variant_needs(wildcards.variant):
        inputs[kind] = (
            f"results/gaitcrafter/{wildcards.dataset}/synthetic/{kind}/manifest.parquet"
        )
    return inputs


def augmentation_note():
    if GAITCRAFTER["enrol"] == "gallery":
        return (
            "the GaitCrafter that made the synthetic clips also saw the test split's gallery sequences "
            "(enrolment for the sweep); its synthetic clips are of train-split identities only"
        )
    return None


def get_gaitcrafter_augment_spec(wildcards):
    base = f"results/gaitcrafter/{wildcards.dataset}"
    return json.dumps(
        {
            "dataset": wildcards.dataset,
            "variant": wildcards.variant,
            "real_manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "real_silhouettes": silhouette_stores(wildcards.dataset),
            "synthetic": {
                kind: f"{base}/synthetic/{kind}"
                for kind in variant_needs(wildcards.variant)
            },
            "recogniser": GC_AUG["recogniser"],
            "model_options": GC_AUG["model_options"],
            "train_settings": GC_AUG["train"],
            "protocol": protocol_of(wildcards.dataset),
            "metric": RECOGNISERS["metric"],
            "out_dir": f"{base}/augmentation/{wildcards.variant}",
            "out": f"{base}/augmentation/{wildcards.variant}/retrieval.parquet",
            "seed": GC_AUG["seed"],
            "threads": GAITCRAFTER["threads"],
            "note": augmentation_note(),
        },
        sort_keys=True,
    )


def get_gaitcrafter_augmentation_inputs(wildcards):
    return expand(
        "results/gaitcrafter/{dataset}/augmentation/{variant}/retrieval.parquet",
        dataset=wildcards.dataset,
        variant=GC_VARIANTS,
    )


def get_gaitcrafter_augmentation_spec(wildcards):
    return json.dumps(
        {
            "inputs": get_gaitcrafter_augmentation_inputs(wildcards),
            "out": f"results/gaitcrafter/{wildcards.dataset}/augmentation.parquet",
        },
        sort_keys=True,
    )
