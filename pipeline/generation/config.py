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


def check_generation(config: dict) -> None:
    models = config.get("models") or {}
    problems = []
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
            if "parts" in needs and parts == "groundtruth":
                problems.append(
                    f"model '{model}' (generator {spec['generator']}) needs dense part maps (guidance 'parts') and "
                    f"models.{model}.parts is 'groundtruth', which only the synthetic world has; {where} has none: "
                    "set parts to 'auto' or 'approx_from_pose' (an approximation from pose + mask)"
                )
    if problems:
        raise ConfigError("generation guidance cannot be met:\n  " + "\n  ".join(problems))
