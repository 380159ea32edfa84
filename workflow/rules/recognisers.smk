# Stage "recognisers": train each gait recogniser on a dataset's train split
# (pipeline/recognisers/train.py). Skipped for recognisers given an official checkpoint in the config,
# and for datasets scored with another dataset's recognisers (recognisers.train_on).
# Input functions: rules/inputs/evaluation.smk.


rule train_recogniser:
    input:
        unpack(get_train_inputs),
    output:
        model="results/recognisers/{dataset}/{recogniser}/model.pt",
    log:
        "logs/train_recogniser/{dataset}/{recogniser}.log",
    benchmark:
        "results/benchmarks/train_recogniser/{dataset}/{recogniser}.tsv"
    wildcard_constraints:
        # no recogniser is trained on a dataset scored with another dataset's (recognisers.train_on)
        dataset=alternation(sorted(set(DATASETS) - set(TRAIN_ON))),
        recogniser="|".join(re.escape(name) for name in REC_NAMES) or "(?!x)x",
    # The longest jobs first: every evaluation waits for all recognisers, and when the last one started
    # after the short generation jobs the 2-core demo ran it alone for 74 s (docs/architecture.md).
    priority: 50
    conda:
        "../envs/pipeline.yaml"
    threads: RECOGNISERS["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(240),
    params:
        spec=get_train_spec,
    shell:
        "python -m pipeline.cli train-recogniser --spec {params.spec:q} > {log} 2>&1"
