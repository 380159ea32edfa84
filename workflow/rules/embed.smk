# Stage "embed": embeddings of one perception shard of a real source with every recogniser
# (pipeline/evaluation/embed.py), one Parquet per recogniser.
# Input functions: rules/inputs/evaluation.smk.


rule embed:
    input:
        unpack(get_embed_inputs),
    output:
        expand("results/embeddings/{{source}}/{name}/{{shard}}.parquet", name=REC_NAMES),
    log:
        "logs/embed/{source}/{shard}.log",
    benchmark:
        "results/benchmarks/embed/{source}/{shard}.tsv"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    # Next after the recognisers: the gallery's embeddings gate every generated shard's evaluation.
    priority: 40
    conda:
        "../envs/pipeline.yaml"
    threads: RECOGNISERS["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
    params:
        spec=get_embed_spec,
    shell:
        "python -m pipeline.cli embed --spec {params.spec:q} > {log} 2>&1"
