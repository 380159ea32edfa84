# Input functions and params of the perception stages (rules/pose.smk, masks, silhouettes, skeleton_maps, crops, guidance, summary; perceive_generated reuses their options).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- pose -------------------------------------------------------------------------------------------


def _pose_options(wildcards):
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


get_pose_options = per_shard_options(_pose_options)


# ---- masks ------------------------------------------------------------------------------------------


def get_masks_inputs(wildcards):
    inputs = {"manifest": get_source_manifest(wildcards)}
    if backends_of(wildcards.source)["masks"] == "from_pose":
        inputs.update(stage_paths("pose", wildcards))
    return inputs


def _masks_options(wildcards):
    backend = backends_of(wildcards.source)["masks"]
    extra = stage_paths("pose", wildcards) if backend == "from_pose" else {}
    return options_json(
        backend=backend,
        min_valid_frames=PERCEPTION["min_valid_frames"],
        threshold=PERCEPTION["mediapipe"]["mask_threshold"],
        mediapipe=PERCEPTION["mediapipe"],
        **extra,
    )


get_masks_options = per_shard_options(_masks_options)


# ---- silhouettes ------------------------------------------------------------------------------------


def _silhouettes_options(wildcards):
    export = PERCEPTION["silhouettes"]["export_opengait"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        export_root=f"results/opengait/{wildcards.source}" if export else None,
        shipped=backends_of(wildcards.source)["masks"] == "dataset",
        **stage_paths("masks", wildcards),
    )


get_silhouettes_options = per_shard_options(_silhouettes_options)


# ---- skeleton_maps ----------------------------------------------------------------------------------


def _skeleton_maps_options(wildcards):
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        sigma=PERCEPTION["skeleton_maps"]["sigma"],
        **stage_paths("pose", wildcards),
    )


get_skeleton_maps_options = per_shard_options(_skeleton_maps_options)


# ---- crops ------------------------------------------------------------------------------------------


def _crops_options(wildcards):
    crops = PERCEPTION["crops"]
    return options_json(
        min_valid_frames=PERCEPTION["min_valid_frames"],
        size=[crops["height"], crops["width"]],
        shipped=backends_of(wildcards.source)["masks"] == "dataset",
        **stage_paths("masks", wildcards),
    )


get_crops_options = per_shard_options(_crops_options)


# ---- guidance ---------------------------------------------------------------------------------------


def _guidance_options(wildcards):
    return options_json(
        guidance_format=wildcards.fmt,
        min_valid_frames=PERCEPTION["min_valid_frames"],
        nlf_model_path=PERCEPTION["nlf"]["model_path"],
        # densepose on real video: approx_from_pose part maps from the pose and mask stages
        masks_store=f"results/perception/{wildcards.source}/masks/{wildcards.shard}.npz",
        **stage_paths("pose", wildcards),
    )


get_guidance_options = per_shard_options(_guidance_options)


# ---- summary ----------------------------------------------------------------------------------------


def get_summary_inputs(wildcards):
    shards = shard_names(shards_of(wildcards.source))
    return expand(
        f"results/perception/{wildcards.source}/{wildcards.stage}/{{shard}}.parquet",
        shard=shards,
    )
