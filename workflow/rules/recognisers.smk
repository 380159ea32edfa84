# Stage "recognisers": train each gait recogniser on a dataset's train split
# (pipeline/recognisers/train.py). Skipped for recognisers given an official checkpoint in the config.


rule train_recogniser:
    input:
        unpack(get_train_inputs),
    output:
        model="results/recognisers/{dataset}/{recogniser}/model.pt",
    params:
        spec=get_train_spec,
    log:
        "logs/train_recogniser/{dataset}/{recogniser}.log",
    conda:
        "../envs/pipeline.yaml"
    wildcard_constraints:
        dataset=r"[^/]+",
        recogniser="|".join(re.escape(name) for name in REC_NAMES) or "(?!x)x",
    threads: RECOGNISERS["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
        **CPU_RESOURCES,
    shell:
        "python -m pipeline.cli train-recogniser --spec {params.spec:q} > {log} 2>&1"
