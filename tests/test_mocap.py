"""CMU mocap readers, retargeting to SMPL-24 and looping (pipeline.world.mocap)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from pipeline.skeleton import SMPL24_PARENTS
from pipeline.world.body import BodyShape
from pipeline.world.kinematics import (
    Posed,
    foot_contact,
    foot_slip,
    pose,
    posed_gait_events,
    reference_body,
)
from pipeline.world.mocap import (
    DATA_DIR,
    list_clips,
    load_clip,
    read_asf_amc,
    read_bvh,
)
from pipeline.world.motion import _LEG_TEMPLATES, fit_leg_templates

CLIPS = [name for names in list_clips().values() for name in names]
BODY = BodyShape.sample(np.random.default_rng(11))
MEAN_BODY = reference_body(0.9)
FPS = 30.0


@cache
def posed(name: str, body_key: str = "sampled", n_frames: int = 150) -> Posed:
    body = BODY if body_key == "sampled" else MEAN_BODY
    return pose(body, load_clip(name).motion(FPS, n_frames))


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rel = np.swapaxes(a, -1, -2) @ b
    return np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0))


# --------------------------------------------------------------------------------------------- data


def test_clips_ship_with_the_package() -> None:
    clips = list_clips()
    assert sorted(clips, key=int) == ["02", "05", "06", "07", "08", "16", "35", "104"]
    assert len(CLIPS) == 16
    files = sorted(p.name for p in DATA_DIR.iterdir())
    assert "35.asf" in files and "ATTRIBUTION.md" in files
    for path in DATA_DIR.iterdir():
        assert path.stat().st_size < 5 * 2**20
    text = (DATA_DIR / "ATTRIBUTION.md").read_text()
    assert "The data used in this project was obtained from mocap.cs.cmu.edu." in text
    assert "NSF EIA-0196217" in text
    for name in CLIPS:
        assert name in text


# --------------------------------------------------------------------------------------------- readers

_TINY_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 2 0 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0083333
0 0 0 0 0 0 0 0 0
5 6 7 90 0 0 0 90 0
"""


def test_bvh_reader_channels_euler_order_and_crlf(tmp_path) -> None:
    path = tmp_path / "tiny.bvh"
    path.write_bytes(_TINY_BVH.replace("\n", "\r\n").encode())
    rig = read_bvh(path)
    assert rig.names == ("Hips", "Arm", "Arm_end")
    pos, _ = rig.forward()
    np.testing.assert_allclose(pos[0], [[0, 0, 0], [1, 0, 0], [3, 0, 0]], atol=1e-12)
    # Frame 1: root moved to (5, 6, 7) and turned 90° about Z (x → y); the arm turned 90° about its X
    # (a no-op for a bone along x), so the end site lies along +y from the arm joint.
    np.testing.assert_allclose(pos[1], [[5, 6, 7], [5, 7, 7], [5, 9, 7]], atol=1e-9)


def test_bvh_channel_order_matters(tmp_path) -> None:
    # Z then X (intrinsic) differs from X then Z: the reader must follow the declared order.
    text = _TINY_BVH.replace(
        "0 0 0 0 0 0 0 0 0\n5 6 7 90 0 0 0 90 0", "0 0 0 0 0 0 90 90 0\n0 0 0 0 0 0 90 90 0"
    )
    path = tmp_path / "order.bvh"
    path.write_text(text)
    pos, _ = read_bvh(path).forward()
    # Rz(90) @ Rx(90) sends the bone (2, 0, 0) to (0, 2, 0); Rx(90) @ Rz(90) would send it to (0, 0, 2).
    np.testing.assert_allclose(pos[0, 2] - pos[0, 1], [0, 2, 0], atol=1e-9)


def test_asf_amc_reader_builds_the_subject_skeleton() -> None:
    rig = read_asf_amc(DATA_DIR / "35.asf", DATA_DIR / "35_01.amc")
    assert rig.local.shape[:2] == (358, len(rig.names))
    zero, _ = rig.forward(zero_pose=True)
    femur = zero[0, rig.index("ltibia")] - zero[0, rig.index("lfemur")]
    np.testing.assert_allclose(np.linalg.norm(femur), 7.41015, rtol=1e-6)
    np.testing.assert_allclose(femur / np.linalg.norm(femur), [0.34202, -0.939693, 0.0], atol=1e-5)
    rotations = rig.local.reshape(-1, 3, 3)
    np.testing.assert_allclose(
        rotations @ np.swapaxes(rotations, -1, -2), np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9
    )


# --------------------------------------------------------------------------------------------- every clip


@pytest.mark.parametrize("name", CLIPS)
def test_clip_retargets_to_the_target_body(name: str) -> None:
    clip = load_clip(name)
    motion = clip.motion(FPS, 150)
    assert motion.local_rotations.shape == (150, 24, 3, 3) and motion.fps == FPS
    walk = posed(name)
    parents = np.array(SMPL24_PARENTS[1:])
    lengths = np.linalg.norm(walk.joints[:, 1:] - walk.joints[:, parents], axis=-1)
    expected = np.linalg.norm(BODY.rest_offsets()[1:], axis=1)
    np.testing.assert_allclose(lengths, np.broadcast_to(expected, lengths.shape), atol=1e-9)
    lowest, _ = foot_contact(walk.joints, BODY.r_foot)
    assert np.all(lowest >= -1e-9)
    np.testing.assert_allclose(lowest.min(axis=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", CLIPS)
def test_clip_walks_along_x_at_a_human_cadence(name: str) -> None:
    clip = load_clip(name)
    walk = posed(name)
    travel = walk.joints[-1, 0] - walk.joints[0, 0]
    assert travel[0] > 2.0  # 5 s of walking
    assert abs(np.degrees(np.arctan2(travel[2], travel[0]))) < 5.0
    # Cadence measured from foot contacts, in the source and in the retargeted walk.
    assert 90.0 < clip.cadence() < 135.0
    assert posed_gait_events(walk).cadence() == pytest.approx(clip.cadence(), abs=4.0)
    assert 1.1 < clip.stride_length < 2.0  # leg lengths per gait cycle
    speed = travel[0] / (walk.n_frames - 1) * FPS / BODY.leg_length
    assert speed == pytest.approx(clip.speed(), rel=0.12)  # stance-anchored walk keeps the source's pace


def stance_slips(walk: Posed, body: BodyShape) -> np.ndarray:
    slip, _ = foot_slip(walk, body)
    support = 0.5 * (walk.support[1:] + walk.support[:-1]) > 0.5
    totals = []
    for k in range(2):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], support[:, k].astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a > 0 and b < len(support):
                totals.append(slip[a:b, k].sum())
    return np.array(totals)


def test_retargeted_stance_feet_barely_slide() -> None:
    # Same criterion as for procedural walks (see test_world_motion): a supporting foot that slides by at most
    # ~1.5 cm over a stance (median) and under 5 cm in the worst 5 % reads as planted.
    for key, body in (("sampled", BODY), ("mean", MEAN_BODY)):
        totals = np.concatenate([stance_slips(posed(name, key), body) for name in CLIPS])
        assert len(totals) > 100
        assert np.median(totals) < 0.015
        assert np.percentile(totals, 95) < 0.05


# --------------------------------------------------------------------------------------------- looping


# Clips whose raw end-to-start pose mismatch would stand out (8-18° in one frame against <= 5° of normal
# frame-to-frame motion), so the check can fail; wrists and hands are left out (their markers are noisy).
@pytest.mark.parametrize("name", ["02_01", "05_01", "06_01", "16_15", "16_31", "35_01"])
def test_loops_have_no_jump_at_cycle_boundaries(name: str) -> None:
    clip = load_clip(name)
    a, b = clip.loop
    n = a + 3 * (b - a) + 5  # the lead-in and three loops at the source rate
    rotations, root = clip.stream(n)
    body = slice(0, 20)
    change = rotation_angle(rotations[1:, body], rotations[:-1, body]).max(
        axis=1
    )  # largest joint turn per frame
    seams = np.array([a + k * (b - a) - 1 for k in (1, 2, 3)])  # frame b-1 → next loop's frame a
    assert change[seams].max() <= np.percentile(np.delete(change, seams), 99)
    raw = np.concatenate([clip.local_rotations[:b], clip.local_rotations[a:b]])[:, body]
    raw_change = rotation_angle(raw[1:], raw[:-1]).max(axis=1)
    assert raw_change[b - 1] > np.percentile(np.delete(raw_change, b - 1), 99)  # would have jumped
    steps = np.linalg.norm(np.diff(root[:, [0, 2]], axis=0), axis=1)
    assert steps[seams].max() <= np.percentile(np.delete(steps, seams), 99.5) + 1e-9
    # The looped stream keeps walking forward.
    assert root[-1, 0] - root[0, 0] > 2.5 * (clip.loop_root[-1, 0] - clip.loop_root[0, 0])


def test_long_motion_loops_and_keeps_walking_straight() -> None:
    clip = load_clip("08_01")  # 2.3 s of steady walking
    motion = clip.motion(25.0, 400)  # 16 s
    assert motion.n_frames == 400
    walk = pose(BODY, motion)
    travel = walk.joints[-1, 0] - walk.joints[0, 0]
    assert travel[0] > 15.0 and abs(travel[2]) < 0.05 * travel[0]
    pelvis_step = np.diff(walk.joints[:, 0, 0])
    assert pelvis_step.min() > 0.0  # never goes backwards


def test_start_frame_offsets_the_same_stream() -> None:
    clip = load_clip("07_02")
    full = clip.motion(FPS, 60)
    later = clip.motion(FPS, 50, start_frame=10)
    np.testing.assert_allclose(later.local_rotations, full.local_rotations[10:], atol=1e-9)
    np.testing.assert_allclose(
        later.root[:, [0, 2]], full.root[10:, [0, 2]] - full.root[10, [0, 2]], atol=1e-12
    )


def test_subjects_move_differently() -> None:
    a = load_clip("07_01").motion(FPS, 60).local_rotations
    b = load_clip("08_01").motion(FPS, 60).local_rotations
    legs = [1, 2, 4, 5]
    assert np.degrees(rotation_angle(a[:, legs], b[:, legs])).mean() > 5.0


def test_procedural_leg_templates_match_the_clips() -> None:
    # The procedural gait's thigh / knee / ankle templates are the Fourier fit of these clips' mean cycle.
    fitted = fit_leg_templates()
    for name, (mean, coeffs) in _LEG_TEMPLATES.items():
        assert fitted[name][0] == pytest.approx(mean, abs=0.02)
        np.testing.assert_allclose(np.array(fitted[name][1]), np.array(coeffs), atol=0.02)
