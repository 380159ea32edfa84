"""Person segmentation backends behind one interface, and how masks are stored.

Backends (:func:`make_segmentation_backend`) return a :class:`MaskResult` (``masks`` [T, H, W] bool,
``present`` [T] bool):

``mediapipe``
    The BlazePose graph's segmentation output, thresholded at ``threshold`` (default 0.5), for the
    followed main walker only (see :class:`pipeline.perception.pose_backends.MediapipePerception`).
``groundtruth``
    The synthetic world's stored bit-packed masks: ``segment(frames, mask=packed)``.
``from_video``
    The video *is* a person mask (a generated silhouette video: white person on black, GaitCrafter):
    a pixel belongs to the person when its mean over the colour channels is ≥ ``threshold`` · 255.

Masks are stored in frame stores bit-packed along the width (:func:`mask_fields` /
:func:`masks_from_store`). The pass that shares one mediapipe graph between pose and masks is in
:mod:`pipeline.perception.person`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.contracts import FrameStore, pack_masks, unpack_masks
from pipeline.perception.pose_backends import MediapipeOutput, MediapipePerception, check_frames


@dataclass
class MaskResult:
    """Person masks [T, H, W] bool and whether a person is present in each frame [T] bool."""

    masks: np.ndarray
    present: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        self.present = np.asarray(self.present, dtype=bool)
        if self.masks.ndim != 3 or self.present.shape != (len(self.masks),):
            raise ValueError(
                f"masks must be [T, H, W] with present [T], got {self.masks.shape}, {self.present.shape}"
            )

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> MaskResult:
        """Present = the mask has at least one pixel."""
        masks = np.asarray(masks, dtype=bool)
        return cls(masks, masks.reshape(len(masks), -1).any(axis=1))

    def pixel_counts(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).sum(axis=1)


@runtime_checkable
class SegmentationBackend(Protocol):
    """``segment(frames [T, H, W, 3] uint8 RGB, **inputs) -> MaskResult``; ``close()`` frees models."""

    name: str

    def segment(self, frames: np.ndarray | None, **inputs: Any) -> MaskResult: ...

    def close(self) -> None: ...


class MediapipeSegmentationBackend:
    """BlazePose segmentation of the followed walker; ``threshold`` on the mask probability.

    ``close()`` closes the (possibly shared) graph; closing is idempotent, so closing both backends of
    :func:`make_perception` is safe.
    """

    name = "mediapipe"

    def __init__(
        self, perception: MediapipePerception | None = None, *, threshold: float = 0.5, **options: Any
    ):
        if perception is None:
            perception = MediapipePerception(segmentation=True, mask_threshold=threshold, **options)
        elif not perception.segmentation:
            raise ValueError("the shared MediapipePerception was built without segmentation=True")
        else:
            perception.mask_threshold = float(threshold)
        self.perception = perception

    def segment(self, frames: np.ndarray | None, **inputs: Any) -> MaskResult:
        if frames is None:
            raise ValueError("the mediapipe segmentation backend needs frames")
        return self.from_output(self.perception.process(frames))

    def from_output(self, output: MediapipeOutput) -> MaskResult:
        """The mask part of a shared pass; present = walker detected and mask not empty."""
        if output.masks is None:
            raise ValueError("this pass ran without segmentation")
        masks = output.masks
        return MaskResult(masks, output.pose.detected & masks.reshape(len(masks), -1).any(axis=1))

    def close(self) -> None:
        self.perception.close()


class GroundTruthSegmentationBackend:
    """The world's stored masks, bit-packed [T, H, ceil(W/8)] (``mask=``), unpacked to ``width``."""

    name = "groundtruth"

    def segment(self, frames: np.ndarray | None, **inputs: Any) -> MaskResult:
        packed = inputs.get("mask")
        if packed is None:
            raise ValueError("the groundtruth segmentation backend needs mask=<bit-packed [T, H, W/8]>")
        width = inputs.get("width") or (check_frames(frames).shape[2] if frames is not None else None)
        if width is None:
            raise ValueError("the groundtruth segmentation backend needs frames or width= to unpack masks")
        masks = unpack_masks(np.asarray(packed, dtype=np.uint8), int(width))
        if frames is not None and masks.shape[:2] != (len(frames), frames.shape[1]):
            raise ValueError(f"masks {masks.shape} do not match frames {frames.shape}")
        return MaskResult.from_masks(masks)

    def close(self) -> None:
        pass


class VideoSegmentationBackend:
    """Masks read off a silhouette video: mean over channels ≥ ``threshold`` · 255 (default 0.5)."""

    name = "from_video"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"the from_video mask threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def segment(self, frames: np.ndarray | None, **inputs: Any) -> MaskResult:
        if frames is None:
            raise ValueError("the from_video segmentation backend needs frames")
        frames = check_frames(frames)
        return MaskResult.from_masks(frames.mean(axis=3) >= self.threshold * 255.0)

    def close(self) -> None:
        pass


SEGMENTATION_BACKENDS: dict[str, Callable[..., SegmentationBackend]] = {
    "mediapipe": MediapipeSegmentationBackend,
    "groundtruth": GroundTruthSegmentationBackend,
    "from_video": VideoSegmentationBackend,
}


def make_segmentation_backend(name: str, **options: Any) -> SegmentationBackend:
    """Build a segmentation backend by name (``mediapipe``: threshold=, MediapipePerception options)."""
    if name not in SEGMENTATION_BACKENDS:
        raise ValueError(
            f"unknown segmentation backend '{name}'; choose one of {sorted(SEGMENTATION_BACKENDS)}"
        )
    return SEGMENTATION_BACKENDS[name](**options)


# ---------------------------------------------------------------------------------------------
# Storage


def mask_fields(result: MaskResult, prefix: str = "mask") -> dict[str, np.ndarray]:
    """Frame-store fields: ``{prefix}`` bit-packed [T, H, ceil(W/8)], ``{prefix}_present`` [T] and
    ``seq:{prefix}_size`` (H, W) of the unpacked masks (sequences of one shard may differ in size)."""
    size = np.asarray(result.masks.shape[1:3], dtype=np.int32)
    return {prefix: pack_masks(result.masks), f"{prefix}_present": result.present, f"seq:{prefix}_size": size}


def mask_width(store: FrameStore, sequence_id: str, row: dict | None = None, prefix: str = "mask") -> int:
    """Width of one sequence's stored masks: the store's ``seq:{prefix}_size`` where it was written,
    else the manifest row's frame width (stores written before sizes were stored, the world's GT)."""
    key = f"seq:{prefix}_size"
    if key in store.arrays:
        return int(store.get(sequence_id, key)[1])
    if row is None:
        raise ValueError(f"the frame store has no {key} for '{sequence_id}' and no manifest row was given")
    from pipeline.io.sequences import frame_size

    return frame_size(row)[1]


def masks_from_store(
    store: FrameStore, sequence_id: str, width: int | None = None, prefix: str = "mask"
) -> MaskResult:
    """Inverse of :func:`mask_fields` for one sequence of a frame store (``width`` = frame width; by
    default the size stored with the masks)."""
    if width is None:
        width = mask_width(store, sequence_id, prefix=prefix)
    masks = unpack_masks(store.get(sequence_id, prefix), width)
    present_field = f"{prefix}_present"
    if present_field in store.arrays:
        return MaskResult(masks, store.get(sequence_id, present_field))
    return MaskResult.from_masks(masks)  # e.g. the world's ground truth, which has no present flag
