# Stage "guidance": animator guidance (OpenPose skeleton frames, DensePose frames, SMPL-24 joints in mm)
# rendered from any keypoint source (pipeline/perception/guidance.py); one job per format and shard.
# Input functions: rules/inputs/perception.smk.


rule guidance:
    input:
        manifest=get_source_manifest,
        pose_store="results/perception/{source}/pose/{shard}.npz",
        pose_status="results/perception/{source}/pose/{shard}.parquet",
        masks_store="results/perception/{source}/masks/{shard}.npz",
    output:
        store="results/perception/{source}/guidance/{fmt}/{shard}.npz",
        status="results/perception/{source}/guidance/{fmt}/{shard}.parquet",
    log:
        "logs/guidance/{source}/{fmt}/{shard}.log",
    benchmark:
        "results/benchmarks/guidance/{source}/{fmt}/{shard}.tsv"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
        fmt="openpose|densepose|smpl",
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
    params:
        options=get_guidance_options,
        shards=get_source_shards,
    shell:
        "python -m pipeline.cli stage guidance --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
