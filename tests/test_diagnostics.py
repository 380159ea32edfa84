"""Behavioural diagnostics on hand-made keypoint tracks, masks and frames with known answers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.evaluation.diagnostics import (
    Diagnostic,
    arm_swing_error,
    band_widths,
    body_height,
    cadence,
    cadence_error,
    flow_divergence,
    foot_sliding,
    summary_row,
    thickening_index,
    video_diagnostics,
)
from pipeline.skeleton import COCO17_INDEX as K

HEIGHT_PX = 200.0


def walker(
    n: int = 150,
    fps: float = 25.0,
    *,
    steps_per_min: float = 110.0,
    speed: float = 0.75,
    arm: float = 0.12,
    slide: float = 0.0,
    time_scale: float = 1.0,
) -> np.ndarray:
    """COCO-17 keypoints [n, 17, 3] of a side-view walker (x to the right, image y down), confidence 1.

    Each foot is planted for 60% of a stride and swings (smoothly, lifted) for 40%; the body moves at
    ``speed`` body heights/s, so a planted foot is still unless ``slide`` (body heights/s) drifts both
    ankles. ``arm`` is the wrist's horizontal swing amplitude about its shoulder (body heights);
    ``time_scale`` plays the same walk faster.
    """
    t = np.arange(n) / fps * time_scale
    stride_hz = steps_per_min / 120.0
    stride = speed * HEIGHT_PX / stride_hz
    hip_x = 40 + speed * HEIGHT_PX * t
    top = 20.0
    kp = np.zeros((n, 17, 3))
    kp[..., 2] = 1.0
    # (name, x offset px, y px below the top): the eyes sit 2 px above the nose, the hips at mid-height
    for name, dx, dy in (("nose", 4, 0), ("left_eye", 5, -2), ("right_eye", 3, -2), ("left_ear", 0, 0),
                         ("right_ear", 0, 0), ("left_hip", 0, HEIGHT_PX / 2), ("right_hip", 0, HEIGHT_PX / 2)):  # fmt: skip
        kp[:, K[name], 0], kp[:, K[name], 1] = hip_x + dx, top + dy
    phase = 2 * np.pi * stride_hz * t
    for side, offset in (("left", 0.0), ("right", 0.5)):
        shoulder_x = hip_x + (2 if side == "left" else -2)
        kp[:, K[f"{side}_shoulder"], :2] = np.stack([shoulder_x, np.full(n, top + 0.18 * HEIGHT_PX)], -1)
        swing = (1 if side == "left" else -1) * arm * HEIGHT_PX * np.sin(phase)
        kp[:, K[f"{side}_wrist"], :2] = np.stack([shoulder_x + swing, np.full(n, top + 0.45 * HEIGHT_PX)], -1)
        kp[:, K[f"{side}_elbow"], :2] = np.stack(
            [shoulder_x + swing / 2, np.full(n, top + 0.32 * HEIGHT_PX)], -1
        )
        cycles = stride_hz * t + offset
        k, u = np.floor(cycles), cycles - np.floor(cycles)
        swing_part = np.clip((u - 0.6) / 0.4, 0, 1)
        ankle_x = 40 + stride * (k + (1 - np.cos(np.pi * swing_part)) / 2 - offset) + slide * HEIGHT_PX * t
        lift = 0.05 * HEIGHT_PX * np.sin(np.pi * swing_part)
        kp[:, K[f"{side}_ankle"], :2] = np.stack([ankle_x, top + HEIGHT_PX - lift], -1)
        kp[:, K[f"{side}_knee"], :2] = (kp[:, K[f"{side}_ankle"], :2] + kp[:, K[f"{side}_hip"], :2]) / 2
    return kp


def silhouettes(n: int = 6, height: int = 120, width: int = 90) -> np.ndarray:
    """Masks [n, H, W]: a head, torso and legs whose horizontal position changes per frame."""
    masks = np.zeros((n, height, width), np.uint8)
    for t in range(n):
        cx = 35 + 3 * t
        cv2.circle(masks[t], (cx, 14), 8, 1, -1)
        cv2.rectangle(masks[t], (cx - 10, 22), (cx + 10, 62), 1, -1)
        cv2.line(masks[t], (cx - 4, 62), (cx - 10 + 2 * t, 110), 1, 7)
        cv2.line(masks[t], (cx + 4, 62), (cx + 8 - 2 * t, 110), 1, 7)
    return masks.astype(bool)


def stretch_horizontally(masks: np.ndarray, factor: float) -> np.ndarray:
    """Each mask widened by ``factor`` about its own centre column (height unchanged)."""
    out = np.zeros_like(masks)
    width = masks.shape[2]
    for t, m in enumerate(masks):
        cx = np.nonzero(m)[1].mean()
        src_x = cx + (np.arange(width) - cx) / factor  # inverse map, nearest column
        cols = np.clip(np.round(src_x).astype(int), 0, width - 1)
        valid = (src_x >= -0.5) & (src_x <= width - 0.5)
        out[t] = m[:, cols] & valid
    return out


# ----------------------------------------------------------------------------------------------------
# cadence
# ----------------------------------------------------------------------------------------------------


def test_cadence_of_a_known_gait():
    value, reason = cadence(walker(steps_per_min=110), 25.0)
    assert reason is None and value == pytest.approx(110.0, abs=1.0)


def test_cadence_error_zero_for_identical_and_known_for_time_scaled():
    real = walker()
    same = cadence_error(real, real.copy(), 25.0)
    assert same.value == 0.0
    faster = cadence_error(real, walker(time_scale=1.2), 25.0)
    assert faster.value == pytest.approx(22.0, abs=1.5)
    assert faster.details["real"] == pytest.approx(110.0, abs=1.0)


def test_cadence_error_is_paired_noise_floor_near_zero_and_a_tempo_change_is_found():
    """The oracle case: the same short walk perceived twice (independent keypoint noise) reads ≈ 0,
    while a 10 % faster walk with the same noise reads ≈ +11 steps/min (10 % of 110)."""
    rng = np.random.default_rng(0)

    def noisy(keypoints: np.ndarray) -> np.ndarray:
        out = keypoints.copy()
        out[..., :2] += rng.normal(0.0, 2.0, out[..., :2].shape)
        return out

    real = walker(n=40)  # 1.6 s: about 1.5 strides, like the world's short clips
    same = [cadence_error(noisy(real), noisy(real), 25.0) for _ in range(20)]
    faster = [cadence_error(noisy(real), noisy(walker(n=40, time_scale=1.1)), 25.0) for _ in range(20)]
    assert np.mean([abs(d.value) for d in same]) < 0.5
    assert max(abs(d.value) for d in same) < 1.5
    assert np.mean([d.value for d in faster]) == pytest.approx(11.0, abs=1.0)
    assert all(d.details["tempo_ratio"] == pytest.approx(1.1, abs=0.02) for d in faster)


def test_cadence_uses_each_videos_frame_rate():
    real = walker(fps=25.0)
    gen_30fps = walker(n=180, fps=30.0)  # same walk, other frame rate
    assert cadence_error(real, gen_30fps, 25.0, gen_fps=30.0).value == pytest.approx(0.0, abs=1.0)
    wrong = cadence_error(real, gen_30fps, 25.0)  # treating 30 fps frames as 25 fps: 110 * 25/30
    assert wrong.value == pytest.approx(110 * 25 / 30 - 110, abs=1.5)


def test_cadence_null_when_too_short_or_feet_missing():
    short = cadence_error(walker(n=12), walker(n=12), 25.0)
    assert short.value is None and "shorter than one stride" in short.reason
    hidden = walker()
    hidden[:100, K["left_ankle"], 2] = 0.0
    result = cadence_error(walker(), hidden, 25.0)
    assert result.value is None and result.reason.startswith("generated: ankles missing")


# ----------------------------------------------------------------------------------------------------
# foot sliding and arm swing
# ----------------------------------------------------------------------------------------------------


def test_body_height_from_head_to_ankles():
    assert body_height(walker()) == pytest.approx(HEIGHT_PX + 2, abs=3)  # eyes sit 2 px above the nose


def test_static_stance_has_no_sliding_and_sliding_feet_do():
    real = walker()
    same = foot_sliding(real, real.copy(), 25.0)
    assert same.value == 0.0
    assert same.details["real"] < 0.02 and same.details["real_stance_samples"] > 100
    sliding = foot_sliding(real, walker(slide=0.3), 25.0)
    assert sliding.value == pytest.approx(0.3, abs=0.05)


def test_arm_swing_halved_is_minus_one_half():
    real = walker(arm=0.12)
    assert arm_swing_error(real, real.copy()).value == 0.0
    halved = arm_swing_error(real, walker(arm=0.06))
    assert halved.value == pytest.approx(-0.5, abs=0.01)
    assert halved.details["real"] == pytest.approx(0.12, abs=0.01)


def test_keypoint_diagnostics_null_without_a_body_height():
    real = walker()
    headless = real.copy()
    headless[:, :5, 2] = 0.0
    result = arm_swing_error(real, headless)
    assert result.value is None and "body height unknown" in result.reason
    assert foot_sliding(headless, real, 25.0).reason.startswith("real:")


def test_bad_keypoints_name_the_input():
    with pytest.raises(ValueError, match=r"generated keypoints must be COCO-17 keypoints \[T, 17, 3\]"):
        arm_swing_error(walker(), np.zeros((10, 18, 3)))


# ----------------------------------------------------------------------------------------------------
# thickening
# ----------------------------------------------------------------------------------------------------


def test_identical_silhouettes_have_index_one():
    masks = silhouettes()
    result = thickening_index(masks, masks.copy())
    assert result.value == 1.0 and result.details["bands"] == [1.0] * 8


def test_thickened_silhouette_index_is_the_widening_factor():
    masks = silhouettes()
    result = thickening_index(masks, stretch_horizontally(masks, 1.5))
    assert result.value == pytest.approx(1.5, abs=0.06)
    assert all(b == pytest.approx(1.5, abs=0.15) for b in result.details["bands"])
    thinner = thickening_index(masks, stretch_horizontally(masks, 0.7))
    assert thinner.value == pytest.approx(0.7, abs=0.06)


def test_thickening_ignores_scale():
    masks = silhouettes()
    half = np.stack(
        [cv2.resize(m.astype(np.uint8), (45, 60), interpolation=cv2.INTER_NEAREST) for m in masks]
    )
    assert thickening_index(masks, half.astype(bool)).value == pytest.approx(1.0, abs=0.08)


def test_band_widths_of_a_rectangle():
    masks = np.zeros((1, 50, 40), bool)
    masks[0, 10:42, 5:21] = True  # 32 rows tall, 16 wide
    widths, valid = band_widths(masks, bands=8)
    assert valid.all() and np.allclose(widths, 16 / 32)


def test_thickening_null_for_empty_masks():
    masks = silhouettes()
    result = thickening_index(masks, np.zeros_like(masks))
    assert result.value is None and result.reason == "every generated mask is empty"


# ----------------------------------------------------------------------------------------------------
# optical flow
# ----------------------------------------------------------------------------------------------------


def moving_scene(n: int = 7, height: int = 64, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Frames [n, H, W, 3] of a textured blob moving 2 px/frame over a textured background; masks."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8), (5, 5), 1.5)
    blob = cv2.GaussianBlur(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8), (3, 3), 1.0)
    frames, masks = [], []
    for t in range(n):
        frame = texture[:, 10 : 10 + width].copy()
        x = 15 + 2 * t
        frame[17:47, x : x + 20] = blob
        mask = np.zeros((height, width), bool)
        mask[17:47, x : x + 20] = True
        frames.append(frame)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def test_flow_divergence_zero_for_identical_videos():
    frames, masks = moving_scene()
    result = flow_divergence(frames, frames.copy(), masks, masks)
    assert result.value == 0.0 and result.details["real_flow"] > 0.5


def test_flow_divergence_positive_for_a_jittered_copy():
    frames, masks = moving_scene()
    shifts = [(0, 0), (3, -2), (-2, 3), (3, 3), (-3, 0), (2, -3), (0, 3)]
    jittered = np.stack([np.roll(f, s, axis=(0, 1)) for f, s in zip(frames, shifts, strict=True)])
    for method in ("dis", "farneback"):
        result = flow_divergence(frames, jittered, masks, masks, method=method)
        assert result.value > 1.0 and result.details["relative"] > 0.3


def test_flow_divergence_bad_input():
    frames, masks = moving_scene()
    with pytest.raises(ValueError, match="unknown optical flow method"):
        flow_divergence(frames, frames, method="lk")
    with pytest.raises(ValueError, match="align and resize first"):
        flow_divergence(frames, frames[:-1])
    assert flow_divergence(frames[:1], frames[:1]).reason == "fewer than 2 frames"


# ----------------------------------------------------------------------------------------------------
# all together
# ----------------------------------------------------------------------------------------------------


def test_video_diagnostics_runs_everything_and_says_what_is_missing():
    frames, masks = moving_scene()
    real = walker()
    doubled = np.repeat(frames, 2, axis=0)
    out = video_diagnostics(real, walker(arm=0.06), 25.0, real_masks=masks, gen_masks=np.repeat(masks, 2, 0),
                            real_frames=frames, gen_frames=doubled)  # fmt: skip
    assert set(out) == {
        "foot_sliding",
        "arm_swing_error",
        "cadence_error",
        "thickening_index",
        "flow_divergence",
    }
    assert all(isinstance(d, Diagnostic) for d in out.values())
    assert out["arm_swing_error"].value == pytest.approx(-0.5, abs=0.01)
    assert out["flow_divergence"].value == 0.0
    assert any("frame counts differ" in note for note in out["flow_divergence"].details["notes"])
    bare = video_diagnostics(real, real, 25.0)
    assert bare["thickening_index"].reason == "masks not given"
    assert bare["flow_divergence"].reason == "frames not given"
    assert bare["cadence_error"].as_dict()["value"] == 0.0
    row = summary_row(bare)
    assert row["cadence_error"] == 0.0 and row["flow_divergence"] is None
    assert json.loads(row["notes"])["reasons"]["flow_divergence"] == "frames not given"


def test_a_diagnostic_has_a_value_or_a_reason():
    with pytest.raises(ValueError):
        Diagnostic(None)
    with pytest.raises(ValueError):
        Diagnostic(1.0, "both")
