"""Stage "masks": person masks of one shard (``from_pose`` reuses the pose stage's mediapipe pass,
``groundtruth`` reads the world's, ``mediapipe`` segments on its own, ``from_video`` thresholds a
silhouette video, ``dataset`` reads the silhouettes a dataset ships). The backends live in
:mod:`.segmentation`, the frame flags in :mod:`.person`.
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
    mask_width,
    masks_from_store,
)

NO_SHIPPED_SILHOUETTES = "the dataset ships no silhouettes for this sequence (path_silhouette is empty)"


def shipped_silhouettes(row: dict) -> np.ndarray:
    """The silhouettes a dataset ships for a row (``path_silhouette``), as uint8 0..255 [T, H, W]
    (OpenGait pkls: already aligned 64×64; 0/1 or boolean arrays are scaled to 0/255)."""
    from pipeline.io.safe_pickle import load_array
    from pipeline.runner import SkipSequence

    path = row.get("path_silhouette")
    if not path:
        raise SkipSequence(NO_SHIPPED_SILHOUETTES)
    array = np.asarray(load_array(path))
    if array.ndim == 4 and 1 in (array.shape[1], array.shape[-1]):
        array = array.reshape(array.shape[0], *[n for n in array.shape[1:] if n != 1][:2])
    if array.ndim != 3 or array.dtype == object:
        raise ValueError(f"{path}: expected silhouettes [T, H, W], found shape {array.shape} ({array.dtype})")
    if array.dtype == bool or (array.size and array.max() <= 1):
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind == "f" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(f"{path}: silhouette values must be 0..255 integers or 0/1, found {array.dtype}")
    return array.astype(np.uint8)


def _masks_of_pose_shard(poses, pose_store: str, pose_status: str) -> dict[str, str]:
    """Upstream errors of the pose shard whose masks ``from_pose`` reuses; a pose store that holds
    sequences but no masks is a set-up error, named with the pose backend that wrote it."""
    from pipeline.contracts import read_table
    from pipeline.runner import STAGE_STATUS, upstream_errors

    if poses.sequence_ids and "mask" not in poses.arrays:
        backends = sorted({r["backend"] for r in read_table(pose_status, STAGE_STATUS).to_pylist()})
        raise ValueError(
            f"{pose_store}: the pose stage ran with backend {'/'.join(backends) or '?'} without keep_masks, so it"
            " stored no masks for the from_pose mask backend (use pose backend mediapipe, or another mask backend)"
        )
    return upstream_errors([pose_status])


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
    thresholds a silhouette video (generated silhouettes), ``dataset`` reads the silhouettes the dataset
    ships (``path_silhouette``; the silhouettes stage then passes them through)."""
    from pipeline.contracts import read_frame_store
    from pipeline.io.sequences import frame_size, groundtruth, load_rgb
    from pipeline.runner import SkipSequence, StageOutput, run_shard

    skip: dict[str, str] = {}
    poses = None
    if backend == "from_pose":
        if not pose_store or not pose_status:
            raise ValueError("the from_pose mask backend needs the pose stage's store and status")
        # An empty pose store (an empty shard, or every sequence failed) skips every row with its
        # pose error; only a store with sequences but no masks is a set-up error.
        poses = read_frame_store(pose_store)
        skip = _masks_of_pose_shard(poses, pose_store, pose_status)
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
            result = masks_from_store(poses, row["sequence_id"], mask_width(poses, row["sequence_id"], row))
        elif backend == "dataset":
            result = MaskResult.from_masks(shipped_silhouettes(row) >= 128)
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
