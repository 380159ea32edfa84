"""The combined perception pass and frame quality: what the pose and masks stages share.

:func:`make_pose_backend` and :func:`make_perception` build a pose and a mask backend by name; the two
share one mediapipe graph when both are ``mediapipe``, and :func:`perceive` then runs the model once per
clip for both outputs. :func:`flag_frames` marks frames unusable for gait features (no person, too few
confident keypoints, too small a mask) with a reason; :func:`sequence_status` turns the flags into a
sequence verdict. This module sits below both stage modules (:mod:`.pose`, :mod:`.masks`), so neither
imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.perception.dwpose import DWPoseBackend
from pipeline.perception.pose_backends import (
    DatasetPoseBackend,
    GroundTruthPoseBackend,
    MediapipePerception,
    MediapipePoseBackend,
    PoseBackend,
    PoseResult,
)
from pipeline.perception.segmentation import (
    MaskResult,
    MediapipeSegmentationBackend,
    SegmentationBackend,
    make_segmentation_backend,
)

# ---------------------------------------------------------------------------------------------
# Registry

POSE_BACKENDS: dict[str, Callable[..., PoseBackend]] = {
    "mediapipe": MediapipePoseBackend,
    "groundtruth": GroundTruthPoseBackend,
    "dataset": DatasetPoseBackend,
    "dwpose": DWPoseBackend,
}


def make_pose_backend(name: str, **options: Any) -> PoseBackend:
    """Build a pose backend by name (see the module docstring for each backend's options)."""
    if name not in POSE_BACKENDS:
        raise ValueError(f"unknown pose backend '{name}'; choose one of {sorted(POSE_BACKENDS)}")
    return POSE_BACKENDS[name](**options)


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


# ---------------------------------------------------------------------------------------------
# Hard real videos: sideways frames and identity switches


@dataclass
class CheckedPerception:
    """A clip's perception after the orientation and identity-continuity checks.

    ``result`` is in the stored frames' pixels; ``rotation`` the degrees the frames were turned from
    upright (undone for perception); ``continuity`` the tracklets; ``fields`` the per-sequence and
    per-frame records for the frame store; ``error`` a reason the sequence must not be used (unsure
    orientation, or a switch under the ``flag`` policy), else None.
    """

    result: PerceptionResult
    rotation: int
    orientation: Any
    continuity: Any
    fields: dict[str, np.ndarray]
    error: str | None = None


def perceive_checked(
    frames: np.ndarray,
    pose_backend: PoseBackend,
    mask_backend: SegmentationBackend | None = None,
    *,
    orientation: str = "auto",
    identity_switch: str = "keep_longest",
    orientation_options: Any = None,
    continuity_options: Any = None,
) -> CheckedPerception:
    """:func:`perceive` for image backends, with two checks for hard real videos.

    ``orientation="auto"``: the clip's rotation is decided from the body axis of the first pass (or
    rotated copies, see :mod:`.orientation`); a sideways clip is perceived again upright and the result
    mapped back into the stored frames. Unsure → ``error``. ``identity_switch`` (``keep_longest``,
    ``flag``, ``off``): tracklets split at identity switches (:mod:`.continuity`); ``keep_longest``
    clears the frames outside the longest tracklet, ``flag`` sets ``error``.
    """
    from pipeline.perception import continuity as cont
    from pipeline.perception import orientation as orient

    frames = np.asarray(frames)
    result = perceive(frames, pose_backend, mask_backend)
    decision, rotation, error = None, 0, None
    if orientation == "auto":
        def estimate(clip: np.ndarray) -> np.ndarray:
            return perceive(clip, pose_backend, None).pose.keypoints

        decision = orient.decide(frames, result.pose.keypoints, estimate, orientation_options)
        if decision.rotation is None:
            error = f"orientation unsure: {decision.reason}"
        elif decision.rotation:
            rotation = decision.rotation
            upright = orient.to_upright(frames, rotation)
            up = perceive(upright, pose_backend, mask_backend)
            keypoints = orient.points_from_upright(up.pose.keypoints, rotation, upright.shape[1:3])
            pose = type(up.pose)(keypoints, up.pose.detected)
            masks = None
            if up.masks is not None:
                masks = MaskResult(orient.masks_from_upright(up.masks.masks, rotation), up.masks.present)
            result = PerceptionResult(pose, masks)
    elif orientation != "off":
        raise ValueError(f"orientation must be 'auto' or 'off', got {orientation!r}")
    fields: dict[str, np.ndarray] = {orient.ROTATION_FIELD: np.int16(rotation)}
    continuity = None
    if identity_switch != "off":
        stored = orient.to_upright(frames, rotation) if rotation else frames
        pose_up = orient.points_to_upright(result.pose.keypoints, rotation, frames.shape[1:3]) if rotation else result.pose.keypoints
        masks_up = None
        if result.masks is not None:
            masks_up = orient.to_upright(result.masks.masks, rotation) if rotation else result.masks.masks
        continuity = cont.find_switches(
            result.pose.detected, cont.boxes_from_keypoints(pose_up), stored, masks_up, continuity_options
        )
        keep = cont.apply_policy(continuity, identity_switch)
        if continuity.switches and identity_switch == "flag" and error is None:
            error = f"identity switch ({continuity.describe()}): the sequence holds more than one person"
        if not keep.all():
            pose = result.pose
            keypoints, detected = pose.keypoints.copy(), pose.detected & keep
            keypoints[~keep] = 0.0
            result = PerceptionResult(type(pose)(keypoints, detected, pose.boxes), result.masks)
            if result.masks is not None:
                masks = result.masks.masks.copy()
                masks[~keep] = False
                result = PerceptionResult(result.pose, MaskResult(masks, result.masks.present & keep))
        fields["identity_tracklet"] = continuity.tracklet
        fields["seq:identity_switches"] = np.int16(len(continuity.switches))
    return CheckedPerception(result, rotation, decision, continuity, fields, error)
