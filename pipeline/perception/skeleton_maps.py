"""SkeletonGait skeleton maps: COCO-17 keypoints → uint8 [T, 2, 64, 64] (limb channel, joint channel).

SkeletonGait and SkeletonGait++ consume maps made offline by OpenGait's
``datasets/pretreatment_heatmap.py`` with ``configs/skeletongait/pretreatment_heatmap.yaml``. A
checkpoint only transfers to our keypoints if the maps are made the same way, so each step below
follows the upstream arithmetic, including its integer truncations and dtype flow:

1. (optional, :func:`coco18_to_coco17`) OpenPose COCO-18 → COCO-17;
2. :func:`pad_keypoints`: scikit-learn ``KNNImputer(missing_values=0, n_neighbors=4,
   weights="distance")`` over the (T, 34) coordinates, scores kept; if a coordinate column is missing
   in every frame the imputer drops it and upstream falls back to the raw coordinates (its
   ``reshape`` fails), which we reproduce;
3. :func:`center_and_scale`: hip centre to the canvas centre, body height (y-range of all 17 joints)
   to ``canvas // 1.5`` = 85 px on the 128 canvas;
4. :func:`limb_heatmap` / :func:`joint_heatmap`: Gaussians of σ = 8 with the score as peak, evaluated
   only inside the ±3σ window (the window edge is visible in the output because exp(-4.5)·256 > 1),
   skipped for scores below 1e-3, pixel-wise max over all limbs / joints;
5. :func:`heatmap_to_grey`: matplotlib's ``gray`` colormap → uint8 → channel mean (this quantises to
   256 levels and is *not* ``floor(255·v)``: the colormap's table is used as is);
6. :func:`align_heatmap`: crop rows to the map's support and a square of columns around the canvas
   centre, ``INTER_AREA`` resize to 64×64, back to uint8 by truncation; each channel is aligned on its
   own support, exactly like upstream's two separate transform chains;
7. channel order [limb, joint].

Dtype flow: upstream keeps the keypoints' float dtype (float32 pkls stay float32 through the imputer and
the normaliser). We do the same, and evaluate the Gaussians with NumPy ≥ 2 promotion rules (numpy
scalars are not demoted), which is how the upstream script computes when run with this project's NumPy.
"""

from __future__ import annotations

import logging
from functools import cache

import cv2
import numpy as np

from pipeline.skeleton import COCO17_JOINTS, COCO17_LIMBS

log = logging.getLogger(__name__)

SIGMA = 8.0
CANVAS = 128
OUT_SIZE = 64
SCORE_EPS = 1e-3  # upstream skips Gaussians whose amplitude is below this
KNN_NEIGHBOURS = 4
HIP_JOINTS = (COCO17_JOINTS.index("left_hip"), COCO17_JOINTS.index("right_hip"))

# OpenPose's COCO-18 order (BODY_18: COCO-17 plus a neck, in a different order).
OPENPOSE18_JOINTS: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
# For each COCO-17 joint, its index in the COCO-18 array (derived from the names, not typed by hand).
COCO18_TO_COCO17_INDEX: tuple[int, ...] = tuple(OPENPOSE18_JOINTS.index(name) for name in COCO17_JOINTS)


def coco18_to_coco17(keypoints: np.ndarray) -> np.ndarray:
    """Reorder OpenPose COCO-18 keypoints [T, 18, C] to COCO-17 [T, 17, C] (the neck is dropped).

    Upstream writes the result into a fresh ``np.zeros`` array, so the output is float64 whatever the
    input dtype; we keep that because the dtype decides the precision of every later step.
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[1] != len(OPENPOSE18_JOINTS):
        raise ValueError(f"expected COCO-18 keypoints [T, 18, C], got shape {keypoints.shape}")
    return keypoints[:, list(COCO18_TO_COCO17_INDEX), :].astype(np.float64)


def _as_float_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Validated [T, 17, 3] float copy; NaN coordinates/scores become 0, OpenGait's 'missing' value."""
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(COCO17_JOINTS), 3):
        hint = " (use coco18_to_coco17 first)" if keypoints.ndim == 3 and keypoints.shape[1] == 18 else ""
        raise ValueError(
            f"expected COCO-17 keypoints [T, 17, 3] = (x, y, score), got {keypoints.shape}{hint}"
        )
    dtype = keypoints.dtype if keypoints.dtype in (np.float32, np.float64) else np.float64
    keypoints = keypoints.astype(dtype, copy=True)
    keypoints[np.isnan(keypoints)] = 0.0
    return keypoints


def pad_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Impute missing joints (x or y exactly 0) from the k = 4 nearest frames, distance-weighted."""
    frames, joints, channels = keypoints.shape
    coords = keypoints[..., :-1].reshape(frames, joints * (channels - 1))
    if not (coords == 0.0).any():
        # Nothing to impute: KNNImputer would return the coordinates unchanged (its own early exit),
        # so skip scikit-learn's ~0.7 s import, paid otherwise by every skeleton-map job.
        return keypoints.copy()
    from sklearn.impute import KNNImputer  # heavy import, only needed here

    imputer = KNNImputer(missing_values=0.0, n_neighbors=KNN_NEIGHBOURS, weights="distance")
    filled = imputer.fit_transform(coords)
    if filled.shape != coords.shape:
        # A column missing in every frame is dropped by the imputer; upstream's reshape then fails and
        # it silently keeps the raw coordinates for the whole sequence. Same here, but said aloud.
        log.warning("a joint is missing in every frame; keypoints are left unimputed (as OpenGait does)")
        filled = coords
    return np.concatenate([filled.reshape(frames, joints, channels - 1), keypoints[..., -1:]], axis=-1)


def center_and_scale(keypoints: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Hip centre → (canvas//2, canvas//2); y-extent of all joints → canvas // 1.5 pixels, per frame."""
    pose, score = keypoints[..., :-1], keypoints[..., -1:]
    hip = (pose[:, HIP_JOINTS[0]] + pose[:, HIP_JOINTS[1]]) / 2.0
    pose = pose - hip[:, np.newaxis, :]
    height = np.max(pose[:, :, 1], axis=-1) - np.min(pose[:, :, 1], axis=-1)
    # A frame whose joints share one y gives inf/nan here; the renderer leaves such frames empty.
    with np.errstate(divide="ignore", invalid="ignore"):
        pose *= (canvas // 1.5) / height[:, np.newaxis, np.newaxis]
    pose += canvas // 2
    return np.concatenate([pose, score], axis=-1)


def _window(low: np.floating, high: np.floating, sigma: float, size: int) -> tuple[int, int]:
    """Pixel range [start, stop) of the ±3σ patch; ``int()`` truncates toward zero like upstream."""
    return max(int(low - 3 * sigma), 0), min(int(high + 3 * sigma) + 1, size)


def _add_gaussian(
    canvas: np.ndarray, centre: np.ndarray, amplitude: np.floating, sigma: float, eps: float
) -> None:
    """Max-accumulate amplitude·exp(-d²/2σ²) around ``centre`` (numpy scalars keep the input dtype)."""
    if amplitude < eps:
        return
    mu_x, mu_y = centre[0], centre[1]
    x0, x1 = _window(mu_x, mu_x, sigma, canvas.shape[1])
    y0, y1 = _window(mu_y, mu_y, sigma, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:  # the keypoint's window lies entirely off the canvas
        return
    x = np.arange(x0, x1, 1, np.float32)
    y = np.arange(y0, y1, 1, np.float32)[:, None]
    patch = np.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / 2 / sigma**2) * amplitude
    canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], patch)


def _add_limb(
    canvas: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    values: tuple[np.floating, np.floating],
    sigma: float,
    eps: float,
) -> None:
    """Max-accumulate a Gaussian of the distance to segment start–end, amplitude min(values)."""
    amplitude = min(values)
    if amplitude < eps:
        return
    x0, x1 = _window(min(start[0], end[0]), max(start[0], end[0]), sigma, canvas.shape[1])
    y0, y1 = _window(min(start[1], end[1]), max(start[1], end[1]), sigma, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    x = np.arange(x0, x1, 1, np.float32)
    y = np.arange(y0, y1, 1, np.float32)[:, None]
    d2_start = (x - start[0]) ** 2 + (y - start[1]) ** 2
    d2_end = (x - end[0]) ** 2 + (y - end[1]) ** 2
    d2_ab = (start[0] - end[0]) ** 2 + (start[1] - end[1]) ** 2
    if d2_ab < 1:  # a (near-)zero-length limb is drawn as a point at its start, with the start's score
        _add_gaussian(canvas, start, values[0], sigma, eps)
        return
    # Position of the projection along the segment: <= 0 before the start, >= 1 past the end.
    coeff = (d2_start - d2_end + d2_ab) / 2.0 / d2_ab
    delta = end - start
    d2_line = (x - (start[0] + coeff * delta[0])) ** 2 + (y - (start[1] + coeff * delta[1])) ** 2
    d2_seg = np.where(coeff <= 0, d2_start, np.where(coeff >= 1, d2_end, d2_line))
    # Upstream multiplies the branch masks by an int64 array, which promotes the sum to float64.
    patch = np.exp(-d2_seg.astype(np.float64) / 2.0 / sigma**2) * amplitude
    canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], patch)


def joint_heatmap(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    sigma: float = SIGMA,
    canvas: int = CANVAS,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """Max over the 17 joint Gaussians on a canvas×canvas float32 map (one frame)."""
    out = np.zeros((canvas, canvas), dtype=np.float32)
    for joint in range(len(points)):
        _add_gaussian(out, points[joint], scores[joint], float(sigma), eps)
    return out


def limb_heatmap(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    sigma: float = SIGMA,
    canvas: int = CANVAS,
    eps: float = SCORE_EPS,
    limbs: tuple[tuple[int, int], ...] = COCO17_LIMBS,
) -> np.ndarray:
    """Max over the limb (segment-distance) Gaussians on a canvas×canvas float32 map (one frame)."""
    out = np.zeros((canvas, canvas), dtype=np.float32)
    for a, b in limbs:
        _add_limb(out, points[a], points[b], (scores[a], scores[b]), float(sigma), eps)
    return out


@cache
def _grey_table() -> tuple[np.ndarray, int]:
    """Grey level per colormap index (N entries, then under/over/bad) as upstream gets them."""
    import matplotlib

    cmap = matplotlib.colormaps["gray"]
    rgba = np.concatenate(
        [cmap(np.arange(cmap.N)), np.array([cmap.get_under(), cmap.get_over(), cmap.get_bad()])]
    )
    # Upstream: (rgba[..., :3] * 255).astype(uint8), then the mean over the three channels.
    return np.mean((rgba[:, :3] * 255).astype(np.uint8), axis=-1), int(cmap.N)


def heatmap_to_grey(heatmap: np.ndarray) -> np.ndarray:
    """Float heatmap in [0, 1] → grey levels 0..255 (float64) through matplotlib's ``gray`` colormap."""
    table, n = _grey_table()
    scaled = np.asarray(heatmap, dtype=np.float32) * np.float32(n)  # in the map's dtype, like matplotlib
    scaled[scaled == n] = n - 1  # exactly 1.0 is the top colour, not "over"
    index = np.zeros(scaled.shape, dtype=np.intp)
    inside = (scaled >= 0) & (scaled < n)
    index[inside] = scaled[inside].astype(np.intp)
    index[scaled < 0] = n
    index[scaled >= n] = n + 1
    index[np.isnan(scaled)] = n + 2
    return table[index]


def align_heatmap(grey: np.ndarray, *, out: int = OUT_SIZE) -> np.ndarray:
    """Crop the support's rows and a centred square of columns, INTER_AREA to out×out, uint8."""
    image = np.asarray(grey, dtype=np.float64) / 255.0
    rows = image.sum(axis=1) != 0
    # argmax of an all-False mask is 0: an empty map crops to a 1×1 zero patch, as upstream does.
    top = int(rows.argmax())
    bottom = int(rows.cumsum().argmax())
    height = bottom - top + 1
    centre = image.shape[1] // 2
    crop = image[top : bottom + 1, centre - height // 2 : centre + height // 2 + 1]
    resized = cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA)
    return (resized * 255).astype(np.uint8)


def _frame_maps(frame: np.ndarray, sigma: float, canvas: int, out: int, eps: float) -> np.ndarray:
    """uint8 [2, out, out] = [limb, joint] for one normalised frame [17, 3]."""
    points, scores = frame[:, :2], frame[:, 2]
    if np.isfinite(points).all():
        limb = limb_heatmap(points, scores, sigma=sigma, canvas=canvas, eps=eps)
        joint = joint_heatmap(points, scores, sigma=sigma, canvas=canvas, eps=eps)
    else:  # zero body height: upstream would crash on int(nan); we leave the frame blank
        limb = joint = np.zeros((canvas, canvas), dtype=np.float32)
    return np.stack([align_heatmap(heatmap_to_grey(m), out=out) for m in (limb, joint)])


def skeleton_maps(
    keypoints: np.ndarray,
    *,
    sigma: float = SIGMA,
    canvas: int = CANVAS,
    out: int = OUT_SIZE,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """COCO-17 keypoints [T, 17, 3] (x, y, score) → SkeletonGait maps uint8 [T, 2, out, out] = [limb, joint]."""
    keypoints = _as_float_keypoints(keypoints)
    if len(keypoints) == 0:
        return np.zeros((0, 2, out, out), dtype=np.uint8)
    normalised = center_and_scale(pad_keypoints(keypoints), canvas)
    blank = ~np.isfinite(normalised[..., :2]).all(axis=(1, 2))
    if blank.any():
        log.warning("%d frame(s) have zero body height and get blank skeleton maps", int(blank.sum()))
    return np.stack([_frame_maps(frame, sigma, canvas, out, eps) for frame in normalised])


__all__ = [
    "COCO18_TO_COCO17_INDEX",
    "OPENPOSE18_JOINTS",
    "align_heatmap",
    "center_and_scale",
    "coco18_to_coco17",
    "heatmap_to_grey",
    "joint_heatmap",
    "limb_heatmap",
    "pad_keypoints",
    "skeleton_maps",
]


# ---------------------------------------------------------------------------------------------
# The "skeleton_maps" stage


def run_skeleton_maps_stage(
    rows: list[dict],
    *,
    pose_store: str,
    pose_status: str,
    store: str,
    status: str,
    min_valid_frames: int,
    sigma: float = SIGMA,
) -> list[dict]:
    """SkeletonGait maps [T, 2, 64, 64] from the pose stage's COCO-17 keypoints."""
    from pipeline.contracts import read_frame_store
    from pipeline.io.sequences import frame_size
    from pipeline.perception.orientation import points_to_upright, stored_rotation
    from pipeline.runner import SkipSequence, StageOutput, run_shard, upstream_errors

    poses = read_frame_store(pose_store)

    def process(row: dict) -> StageOutput:
        sid = row["sequence_id"]
        if sid not in poses:
            raise SkipSequence("pose stage stored nothing for this sequence")
        keypoints = poses.get(sid, "pose_keypoints")
        rotation = stored_rotation(poses, sid)
        if rotation:  # frames that decode sideways: the upright skeleton (maps are centred and scaled)
            keypoints = points_to_upright(keypoints, rotation, frame_size(row))
        return StageOutput({"skeleton_map": skeleton_maps(keypoints, sigma=sigma)}, poses.get(sid, "valid"))

    return run_shard(
        stage="skeleton_maps",
        backend="opengait",
        rows=rows,
        process=process,
        store_path=store,
        status_path=status,
        min_valid_frames=min_valid_frames,
        skip=upstream_errors([pose_status]),
    )
