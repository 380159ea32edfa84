# Stage "pose": COCO-17 keypoints (pipeline/perception/pose.py); with mediapipe the same pass keeps the masks, one job per shard of a source's manifest.
# Input functions: rules/inputs/perception.smk.


rule pose:
    input:
        manifest=get_source_manifest,
    output:
        store="results/perception/{source}/pose/{shard}.npz",
        status="results/perception/{source}/pose/{shard}.parquet",
    log:
        "logs/pose/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/pose/{source}/{shard}.tsv"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    # Real-data perception gates the recognisers' training, the longest jobs (rules/recognisers.smk).
    priority: 60
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
    params:
        options=get_pose_options,
        shards=get_source_shards,
    shell:
        "python -m pipeline.cli stage pose --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
