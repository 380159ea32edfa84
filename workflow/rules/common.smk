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
    outputs = expand("results/manifests/{dataset}.parquet", dataset=sorted(DATASETS))
    for dataset in sorted(DATASETS):
        outputs += perception_outputs(dataset)
    return outputs


# ---- perception -------------------------------------------------------------------------------

PERCEPTION = config["perception"]
PERCEPTION_SHARDS = PERCEPTION["shards"]
GUIDANCE_FORMATS = PERCEPTION["guidance"]["formats"]


def backends_of(source):
    """Pose and mask backends for a source (a dataset's own sequences for now)."""
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
    return f"results/manifests/{wildcards.source}.parquet"


def stage_paths(stage, wildcards):
    base = f"results/perception/{wildcards.source}/{stage}/{wildcards.shard}"
    return {f"{stage}_store": f"{base}.npz", f"{stage}_status": f"{base}.parquet"}


def options_json(**options):
    return json.dumps(options, sort_keys=True)


def get_pose_options(wildcards):
    backends = backends_of(wildcards.source)
    return options_json(
        backend=backends["pose"],
        keep_masks=backends["masks"] == "from_pose",
        min_valid_frames=PERCEPTION["min_valid_frames"],
        mediapipe=PERCEPTION["mediapipe"],
        dwpose=PERCEPTION["dwpose"],
    )


def get_masks_inputs(wildcards):
    inputs = {"manifest": get_source_manifest(wildcards)}
    if backends_of(wildcards.source)["masks"] == "from_pose":
        inputs.update(stage_paths("pose", wildcards))
    return inputs


def get_masks_options(wildcards):
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
    export = PERCEPTION["silhouettes"]["export_opengait"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        export_root=f"results/opengait/{wildcards.source}" if export else None,
        **stage_paths("masks", wildcards),
    )


def get_skeleton_maps_options(wildcards):
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        sigma=PERCEPTION["skeleton_maps"]["sigma"],
        **stage_paths("pose", wildcards),
    )


def get_crops_options(wildcards):
    crops = PERCEPTION["crops"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        size=[crops["height"], crops["width"]],
        **stage_paths("masks", wildcards),
    )


def get_guidance_options(wildcards):
    return options_json(
        guidance_format=wildcards.fmt,
        min_valid_frames=PERCEPTION["min_valid_frames"],
        nlf_model_path=PERCEPTION["nlf"]["model_path"],
        **stage_paths("pose", wildcards),
    )


def perception_outputs(source):
    shards = shard_names(PERCEPTION_SHARDS)
    stages = ["pose", "masks", "silhouettes", "skeleton_maps", "crops"]
    outputs = expand("results/perception/{source}/{stage}/{shard}.parquet", source=source, stage=stages, shard=shards)
    outputs += expand(
        "results/perception/{source}/guidance/{fmt}/{shard}.parquet", source=source, fmt=GUIDANCE_FORMATS, shard=shards
    )
    return outputs
