# Stage "summary": one table over all shards of a per-sequence stage (pipeline/runner.py), so that
# consumers of a whole source depend on one file rather than on every shard's outputs.
# Input functions: rules/inputs/perception.smk.


rule stage_summary:
    input:
        get_summary_inputs,
    output:
        "results/perception/{source}/{stage}/summary.parquet",
    log:
        "logs/stage_summary/{source}/{stage}.log",
    benchmark:
        "results/benchmarks/stage_summary/{source}/{stage}.tsv"
    wildcard_constraints:
        stage="pose|masks|silhouettes|skeleton_maps|crops",
    # before generated-video work: it gates the recognisers' training (see rules/pose.smk)
    priority: 60
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli summarise --statuses {input} --out {output} > {log} 2>&1"
