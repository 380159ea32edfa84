"""Procedural walking: a per-identity :class:`GaitStyle` turned into a body-independent :class:`Motion`.

Every joint angle is a smooth periodic function of the gait phase (0 = the left foot becoming planted, just
after heel strike; one cycle = two steps):

* thigh (angle from vertical), knee flexion and ankle dorsiflexion: 6-harmonic Fourier series of the mean
  curves of the 16 shipped CMU walking trials retargeted to the mean body (:func:`fit_leg_templates`). Their
  shape is the textbook one (thigh ~+34° → -18° → +34°; knee ~35° loading flexion, ~8° in late stance, ~70°
  peak in swing; ankle plantarflexion to ~-9° at push-off); taking them from real walking on *this* body
  model, rather than from clinical tables, is what makes both feet meet the floor consistently at the hand-
  over between steps (clinical curves with the capsule foot left the body stalling at every heel strike);
* pelvis rotation / obliquity / tilt, trunk lean / sway / counter-rotation, arm swing opposite to the legs,
  elbow flexion following the arm swing, arm abduction, toe-out and step width: sinusoids with amplitudes in
  the ranges of the gait literature (pelvis rotation ±2-7°, obliquity ±2-6°, arm swing ±12-30°).

An identity scales, shifts and re-phases each curve, reshapes the thigh's higher harmonics, changes the knee's
loading and swing peaks and the ankle's push-off, and adds a small left/right asymmetry, so identities differ
clearly in their joint trajectories while every sample stays a plausible walk. A swinging foot is kept at
least ~1.5 cm above the floor (two-bone IK on the mean body, where the curves alone would come closer).
Segment orientations are built in the world frame (thigh, trunk, arms, head), then converted to parent-
relative rotations: the stance thigh's heading stays fixed while the pelvis rotates (the foot does not twist
on the floor) and the head stays level while the trunk sways.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from pipeline.skeleton import SMPL24_INDEX
from pipeline.world.kinematics import (
    N_JOINTS,
    Motion,
    foot_contact,
    forward_kinematics,
    local_from_global,
    pose,
    reference_body,
    rot_x,
    rot_y,
    rot_z,
)

_TAU = 2.0 * np.pi
_HARMONICS = 6
# Mean and complex Fourier coefficients c_1..c_6 (deg) of thigh, knee and ankle: f(φ) = mean + Σ Re(c_k e^{i2πkφ}),
# from fit_leg_templates() on the shipped clips (rounded to 0.01°; tests check they still match the data).
_LEG_TEMPLATES: dict[str, tuple[float, tuple[complex, ...]]] = {
    "thigh": (13.14, (24.1 + 6.1j, -4.62 + 1.15j, 1.67 - 0.79j, -0.07 - 0.39j, -0.04 + 0.11j, -0.02 + 0.17j)),
    "knee": (36.01, (2.1 + 17.09j, -12.9 - 9.06j, 3.72 - 2.73j, 0.11 - 1.84j, 0.46 + 0.2j, 0.2 + 0.32j)),
    "ankle": (11.77, (3.73 - 5.85j, -0.53 + 8.6j, -2.41 - 0.01j, 1.79 + 0.7j, -1.06 + 1.65j, 0.17 + 0.18j)),
}


def fit_leg_templates(cycle: np.ndarray | None = None) -> dict[str, tuple[float, tuple[complex, ...]]]:
    """Fourier templates of mean thigh / knee / ankle curves [samples, 3] over one cycle (default: the mean
    of the shipped CMU clips, :func:`pipeline.world.mocap.mean_leg_cycle`)."""
    if cycle is None:
        from pipeline.world.mocap import mean_leg_cycle

        cycle = mean_leg_cycle()
    spectrum = np.fft.rfft(cycle, axis=0) / cycle.shape[0]
    return {
        name: (float(spectrum[0, k].real), tuple(complex(c) for c in 2.0 * spectrum[1 : _HARMONICS + 1, k]))
        for k, name in enumerate(("thigh", "knee", "ankle"))
    }


def _template(name: str, phase: np.ndarray, gains: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Template mean and its zero-mean part at ``phase``, harmonic k scaled by ``gains[k-1]``."""
    mean, coeffs = _LEG_TEMPLATES[name]
    c = np.asarray(coeffs) * (1.0 if gains is None else gains)
    k = np.arange(1, len(c) + 1)
    return mean, np.real(np.exp(1j * _TAU * np.outer(phase, k)) @ c)


def _bump(phase: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """A periodic raised-cosine bump: 1 at ``centre``, 0 beyond ``half_width`` cycles away, C1-smooth."""
    d = (phase - centre + 0.5) % 1.0 - 0.5
    return np.where(np.abs(d) < half_width, 0.5 * (1.0 + np.cos(np.pi * d / half_width)), 0.0)


@dataclass(frozen=True)
class GaitStyle:
    """One identity's way of walking. Angles in degrees, phases in gait cycles, cadence in steps/min."""

    cadence: float
    thigh_amp: float  # gain on the thigh's excursion (template ±26°)
    thigh_offset: float
    thigh_phase: float
    thigh_shape: tuple[float, float, float]  # gains on harmonics 2-4 of the thigh curve
    knee_offset: float
    knee_stance: float  # change of the loading-response flexion peak (template ~35°)
    knee_swing: float  # change of the swing flexion peak (template ~70°)
    knee_phase: float
    ankle_amp: float  # gain on the ankle's excursion
    ankle_offset: float
    ankle_push: float  # change of the push-off plantarflexion (negative: more push-off)
    ankle_phase: float
    pelvis_rotation: float
    pelvis_obliquity: float
    pelvis_tilt: float
    pelvis_tilt_amp: float
    trunk_lean: float
    trunk_bob: float
    trunk_sway: float
    trunk_rotation: float
    hip_adduction: float  # static: sets the step width
    lateral_shift: float  # extra stance-leg adduction: how far the pelvis shifts over the stance foot
    toe_out: float
    arm_swing: float
    arm_offset: float
    arm_phase: float
    arm_abduction: float
    elbow_flex: float
    elbow_swing: float
    head_forward: float
    head_pitch: float
    asym_amp: float  # right leg's gain 1 + asym_amp, left 1 - asym_amp
    asym_phase: float  # right leg's phase lead beyond half a cycle
    arm_asym: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> GaitStyle:
        """A random but always plausible adult walking style.

        Thigh and knee keep their relative timing within ±0.01 cycle and the thigh's shape within ±20 %:
        the feet meet the floor consistently only if hip and knee stay coordinated (wider ranges made the
        body surge and stall at each step); identities differ through everything else.
        """
        u = rng.uniform

        def n(mean: float, sd: float, lo: float, hi: float) -> float:
            return float(np.clip(rng.normal(mean, sd), lo, hi))

        return cls(
            cadence=float(u(95.0, 125.0)),
            thigh_amp=n(1.0, 0.05, 0.9, 1.12),
            thigh_offset=n(0.0, 2.0, -4.0, 4.0),
            thigh_phase=n(0.0, 0.004, -0.01, 0.01),
            thigh_shape=(n(1.0, 0.1, 0.8, 1.2), n(1.0, 0.1, 0.8, 1.2), n(1.0, 0.1, 0.8, 1.2)),
            knee_offset=n(0.0, 2.0, -4.0, 4.0),
            knee_stance=float(u(-10.0, 5.0)),
            knee_swing=float(u(-6.0, 6.0)),
            knee_phase=n(0.0, 0.004, -0.01, 0.01),
            ankle_amp=n(1.0, 0.1, 0.8, 1.2),
            ankle_offset=n(0.0, 2.0, -4.0, 4.0),
            ankle_push=float(u(-5.0, 5.0)),
            ankle_phase=n(0.0, 0.005, -0.012, 0.012),
            pelvis_rotation=float(u(2.0, 7.0)),
            pelvis_obliquity=float(u(2.0, 6.0)),
            pelvis_tilt=float(u(0.0, 8.0)),
            pelvis_tilt_amp=float(u(0.5, 2.0)),
            trunk_lean=float(u(0.0, 7.0)),
            trunk_bob=float(u(0.5, 2.0)),
            trunk_sway=float(u(1.0, 4.0)),
            trunk_rotation=float(u(2.0, 7.0)),
            hip_adduction=float(u(0.5, 4.0)),
            lateral_shift=float(u(0.8, 2.2)),
            toe_out=float(u(2.0, 12.0)),
            arm_swing=float(u(12.0, 30.0)),
            arm_offset=float(u(-8.0, 4.0)),
            arm_phase=n(0.02, 0.015, -0.02, 0.06),
            arm_abduction=float(u(4.0, 14.0)),
            elbow_flex=float(u(12.0, 35.0)),
            elbow_swing=float(u(4.0, 14.0)),
            head_forward=float(u(0.0, 8.0)),
            head_pitch=n(0.0, 3.0, -6.0, 8.0),
            asym_amp=n(0.0, 0.03, -0.07, 0.07),
            asym_phase=n(0.0, 0.006, -0.015, 0.015),
            arm_asym=n(0.0, 0.08, -0.2, 0.2),
        )

    def to_dict(self) -> dict[str, float | list[float]]:
        return {k: (list(v) if isinstance(v, tuple) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> GaitStyle:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"GaitStyle: unknown fields {sorted(unknown)}")
        missing = names - set(values)
        if missing:
            raise ValueError(f"GaitStyle: missing fields {sorted(missing)}")
        return cls(
            **{k: (tuple(float(x) for x in v) if k == "thigh_shape" else float(v)) for k, v in values.items()}
        )


# --------------------------------------------------------------------------------------------- curves


def thigh_angle(style: GaitStyle, phase: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Thigh angle from vertical (deg, + forward) at gait phase (cycles)."""
    gains = np.array([1.0, *style.thigh_shape, 1.0, 1.0])
    mean, wave = _template("thigh", np.asarray(phase) - style.thigh_phase, gains)
    return mean + style.thigh_offset + style.thigh_amp * gain * wave


def knee_angle(style: GaitStyle, phase: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Knee flexion (deg, always > 0: no hyper-extension)."""
    p = np.asarray(phase) - style.knee_phase
    mean, wave = _template("knee", p)
    raw = mean + style.knee_offset + gain * wave
    raw = raw + style.knee_stance * _bump(p, 0.08, 0.2) + gain * style.knee_swing * _bump(p, 0.7, 0.18)
    # A smooth floor at ~1°: the template's minimum is ~8° and styles shift it by at most ~6°.
    return 0.5 * (raw + np.sqrt(raw * raw + 4.0))


def ankle_angle(style: GaitStyle, phase: np.ndarray) -> np.ndarray:
    """Ankle dorsiflexion (deg, + = toes up)."""
    p = np.asarray(phase) - style.ankle_phase
    mean, wave = _template("ankle", p)
    return mean + style.ankle_offset + style.ankle_amp * wave + style.ankle_push * _bump(p, 0.6, 0.1)


# --------------------------------------------------------------------------------------------- synthesis


def _euler(yaw: np.ndarray, roll: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Ry(yaw) @ Rx(roll) @ Rz(pitch) from degrees: heading, sideways tilt, forward/backward swing."""
    return rot_y(np.deg2rad(yaw)) @ rot_x(np.deg2rad(roll)) @ rot_z(np.deg2rad(pitch))


def _trunk_globals(style: GaitStyle, phi: np.ndarray) -> dict[str, np.ndarray]:
    """Global rotations of pelvis, spine1-3, neck and head."""
    wave = np.cos(_TAU * phi)
    pelvis = (
        -style.pelvis_rotation * wave,  # left hip forward at left heel strike
        style.pelvis_obliquity * np.cos(_TAU * (phi - 0.18)),  # swing side drops in single support
        -(style.pelvis_tilt + style.pelvis_tilt_amp * np.cos(2 * _TAU * (phi - 0.1))),
    )
    thorax = (
        style.trunk_rotation * wave,  # counter-rotates against the pelvis
        -style.trunk_sway * np.cos(_TAU * (phi - 0.25)),  # leans over the stance foot
        -(style.trunk_lean + style.trunk_bob * np.cos(2 * _TAU * (phi - 0.05))),
    )
    out = {"pelvis": _euler(*pelvis)}
    for k, name in enumerate(("spine1", "spine2", "spine3"), start=1):
        f = k / 3.0
        out[name] = _euler(*(p + f * (t - p) for p, t in zip(pelvis, thorax, strict=True)))
    head_yaw = 0.25 * thorax[0]  # the gaze stays nearly on the walking line
    zero = np.zeros_like(phi)
    out["neck"] = _euler(head_yaw, zero, zero - style.head_forward)
    out["head"] = _euler(head_yaw, zero, zero - style.head_pitch)
    out["_thorax_yaw"] = thorax[0]  # type: ignore[assignment]
    return out


def _leg_globals(
    style: GaitStyle, phi: np.ndarray, side: str, lift: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Global rotations of one leg; ``lift`` [T] (leg lengths) raises the ankle, see :func:`_raise_ankle`."""
    sign = -1.0 if side == "left" else 1.0  # left is -Z: +X-rotation swings a left limb outwards
    gain = 1.0 + (style.asym_amp if side == "right" else -style.asym_amp)
    abduction = -(style.hip_adduction + style.lateral_shift * np.cos(_TAU * (phi - 0.3)))
    thigh, knee, ankle = thigh_angle(style, phi, gain), knee_angle(style, phi, gain), ankle_angle(style, phi)
    if lift is not None:
        thigh, knee, ankle = _raise_ankle(thigh, knee, ankle, lift)
    hip_rot = _euler(np.zeros_like(phi), -sign * abduction, thigh)
    knee_rot = hip_rot @ rot_z(-np.deg2rad(knee))
    # Toe-out turns the foot about the shank, so hip and knee still swing in the walking plane.
    ankle_rot = knee_rot @ rot_y(np.deg2rad(-sign * style.toe_out)) @ rot_z(np.deg2rad(ankle))
    return {
        f"{side}_hip": hip_rot,
        f"{side}_knee": knee_rot,
        f"{side}_ankle": ankle_rot,
        f"{side}_foot": ankle_rot,
    }


def _leg_lengths() -> tuple[float, float]:
    """Thigh and knee → ankle-joint length of the mean body with unit leg length."""
    body = reference_body(1.0)
    return body.thigh, body.shin + body.ankle_height - body.r_foot


def _raise_ankle(
    thigh: np.ndarray, knee: np.ndarray, ankle: np.ndarray, lift: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thigh, knee and ankle angles (deg) that put the mean body's ankle ``lift`` leg lengths higher in the
    walking plane (two-bone IK: more hip and knee flexion), the foot keeping its pitch."""
    upper, lower = _leg_lengths()
    th, kn = np.deg2rad(thigh), np.deg2rad(knee)
    x = upper * np.sin(th) + lower * np.sin(th - kn)
    y = -upper * np.cos(th) - lower * np.cos(th - kn) + lift
    d = np.clip(np.hypot(x, y), abs(upper - lower) + 1e-6, upper + lower - 1e-6)
    new_knee = np.arccos(np.clip((d**2 - upper**2 - lower**2) / (2.0 * upper * lower), -1.0, 1.0))
    new_thigh = np.arctan2(x, -y) + np.arcsin(np.clip(lower * np.sin(new_knee) / d, -1.0, 1.0))
    shank_change = (new_thigh - new_knee) - (th - kn)
    return np.rad2deg(new_thigh), np.rad2deg(new_knee), ankle - np.rad2deg(shank_change)


def _arm_globals(style: GaitStyle, phi: np.ndarray, side: str, trunk: dict) -> dict[str, np.ndarray]:
    sign = -1.0 if side == "left" else 1.0
    gain = 1.0 + (style.arm_asym if side == "right" else -style.arm_asym)
    # Each arm swings forward with the opposite leg: peak flexion half a cycle after its own heel strike.
    swing = np.cos(_TAU * (phi - 0.5 - style.arm_phase))
    flex = style.arm_offset + style.arm_swing * gain * swing
    shoulder = _euler(trunk["_thorax_yaw"], -sign * style.arm_abduction * np.ones_like(phi), flex)
    # The shoulder girdle protracts a little with the forward swing.
    collar = trunk["spine3"] @ rot_y(np.deg2rad(sign * 0.12 * style.arm_swing * gain * swing))
    elbow = shoulder @ rot_z(np.deg2rad(style.elbow_flex + style.elbow_swing * swing))
    wrist = elbow @ rot_z(np.deg2rad(np.full_like(phi, 8.0)))
    return {
        f"{side}_collar": collar,
        f"{side}_shoulder": shoulder,
        f"{side}_elbow": elbow,
        f"{side}_wrist": wrist,
        f"{side}_hand": wrist,
    }


# Minimum toe clearance of normal walking is ~1.5 cm; the mean body keeps at least this much (leg lengths)
# between the swinging foot's lowest point and the supporting foot's, so body-to-body differences in
# proportions (a few %) cannot make a swinging foot scuff the floor.
_SWING_CLEARANCE = 0.016
_STANCE_END = 0.58  # toe-off in the templates' phase (their stance lasts ~55 % from foot-planted)
_PHASE_GRID = 240


def global_rotations(style: GaitStyle, phase: np.ndarray, lift: np.ndarray | None = None) -> np.ndarray:
    """Global rotations [T, 24, 3, 3] of every joint at left-leg gait phases ``phase`` [T]; ``lift`` [T, 2]
    raises the left / right ankle (leg lengths)."""
    phi_right = phase + 0.5 + style.asym_phase
    trunk = _trunk_globals(style, phase)
    parts = {k: v for k, v in trunk.items() if not k.startswith("_")}
    lifts = (None, None) if lift is None else (lift[:, 0], lift[:, 1])
    parts |= _leg_globals(style, phase, "left", lifts[0]) | _leg_globals(style, phi_right, "right", lifts[1])
    parts |= _arm_globals(style, phase, "left", trunk) | _arm_globals(style, phi_right, "right", trunk)
    out = np.empty((len(phase), N_JOINTS, 3, 3))
    for name, j in SMPL24_INDEX.items():
        out[:, j] = parts[name]
    return out


def swing_lift(style: GaitStyle) -> np.ndarray:
    """Ankle lift [G, 2] (leg lengths) over one cycle of left-leg phase (G grid points) that keeps each
    swinging foot at least ``_SWING_CLEARANCE`` above the supporting foot on the mean body.

    The angle curves alone leave ~0.5-1 cm at the lowest point of the swing for some styles; the lift is
    zero wherever the curves already clear, ramps in and out with the swing, and is periodic.
    """
    grid = np.arange(_PHASE_GRID) / _PHASE_GRID
    body = reference_body(1.0)
    offsets = body.rest_offsets()
    offsets[0] = 0.0
    rel = forward_kinematics(offsets, local_from_global(global_rotations(style, grid)))[0]
    height = foot_contact(rel, body.r_foot)[0]
    lift = np.zeros((_PHASE_GRID, 2))
    for k, own in enumerate((grid, grid + 0.5 + style.asym_phase)):
        own = own % 1.0
        swing = (own - _STANCE_END) / (1.0 - _STANCE_END)  # 0 at toe-off … 1 at heel strike
        in_swing = (swing > 0.0) & (swing < 1.0)
        need = np.where(in_swing, _SWING_CLEARANCE * np.sin(np.pi * np.clip(swing, 0.0, 1.0)) ** 0.5, 0.0)
        gap = height[:, k] - height[:, 1 - k]
        lift[:, k] = np.where(in_swing, np.maximum(need - gap, 0.0), 0.0)
    # A periodic envelope (max, then mean over 1/24 cycle) keeps the correction smooth.
    size = _PHASE_GRID // 24 | 1
    envelope = maximum_filter1d(lift, size=size, axis=0, mode="wrap")
    return uniform_filter1d(envelope, size=size, axis=0, mode="wrap")


def _lift_at(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Periodic linear interpolation of a [G, 2] per-phase table at phases [T]."""
    grid = np.arange(_PHASE_GRID + 1) / _PHASE_GRID
    wrapped = np.concatenate([table, table[:1]])
    p = phase % 1.0
    return np.stack([np.interp(p, grid, wrapped[:, k]) for k in range(2)], axis=1)


def synthesize(style: GaitStyle, n_frames: int, fps: float, phase: float = 0.0) -> Motion:
    """``n_frames`` of steady walking at ``fps`` starting at gait ``phase`` (cycles; 0 = left heel strike).

    The root path is that of the mean body with unit leg length (stance-anchored), so it is in leg lengths.
    """
    if n_frames < 1:
        raise ValueError("synthesize: n_frames must be >= 1")
    t = np.arange(n_frames) / fps
    phi = phase + t * style.cadence / 120.0  # two steps per cycle
    local = local_from_global(global_rotations(style, phi, _lift_at(swing_lift(style), phi)))
    draft = Motion(fps=float(fps), local_rotations=local, root=np.zeros((n_frames, 3)))
    root = pose(reference_body(1.0), draft).joints[:, 0]
    meta = {"source": "procedural", "style": style.to_dict(), "phase": float(phase)}
    return Motion(fps=float(fps), local_rotations=local, root=root, name="procedural", meta=meta)
