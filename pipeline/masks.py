"""Person segmentation backends, the combined pose + mask perception pass, and frame quality flags.

Backends (:func:`make_segmentation_backend`) return a :class:`MaskResult` (``masks`` [T, H, W] bool,
``present`` [T] bool):

``mediapipe``
    The BlazePose graph's segmentation output, thresholded at ``threshold`` (default 0.5), for the
    followed main walker only (see :class:`pipeline.pose.MediapipePerception`).
``groundtruth``
    The synthetic world's stored bit-packed masks: ``segment(frames, mask=packed)``.
``from_video``
    The video *is* a person mask (a generated silhouette video: white person on black, GaitCrafter):
    a pixel belongs to the person when its mean over the colour channels is ≥ ``threshold`` · 255.

:func:`make_perception` builds a pose and a mask backend that share one mediapipe graph when both are
``mediapipe``; :func:`perceive` then runs the model once per clip for both outputs. Masks are stored in
frame stores bit-packed along the width (:func:`mask_fields` / :func:`masks_from_store`).

:func:`flag_frames` marks frames unusable for gait features (no person, too few confident keypoints,
too small a mask) with a reason; :func:`sequence_status` turns the flags into a sequence verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.contracts import FrameStore, pack_masks, unpack_masks
from pipeline.pose import (
    MediapipeOutput,
    MediapipePerception,
    MediapipePoseBackend,
    PoseBackend,
    PoseResult,
    check_frames,
    make_pose_backend,
)


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
# One pass for pose and masks


@dataclass
class PerceptionResult:
    """Pose and (optionally) masks of one clip."""

    pose: PoseResult
    masks: MaskResult | None = None


def make_perception(
    pose: str | None = "mediapipe",
    masks: str | None = "mediapipe",
    *,
    pose_options: Mapping[str, Any] | None = None,
    mask_options: Mapping[str, Any] | None = None,
    mediapipe_options: Mapping[str, Any] | None = None,
) -> tuple[PoseBackend | None, SegmentationBackend | None]:
    """Pose and mask backends; when both are ``mediapipe`` they share one graph (one model pass).

    ``mediapipe_options`` go to the shared :class:`MediapipePerception` (``follow``,
    ``follow_options``, ...); ``pose_options`` (e.g. ``smoothing``) and ``mask_options``
    (``threshold``) to the backends.
    """
    pose_options, mask_options = dict(pose_options or {}), dict(mask_options or {})
    if pose == "mediapipe" and masks == "mediapipe":
        threshold = mask_options.pop("threshold", 0.5)
        shared = MediapipePerception(
            segmentation=True, mask_threshold=threshold, **dict(mediapipe_options or {})
        )
        return MediapipePoseBackend(shared, **pose_options), MediapipeSegmentationBackend(
            shared, threshold=threshold
        )
    if pose == "mediapipe":
        pose_options.update(mediapipe_options or {})
    if masks == "mediapipe":
        mask_options.update(mediapipe_options or {})
    pose_backend = make_pose_backend(pose, **pose_options) if pose else None
    mask_backend = make_segmentation_backend(masks, **mask_options) if masks else None
    return pose_backend, mask_backend


def perceive(
    frames: np.ndarray | None,
    pose_backend: PoseBackend | None,
    mask_backend: SegmentationBackend | None = None,
    **inputs: Any,
) -> PerceptionResult:
    """Pose (+ masks) of one clip; one model pass when both backends share a mediapipe graph.

    ``inputs`` reach every backend (``keypoints2d=``, ``mask=``, ``path=`` for the caller-fed ones).
    """
    if pose_backend is None:
        raise ValueError("perceive needs a pose backend")
    shared = getattr(pose_backend, "perception", None)
    if (
        mask_backend is not None
        and shared is not None
        and shared is getattr(mask_backend, "perception", None)
    ):
        output = shared.process(frames)
        return PerceptionResult(pose_backend.from_output(output), mask_backend.from_output(output))
    pose = pose_backend.estimate(frames, **inputs)
    masks = mask_backend.segment(frames, **inputs) if mask_backend is not None else None
    return PerceptionResult(pose, masks)


# ---------------------------------------------------------------------------------------------
# Storage


def mask_fields(result: MaskResult, prefix: str = "mask") -> dict[str, np.ndarray]:
    """Frame-store fields: ``{prefix}`` bit-packed [T, H, ceil(W/8)] and ``{prefix}_present`` [T]."""
    return {prefix: pack_masks(result.masks), f"{prefix}_present": result.present}


def masks_from_store(store: FrameStore, sequence_id: str, width: int, prefix: str = "mask") -> MaskResult:
    """Inverse of :func:`mask_fields` for one sequence of a frame store (``width`` = frame width)."""
    masks = unpack_masks(store.get(sequence_id, prefix), width)
    present_field = f"{prefix}_present"
    if present_field in store.arrays:
        return MaskResult(masks, store.get(sequence_id, present_field))
    return MaskResult.from_masks(masks)  # e.g. the world's ground truth, which has no present flag


# ---------------------------------------------------------------------------------------------
# Frame quality


@dataclass
class FrameFlags:
    """Per-frame usability: ``valid`` [T] bool and ``reasons`` (empty string where valid)."""

    valid: np.ndarray
    reasons: list[str]

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())


def _split(result: PerceptionResult | PoseResult | MaskResult) -> tuple[PoseResult | None, MaskResult | None]:
    if isinstance(result, PerceptionResult):
        return result.pose, result.masks
    if isinstance(result, PoseResult):
        return result, None
    if isinstance(result, MaskResult):
        return None, result
    raise TypeError(f"cannot flag frames of a {type(result).__name__}")


def flag_frames(
    result: PerceptionResult | PoseResult | MaskResult,
    min_keypoints: int = 8,
    min_mask_pixels: int = 200,
    min_confidence: float = 0.3,
) -> FrameFlags:
    """Mark frames usable for gait features; the reason names the first failed check.

    A frame is valid when the person is detected, at least ``min_keypoints`` of the 17 keypoints have
    confidence ≥ ``min_confidence`` (checks skipped without a pose), and the mask has at least
    ``min_mask_pixels`` pixels (skipped without masks).
    """
    pose, masks = _split(result)
    n = len(pose) if pose is not None else len(masks)
    reasons = [""] * n
    if pose is not None:
        confident = (pose.keypoints[..., 2] >= min_confidence).sum(axis=1)
        for t in range(n):
            if not pose.detected[t]:
                reasons[t] = "no person detected"
            elif confident[t] < min_keypoints:
                reasons[t] = (
                    f"{confident[t]} keypoints with confidence >= {min_confidence:g} (< {min_keypoints} required)"
                )
    if masks is not None:
        if len(masks) != n:
            raise ValueError(f"pose has {n} frames but masks have {len(masks)}")
        pixels = masks.pixel_counts()
        for t in range(n):
            if reasons[t]:
                continue
            if not masks.present[t]:
                reasons[t] = "no person in the mask"
            elif pixels[t] < min_mask_pixels:
                reasons[t] = f"mask has {pixels[t]} pixels (< {min_mask_pixels} required)"
    return FrameFlags(np.array([not r for r in reasons], dtype=bool), reasons)


def sequence_status(valid: np.ndarray | FrameFlags, min_valid_frames: int) -> tuple[bool, str | None]:
    """(ok, reason): a sequence needs ``min_valid_frames`` valid frames; reason is None when ok."""
    valid = valid.valid if isinstance(valid, FrameFlags) else np.asarray(valid, dtype=bool)
    n_valid, n = int(valid.sum()), len(valid)
    if n_valid >= min_valid_frames:
        return True, None
    return False, f"only {n_valid} valid frames of {n} (< {min_valid_frames} required)"


__all__ = [
    "FrameFlags",
    "GroundTruthSegmentationBackend",
    "MaskResult",
    "MediapipeSegmentationBackend",
    "PerceptionResult",
    "SegmentationBackend",
    "VideoSegmentationBackend",
    "flag_frames",
    "make_perception",
    "make_segmentation_backend",
    "mask_fields",
    "masks_from_store",
    "perceive",
    "sequence_status",
]


# ---------------------------------------------------------------------------------------------
# The "masks" stage


def run_masks_stage(
    rows: list[dict],
    *,
    backend: str,
    store: str,
    status: str,
    min_valid_frames: int,
    pose_store: str | None = None,
    pose_status: str | None = None,
    threshold: float = 0.5,
    mediapipe: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Person masks for every row: ``from_pose`` reuses the masks of the pose stage's mediapipe pass,
    ``groundtruth`` reads the world's, ``mediapipe`` runs the segmenter on its own, ``from_video``
    thresholds a silhouette video (generated silhouettes)."""
    from pipeline.contracts import read_frame_store
    from pipeline.io.sequences import frame_size, groundtruth, load_rgb
    from pipeline.runner import SkipSequence, StageOutput, run_shard, upstream_errors

    skip: dict[str, str] = {}
    poses = None
    if backend == "from_pose":
        if not pose_store or not pose_status:
            raise ValueError("the from_pose mask backend needs the pose stage's store and status")
        poses = read_frame_store(pose_store)
        if "mask" not in poses.arrays:
            raise ValueError(f"{pose_store} holds no masks: run the pose stage with mediapipe and keep_masks")
        skip = upstream_errors([pose_status])
    segmenter = None
    if backend == "mediapipe":
        segmenter = make_segmentation_backend(
            "mediapipe", threshold=threshold, follow=bool((mediapipe or {}).get("follow_main_walker", True))
        )
    elif backend == "from_video":
        segmenter = make_segmentation_backend("from_video", threshold=threshold)

    def process(row: dict) -> StageOutput:
        if backend == "from_pose":
            if row["sequence_id"] not in poses:
                raise SkipSequence("pose stage stored no masks for this sequence")
            result = masks_from_store(poses, row["sequence_id"], frame_size(row)[1])
        elif backend == "groundtruth":
            result = MaskResult.from_masks(unpack_masks(groundtruth(row, "mask"), frame_size(row)[1]))
        else:
            result = segmenter.segment(load_rgb(row))
        return StageOutput(mask_fields(result), flag_frames(result).valid)

    try:
        return run_shard(
            stage="masks",
            backend=backend,
            rows=rows,
            process=process,
            store_path=store,
            status_path=status,
            min_valid_frames=min_valid_frames,
            skip=skip,
        )
    finally:
        if segmenter is not None:
            segmenter.close()
