"""Stage "masks": person masks of one shard (``from_pose`` reuses the pose stage's mediapipe pass,
``groundtruth`` reads the world's, ``mediapipe`` segments on its own, ``from_video`` thresholds a
silhouette video). The backends live in :mod:`.segmentation`, the frame flags in :mod:`.person`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.contracts import unpack_masks
from pipeline.perception.orientation import (
    ROTATION_FIELD,
    groundtruth_rotation,
    masks_from_upright,
    stored_rotation,
    upright_size,
)
from pipeline.perception.person import flag_frames
from pipeline.perception.segmentation import (
    MaskResult,
    make_segmentation_backend,
    mask_fields,
    masks_from_store,
)


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
            # The world's truth is upright; a sideways video's masks live in its stored frames.
            rotation = groundtruth_rotation(row)
            upright = unpack_masks(groundtruth(row, "mask"), upright_size(frame_size(row), rotation)[1])
            result = MaskResult.from_masks(masks_from_upright(upright, rotation) if rotation else upright)
            arrays = {**mask_fields(result), ROTATION_FIELD: np.int16(rotation)}
            return StageOutput(arrays, flag_frames(result).valid)
        else:
            result = segmenter.segment(load_rgb(row))
        arrays = mask_fields(result)
        if poses is not None and ROTATION_FIELD in poses.arrays:  # the silhouettes turn them upright
            arrays[ROTATION_FIELD] = np.int16(stored_rotation(poses, row["sequence_id"]))
        return StageOutput(arrays, flag_frames(result).valid)

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
