# Stage "skeleton_maps": SkeletonGait skeleton maps (pipeline/perception/skeleton_maps.py), one job per shard of a source's manifest.
# Input functions: rules/inputs/perception.smk.


rule skeleton_maps:
    input:
        manifest=get_source_manifest,
        pose_store="results/perception/{source}/pose/{shard}.npz",
        pose_status="results/perception/{source}/pose/{shard}.parquet",
    output:
        store="results/perception/{source}/skeleton_maps/{shard}.npz",
        status="results/perception/{source}/skeleton_maps/{shard}.parquet",
    log:
        "logs/skeleton_maps/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/skeleton_maps/{source}/{shard}.tsv"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    # before generated-video work: it gates the recognisers' training (see rules/pose.smk)
    priority: 60
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
    params:
        options=get_skeleton_maps_options,
        shards=get_source_shards,
    shell:
        "python -m pipeline.cli stage skeleton_maps --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
