"""The perturbed oracles calibrate the diagnostics: on a synthetic walker each moves its diagnostic by
the known amount and leaves the others at the oracle's reading.

The walker (``test_diagnostics.walker``) is rendered twice: as keypoint videos (each COCO-17 joint a
Gaussian blob in its own colour channel, six videos of three joints) that an exact perceiver reads back
as intensity centroids, and as a textured figure (limbs, torso and head drawn from the same keypoints,
texture attached to the body) on black, whose mask is its non-black pixels. Every generator runs on
those videos exactly as the generation stage calls it; the diagnostics then compare the perceived
output with the perceived driving video.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_diagnostics import walker

from pipeline.evaluation.diagnostics import body_height, thickening_index, video_diagnostics
from pipeline.generation.generators import (
    REGISTRY,
    Driving,
    GenerationError,
    GenerationJob,
    Reference,
    make_generator,
)
from pipeline.generation.generators.controls import body_height_px, swap_indices, tempo_indices
from pipeline.skeleton import COCO17_INDEX as K

FPS = 25.0
H, W = 250, 420
CONTROLS = ("oracle-tempo", "oracle-slide", "oracle-thick", "oracle-stretch", "oracle-swap")
LIMBS = [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
         for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))]  # fmt: skip


def keypoint_videos(kp: np.ndarray, sigma: float = 2.5) -> list[np.ndarray]:
    """Joint j as a Gaussian blob in channel j % 3 of video j // 3: six videos [T, H, W, 3] uint8."""
    yy, xx = np.mgrid[0:H, 0:W]
    videos = np.zeros((6, len(kp), H, W, 3), np.uint8)
    for j in range(17):
        for t in range(len(kp)):
            x, y = kp[t, j, :2]
            blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
            videos[j // 3, t, ..., j % 3] = np.round(255 * blob)
    return list(videos)


def perceive_keypoints(videos: list[np.ndarray]) -> np.ndarray:
    """Intensity centroid of each (video, channel) = the joint's x, y; confidence 1."""
    n = len(videos[0])
    yy, xx = np.mgrid[0:H, 0:W]
    kp = np.ones((n, 17, 3))
    for j in range(17):
        weight = videos[j // 3][..., j % 3].astype(np.float64)
        total = weight.sum(axis=(1, 2))
        kp[:, j, 0] = (weight * xx).sum(axis=(1, 2)) / total
        kp[:, j, 1] = (weight * yy).sum(axis=(1, 2)) / total
    return kp


def figure_video(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A textured stick figure drawn from the keypoints on black; frames [T, H, W, 3] and masks."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(150, 256, (H, 2 * W, 3), dtype=np.uint8), (5, 5), 1.2)
    frames, masks = [], []
    for t in range(len(kp)):
        mask = np.zeros((H, W), np.uint8)
        p = {name: tuple(int(round(v)) for v in kp[t, i, :2]) for name, i in K.items()}
        for a, b in LIMBS:
            cv2.line(mask, p[a], p[b], 1, 9)
        for side in ("left", "right"):
            cv2.line(mask, p[f"{side}_shoulder"], p[f"{side}_hip"], 1, 22)
        cv2.circle(mask, p["nose"], 12, 1, -1)
        shift = int(round(kp[t, K["left_hip"], 0]))  # the texture moves with the body
        body = np.roll(texture, shift, axis=1)[:, :W]
        frames.append(np.where(mask[..., None].astype(bool), body, 0).astype(np.uint8))
        masks.append(mask.astype(bool))
    return np.stack(frames), np.stack(masks)


def perceive_masks(frames: np.ndarray) -> np.ndarray:
    """Person = non-black; the threshold (100, about half the figure's brightness) counts a pixel that
    a sub-pixel shift left half covered as half the time in, half out (no bias in width)."""
    return frames.max(axis=-1) > 100


def run(generator: str, frames: np.ndarray, kp: np.ndarray, masks: np.ndarray | None, **params):
    job = GenerationJob(
        job_id="calibration", seed=0, params=params,
        reference=Reference(image=frames[0]),
        driving=Driving(keypoints=kp, height=frames.shape[1], width=frames.shape[2], fps=FPS, frames=frames,
                        masks=masks),
    )  # fmt: skip
    gen = make_generator(generator)
    gen.load()
    try:
        return gen.generate(job)
    finally:
        gen.close()


@pytest.fixture(scope="module")
def scene():
    kp = walker(n=60, fps=FPS, speed=0.3)
    videos = keypoint_videos(kp)
    figure, masks = figure_video(kp)
    return {"kp": kp, "videos": videos, "figure": figure, "masks": masks,
            "perceived": perceive_keypoints(videos)}  # fmt: skip


def diagnose(scene, generator: str, **params) -> tuple[dict, dict]:
    """All diagnostics of ``generator``'s output against the driving walker, and the figure's notes."""
    outputs = [run(generator, v, scene["kp"], perceive_masks(v), **params).frames for v in scene["videos"]]
    figure = run(generator, scene["figure"], scene["kp"], scene["masks"], **params)
    out = video_diagnostics(
        scene["perceived"], perceive_keypoints(outputs), FPS,
        real_masks=scene["masks"], gen_masks=perceive_masks(figure.frames),
        real_frames=scene["figure"], gen_frames=figure.frames,
    )  # fmt: skip
    return {name: d.value for name, d in out.items()} | {"relative": out["flow_divergence"].details["relative"],
                                                          "real": out["cadence_error"].details["real"]}, figure.notes  # fmt: skip


@pytest.fixture(scope="module")
def oracle(scene):
    return diagnose(scene, "oracle")[0]


# ----------------------------------------------------------------------------------------------------
# the known zero and the scene's perceiver


def test_perceiver_reads_the_walker_back(scene):
    assert np.abs(scene["perceived"][..., :2] - scene["kp"][..., :2]).max() < 0.05


def test_oracle_reads_zero_on_every_diagnostic(oracle):
    assert (
        oracle["foot_sliding"] == 0.0 and oracle["arm_swing_error"] == 0.0 and oracle["cadence_error"] == 0.0
    )
    assert oracle["thickening_index"] == 1.0 and oracle["flow_divergence"] == 0.0


def test_controls_are_registered_with_what_they_need():
    for name in CONTROLS:
        assert name in REGISTRY
    assert REGISTRY["oracle-thick"].needs == ("frames", "masks")
    assert REGISTRY["oracle-tempo"].needs == ("frames",)


# ----------------------------------------------------------------------------------------------------
# the known non-zeros


def test_tempo_reads_its_factor_in_cadence_and_nothing_else(scene):
    d, notes = diagnose(scene, "oracle-tempo", factor=1.2)
    assert d["cadence_error"] == pytest.approx(0.2 * d["real"], rel=0.05)  # +20 % of the real cadence
    assert d["real"] == pytest.approx(110.0, abs=1.0)
    assert abs(d["arm_swing_error"]) < 0.03 and abs(d["foot_sliding"]) < 0.02
    assert d["thickening_index"] == pytest.approx(1.0, abs=0.01)
    assert notes["expected"]["tempo_ratio"] == 1.2 and notes["params"] == {"factor": 1.2}
    slower, _ = diagnose(scene, "oracle-tempo", factor=0.8)
    assert slower["cadence_error"] == pytest.approx(-0.2 * slower["real"], rel=0.05)


def test_slide_reads_its_speed_in_foot_sliding_and_its_drift_in_flow(scene):
    d, notes = diagnose(scene, "oracle-slide", speed=0.2)
    assert d["foot_sliding"] == pytest.approx(0.2, abs=0.02)
    assert notes["expected"]["foot_sliding"] == 0.2
    assert notes["drift_px_per_frame"] * 0.9 < d["flow_divergence"] < notes["drift_px_per_frame"] * 2
    assert abs(d["arm_swing_error"]) < 0.01 and abs(d["cadence_error"]) < 0.5
    assert d["thickening_index"] == pytest.approx(1.0, abs=0.02)


def test_thick_widens_the_silhouette_and_leaves_the_keypoints(scene):
    d, notes = diagnose(scene, "oracle-thick", pixels=3)
    grown = perceive_masks(run("oracle-thick", scene["figure"], scene["kp"], scene["masks"], pixels=3).frames)
    assert d["thickening_index"] > 1.05
    assert d["thickening_index"] == thickening_index(scene["masks"], grown).value
    assert notes["grown_mask_area"] > notes["mask_area"] and notes["pixels"] == 3
    assert (
        abs(d["arm_swing_error"]) < 0.01 and abs(d["foot_sliding"]) < 0.01 and abs(d["cadence_error"]) < 0.5
    )
    none, _ = diagnose(scene, "oracle-thick", pixels=0)
    assert none["thickening_index"] == 1.0


def test_stretch_reads_its_factor_in_arm_swing_and_thickening(scene):
    d, notes = diagnose(scene, "oracle-stretch", factor=0.8)
    assert d["arm_swing_error"] == pytest.approx(-0.2, abs=0.01)
    assert d["thickening_index"] == pytest.approx(0.8, abs=0.05)
    assert abs(d["foot_sliding"]) < 0.02 and abs(d["cadence_error"]) < 0.5
    assert notes["expected"] == {"arm_swing_error": pytest.approx(-0.2), "thickening_index": 0.8}


def test_swap_doubles_the_flow_and_leaves_poses_and_shapes(scene, oracle):
    d, notes = diagnose(scene, "oracle-swap")
    assert d["relative"] == pytest.approx(2.0, abs=0.3) and d["flow_divergence"] > 2.0
    assert d["arm_swing_error"] == pytest.approx(0.0, abs=1e-12)  # the same frames, reordered
    assert d["thickening_index"] == pytest.approx(1.0, abs=1e-12)
    assert abs(d["cadence_error"]) < 1.5
    assert notes["source_frames"][:4] == [1, 0, 3, 2]


# ----------------------------------------------------------------------------------------------------
# the transforms themselves


def test_thick_grows_a_box_by_its_pixels_in_its_colour():
    frames = np.zeros((2, 40, 50, 3), np.uint8)
    frames[:, 10:30, 20:28] = (200, 120, 40)
    masks = frames.any(axis=-1)
    out = run("oracle-thick", frames, walker(n=2), masks, pixels=3).frames
    grown = out.any(axis=-1)
    assert grown[:, 7:33, 17:31].all() and grown.sum() == 2 * 26 * 14  # 3 px on every side
    assert (out[grown] == (200, 120, 40)).all()


def test_tempo_indices_play_faster_then_reflect():
    assert tempo_indices(10, 1.0).tolist() == list(range(10))
    assert tempo_indices(10, 1.5).tolist() == [0, 2, 3, 4, 6, 8, 9, 8, 6, 4]  # round half to even
    assert tempo_indices(6, 0.5).tolist() == [0, 0, 1, 2, 2, 2]


def test_swap_indices_reverse_blocks():
    assert swap_indices(7, 2).tolist() == [1, 0, 3, 2, 5, 4, 6]
    assert swap_indices(7, 3).tolist() == [2, 1, 0, 5, 4, 3, 6]


def test_body_height_agrees_with_the_diagnostics(scene):
    kp = scene["kp"].copy()
    kp[::3, K["left_ankle"], 2] = 0.1  # some unconfident points
    assert body_height_px(kp) == body_height(kp)


def test_controls_are_deterministic_and_keep_frame_count_and_size(scene):
    for name in CONTROLS:
        a = run(name, scene["figure"], scene["kp"], scene["masks"])
        b = run(name, scene["figure"], scene["kp"], scene["masks"])
        assert a.frames.shape == scene["figure"].shape and a.fps == FPS
        assert np.array_equal(a.frames, b.frames) and a.notes["control"] == name


def test_bad_params_and_missing_inputs_are_named(scene):
    with pytest.raises(GenerationError, match=r"unknown params \['speed'\]"):
        run("oracle-tempo", scene["figure"], scene["kp"], None, speed=2)
    with pytest.raises(GenerationError, match="factor must lie in"):
        run("oracle-tempo", scene["figure"], scene["kp"], None, factor=3.0)
    with pytest.raises(GenerationError, match="needs the driving masks"):
        run("oracle-thick", scene["figure"], scene["kp"], None)
    headless = scene["kp"].copy()
    headless[:, :5, 2] = 0.0
    with pytest.raises(GenerationError, match="body height unknown"):
        run("oracle-slide", scene["figure"], headless, None)
    with pytest.raises(ValueError, match="takes no options"):
        make_generator("oracle-tempo", factor=1.2)


def test_the_calibration_study_validates_and_its_params_are_accepted(scene):
    """benchmarks/diagnostics_calibration.py's study: schema-valid, every model's params taken by its generator."""
    import importlib.util

    from pipeline.study.config import validate_study

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnostics_calibration.py"
    spec = importlib.util.spec_from_file_location("diagnostics_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = validate_study(module.study(6))
    assert config["sweep"]["models"] == list(module.MODELS)
    for name, model in config["models"].items():
        params = model.get("params", {})
        out = run(model["generator"], scene["figure"], scene["kp"], scene["masks"], **params)
        assert out.notes.get("params", {}) == params and (name == "oracle" or params)
