"""Recogniser checkpoints in OpenGait's format, and DINOv2 weights for BigGait.

OpenGait (``opengait/modeling/base_model.py``) saves ``{'model': state_dict, 'optimizer': ...,
'scheduler': ..., 'iteration': int}``, with the inner module's keys (no ``module.`` prefix), and
restores with ``load_state_dict(ckpt['model'], strict=...)``. :func:`save_checkpoint` writes the same
layout (plus two keys OpenGait ignores: ``recogniser``, our model description, and ``extra``), so
our checkpoints load in OpenGait and theirs load here.

Everything is read with ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.contracts import atomic_path
from pipeline.recognisers.modules import DINOv2Backbone, dinov2_config_from_state_dict

DINOV2_CONFIG_KEY = "recognisers.biggait.dinov2_path"
LISTED_KEYS = 10  # how many offending keys an error message spells out


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


@dataclass
class CheckpointInfo:
    """What :func:`load_opengait_checkpoint` found besides the weights."""

    path: Path
    iteration: int | None
    optimizer: Mapping[str, object] | None
    scheduler: Mapping[str, object] | None
    extra: Mapping[str, object] | None
    missing_keys: list[str] = field(default_factory=list)  # only non-empty with strict=False
    unexpected_keys: list[str] = field(default_factory=list)


def checkpoint_config_key(model: nn.Module) -> str:
    """The config key that names a recogniser's checkpoint, e.g. ``recognisers.deepgaitv2.checkpoint``."""
    return f"recognisers.{getattr(model, 'name', None) or type(model).__name__.lower()}.checkpoint"


def read_checkpoint(path: str | os.PathLike, config_key: str) -> object:
    """The contents of a checkpoint file (``torch.load``, weights only); errors name it and its config key.

    A caller that needs both the unavailability note and the weights reads the file once and passes the
    result to :func:`unavailable_note` and :func:`load_opengait_checkpoint` (``saved=``)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"checkpoint {path} {what} (config key {config_key})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (pickle, zip, EOF, runtime) for a bad file
        raise CheckpointError(
            f"could not read checkpoint {path} (config key {config_key}): {type(exc).__name__}: {exc}"
        ) from exc


def _split(obj: object, path: Path, config_key: str) -> tuple[Mapping[str, Tensor], Mapping[str, object]]:
    """(state_dict, the rest) from OpenGait's ``{'model': ...}`` layout or a bare state dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state, meta = obj["model"], {k: v for k, v in obj.items() if k != "model"}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        kind = (
            f"a mapping with keys {sorted(map(str, obj))[:LISTED_KEYS]}"
            if isinstance(obj, Mapping)
            else type(obj).__name__
        )
        raise CheckpointError(
            f"checkpoint {path} (config key {config_key}) is neither OpenGait's {{'model': state_dict, ...}} "
            f"nor a bare state dict: found {kind}"
        )
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} (config key {config_key}): non-tensor entries {bad[:LISTED_KEYS]}"
        )
    return state, meta


def _listing(keys: list[str]) -> str:
    more = f" … and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else ""
    return ", ".join(keys[:LISTED_KEYS]) + more


def check_state_dict(
    model: nn.Module, state: Mapping[str, Tensor], *, strict: bool, where: str
) -> tuple[list[str], list[str]]:
    """Compare ``state`` with ``model.state_dict()``; raise on shape mismatches and, if strict, on
    missing/unexpected keys (listing the first few). Returns (missing, unexpected)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if problems:
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems))
    return missing, unexpected


def load_opengait_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    config_key: str | None = None,
    saved: object | None = None,
) -> CheckpointInfo:
    """Load an OpenGait checkpoint (or a bare state dict) into ``model``.

    Errors name the file and its config key (default ``recognisers.<model name>.checkpoint``): a missing
    file → ``FileNotFoundError``; an unreadable file or a key/shape mismatch → :class:`CheckpointError`
    listing the first offending keys. The model is untouched when an error is raised. ``saved``: the
    file's contents when the caller has already read them (:func:`read_checkpoint`).
    """
    path = Path(path)
    key = config_key or checkpoint_config_key(model)
    state, meta = _split(read_checkpoint(path, key) if saved is None else saved, path, key)
    missing, unexpected = check_state_dict(
        model, state, strict=strict, where=f"checkpoint {path} (config key {key})"
    )
    model.load_state_dict(state, strict=strict)
    note = getattr(model, "note_checkpoint", None)
    if callable(note):
        saved = meta.get("recogniser")
        note(path, saved if isinstance(saved, Mapping) else None)
    iteration = meta.get("iteration")
    return CheckpointInfo(
        path=path,
        iteration=int(iteration) if isinstance(iteration, (int, float)) else None,
        optimizer=meta.get("optimizer") if isinstance(meta.get("optimizer"), Mapping) else None,
        scheduler=meta.get("scheduler") if isinstance(meta.get("scheduler"), Mapping) else None,
        extra=meta.get("extra") if isinstance(meta.get("extra"), Mapping) else None,
        missing_keys=missing,
        unexpected_keys=unexpected,
    )


def _check_plain(value: object, where: str) -> None:
    """``extra`` must load under ``weights_only=True``: tensors, numbers, strings, lists and dicts only."""
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a string or an integer")
            _check_plain(item, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where} holds a {type(value).__name__}, which a weights_only load would refuse")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: object | None = None,
    iteration: int = 0,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Write ``{'model', 'optimizer', 'scheduler', 'iteration', 'recogniser', 'extra'}`` atomically.

    ``optimizer``/``scheduler`` are stored as their ``state_dict()`` (left out when None, which OpenGait
    tolerates only with ``optimizer_reset``/``scheduler_reset``). ``recogniser`` is ``model.describe()``
    when the model has it (it carries e.g. BigGait's ``pretrained: False``).
    """
    payload: dict[str, object] = {"model": model.state_dict(), "iteration": int(iteration)}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()  # type: ignore[attr-defined]
    describe = getattr(model, "describe", None)
    if callable(describe):
        payload["recogniser"] = describe()
        _check_plain(payload["recogniser"], "model.describe()")
    if extra is not None:
        extra = dict(extra)
        _check_plain(extra, "extra")
        payload["extra"] = extra
    final, tmp = atomic_path(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def load_dinov2(path_or_dir: str | os.PathLike, *, config_key: str = DINOV2_CONFIG_KEY) -> DINOv2Backbone:
    """Pretrained DINOv2 for BigGait (``pretrained=True``; BigGait freezes it by default).

    * a folder: a Hugging Face Dinov2 model (``config.json`` + weights), ``from_pretrained(local_files_only=True)``;
    * a file: the original DINOv2 state dict (``dinov2_vits14_pretrain.pth``, keys ``cls_token``,
      ``blocks.N.attn.qkv.weight`` …; also accepted inside ``{'model': ...}``); the architecture is read off
      the tensor shapes and the keys are converted to the HF model by :class:`DINOv2Backbone`.
    """
    from pipeline.recognisers.vit import ViTConfig, ViTModel

    path = Path(path_or_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"DINOv2 weights not found at {path} (config key {config_key}); give a Hugging Face Dinov2 folder "
            "or the original dinov2_vits14_pretrain.pth"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} (config key {config_key}) has no config.json: not a Hugging Face model folder"
            )
        from transformers import Dinov2Model

        try:
            model = Dinov2Model.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"could not load the Dinov2 model in {path} (config key {config_key}): {exc}"
            ) from exc
        return DINOv2Backbone(model, pretrained=True, source=str(path))
    state, _ = _split(read_checkpoint(path, config_key), path, config_key)
    if any(k.startswith("backbone.") for k in state):
        raise CheckpointError(
            f"{path} (config key {config_key}) looks like a full BigGait checkpoint (keys under 'backbone.'); "
            "load it with recognisers.biggait.checkpoint instead"
        )
    try:
        fields = dinov2_config_from_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path} (config key {config_key}): {exc}") from exc
    backbone = DINOv2Backbone(ViTModel(ViTConfig.from_fields(fields)), pretrained=True, source=str(path))
    check_state_dict(backbone, state, strict=True, where=f"DINOv2 weights {path} (config key {config_key})")
    backbone.load_state_dict(state, strict=True)
    return backbone


# ---------------------------------------------------------------------------------------------
# A recogniser that cannot run on a dataset: its model file records why


UNAVAILABLE_KEY = "unavailable"


class RecogniserUnavailable(ValueError):
    """A recogniser cannot be trained or run on a dataset (its modality is missing, too few identities
    have usable sequences); the reason flows to the embeddings, retrieval tables and the report."""


def save_unavailable(path: str | os.PathLike, recogniser: str, reason: str) -> Path:
    """Write the rule's model file as a record that ``recogniser`` was not trained, and why (no weights:
    every later stage reads the reason with :func:`unavailable_reason` instead of a model)."""
    final, tmp = atomic_path(path)
    try:
        torch.save({UNAVAILABLE_KEY: str(reason), "recogniser": str(recogniser)}, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def unavailable_reason(path: str | os.PathLike) -> str | None:
    """The reason recorded by :func:`save_unavailable`, or None for a real checkpoint."""
    return unavailable_note(torch.load(Path(path), map_location="cpu", weights_only=True))


def unavailable_note(saved: object) -> str | None:
    """:func:`unavailable_reason` of a checkpoint's contents already read (:func:`read_checkpoint`)."""
    if isinstance(saved, Mapping) and UNAVAILABLE_KEY in saved and "model" not in saved:
        return str(saved[UNAVAILABLE_KEY])
    return None
