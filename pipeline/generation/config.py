"""The generation section's check: every sweep model's guidance can be met on every dataset.

A generator declares the guidance it consumes (``needs``). On a real dataset some guidance does not
exist: SMPL joints (``smpl``) only come from the world's ground truth, and dense part maps (``parts``)
only from the world's ground truth or the ``approx_from_pose`` approximation
(:mod:`pipeline.perception.parts`). Checked when the workflow parses its config, so the plan fails
before any job with a message naming the model, the dataset and the missing guidance.
"""

from __future__ import annotations

from pipeline.config import ConfigError


def generator_needs(generator: str) -> tuple[str, ...] | None:
    """The guidance a registered generator consumes, without building it (None if unknown)."""
    from pipeline.generation.generators import REGISTRY

    factory = REGISTRY.get(generator)
    needs = getattr(factory, "needs", None)
    return None if needs is None else tuple(needs)


ABLATION_ARMS = ("groundtruth", "estimated")
# guidance a generator must read for the ablation to change anything
POSE_GUIDANCE = ("keypoints", "parts")


def ablation_arm_name(model: str, arm: str) -> str:
    """The derived model of one ablation arm, e.g. ``posewarp-dense@estimated``."""
    return f"{model}@{arm}"


def ablation_models(config: dict) -> dict[str, dict]:
    """The derived models of ``sweep.guidance_ablation``: for each named model one spec per arm, the
    model's own spec with ``guidance`` set (their name → spec, in config order)."""
    models = config.get("models") or {}
    ablation = (config.get("sweep") or {}).get("guidance_ablation") or {}
    return {
        ablation_arm_name(model, arm): {**models[model], "guidance": arm}
        for model in ablation.get("models", [])
        if model in models
        for arm in ABLATION_ARMS
    }


def ablation_arm(model: str) -> tuple[str, str] | None:
    """(base model, arm) of a derived ablation model name, None for any other model."""
    base, sep, arm = model.rpartition("@")
    return (base, arm) if sep and arm in ABLATION_ARMS else None


def _check_ablation(config: dict, models: dict) -> list[str]:
    ablation = (config.get("sweep") or {}).get("guidance_ablation") or {}
    problems = []
    scenarios = {s["name"] for s in (config.get("sweep") or {}).get("scenarios", [])}
    for model in ablation.get("models", []):
        where = f"sweep.guidance_ablation.models: '{model}'"
        if model not in models:
            problems.append(f"{where} is not defined under `models`")
            continue
        needs = generator_needs(models[model]["generator"]) or ()
        if not set(needs) & set(POSE_GUIDANCE):
            problems.append(
                f"{where} (generator {models[model]['generator']}) reads no pose guidance (needs {list(needs)}), "
                "so ground-truth and estimated guidance cannot differ: name a posewarp or upstream animator"
            )
        if not any(d["kind"] == "world" for d in config["datasets"].values()):
            problems.append(
                f"{where}: the ablation needs ground-truth guidance, which only a world dataset has"
            )
    for name in ablation.get("scenarios", []):
        if name not in scenarios:
            problems.append(
                f"sweep.guidance_ablation.scenarios: '{name}' is not one of sweep.scenarios {sorted(scenarios)}"
            )
    for name, dataset in sorted(config["datasets"].items()):
        for key, known in (
            ("sweep_models", set(models)),
            ("sweep_scenarios", scenarios),
        ):
            for item in dataset.get(key, []):
                if item not in known:
                    problems.append(f"datasets.{name}.{key}: '{item}' is not one of {sorted(known)}")
    for name, spec in sorted(models.items()):
        for item in spec.get("scenarios", []):
            if item not in scenarios:
                problems.append(f"models.{name}.scenarios: '{item}' is not one of sweep.scenarios {sorted(scenarios)}")
    return problems


def check_generation(config: dict) -> None:
    models = config.get("models") or {}
    problems = _check_ablation(config, models)
    for model in (config.get("sweep") or {}).get("models", []):
        spec = models.get(model)
        if spec is None:
            continue  # the cross-reference check names unknown models
        needs = generator_needs(spec["generator"]) or ()
        parts = spec.get("parts", "auto")
        for name, dataset in sorted(config["datasets"].items()):
            if dataset["kind"] == "world":
                continue
            where = f"dataset '{name}' (kind {dataset['kind']})"
            if "smpl" in needs:
                problems.append(
                    f"model '{model}' (generator {spec['generator']}) needs SMPL joints (guidance 'smpl'), which only "
                    f"the synthetic world's ground truth provides; {where} has none: drop the model from "
                    "sweep.models or run it on a world dataset"
                )
            if spec.get("guidance") == "groundtruth":
                problems.append(
                    f"model '{model}' has guidance 'groundtruth', which only the synthetic world has; {where} has "
                    "none: use guidance 'auto' or 'estimated'"
                )
            if "parts" in needs and parts == "groundtruth":
                problems.append(
                    f"model '{model}' (generator {spec['generator']}) needs dense part maps (guidance 'parts') and "
                    f"models.{model}.parts is 'groundtruth', which only the synthetic world has; {where} has none: "
                    "set parts to 'auto' or 'approx_from_pose' (an approximation from pose + mask)"
                )
    if problems:
        raise ConfigError("generation guidance cannot be met:\n  " + "\n  ".join(problems))
