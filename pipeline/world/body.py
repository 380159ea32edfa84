"""Body shape of a synthetic-world identity: segment lengths and thicknesses.

Coordinate convention for the whole world package (metres): X = the walker's forward direction,
Y = up, Z = the walker's right (right-handed: X × Y = Z). The rest pose stands upright with arms
hanging down, palms in; joint order is SMPL-24 (:mod:`pipeline.skeleton`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from pipeline.skeleton import SMPL24_INDEX, SMPL24_PARENTS

# Segment lengths as fractions of standing height (anthropometric averages, Winter's tables, rounded).
_BASE_FRACTIONS = {
    "pelvis_height": 0.530,  # floor → hip joint centre
    # Half the distance between the hip JOINT centres (~0.1 H apart; Winter's 0.191 H is the external hip
    # breadth, which put the legs a thigh's width too far apart and made every walker straddle).
    "hip_half_width": 0.052,
    "thigh": 0.245,
    "shin": 0.246,
    "ankle_height": 0.039,
    # Ankle → ball of the foot (the toe joint), horizontal. Not Winter's 0.152 H: that is heel-to-toe-tip
    # length; the ball sits ~0.078 H ahead of the ankle (as in the CMU skeletons). Walking pivots on the ball,
    # so a longer lever lifted the trailing hip at push-off and the leading heel could not reach the floor.
    "foot": 0.078,
    "spine": 0.288,  # hip centre → neck base, split over spine1..spine3
    "neck": 0.052,
    "head": 0.070,  # neck top → head centre
    "collar": 0.040,  # spine3 → collar (sideways part of the shoulder girdle)
    "shoulder_half_width": 0.129,
    "upper_arm": 0.186,
    "forearm": 0.146,
    "hand": 0.090,
}


@dataclass(frozen=True)
class BodyShape:
    """Lengths (m) and capsule radii (m) of one body. ``build`` scales every radius (0.8 slim … 1.35 heavy)."""

    height: float
    thigh: float
    shin: float
    ankle_height: float
    foot: float
    hip_half_width: float
    spine: float
    neck: float
    head: float
    collar: float
    shoulder_half_width: float
    upper_arm: float
    forearm: float
    hand: float
    build: float
    r_head: float
    r_neck: float
    r_chest: float
    r_waist: float
    r_hips: float
    r_thigh: float
    r_shin: float
    r_foot: float
    r_upper_arm: float
    r_forearm: float
    r_hand: float

    @property
    def leg_length(self) -> float:
        """Hip joint to floor when standing (m): the natural unit of walking speed and stride."""
        return self.thigh + self.shin + self.ankle_height

    @classmethod
    def sample(cls, rng: np.random.Generator) -> BodyShape:
        """A plausible adult body; each proportion varies independently around the anthropometric mean."""
        height = float(rng.uniform(1.55, 1.95))
        jitter = {k: float(rng.normal(1.0, 0.035)) for k in _BASE_FRACTIONS}
        f = {k: _BASE_FRACTIONS[k] * jitter[k] * height for k in _BASE_FRACTIONS}
        build = float(np.clip(rng.normal(1.0, 0.13), 0.78, 1.35))
        limb = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.25))  # limb thickness apart from build
        s = height / 1.75 * build
        return cls(
            height=height,
            thigh=f["thigh"],
            shin=f["shin"],
            ankle_height=f["ankle_height"],
            foot=f["foot"],
            hip_half_width=f["hip_half_width"],
            spine=f["spine"],
            neck=f["neck"],
            head=f["head"],
            collar=f["collar"],
            shoulder_half_width=f["shoulder_half_width"],
            upper_arm=f["upper_arm"],
            forearm=f["forearm"],
            hand=f["hand"],
            build=build,
            r_head=0.095 * height / 1.75 * float(rng.normal(1.0, 0.04)),
            r_neck=0.050 * s,
            r_chest=0.150 * s * float(rng.normal(1.0, 0.05)),
            r_waist=0.130 * s * float(rng.normal(1.0, 0.06)),
            r_hips=0.140 * s * float(rng.normal(1.0, 0.05)),
            r_thigh=0.075 * s * limb,
            r_shin=0.052 * s * limb,
            r_foot=0.040 * height / 1.75,
            r_upper_arm=0.045 * s * limb,
            r_forearm=0.036 * s * limb,
            r_hand=0.032 * height / 1.75,
        )

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> BodyShape:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"BodyShape: unknown fields {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})

    def rest_offsets(self) -> np.ndarray:
        """Offsets [24, 3] of each SMPL-24 joint from its parent in the rest pose (root: from the floor)."""
        o = np.zeros((24, 3))
        j = SMPL24_INDEX
        hip_y = self.leg_length
        o[j["pelvis"]] = (0.0, hip_y, 0.0)
        for side, z in (("left", -1.0), ("right", 1.0)):
            o[j[f"{side}_hip"]] = (0.0, 0.0, z * self.hip_half_width)
            o[j[f"{side}_knee"]] = (0.0, -self.thigh, 0.0)
            # The foot is a capsule of radius r_foot from the ankle joint to the ball joint (the contact model
            # of kinematics.foot_contact), so both sit r_foot above the floor: the capsule rests flat, its back
            # end is the heel and it neither sinks in nor floats. The ankle joint is thus the capsule's axis, below the anatomical
            # ankle (ankle_height): the shin segment takes up the difference and the leg length is unchanged.
            # (A floating heel end made the walking leg effectively shorter on the heel than on the ball.)
            o[j[f"{side}_ankle"]] = (0.0, -(self.shin + self.ankle_height - self.r_foot), 0.0)
            o[j[f"{side}_foot"]] = (self.foot, 0.0, 0.0)
            o[j[f"{side}_collar"]] = (0.0, 0.22 * self.spine, z * self.collar)
            o[j[f"{side}_shoulder"]] = (0.0, -0.01, z * (self.shoulder_half_width - self.collar))
            o[j[f"{side}_elbow"]] = (0.0, -self.upper_arm, 0.0)
            o[j[f"{side}_wrist"]] = (0.0, -self.forearm, 0.0)
            o[j[f"{side}_hand"]] = (0.0, -self.hand * 0.6, 0.0)
        # The spine splits 15/30/25/30 % over spine1, spine2, spine3 and the neck base.
        o[j["spine1"]] = (0.0, 0.15 * self.spine, 0.0)
        o[j["spine2"]] = (0.0, 0.30 * self.spine, 0.0)
        o[j["spine3"]] = (0.0, 0.25 * self.spine, 0.0)
        o[j["neck"]] = (0.0, 0.30 * self.spine, 0.0)
        o[j["head"]] = (0.0, self.neck + self.head, 0.0)
        return o

    def rest_joints(self) -> np.ndarray:
        """Joint positions [24, 3] of the rest pose (feet on the floor, facing +X)."""
        offsets = self.rest_offsets()
        joints = np.zeros_like(offsets)
        for i, parent in enumerate(SMPL24_PARENTS):
            joints[i] = offsets[i] if parent < 0 else joints[parent] + offsets[i]
        return joints
