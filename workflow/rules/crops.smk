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
    log:
        "logs/crops/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/crops/{source}/{shard}.tsv"
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
        options=get_crops_options,
        shards=get_source_shards,
    shell:
        "python -m pipeline.cli stage crops --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
