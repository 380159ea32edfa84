# Stage "generate": one model on one shard of one scenario's jobs, loading the model once
# (pipeline/generation/generate.py). GPU, memory and time come from models.<name>.resources; a retried job
# gets more memory and time.
# Input functions: rules/inputs/generation.smk.


rule generate:
    input:
        unpack(get_generation_inputs),
    output:
        manifest="results/generated/{dataset}/{model}/{task}/{scenario}/{shard}/manifest.parquet",
        videos=directory(
            "results/generated/{dataset}/{model}/{task}/{scenario}/{shard}/videos"
        ),
    log:
        "logs/generate/{dataset}/{model}/{task}/{scenario}/{shard}.log",
    benchmark:
        "results/benchmarks/generate/{dataset}/{model}/{task}/{scenario}/{shard}.tsv"
    wildcard_constraints:
        task="restoration|transfer",
        shard=r"shard-\d{4}",
    # Generation before the short per-shard jobs downstream, so that no long job is left for the end.
    priority: 10
    retries: 1
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb", scale_with_attempt=True),
        runtime=model_resource("runtime", scale_with_attempt=True),
        gpu_model=get_model_gpu_model,
        slurm_partition=get_model_partition,
        slurm_account=CLUSTER["account"],
    params:
        spec=get_model_spec,
    shell:
        "python -m pipeline.cli generate --plan {input.plan} --scenario {wildcards.scenario}"
        " --shard {wildcards.shard} --model {wildcards.model} --spec {params.spec:q}"
        " --manifest {input.manifest} --pose {input.pose} --masks {input.masks}"
        " --videos {output.videos} --out {output.manifest} > {log} 2>&1"
