# Stage "retrieval" (pipeline/evaluation/retrieval.py): protocol metrics of a dataset's real probes, and the
# ranking of every generation shard's videos against the real gallery.
# Input functions: rules/inputs/evaluation.smk.


rule real_retrieval:
    input:
        embeddings=get_real_embeddings,
        manifest="results/manifests/{dataset}.parquet",
    output:
        table="results/retrieval/{dataset}/real.parquet",
        twins="results/retrieval/{dataset}/twins.parquet",
        galleries=expand(
            "results/embeddings/{{dataset}}/{name}/test.parquet", name=REC_NAMES
        ),
    log:
        "logs/real_retrieval/{dataset}.log",
    benchmark:
        "results/benchmarks/real_retrieval/{dataset}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(16000),
        runtime=per_attempt(60),
    params:
        spec=get_real_retrieval_spec,
    shell:
        "python -m pipeline.cli real-retrieval --spec {params.spec:q} > {log} 2>&1"


rule evaluate_generated:
    input:
        unpack(get_evaluate_inputs),
    output:
        "results/retrieval/{source}/probe_results.parquet",
    log:
        "logs/evaluate_generated/{source}.log",
    benchmark:
        "results/benchmarks/evaluate_generated/{source}.tsv"
    wildcard_constraints:
        source=r"gen/.+",
    # Before the shorter metrics jobs of the same shards, so that a short job is the last one left.
    priority: 3
    conda:
        "../envs/pipeline.yaml"
    threads: RECOGNISERS["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
    params:
        spec=get_evaluate_spec,
    shell:
        "python -m pipeline.cli evaluate-generated --spec {params.spec:q} > {log} 2>&1"
