"""Silhouette pretreatment that reproduces OpenGait's offline alignment and runtime cut.

OpenGait's silhouette models (DeepGaitV2, GaitBase, SkeletonGait++) were trained on silhouettes that
went through one specific pretreatment (``datasets/pretreatment.py``, the GaitSet-style 64×64
alignment) and are cut to 64×44 at load time (``BaseSilCuttingTransform``). A recogniser only
transfers if our silhouettes go through the same steps, so every step here follows the upstream
arithmetic exactly (integer thresholds, ``int()`` truncation, the ``<=``/``>=`` tests of the pad
rule), including its quirks:

* a frame whose summed 0/255 image is ``<= 10000`` (fewer than 40 foreground pixels) is dropped;
* a frame whose median column is column 0 is dropped as well (upstream tests ``if not x_center``,
  which treats 0 like "no centre");
* only the *rows* are cropped to the person; the resize keeps the full frame width.

The output pkl layout (``<root>/<id>/<type>/<view>/<view>.pkl``, a plain pickled uint8 array) is the
one OpenGait's loader reads, so our silhouettes can be fed to OpenGait itself.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.contracts import FrameStore, atomic_path, unpack_masks

log = logging.getLogger(__name__)

# A frame is kept only if the sum of its 0/255 pixels exceeds this (upstream: ``img.sum() <= 10000``).
MIN_FOREGROUND_SUM = 10000
# Pickle protocol of exported pkls: 4 is readable by every Python 3 that OpenGait supports.
PICKLE_PROTOCOL = 4
# Sequences shorter than this only trigger a warning upstream; we log the same warning.
MIN_VALID_FRAMES = 5

DROP_TOO_FEW_PIXELS = "too few foreground pixels"
DROP_NO_CENTRE = "no x-centre (median column is 0 or the resized frame is empty)"
DROP_TOO_NARROW = "resized width would be 0 (frame narrower than height/size)"


@dataclass(frozen=True)
class AlignedSequence:
    """Result of :func:`align_sequence`: the kept frames and why the others were dropped."""

    sils: np.ndarray  # uint8 [T', size, size]
    kept: np.ndarray  # int64 [T'], indices into the input frames
    dropped: dict[int, str] = field(default_factory=dict)  # input frame index → reason


def as_grey_image(mask: np.ndarray) -> np.ndarray:
    """A mask as the uint8 0/255 image OpenGait reads from its PNGs (bool → 0/255, uint8 unchanged)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.dtype.kind not in "ui":
        # A float mask is ambiguous (0..1 probabilities or 0..255 grey); make the caller decide.
        raise ValueError(f"masks must be bool or integer 0..255, got dtype {mask.dtype}")
    if mask.dtype != np.uint8:
        # Integer masks outside 0..255 cannot come from a PNG, so refuse them rather than wrap.
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"mask values must lie in 0..255, got {mask.min()}..{mask.max()}")
        return mask.astype(np.uint8)
    return mask


def _median_column(image: np.ndarray) -> int | None:
    """First column whose cumulative column sum exceeds half the total mass (upstream x-centre)."""
    column_sums = image.sum(axis=0, dtype=np.int64)
    total = int(column_sums.sum())
    # csum > total / 2 (float) equals 2 * csum > total for integers, without any rounding.
    above = np.flatnonzero(2 * np.cumsum(column_sums) > total)
    return int(above[0]) if above.size else None


def align_silhouette(mask: np.ndarray, size: int = 64) -> tuple[np.ndarray | None, str | None]:
    """Align one frame: returns (uint8 [size, size], None) or (None, reason) when it is dropped."""
    image = as_grey_image(mask)
    if int(image.sum(dtype=np.int64)) <= MIN_FOREGROUND_SUM:
        return None, DROP_TOO_FEW_PIXELS
    rows = np.flatnonzero(image.any(axis=1))
    image = image[rows[0] : rows[-1] + 1]
    height, width = image.shape
    # Upstream computes ratio = w / h first and then int(size * ratio); keep that float order.
    new_width = int(size * (width / height))
    if new_width < 1:
        return None, DROP_TOO_NARROW
    image = cv2.resize(image, (new_width, size), interpolation=cv2.INTER_CUBIC)
    centre = _median_column(image)
    if not centre:  # None or 0, exactly like upstream's ``if not x_center``
        return None, DROP_NO_CENTRE
    half = size // 2
    left, right = centre - half, centre + half
    if left <= 0 or right >= image.shape[1]:
        # Upstream pads half a window of zeros on both sides (also when the window would just fit).
        pad = np.zeros((size, half), dtype=np.uint8)
        image = np.concatenate([pad, image, pad], axis=1)
        left, right = left + half, right + half
    return np.ascontiguousarray(image[:, left:right]), None


def align_sequence(masks: np.ndarray, size: int = 64) -> AlignedSequence:
    """Align every frame of ``masks`` [T, H, W]; dropped frames are listed with their reason."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks [T, H, W], got shape {masks.shape}")
    frames: list[np.ndarray] = []
    kept: list[int] = []
    dropped: dict[int, str] = {}
    for index, mask in enumerate(masks):
        aligned, reason = align_silhouette(mask, size)
        if aligned is None:
            dropped[index] = reason or "dropped"
            continue
        frames.append(aligned)
        kept.append(index)
    if len(frames) < MIN_VALID_FRAMES:
        log.warning("only %d of %d frames survived silhouette pretreatment", len(frames), len(masks))
    sils = np.stack(frames) if frames else np.zeros((0, size, size), dtype=np.uint8)
    return AlignedSequence(sils=sils, kept=np.asarray(kept, dtype=np.int64), dropped=dropped)


def pretreat_silhouettes(masks: np.ndarray, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """OpenGait silhouette pretreatment of [T, H, W] masks → (uint8 [T', size, size], kept indices)."""
    result = align_sequence(masks, size)
    return result.sils, result.kept


def pretreat_packed_masks(packed: np.ndarray, width: int, size: int = 64) -> AlignedSequence:
    """Pretreat bit-packed masks as stored in frame stores (:func:`pipeline.contracts.pack_masks`)."""
    return align_sequence(unpack_masks(np.asarray(packed), width), size)


def pretreat_from_store(
    store: FrameStore, sequence_id: str, width: int, *, field_name: str = "mask", size: int = 64
) -> AlignedSequence:
    """Pretreat the packed mask field of one sequence of a frame store (the width is not stored)."""
    return pretreat_packed_masks(store.get(sequence_id, field_name), width, size)


def cut_to_44(sils: np.ndarray, cutting: int | None = None) -> np.ndarray:
    """OpenGait's ``BaseSilCuttingTransform``: drop ``int(W // 64) * 10`` columns per side, divide by 255.

    64 → 44 and 128 → 88 wide. A cut of 0 (W < 64) keeps the full width, as current OpenGait does.
    The division happens in float64 like upstream (``x / 255.0``) before the cast to float32, so the
    values equal what the model receives after its own ``.float()``.
    """
    sils = np.asarray(sils)
    cut = int(sils.shape[-1] // 64) * 10 if cutting is None else int(cutting)
    if cut < 0 or 2 * cut >= sils.shape[-1]:
        raise ValueError(f"cannot cut {cut} columns per side from width {sils.shape[-1]}")
    if cut:
        sils = sils[..., cut:-cut]
    return (sils / 255.0).astype(np.float32)


def _check_component(name: str, value: str) -> str:
    """A path component for the OpenGait layout: non-empty, no separators, not a relative hop."""
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text:
        raise ValueError(f"invalid {name} for an OpenGait path component: {value!r}")
    return text


def opengait_pkl_path(
    root: str | os.PathLike, subject: str, condition: str, view: str, filename: str | None = None
) -> Path:
    """``<root>/<id>/<type>/<view>/<filename>`` with ``filename`` defaulting to ``<view>.pkl``."""
    parts = [
        _check_component(n, v) for n, v in (("subject", subject), ("condition", condition), ("view", view))
    ]
    name = _check_component("filename", filename if filename is not None else f"{parts[2]}.pkl")
    return Path(root, *parts, name)


def export_opengait_pkl(
    array: np.ndarray,
    root: str | os.PathLike,
    subject: str,
    condition: str,
    view: str,
    *,
    filename: str | None = None,
) -> Path:
    """Write ``array`` (first axis = frames) as a plain pickle in OpenGait's dataset layout, atomically.

    OpenGait's loader requires a non-empty first axis (upstream writes no pkl for an empty sequence),
    so an empty array is refused rather than written.
    """
    array = np.ascontiguousarray(array)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"refusing to export an array with no frames (shape {array.shape})")
    final, tmp = atomic_path(opengait_pkl_path(root, subject, condition, view, filename))
    try:
        with tmp.open("wb") as handle:
            pickle.dump(array, handle, protocol=PICKLE_PROTOCOL)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


__all__ = [
    "AlignedSequence",
    "align_sequence",
    "align_silhouette",
    "as_grey_image",
    "cut_to_44",
    "export_opengait_pkl",
    "opengait_pkl_path",
    "pretreat_from_store",
    "pretreat_packed_masks",
    "pretreat_silhouettes",
]


# ---------------------------------------------------------------------------------------------
# The "silhouettes" stage


def run_silhouettes_stage(
    rows: list[dict],
    *,
    masks_store: str,
    masks_status: str,
    store: str,
    status: str,
    min_valid_frames: int,
    export_root: str | None = None,
    shipped: bool = False,
) -> list[dict]:
    """OpenGait-aligned 64×64 silhouettes for every row; dropped frames stay as zeros with valid=False
    (a frame store keeps one row per frame), and optionally an OpenGait pkl tree for OpenGait itself.

    ``shipped``: the masks came from the dataset's own silhouettes (mask backend ``dataset``); those are
    passed through unchanged when already aligned 64×64 (OpenGait, SUSTech1K, CCGR-MINI pkls), grey
    values included, and aligned like masks otherwise. A frame is valid when the masks stage found the
    person in it and it holds more than OpenGait's minimum foreground."""
    from pipeline.contracts import read_frame_store
    from pipeline.perception.orientation import stored_rotation, to_upright
    from pipeline.perception.segmentation import mask_width
    from pipeline.runner import SkipSequence, StageOutput, run_shard, upstream_errors

    masks = read_frame_store(masks_store)

    def passthrough(row: dict) -> StageOutput:
        from pipeline.perception.masks import shipped_silhouettes

        sid = row["sequence_id"]
        sils = shipped_silhouettes(row)
        if len(sils) != masks.frame_count(sid):
            raise ValueError(f"{len(sils)} shipped silhouettes but the masks stage stored {masks.frame_count(sid)}")
        if sils.shape[1:] != (64, 64):
            aligned = align_sequence(sils)
            out = np.zeros((len(sils), 64, 64), np.uint8)
            out[aligned.kept] = aligned.sils
            sils = out
        valid = (sils.reshape(len(sils), -1).sum(axis=1, dtype=np.int64) > MIN_FOREGROUND_SUM) & masks.get(sid, "valid")
        return StageOutput({"sil": np.ascontiguousarray(sils)}, valid)

    def process(row: dict) -> StageOutput:
        sid = row["sequence_id"]
        if sid not in masks:
            raise SkipSequence("masks stage stored nothing for this sequence")
        if shipped:
            output = passthrough(row)
            if export_root and output.valid.any():
                sils = output.arrays["sil"][output.valid]
                export_opengait_pkl(sils, export_root, row["subject"], row["condition"], row["view"])
            return output
        width = mask_width(masks, sid, row)
        rotation = stored_rotation(masks, sid)
        if rotation:  # frames that decode sideways: silhouettes of the upright person
            people = to_upright(unpack_masks(masks.get(sid, "mask"), width), rotation)
            aligned = align_sequence(people)
        else:
            aligned = pretreat_from_store(masks, sid, width)
        total = masks.frame_count(sid)
        sils = np.zeros((total, 64, 64), np.uint8)
        valid = np.zeros(total, bool)
        if len(aligned.kept):
            sils[aligned.kept] = aligned.sils
            valid[aligned.kept] = True
        valid &= masks.get(sid, "valid")
        if export_root and valid.any():
            export_opengait_pkl(sils[valid], export_root, row["subject"], row["condition"], row["view"])
        return StageOutput({"sil": sils}, valid)

    return run_shard(
        stage="silhouettes",
        backend="dataset" if shipped else "opengait",
        rows=rows,
        process=process,
        store_path=store,
        status_path=status,
        min_valid_frames=min_valid_frames,
        skip=upstream_errors([masks_status]),
    )
