"""Body-independent walking motions and the forward kinematics that pose a :class:`BodyShape` with them.

A :class:`Motion` holds only joint rotations (SMPL-24 order, each relative to its parent) and a pelvis path in
units of leg length, so one motion drives any body. :func:`pose` turns (body, motion) into world-space joints:

* forward kinematics on the body's own rest offsets (so bone lengths are always the body's);
* the feet are put on the floor every frame: the lowest point of either foot capsule (radius ``r_foot`` around
  the ankle → ball segment, as the renderer draws it) is at y = 0 (walking always has a foot on the floor);
* the horizontal pelvis path is *derived from the feet* ("stance anchoring"): the supporting foot is the lower
  one, its touching point is held still on the floor (the capsule rolls heel → ball without slipping) and the
  pelvis moves by the opposite of that point's motion relative to the pelvis. A body with longer legs therefore
  covers proportionally more ground with the same joint angles, and the stance foot does not slide. While the
  two feet are within a few millimetres of each other's height they share the support (smooth weights), so the
  pelvis velocity has no jump at the hand-over; a body whose proportions differ from the mean body the motion
  was made on slides its feet by about a centimetre per step there.

Coordinates as in :mod:`pipeline.world.body`: X forward, Y up, Z the walker's right; metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.spatial.transform import Rotation

from pipeline.skeleton import SMPL24_INDEX, SMPL24_PARENTS
from pipeline.world.body import _BASE_FRACTIONS, BodyShape

N_JOINTS = 24
_L_ANKLE, _R_ANKLE = SMPL24_INDEX["left_ankle"], SMPL24_INDEX["right_ankle"]
_L_FOOT, _R_FOOT = SMPL24_INDEX["left_foot"], SMPL24_INDEX["right_foot"]
FEET: tuple[tuple[int, int], tuple[int, int]] = ((_L_ANKLE, _L_FOOT), (_R_ANKLE, _R_FOOT))

# Support hand-over: a foot whose contact point is this much higher than the other one carries no weight.
# Swing-foot clearance in normal walking is >= ~1.5 cm, so 6 mm never lets a swinging foot pull the body.
_SUPPORT_BAND_M = 0.006
# Where along the foot capsule the contact sits moves from the heel end to the ball over this height
# difference between the two ends, which models the heel → flat → toe roll of the centre of pressure.
_ROLL_BAND_M = 0.01


@dataclass(frozen=True)
class Motion:
    """A walking motion that any body can perform.

    ``local_rotations[t, j]`` rotates joint j's children relative to its parent: the global rotation is
    ``R_j = R_parent @ local_rotations[t, j]`` and a child sits at ``joint_j + R_j @ offset_child`` (offsets from
    :meth:`BodyShape.rest_offsets`); ``local_rotations[t, 0]`` is the pelvis orientation in the world.
    ``root[t]`` is the pelvis position in units of leg length (x, z: path on the floor, y: height); :func:`pose`
    uses it only with ``progression="root"`` and otherwise derives the path from the feet.
    """

    fps: float
    local_rotations: np.ndarray  # [T, 24, 3, 3]
    root: np.ndarray  # [T, 3], leg lengths
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        rot, root = self.local_rotations, self.root
        if rot.ndim != 4 or rot.shape[1:] != (N_JOINTS, 3, 3):
            raise ValueError(f"Motion.local_rotations must be [T, 24, 3, 3], got {rot.shape}")
        if root.shape != (rot.shape[0], 3):
            raise ValueError(f"Motion.root must be [{rot.shape[0]}, 3], got {root.shape}")
        if self.fps <= 0:
            raise ValueError("Motion.fps must be positive")

    @property
    def n_frames(self) -> int:
        return int(self.local_rotations.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.n_frames - 1) / self.fps


@dataclass(frozen=True)
class Posed:
    """A body performing a motion, in the world frame (metres, y up, feet on the floor y = 0).

    ``orientations[t, j]`` is joint j's global rotation: its columns are the joint frame's forward (x), up (y)
    and right (z) axes, so the pelvis and head frames say where the torso front and the face point.
    ``support[t]`` is the share of the body weight on the (left, right) foot used to anchor the path.
    """

    fps: float
    joints: np.ndarray  # [T, 24, 3]
    orientations: np.ndarray  # [T, 24, 3, 3]
    support: np.ndarray  # [T, 2]

    @property
    def n_frames(self) -> int:
        return int(self.joints.shape[0])


# --------------------------------------------------------------------------------------------- rotations


def rot_x(angle: np.ndarray | float) -> np.ndarray:
    """Rotations [..., 3, 3] about +X (forward) by ``angle`` radians."""
    return _axis_rotation(angle, 0)


def rot_y(angle: np.ndarray | float) -> np.ndarray:
    """Rotations [..., 3, 3] about +Y (up) by ``angle`` radians; positive turns +Z (right) towards +X."""
    return _axis_rotation(angle, 1)


def rot_z(angle: np.ndarray | float) -> np.ndarray:
    """Rotations [..., 3, 3] about +Z (right) by ``angle`` radians; positive turns +X (forward) up."""
    return _axis_rotation(angle, 2)


def _axis_rotation(angle: np.ndarray | float, axis: int) -> np.ndarray:
    a = np.asarray(angle, dtype=float)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((*a.shape, 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def swing_rotation(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smallest rotations [..., 3, 3] turning directions u [..., 3] onto v [..., 3] (Rodrigues)."""
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.cross(u, v)
    sin = np.linalg.norm(axis, axis=-1)
    cos = np.clip(np.sum(u * v, axis=-1), -1.0, 1.0)
    # Antiparallel pairs have no unique smallest rotation: turn half a turn about any axis normal to u.
    helper = np.where(np.abs(u[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    fallback = np.cross(u, helper)
    axis = np.where((sin < 1e-9)[..., None], fallback, axis)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(sin, cos)
    return (
        Rotation.from_rotvec((axis * angle[..., None]).reshape(-1, 3))
        .as_matrix()
        .reshape(*u.shape[:-1], 3, 3)
    )


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Interpolate rotation matrices a → b [N, 3, 3] by weights w [N] along the shortest arc."""
    rel = Rotation.from_matrix(np.swapaxes(a, -1, -2) @ b).as_rotvec()
    return a @ Rotation.from_rotvec(rel * w[:, None]).as_matrix()


# --------------------------------------------------------------------------------------------- kinematics


def forward_kinematics(offsets: np.ndarray, local_rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joints [T, 24, 3] with the pelvis at the origin, and global rotations [T, 24, 3, 3]."""
    n = local_rotations.shape[0]
    glob = np.empty_like(local_rotations)
    joints = np.zeros((n, N_JOINTS, 3))
    glob[:, 0] = local_rotations[:, 0]
    for j in range(1, N_JOINTS):
        p = SMPL24_PARENTS[j]
        glob[:, j] = glob[:, p] @ local_rotations[:, j]
        joints[:, j] = joints[:, p] + glob[:, p] @ offsets[j]
    return joints, glob


def local_from_global(glob: np.ndarray) -> np.ndarray:
    """Parent-relative rotations [T, 24, 3, 3] from global ones (inverse of the rotation part of FK)."""
    local = np.empty_like(glob)
    local[:, 0] = glob[:, 0]
    for j in range(1, N_JOINTS):
        local[:, j] = np.swapaxes(glob[:, SMPL24_PARENTS[j]], -1, -2) @ glob[:, j]
    return local


def foot_contact(joints: np.ndarray, r_foot: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and foot (left, right): height of the capsule's lowest point [T, 2] and where along
    ankle → ball that point is [T, 2] (0 = heel end, 1 = ball end; soft so the roll is continuous)."""
    ankle_y = joints[:, [_L_ANKLE, _R_ANKLE], 1]
    ball_y = joints[:, [_L_FOOT, _R_FOOT], 1]
    height = np.minimum(ankle_y, ball_y) - r_foot
    roll = _smoothstep((ankle_y - ball_y) / _ROLL_BAND_M)
    return height, roll


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 for x <= -1, 1 for x >= 1, a C1 ramp in between."""
    u = np.clip(0.5 + 0.5 * x, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def contact_points(joints: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Points [T, 2, 3] on each foot's ankle → ball axis at parameter ``roll`` [T, 2]."""
    ankle = joints[:, [_L_ANKLE, _R_ANKLE]]
    ball = joints[:, [_L_FOOT, _R_FOOT]]
    return ankle + roll[..., None] * (ball - ankle)


def support_weights(height: np.ndarray) -> np.ndarray:
    """Share of support [T, 2] of the left and right foot from their contact heights [T, 2]."""
    left = _smoothstep((height[:, 1] - height[:, 0]) / _SUPPORT_BAND_M)
    return np.stack([left, 1.0 - left], axis=1)


def _contact_motion(
    rel: np.ndarray, glob: np.ndarray, roll: np.ndarray, heel_radius: float, r_foot: float
) -> np.ndarray:
    """Motion [T-1, 2, 3] from each frame to the next of the point where each foot touches the floor.

    The same material point of the foot at t and t+1 (roll taken mid-interval) moves with the joints; the
    foot touches the floor ``radius`` below that axis point and rolls, so the touching point moves by the
    axis point's motion plus the foot's turn ω × (0, -radius, 0): zero for pure rolling. The radius is
    ``r_foot`` at the ball and ``heel_radius`` at the heel end.
    """
    roll_mid = 0.5 * (roll[1:] + roll[:-1])
    moved = contact_points(rel[1:], roll_mid) - contact_points(rel[:-1], roll_mid)
    feet = glob[:, [_L_ANKLE, _R_ANKLE]]
    turn = Rotation.from_matrix((feet[1:] @ np.swapaxes(feet[:-1], -1, -2)).reshape(-1, 3, 3)).as_rotvec()
    down = np.zeros(moved.shape)
    down[..., 1] = -((1.0 - roll_mid) * heel_radius + roll_mid * r_foot)
    return moved + np.cross(turn.reshape(moved.shape), down)


def _stance_path(rel: np.ndarray, glob: np.ndarray, body: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal pelvis path [T, 2] (x, z) that keeps the supporting contact points still, and the weights."""
    height, roll = foot_contact(rel, body.r_foot)
    weights = support_weights(height)
    # The heel rolls on the real heel's curve, whose centre is about the anatomical ankle height above the
    # floor (the capsule's back end is smaller): this lets the ankle travel on through the heel rocker as in
    # real walking instead of braking the body at every heel strike.
    moved = _contact_motion(rel, glob, roll, max(body.ankle_height, body.r_foot), body.r_foot)
    # The pelvis moves by the opposite of the touching points' motion, weighted by how much each foot carries.
    w_mid = 0.5 * (weights[1:] + weights[:-1])
    step = -np.sum(w_mid[..., None] * moved, axis=1)[:, [0, 2]]
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
    return path, weights


def foot_slip(posed: Posed, body: BodyShape, planted_m: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal slip (m per frame) [T-1, 2] of the point where each drawn foot capsule touches the floor,
    and the mask [T-1, 2] of frame pairs in which that foot is planted (lowest point within ``planted_m``
    of the floor at both frames). A planted foot that rolls without sliding has zero slip."""
    height, roll = foot_contact(posed.joints, body.r_foot)
    moved = _contact_motion(posed.joints, posed.orientations, roll, body.r_foot, body.r_foot)
    slip = np.linalg.norm(moved[..., [0, 2]], axis=-1)
    planted = (height[1:] < planted_m) & (height[:-1] < planted_m)
    return slip, planted


def pose(body: BodyShape, motion: Motion, progression: Literal["stance", "root"] = "stance") -> Posed:
    """World-space joints of ``body`` performing ``motion``, feet on the floor.

    ``progression="stance"`` (default) derives the horizontal path from the supporting foot so it never slides
    and the distance covered scales with the body's own legs; ``"root"`` follows ``motion.root`` scaled by the
    body's leg length instead (the motion's own path, e.g. to compare with mocap). The path starts at
    ``motion.root[0]`` (scaled) either way; the height always comes from putting the lowest foot on the floor.
    """
    offsets = body.rest_offsets()
    offsets[0] = 0.0
    rel, glob = forward_kinematics(offsets, motion.local_rotations)
    height, _ = foot_contact(rel, body.r_foot)
    pelvis = np.zeros((motion.n_frames, 3))
    pelvis[:, 1] = -np.min(height, axis=1)
    start = motion.root[0, [0, 2]] * body.leg_length
    if progression == "stance":
        path, weights = _stance_path(rel, glob, body)
        pelvis[:, [0, 2]] = start + path
    elif progression == "root":
        pelvis[:, [0, 2]] = motion.root[:, [0, 2]] * body.leg_length
        weights = support_weights(height)
    else:
        raise ValueError(f"unknown progression {progression!r}")
    return Posed(fps=motion.fps, joints=rel + pelvis[:, None, :], orientations=glob, support=weights)


def place(posed: Posed, heading_deg: float, offset_xyz: tuple[float, float, float] | np.ndarray) -> Posed:
    """Turn a posed walk about the vertical axis through the origin, then shift it.

    ``heading_deg`` is a right-handed turn about +Y: 0 keeps walking along +X, 90 walks along -Z (towards the
    walker's original left), 180 walks back along -X. ``offset_xyz`` is added after the turn (metres).
    """
    turn = rot_y(np.deg2rad(heading_deg))
    joints = posed.joints @ turn.T + np.asarray(offset_xyz, dtype=float)
    orientations = turn @ posed.orientations
    return Posed(fps=posed.fps, joints=joints, orientations=orientations, support=posed.support.copy())


# --------------------------------------------------------------------------------------------- timing


def resample(motion: Motion, fps: float, n_frames: int | None = None) -> Motion:
    """The motion at another frame rate: rotations slerped, root linearly interpolated between source frames.

    ``n_frames`` defaults to as many as the source covers; asking for more raises (loop or synthesise longer).
    """
    available = int(np.floor(motion.duration * fps + 1e-6)) + 1
    n = available if n_frames is None else int(n_frames)
    if n < 1 or n > available:
        raise ValueError(
            f"resample: {n} frames at {fps} fps need {(n - 1) / fps:.3f} s, motion has {motion.duration:.3f} s"
        )
    src = np.minimum(np.arange(n) * (motion.fps / fps), motion.n_frames - 1)
    lo = (
        np.minimum(np.floor(src).astype(int), motion.n_frames - 2)
        if motion.n_frames > 1
        else np.zeros(n, int)
    )
    hi = np.minimum(lo + 1, motion.n_frames - 1)
    w = src - lo
    rot_lo = motion.local_rotations[lo].reshape(-1, 3, 3)
    rot_hi = motion.local_rotations[hi].reshape(-1, 3, 3)
    rot = _slerp(rot_lo, rot_hi, np.repeat(w, N_JOINTS)).reshape(n, N_JOINTS, 3, 3)
    root = motion.root[lo] + w[:, None] * (motion.root[hi] - motion.root[lo])
    return Motion(fps=float(fps), local_rotations=rot, root=root, name=motion.name, meta=dict(motion.meta))


# --------------------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class GaitEvents:
    """Heel strikes (first frame of each stance phase) and stance masks [T] of the left and right foot."""

    fps: float
    left_strikes: np.ndarray
    right_strikes: np.ndarray
    left_stance: np.ndarray
    right_stance: np.ndarray

    def cadence(self) -> float:
        """Steps per minute from the heel strikes of both feet (one step = one heel strike)."""
        strikes = np.sort(np.concatenate([self.left_strikes, self.right_strikes]))
        if len(strikes) < 2:
            return float("nan")
        return 60.0 * self.fps * (len(strikes) - 1) / float(strikes[-1] - strikes[0])


def gait_events(ankle: np.ndarray, ball: np.ndarray, pelvis: np.ndarray, fps: float) -> GaitEvents:
    """Heel strikes from foot trajectories (any length unit): a foot is in stance while the slower of its ankle
    and ball moves horizontally at under 40 % of the mean walking speed.

    ``ankle`` and ``ball`` are [T, 2, 3] (left, right), ``pelvis`` [T, 3]. Swinging feet move at 1-3x the
    walking speed and planted ones at ~0, so the threshold sits far from both. Positions are averaged over
    0.1 s first because marker jitter in mocap makes planted feet "move" at up to half the walking speed from
    one frame to the next; stance or swing runs shorter than 0.1 s are noise (real ones last >= 0.3 s).
    """
    dt = 1.0 / fps
    size = max(1, round(0.1 * fps)) | 1
    speed = np.linalg.norm(np.gradient(pelvis[:, [0, 2]], dt, axis=0), axis=1).mean()
    foot_speed = np.minimum(_horizontal_speed(ankle, dt, size), _horizontal_speed(ball, dt, size))
    stance = foot_speed < 0.4 * speed
    min_run = max(1, round(0.1 * fps))
    stance = np.stack([_drop_short_runs(stance[:, k], min_run) for k in range(2)], axis=1)
    strikes = [np.flatnonzero(stance[1:, k] & ~stance[:-1, k]) + 1 for k in range(2)]
    return GaitEvents(fps, strikes[0], strikes[1], stance[:, 0], stance[:, 1])


def _horizontal_speed(points: np.ndarray, dt: float, size: int) -> np.ndarray:
    smooth = uniform_filter1d(points[..., [0, 2]], size=size, axis=0, mode="nearest")
    return np.linalg.norm(np.gradient(smooth, dt, axis=0), axis=-1)


def _drop_short_runs(mask: np.ndarray, min_run: int) -> np.ndarray:
    """Flip runs of equal values shorter than ``min_run`` frames (except at the ends) to their neighbours."""
    out = mask.copy()
    edges = np.flatnonzero(np.diff(out.astype(int))) + 1
    bounds = np.concatenate([[0], edges, [len(out)]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if a > 0 and b < len(out) and b - a < min_run:
            out[a:b] = not out[a]
    return out


def posed_gait_events(posed: Posed) -> GaitEvents:
    """:func:`gait_events` of a posed walk."""
    j = posed.joints
    return gait_events(j[:, [_L_ANKLE, _R_ANKLE]], j[:, [_L_FOOT, _R_FOOT]], j[:, 0], posed.fps)


def reference_body(leg_length: float = 1.0) -> BodyShape:
    """The anthropometric-mean body scaled to a given leg length (the unit of :attr:`Motion.root`)."""
    fractions = dict(_BASE_FRACTIONS)
    height = leg_length / (fractions["thigh"] + fractions["shin"] + fractions["ankle_height"])
    s = height / 1.75
    lengths = {k: v * height for k, v in fractions.items() if k != "pelvis_height"}
    radii = {
        "r_head": 0.095 * s, "r_neck": 0.050 * s, "r_chest": 0.150 * s, "r_waist": 0.130 * s,
        "r_hips": 0.140 * s, "r_thigh": 0.075 * s, "r_shin": 0.052 * s, "r_foot": 0.040 * s,
        "r_upper_arm": 0.045 * s, "r_forearm": 0.036 * s, "r_hand": 0.032 * s,
    }  # fmt: skip
    return BodyShape(height=height, build=1.0, **lengths, **radii)
