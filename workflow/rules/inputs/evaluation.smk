# Input functions and params of recognisers, embeddings, retrieval and metrics (rules/recognisers.smk, embed, retrieval, metrics).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- recognisers ------------------------------------------------------------------------------------


MODALITY_STAGES_OF = {
    "deepgaitv2": ["silhouettes"],
    "skeletongait": ["skeleton_maps"],
    "skeletongait++": ["skeleton_maps", "silhouettes"],
    "biggait": ["crops"],
}


def get_train_inputs(wildcards):
    stages = MODALITY_STAGES_OF[wildcards.recogniser]
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "summaries": [
            f"results/perception/{wildcards.dataset}/{stage}/summary.parquet"
            for stage in stages
        ],
    }


def get_train_spec(wildcards):
    settings = rec_settings(wildcards.recogniser)
    train = {
        "recogniser": wildcards.recogniser,
        "threads": RECOGNISERS["threads"],
        "progress": False,
    }
    train.update(settings.get("train", {}))
    train["model_options"] = dict(settings.get("model_options", {}))
    base = f"results/recognisers/{wildcards.dataset}/{wildcards.recogniser}"
    return json.dumps(
        {
            "manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "perception_root": f"results/perception/{wildcards.dataset}",
            "out_dir": f"{base}/train",
            "config": train,
            "model": f"{base}/model.pt",
        },
        sort_keys=True,
    )


# ---- embed ------------------------------------------------------------------------------------------


def get_checkpoints(wildcards):
    dataset = (
        dataset_of(wildcards.source)
        if "source" in wildcards.keys()
        else wildcards.dataset
    )
    return [checkpoint_of(dataset, name) for name in REC_NAMES]


def get_embed_inputs(wildcards):
    stages = ("silhouettes", "skeleton_maps", "crops")
    base = f"results/perception/{wildcards.source}"
    return {
        "manifest": get_source_manifest(wildcards),
        "stores": [
            f"{base}/{stage}/{wildcards.shard}.{ext}"
            for stage in stages
            for ext in ("npz", "parquet")
        ],
        "checkpoints": get_checkpoints(wildcards),
    }


def get_embed_spec(wildcards):
    return json.dumps(
        {
            "manifest": get_source_manifest(wildcards),
            "shard": wildcards.shard,
            "shards": shards_of(wildcards.source),
            "source_root": f"results/perception/{wildcards.source}",
            "recognisers": {
                name: checkpoint_of(wildcards.source, name) for name in REC_NAMES
            },
            "out": {
                name: f"results/embeddings/{wildcards.source}/{name}/{wildcards.shard}.parquet"
                for name in REC_NAMES
            },
            "threads": RECOGNISERS["threads"],
        },
        sort_keys=True,
    )


# ---- retrieval --------------------------------------------------------------------------------------


def get_real_embeddings(wildcards):
    shards = shard_names(shards_of(wildcards.dataset))
    return expand(
        "results/embeddings/{dataset}/{name}/{shard}.parquet",
        dataset=wildcards.dataset,
        name=REC_NAMES,
        shard=shards,
    )


def get_real_retrieval_spec(wildcards):
    shards = shard_names(shards_of(wildcards.dataset))
    base = f"results/embeddings/{wildcards.dataset}"
    return json.dumps(
        {
            "embeddings": {
                name: [f"{base}/{name}/{shard}.parquet" for shard in shards]
                for name in REC_NAMES
            },
            "protocol": protocol_of(wildcards.dataset),
            "metric": RECOGNISERS["metric"],
            "dataset": wildcards.dataset,
            "out": f"results/retrieval/{wildcards.dataset}/real.parquet",
            "gallery_out": {name: f"{base}/{name}/test.parquet" for name in REC_NAMES},
            "manifest": f"results/manifests/{wildcards.dataset}.parquet",
            "twins_out": f"results/retrieval/{wildcards.dataset}/twins.parquet",
        },
        sort_keys=True,
    )


def get_evaluate_inputs(wildcards):
    dataset = dataset_of(wildcards.source)
    return {
        "manifest": get_source_manifest(wildcards),
        "stores": [
            gen_store(wildcards.source, s)
            for s in ("silhouettes", "skeleton_maps", "crops")
        ],
        "checkpoints": get_checkpoints(wildcards),
        "galleries": [
            f"results/embeddings/{dataset}/{name}/test.parquet" for name in REC_NAMES
        ],
    }


def get_evaluate_spec(wildcards):
    dataset = dataset_of(wildcards.source)
    return json.dumps(
        {
            "generated_manifest": get_source_manifest(wildcards),
            "stores": {
                s: gen_store(wildcards.source, s)
                for s in ("silhouettes", "skeleton_maps", "crops")
            },
            "recognisers": {name: checkpoint_of(dataset, name) for name in REC_NAMES},
            "galleries": {
                name: f"results/embeddings/{dataset}/{name}/test.parquet"
                for name in REC_NAMES
            },
            "metric": RECOGNISERS["metric"],
            "embeddings_dir": f"results/embeddings/{wildcards.source}",
            "out": f"results/retrieval/{wildcards.source}/probe_results.parquet",
            "threads": RECOGNISERS["threads"],
        },
        sort_keys=True,
    )


# ---- metrics ----------------------------------------------------------------------------------------


def get_metrics_inputs(wildcards):
    dataset = dataset_of(wildcards.source)
    return {
        "manifest": get_source_manifest(wildcards),
        "pose": gen_store(wildcards.source, "pose"),
        "masks": gen_store(wildcards.source, "masks"),
        "real_manifest": f"results/manifests/{dataset}.parquet",
        "real_pose": f"results/perception/{dataset}/pose/summary.parquet",
        "real_masks": f"results/perception/{dataset}/masks/summary.parquet",
    }


def get_metrics_spec(wildcards):
    # The metric settings enter only this rule: changing them re-runs metrics, never generation.
    inputs = get_metrics_inputs(wildcards)
    return json.dumps(
        {
            "generated_manifest": inputs["manifest"],
            "gen_pose": inputs["pose"],
            "gen_masks": inputs["masks"],
            "real_manifest": inputs["real_manifest"],
            "real_pose_summary": inputs["real_pose"],
            "real_masks_summary": inputs["real_masks"],
            "settings": METRICS,
            "visual_out": f"results/metrics/{wildcards.source}/visual.parquet",
            "diagnostics_out": f"results/metrics/{wildcards.source}/diagnostics.parquet",
        },
        sort_keys=True,
    )
