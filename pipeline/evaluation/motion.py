"""Motion consistency of a generated video with its driving video, on the pose sequences.

The frame-wise metrics (SSIM, ...) and the diagnostics compare pixels or single gait statistics; this
module compares the *shape of the motion over time*: the joint-angle curves of the generated walker
against those of the driving walker, both read by the same pose estimator (the ``pose`` stage), with
dynamic time warping (DTW), so a small phase shift or a dropped frame costs little while a different
movement of the limbs costs a lot.

Joint angles (:data:`ANGLES`): the interior angle at the elbows, shoulders, hips and knees (8 angles,
degrees in [0, 180]), each from three COCO-17 keypoints. An angle is usable on a frame the pose stage
marked valid when its three keypoints have confidence ≥ ``min_confidence``; the curves compared are the
angles usable in at least half the frames of both videos (a side view hides the far arm), on the frames
where all of them are usable (DTW aligns the rest). :func:`dtw_distance` is the classic O(n·m) recursion with the mean absolute angle
difference as the local cost, normalised by the length of the warping path, so the value reads as
"degrees of joint-angle disagreement per aligned frame pair".
"""

from __future__ import annotations

import numpy as np

from pipeline.skeleton import COCO17_INDEX

K = COCO17_INDEX
# (name, a, vertex, b): the angle at `vertex` between the segments to `a` and to `b`
ANGLES: tuple[tuple[str, str, str, str], ...] = tuple(
    (f"{side}_{name}", f"{side}_{a}", f"{side}_{v}", f"{side}_{b}")
    for side in ("left", "right")
    for name, a, v, b in (
        ("elbow", "shoulder", "elbow", "wrist"),
        ("shoulder", "hip", "shoulder", "elbow"),
        ("hip", "shoulder", "hip", "knee"),
        ("knee", "hip", "knee", "ankle"),
    )
)
MIN_FRAMES = 4  # fewer usable frames than this on either side: no motion-consistency value


def joint_angles(keypoints: np.ndarray) -> np.ndarray:
    """[T, 17, ≥2] COCO-17 keypoints → [T, 8] interior angles (degrees) of :data:`ANGLES`.

    A degenerate angle (two coincident keypoints) is NaN."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != 17 or kp.shape[2] < 2:
        raise ValueError(f"keypoints must be [T, 17, 2 or 3], got {kp.shape}")
    out = np.empty((len(kp), len(ANGLES)))
    for j, (_, a, v, b) in enumerate(ANGLES):
        u = kp[:, K[a], :2] - kp[:, K[v], :2]
        w = kp[:, K[b], :2] - kp[:, K[v], :2]
        norms = np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.einsum("ij,ij->i", u, w) / norms
        out[:, j] = np.where(norms > 0, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), np.nan)
    return out


def confident_angles(
    keypoints: np.ndarray, valid: np.ndarray | None, min_confidence: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """([T, 8] joint angles, [T, 8] whether each is usable): the frame is valid and the angle's three
    keypoints have confidence ≥ ``min_confidence`` (keypoints without a confidence column count as seen)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    angles = joint_angles(kp)
    usable = np.isfinite(angles)
    if kp.shape[2] >= 3:
        for j, (_, a, v, b) in enumerate(ANGLES):
            usable[:, j] &= (kp[:, [K[a], K[v], K[b]], 2] >= min_confidence).all(axis=1)
    if valid is not None:
        usable &= np.asarray(valid, dtype=bool).reshape(-1)[: len(kp), None]
    return angles, usable


def dtw_distance(x: np.ndarray, y: np.ndarray) -> float:
    """DTW between two multivariate curves [n, d] and [m, d], local cost the mean |x_i − y_j| over d.

    The accumulated cost D[i, j] = c(i, j) + min(D[i−1, j], D[i, j−1], D[i−1, j−1]) is filled row by
    row (the vertical and diagonal moves vectorised, the horizontal one a running minimum along the
    row); the optimal path is traced back to get its length, and the result is D[n, m] / length.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dtw_distance: curves of {x.shape[1]} and {y.shape[1]} dimensions")
    if len(x) == 0 or len(y) == 0:
        raise ValueError("dtw_distance: an empty curve has no alignment")
    cost = np.abs(x[:, None, :] - y[None, :, :]).mean(axis=2)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        from_above = np.minimum(acc[i - 1, 1:], acc[i - 1, :-1])  # vertical or diagonal move
        row = acc[i]
        for j in range(1, m + 1):
            row[j] = cost[i - 1, j - 1] + min(from_above[j - 1], row[j - 1])
    # trace back the optimal path for its length (ties broken towards the diagonal)
    i, j, length = n, m, 1
    while (i, j) != (1, 1):
        moves = ((acc[i - 1, j - 1], i - 1, j - 1), (acc[i - 1, j], i - 1, j), (acc[i, j - 1], i, j - 1))
        _, i, j = min(moves, key=lambda move: move[0])
        length += 1
    return float(acc[n, m] / length)


def motion_consistency(
    generated: tuple[np.ndarray, np.ndarray | None],
    driving: tuple[np.ndarray, np.ndarray | None],
    min_confidence: float = 0.3,
) -> tuple[float | None, str | None]:
    """DTW of the joint-angle curves (degrees per aligned pair) of a generated video and its driving
    video, each given as (keypoints [T, 17, 3], valid [T]).

    A side view hides the far limbs (low keypoint confidence), so the curves compared are the angles
    usable in at least half the frames of *both* videos, on the frames where all of those are usable;
    (None, reason) when no angle or fewer than :data:`MIN_FRAMES` frames on either side remain."""
    (ga, gu), (da, du) = (confident_angles(kp, valid, min_confidence) for kp, valid in (generated, driving))
    keep = (gu.mean(axis=0) >= 0.5) & (du.mean(axis=0) >= 0.5)
    if not keep.any():
        return None, "no joint angle is confidently seen in half the frames of both videos"
    curves = [a[u[:, keep].all(axis=1)][:, keep] for a, u in ((ga, gu), (da, du))]
    for curve, what in zip(curves, ("generated", "driving"), strict=True):
        if len(curve) < MIN_FRAMES:
            return None, f"{what} video: {len(curve)} frame(s) with the angles seen ({MIN_FRAMES} needed)"
    return dtw_distance(*curves), None
