# Stage "gaitcrafter" (pipeline/gaitcrafter/): train a dataset's GaitCrafter (silhouette video diffusion)
# on its train split plus the test split's gallery sequences (enrolment, so the sweep's test identities
# have identity tokens), measure its samples (quality, novel-identity distinctness) and run the
# augmentation experiment: synthetic training sets → the configured silhouette recogniser trained on
# each variant → scored on the real test split with the retrieval code of the real-probe baseline.
# As a sweep generator it is the model `gaitcrafter` (rules/generate.smk, pipeline/generation/generators/gaitcrafter.py).
# Input functions: rules/inputs/gaitcrafter.smk.


rule train_gaitcrafter:
    input:
        unpack(gaitcrafter_source_inputs),
    output:
        model="results/gaitcrafter/{dataset}/model.json",
    log:
        "logs/gaitcrafter/train/{dataset}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/train/{dataset}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
    # Early: its sampling jobs are the longest after the recognisers' (longest first packs the cores).
    priority: 45
    conda:
        "../envs/pipeline.yaml"
    threads: GAITCRAFTER["threads"]
    resources:
        gpu=gaitcrafter_resource("gpu"),
        mem_mb=gaitcrafter_resource("mem_mb"),
        runtime=gaitcrafter_resource("runtime"),
        gpu_model=gaitcrafter_gpu_model,
        slurm_partition=gaitcrafter_partition,
        slurm_account=CLUSTER["account"],
    params:
        spec=get_gaitcrafter_train_spec,
    shell:
        "python -m pipeline.cli train-gaitcrafter --spec {params.spec:q} > {log} 2>&1"


rule gaitcrafter_quality:
    input:
        unpack(gaitcrafter_source_inputs),
        model="results/gaitcrafter/{dataset}/model.json",
    output:
        "results/gaitcrafter/{dataset}/quality.parquet",
    log:
        "logs/gaitcrafter/quality/{dataset}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/quality/{dataset}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
    priority: 30
    conda:
        "../envs/pipeline.yaml"
    threads: GAITCRAFTER["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(60),
    params:
        spec=get_gaitcrafter_quality_spec,
    shell:
        "python -m pipeline.cli gaitcrafter-quality --spec {params.spec:q} > {log} 2>&1"


rule gaitcrafter_novelty:
    input:
        unpack(get_gaitcrafter_novelty_inputs),
    output:
        "results/gaitcrafter/{dataset}/novelty.parquet",
    log:
        "logs/gaitcrafter/novelty/{dataset}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/novelty/{dataset}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
    priority: 30
    conda:
        "../envs/pipeline.yaml"
    threads: GAITCRAFTER["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(60),
    params:
        spec=get_gaitcrafter_novelty_spec,
    shell:
        "python -m pipeline.cli gaitcrafter-novelty --spec {params.spec:q} > {log} 2>&1"


rule gaitcrafter_synthesize:
    input:
        model="results/gaitcrafter/{dataset}/model.json",
    output:
        manifest="results/gaitcrafter/{dataset}/synthetic/{kind}/manifest.parquet",
        store="results/gaitcrafter/{dataset}/synthetic/{kind}/silhouettes/shard-0000.npz",
        info="results/gaitcrafter/{dataset}/synthetic/{kind}/info.json",
    log:
        "logs/gaitcrafter/synthesize/{dataset}/{kind}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/synthesize/{dataset}/{kind}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
        kind=alternation(GC_KINDS),
    priority: 30
    conda:
        "../envs/pipeline.yaml"
    threads: GAITCRAFTER["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(6000),
        runtime=per_attempt(60),
    params:
        spec=get_gaitcrafter_synthesize_spec,
    shell:
        "python -m pipeline.cli gaitcrafter-synthesize --spec {params.spec:q} > {log} 2>&1"


rule gaitcrafter_augment:
    input:
        unpack(get_gaitcrafter_augment_inputs),
    output:
        "results/gaitcrafter/{dataset}/augmentation/{variant}/retrieval.parquet",
    log:
        "logs/gaitcrafter/augment/{dataset}/{variant}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/augment/{dataset}/{variant}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
        variant=alternation([re.escape(v) for v in GC_VARIANTS]),
    priority: 20
    conda:
        "../envs/pipeline.yaml"
    threads: GAITCRAFTER["threads"]
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(240),
    params:
        spec=get_gaitcrafter_augment_spec,
    shell:
        "python -m pipeline.cli gaitcrafter-augment --spec {params.spec:q} > {log} 2>&1"


rule gaitcrafter_augmentation:
    input:
        get_gaitcrafter_augmentation_inputs,
    output:
        "results/gaitcrafter/{dataset}/augmentation.parquet",
    log:
        "logs/gaitcrafter/augmentation/{dataset}.log",
    benchmark:
        "results/benchmarks/gaitcrafter/augmentation/{dataset}.tsv"
    wildcard_constraints:
        dataset=r"[^/]+",
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
    params:
        spec=get_gaitcrafter_augmentation_spec,
    shell:
        "python -m pipeline.cli gaitcrafter-augmentation --spec {params.spec:q} > {log} 2>&1"
