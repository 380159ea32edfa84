# Stage "crops": BigGait RGB person crops (pipeline/perception/crops.py), one job per shard of a source's manifest.
# Input functions: rules/inputs/perception.smk.


rule crops:
    input:
        manifest=get_source_manifest,
        masks_store="results/perception/{source}/masks/{shard}.npz",
        masks_status="results/perception/{source}/masks/{shard}.parquet",
    output:
        store="results/perception/{source}/crops/{shard}.npz",
        status="results/perception/{source}/crops/{shard}.parquet",
    params:
        options=get_crops_options,
        shards=get_source_shards,
    log:
        "logs/crops/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/crops/{source}/{shard}.tsv"
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
        "python -m pipeline.cli stage crops --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
