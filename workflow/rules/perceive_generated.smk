# Perception of generated videos: the same five stages and the same code as for real sources
# (pipeline/perception/pose.py, masks.py, silhouettes.py, skeleton_maps.py, crops.py), chained in one job (and one
# process: `pipeline.cli chain`) per generation shard, so the DAG gains one job, not five, per shard of
# ~100 generated videos.
# Input functions: rules/inputs/perception.smk (the five stages' options).


rule perceive_generated:
    input:
        manifest=get_source_manifest,
    output:
        pose_store="results/perception/{source}/pose/shard-0000.npz",
        pose_status="results/perception/{source}/pose/shard-0000.parquet",
        masks_store="results/perception/{source}/masks/shard-0000.npz",
        masks_status="results/perception/{source}/masks/shard-0000.parquet",
        silhouettes_store="results/perception/{source}/silhouettes/shard-0000.npz",
        silhouettes_status="results/perception/{source}/silhouettes/shard-0000.parquet",
        skeleton_maps_store="results/perception/{source}/skeleton_maps/shard-0000.npz",
        skeleton_maps_status="results/perception/{source}/skeleton_maps/shard-0000.parquet",
        crops_store="results/perception/{source}/crops/shard-0000.npz",
        crops_status="results/perception/{source}/crops/shard-0000.parquet",
    log:
        "logs/perceive_generated/{source}.log",
    benchmark:
        "results/benchmarks/perceive_generated/{source}.tsv"
    wildcard_constraints:
        source=r"gen/.+",
    # After generation, before the short per-shard evaluation and metrics jobs: the longest per-shard job
    # must not be the last one left (a 2-core demo ran the last shard's chain alone for 10 s).
    priority: 5
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
    params:
        pose=get_pose_options,
        masks=get_masks_options,
        silhouettes=get_silhouettes_options,
        skeleton_maps=get_skeleton_maps_options,
        crops=get_crops_options,
    shell:
        "python -m pipeline.cli chain --manifest {input.manifest} --shard shard-0000 --shards 1"
        " --step pose {output.pose_store} {output.pose_status} {params.pose:q}"
        " --step masks {output.masks_store} {output.masks_status} {params.masks:q}"
        " --step silhouettes {output.silhouettes_store} {output.silhouettes_status} {params.silhouettes:q}"
        " --step skeleton_maps {output.skeleton_maps_store} {output.skeleton_maps_status} {params.skeleton_maps:q}"
        " --step crops {output.crops_store} {output.crops_status} {params.crops:q} > {log} 2>&1"
