"""Shards with sequences of different frame sizes (a landscape and a portrait video) and empty or
all-failed shards, through the per-sequence perception stages."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.contracts import (
    ContractError,
    pack_masks,
    read_frame_store,
    read_table,
    unpack_masks,
    write_frame_store,
)
from pipeline.io.video import write_video
from pipeline.runner import STAGE_STATUS

SIZES = {"p1/nm-01/land": (32, 48), "p2/nm-01/port": (48, 32)}  # (H, W): 1280x720-like and 720x1280-like
FRAMES = 8


def test_frame_store_keeps_each_sequence_shape(tmp_path):
    a = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    b = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = write_frame_store(
        tmp_path / "s.npz", {"a": {"x": a, "k": np.ones((2, 17, 3))}, "b": {"x": b, "k": np.zeros((4, 17, 3))}}
    )
    store = read_frame_store(path)
    assert np.array_equal(store.get("a", "x"), a) and np.array_equal(store.get("b", "x"), b)
    assert store.shape("a", "x") == (2, 3, 5) and store.shape("b", "x") == (4, 5, 3)
    assert store.get("b", "k").shape == (4, 17, 3) and "x" in store.shapes and "k" not in store.shapes
    assert store.frame_count("b") == 4
    # a per-frame field of a different rank cannot be stored
    with pytest.raises(ContractError, match="ranks"):
        write_frame_store(tmp_path / "bad.npz", {"a": {"x": a}, "b": {"x": np.zeros((4, 5))}})


def test_frame_store_rejects_ragged_shapes_that_disagree_with_offsets(tmp_path):
    path = write_frame_store(
        tmp_path / "s.npz", {"a": {"x": np.zeros((2, 3, 5))}, "b": {"x": np.zeros((4, 5, 3))}}
    )
    with np.load(path) as data:
        payload = dict(data)
    payload["shape:x"] = np.array([[3, 3, 5], [4, 5, 3]])
    np.savez(tmp_path / "broken.npz", **payload)
    with pytest.raises(ContractError, match="ragged field 'x'"):
        read_frame_store(tmp_path / "broken.npz")


def _person(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A walker-like box mask moving right and 17 keypoints inside it, for FRAMES frames."""
    masks = np.zeros((FRAMES, height, width), bool)
    keypoints = np.zeros((FRAMES, 17, 3), np.float32)
    box_h, box_w = int(height * 0.7), max(6, int(width * 0.3))
    top = (height - box_h) // 2
    for t in range(FRAMES):
        left = 2 + t % max(1, width - box_w - 4)
        masks[t, top : top + box_h, left : left + box_w] = True
        ys = np.linspace(top + 1, top + box_h - 2, 17)
        xs = left + box_w / 2 + np.sin(np.arange(17) + t) * box_w / 3
        keypoints[t] = np.stack([xs, ys, np.full(17, 2.0)], axis=1)
    return masks, keypoints


@pytest.fixture
def ragged_rows(tmp_path):
    """Two sequences of one shard: a landscape and a portrait video with world-style ground truth."""
    gt, rows = {}, []
    for sid, (height, width) in SIZES.items():
        masks, keypoints = _person(height, width)
        frames = np.full((FRAMES, height, width, 3), 40, np.uint8)
        frames[masks] = (200, 120, 90)
        video = write_video(tmp_path / f"{sid.replace('/', '_')}.mp4", frames, fps=25)
        gt[sid] = {"mask": pack_masks(masks), "keypoints2d": keypoints}
        subject, condition, view = sid.split("/")
        rows.append(
            {
                "dataset": "mixed",
                "subject": subject,
                "condition": condition,
                "view": view,
                "sequence_id": sid,
                "split": "test",
                "role": "probe",
                "path_video": str(video),
                "path_groundtruth": str(tmp_path / "gt.npz"),
                "frame_count": FRAMES,
                "fps": 25.0,
                "width": width,
                "height": height,
                "attributes": None,
                "error": None,
            }
        )
    write_frame_store(tmp_path / "gt.npz", gt)
    return rows


def _stage_paths(tmp_path, stage):
    return str(tmp_path / f"{stage}.npz"), str(tmp_path / f"{stage}.parquet")


def test_mixed_sizes_go_through_every_stage(tmp_path, ragged_rows):
    from pipeline.perception.crops import run_crops_stage
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.perception.silhouettes import run_silhouettes_stage
    from pipeline.perception.skeleton_maps import run_skeleton_maps_stage

    pose, pose_status = _stage_paths(tmp_path, "pose")
    masks, masks_status = _stage_paths(tmp_path, "masks")
    sils, sils_status = _stage_paths(tmp_path, "silhouettes")
    skel, skel_status = _stage_paths(tmp_path, "skeleton_maps")
    crops, crops_status = _stage_paths(tmp_path, "crops")
    statuses = [
        run_pose_stage(ragged_rows, backend="groundtruth", store=pose, status=pose_status, min_valid_frames=4),
        run_masks_stage(ragged_rows, backend="groundtruth", store=masks, status=masks_status, min_valid_frames=4),
        run_silhouettes_stage(
            ragged_rows, masks_store=masks, masks_status=masks_status, store=sils, status=sils_status, min_valid_frames=4
        ),
        run_skeleton_maps_stage(
            ragged_rows, pose_store=pose, pose_status=pose_status, store=skel, status=skel_status, min_valid_frames=4
        ),
        run_crops_stage(
            ragged_rows,
            masks_store=masks,
            masks_status=masks_status,
            store=crops,
            status=crops_status,
            min_valid_frames=4,
            size=(32, 16),
        ),
    ]
    for status in statuses:
        assert [r["error"] for r in status] == [None, None], status
    mask_store = read_frame_store(masks)
    assert "mask" in mask_store.shapes  # stored ragged, one file for the shard
    for sid, (height, width) in SIZES.items():
        expected, _ = _person(height, width)
        assert mask_store.shape(sid, "mask") == (FRAMES, height, (width + 7) // 8)
        assert tuple(mask_store.get(sid, "seq:mask_size")) == (height, width)
        assert np.array_equal(unpack_masks(mask_store.get(sid, "mask"), width), expected)
        assert read_frame_store(sils).get(sid, "sil").shape == (FRAMES, 64, 64)
        assert read_frame_store(sils).get(sid, "valid").all()
        assert read_frame_store(skel).get(sid, "skeleton_map").shape == (FRAMES, 2, 64, 64)
        assert read_frame_store(crops).get(sid, "rgb").shape == (FRAMES, 32, 16, 3)
        assert read_frame_store(pose).get(sid, "pose_keypoints").shape == (FRAMES, 17, 3)


def test_mediapipe_pose_with_masks_stores_mixed_sizes(tmp_path, ragged_rows):
    """The crash of issue 12 item 3: mediapipe with keep_masks on a landscape and a portrait video."""
    pytest.importorskip("mediapipe")
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage

    pose, pose_status = _stage_paths(tmp_path, "pose")
    masks, masks_status = _stage_paths(tmp_path, "masks")
    rows = run_pose_stage(
        ragged_rows, backend="mediapipe", keep_masks=True, store=pose, status=pose_status, min_valid_frames=1
    )
    assert [r["frame_count"] for r in rows] == [FRAMES, FRAMES]
    assert all(r["error"] is None or "valid frames" in r["error"] for r in rows), rows
    store = read_frame_store(pose)
    for sid, (height, width) in SIZES.items():
        assert store.shape(sid, "mask") == (FRAMES, height, (width + 7) // 8)
    run_masks_stage(
        ragged_rows,
        backend="from_pose",
        store=masks,
        status=masks_status,
        min_valid_frames=1,
        pose_store=pose,
        pose_status=pose_status,
    )
    # mediapipe finds no person on these plain boxes: the masks stage repeats pose's reason per sequence
    back = read_frame_store(masks)
    for status, sid in zip(read_table(masks_status, STAGE_STATUS).to_pylist(), SIZES, strict=True):
        if status["error"] is None:
            height, width = SIZES[sid]
            assert back.shape(sid, "mask") == (FRAMES, height, (width + 7) // 8)
        else:
            assert status["error"].startswith("skipped (pose: only 0 valid frames"), status


@pytest.mark.parametrize("case", ["empty", "all_failed"])
def test_empty_and_all_failed_shards_flow_through_every_stage(tmp_path, ragged_rows, case):
    """An empty shard writes empty outputs; a shard whose sequences all fail passes their reasons on."""
    from pipeline.perception.crops import run_crops_stage
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.perception.silhouettes import run_silhouettes_stage
    from pipeline.perception.skeleton_maps import run_skeleton_maps_stage

    rows = [] if case == "empty" else [{**r, "path_video": str(tmp_path / "missing.mp4")} for r in ragged_rows]
    pose, pose_status = _stage_paths(tmp_path, "pose")
    masks, masks_status = _stage_paths(tmp_path, "masks")
    sils, sils_status = _stage_paths(tmp_path, "silhouettes")
    skel, skel_status = _stage_paths(tmp_path, "skeleton_maps")
    crops, crops_status = _stage_paths(tmp_path, "crops")
    run_pose_stage(rows, backend="mediapipe", keep_masks=True, store=pose, status=pose_status, min_valid_frames=1)
    run_masks_stage(
        rows, backend="from_pose", store=masks, status=masks_status, min_valid_frames=1,
        pose_store=pose, pose_status=pose_status,
    )  # fmt: skip
    run_silhouettes_stage(
        rows, masks_store=masks, masks_status=masks_status, store=sils, status=sils_status, min_valid_frames=1
    )
    run_skeleton_maps_stage(
        rows, pose_store=pose, pose_status=pose_status, store=skel, status=skel_status, min_valid_frames=1
    )
    run_crops_stage(
        rows, masks_store=masks, masks_status=masks_status, store=crops, status=crops_status, min_valid_frames=1
    )
    for stage in ("pose", "masks", "silhouettes", "skeleton_maps", "crops"):
        status = read_table(tmp_path / f"{stage}.parquet", STAGE_STATUS).to_pylist()
        assert len(status) == len(rows)
        assert read_frame_store(tmp_path / f"{stage}.npz").sequence_ids == []
        for r in status:
            assert r["error"], r
            if stage != "pose":  # the root reason is repeated, never "holds no masks"
                assert r["error"].startswith("skipped (pose: ") and "holds no masks" not in r["error"]


def test_from_pose_without_masks_names_the_pose_backend(tmp_path, ragged_rows):
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage

    pose, pose_status = _stage_paths(tmp_path, "pose")
    masks, masks_status = _stage_paths(tmp_path, "masks")
    run_pose_stage(ragged_rows, backend="groundtruth", store=pose, status=pose_status, min_valid_frames=1)
    with pytest.raises(ValueError, match="backend groundtruth without keep_masks"):
        run_masks_stage(
            ragged_rows, backend="from_pose", store=masks, status=masks_status, min_valid_frames=1,
            pose_store=pose, pose_status=pose_status,
        )  # fmt: skip
