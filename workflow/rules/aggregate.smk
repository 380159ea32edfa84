# Stage "aggregate": the study's tables with bootstrap CIs over identities, correlations and the
# guidance-density comparison (pipeline/study/aggregate.py). Every table as Parquet and CSV.
# Input functions: rules/inputs/study.smk.


rule aggregate:
    input:
        unpack(get_aggregate_inputs),
    output:
        **{
            f"{table}_csv": report(
                f"results/aggregate/{table}.csv",
                caption=f"../report/{caption}.rst",
                category="Tables",
                labels={"table": table},
            )
            for table, caption in AGGREGATE_TABLES.items()
        },
        **{
            f"{table}": f"results/aggregate/{table}.parquet"
            for table in [*AGGREGATE_TABLES, *AGGREGATE_EXTRA]
        },
    log:
        "logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    params:
        spec=get_aggregate_spec,
    shell:
        "python -m pipeline.cli aggregate --spec {params.spec:q} > {log} 2>&1"
