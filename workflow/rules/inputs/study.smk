# Input functions and params of aggregation and the report (rules/aggregate.smk, rules/report.smk).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- aggregate --------------------------------------------------------------------------------------


AGGREGATE_TABLES = {
    "visual": "visual",
    "biometric": "biometric",
    "transfer": "transfer",
    "diagnostics": "diagnostics",
    "correlations": "correlations",
    "guidance_density": "guidance_density",
    "real_retrieval": "biometric",
}
AGGREGATE_EXTRA = ["failures", "notes", "videos", "probes"]


def get_aggregate_inputs(wildcards):
    sources = all_generated_sources()
    return {
        "visual": [f"results/metrics/{s}/visual.parquet" for s in sources],
        "diagnostics": [f"results/metrics/{s}/diagnostics.parquet" for s in sources],
        "probes": (
            [f"results/retrieval/{s}/probe_results.parquet" for s in sources]
            if REC_NAMES
            else []
        ),
        "real": (
            [f"results/retrieval/{d}/real.parquet" for d in sorted(DATASETS)]
            if REC_NAMES
            else []
        ),
    }


def recogniser_notes():
    notes = {}
    for name in REC_NAMES:
        settings = rec_settings(name)
        if settings.get("checkpoint"):
            notes[name] = f"loaded from {settings['checkpoint']}"
        else:
            notes[name] = (
                f"trained here on each dataset's train split ({json.dumps(settings.get('model_options', {}))})"
            )
            if TRAIN_ON:
                scored = ", ".join(
                    f"{d}: trained on {t}" for d, t in sorted(TRAIN_ON.items())
                )
                notes[
                    name
                ] += f"; datasets scored with another dataset's (recognisers.train_on): {scored}"
        if name == "biggait" and not settings.get("model_options", {}).get(
            "dinov2_path"
        ):
            notes[
                name
            ] += "; its DINOv2 is a small randomly initialised ViT trained with it, not the pretrained ViT-S/14"
    return notes


def get_aggregate_spec(wildcards):
    inputs = get_aggregate_inputs(wildcards)
    return json.dumps(
        {
            "out_dir": "results/aggregate",
            **{k: v or None for k, v in inputs.items()},
            "recogniser_notes": recogniser_notes(),
            # datasets scored with another dataset's trained recognisers (those with a checkpoint use it)
            "trained_on": (
                dict(TRAIN_ON)
                if any(not rec_settings(n).get("checkpoint") for n in REC_NAMES)
                else {}
            ),
        },
        sort_keys=True,
    )


# ---- analyses (beyond the paper: guidance ablation, predictors, cross-domain) -------------------------


ANALYSES_TABLES = [
    "motion",
    "predictors",
    "predictor_tests",
    "guidance_ablation",
    "domain",
]


def analyses_sources():
    """Per generation shard: its manifest and the pose stage's status and store (motion consistency)."""
    return [
        {
            "manifest": f"results/generated/{s[len('gen/'):]}/manifest.parquet",
            "status": f"results/perception/{s}/pose/shard-0000.parquet",
            "store": gen_store(s, "pose"),
        }
        for s in all_generated_sources()
    ]


def get_analyses_inputs(wildcards):
    sources = analyses_sources()
    return {
        "tables": expand(
            "results/aggregate/{table}.parquet",
            table=["videos", "probes", "biometric", "real_retrieval"],
        ),
        "sources": [path for s in sources for path in s.values()],
        "real_pose": [
            f"results/perception/{d}/pose/summary.parquet" for d in sorted(DATASETS)
        ],
    }


def get_analyses_spec(wildcards):
    return json.dumps(
        {
            "out_dir": "results/analyses",
            "tables_dir": "results/aggregate",
            "sources": analyses_sources(),
            "real_pose": {
                d: f"results/perception/{d}/pose/summary.parquet"
                for d in sorted(DATASETS)
            },
            "trained_on": dict(TRAIN_ON),
        },
        sort_keys=True,
    )


# ---- report -----------------------------------------------------------------------------------------


REPORT_PLOTS = {
    "visual_vs_biometric": "correlations",
    "bars": "visual",
    "diagnostics": "diagnostics",
    "correlations": "correlations",
    "guidance_density": "guidance_density",
    "strips": "report",
    "guidance_ablation": "analyses",
}


def get_report_inputs(wildcards):
    sources = all_generated_sources()
    return {
        "tables": expand(
            "results/aggregate/{table}.parquet",
            table=[*AGGREGATE_TABLES, *AGGREGATE_EXTRA],
        ),
        "generated": [
            f"results/generated/{s[len('gen/'):]}/manifest.parquet" for s in sources
        ],
        "real": [f"results/manifests/{d}.parquet" for d in sorted(DATASETS)],
        "gaitcrafter": [
            path
            for d in GC_DATASETS
            for path in [gaitcrafter_model_file(d), *gaitcrafter_tables(d).values()]
        ],
        "analyses": expand("results/analyses/{table}.parquet", table=ANALYSES_TABLES),
    }


def get_report_spec(wildcards):
    inputs = get_report_inputs(wildcards)
    return json.dumps(
        {
            "tables_dir": "results/aggregate",
            "strips": {
                "generated_manifests": inputs["generated"],
                "real_manifests": inputs["real"],
                "metric": "ssim",
            },
            "out_html": "results/report/report.html",
            "plots_dir": "results/report/plots",
            # None (no GaitCrafter section) unless gaitcrafter.datasets names some
            "gaitcrafter": {
                d: {"model": gaitcrafter_model_file(d), **gaitcrafter_tables(d)}
                for d in GC_DATASETS
            }
            or None,
            "title": f"Gait biometric fidelity: {config.get('study', 'study')}",
            "analyses_dir": "results/analyses",
        },
        sort_keys=True,
    )


# ---- targets: what `rule all` asks for ----------------------------------------------------------


PERCEPTION_STAGES = ["pose", "masks", "silhouettes", "skeleton_maps", "crops"]


def perception_outputs(source):
    if is_generated(source):
        return expand(
            "results/perception/{source}/{stage}/shard-0000.parquet",
            source=source,
            stage=PERCEPTION_STAGES,
        )
    shards = shard_names(shards_of(source))
    outputs = expand(
        "results/perception/{source}/{stage}/{shard}.parquet",
        source=source,
        stage=PERCEPTION_STAGES,
        shard=shards,
    )
    outputs += expand(
        "results/perception/{source}/guidance/{fmt}/{shard}.parquet",
        source=source,
        fmt=GUIDANCE_FORMATS,
        shard=shards,
    )
    return outputs


def generation_outputs(dataset):
    outputs = [f"results/sweep/{dataset}/plan.parquet"]
    for model in SWEEP["models"]:
        for source in generated_sources(dataset, model):
            outputs.append(f"results/generated/{source[len('gen/'):]}/manifest.parquet")
            outputs += perception_outputs(source)
    return outputs


def evaluation_outputs():
    outputs = []
    if REC_NAMES:
        outputs += [
            f"results/retrieval/{dataset}/real.parquet" for dataset in sorted(DATASETS)
        ]
    for source in all_generated_sources():
        outputs.append(f"results/metrics/{source}/visual.parquet")
        if REC_NAMES:
            outputs.append(f"results/retrieval/{source}/probe_results.parquet")
    return outputs


def report_outputs():
    if not SWEEP["models"]:
        return []
    return ["results/report/report.html"]


def gaitcrafter_tables(dataset):
    """The GaitCrafter experiment's tables of a dataset, by name (only those configured)."""
    tables = {}
    if GC_EVAL["quality"]["enabled"]:
        tables["quality"] = f"results/gaitcrafter/{dataset}/quality.parquet"
    if GC_EVAL["novelty"]["enabled"]:
        tables["novelty"] = f"results/gaitcrafter/{dataset}/novelty.parquet"
    if GC_AUG["enabled"]:
        tables["augmentation"] = f"results/gaitcrafter/{dataset}/augmentation.parquet"
    return tables


def gaitcrafter_outputs():
    outputs = []
    for dataset in GC_DATASETS:
        outputs.append(gaitcrafter_model_file(dataset))
        outputs += list(gaitcrafter_tables(dataset).values())
    return outputs


def get_final_outputs():
    outputs = expand("results/manifests/{dataset}.parquet", dataset=sorted(DATASETS))
    for dataset in sorted(DATASETS):
        outputs += perception_outputs(dataset)
        outputs += generation_outputs(dataset)
    if SWEEP["models"]:
        outputs.append("results/sweep/sweep.parquet")
    outputs += evaluation_outputs()
    outputs += gaitcrafter_outputs()
    outputs += report_outputs()
    return outputs
