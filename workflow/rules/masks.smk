# Stage "masks": person masks (pipeline/perception/masks.py), one job per shard of a source's manifest.
# Input functions: rules/inputs/perception.smk.


rule masks:
    input:
        unpack(get_masks_inputs),
    output:
        store="results/perception/{source}/masks/{shard}.npz",
        status="results/perception/{source}/masks/{shard}.parquet",
    params:
        options=get_masks_options,
        shards=get_source_shards,
    log:
        "logs/masks/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/masks/{source}/{shard}.tsv"
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
        "python -m pipeline.cli stage masks --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
