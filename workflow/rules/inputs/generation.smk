# Input functions and params of the sweep plan and generation (rules/sweep.smk, rules/generate.smk).
# Function-only (snakemake --lint keeps rules and functions apart); included by the Snakefile.


# ---- sweep ------------------------------------------------------------------------------------------


def get_plan_inputs(wildcards):
    return {
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "pose": f"results/perception/{wildcards.dataset}/pose/summary.parquet",
    }


def get_plan_params(wildcards):
    # The plan depends on the scenarios, not on the model list: adding a model never re-plans.
    sweep = {k: v for k, v in SWEEP.items() if k != "models"}
    conditions = DATASETS[wildcards.dataset].get("scenario_conditions", {})
    return json.dumps(
        {"sweep": sweep, "scenario_conditions": conditions}, sort_keys=True
    )


# ---- generate ---------------------------------------------------------------------------------------


def get_generation_inputs(wildcards):
    inputs = {
        "plan": f"results/sweep/{wildcards.dataset}/plan.parquet",
        "manifest": f"results/manifests/{wildcards.dataset}.parquet",
        "pose": f"results/perception/{wildcards.dataset}/pose/summary.parquet",
        "masks": f"results/perception/{wildcards.dataset}/masks/summary.parquet",
    }
    if is_gaitcrafter_model(wildcards.model):
        inputs["gaitcrafter"] = gaitcrafter_model_file(wildcards.dataset)
    return inputs


def get_model_spec(wildcards):
    spec = dict(MODELS[wildcards.model])
    if is_gaitcrafter_model(wildcards.model):
        # The dataset's trained GaitCrafter; gaitcrafter.sampling under the model's own params.
        spec["checkpoint"] = gaitcrafter_model_file(wildcards.dataset)
        spec["params"] = {**gaitcrafter_sampling(), **spec.get("params", {})}
    return json.dumps(spec, sort_keys=True)


def model_resource(name, scale_with_attempt=False):
    def resource(wildcards, attempt):
        value = (
            MODELS[wildcards.model]
            .get("resources", {})
            .get(name, {"gpu": 0, "mem_mb": 4000, "runtime": 60}[name])
        )
        if name == "gpu" and not value:
            return None  # CPU model: request no GPU at all
        return value * attempt if scale_with_attempt else value

    return resource


def uses_gpu(wildcards):
    return bool(MODELS[wildcards.model].get("resources", {}).get("gpu", 0))


def get_model_partition(wildcards):
    return CLUSTER["gpu_partition"] if uses_gpu(wildcards) else CLUSTER["cpu_partition"]


def get_model_gpu_model(wildcards):
    return CLUSTER["gpu_model"] if uses_gpu(wildcards) else None
