"""Shipped GaitCrafter checkpoints: a trained model's EMA weights with the fingerprint of what made them.

A CPU cannot train a GaitCrafter that draws walkers within the demo's minutes, so the repository ships
one for the demo world (``pretrained/gaitcrafter/world-default``, made by ``make gaitcrafter-checkpoint``).
The training stage uses a shipped checkpoint **only** when its fingerprint equals the run's
(:func:`fingerprint`: every config key that changes the trained weights — steps, seed, lr, architecture,
… — the vocabulary, the enrolled splits/roles and the dataset's world config); otherwise it trains and
says why it did not use it. Nothing else is trusted: the weights' sha256 is checked on every use.

Folder layout: ``weights.safetensors`` (the EMA weights in float16: half the size, and the samples
differ from float32 weights by rounding only) and ``pretrained.json`` (format, fingerprint and what it
hashes, step, config, vocabulary, how it was made and its training CPU seconds, the weights' sha256).
:func:`materialise` turns one into an ordinary checkpoint (no optimizer state: it cannot be resumed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.gaitcrafter.config import GaitCrafterConfig

if TYPE_CHECKING:  # the model module imports torch and diffusers: only where weights are touched
    from pipeline.gaitcrafter.model import Vocabulary

PRETRAINED_FORMAT = "gaitcrafter-pretrained/1"
WEIGHTS_FILE, INFO_FILE = "weights.safetensors", "pretrained.json"
# Config keys that do not change the weights a CPU run ends with (I/O cadence, hardware, sampling).
NOT_FINGERPRINTED = frozenset(
    {"save_every", "keep_last", "threads", "device", "progress", "sample_steps", "sampler", "guidance_scale", "guidance_on"}
)


# World keys that only lay the same sequences out differently (every sequence is seeded by itself), so
# they must not make a shipped checkpoint unusable.
WORLD_LAYOUT_KEYS = frozenset({"shards"})


# gaitcrafter.enrol → (splits, roles) of the training sequences (pipeline.gaitcrafter.stage.enrol_selection,
# which sits a layer above this module).
ENROL_SELECTION: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "gallery": (("train", "test"), ("train", "gallery")),
    "none": (("train",), None),
}


class PretrainedError(ValueError):
    """A shipped checkpoint is missing, corrupt or unreadable; the message names the file."""


def fingerprint_inputs(
    config: GaitCrafterConfig,
    vocabulary: Vocabulary,
    splits: Sequence[str],
    roles: Sequence[str] | None,
    world: Mapping[str, object] | None,
) -> dict[str, object]:
    """What a trained model depends on (see the module docstring), as plain JSON values."""
    settings = {k: v for k, v in config.as_plain().items() if k not in NOT_FINGERPRINTED}
    return json.loads(
        json.dumps(
            {
                "config": settings,
                "vocabulary": vocabulary.as_plain(),
                "splits": list(splits),
                "roles": None if roles is None else list(roles),
                "world": None if world is None else {k: v for k, v in world.items() if k not in WORLD_LAYOUT_KEYS},
            },
            sort_keys=True,
        )
    )


def fingerprint(inputs: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_pretrained(folder: str | os.PathLike) -> dict:
    """``pretrained.json`` of a shipped checkpoint, its weights' sha256 verified."""
    folder = Path(folder)
    info_path, weights = folder / INFO_FILE, folder / WEIGHTS_FILE
    if not info_path.is_file() or not weights.is_file():
        raise PretrainedError(
            f"{folder}: not a shipped GaitCrafter checkpoint (needs {INFO_FILE} and {WEIGHTS_FILE})"
        )
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedError(f"{info_path}: unreadable ({err})") from err
    if not isinstance(info, dict) or info.get("format") != PRETRAINED_FORMAT:
        raise PretrainedError(f"{info_path}: not a {PRETRAINED_FORMAT} file")
    if _sha256(weights) != info.get("sha256"):
        raise PretrainedError(f"{weights}: sha256 differs from the one in {INFO_FILE} (corrupt or replaced)")
    return info


def mismatch(info: Mapping[str, object], inputs: Mapping[str, object]) -> str | None:
    """None when the shipped checkpoint fits this run; else which parts of the fingerprint differ."""
    if info.get("fingerprint") == fingerprint(inputs):
        return None
    recorded = info.get("inputs") or {}
    parts = sorted(k for k in inputs if recorded.get(k) != inputs[k])  # type: ignore[union-attr]
    config_keys = sorted(
        k
        for k in inputs["config"]
        if (recorded.get("config") or {}).get(k) != inputs["config"][k]  # type: ignore[union-attr, index]
    )
    detail = f" (config keys {config_keys})" if config_keys else ""
    return f"its fingerprint differs from this run's in {parts or ['fingerprint']}{detail}"


def export_pretrained(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    inputs: Mapping[str, object],
    made_by: str,
    train_cpu_seconds: float | None,
) -> Path:
    """Write a shipped checkpoint from a trained one (its EMA weights, float16)."""
    from safetensors.torch import save_file

    from pipeline.gaitcrafter.train import EMA_FILE, open_checkpoint

    source = open_checkpoint(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in source.tensors(EMA_FILE).items()
    }
    save_file(tensors, out / WEIGHTS_FILE, metadata={"format": PRETRAINED_FORMAT})
    info = {
        "format": PRETRAINED_FORMAT,
        "fingerprint": fingerprint(inputs),
        "inputs": dict(inputs),
        "step": source.step,
        "config": source.config.as_plain(),
        "vocabulary": source.vocabulary.as_plain(),
        "made_by": made_by,
        "train_cpu_seconds": None if train_cpu_seconds is None else round(float(train_cpu_seconds), 1),
        "sha256": _sha256(out / WEIGHTS_FILE),
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def materialise(folder: str | os.PathLike, run_dir: str | os.PathLike, config: GaitCrafterConfig) -> Path:
    """An ordinary checkpoint in ``run_dir`` holding the shipped weights (float32; both model and EMA)."""
    import torch
    from safetensors.torch import load_file

    from pipeline.gaitcrafter.model import Vocabulary, build_model
    from pipeline.gaitcrafter.train import EMA, save_checkpoint

    info = read_pretrained(folder)
    vocabulary = Vocabulary.from_plain(info["vocabulary"])
    model = build_model(config, vocabulary)
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in load_file(Path(folder) / WEIGHTS_FILE).items()
    }
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PretrainedError(f"{folder}/{WEIGHTS_FILE}: weights do not fit the config ({err})") from err
    with torch.no_grad():
        ema = EMA(model, config.ema_decay)
    extra = {"source": "pretrained", "pretrained": str(folder), "made_by": info.get("made_by")}
    return save_checkpoint(run_dir, int(info["step"]), model, ema, None, config, extra)


def export_from_model_json(model_json: str | os.PathLike, out: str | os.PathLike, made_by: str) -> Path:
    """A shipped checkpoint from the training stage's ``model.json`` (a model trained, not itself shipped)."""
    from pipeline.gaitcrafter.train import open_checkpoint

    info = json.loads(Path(model_json).read_text())
    if (info.get("source") or {}).get("kind") != "trained":
        raise PretrainedError(
            f"{model_json}: its model was not trained in that run (source {info.get('source')})"
        )
    checkpoint = open_checkpoint(info["checkpoint"])
    inputs = fingerprint_inputs(
        checkpoint.config, checkpoint.vocabulary, info["splits"], info["roles"], info["world"]
    )
    if fingerprint(inputs) != info.get("fingerprint"):
        raise PretrainedError(
            f"{model_json}: the recorded fingerprint does not match its checkpoint's config"
        )
    return export_pretrained(
        checkpoint.path, out, inputs=inputs, made_by=made_by, train_cpu_seconds=info.get("cpu_seconds")
    )


def export_for_study(
    checkpoint: str | os.PathLike,
    study_config: str | os.PathLike,
    dataset: str,
    out: str | os.PathLike,
    *,
    made_by: str,
    train_cpu_seconds: float | None,
) -> Path:
    """A shipped checkpoint from any trained checkpoint of ``dataset`` (e.g. a benchmark run's), with the
    fingerprint the workflow computes for that study config (validated with the schema's defaults, as
    the workflow reads it). The checkpoint must have been trained on the sequences ``enrol`` selects."""
    from pipeline.config import load_config
    from pipeline.gaitcrafter.train import open_checkpoint

    config = load_config(study_config)
    spec = config["datasets"][dataset]
    world = config["worlds"][spec["world"]] if spec["kind"] == "world" else None
    splits, roles = ENROL_SELECTION[config["gaitcrafter"]["enrol"]]
    source = open_checkpoint(checkpoint)
    inputs = fingerprint_inputs(source.config, source.vocabulary, splits, roles, world)
    return export_pretrained(
        source.path, out, inputs=inputs, made_by=made_by, train_cpu_seconds=train_cpu_seconds
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.gaitcrafter.pretrained --model results/gaitcrafter/world/model.json --out DIR``."""
    import argparse

    parser = argparse.ArgumentParser(description="Export a trained GaitCrafter as a shipped checkpoint.")
    parser.add_argument("--model", help="the training stage's model.json")
    parser.add_argument("--checkpoint", help="instead of --model: a trained checkpoint (run or step folder)")
    parser.add_argument("--study", help="with --checkpoint: the study config whose fingerprint to record")
    parser.add_argument("--dataset", default="world", help="with --checkpoint: the dataset it was trained on")
    parser.add_argument("--train-cpu-seconds", type=float, default=None, help="with --checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--made-by", default="make gaitcrafter-checkpoint")
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.checkpoint and args.study):
        parser.error("give either --model, or --checkpoint with --study")
    if args.model:
        out = export_from_model_json(args.model, args.out, args.made_by)
    else:
        out = export_for_study(args.checkpoint, args.study, args.dataset, args.out, made_by=args.made_by,
                               train_cpu_seconds=args.train_cpu_seconds)  # fmt: skip
    info = json.loads((out / INFO_FILE).read_text())
    size = (out / WEIGHTS_FILE).stat().st_size
    print(f"{out}: step {info['step']}, fingerprint {info['fingerprint']}, {size / 1e6:.2f} MB, "
          f"training {info['train_cpu_seconds']} CPU s")  # fmt: skip
    return 0


__all__ = [
    "INFO_FILE",
    "PRETRAINED_FORMAT",
    "WEIGHTS_FILE",
    "PretrainedError",
    "export_for_study",
    "export_from_model_json",
    "export_pretrained",
    "fingerprint",
    "fingerprint_inputs",
    "materialise",
    "mismatch",
    "read_pretrained",
]


if __name__ == "__main__":
    raise SystemExit(main())
