# Configuration validation, shared constants and input functions (no rules here).
import json
import sys
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace as Namespace

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
CLUSTER = config["cluster"]
# SLURM account / CPU partition for every CPU rule, only when the user configured them.
CPU_RESOURCES = {
    key: value
    for key, value in (("slurm_account", CLUSTER["account"]), ("slurm_partition", CLUSTER["cpu_partition"]))
    if value
}
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


# ---- perception -------------------------------------------------------------------------------

PERCEPTION = config["perception"]
PERCEPTION_SHARDS = PERCEPTION["shards"]
GUIDANCE_FORMATS = PERCEPTION["guidance"]["formats"]


def is_generated(source):
    return source.startswith("gen/")


def backends_of(source):
    """Pose and mask backends of a source: a dataset's own sequences, or a shard of generated videos.

    Videos of a silhouette generator (GaitCrafter) are masks already: masks come from the video
    (``from_video``) and no pose is estimated (``none``: every sequence skipped with the reason)."""
    if is_generated(source):
        if is_silhouette_model(source.split("/")[2]):
            return {"pose": "none", "masks": "from_video"}
        return dict(PERCEPTION["generated"])
    dataset = DATASETS[source]
    default = PERCEPTION["real"]
    return {
        "pose": dataset.get("pose_backend", default.get("pose", "mediapipe")),
        "masks": dataset.get("mask_backend", default.get("masks", "from_pose")),
    }


for _source in DATASETS:
    _b = backends_of(_source)
    if _b["masks"] == "from_pose" and _b["pose"] != "mediapipe":
        raise ValueError(
            f"datasets/{_source}: mask backend 'from_pose' needs the mediapipe pose backend (got '{_b['pose']}')"
        )


def get_source_manifest(wildcards):
    if is_generated(wildcards.source):
        return f"results/generated/{wildcards.source[len('gen/'):]}/manifest.parquet"
    return f"results/manifests/{wildcards.source}.parquet"


def shards_of(source):
    """Perception shards of a source: one per generation shard (already sized), else the config's."""
    if is_generated(source):
        return 1
    return DATASETS[source].get("perception_shards", PERCEPTION_SHARDS)


def get_source_shards(wildcards):
    return shards_of(wildcards.source)


def stage_paths(stage, wildcards):
    base = f"results/perception/{wildcards.source}/{stage}/{wildcards.shard}"
    return {f"{stage}_store": f"{base}.npz", f"{stage}_status": f"{base}.parquet"}


def options_json(**options):
    return json.dumps(options, sort_keys=True)


def get_pose_options(wildcards):
    return _get_pose_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_pose_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    backends = backends_of(wildcards.source)
    extra = {"reason": NO_POSE_REASON} if backends["pose"] == "none" else {}
    return options_json(
        backend=backends["pose"],
        keep_masks=backends["masks"] == "from_pose",
        min_valid_frames=PERCEPTION["min_valid_frames"],
        mediapipe=PERCEPTION["mediapipe"],
        dwpose=PERCEPTION["dwpose"],
        **extra,
    )


def get_masks_inputs(wildcards):
    inputs = {"manifest": get_source_manifest(wildcards)}
    if backends_of(wildcards.source)["masks"] == "from_pose":
        inputs.update(stage_paths("pose", wildcards))
    return inputs


def get_masks_options(wildcards):
    return _get_masks_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_masks_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    backend = backends_of(wildcards.source)["masks"]
    extra = stage_paths("pose", wildcards) if backend == "from_pose" else {}
    return options_json(
        backend=backend,
        min_valid_frames=PERCEPTION["min_valid_frames"],
        threshold=PERCEPTION["mediapipe"]["mask_threshold"],
        mediapipe=PERCEPTION["mediapipe"],
        **extra,
    )


def get_silhouettes_options(wildcards):
    return _get_silhouettes_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_silhouettes_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    export = PERCEPTION["silhouettes"]["export_opengait"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        export_root=f"results/opengait/{wildcards.source}" if export else None,
        **stage_paths("masks", wildcards),
    )


def get_skeleton_maps_options(wildcards):
    return _get_skeleton_maps_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_skeleton_maps_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        sigma=PERCEPTION["skeleton_maps"]["sigma"],
        **stage_paths("pose", wildcards),
    )


def get_crops_options(wildcards):
    return _get_crops_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_crops_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    crops = PERCEPTION["crops"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        size=[crops["height"], crops["width"]],
        **stage_paths("masks", wildcards),
    )


def get_guidance_options(wildcards):
    return _get_guidance_options(wildcards.source, wildcards.get("shard") or "shard-0000", wildcards.get("fmt"))


@lru_cache(maxsize=None)
def _get_guidance_options(source, shard, fmt):
    wildcards = Namespace(source=source, shard=shard, fmt=fmt)
    return options_json(
        guidance_format=wildcards.fmt,
        min_valid_frames=PERCEPTION["min_valid_frames"],
        nlf_model_path=PERCEPTION["nlf"]["model_path"],
        **stage_paths("pose", wildcards),
    )


PERCEPTION_STAGES = ["pose", "masks", "silhouettes", "skeleton_maps", "crops"]


def perception_outputs(source):
    if is_generated(source):
        return expand("results/perception/{source}/{stage}/shard-0000.parquet", source=source, stage=PERCEPTION_STAGES)
    shards = shard_names(shards_of(source))
    outputs = expand(
        "results/perception/{source}/{stage}/{shard}.parquet", source=source, stage=PERCEPTION_STAGES, shard=shards
    )
    outputs += expand(
        "results/perception/{source}/guidance/{fmt}/{shard}.parquet", source=source, fmt=GUIDANCE_FORMATS, shard=shards
    )
    return outputs


# ---- sweep and generation ---------------------------------------------------------------------

SWEEP = config["sweep"]
MODELS = config["models"]
SCENARIOS = {s["name"]: s for s in SWEEP["scenarios"]}
GEN_SHARDS = shard_names(SWEEP["shards"])
for _model in SWEEP["models"]:
    if _model not in MODELS:
        raise ValueError(f"sweep/models: '{_model}' is not defined under `models`")
for _name, _b in (("generated", PERCEPTION["generated"]),):
    if _b.get("pose") == "groundtruth" or _b.get("masks") == "groundtruth":
        raise ValueError("perception/generated: generated videos have no ground truth; use mediapipe or dwpose")


def get_summary_inputs(wildcards):
    shards = shard_names(shards_of(wildcards.source))
    return expand(f"results/perception/{wildcards.source}/{wildcards.stage}/{{shard}}.parquet", shard=shards)


def get_plan_inputs(wildcards):
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "pose": f"results/perception/{wildcards.dataset}/pose/summary.parquet",
    }


def get_plan_params(wildcards):
    # The plan depends on the scenarios, not on the model list: adding a model never re-plans.
    sweep = {k: v for k, v in SWEEP.items() if k != "models"}
    conditions = DATASETS[wildcards.dataset].get("scenario_conditions", {})
    return json.dumps({"sweep": sweep, "scenario_conditions": conditions}, sort_keys=True)


def get_generation_inputs(wildcards):
    inputs = {
        "plan": f"results/sweep/{wildcards.dataset}/plan.parquet",
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "pose": f"results/perception/{wildcards.dataset}/pose/summary.parquet",
        "masks": f"results/perception/{wildcards.dataset}/masks/summary.parquet",
    }
    if is_gaitcrafter_model(wildcards.model):
        inputs["gaitcrafter"] = gaitcrafter_model_file(wildcards.dataset)
    return inputs


def get_model_spec(wildcards):
    spec = dict(MODELS[wildcards.model])
    if is_gaitcrafter_model(wildcards.model):
        # The dataset's trained GaitCrafter; gaitcrafter.sampling under the model's own params.
        spec["checkpoint"] = gaitcrafter_model_file(wildcards.dataset)
        spec["params"] = {**gaitcrafter_sampling(), **spec.get("params", {})}
    return json.dumps(spec, sort_keys=True)


def model_resource(name, scale_with_attempt=False):
    def resource(wildcards, attempt):
        value = MODELS[wildcards.model].get("resources", {}).get(name, {"gpu": 0, "mem_mb": 4000, "runtime": 60}[name])
        if name == "gpu" and not value:
            return None  # CPU model: request no GPU at all
        return value * attempt if scale_with_attempt else value

    return resource


def uses_gpu(wildcards):
    return bool(MODELS[wildcards.model].get("resources", {}).get("gpu", 0))


def get_model_partition(wildcards):
    return CLUSTER["gpu_partition"] if uses_gpu(wildcards) else CLUSTER["cpu_partition"]


def get_model_gpu_model(wildcards):
    return CLUSTER["gpu_model"] if uses_gpu(wildcards) else None


def generated_sources(dataset, model):
    return [f"gen/{dataset}/{model}/{s['task']}/{s['name']}/{shard}" for s in SWEEP["scenarios"] for shard in GEN_SHARDS]


def generation_outputs(dataset):
    outputs = [f"results/sweep/{dataset}/plan.parquet"]
    for model in SWEEP["models"]:
        for source in generated_sources(dataset, model):
            outputs.append(f"results/generated/{source[len('gen/'):]}/manifest.parquet")
            outputs += perception_outputs(source)
    return outputs


# ---- recognisers, embeddings, retrieval, metrics ----------------------------------------------

import re  # noqa: E402

RECOGNISERS = config["recognisers"]
REC_NAMES = RECOGNISERS["names"]
METRICS = config["metrics"]
PROTOCOL_BY_KIND = {"sustech1k": "sustech1k", "ccgr_mini": "ccgr_mini"}
MODALITY_STAGES_OF = {
    "deepgaitv2": ["silhouettes"],
    "skeletongait": ["skeleton_maps"],
    "skeletongait++": ["skeleton_maps", "silhouettes"],
    "biggait": ["crops"],
}


def rec_settings(name):
    return RECOGNISERS["settings"].get(name) or {}


def checkpoint_of(dataset, name):
    """A configured checkpoint (e.g. OpenGait's official weights), else the one trained here."""
    return rec_settings(name).get("checkpoint") or f"results/recognisers/{dataset}/{name}/model.pt"


def dataset_of(source):
    return source.split("/")[1] if is_generated(source) else source


def get_checkpoints(wildcards):
    dataset = dataset_of(wildcards.source) if "source" in wildcards.keys() else wildcards.dataset
    return [checkpoint_of(dataset, name) for name in REC_NAMES]


def get_train_inputs(wildcards):
    stages = MODALITY_STAGES_OF[wildcards.recogniser]
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "summaries": [f"results/perception/{wildcards.dataset}/{stage}/summary.parquet" for stage in stages],
    }


def get_train_spec(wildcards):
    settings = rec_settings(wildcards.recogniser)
    train = {"recogniser": wildcards.recogniser, "threads": RECOGNISERS["threads"], "progress": False}
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


def get_embed_inputs(wildcards):
    stages = ("silhouettes", "skeleton_maps", "crops")
    base = f"results/perception/{wildcards.source}"
    return {
        "manifest": get_source_manifest(wildcards),
        "stores": [f"{base}/{stage}/{wildcards.shard}.{ext}" for stage in stages for ext in ("npz", "parquet")],
        "checkpoints": get_checkpoints(wildcards),
    }


def get_embed_spec(wildcards):
    return json.dumps(
        {
            "manifest": get_source_manifest(wildcards),
            "shard": wildcards.shard,
            "shards": shards_of(wildcards.source),
            "source_root": f"results/perception/{wildcards.source}",
            "recognisers": {name: checkpoint_of(wildcards.source, name) for name in REC_NAMES},
            "out": {name: f"results/embeddings/{wildcards.source}/{name}/{wildcards.shard}.parquet" for name in REC_NAMES},
            "threads": RECOGNISERS["threads"],
        },
        sort_keys=True,
    )


def get_real_embeddings(wildcards):
    shards = shard_names(shards_of(wildcards.dataset))
    return expand(
        "results/embeddings/{dataset}/{name}/{shard}.parquet", dataset=wildcards.dataset, name=REC_NAMES, shard=shards
    )


def protocol_of(dataset):
    spec = DATASETS[dataset]
    return spec.get("protocol") or PROTOCOL_BY_KIND.get(spec["kind"], "generic")


def get_real_retrieval_spec(wildcards):
    shards = shard_names(shards_of(wildcards.dataset))
    base = f"results/embeddings/{wildcards.dataset}"
    return json.dumps(
        {
            "embeddings": {name: [f"{base}/{name}/{shard}.parquet" for shard in shards] for name in REC_NAMES},
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


def gen_store(source, stage):
    return f"results/perception/{source}/{stage}/shard-0000.npz"


def get_evaluate_inputs(wildcards):
    dataset = dataset_of(wildcards.source)
    return {
        "manifest": get_source_manifest(wildcards),
        "stores": [gen_store(wildcards.source, s) for s in ("silhouettes", "skeleton_maps", "crops")],
        "checkpoints": get_checkpoints(wildcards),
        "galleries": [f"results/embeddings/{dataset}/{name}/test.parquet" for name in REC_NAMES],
    }


def get_evaluate_spec(wildcards):
    dataset = dataset_of(wildcards.source)
    return json.dumps(
        {
            "generated_manifest": get_source_manifest(wildcards),
            "stores": {s: gen_store(wildcards.source, s) for s in ("silhouettes", "skeleton_maps", "crops")},
            "recognisers": {name: checkpoint_of(dataset, name) for name in REC_NAMES},
            "galleries": {name: f"results/embeddings/{dataset}/{name}/test.parquet" for name in REC_NAMES},
            "metric": RECOGNISERS["metric"],
            "embeddings_dir": f"results/embeddings/{wildcards.source}",
            "out": f"results/retrieval/{wildcards.source}/probe_results.parquet",
            "threads": RECOGNISERS["threads"],
        },
        sort_keys=True,
    )


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


def all_generated_sources():
    return [source for dataset in sorted(DATASETS) for model in SWEEP["models"] for source in generated_sources(dataset, model)]


def evaluation_outputs():
    outputs = []
    if REC_NAMES:
        outputs += [f"results/retrieval/{dataset}/real.parquet" for dataset in sorted(DATASETS)]
    for source in all_generated_sources():
        outputs.append(f"results/metrics/{source}/visual.parquet")
        if REC_NAMES:
            outputs.append(f"results/retrieval/{source}/probe_results.parquet")
    return outputs


# ---- aggregation and report -------------------------------------------------------------------

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
REPORT_PLOTS = {
    "visual_vs_biometric": "correlations",
    "bars": "visual",
    "diagnostics": "diagnostics",
    "correlations": "correlations",
    "guidance_density": "guidance_density",
    "strips": "report",
}


def get_aggregate_inputs(wildcards):
    sources = all_generated_sources()
    return {
        "visual": [f"results/metrics/{s}/visual.parquet" for s in sources],
        "diagnostics": [f"results/metrics/{s}/diagnostics.parquet" for s in sources],
        "probes": [f"results/retrieval/{s}/probe_results.parquet" for s in sources] if REC_NAMES else [],
        "real": [f"results/retrieval/{d}/real.parquet" for d in sorted(DATASETS)] if REC_NAMES else [],
    }


def recogniser_notes():
    notes = {}
    for name in REC_NAMES:
        settings = rec_settings(name)
        if settings.get("checkpoint"):
            notes[name] = f"loaded from {settings['checkpoint']}"
        else:
            notes[name] = f"trained here on each dataset's train split ({json.dumps(settings.get('model_options', {}))})"
        if name == "biggait" and not settings.get("model_options", {}).get("dinov2_path"):
            notes[name] += "; its DINOv2 is a small randomly initialised ViT trained with it, not the pretrained ViT-S/14"
    return notes


def get_aggregate_spec(wildcards):
    inputs = get_aggregate_inputs(wildcards)
    return json.dumps(
        {"out_dir": "results/aggregate", **{k: v or None for k, v in inputs.items()}, "recogniser_notes": recogniser_notes()},
        sort_keys=True,
    )


def get_report_inputs(wildcards):
    sources = all_generated_sources()
    return {
        "tables": expand("results/aggregate/{table}.parquet", table=[*AGGREGATE_TABLES, *AGGREGATE_EXTRA]),
        "generated": [f"results/generated/{s[len('gen/'):]}/manifest.parquet" for s in sources],
        "real": [f"results/manifests/{d}.parquet" for d in sorted(DATASETS)],
        "gaitcrafter": [path for d in GC_DATASETS for path in [gaitcrafter_model_file(d), *gaitcrafter_tables(d).values()]],
    }


def get_report_spec(wildcards):
    inputs = get_report_inputs(wildcards)
    return json.dumps(
        {
            "tables_dir": "results/aggregate",
            "strips": {"generated_manifests": inputs["generated"], "real_manifests": inputs["real"], "metric": "ssim"},
            "out_html": "results/report/report.html",
            "plots_dir": "results/report/plots",
            # None (no GaitCrafter section) unless gaitcrafter.datasets names some
            "gaitcrafter": {d: {"model": gaitcrafter_model_file(d), **gaitcrafter_tables(d)} for d in GC_DATASETS}
            or None,
            "title": f"Gait biometric fidelity: {config.get('study', 'study')}",
        },
        sort_keys=True,
    )


def report_outputs():
    if not SWEEP["models"]:
        return []
    return ["results/report/report.html"]


# ---- GaitCrafter: training, sweep generator, evaluation, augmentation experiment ---------------

from pipeline.gaitcrafter import NO_POSE_REASON, SILHOUETTE_GENERATORS  # noqa: E402

GAITCRAFTER = config["gaitcrafter"]
GC_EVAL = GAITCRAFTER["evaluation"]
GC_AUG = GAITCRAFTER["augmentation"]
GC_DATASETS = list(GAITCRAFTER["datasets"])
GC_KINDS = ("same", "novel")


def is_silhouette_model(model):
    return MODELS[model]["generator"] in SILHOUETTE_GENERATORS


def is_gaitcrafter_model(model):
    return MODELS[model]["generator"] == "gaitcrafter"


def gaitcrafter_model_file(dataset):
    return f"results/gaitcrafter/{dataset}/model.json"


def gaitcrafter_sampling():
    """gaitcrafter.sampling without its nulls (null = the checkpoint's own setting)."""
    return {k: v for k, v in GAITCRAFTER["sampling"].items() if v is not None}


def silhouette_stores(dataset):
    return [f"results/perception/{dataset}/silhouettes/{shard}.npz" for shard in shard_names(shards_of(dataset))]


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
            "settings": {"threads": GAITCRAFTER["threads"], "progress": False, **GAITCRAFTER["settings"]},
            "enrol": GAITCRAFTER["enrol"],
        },
        sort_keys=True,
    )


def gaitcrafter_resource(name):
    def resource(wildcards, attempt):
        value = GAITCRAFTER["resources"][name]
        if name == "gpu":
            return value or None  # CPU: request no GPU at all
        return value * attempt

    return resource


def gaitcrafter_partition(wildcards):
    return CLUSTER["gpu_partition"] if GAITCRAFTER["resources"]["gpu"] else CLUSTER["cpu_partition"]


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
            "recogniser_checkpoint": checkpoint_of(wildcards.dataset, novelty["recogniser"]),
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


from pipeline.gaitcrafter.stage import variant_names, variant_needs  # noqa: E402

GC_VARIANTS = variant_names(GC_AUG["variants"], GC_AUG["low_label_percents"])


def get_gaitcrafter_augment_inputs(wildcards):
    inputs = gaitcrafter_source_inputs(wildcards)
    for kind in variant_needs(wildcards.variant):
        inputs[kind] = f"results/gaitcrafter/{wildcards.dataset}/synthetic/{kind}/manifest.parquet"
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
            "synthetic": {kind: f"{base}/synthetic/{kind}" for kind in variant_needs(wildcards.variant)},
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
