# Stage "silhouettes": OpenGait-aligned silhouettes (pipeline/perception/silhouettes.py), one job per shard of a source's manifest.
# Input functions: rules/inputs/perception.smk.


rule silhouettes:
    input:
        manifest=get_source_manifest,
        masks_store="results/perception/{source}/masks/{shard}.npz",
        masks_status="results/perception/{source}/masks/{shard}.parquet",
    output:
        store="results/perception/{source}/silhouettes/{shard}.npz",
        status="results/perception/{source}/silhouettes/{shard}.parquet",
    params:
        options=get_silhouettes_options,
        shards=get_source_shards,
    log:
        "logs/silhouettes/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/silhouettes/{source}/{shard}.tsv"
    conda:
        "../envs/pipeline.yaml"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    threads: 1
    resources:
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli stage silhouettes --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
