"""Forward kinematics (pipeline.world.kinematics) and procedural gait (pipeline.world.motion)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from pipeline.skeleton import SMPL24_INDEX, SMPL24_PARENTS
from pipeline.world.body import BodyShape
from pipeline.world.kinematics import (
    Motion,
    Posed,
    foot_contact,
    foot_slip,
    place,
    pose,
    posed_gait_events,
    reference_body,
    resample,
    rot_y,
)
from pipeline.world.motion import GaitStyle, synthesize

FPS = 30.0
MOVING_JOINTS = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "spine3", "neck",
)  # fmt: skip
# Three bodies: the mean one and two sampled ones with their own proportions.
BODIES = (
    reference_body(0.93),
    BodyShape.sample(np.random.default_rng(1)),
    BodyShape.sample(np.random.default_rng(2)),
)


@cache
def style(seed: int) -> GaitStyle:
    return GaitStyle.sample(np.random.default_rng(seed))


@cache
def walk(seed: int, n_frames: int = 150) -> Motion:
    return synthesize(style(seed), n_frames, FPS)


def identity_motion(n_frames: int = 4) -> Motion:
    rotations = np.broadcast_to(np.eye(3), (n_frames, 24, 3, 3)).copy()
    return Motion(fps=FPS, local_rotations=rotations, root=np.zeros((n_frames, 3)))


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    parents = np.array(SMPL24_PARENTS[1:])
    return np.linalg.norm(joints[..., 1:, :] - joints[..., parents, :], axis=-1)


def stance_slips(posed: Posed, body: BodyShape) -> np.ndarray:
    """Total horizontal slip (m) of the supporting foot over each complete stance phase."""
    slip, _ = foot_slip(posed, body)
    support = 0.5 * (posed.support[1:] + posed.support[:-1]) > 0.5
    totals = []
    for k in range(2):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], support[:, k].astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a > 0 and b < len(support):  # stances cut by the clip's ends are incomplete
                totals.append(slip[a:b, k].sum())
    return np.array(totals)


# --------------------------------------------------------------------------------------------- kinematics


@pytest.mark.parametrize("body", BODIES)
def test_rest_pose_reproduces_rest_joints(body: BodyShape) -> None:
    posed = pose(body, identity_motion())
    np.testing.assert_allclose(
        posed.joints, np.broadcast_to(body.rest_joints(), posed.joints.shape), atol=1e-9
    )
    np.testing.assert_allclose(
        posed.orientations, np.broadcast_to(np.eye(3), posed.orientations.shape), atol=1e-12
    )


@pytest.mark.parametrize("body", BODIES)
def test_rest_pose_feet_rest_on_the_floor(body: BodyShape) -> None:
    # The drawn foot capsule (radius r_foot, ankle → ball) must touch the floor, not sink into it or float.
    lowest, _ = foot_contact(body.rest_joints()[None], body.r_foot)
    np.testing.assert_allclose(lowest, 0.0, atol=1e-12)


def test_motion_validates_shapes() -> None:
    with pytest.raises(ValueError):
        Motion(fps=FPS, local_rotations=np.zeros((5, 23, 3, 3)), root=np.zeros((5, 3)))
    with pytest.raises(ValueError):
        Motion(fps=FPS, local_rotations=np.zeros((5, 24, 3, 3)), root=np.zeros((4, 3)))


@pytest.mark.parametrize("body", BODIES)
def test_bone_lengths_preserved_under_motion(body: BodyShape) -> None:
    posed = pose(body, walk(0))
    expected = np.linalg.norm(body.rest_offsets()[1:], axis=1)
    np.testing.assert_allclose(
        bone_lengths(posed.joints), np.broadcast_to(expected, (posed.n_frames, 23)), atol=1e-9
    )


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("seed", [0, 3])
def test_feet_touch_the_floor_every_frame(body: BodyShape, seed: int) -> None:
    lowest, _ = foot_contact(pose(body, walk(seed)).joints, body.r_foot)
    assert np.all(lowest >= -1e-9), "a foot capsule goes through the floor"
    np.testing.assert_allclose(lowest.min(axis=1), 0.0, atol=1e-6)


def test_stance_foot_barely_slides() -> None:
    # A stance lasts ~0.6 s while the body travels ~70 cm. A supporting foot that slides by <= 1.5 cm over a
    # whole stance (median; ~2 % of that travel, about one pixel for a 1.7 m walker 256 px tall) and by
    # < 5 cm in the worst 5 % (the hand-over between feet on bodies whose proportions differ most from the
    # mean body the angles were fitted on) reads as planted.
    totals = np.concatenate(
        [stance_slips(pose(body, walk(seed)), body) for body in BODIES for seed in range(6)]
    )
    assert len(totals) > 60
    assert np.median(totals) < 0.015
    assert np.percentile(totals, 95) < 0.05


def test_slide_metric_detects_sliding() -> None:
    # Negative control: the same walk driven by a root path 30 % too long makes the planted feet skate.
    body = BODIES[0]
    motion = walk(0)
    skating = replace(motion, root=motion.root * np.array([1.3, 1.0, 1.3]))
    totals = stance_slips(pose(body, skating, progression="root"), body)
    assert np.median(totals) > 0.05


def test_longer_legs_cover_proportionally_more_ground() -> None:
    body = BODIES[1]
    values = body.to_dict()
    big = BodyShape.from_dict({k: v * 1.2 if k != "build" else v for k, v in values.items()})
    motion = walk(2)
    small_path = pose(body, motion).joints[:, 0]
    big_path = pose(big, motion).joints[:, 0]
    ratio = (big_path[-1, 0] - big_path[0, 0]) / (small_path[-1, 0] - small_path[0, 0])
    # Exactly 1.2 but for the support hand-over bands, which are fixed in millimetres.
    assert ratio == pytest.approx(1.2, rel=2e-3)


def test_place_turns_and_shifts() -> None:
    body = BODIES[0]
    posed = pose(body, walk(1))
    moved = place(posed, 90.0, (1.0, 0.0, -2.0))
    displacement = moved.joints[-1, 0] - moved.joints[0, 0]
    assert displacement[2] < -1.0 and abs(displacement[0]) < 0.1  # heading 90° walks towards -Z
    np.testing.assert_allclose(
        moved.joints[0, 0, [0, 2]], [1.0 + posed.joints[0, 0, 2], -2.0 - posed.joints[0, 0, 0]]
    )
    np.testing.assert_allclose(bone_lengths(moved.joints), bone_lengths(posed.joints), atol=1e-9)
    np.testing.assert_allclose(moved.orientations, rot_y(np.pi / 2) @ posed.orientations, atol=1e-12)
    np.testing.assert_allclose(moved.joints[..., 1], posed.joints[..., 1])


def test_resample_interpolates_and_refuses_to_extrapolate() -> None:
    motion = walk(4, 31)
    double = resample(motion, 2 * FPS)
    assert double.n_frames == 61 and double.fps == 2 * FPS
    np.testing.assert_allclose(double.local_rotations[::2], motion.local_rotations, atol=1e-9)
    np.testing.assert_allclose(double.root[1::2], 0.5 * (motion.root[1:] + motion.root[:-1]), atol=1e-12)
    # A mid frame lies on the arc between its neighbours: equal angles to both.
    a, mid, b = motion.local_rotations[3, 4], double.local_rotations[7, 4], motion.local_rotations[4, 4]
    angle = lambda r1, r2: np.arccos(np.clip((np.trace(r1.T @ r2) - 1) / 2, -1, 1))  # noqa: E731
    assert angle(a, mid) == pytest.approx(angle(mid, b), abs=1e-9)
    assert resample(motion, 10.0).n_frames == 11
    with pytest.raises(ValueError):
        resample(motion, FPS, 32)


# --------------------------------------------------------------------------------------------- gait styles


def test_style_sampling_is_deterministic_and_serialisable() -> None:
    a, b = style(7), GaitStyle.sample(np.random.default_rng(7))
    assert a == b
    restored = GaitStyle.from_dict(json.loads(json.dumps(a.to_dict())))
    assert restored == a
    with pytest.raises(ValueError):
        GaitStyle.from_dict({**a.to_dict(), "bogus": 1.0})
    with pytest.raises(ValueError):
        GaitStyle.from_dict({k: v for k, v in a.to_dict().items() if k != "cadence"})


def test_same_style_same_motion_different_styles_differ() -> None:
    np.testing.assert_array_equal(synthesize(style(5), 60, FPS).local_rotations, walk(5, 60).local_rotations)
    body = BODIES[0]
    base = pose(body, walk(5, 60)).joints
    base_rel = base - base[:, :1]
    moving = [SMPL24_INDEX[n] for n in MOVING_JOINTS]
    for other in (6, 8, 9, 13, 14):
        rel_angle = (
            np.swapaxes(walk(5, 60).local_rotations[:, moving], -1, -2)
            @ walk(other, 60).local_rotations[:, moving]
        )
        angles = np.degrees(np.arccos(np.clip((np.trace(rel_angle, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))
        # 3° on average over the main joints and the whole walk: far above any numerical noise (0 for equal styles)
        assert angles.mean() > 3.0, "different identities should move their joints differently"
        joints = pose(body, walk(other, 60)).joints
        rms = np.sqrt(np.mean(np.sum((joints - joints[:, :1] - base_rel) ** 2, axis=-1)))
        assert rms > 0.03


def test_same_style_on_different_bodies_gives_the_same_joint_angles() -> None:
    motion = walk(2)
    first, second = (pose(body, motion) for body in BODIES[1:])
    np.testing.assert_array_equal(first.orientations, second.orientations)
    assert np.abs(first.joints - second.joints).max() > 0.02  # only the positions change


def test_phase_shifts_the_same_walk() -> None:
    s = style(3)
    frames = 7
    phase = frames * s.cadence / 120.0 / FPS  # exactly `frames` frames into the walk
    np.testing.assert_allclose(
        synthesize(s, 20, FPS, phase=phase).local_rotations,
        synthesize(s, 20 + frames, FPS).local_rotations[frames:],
        atol=1e-9,
    )


def knee_flexion(local_rotations: np.ndarray, side: str) -> np.ndarray:
    """Knee flexion (deg) of a procedural motion, whose knee is a hinge about its local Z (flexion = -Z)."""
    r = local_rotations[:, SMPL24_INDEX[f"{side}_knee"]]
    return -np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))


@pytest.mark.parametrize("seed", range(10, 30))
def test_every_style_walks_plausibly(seed: int) -> None:
    s = style(seed)
    motion = synthesize(s, 120, FPS)
    body = BodyShape.sample(np.random.default_rng(1000 + seed))
    posed = pose(body, motion)
    for side in ("left", "right"):
        knee = knee_flexion(motion.local_rotations, side)
        assert knee.min() >= 0.0, "hyper-extended knee"
        assert 50.0 < knee.max() < 85.0  # swing flexion
        thigh = posed.joints[:, SMPL24_INDEX[f"{side}_knee"]] - posed.joints[:, SMPL24_INDEX[f"{side}_hip"]]
        thigh_angle = np.degrees(np.arctan2(thigh[:, 0], -thigh[:, 1]))
        assert 35.0 < np.ptp(thigh_angle) < 70.0  # hip flexion-extension range
        arm = (
            posed.joints[:, SMPL24_INDEX[f"{side}_elbow"]] - posed.joints[:, SMPL24_INDEX[f"{side}_shoulder"]]
        )
        assert 15.0 < np.ptp(np.degrees(np.arctan2(arm[:, 0], -arm[:, 1]))) < 75.0  # arm swing
    cadence = posed_gait_events(posed).cadence()
    assert cadence == pytest.approx(s.cadence, abs=3.0)
    speed = (posed.joints[-1, 0, 0] - posed.joints[0, 0, 0]) / motion.duration
    assert 0.7 < speed < 2.0  # m/s: normal walking
    assert abs(posed.joints[-1, 0, 2] - posed.joints[0, 0, 2]) < 0.15  # straight ahead
    bob = np.ptp(posed.joints[:, 0, 1])
    assert 0.01 < bob < 0.09  # vertical pelvis excursion


@pytest.mark.parametrize("seed", range(6))
def test_swinging_foot_clears_the_floor(seed: int) -> None:
    body = BODIES[0]
    posed = pose(body, walk(seed))
    lowest, _ = foot_contact(posed.joints, body.r_foot)
    for k in range(2):
        swinging = (posed.support[:, k] == 0.0) & (lowest[:, k] > 0.02)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], (posed.support[:, k] == 0.0).astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a > 0 and b < posed.n_frames and b - a > 6:
                core = slice(a + (b - a) // 4, b - (b - a) // 4)  # mid-swing, away from lift-off and landing
                assert lowest[core, k].min() > 0.008, "the swinging foot brushes the floor"
        assert swinging.any()
