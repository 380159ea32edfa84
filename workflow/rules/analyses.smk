# Stage "analyses": beyond the seed paper, from the aggregated tables and the pose stores: the
# guidance-source ablation, the predictors of biometric fidelity (with the motion consistency of every
# generated video) and the cross-domain table (pipeline/study/analyses.py; metrics in
# pipeline/study/predictors.py and pipeline/evaluation/motion.py). One job for the whole study.
# Input functions: rules/inputs/study.smk.


rule analyses:
    input:
        unpack(get_analyses_inputs),
    output:
        **{f"{table}_csv": f"results/analyses/{table}.csv" for table in ANALYSES_TABLES},
        **{table: f"results/analyses/{table}.parquet" for table in ANALYSES_TABLES},
    log:
        "logs/analyses.log",
    benchmark:
        "results/benchmarks/analyses.tsv"
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        spec=get_analyses_spec,
    shell:
        "python -m pipeline.cli analyses --spec {params.spec:q} > {log} 2>&1"
