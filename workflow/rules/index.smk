# Stage "index": turn a dataset on disk into the sequence manifest (pipeline/datasets/index.py).
# Input functions: rules/inputs/world.smk.


rule index_world:
    input:
        unpack(get_world_shard_outputs),
        spec="results/world/{dataset}/world.json",
    output:
        "results/manifests/{dataset}.parquet",
    log:
        "logs/index_world/{dataset}.log",
    benchmark:
        "results/benchmarks/index_world/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternation(WORLD_DATASETS),
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli index-world --spec {input.spec} --sheets {input.sheets}"
        " --groundtruth {input.groundtruth} --out {output} > {log} 2>&1"


rule index_dataset:
    output:
        "results/manifests/{dataset}.parquet",
    log:
        "logs/index_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/index_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternation(EXTERNAL_DATASETS),
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    params:
        spec=get_dataset_spec,
    shell:
        "python -m pipeline.cli index --spec {params.spec:q} --out {output} > {log} 2>&1"
