"""Segmentation backends, the shared pose + mask pass, mask storage and frame/sequence flags."""

from __future__ import annotations

import numpy as np
import pytest
from test_pose import BACKGROUND, canvas, draw_person, walking_clip

from pipeline.contracts import pack_masks, read_frame_store, write_frame_store
from pipeline.perception.person import (
    PerceptionResult,
    flag_frames,
    make_perception,
    perceive,
    sequence_status,
)
from pipeline.perception.pose_backends import PoseResult
from pipeline.perception.segmentation import (
    MaskResult,
    make_segmentation_backend,
    mask_fields,
    masks_from_store,
)


def drawn_mask(frames: np.ndarray) -> np.ndarray:
    """Pixels the figure painter touched (the background is one flat grey)."""
    return (frames != BACKGROUND).any(axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def shared():
    pytest.importorskip("mediapipe")
    pose, masks = make_perception("mediapipe", "mediapipe")
    yield pose, masks
    pose.close()
    masks.close()


def test_groundtruth_masks_unpack_and_presence():
    masks = np.zeros((3, 20, 13), bool)
    masks[0, 5:9, 2:11] = True
    masks[2, 0, 12] = True
    result = make_segmentation_backend("groundtruth").segment(None, mask=pack_masks(masks), width=13)
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_array_equal(result.present, [True, False, True])
    frames = np.zeros((3, 20, 13, 3), np.uint8)  # the width can also come from the frames
    np.testing.assert_array_equal(
        make_segmentation_backend("groundtruth").segment(frames, mask=pack_masks(masks)).masks, masks
    )
    with pytest.raises(ValueError, match="mask="):
        make_segmentation_backend("groundtruth").segment(frames)


def test_mediapipe_mask_covers_the_figure(shared):
    _, masks = shared
    clip = walking_clip(5)
    result = masks.segment(clip)
    assert result.masks.shape == clip.shape[:3] and result.present.all()
    truth = drawn_mask(clip)
    assert min(iou(m, t) for m, t in zip(result.masks, truth, strict=True)) > 0.7


def test_mask_threshold_is_configurable():
    pytest.importorskip("mediapipe")
    clip = walking_clip(3)
    counts = []
    for threshold in (0.2, 0.5, 0.9):
        backend = make_segmentation_backend("mediapipe", threshold=threshold)
        counts.append(backend.segment(clip).pixel_counts().sum())
        backend.close()
    assert counts[0] > counts[1] > counts[2] > 0
    with pytest.raises(ValueError, match="threshold"):
        make_segmentation_backend("mediapipe", threshold=1.5)


def test_shared_pass_runs_the_model_once(shared):
    pose, masks = shared
    assert pose.perception is masks.perception
    clip = walking_clip(4)
    perception = pose.perception
    calls = []
    original = perception.process
    perception.process = lambda frames: calls.append(1) or original(frames)
    try:
        result = perceive(clip, pose, masks)
    finally:
        del perception.process
    assert len(calls) == 1
    assert result.pose.detected.all() and result.masks.present.all()
    # the same as asking each backend on its own (each of those runs the graph again)
    np.testing.assert_allclose(pose.estimate(clip).keypoints, result.pose.keypoints, atol=1.0)
    assert iou(masks.segment(clip).masks, result.masks.masks) > 0.95


def test_blank_frames_not_present_and_flagged(shared):
    pose, masks = shared
    clip = np.concatenate([np.zeros((2, 480, 640, 3), np.uint8), walking_clip(3)])
    result = perceive(clip, pose, masks)
    np.testing.assert_array_equal(result.pose.detected, [False, False, True, True, True])
    np.testing.assert_array_equal(result.masks.present, [False, False, True, True, True])
    assert not result.masks.masks[:2].any()
    flags = flag_frames(result)
    np.testing.assert_array_equal(flags.valid, [False, False, True, True, True])
    assert flags.reasons[:2] == ["no person detected"] * 2 and flags.reasons[2] == ""
    assert sequence_status(flags, 3) == (True, None)
    assert sequence_status(flags, 4) == (False, "only 3 valid frames of 5 (< 4 required)")


def test_mask_only_covers_the_followed_walker(shared):
    pose, masks = shared
    frames = []
    for t in range(3):
        img = canvas()
        draw_person(img, 560, 220, 200, shirt=(200, 60, 40))
        draw_person(img, 200 + 3 * t, 40, 400, phase=0.6 * t)
        frames.append(img)
    result = perceive(np.stack(frames), pose, masks)
    assert result.masks.masks[:, :, 180:330].any()  # the walker
    assert not result.masks.masks[:, :, 500:].any()  # the bystander is not part of it


def test_mask_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = MaskResult(rng.random((4, 9, 21)) > 0.5, np.array([1, 0, 1, 1], bool))
    b = MaskResult.from_masks(np.zeros((2, 9, 21), bool))
    path = write_frame_store(tmp_path / "shard-0000.npz", {"s/a": mask_fields(a), "s/b": mask_fields(b)})
    store = read_frame_store(path)
    assert store.arrays["mask"].dtype == np.uint8 and store.arrays["mask"].shape[-1] == 3  # ceil(21 / 8)
    back = masks_from_store(store, "s/a", width=21)
    np.testing.assert_array_equal(back.masks, a.masks)
    np.testing.assert_array_equal(back.present, a.present)
    assert not masks_from_store(store, "s/b", width=21).present.any()


def _pose(n: int, confident: list[int], detected: list[bool]) -> PoseResult:
    keypoints = np.zeros((n, 17, 3), np.float32)
    for t, k in enumerate(confident):
        keypoints[t, :k, 2] = 0.9
        keypoints[t, k:, 2] = 0.1
    return PoseResult(keypoints, np.array(detected))


def test_flag_frames_reasons():
    pose = _pose(4, [17, 5, 17, 17], [True, True, False, True])
    masks = np.zeros((4, 30, 30), bool)
    masks[0, :20, :20] = True  # 400 px
    masks[1, :20, :20] = True
    masks[3, :5, :5] = True  # 25 px
    flags = flag_frames(
        PerceptionResult(pose, MaskResult.from_masks(masks)), min_keypoints=8, min_mask_pixels=100
    )
    np.testing.assert_array_equal(flags.valid, [True, False, False, False])
    assert flags.reasons[1] == "5 keypoints with confidence >= 0.3 (< 8 required)"
    assert flags.reasons[2] == "no person detected"
    assert flags.reasons[3] == "mask has 25 pixels (< 100 required)"
    # pose-only and mask-only results are flagged on what they have
    assert flag_frames(pose, min_keypoints=8).valid.tolist() == [True, False, False, True]
    assert (
        flag_frames(MaskResult.from_masks(masks), min_mask_pixels=100).reasons[2] == "no person in the mask"
    )
    with pytest.raises(ValueError, match="frames"):
        flag_frames(PerceptionResult(pose, MaskResult.from_masks(masks[:3])))


def test_sequence_status_message():
    valid = np.zeros(40, bool)
    valid[[3, 7, 30]] = True
    assert sequence_status(valid, 10) == (False, "only 3 valid frames of 40 (< 10 required)")
    assert sequence_status(valid, 3) == (True, None)
