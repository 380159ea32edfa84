"""Joint sets shared by every stage: SMPL-24 (3-D), COCO-17 (2-D) and DensePose part labels.

Orders follow the upstream conventions exactly, because guidance renderers, skeleton maps and the
animator adapters index these arrays by position.
"""

from __future__ import annotations

SMPL24_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL24_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip
SMPL24_INDEX: dict[str, int] = {name: i for i, name in enumerate(SMPL24_JOINTS)}

COCO17_JOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO17_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO17_JOINTS)}

# COCO-17 limbs as used by OpenGait's skeleton-map pretreatment (SkeletonGait).
COCO17_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
    (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip

# COCO joints that exist 1:1 in SMPL-24 (the face points do not: they come from the head frame).
COCO17_FROM_SMPL24: dict[str, str] = {
    "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
    "left_elbow": "left_elbow", "right_elbow": "right_elbow",
    "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    "left_hip": "left_hip", "right_hip": "right_hip",
    "left_knee": "left_knee", "right_knee": "right_knee",
    "left_ankle": "left_ankle", "right_ankle": "right_ankle",
}  # fmt: skip

# DensePose IUV part indices (1..24; 0 = background), as in DensePose-COCO.
DENSEPOSE_PARTS: dict[int, str] = {
    1: "torso_back", 2: "torso_front", 3: "right_hand", 4: "left_hand", 5: "left_foot",
    6: "right_foot", 7: "upper_leg_right_back", 8: "upper_leg_left_back",
    9: "upper_leg_right_front", 10: "upper_leg_left_front", 11: "lower_leg_right_back",
    12: "lower_leg_left_back", 13: "lower_leg_right_front", 14: "lower_leg_left_front",
    15: "upper_arm_left_front", 16: "upper_arm_right_front", 17: "upper_arm_left_back",
    18: "upper_arm_right_back", 19: "lower_arm_left_front", 20: "lower_arm_right_front",
    21: "lower_arm_left_back", 22: "lower_arm_right_back", 23: "head_right", 24: "head_left",
}  # fmt: skip
