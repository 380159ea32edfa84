# Stage "world": render the synthetic gait world as a dataset on disk (pipeline/world).
# Input functions: rules/inputs/world.smk.


rule world_spec:
    output:
        "results/world/{dataset}/world.json",
    log:
        "logs/world_spec/{dataset}.log",
    benchmark:
        "results/benchmarks/world_spec/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternation(WORLD_DATASETS),
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,  # a local rule under SLURM; account and partition when localrules are left out
    params:
        spec=get_world_spec,
    shell:
        "python -m pipeline.cli world-spec --spec {params.spec:q} --out {output} > {log} 2>&1"


rule render_world_shard:
    input:
        spec="results/world/{dataset}/world.json",
    output:
        sheet="results/world/{dataset}/sheets/{shard}.csv",
        groundtruth="results/world/{dataset}/groundtruth/{shard}.npz",
        videos=directory("results/world/{dataset}/videos/{shard}"),
    log:
        "logs/render_world_shard/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/render_world_shard/{dataset}/{shard}.tsv"
    wildcard_constraints:
        dataset=alternation(WORLD_DATASETS),
        shard=r"shard-\d{4}",
    # First of all: every world shard must be rendered before any real-data perception starts.
    priority: 70
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    shell:
        "python -m pipeline.cli world-render --spec {input.spec} --shard {wildcards.shard}"
        " --sheet {output.sheet} --groundtruth {output.groundtruth} --videos {output.videos} > {log} 2>&1"
