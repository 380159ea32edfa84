# Stage "sweep": the model-independent generation plan of a dataset (pipeline/generation/sweep.py).
# Input functions: rules/inputs/generation.smk.


rule sweep_plan:
    input:
        unpack(get_plan_inputs),
    output:
        "results/sweep/{dataset}/plan.parquet",
    log:
        "logs/sweep_plan/{dataset}.log",
    benchmark:
        "results/benchmarks/sweep_plan/{dataset}.tsv"
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    params:
        spec=get_plan_params,
    shell:
        "python -m pipeline.cli sweep-plan --manifest {input.manifest} --pose-summary {input.pose}"
        " --dataset {wildcards.dataset} --spec {params.spec:q}"
        " --out {output} > {log} 2>&1"


rule sweep_sheet:
    input:
        plans=expand("results/sweep/{dataset}/plan.parquet", dataset=sorted(DATASETS)),
    output:
        "results/sweep/sweep.parquet",
    log:
        "logs/sweep_sheet.log",
    benchmark:
        "results/benchmarks/sweep_sheet.tsv"
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    params:
        models=SWEEP["models"],
    shell:
        "python -m pipeline.cli sweep-sheet --plans {input.plans} --models {params.models} --out {output} > {log} 2>&1"
