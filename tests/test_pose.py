"""Pose backends: BlazePose→COCO mapping, mediapipe on synthetic figures, main-walker following,
smoothing, the ground-truth/dataset backends and DWPose's pre/post-processing maths."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from pipeline.perception.dwpose import DWPoseBackend, letterbox, nms, simcc_decode
from pipeline.perception.person import make_pose_backend
from pipeline.perception.pose_backends import (
    BLAZEPOSE_TO_COCO17,
    FollowOptions,
    ModelFilesMissingError,
    PoseResult,
    WalkerTrack,
    blazepose_to_coco17,
    make_smoother,
    pick_main_walker,
    valid_runs,
)
from pipeline.skeleton import COCO17_JOINTS

BACKGROUND = 200
SKIN = (224, 172, 140)


def draw_person(
    img: np.ndarray, cx: float, top: float, height: float, *, phase: float = 0.0, shirt=(40, 80, 200)
) -> np.ndarray:
    """Draw a frontal capsule figure (skin-coloured face with eyes, shirt, trousers, shoes) in place.

    ``height`` is head top to shoe sole in pixels; ``phase`` (radians) swings arms and legs a little,
    so that consecutive frames of a "walk" differ.
    """
    s = height / 8.0
    swing = 0.25 * np.sin(phase)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(cx + x * s)), int(round(top + y * s))

    def w(k: float) -> int:
        return max(1, int(round(k * s)))

    cv2.ellipse(img, p(0, 0.6), (w(0.42), w(0.55)), 0, 0, 360, SKIN, -1)
    for ex in (-0.15, 0.15):
        cv2.circle(img, p(ex, 0.5), w(0.06), (30, 30, 30), -1)
    cv2.ellipse(img, p(0, 0.85), (w(0.12), w(0.04)), 0, 0, 360, (150, 60, 60), -1)
    cv2.line(img, p(0, 1.1), p(0, 1.3), SKIN, w(0.3))
    cv2.rectangle(img, p(-0.75, 1.3), p(0.75, 4.0), shirt, -1)
    for side in (-1, 1):
        arm = side * swing
        cv2.line(img, p(0.8 * side, 1.5), p(1.0 * side + arm, 2.8), shirt, w(0.35))
        cv2.line(img, p(1.0 * side + arm, 2.8), p(1.1 * side + 1.5 * arm, 3.9), SKIN, w(0.28))
        cv2.circle(img, p(1.1 * side + 1.5 * arm, 4.0), w(0.2), SKIN, -1)
        leg = -side * swing
        cv2.line(img, p(0.4 * side, 4.0), p(0.5 * side + leg, 5.9), (50, 50, 60), w(0.5))
        cv2.line(img, p(0.5 * side + leg, 5.9), p(0.55 * side + 1.5 * leg, 7.7), (50, 50, 60), w(0.42))
        cv2.ellipse(img, p(0.6 * side + 1.5 * leg, 7.85), (w(0.3), w(0.14)), 0, 0, 360, (20, 20, 20), -1)
    return img


def canvas(width: int = 640, height: int = 480) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, np.uint8)


def walking_clip(n: int = 8, cx0: float = 300, speed: float = 4.0, height: float = 400) -> np.ndarray:
    return np.stack([draw_person(canvas(), cx0 + speed * t, 40, height, phase=0.6 * t) for t in range(n)])


def figure_box(cx: float, top: float, height: float) -> np.ndarray:
    """Rough extent of :func:`draw_person` (x0, y0, x1, y1)."""
    s = height / 8.0
    return np.array([cx - 1.3 * s, top, cx + 1.3 * s, top + height])


# ---------------------------------------------------------------------------------------------
# BlazePose → COCO-17


def test_mapping_matches_mediapipe_landmark_names():
    pose_landmark = pytest.importorskip("mediapipe.python.solutions.pose").PoseLandmark
    assert len(BLAZEPOSE_TO_COCO17) == len(COCO17_JOINTS) == 17
    for name, index in zip(COCO17_JOINTS, BLAZEPOSE_TO_COCO17, strict=True):
        assert pose_landmark[name.upper()] == index, name


def test_blazepose_to_coco17_on_fake_landmarks():
    landmarks = np.zeros((33, 4), np.float32)
    landmarks[:, 0] = np.arange(33) / 100  # x encodes the BlazePose index
    landmarks[:, 1] = np.arange(33) / 50
    landmarks[:, 3] = np.linspace(0, 1.2, 33)  # visibility, last ones > 1 to check clipping
    out = blazepose_to_coco17(landmarks, width=200, height=100)
    assert out.shape == (17, 3) and out.dtype == np.float32
    expected = {
        "nose": 0,
        "left_eye": 2,
        "right_eye": 5,
        "left_ear": 7,
        "right_ear": 8,
        "left_hip": 23,
        "right_ankle": 28,
    }
    for name, bp in expected.items():
        j = COCO17_JOINTS.index(name)
        assert out[j, 0] == pytest.approx(bp * 2.0)  # x_norm · width = bp / 100 · 200
        assert out[j, 1] == pytest.approx(bp * 2.0)  # y_norm · height = bp / 50 · 100
        assert out[j, 2] == pytest.approx(min(1.0, landmarks[bp, 3]))
    with pytest.raises(ValueError):
        blazepose_to_coco17(np.zeros((17, 4)), 1, 1)


# ---------------------------------------------------------------------------------------------
# mediapipe on images


@pytest.fixture(scope="module")
def mp_pose():
    pytest.importorskip("mediapipe")
    backend = make_pose_backend("mediapipe")
    yield backend
    backend.close()


def test_mediapipe_blank_frames_are_not_detected(mp_pose):
    result = mp_pose.estimate(np.zeros((3, 240, 320, 3), np.uint8))
    assert not result.detected.any()
    assert not result.keypoints.any()


def test_mediapipe_detects_synthetic_person(mp_pose):
    clip = walking_clip(6)
    result = mp_pose.estimate(clip)
    assert result.detected.all()
    kp = result.keypoints
    box = figure_box(300, 40, 400)
    # keypoints land on the figure, in pixel coordinates of the full frame
    assert (kp[..., 0] > box[0] - 10).all() and (kp[..., 0] < box[2] + 30).all()
    assert (kp[..., 1] > box[1] - 10).all() and (kp[..., 1] < box[3] + 10).all()
    nose, l_sh, r_sh = (
        COCO17_JOINTS.index("nose"),
        COCO17_JOINTS.index("left_shoulder"),
        COCO17_JOINTS.index("right_shoulder"),
    )
    l_ank = COCO17_JOINTS.index("left_ankle")
    assert (kp[:, nose, 1] < kp[:, l_sh, 1]).all() and (kp[:, l_sh, 1] < kp[:, l_ank, 1]).all()
    # the figure faces the camera: the person's left shoulder is on the image's right
    assert (kp[:, l_sh, 0] > kp[:, r_sh, 0]).all()
    assert (kp[:, nose, 2] > 0.5).all()
    # the walker moves right by 4 px per frame; the tracked hips follow
    hips = kp[:, 11:13, 0].mean(axis=1)
    assert np.polyfit(np.arange(len(hips)), hips, 1)[0] == pytest.approx(4.0, abs=2.0)


def _two_people(t: int, *, walker: bool = True, other_x: float = 560) -> np.ndarray:
    img = canvas()
    draw_person(img, other_x, 220, 200, phase=0.5 * t, shirt=(200, 60, 40))
    if walker:
        draw_person(img, 200 + 3 * t, 40, 400, phase=0.6 * t)
    return img


def test_main_walker_is_the_larger_person(mp_pose):
    clip = np.stack([_two_people(t) for t in range(6)])
    found = mp_pose.perception.find_people(clip[0])
    assert len(found) == 2  # the search enumerates both figures
    result = mp_pose.estimate(clip)
    assert result.detected.all()
    centres = (result.boxes[:, 0] + result.boxes[:, 2]) / 2
    heights = result.boxes[:, 3] - result.boxes[:, 1]
    np.testing.assert_allclose(centres, 200 + 3 * np.arange(6), atol=25)
    assert (heights > 300).all()


@pytest.mark.parametrize("other_x", [560, 420])  # outside / inside the walker's search region
def test_walker_is_not_swapped_for_a_bystander(mp_pose, other_x):
    # the walker vanishes for 3 frames (< max_missed) while a smaller person stays in view
    present = [True] * 5 + [False] * 3 + [True] * 4
    clip = np.stack([_two_people(t, walker=p, other_x=other_x) for t, p in enumerate(present)])
    result = mp_pose.estimate(clip)
    np.testing.assert_array_equal(result.detected, present)
    centres = (result.boxes[:, 0] + result.boxes[:, 2]) / 2
    assert (np.abs(centres[present] - (200 + 3 * np.flatnonzero(present))) < 30).all()


def test_walker_track_rules():
    options = FollowOptions(jump_center=0.5, jump_scale=1.5, max_missed=2)
    track = WalkerTrack(np.array([100, 100, 140, 200]), options)  # centre (120, 150), height 100
    track.update(np.array([104, 100, 144, 200]))  # moving right 4 px / frame
    assert track.predicted_center()[0] > 124
    assert not track.is_jump(np.array([106, 102, 146, 202]))
    assert track.is_jump(np.array([200, 100, 240, 200]))  # centre 80 px away > 0.5 · height
    assert track.is_jump(np.array([110, 150, 130, 195]))  # height 45 < 100 / 1.5
    boxes = np.array([[300, 50, 360, 250], [108, 99, 148, 201], [90, 120, 110, 160]])
    assert track.select(boxes) == 1
    assert track.select(boxes[[0, 2]]) is None
    assert track.miss() and track.miss() and not track.miss()
    assert pick_main_walker(boxes) == 0


# ---------------------------------------------------------------------------------------------
# smoothing


def _noisy_track(n: int = 90, seed: int = 0) -> tuple[np.ndarray, PoseResult]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    truth = np.zeros((n, 17, 2), np.float32)
    truth[..., 0] = 300 + 40 * np.sin(2 * np.pi * 1.0 * t)[:, None] + np.arange(17) * 3
    truth[..., 1] = 200 + 20 * np.cos(2 * np.pi * 1.0 * t)[:, None] + np.arange(17) * 10
    noisy = np.concatenate([truth + rng.normal(0, 3.0, truth.shape), np.ones((n, 17, 1))], -1)
    detected = np.ones(n, bool)
    detected[40:43] = False
    noisy[~detected] = 0.0
    return truth, PoseResult(noisy, detected)


@pytest.mark.parametrize("method", ["savgol", "one_euro"])
def test_smoothing_reduces_jitter(method):
    truth, noisy = _noisy_track()
    smoothed = make_smoother(method)(noisy)
    ok = noisy.detected

    def rms(result: PoseResult) -> float:
        return float(np.sqrt(((result.keypoints[ok, :, :2] - truth[ok]) ** 2).mean()))

    def jitter(result: PoseResult) -> float:  # RMS frame-to-frame acceleration of the error
        error = result.keypoints[:40, :, :2] - truth[:40]  # first detected run
        return float(np.sqrt((np.diff(error, 2, axis=0) ** 2).mean()))

    assert jitter(smoothed) < 0.6 * jitter(noisy)
    if method == "savgol":  # zero-phase: also closer to the truth; One-Euro is causal and lags
        assert rms(smoothed) < 0.75 * rms(noisy)
    else:
        assert rms(smoothed) < 1.5 * rms(noisy)
    assert not smoothed.keypoints[~ok].any()  # gaps stay empty, nothing is dragged across them
    np.testing.assert_array_equal(smoothed.keypoints[..., 2], noisy.keypoints[..., 2])
    assert make_smoother("off")(noisy) is noisy


def test_savgol_leaves_short_runs_alone():
    _, noisy = _noisy_track(20)
    detected = np.zeros(20, bool)
    detected[2:6] = True  # 4 frames < window 7
    noisy = PoseResult(noisy.keypoints, detected)
    np.testing.assert_array_equal(make_smoother("savgol", window=7)(noisy).keypoints, noisy.keypoints)
    assert valid_runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    with pytest.raises(ValueError, match="unknown smoothing"):
        make_smoother("kalman")


# ---------------------------------------------------------------------------------------------
# caller-supplied keypoints


def test_groundtruth_backend_confidence_from_visibility():
    gt = np.zeros((3, 17, 3), np.float32)
    gt[..., 0], gt[..., 1] = 10.0, 20.0
    gt[0, :, 2] = 2
    gt[0, 3, 2] = 1  # occluded but in frame → confidence 1
    gt[0, 4, 2] = 0  # outside → 0
    gt[1, :, 2] = 0  # nothing in frame → not detected
    gt[2, :5, 2] = 1
    result = make_pose_backend("groundtruth").estimate(None, keypoints2d=gt)
    np.testing.assert_array_equal(result.detected, [True, False, True])
    assert result.keypoints[0, 3, 2] == 1.0 and result.keypoints[0, 4, 2] == 0.0
    assert result.keypoints[0, 4, 0] == 10.0  # position kept, only the confidence says "outside"
    assert not result.keypoints[1].any()
    assert result.keypoints[2, :5, 2].sum() == 5 and result.keypoints[2, 5:, 2].sum() == 0
    with pytest.raises(ValueError, match="keypoints2d"):
        make_pose_backend("groundtruth").estimate(None)


def test_dataset_backend_reads_pkl(tmp_path):
    array = np.random.default_rng(1).uniform(1, 100, (5, 17, 3)).astype(np.float32)
    array[..., 2] = 0.8
    array[2] = 0.0  # a frame without a person
    path = tmp_path / "pose.pkl"
    path.write_bytes(pickle.dumps(array))
    result = make_pose_backend("dataset").estimate(None, path=path)
    np.testing.assert_array_equal(result.detected, [True, True, False, True, True])
    np.testing.assert_allclose(result.keypoints[0], array[0])
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(np.zeros((5, 18, 3), np.float32)))
    with pytest.raises(RuntimeError, match="17, 3"):
        make_pose_backend("dataset").estimate(None, path=bad)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown pose backend"):
        make_pose_backend("openpose")


# ---------------------------------------------------------------------------------------------
# DWPose


def test_dwpose_missing_files_is_one_clear_error(tmp_path):
    detector, estimator = tmp_path / "yolox_l.onnx", tmp_path / "dw-ll_ucoco_384.onnx"
    config = {"perception": {"dwpose": {"detector": str(detector), "estimator": str(estimator)}}}
    with pytest.raises(ModelFilesMissingError) as info:
        make_pose_backend("dwpose", config=config)
    message = str(info.value)
    assert "perception.dwpose.detector" in message and str(detector) in message
    assert "perception.dwpose.estimator" in message and str(estimator) in message
    detector.write_bytes(b"present")
    with pytest.raises(FileNotFoundError) as info:
        make_pose_backend("dwpose", config=config)
    assert "perception.dwpose.detector" not in str(info.value) and str(estimator) in str(info.value)
    with pytest.raises(ModelFilesMissingError, match="perception.dwpose.detector is not set"):
        make_pose_backend("dwpose", config={})


def test_simcc_decoding_of_one_hot_output():
    simcc_x = np.zeros((1, 3, 576), np.float32)
    simcc_y = np.zeros((1, 3, 768), np.float32)
    simcc_x[0, 0, 2 * 100] = 0.9  # x = 100 px, y = 250 px of the 288 × 384 crop
    simcc_y[0, 0, 2 * 250] = 0.7
    simcc_x[0, 1, 51] = 0.8  # half-pixel bin: 25.5 px
    simcc_y[0, 1, 3] = 0.6
    locs, scores = simcc_decode(simcc_x, simcc_y)  # keypoint 2 stays all-zero → score 0 → -1
    np.testing.assert_allclose(locs[0, 0], [100, 250])
    np.testing.assert_allclose(locs[0, 1], [25.5, 1.5])
    np.testing.assert_allclose(scores[0, :2], [0.7, 0.6])  # the weaker axis
    np.testing.assert_array_equal(locs[0, 2], [-1, -1])


def test_letterbox_and_inverse_map_a_box_back():
    frame = np.zeros((300, 500, 3), np.uint8)
    frame[60:181, 100:321] = 255  # box (100, 60) – (320, 180), inclusive
    padded, r = letterbox(frame)
    assert padded.shape == (640, 640, 3) and r == pytest.approx(640 / 500)
    assert (padded[-1, -1] == 114).all()  # padding below the resized image
    ys, xs = np.nonzero(padded[..., 0] > 128)
    back = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / r
    np.testing.assert_allclose(back, [100, 60, 321, 181], atol=1.0)


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.45).tolist() == [1, 2]


class _FakeInput:
    def __init__(self, name: str) -> None:
        self.name = name


class _FakeDetector:
    """YOLOX-shaped output [1, 8400, 85] with one person (plus a duplicate and a weak box)."""

    def __init__(self, canvas_box: np.ndarray) -> None:
        self.canvas_box = canvas_box
        self.blobs: list[np.ndarray] = []

    def get_inputs(self) -> list[_FakeInput]:
        return [_FakeInput("images")]

    def _row(self, raw: np.ndarray, box: np.ndarray, obj: float) -> None:
        stride, offset, cells = 32, 80 * 80 + 40 * 40, 20
        centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        gx, gy = (centre // stride).astype(int)
        row = raw[0, offset + gy * cells + gx]
        row[:2] = centre / stride - (gx, gy)
        row[2:4] = np.log(size / stride)
        row[4], row[5] = obj, 0.95

    def run(self, _names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.blobs.append(feeds["images"])
        raw = np.zeros((1, 8400, 85), np.float32)
        self._row(raw, self.canvas_box + (0, 0, 6, 0), 0.6)  # duplicate, lower score → suppressed
        self._row(raw, self.canvas_box, 0.9)
        self._row(raw, np.array([500.0, 500, 560, 620]), 0.2)  # score 0.19 < box threshold 0.3
        return [raw]


class _FakeEstimator:
    """SimCC outputs that put keypoint k at crop pixel (10 + 10k, 20 + 15k)."""

    def __init__(self) -> None:
        self.blobs: list[np.ndarray] = []

    def get_inputs(self) -> list[_FakeInput]:
        return [_FakeInput("input")]

    def run(self, _names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.blobs.append(feeds["input"])
        x, y = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
        for k in range(133):
            x[0, k, 2 * ((10 + 10 * k) % 288)] = 0.9
            y[0, k, 2 * ((20 + 15 * k) % 384)] = 0.8
        return [y, x]  # order deliberately swapped: outputs are told apart by length


def test_dwpose_pipeline_end_to_end_with_fake_models():
    frame = np.zeros((320, 480, 3), np.uint8)
    frame[:] = (200, 100, 50)  # RGB
    person = np.array([100.0, 40, 220, 300])  # frame pixels
    r = 640 / 480
    detector, estimator = _FakeDetector(person * r), _FakeEstimator()
    backend = DWPoseBackend(sessions=(detector, estimator))
    result = backend.estimate(np.stack([frame, frame]))
    assert result.detected.all()
    np.testing.assert_allclose(result.boxes[0], person, atol=0.5)

    det_blob = detector.blobs[0]
    assert det_blob.shape == (1, 3, 640, 640)
    np.testing.assert_allclose(det_blob[0, :, 10, 10], [50, 100, 200])  # BGR, not normalised
    np.testing.assert_allclose(det_blob[0, :, 639, 639], [114, 114, 114])
    est_blob = estimator.blobs[0]
    assert est_blob.shape == (1, 3, 384, 288)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(est_blob[0, :, 192, 144], (np.array([200, 100, 50]) - mean) / std, rtol=1e-5)

    # box 120 × 260, padded ×1.25 → 150 × 325, widened to 3:4 → 243.75 × 325 around (160, 170)
    k = np.arange(17)
    expected_x = 160 - 243.75 / 2 + (10 + 10 * k) * 243.75 / 288
    expected_y = 170 - 325 / 2 + (20 + 15 * k) * 325 / 384
    np.testing.assert_allclose(result.keypoints[0, :, 0], expected_x, atol=0.6)
    np.testing.assert_allclose(result.keypoints[0, :, 1], expected_y, atol=0.6)
    np.testing.assert_allclose(result.keypoints[0, :, 2], 0.8)


# ---------------------------------------------------------------------------------------------
# MediapipePerception control flow, with a scripted graph in place of BlazePose


class _ScriptedGraph:
    """Stands in for ``mp.solutions.pose.Pose``: returns whoever ``pick(image, call)`` names.

    People are boxes in pixels; the landmarks are spread over the box so that the perception's box
    of the landmarks equals it.
    """

    def __init__(self, pick) -> None:
        self.pick, self.calls, self.resets = pick, 0, 0

    def process(self, image: np.ndarray):
        from types import SimpleNamespace

        self.calls += 1
        box = self.pick(image, self.calls)
        if box is None:
            return SimpleNamespace(pose_landmarks=None, segmentation_mask=None)
        h, w = image.shape[:2]
        u = np.linspace(0, 1, 33)
        xs, ys = box[0] + u * (box[2] - box[0]), box[1] + u[::-1] * (box[3] - box[1])
        points = [
            SimpleNamespace(x=x / w, y=y / h, z=0.0, visibility=0.9) for x, y in zip(xs, ys, strict=True)
        ]
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=points), segmentation_mask=None)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        pass


def _perception(pick, static_pick=None):
    pytest.importorskip("mediapipe")
    from pipeline.perception.pose_backends import MediapipePerception

    perception = MediapipePerception()
    perception._graph.close()
    perception._graph = _ScriptedGraph(pick)
    perception._static = _ScriptedGraph(static_pick or (lambda image, call: None))
    return perception


SMALL, BIG = np.array([500.0, 200, 540, 300]), np.array([100.0, 50, 200, 400])


def test_search_switches_from_a_smaller_person_to_the_largest():
    # With the whole frame visible the graph picks the small person; the static search then finds the
    # big one (the small one is blacked out); with only the big one's region visible the graph sees it.
    def pick(image, call):
        return SMALL if image[250, 520].any() else BIG

    def static_pick(image, call):
        return BIG if image[200, 150].any() else None

    perception = _perception(pick, static_pick)
    result = perception.process(np.full((3, 480, 640, 3), 90, np.uint8)).pose
    assert result.detected.all()
    np.testing.assert_allclose(result.boxes, np.repeat(BIG[None], 3, 0), atol=1e-3)
    assert perception._graph.resets == 1  # dropped the small person once, then tracked the big one


def test_lost_track_is_retried_on_the_same_frame():
    # The graph loses its person on call 3 (frame 2) and re-detects on the next call.
    perception = _perception(lambda image, call: None if call == 3 else BIG, lambda image, call: None)
    result = perception.process(np.full((4, 480, 640, 3), 90, np.uint8)).pose
    assert result.detected.all()
    assert perception._graph.calls == 5  # 4 frames + 1 retry
    # the next clip starts with one blank frame to clear the graph's tracking state
    perception.process(np.full((1, 480, 640, 3), 90, np.uint8))
    assert perception._graph.calls == 7 and perception._graph.resets == 0
    perception.process(np.full((1, 240, 320, 3), 90, np.uint8))  # another frame size → reset instead
    assert perception._graph.resets == 1


@pytest.mark.parametrize(("n", "window", "order"), [(7, 7, 2), (30, 7, 2), (41, 9, 3), (12, 5, 1)])
def test_savgol_filter_equals_scipy_interp_mode(n, window, order):
    from scipy.signal import savgol_filter as scipy_savgol

    from pipeline.perception.pose_backends import savgol_filter

    x = np.random.default_rng(n).normal(size=(n, 17, 2)).cumsum(axis=0)
    np.testing.assert_allclose(
        savgol_filter(x, window, order), scipy_savgol(x, window, order, axis=0, mode="interp"), atol=1e-9
    )
    with pytest.raises(ValueError, match="fewer than the window"):
        savgol_filter(x[: window - 1], window, order)
