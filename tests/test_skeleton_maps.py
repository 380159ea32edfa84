"""SkeletonGait skeleton maps on hand-made keypoints with hand-computed expectations.

The template skeleton has its hip centre at (64, 64) and a y-extent of exactly 85 px (20..105), so
the centre-and-scale step maps it onto the 128 canvas unchanged and every canvas value below can be
written down from the Gaussian formula directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.perception.skeleton_maps import (
    align_heatmap,
    center_and_scale,
    coco18_to_coco17,
    heatmap_to_grey,
    joint_heatmap,
    limb_heatmap,
    pad_keypoints,
    skeleton_maps,
)
from pipeline.skeleton import COCO17_INDEX

TEMPLATE = np.array(
    [
        [64, 20], [66, 22], [62, 22], [68, 24], [60, 24],  # nose, eyes, ears
        [72, 36], [56, 36], [74, 50], [54, 50], [75, 62], [53, 62],  # shoulders, elbows, wrists
        [68, 64], [60, 64], [69, 85], [59, 85], [70, 105], [58, 103],  # hips, knees, ankles
    ],
    dtype=np.float64,
)  # fmt: skip
SIGMA = 8.0


def keypoints(scores: dict[str, float], coords: np.ndarray = TEMPLATE) -> np.ndarray:
    """One frame [1, 17, 3] of ``coords`` with the named joints scored, every other score 0."""
    frame = np.zeros((1, 17, 3))
    frame[0, :, :2] = coords
    for name, score in scores.items():
        frame[0, COCO17_INDEX[name], 2] = score
    return frame


def gaussian(d2: float, amplitude: float = 1.0) -> float:
    return amplitude * float(np.exp(-d2 / 2 / SIGMA**2))


def grey_of(value: float) -> float:
    """matplotlib's gray colormap → uint8 → channel mean, for one value (independent of the module)."""
    import matplotlib

    rgb = (np.asarray(matplotlib.colormaps["gray"](np.float32(value)))[:3] * 255).astype(np.uint8)
    return float(rgb.mean())


def test_template_is_a_fixed_point_of_the_normaliser():
    frame = keypoints({name: 1.0 for name in COCO17_INDEX})
    np.testing.assert_array_equal(center_and_scale(pad_keypoints(frame)), frame)


def test_normaliser_centres_hips_and_scales_height_to_85():
    frame = keypoints({}, TEMPLATE * 2 + 7)  # twice as tall, shifted
    out = center_and_scale(frame)
    hip = (out[0, 11, :2] + out[0, 12, :2]) / 2
    np.testing.assert_allclose(hip, [64, 64])
    assert out[0, :, 1].max() - out[0, :, 1].min() == pytest.approx(85.0)


def test_single_joint_gaussian_on_the_canvas():
    frame = keypoints({"left_elbow": 1.0})[0]  # left elbow at (x 74, y 50)
    heat = joint_heatmap(frame[:, :2], frame[:, 2])
    assert heat.dtype == np.float32 and heat.shape == (128, 128)
    assert heat[50, 74] == 1.0 and heat.max() == 1.0
    assert heat[54, 77] == pytest.approx(gaussian(3**2 + 4**2), rel=1e-6)
    # the patch stops at ±3σ = ±24 px although the Gaussian is still visible there (exp(-4.5) ≈ 0.011)
    assert heat[50, 74 + 24] == pytest.approx(gaussian(24**2), rel=1e-6)
    assert heat[50, 74 + 25] == 0.0 and heat[50 - 25, 74] == 0.0
    grey = heatmap_to_grey(heat)
    assert grey[50, 74] == 255.0
    assert grey[54, 77] == grey_of(gaussian(25))


def test_single_joint_full_pipeline_peak_and_channel_order():
    maps = skeleton_maps(keypoints({"left_elbow": 1.0}))
    assert maps.shape == (1, 2, 64, 64) and maps.dtype == np.uint8
    limb, joint = maps[0]
    assert limb.max() == 0  # a lone scored joint makes no limb: channel 0 is the limb channel
    # The joint's support spans canvas rows 26..74 (49 rows); the crop is the 49×49 square of columns
    # 40..88 around the canvas centre, so the elbow (crop row 24, col 34) lands at ≈(31.5, 44.6) of 64.
    row, col = np.unravel_index(int(joint.argmax()), joint.shape)
    assert abs(row - 31.5) <= 1 and abs(col - 44.6) <= 1
    assert joint.max() >= 250
    assert joint[:, :8].max() == 0  # columns 40..49 of the canvas are outside the patch


def test_single_limb_is_constant_along_the_segment_with_min_score():
    coords = TEMPLATE.copy()
    coords[COCO17_INDEX["left_elbow"]] = (72, 56)  # vertical limb x = 72, y 36..56
    frame = keypoints({"left_shoulder": 1.0, "left_elbow": 0.5}, coords)[0]
    heat = limb_heatmap(frame[:, :2], frame[:, 2])
    np.testing.assert_array_equal(heat[36:57, 72], np.float32(0.5))  # amplitude = min(1.0, 0.5)
    assert heat.max() == np.float32(0.5)
    assert heat[46, 75] == pytest.approx(gaussian(9, 0.5), rel=1e-6)  # 3 px beside the segment
    assert heat[60, 72] == pytest.approx(gaussian(16, 0.5), rel=1e-6)  # 4 px past the end point
    assert heat[30, 69] == pytest.approx(gaussian(6**2 + 3**2, 0.5), rel=1e-6)  # before the start
    # the joint channel instead peaks at each joint with its own score
    joints = joint_heatmap(frame[:, :2], frame[:, 2])
    assert joints[36, 72] == 1.0 and joints[56, 72] == np.float32(0.5)


def test_score_scales_the_amplitude_and_tiny_scores_are_skipped():
    frame = keypoints({"left_elbow": 1.0})[0]
    full = joint_heatmap(frame[:, :2], frame[:, 2])
    frame[COCO17_INDEX["left_elbow"], 2] = 0.25
    quarter = joint_heatmap(frame[:, :2], frame[:, 2])
    np.testing.assert_allclose(quarter, 0.25 * full, rtol=1e-6)
    frame[COCO17_INDEX["left_elbow"], 2] = 0.0009  # below 1e-3
    assert joint_heatmap(frame[:, :2], frame[:, 2]).max() == 0.0


def test_missing_joint_is_imputed_from_neighbouring_frames():
    # Left ankle is the lowest joint, so it sets the body height. In frame 2 it is missing (0, 0, 0):
    # imputed from the identical other frames, the scale stays the template's, and the frame equals
    # the template with only that ankle's score set to 0.
    frames = np.repeat(keypoints({name: 0.9 for name in COCO17_INDEX}), 5, axis=0)
    frames[2, COCO17_INDEX["left_ankle"]] = 0.0
    reference = keypoints({name: 0.9 for name in COCO17_INDEX if name != "left_ankle"})
    maps = skeleton_maps(frames)
    np.testing.assert_array_equal(maps[2], skeleton_maps(reference)[0])
    assert not np.array_equal(maps[2], maps[0])  # the ankle blob is absent in frame 2
    np.testing.assert_array_equal(pad_keypoints(frames)[2, COCO17_INDEX["left_ankle"], :2], (70, 105))


def test_joint_missing_everywhere_leaves_keypoints_unimputed():
    frames = np.repeat(keypoints({"nose": 1.0}), 3, axis=0)
    frames[:, 1] = 0.0  # left eye never detected
    frames[1, 5, :2] = 0.0  # would be imputable on its own
    np.testing.assert_array_equal(pad_keypoints(frames), frames)


def test_nan_coordinates_are_treated_as_missing():
    frames = np.repeat(keypoints({name: 0.8 for name in COCO17_INDEX}), 3, axis=0)
    with_zero, with_nan = frames.copy(), frames.copy()
    with_zero[1, 9, :2] = 0.0
    with_nan[1, 9, :2] = np.nan
    np.testing.assert_array_equal(skeleton_maps(with_nan), skeleton_maps(with_zero))


def test_align_crops_rows_and_a_centred_square():
    grey = np.zeros((128, 128))
    grey[33:96, 33:96] = 255.0  # 63 rows → crop columns 64-31 .. 64+31 = the same 63 columns
    assert align_heatmap(grey).min() >= 254
    grey[:] = 0.0
    grey[33:96, 80:100] = 255.0  # only canvas columns 80..95 fall inside the crop (its cols 47..62)
    out = align_heatmap(grey)
    assert out[:, :46].max() == 0 and out[:, 49:].min() >= 254


def test_empty_and_degenerate_frames_give_blank_maps():
    assert align_heatmap(np.zeros((128, 128))).max() == 0
    flat = TEMPLATE.copy()
    flat[:, 1] = 50.0  # every joint at the same height: zero body height
    frames = np.concatenate([keypoints({"nose": 1.0, "left_eye": 1.0}, flat), keypoints({"nose": 1.0})])
    maps = skeleton_maps(frames)
    assert maps.shape == (2, 2, 64, 64) and maps[0].max() == 0 and maps[1, 1].max() > 0
    assert skeleton_maps(np.zeros((0, 17, 3))).shape == (0, 2, 64, 64)


def test_input_validation():
    with pytest.raises(ValueError, match="coco18_to_coco17"):
        skeleton_maps(np.zeros((2, 18, 3)))


def test_coco18_to_coco17_follows_openpose_order():
    coco18 = np.zeros((2, 18, 3), dtype=np.float32)
    coco18[..., 0] = np.arange(18)  # x = OpenPose index
    coco17 = coco18_to_coco17(coco18)
    assert coco17.shape == (2, 17, 3) and coco17.dtype == np.float64
    # OpenPose BODY_18: 0 nose, 1 neck, 2/5 R/L shoulder, 8/11 R/L hip, 14/15 R/L eye, 16/17 R/L ear
    expected = {"nose": 0, "left_shoulder": 5, "right_shoulder": 2, "left_hip": 11, "right_hip": 8,
                "left_eye": 15, "right_eye": 14, "left_ear": 17, "right_ear": 16, "right_ankle": 10}  # fmt: skip
    for name, openpose_index in expected.items():
        assert coco17[0, COCO17_INDEX[name], 0] == openpose_index
    assert 1 not in coco17[0, :, 0]  # the neck is dropped


def test_complete_keypoints_skip_the_imputer_with_its_result():
    """No coordinate missing: the shortcut returns what KNNImputer returns (the input), as a copy."""
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(3)
    frames = np.concatenate(
        [rng.uniform(1, 100, size=(6, 17, 2)), rng.uniform(0, 1, size=(6, 17, 1))], axis=-1
    ).astype(np.float32)
    frames[2, 4, 2] = 0.0  # a zero score is not a missing coordinate
    padded = pad_keypoints(frames)
    coords = frames[..., :2].reshape(6, 34)
    imputed = KNNImputer(missing_values=0.0, n_neighbors=4, weights="distance").fit_transform(coords)
    np.testing.assert_array_equal(padded[..., :2].reshape(6, 34), imputed)
    np.testing.assert_array_equal(padded, frames)
    assert padded is not frames and padded.dtype == frames.dtype
