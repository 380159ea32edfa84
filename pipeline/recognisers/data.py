"""Recogniser inputs: sequences from the perception frame stores, OpenGait's clip sampling, P×K batches.

A :class:`GaitDataset` joins the sequence manifest with the per-shard frame stores the perception
stages wrote (``{root}/{stage}/shard-XXXX.npz`` plus the ``stage_status`` table next to it) and keeps,
for every usable sequence, only its valid frames. A sequence is *skipped with a recorded reason*
(``dataset.skipped``) when the manifest or an upstream status row carries an error, when no stage
stored frames for it, when its stores disagree on the frame count, or when it has fewer valid frames
than ``min_frames``.

Inputs per modality (what :mod:`pipeline.recognisers.models` expects), built from uint8 frames only
for the frames a clip uses:

* ``silhouette``: ``sil`` [T, 64, 64] → cut to 64×44, /255 → [s, 1, 64, 44];
* ``skeleton_map``: ``skeleton_map`` [T, 2, 64, 64] (limb, joint) → [s, 2, 64, 44];
* ``silhouette+skeleton_map``: SkeletonGait++'s concatenation [limb, joint, sil] *before* the
  transforms (so augmentation hits all three alike) → [s, 3, 64, 44]; valid = valid in both stores;
* ``rgb``: crops ``rgb`` [T, H, W, 3] → [s, 3, H, W], ``(x − 255·mean) / (255·std)`` with ImageNet
  statistics (OpenGait's ``BaseRgbTransform``), plus ``ratio`` (W/H) [s].

Clip sampling (OpenGait ``CollateFn``): ``fixed_unordered`` (k random frames, with replacement only
when the sequence is shorter), ``fixed_ordered`` (a random contiguous window of k + skip frames, the
sequence tiled when shorter, then k sorted frames drawn inside it without replacement),
``unfixed_unordered`` (k drawn once per batch from a range, then as fixed_unordered) and
``all_ordered`` (every frame in order; above ``frames_all_limit`` a sorted random subset).

Randomness: every batch draws from ``numpy.random.default_rng([seed, iteration])``, so a batch depends
only on the seed and its iteration number — a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.contracts import MANIFEST, FrameStore, read_frame_store, read_table
from pipeline.perception.silhouettes import cut_to_44

SAMPLE_TYPES = ("fixed_unordered", "fixed_ordered", "unfixed_unordered", "all_ordered")
# (stage folder, frame-store field) per modality, in the order the channels are concatenated.
MODALITY_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "silhouette": (("silhouettes", "sil"),),
    "skeleton_map": (("skeleton_maps", "skeleton_map"),),
    "silhouette+skeleton_map": (("skeleton_maps", "skeleton_map"), ("silhouettes", "sil")),
    "rgb": (("crops", "rgb"),),
}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# OpenGait's pretreatment warns below 5 frames; shorter sequences are skipped here.
MIN_FRAMES = 5
FRAMES_ALL_LIMIT = 720


# ---------------------------------------------------------------------------------------------
# Clip sampling


@dataclass(frozen=True)
class ClipSampling:
    """How frames are drawn from a sequence (see the module docstring)."""

    sample_type: str = "fixed_ordered"
    frames: int = 30
    frames_skip_num: int = 0
    frames_range: tuple[int, int] = (10, 50)  # unfixed_unordered: k drawn from [lo, hi]
    frames_all_limit: int = FRAMES_ALL_LIMIT

    def __post_init__(self) -> None:
        if self.sample_type not in SAMPLE_TYPES:
            raise ValueError(f"sample_type must be one of {SAMPLE_TYPES}, got {self.sample_type!r}")
        if self.frames < 1 or self.frames_skip_num < 0 or self.frames_all_limit < 1:
            raise ValueError(
                f"frames ({self.frames}) and frames_all_limit ({self.frames_all_limit}) must be >= 1, "
                f"frames_skip_num ({self.frames_skip_num}) >= 0"
            )
        lo, hi = self.frames_range
        if not 1 <= lo <= hi:
            raise ValueError(f"frames_range must be 1 <= lo <= hi, got {self.frames_range}")

    def batch_frames(self, rng: np.random.Generator) -> int | None:
        """Frames per clip for one batch (None = each sequence keeps all its frames)."""
        if self.sample_type == "all_ordered":
            return None
        if self.sample_type == "unfixed_unordered":
            return int(rng.integers(self.frames_range[0], self.frames_range[1] + 1))
        return self.frames


def sample_clip(
    length: int, sampling: ClipSampling, rng: np.random.Generator, frames: int | None = None
) -> np.ndarray:
    """Frame indices [k] into a sequence of ``length`` frames (``frames`` overrides k for unfixed batches)."""
    if length < 1:
        raise ValueError("cannot sample a clip from an empty sequence")
    k = sampling.frames if frames is None else int(frames)
    kind = sampling.sample_type
    if kind == "all_ordered":
        if length <= sampling.frames_all_limit:
            return np.arange(length)
        return np.sort(rng.choice(length, sampling.frames_all_limit, replace=False))
    if kind in ("fixed_unordered", "unfixed_unordered"):
        return rng.choice(length, k, replace=length < k)
    window = k + sampling.frames_skip_num
    indices = np.arange(length)
    if length < window:
        indices = np.tile(indices, math.ceil(window / length))
    start = int(rng.integers(0, len(indices) - window + 1))
    inside = np.sort(rng.choice(window, k, replace=False))
    return indices[start : start + window][inside]


# ---------------------------------------------------------------------------------------------
# P×K sampling


class TripletSampler:
    """OpenGait's ``TripletSampler``: P identities, K sequences each (with replacement only when short).

    ``labels``: integer identity of every dataset item. A batch lists the K items of the first
    identity, then the next identity's, and so on.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"batch size P×K must be positive, got P={p}, K={k}")
        self.p, self.k = int(p), int(k)
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        if not by_label:
            raise ValueError("TripletSampler: the dataset has no sequences")
        self.identities = sorted(by_label)
        self.items = {label: np.array(v) for label, v in by_label.items()}

    def batch(self, rng: np.random.Generator) -> np.ndarray:
        """Dataset indices [P·K] of one batch."""
        ids = rng.choice(len(self.identities), self.p, replace=len(self.identities) < self.p)
        chosen = []
        for i in ids:
            items = self.items[self.identities[int(i)]]
            chosen.append(rng.choice(items, self.k, replace=len(items) < self.k))
        return np.concatenate(chosen)


# ---------------------------------------------------------------------------------------------
# Augmentation (applied to a whole sequence, the same transform for every frame and channel)


@dataclass(frozen=True)
class Augmentation:
    """OpenGait's silhouette DA (probabilities per sequence): RandomPerspective, cut, HorizontalFlip,
    RandomRotate (±``rotate_degrees``). BigGait's RGB uses only ``flip`` (0.5)."""

    perspective: float = 0.2
    flip: float = 0.2
    rotate: float = 0.2
    rotate_degrees: float = 10.0

    def __post_init__(self) -> None:
        for name in ("perspective", "flip", "rotate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augmentation probability '{name}' must lie in [0, 1], got {value}")


SILHOUETTE_DA = Augmentation()
RGB_DA = Augmentation(perspective=0.0, flip=0.5, rotate=0.0)


def _warp_frames(frames: np.ndarray, matrix: np.ndarray, perspective: bool) -> np.ndarray:
    """Warp every frame of [s, c, h, w] with one 3×3 (perspective) or 2×3 (affine) matrix."""
    s, c, h, w = frames.shape
    out = np.empty_like(frames)
    warp = cv2.warpPerspective if perspective else cv2.warpAffine
    for t in range(s):
        for ch in range(c):
            out[t, ch] = warp(frames[t, ch], matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return out


def random_perspective(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pull the four corners inward within the columns the 64→44 cut removes, then warp back to full size."""
    _, _, h, w = frames.shape
    cut = int(w // 64) * 10
    if cut < 1:
        return frames
    left = rng.integers(0, cut, size=2)  # top-left, bottom-left x
    right = rng.integers(w - cut, w, size=2)  # top-right, bottom-right x
    source = np.float32([[left[0], 0], [right[0], 0], [right[1], h], [left[1], h]])
    canvas = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return _warp_frames(frames, cv2.getPerspectiveTransform(source, canvas), perspective=True)


def random_rotate(frames: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    _, _, h, w = frames.shape
    angle = float(rng.uniform(-degrees, degrees))
    return _warp_frames(frames, cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0), perspective=False)


# ---------------------------------------------------------------------------------------------
# Frame stores


@dataclass(frozen=True)
class SequenceInfo:
    """A usable sequence: manifest identifiers plus where its frames are."""

    sequence_id: str
    subject: str
    condition: str
    view: str
    split: str
    role: str
    attributes: Mapping[str, object]
    shards: tuple[Path, ...]  # one frame store per stage of the modality
    valid: np.ndarray  # [T] bool over the stored frames


class ShardCache:
    """Frame stores opened on demand, at most ``capacity`` kept (least recently used dropped)."""

    def __init__(self, fields: Mapping[Path, Sequence[str]], capacity: int | None) -> None:
        self.fields = {Path(k): list(v) for k, v in fields.items()}
        self.capacity = capacity
        self._open: OrderedDict[Path, FrameStore] = OrderedDict()

    def get(self, path: Path) -> FrameStore:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        store = read_frame_store(path, self.fields[path])
        self._open[path] = store
        if self.capacity is not None and len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return store


def stage_stores(root: str | Path, stage: str) -> list[Path]:
    """Every frame store ``{root}/{stage}/shard-*.npz`` of a source (``root`` = ``results/perception/{source}``)."""
    folder = Path(root) / stage
    stores = sorted(folder.glob("shard-*.npz"))
    if not stores:
        raise FileNotFoundError(
            f"no frame stores {folder}/shard-*.npz (stage '{stage}' has not run for this source)"
        )
    return stores


def _stage_index(
    stores: Sequence[Path], stage: str, field_name: str
) -> tuple[dict[str, Path], dict[str, str]]:
    """(sequence_id → frame store holding it, sequence_id → upstream error) over one stage's stores.

    The error comes from the ``stage_status`` table next to each store (same name, ``.parquet``).
    """
    from pipeline.runner import STAGE_STATUS

    where: dict[str, Path] = {}
    errors: dict[str, str] = {}
    for path in map(Path, stores):
        if not path.is_file():
            raise FileNotFoundError(f"frame store of stage '{stage}' not found: {path}")
        with np.load(path, allow_pickle=False) as data:
            if "sequence_ids" not in data.files:
                raise ValueError(f"{path}: not a frame store (no sequence_ids)")
            ids = [str(sid) for sid in data["sequence_ids"]]
            if ids and (field_name not in data.files or "valid" not in data.files):
                raise ValueError(
                    f"{path}: frame store of stage '{stage}' lacks field '{field_name}' or 'valid'"
                )
        where.update(dict.fromkeys(ids, path))
        status = path.with_suffix(".parquet")
        if status.is_file():
            for row in read_table(status, STAGE_STATUS).to_pylist():
                if row["error"] is not None:
                    errors[row["sequence_id"]] = f"{stage}: {row['error']}"
    return where, errors


def _rows(manifest: str | Path | Sequence[Mapping[str, object]]) -> list[Mapping[str, object]]:
    if isinstance(manifest, (str, Path)):
        return read_table(manifest, MANIFEST).to_pylist()
    return list(manifest)


class GaitDataset:
    """The usable sequences of one source for one recogniser modality (see the module docstring).

    ``items``: usable sequences; ``skipped``: sequence_id → reason; ``labels``: the sorted identities,
    ``label_of[i]``: class index of item i. With ``preload`` the valid frames of every item are read
    once into memory; otherwise shards are opened on demand (``cache_shards`` kept open).
    """

    def __init__(
        self,
        items: list[SequenceInfo],
        skipped: dict[str, str],
        modality: str,
        *,
        preload: bool = True,
        cache_shards: int | None = 4,
        labels: Sequence[str] | None = None,
    ) -> None:
        if modality not in MODALITY_STAGES:
            raise ValueError(f"unknown modality {modality!r}; known: {sorted(MODALITY_STAGES)}")
        self.modality = modality
        self.items = items
        self.skipped = skipped
        self.labels = list(labels) if labels is not None else sorted({it.subject for it in items})
        index = {s: i for i, s in enumerate(self.labels)}
        self.label_of = np.array([index.get(it.subject, -1) for it in items], dtype=np.int64)
        fields = {}
        for it in items:
            for path, (_, field_name) in zip(it.shards, MODALITY_STAGES[modality], strict=True):
                fields.setdefault(path, {"valid"}).update(
                    {field_name, "ratio"} if modality == "rgb" else {field_name}
                )
        # While preloading, items are visited shard by shard: one open store per stage is enough.
        capacity = len(MODALITY_STAGES[modality]) if preload else cache_shards
        self._cache = ShardCache({p: sorted(f) for p, f in fields.items()}, capacity)
        self._frames: list[tuple[np.ndarray, np.ndarray | None]] | None = None
        if preload:
            self._frames = self._preload()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_perception(
        cls,
        manifest: str | Path | Sequence[Mapping[str, object]],
        root: str | Path,
        modality: str,
        **options: object,
    ) -> GaitDataset:
        """Sequences of ``manifest`` (path or rows) with every shard of ``root`` = ``results/perception/{source}``.

        ``options`` as for :meth:`from_stores`.
        """
        if modality not in MODALITY_STAGES:
            raise ValueError(f"unknown modality {modality!r}; known: {sorted(MODALITY_STAGES)}")
        stores = {stage: stage_stores(root, stage) for stage, _ in MODALITY_STAGES[modality]}
        return cls.from_stores(manifest, stores, modality, **options)  # type: ignore[arg-type]

    @classmethod
    def from_stores(
        cls,
        manifest: str | Path | Sequence[Mapping[str, object]],
        stores: Mapping[str, Sequence[str | Path]],
        modality: str,
        *,
        split: str | None = None,
        roles: Iterable[str] | None = None,
        min_frames: int = MIN_FRAMES,
        preload: bool = True,
        cache_shards: int | None = 4,
        labels: Sequence[str] | None = None,
    ) -> GaitDataset:
        """Sequences of ``manifest`` found in ``stores`` (stage name → its frame-store paths).

        ``split``/``roles`` restrict the rows (e.g. ``split="train"``); ``labels`` fixes the class list
        (a model trained on other identities); otherwise it is the sorted subjects of the usable items.
        """
        if modality not in MODALITY_STAGES:
            raise ValueError(f"unknown modality {modality!r}; known: {sorted(MODALITY_STAGES)}")
        if min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {min_frames}")
        stages = MODALITY_STAGES[modality]
        missing = [stage for stage, _ in stages if stage not in stores]
        if missing:
            raise ValueError(f"modality '{modality}' needs the frame stores of stage(s) {missing}")
        indexes = [
            _stage_index([Path(p) for p in stores[stage]], stage, field_name) for stage, field_name in stages
        ]
        role_set = set(roles) if roles is not None else None
        items: list[SequenceInfo] = []
        skipped: dict[str, str] = {}
        valid_cache: dict[Path, FrameStore] = {}
        for row in _rows(manifest):
            if (split is not None and row["split"] != split) or (
                role_set is not None and row["role"] not in role_set
            ):
                continue
            sid = str(row["sequence_id"])
            reason = _skip_reason(row, stages, indexes)
            valid = None
            if reason is None:
                valid, reason = _joint_valid(
                    sid, [where[sid] for where, _ in indexes], valid_cache, min_frames
                )
            if reason is not None:
                skipped[sid] = reason
                continue
            items.append(_info(row, tuple(where[sid] for where, _ in indexes), valid))
        return cls(items, skipped, modality, preload=preload, cache_shards=cache_shards, labels=labels)

    # -- frames ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def _preload(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        frames: list[tuple[np.ndarray, np.ndarray | None]] = [None] * len(self.items)  # type: ignore[list-item]
        order = sorted(range(len(self.items)), key=lambda i: tuple(str(p) for p in self.items[i].shards))
        for i in order:  # shard by shard, so each store is read once
            frames[i] = self._read(i)
        self._cache = ShardCache(self._cache.fields, 0)  # drop the last open stores: no longer needed
        return frames

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Valid uint8 frames of item ``i`` in the model's channel layout, and RGB ratios."""
        item = self.items[i]
        arrays, ratios = [], None
        for path, (_, field_name) in zip(item.shards, MODALITY_STAGES[self.modality], strict=True):
            store = self._cache.get(path)
            data = store.get(item.sequence_id, field_name)[item.valid]
            if self.modality == "rgb":
                ratios = store.get(item.sequence_id, "ratio")[item.valid].astype(np.float32)
                data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))  # [T, 3, H, W]
            elif data.ndim == 3:
                data = data[:, None]  # silhouettes [T, 64, 64] → [T, 1, 64, 64]
            arrays.append(np.asarray(data, dtype=np.uint8))
        frames = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)
        return frames, ratios

    def frames(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(uint8 [T, c, h, w] valid frames, W/H ratios [T] for RGB else None) of item ``i``."""
        if self._frames is not None:
            return self._frames[i]
        return self._read(i)

    def clip(
        self,
        i: int,
        indices: np.ndarray,
        *,
        augment: Augmentation | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Model input of item ``i`` for frame ``indices``: (float32 [s, c, h, w], ratios [s] or None)."""
        frames, ratios = self.frames(i)
        clip = frames[indices]
        clip_ratios = ratios[indices] if ratios is not None else None
        if augment is not None and rng is None:
            raise ValueError("clip: augmentation needs an rng")
        if self.modality == "rgb":
            if augment is not None and rng.random() < augment.flip:  # type: ignore[union-attr]
                clip = clip[..., ::-1]
            normalised = (clip.astype(np.float32) - 255.0 * IMAGENET_MEAN[:, None, None]) / (
                255.0 * IMAGENET_STD[:, None, None]
            )
            return np.ascontiguousarray(normalised, dtype=np.float32), clip_ratios
        if augment is not None and rng.random() < augment.perspective:  # type: ignore[union-attr]
            clip = random_perspective(clip, rng)  # type: ignore[arg-type]
        out = cut_to_44(clip)
        if augment is not None and rng.random() < augment.flip:  # type: ignore[union-attr]
            out = out[..., ::-1]
        if augment is not None and rng.random() < augment.rotate:  # type: ignore[union-attr]
            out = random_rotate(np.ascontiguousarray(out), rng, augment.rotate_degrees)  # type: ignore[arg-type]
        return np.ascontiguousarray(out, dtype=np.float32), None

    # -- batches -----------------------------------------------------------------------------

    def batch(
        self,
        indices: Sequence[int],
        sampling: ClipSampling,
        rng: np.random.Generator,
        augment: Augmentation | None = None,
    ) -> Batch:
        """Stack clips of ``indices`` into a [n, s, c, h, w] batch (all_ordered needs equal lengths: use n = 1)."""
        k = sampling.batch_frames(rng)
        clips, ratios = [], []
        for i in indices:
            length = len(self.frames(int(i))[0])
            clip, r = self.clip(int(i), sample_clip(length, sampling, rng, k), augment=augment, rng=rng)
            clips.append(clip)
            ratios.append(r)
        lengths = {len(c) for c in clips}
        if len(lengths) > 1:
            raise ValueError(
                f"clips of different lengths {sorted(lengths)} cannot be stacked (all_ordered: one per batch)"
            )
        return Batch(
            inputs=torch.from_numpy(np.stack(clips)),
            labels=torch.from_numpy(self.label_of[np.asarray(indices, dtype=np.int64)]),
            ratios=torch.from_numpy(np.stack(ratios)) if self.modality == "rgb" else None,
            sequence_ids=[self.items[int(i)].sequence_id for i in indices],
        )


@dataclass
class Batch:
    inputs: torch.Tensor  # [n, s, c, h, w] float32
    labels: torch.Tensor  # [n] int64 class indices
    ratios: torch.Tensor | None  # [n, s] W/H (RGB only)
    sequence_ids: list[str] = field(default_factory=list)


def _skip_reason(
    row: Mapping[str, object],
    stages: Sequence[tuple[str, str]],
    indexes: Sequence[tuple[dict[str, Path], dict[str, str]]],
) -> str | None:
    sid = str(row["sequence_id"])
    if row.get("error"):
        return f"manifest: {row['error']}"
    for (stage, _), (where, errors) in zip(stages, indexes, strict=True):
        if sid in errors:
            return errors[sid]
        if sid not in where:
            return f"{stage}: no frames stored for this sequence"
    return None


def _joint_valid(
    sid: str, paths: Sequence[Path], cache: dict[Path, FrameStore], min_frames: int
) -> tuple[np.ndarray | None, str | None]:
    """The frames valid in every store of the modality, or why the sequence cannot be used."""
    valids = []
    for path in paths:
        if path not in cache:
            cache[path] = read_frame_store(path, ["valid"])
        valids.append(np.asarray(cache[path].get(sid, "valid"), dtype=bool))
    if len({len(v) for v in valids}) > 1:
        return (
            None,
            f"stores disagree on the frame count: {[len(v) for v in valids]} ({[p.parent.name for p in paths]})",
        )
    valid = np.logical_and.reduce(valids)
    if int(valid.sum()) < min_frames:
        return None, f"too short: {int(valid.sum())} valid frames (< {min_frames})"
    return valid, None


def _info(row: Mapping[str, object], shards: tuple[Path, ...], valid: np.ndarray) -> SequenceInfo:
    text = row.get("attributes")
    return SequenceInfo(
        sequence_id=str(row["sequence_id"]),
        subject=str(row["subject"]),
        condition=str(row["condition"]),
        view=str(row["view"]),
        split=str(row["split"]),
        role=str(row["role"]),
        attributes=json.loads(text) if isinstance(text, str) and text else {},
        shards=shards,
        valid=valid,
    )
