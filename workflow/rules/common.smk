# Configuration validation, the config sections every area reads, and the helpers that several rule
# files share (no rules here). Each stage's own input functions live at the top of its rule file.
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace as Namespace

from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
# The workflow runs from the repository root, so `python -m pipeline.cli` in a job imports the
# package from this checkout even inside a per-rule conda env where it is not pip-installed.
sys.path.insert(0, str(REPO))

from pipeline.config import NO_DATASETS  # noqa: E402
from pipeline.study.config import validate_study  # noqa: E402
from pipeline.contracts import shard_names  # noqa: E402
from pipeline.gaitcrafter import NO_POSE_REASON, SILHOUETTE_GENERATORS  # noqa: E402
from pipeline.generation.config import ablation_arm, ablation_models  # noqa: E402

# config/config.yaml (the Snakefile's configfile, merged with any --configfile) holds no dataset. Alone it
# plans nothing and says where datasets go, so `snakemake -n` (also with --profile slurm) still runs.
if not (config.get("datasets") if isinstance(config, dict) else None):
    logger.warning(f"WARNING: {NO_DATASETS}. Nothing is planned.")
validate(config, schema="../schemas/config.schema.yaml")
validate_study(
    config, allow_empty=True
)  # fills nested defaults and checks cross-references (names the key on error)

DATASETS = config["datasets"]
CLUSTER = config["cluster"]
PERCEPTION = config["perception"]
PERCEPTION_SHARDS = PERCEPTION["shards"]
GUIDANCE_FORMATS = PERCEPTION["guidance"]["formats"]
SWEEP = config["sweep"]
MODELS = config["models"]
# sweep.guidance_ablation: each named model runs twice more, as <model>@groundtruth and <model>@estimated
# (derived models, validated above through their base model), through the same rules as every model.
ABLATION_MODELS = ablation_models(config)
ABLATION_SCENARIOS = SWEEP["guidance_ablation"]["scenarios"]
MODELS.update(ABLATION_MODELS)
SWEEP["models"] = [
    *SWEEP["models"],
    *(m for m in ABLATION_MODELS if m not in SWEEP["models"]),
]
SCENARIOS = {s["name"]: s for s in SWEEP["scenarios"]}
GEN_SHARDS = shard_names(SWEEP["shards"])
RECOGNISERS = config["recognisers"]
REC_NAMES = RECOGNISERS["names"]
# dataset → the dataset whose trained recognisers score it (recognisers.train_on; validated: no chains)
TRAIN_ON = RECOGNISERS["train_on"]
METRICS = config["metrics"]
GAITCRAFTER = config["gaitcrafter"]
GC_DATASETS = list(GAITCRAFTER["datasets"])
PROTOCOL_BY_KIND = {"sustech1k": "sustech1k", "ccgr_mini": "ccgr_mini"}
# Kinds that ship silhouettes (and, where present, keypoints) use them by default: `dataset` backends
# read path_silhouette / path_pose. datasets.<name>.pose_backend / mask_backend select perception
# from RGB instead (for the world and custom videos perception.real applies).
SHIPPED_BACKENDS = {
    kind: {"pose": "dataset", "masks": "dataset"}
    for kind in ("opengait", "sustech1k", "ccgr_mini")
}

# SLURM account / CPU partition for every CPU rule, only when the user configured them.
CPU_RESOURCES = {
    key: value
    for key, value in (
        ("slurm_account", CLUSTER["account"]),
        ("slurm_partition", CLUSTER["cpu_partition"]),
    )
    if value
}
WORLD_DATASETS = sorted(name for name, d in DATASETS.items() if d["kind"] == "world")
EXTERNAL_DATASETS = sorted(name for name, d in DATASETS.items() if d["kind"] != "world")


def per_attempt(amount):
    """A resource that grows with the attempt number (mem_mb, runtime), so a retry gets what it needs."""
    return lambda wildcards, attempt: amount * attempt


def alternation(names):
    """A wildcard regex matching exactly these names (or nothing, for an empty list)."""
    return "|".join(names) if names else "(?!x)x"


def options_json(**options):
    return json.dumps(options, sort_keys=True)


def per_shard_options(build):
    """An input function from ``build(wildcards)``, evaluated once per (source, shard, fmt).

    Snakemake calls params functions for every job (and perceive_generated asks five stages' options per
    job), so the JSON is cached on the wildcards that determine it."""
    cached = lru_cache(maxsize=None)(
        lambda source, shard, fmt: build(Namespace(source=source, shard=shard, fmt=fmt))
    )

    def options(wildcards):
        return cached(
            wildcards.source,
            wildcards.get("shard") or "shard-0000",
            wildcards.get("fmt"),
        )

    return options


# ---- sources: a dataset's own sequences, or one generation shard ("gen/...") ------------------


def is_generated(source):
    return source.startswith("gen/")


def dataset_of(source):
    return source.split("/")[1] if is_generated(source) else source


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


def gen_store(source, stage):
    return f"results/perception/{source}/{stage}/shard-0000.npz"


def backends_of(source):
    """Pose and mask backends of a source: a dataset's own sequences, or a shard of generated videos.

    Videos of a silhouette generator (GaitCrafter) are masks already: masks come from the video
    (``from_video``) and no pose is estimated (``none``: every sequence skipped with the reason).
    """
    if is_generated(source):
        if is_silhouette_model(source.split("/")[2]):
            return {"pose": "none", "masks": "from_video"}
        return dict(PERCEPTION["generated"])
    dataset = DATASETS[source]
    default = SHIPPED_BACKENDS.get(dataset["kind"]) or PERCEPTION["real"]
    return {
        "pose": dataset.get("pose_backend", default.get("pose", "mediapipe")),
        "masks": dataset.get("mask_backend", default.get("masks", "from_pose")),
    }


# ---- models, recognisers and GaitCrafter: what several areas ask of them ----------------------


def is_silhouette_model(model):
    return MODELS[model]["generator"] in SILHOUETTE_GENERATORS


def is_gaitcrafter_model(model):
    return MODELS[model]["generator"] == "gaitcrafter"


def gaitcrafter_model_file(dataset):
    return f"results/gaitcrafter/{dataset}/model.json"


def runs_on(dataset, model, scenario):
    """Whether ``model`` generates from ``dataset`` in ``scenario``: every pair unless the dataset names
    its own sweep_models / sweep_scenarios or the model its own scenarios; the ablation's arms only on world
    datasets that run their base model, in sweep.guidance_ablation.scenarios (all when empty).
    """
    spec, arm = DATASETS[dataset], ablation_arm(model)
    if scenario not in MODELS[model].get("scenarios", [scenario]):
        return False
    if arm is not None:
        if spec["kind"] != "world" or (
            ABLATION_SCENARIOS and scenario not in ABLATION_SCENARIOS
        ):
            return False
        model = arm[0]
    return model in spec.get("sweep_models", [model]) and scenario in spec.get(
        "sweep_scenarios", [scenario]
    )


def generated_sources(dataset, model):
    return [
        f"gen/{dataset}/{model}/{s['task']}/{s['name']}/{shard}"
        for s in SWEEP["scenarios"]
        if runs_on(dataset, model, s["name"])
        for shard in GEN_SHARDS
    ]


def all_generated_sources():
    return [
        source
        for dataset in sorted(DATASETS)
        for model in SWEEP["models"]
        for source in generated_sources(dataset, model)
    ]


def rec_settings(name):
    return RECOGNISERS["settings"].get(name) or {}


def trainer_of(dataset):
    """The dataset whose train split trains the recognisers that score ``dataset`` (recognisers.train_on)."""
    return TRAIN_ON.get(dataset, dataset)


def checkpoint_of(dataset, name):
    """A configured checkpoint (e.g. OpenGait's official weights), else the one trained here: on the
    dataset's own train split, or on the dataset that recognisers.train_on names for it.
    """
    return (
        rec_settings(name).get("checkpoint")
        or f"results/recognisers/{trainer_of(dataset)}/{name}/model.pt"
    )


def protocol_of(dataset):
    spec = DATASETS[dataset]
    return spec.get("protocol") or PROTOCOL_BY_KIND.get(spec["kind"], "generic")


# ---- cross-section checks the schema cannot express (before any job) ---------------------------

for _source in DATASETS:
    _b = backends_of(_source)
    if _b["masks"] == "from_pose" and _b["pose"] != "mediapipe":
        raise ValueError(
            f"datasets/{_source}: mask backend 'from_pose' needs the mediapipe pose backend (got '{_b['pose']}')"
        )
for _model in SWEEP["models"]:
    if _model not in MODELS:
        raise ValueError(f"sweep/models: '{_model}' is not defined under `models`")
for _name, _b in (("generated", PERCEPTION["generated"]),):
    if _b.get("pose") == "groundtruth" or _b.get("masks") == "groundtruth":
        raise ValueError(
            "perception/generated: generated videos have no ground truth; use mediapipe or dwpose"
        )
    if _b.get("pose") == "dataset" or _b.get("masks") == "dataset":
        raise ValueError(
            "perception/generated: generated videos ship no keypoints or silhouettes; use mediapipe or dwpose"
        )
