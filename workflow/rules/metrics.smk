# Stage "metrics": visual metrics (masked SSIM / PSNR / LPIPS) and behavioural diagnostics of one
# generation shard against the driving videos (pipeline/metrics.py). Its params are the metric
# settings only, so changing them re-runs this stage and the aggregation, never generation.


rule metrics:
    input:
        unpack(get_metrics_inputs),
    output:
        visual="results/metrics/{source}/visual.parquet",
        diagnostics="results/metrics/{source}/diagnostics.parquet",
    params:
        settings=get_metrics_spec,
    log:
        "logs/metrics/{source}.log",
    conda:
        "../envs/pipeline.yaml"
    wildcard_constraints:
        source=r"gen/.+",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli metrics --spec {params.settings:q} > {log} 2>&1"
