# Stage "masks": person masks (pipeline/masks.py), one job per shard of a source's manifest.


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
    conda:
        "../envs/pipeline.yaml"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli stage masks --manifest {input.manifest} --shard {wildcards.shard}"
        " --shards {params.shards} --store {output.store} --status {output.status}"
        " --options {params.options:q} > {log} 2>&1"
