"""Stage "pose": one shard of a manifest → COCO-17 keypoints (and, with mediapipe, the same pass's masks).

The backends live in :mod:`.pose_backends` and :mod:`.dwpose`; the shared pose + mask pass and the frame
flags in :mod:`.person`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.perception.person import flag_frames, make_perception, perceive, perceive_checked
from pipeline.perception.segmentation import mask_fields

log = logging.getLogger(__name__)


def run_pose_stage(
    rows: list[dict],
    *,
    backend: str,
    store: str,
    status: str,
    min_valid_frames: int,
    keep_masks: bool = False,
    mediapipe: Mapping[str, Any] | None = None,
    dwpose: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> list[dict]:
    """Estimate COCO-17 keypoints for every row; with ``keep_masks`` (mediapipe only) the same model
    pass also stores the segmentation masks, which the masks stage's ``from_pose`` backend reuses.
    ``backend="none"`` estimates nothing: every row is skipped with ``reason`` (stages that need pose
    repeat it)."""
    from pipeline.io.sequences import frame_size, groundtruth, load_rgb
    from pipeline.perception.orientation import (
        ROTATION_FIELD,
        groundtruth_rotation,
        points_from_upright,
        upright_size,
    )
    from pipeline.runner import SkipSequence, StageOutput, run_shard

    if backend == "none":
        if keep_masks:
            raise ValueError("pose backend 'none' keeps no masks; use another mask backend than from_pose")
        why = reason or "no pose estimated (pose backend 'none')"

        def skip(row: dict) -> StageOutput:
            raise SkipSequence(why)

        return run_shard(
            stage="pose",
            backend="none",
            rows=rows,
            process=skip,
            store_path=store,
            status_path=status,
            min_valid_frames=min_valid_frames,
        )

    mp_opts = dict(mediapipe or {})
    pose_options: dict[str, Any] = {}
    if backend == "mediapipe":
        pose_options["smoothing"] = "savgol" if mp_opts.get("smoothing", False) else None
    elif backend == "dwpose":
        pose_options["config"] = {"perception": {"dwpose": dict(dwpose or {})}}
    if keep_masks and backend != "mediapipe":
        raise ValueError("masks can only come from the pose pass when the pose backend is mediapipe")
    pose_backend, mask_backend = make_perception(
        backend,
        "mediapipe" if keep_masks else None,
        pose_options=pose_options,
        mask_options={"threshold": float(mp_opts.get("mask_threshold", 0.5))},
        mediapipe_options={"follow": bool(mp_opts.get("follow_main_walker", True))},
    )

    orientation = str(mp_opts.get("orientation", "auto"))
    identity_switch = str(mp_opts.get("identity_switch", "keep_longest"))

    def process(row: dict) -> StageOutput:
        inputs: dict[str, Any] = {}
        frames = None
        if backend in ("mediapipe", "dwpose"):
            frames = load_rgb(row)
            # Image backends: sideways frames are perceived upright, identity switches split (see person.py).
            checked = perceive_checked(
                frames, pose_backend, mask_backend, orientation=orientation, identity_switch=identity_switch
            )
            result = checked.result
            arrays = dict(result.pose.to_fields("pose"))
            if result.masks is not None:
                arrays.update(mask_fields(result.masks))
            arrays.update(checked.fields)
            if checked.rotation:
                log.info("%s: frames decode turned %d degrees; perceived upright", row["sequence_id"], checked.rotation)
            if checked.continuity is not None and checked.continuity.switches:
                log.info("%s: identity switches (%s); policy %s", row["sequence_id"], checked.continuity.describe(),
                         identity_switch)  # fmt: skip
            return StageOutput(arrays, flag_frames(result).valid, error=checked.error)
        elif backend == "groundtruth":
            # The world's truth is upright; a sideways video's keypoints live in its stored frames.
            rotation = groundtruth_rotation(row)
            keypoints = groundtruth(row, "keypoints2d")
            if rotation:
                upright_hw = upright_size(frame_size(row), rotation)
                keypoints = points_from_upright(keypoints, rotation, upright_hw)
                keypoints[..., 2] = groundtruth(row, "keypoints2d")[..., 2]
            inputs["keypoints2d"] = keypoints
            result = perceive(frames, pose_backend, mask_backend, **inputs)
            arrays = {**result.pose.to_fields("pose"), ROTATION_FIELD: np.int16(rotation)}
            return StageOutput(arrays, flag_frames(result).valid)
        elif backend == "dataset":
            if not row.get("path_pose"):
                raise SkipSequence("the dataset ships no pose for this sequence (path_pose is empty)")
            inputs["path"] = row["path_pose"]
        result = perceive(frames, pose_backend, mask_backend, **inputs)
        arrays = dict(result.pose.to_fields("pose"))
        if result.masks is not None:
            arrays.update(mask_fields(result.masks))
        return StageOutput(arrays, flag_frames(result).valid)

    try:
        return run_shard(
            stage="pose",
            backend=backend,
            rows=rows,
            process=process,
            store_path=store,
            status_path=status,
            min_valid_frames=min_valid_frames,
        )
    finally:
        pose_backend.close()
