# Stage "metrics": visual metrics (masked SSIM / PSNR / LPIPS) and behavioural diagnostics of one
# generation shard against the driving videos (pipeline/evaluation/metrics.py). Its params are the metric
# settings only, so changing them re-runs this stage and the aggregation, never generation.
# Input functions: rules/inputs/evaluation.smk.


rule metrics:
    input:
        unpack(get_metrics_inputs),
    output:
        visual="results/metrics/{source}/visual.parquet",
        diagnostics="results/metrics/{source}/diagnostics.parquet",
    log:
        "logs/metrics/{source}.log",
    benchmark:
        "results/benchmarks/metrics/{source}.tsv"
    wildcard_constraints:
        source=r"gen/.+",
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(120),
    params:
        settings=get_metrics_spec,
    shell:
        "python -m pipeline.cli metrics --spec {params.settings:q} > {log} 2>&1"
