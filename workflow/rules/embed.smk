# Stage "embed": embeddings of one perception shard of a real source with every recogniser
# (pipeline/embed.py), one Parquet per recogniser.


rule embed:
    input:
        unpack(get_embed_inputs),
    output:
        expand("results/embeddings/{{source}}/{name}/{{shard}}.parquet", name=REC_NAMES),
    params:
        spec=get_embed_spec,
    log:
        "logs/embed/{source}/{shard}.log",
    conda:
        "../envs/pipeline.yaml"
    wildcard_constraints:
        source=r"[^/]+",
        shard=r"shard-\d{4}",
    threads: RECOGNISERS["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli embed --spec {params.spec:q} > {log} 2>&1"
