"""Dense part maps (DensePose-like IUV) for real video: an *approximation* from pose + mask.

The world renders exact part maps; a real video has only what perception found: COCO-17 keypoints and
a person mask. The ``approx_from_pose`` backend assigns every mask pixel to the body part whose limb
segment (a capsule around the 2-D bone between two keypoints) is nearest — torso, head, upper and lower
arms, hands, thighs, shins and feet — and gives it per-part U and V in the world's conventions
(:mod:`pipeline.world.render`): U is the position along the segment (proximal end 0, along the spine for
the torso), V the angle around it (0.5 = facing the body's forward direction), from the pixel's offset
across the segment as if the limb were a cylinder and the body's facing estimated from the shoulders
(their left/right order) and the nose against the ears. Front/back and left/right DensePose labels
follow the same split. It is an approximation, named so everywhere it is used (generator notes:
``parts: approx_from_pose``): limbs hidden behind the body get no pixels, a bag or coat is labelled as
the nearest limb, and the facing is a guess on side views. ``benchmarks/approx_parts.py`` measures
what it costs posewarp-dense against the ground-truth part maps.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("auto", "groundtruth", "approx_from_pose")

# COCO-17 indices
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KN, R_KN, L_AN, R_AN = 11, 12, 13, 14, 15, 16

# DensePose labels (front, back) as the world renders them; the head splits right / left.
IDS = {
    "torso": (2, 1),
    "upper_leg_right": (9, 7), "upper_leg_left": (10, 8),
    "lower_leg_right": (13, 11), "lower_leg_left": (14, 12),
    "upper_arm_left": (15, 17), "upper_arm_right": (16, 18),
    "lower_arm_left": (19, 21), "lower_arm_right": (20, 22),
    "hand_right": (3, 3), "hand_left": (4, 4), "foot_left": (5, 5), "foot_right": (6, 6),
    "head": (23, 24),
}  # fmt: skip
# Capsule radius of each part as a fraction of the torso length (shoulder to hip midpoints).
RADIUS = {
    "torso": 0.32, "head": 0.2, "upper_arm": 0.1, "lower_arm": 0.08, "hand": 0.07,
    "upper_leg": 0.15, "lower_leg": 0.1, "foot": 0.07,
}  # fmt: skip


def _radius(name: str) -> float:
    key = name.rsplit("_", 1)[0] if name.endswith(("_left", "_right")) else name
    return RADIUS[key]


def _pseudo_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """atan2(b, a) mapped monotonically to [0, 1) with 0.5 = the forward axis (the renderer's V)."""
    r = b / (np.abs(a) + np.abs(b) + 1e-6)
    angle = np.where(a >= 0, r, np.where(b >= 0, 2.0 - r, -2.0 - r))
    return (angle + 2.0) * 0.25


def facing(kp: np.ndarray, min_confidence: float = 0.3) -> tuple[float, float] | None:
    """The body's forward direction (fx image-right, fz towards the camera), unit, or None."""
    ok = kp[:, 2] >= min_confidence
    if not (ok[L_SH] and ok[R_SH] and ok[L_HIP] and ok[R_HIP]):
        return None
    torso = np.linalg.norm((kp[L_SH, :2] + kp[R_SH, :2]) / 2 - (kp[L_HIP, :2] + kp[R_HIP, :2]) / 2)
    if torso < 1.0:
        return None
    # Facing the camera, the person's right shoulder is on the image's left (0.7 = shoulder width / torso).
    fz = float(np.clip((kp[L_SH, 0] - kp[R_SH, 0]) / (0.7 * torso), -1.0, 1.0))
    ears = [i for i in (L_EAR, R_EAR, L_EYE, R_EYE) if ok[i]]
    side = 0.0
    if ok[NOSE] and ears:
        side = float(np.sign(kp[NOSE, 0] - kp[ears, 0].mean()))
    elif ok[L_AN] or ok[R_AN]:
        side = 0.0
    fx = side * float(np.sqrt(max(0.0, 1.0 - fz * fz)))
    norm = np.hypot(fx, fz)
    return (fx / norm, fz / norm) if norm > 1e-6 else (0.0, 1.0)


def segments(kp: np.ndarray, min_confidence: float = 0.3) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(part, proximal point, distal point, radius px) of every part whose keypoints are confident."""
    ok = kp[:, 2] >= min_confidence
    xy = kp[:, :2].astype(np.float64)
    if not (ok[L_SH] or ok[R_SH]) or not (ok[L_HIP] or ok[R_HIP]):
        return []
    shoulders = xy[[i for i in (L_SH, R_SH) if ok[i]]].mean(0)
    hips = xy[[i for i in (L_HIP, R_HIP) if ok[i]]].mean(0)
    torso_len = float(np.linalg.norm(shoulders - hips))
    if torso_len < 2.0:
        return []
    out = [("torso", hips, shoulders, _radius("torso") * torso_len)]
    face = [i for i in (NOSE, L_EYE, R_EYE, L_EAR, R_EAR) if ok[i]]
    if face:
        centre = xy[face].mean(0)
        up = centre - shoulders
        out.append(("head", shoulders + 0.45 * up, centre + 0.35 * up, _radius("head") * torso_len))
    chains = {
        "left": ((L_SH, L_EL, L_WR), (L_HIP, L_KN, L_AN)),
        "right": ((R_SH, R_EL, R_WR), (R_HIP, R_KN, R_AN)),
    }
    for side, (arm, leg) in chains.items():
        for (a, b, c), names in ((arm, ("upper_arm", "lower_arm", "hand")), (leg, ("upper_leg", "lower_leg", "foot"))):
            if ok[a] and ok[b]:
                out.append((f"{names[0]}_{side}", xy[a], xy[b], _radius(names[0]) * torso_len))
            if ok[b] and ok[c]:
                out.append((f"{names[1]}_{side}", xy[b], xy[c], _radius(names[1]) * torso_len))
                tip = xy[c] + (0.35 if names[2] == "hand" else 0.0) * (xy[c] - xy[b])
                if names[2] == "foot":  # along the ground, a little: the foot's direction is not known
                    tip = xy[c] + np.array([0.0, 0.08 * torso_len])
                out.append((f"{names[2]}_{side}", xy[c], tip, _radius(names[2]) * torso_len))
    return out


def approx_parts_frame(keypoints: np.ndarray, mask: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """IUV [H, W, 3] uint8 of one frame: mask pixels → nearest part capsule, U along it, V around it."""
    h, w = mask.shape
    out = np.zeros((h, w, 3), np.uint8)
    kp = np.asarray(keypoints, dtype=np.float64)
    segs = segments(kp, min_confidence)
    rows, cols = np.nonzero(mask)
    if not segs or not len(rows):
        return out
    fx, fz = facing(kp, min_confidence) or (0.0, 1.0)
    p = np.stack([cols, rows], 1).astype(np.float64)  # [N, 2] x, y
    n_seg = len(segs)
    dist = np.empty((n_seg, len(p)))
    along = np.empty((n_seg, len(p)))
    across = np.empty((n_seg, len(p)))
    for k, (_, a, b, r) in enumerate(segs):
        d = b - a
        len2 = max(float(d @ d), 1e-6)
        t = np.clip(((p - a) @ d) / len2, 0.0, 1.0)
        q = p - (a + t[:, None] * d)
        normal = np.array([-d[1], d[0]]) / np.sqrt(len2)  # unit, across the segment
        dist[k] = np.linalg.norm(q, axis=1) - r
        along[k] = t
        across[k] = np.clip((q @ normal) / max(r, 1.0), -1.0, 1.0) * np.sign(normal[0] if abs(normal[0]) > 1e-6 else 1.0)
    best = np.argmin(dist, 0)
    idx = np.arange(len(p))
    u, s = along[best, idx], across[best, idx]  # s: offset towards image right, in radii
    hgt = np.sqrt(np.maximum(0.0, 1.0 - s * s))
    nf = s * fx + hgt * fz  # the surface normal (s, towards the camera) against forward and right
    ns = -s * fz + hgt * fx
    names = [name for name, *_ in segs]
    part = np.empty(len(p), np.uint8)
    for k, name in enumerate(names):
        sel = best == k
        pos, neg = IDS[name]
        split = ns[sel] if name == "head" else nf[sel]
        part[sel] = np.where(split >= 0, pos, neg)
    out[rows, cols, 0] = part
    out[rows, cols, 1] = np.clip(u * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out[rows, cols, 2] = np.minimum(_pseudo_angle(nf, ns) * 256.0, 255.0).astype(np.uint8)
    return out


def approx_parts(keypoints: np.ndarray, masks: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """IUV [T, H, W, 3] uint8 for a sequence (``keypoints`` [T, 17, 3], ``masks`` [T, H, W] bool)."""
    keypoints, masks = np.asarray(keypoints), np.asarray(masks, bool)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (17, 3):
        raise ValueError(f"approx_from_pose needs COCO-17 keypoints [T, 17, 3], got {keypoints.shape}")
    if masks.ndim != 3 or len(masks) != len(keypoints):
        raise ValueError(f"approx_from_pose needs one mask per keypoint frame, got {masks.shape} for {len(keypoints)}")
    return np.stack([approx_parts_frame(k, m, min_confidence) for k, m in zip(keypoints, masks, strict=True)])
