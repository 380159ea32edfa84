"""Training loop for the recognisers: P×K batches, triplet + cross-entropy, resumable, logged.

What one iteration does (OpenGait's recipe, §4 of the reference notes): draw a P×K batch
(:class:`~pipeline.recognisers.data.TripletSampler`), sample a clip per sequence, augment it (the
silhouette DA or BigGait's flip), run the model in training mode, and minimise
``triplet_weight · triplet(embed_1) + ce_weight · CE(16 · logits) + Σ aux_losses`` with SGD (lr 0.1,
momentum 0.9, weight decay 5e-4) or Adam, stepping a MultiStepLR (γ 0.1) once per iteration.

Reproducibility and resuming: all randomness of iteration ``i`` comes from ``(seed, i)`` (numpy
``default_rng([seed, i])`` for batches and clips, ``torch.manual_seed`` derived from the same pair for
dropout and the like), so no RNG state needs saving. A checkpoint (OpenGait's layout, written
atomically by :func:`~pipeline.recognisers.checkpoints.save_checkpoint`) is saved every
``save_every`` iterations and at the end as ``{out}/checkpoints/{recogniser}-{iteration:05d}.pt``;
:func:`train` restarts from the latest one found there (read with ``torch.load(weights_only=True)``)
and continues exactly as an uninterrupted run would. Resuming with a different configuration (other
than the run length, checkpoint cadence, threads, device and progress bar) is refused.

The log (``{out}/train_log.parquet``, contract ``training_log``) has one row per iteration: the losses,
the triplet's non-zero fraction, the CE accuracy, the learning rate, seconds and sequences/s; it is
rewritten with every checkpoint, so it never runs ahead of the weights.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from pipeline.contracts import Contract, read_table, register, write_table
from pipeline.recognisers.data import RGB_DA, SILHOUETTE_DA, Batch, ClipSampling, GaitDataset, TripletSampler
from pipeline.recognisers.losses import (
    CE_SCALE,
    LABEL_SMOOTHING,
    TRIPLET_MARGIN,
    cross_entropy_loss,
    triplet_loss,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
CONFIG_KEY = "recognisers.train"
# Keys that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset({"iterations", "save_every", "keep_last", "threads", "device", "progress"})

TRAINING_LOG = register(
    Contract(
        name="training_log",
        schema=pa.schema(
            [
                pa.field("iteration", pa.int64(), nullable=False),
                pa.field("loss", pa.float64(), nullable=False),
                pa.field("triplet", pa.float64(), nullable=False),
                pa.field("triplet_nonzero", pa.float64(), nullable=False),
                pa.field("ce", pa.float64(), nullable=False),
                pa.field("ce_accuracy", pa.float64(), nullable=False),
                pa.field("aux", pa.string(), nullable=True),  # JSON {name: value} of the model's own losses
                pa.field("lr", pa.float64(), nullable=False),
                pa.field("seconds", pa.float64(), nullable=False),
                pa.field("sequences_per_s", pa.float64(), nullable=False),
            ],
            metadata={"doc": "one row per training iteration"},
        ),
        allowed_values={},
        unique_key=("iteration",),
    )
)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults follow OpenGait's DeepGaitV2 SUSTech1K config (8×8, 10+4 frames)."""

    recogniser: str
    model_options: Mapping[str, object] = field(default_factory=dict)  # width, blocks, embed_dim, ...
    p: int = 8
    k: int = 8
    sample_type: str = "fixed_ordered"
    frames: int = 10
    frames_skip_num: int = 4
    frames_range: tuple[int, int] = (10, 50)
    augment: bool = True
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (20000, 30000, 40000)
    gamma: float = 0.1
    iterations: int = 50000
    triplet_margin: float = TRIPLET_MARGIN
    ce_scale: float = CE_SCALE
    label_smoothing: float = LABEL_SMOOTHING
    triplet_weight: float = 1.0
    ce_weight: float = 1.0
    freeze_mask_branch_at: int | None = 500  # BigGait only: OpenGait freezes its mask branch from here
    save_every: int = 1000
    keep_last: int | None = None  # older checkpoints beyond this many are deleted (None: keep all)
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: leave torch's default)
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"{CONFIG_KEY}.{key}: {why}")

        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for key in ("p", "k", "iterations", "save_every", "frames"):
            if int(getattr(self, key)) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise bad("lr", f"must be > 0, got {self.lr}")
        if list(self.milestones) != sorted(self.milestones):
            raise bad("milestones", f"must be increasing, got {list(self.milestones)}")
        if self.keep_last is not None and self.keep_last < 1:
            raise bad("keep_last", f"must be >= 1 or null, got {self.keep_last}")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", f"must be >= 1 or null, got {self.threads}")
        self.sampling()  # validates the sampling keys

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> TrainConfig:
        """Build from a config mapping; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{CONFIG_KEY}: unknown key(s) {unknown}; known: {sorted(known)}")
        if "recogniser" not in values:
            raise ValueError(f"{CONFIG_KEY}.recogniser is required")
        values = dict(values)
        for key in ("milestones", "frames_range"):
            if key in values:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def sampling(self) -> ClipSampling:
        return ClipSampling(self.sample_type, self.frames, self.frames_skip_num, tuple(self.frames_range))  # type: ignore[arg-type]

    def as_plain(self) -> dict[str, object]:
        """JSON-able dict (what the checkpoint's ``extra['config']`` stores)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class TrainResult:
    model: nn.Module
    iteration: int
    checkpoint: Path
    log: Path
    resumed_from: int


# ---------------------------------------------------------------------------------------------
# Helpers


def iteration_rng(seed: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng([seed, iteration])


def _torch_seed(seed: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, 1]).generate_state(1, np.uint64)[0] % (2**63))


def recogniser_modality(name: str) -> str:
    """The input modality of a recogniser, without building it (BigGait's ViT is not small)."""
    from pipeline.recognisers.models import RECOGNISERS, BigGait, DeepGaitV2, SkeletonGait, SkeletonGaitPP

    by_name = {cls.name: cls.modality for cls in (DeepGaitV2, SkeletonGait, SkeletonGaitPP, BigGait)}
    key = str(name).lower()
    if key not in by_name:
        raise ValueError(
            f"{CONFIG_KEY}.recogniser: unknown recogniser {name!r}; choose one of {list(RECOGNISERS)}"
        )
    return by_name[key]


def forward(model: nn.Module, batch: Batch, device: str = "cpu"):
    """Run ``model`` on a batch (RGB models also get the per-frame W/H ``ratios``)."""
    inputs = batch.inputs.to(device)
    if batch.ratios is not None:
        return model(inputs, ratios=batch.ratios.to(device))
    return model(inputs)


def checkpoint_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints"


def checkpoint_name(recogniser: str, iteration: int) -> str:
    return f"{recogniser}-{iteration:05d}.pt"


def list_checkpoints(out: str | Path, recogniser: str) -> list[tuple[int, Path]]:
    """(iteration, path) of the run's checkpoints, oldest first."""
    pattern = re.compile(rf"^{re.escape(recogniser)}-(\d+)\.pt$")
    found = []
    for path in checkpoint_dir(out).glob("*.pt"):
        match = pattern.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out: str | Path, recogniser: str) -> tuple[int, Path] | None:
    found = list_checkpoints(out, recogniser)
    return found[-1] if found else None


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _check_resume(
    config: TrainConfig, extra: Mapping[str, object] | None, labels: list[str], path: Path
) -> None:
    if extra is None or "config" not in extra:
        raise ValueError(f"{path}: checkpoint has no training config in 'extra'; cannot resume from it")
    saved = dict(extra["config"])  # type: ignore[arg-type]
    now = config.as_plain()
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in changed)
        raise ValueError(
            f"{path}: cannot resume with a different {CONFIG_KEY} ({detail}); use a new output folder"
        )
    if list(extra.get("labels", [])) != labels:  # type: ignore[arg-type]
        raise ValueError(f"{path}: the checkpoint was trained on other identities than this dataset's")


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    return [row for row in read_table(path, TRAINING_LOG).to_pylist() if row["iteration"] <= upto]


def _step(
    model: nn.Module,
    dataset: GaitDataset,
    sampler: TripletSampler,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    iteration: int,
) -> dict:
    """One training iteration; returns its log row."""
    start = time.perf_counter()
    rng = iteration_rng(config.seed, iteration)
    torch.manual_seed(_torch_seed(config.seed, iteration))
    augment = None
    if config.augment:
        augment = RGB_DA if dataset.modality == "rgb" else SILHOUETTE_DA
    batch = dataset.batch(sampler.batch(rng), config.sampling(), rng, augment)
    labels = batch.labels.to(config.device)
    output = forward(model, batch, config.device)
    triplet = triplet_loss(output.embed_1, labels, config.triplet_margin)
    ce = cross_entropy_loss(output.logits, labels, config.ce_scale, config.label_smoothing)
    aux = {name: value for name, value in output.aux_losses.items()}
    loss = config.triplet_weight * triplet.loss + config.ce_weight * ce.loss
    for value in aux.values():
        loss = loss + value
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training loss is {float(loss.detach())} at iteration {iteration} ({triplet.info}, {ce.info})"
        )
    lr = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    seconds = time.perf_counter() - start
    return {
        "iteration": iteration,
        "loss": float(loss.detach()),
        "triplet": triplet.info["triplet"],
        "triplet_nonzero": triplet.info["triplet_nonzero"],
        "ce": ce.info["ce"],
        "ce_accuracy": ce.info["ce_accuracy"],
        "aux": json.dumps({k: float(v.detach()) for k, v in aux.items()}) if aux else None,
        "lr": float(lr),
        "seconds": seconds,
        "sequences_per_s": len(batch.labels) / seconds if seconds > 0 else float("inf"),
    }


def _save(
    out: Path,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    iteration: int,
    labels: list[str],
    rows: list[dict],
) -> Path:
    from pipeline.recognisers.checkpoints import save_checkpoint

    extra = {"config": config.as_plain(), "labels": labels, "trainer": "pipeline.recognisers.train"}
    path = save_checkpoint(
        checkpoint_dir(out) / checkpoint_name(config.recogniser, iteration),
        model,
        optimizer,
        scheduler,
        iteration,
        extra,
    )
    write_table(rows, out / "train_log.parquet", TRAINING_LOG)
    if config.keep_last is not None:
        for _, old in list_checkpoints(out, config.recogniser)[: -config.keep_last]:
            old.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# The loop


def train(
    config: TrainConfig,
    dataset: GaitDataset,
    out: str | Path,
    *,
    build: Callable[..., nn.Module] | None = None,
) -> TrainResult:
    """Train ``config.recogniser`` on ``dataset`` into ``out`` (resuming from its latest checkpoint).

    ``build(name, class_num=..., **model_options)`` makes the model (default
    :func:`~pipeline.recognisers.models.build_recogniser`); it must follow the recogniser interface
    (``modality``, ``forward`` → ``RecogniserOutput``).
    """
    from pipeline.recognisers.checkpoints import load_opengait_checkpoint
    from pipeline.recognisers.models import build_recogniser

    build = build or build_recogniser
    out = Path(out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if len(dataset.labels) < 2 or len(dataset) < 2:
        from collections import Counter

        from pipeline.recognisers.checkpoints import RecogniserUnavailable

        reasons = Counter(dataset.skipped.values()).most_common(1)
        if len(dataset) == 0 and reasons:
            raise RecogniserUnavailable(
                f"no usable '{dataset.modality}' training sequence ({len(dataset.skipped)} skipped; most common"
                f" reason: {reasons[0][0]})"
            )
        why = f"; most common skip reason: {reasons[0][0]}" if reasons else ""
        raise RecogniserUnavailable(
            f"training needs at least 2 identities (the triplet loss needs negatives); the dataset has "
            f"{len(dataset.labels)} identities in {len(dataset)} usable sequences ({len(dataset.skipped)} skipped){why}; "
            "a dataset without a train split is scored with another dataset's recognisers "
            "(recognisers.train_on: {this: other}) or a checkpoint (recognisers.settings.<name>.checkpoint)"
        )
    torch.manual_seed(config.seed)
    model = build(config.recogniser, class_num=len(dataset.labels), **dict(config.model_options))
    if model.modality != dataset.modality:
        raise ValueError(
            f"{config.recogniser} reads '{model.modality}' but the dataset holds '{dataset.modality}'"
        )
    model.to(config.device)
    optimizer = build_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    start, rows = 0, []
    latest = latest_checkpoint(out, config.recogniser)
    if latest is not None:
        start, path = latest
        info = load_opengait_checkpoint(model, path, strict=True)
        _check_resume(config, info.extra, dataset.labels, path)
        if info.optimizer is None or info.scheduler is None:
            raise ValueError(f"{path}: checkpoint lacks the optimizer or scheduler state needed to resume")
        optimizer.load_state_dict(dict(info.optimizer))
        scheduler.load_state_dict(dict(info.scheduler))
        rows = _read_log(out / "train_log.parquet", start)
        log.info("resuming %s from %s (iteration %d)", config.recogniser, path, start)
    checkpoint = latest[1] if latest is not None else None
    sampler = TripletSampler(dataset.label_of.tolist(), config.p, config.k)
    model.train()
    freeze = getattr(model, "freeze_mask_branch", None)
    from tqdm import tqdm

    bar = tqdm(total=config.iterations, initial=start, disable=not config.progress, desc=config.recogniser)
    try:
        for iteration in range(start + 1, config.iterations + 1):
            if (
                callable(freeze)
                and config.freeze_mask_branch_at is not None
                and iteration > config.freeze_mask_branch_at
            ):
                freeze()
            row = _step(model, dataset, sampler, config, optimizer, scheduler, iteration)
            rows.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", seq_s=f"{row['sequences_per_s']:.1f}")
            if iteration % config.save_every == 0 or iteration == config.iterations:
                checkpoint = _save(out, config, model, optimizer, scheduler, iteration, dataset.labels, rows)
    finally:
        bar.close()
    if checkpoint is None:  # nothing to do and nothing saved before: save the untrained state
        checkpoint = _save(out, config, model, optimizer, scheduler, start, dataset.labels, rows)
    return TrainResult(model, max(start, config.iterations), checkpoint, out / "train_log.parquet", start)


def run_train_stage(
    *,
    manifest: str | Path,
    perception_root: str | Path,
    out: str | Path,
    config: Mapping[str, object],
    min_frames: int | None = None,
) -> TrainResult:
    """The training job: the manifest's ``split == "train"`` sequences under ``perception_root``."""
    train_config = TrainConfig.from_mapping(config)
    options: dict[str, object] = {"split": "train"}
    if min_frames is not None:
        options["min_frames"] = min_frames
    modality = recogniser_modality(train_config.recogniser)
    dataset = GaitDataset.from_perception(manifest, perception_root, modality, **options)  # type: ignore[arg-type]
    for sid, reason in list(dataset.skipped.items())[:20]:
        log.warning("training set: skipped %s: %s", sid, reason)
    log.info(
        "training set: %d sequences, %d identities, %d skipped",
        len(dataset),
        len(dataset.labels),
        len(dataset.skipped),
    )
    return train(train_config, dataset, out)


__all__ = [
    "TRAINING_LOG",
    "TrainConfig",
    "TrainResult",
    "forward",
    "latest_checkpoint",
    "list_checkpoints",
    "recogniser_modality",
    "run_train_stage",
    "train",
]
