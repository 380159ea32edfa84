"""Frames that decode sideways: find how a clip is turned from upright, and undo it for perception.

A phone video whose rotation metadata is lost decodes with the person lying on their side; a pose
model then finds a horizontal person (or nobody) and the silhouettes are horizontal blobs. The body
axis — from the head (nose, eyes, ears, shoulders) to the feet (ankles, else knees) — points down the
image in an upright frame. Each frame with a confident axis votes for the quarter turn that makes it
point down; the clip's rotation is the majority of the first ``window`` voting frames when at least
``min_frames`` vote and ``min_agreement`` of them agree. When too few frames vote (nobody found, as a
pose model may miss a person lying sideways), rotated copies of a sample of frames are perceived and
the turn under which the person stands upright wins. When the votes disagree, or no turn finds an
upright person, the decision is *unsure*: the caller flags the sequence instead of guessing.

Conventions: ``rotation`` (0, 90, 180, 270) is how many degrees counter-clockwise the stored frames are
turned from upright, i.e. ``stored = np.rot90(upright, rotation // 90)`` over the (H, W) axes, the
world's ``rotate`` covariate. The pose stage perceives ``to_upright(frames, rotation)`` and maps the
keypoints and masks back into the stored frames' pixels (:func:`points_from_upright`,
:func:`masks_from_upright`), so every stage keeps the video's own coordinates; the gait-normalised
outputs (silhouettes, skeleton maps, crops) turn them upright with the rotation recorded per sequence
in the frame store field :data:`ROTATION_FIELD`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

ROTATION_FIELD = "seq:upright_rotation"
ROTATIONS = (0, 90, 180, 270)
HEAD = (0, 1, 2, 3, 4, 5, 6)  # nose, eyes, ears, shoulders (COCO-17)
FEET = (15, 16)  # ankles
KNEES = (13, 14)


@dataclass(frozen=True)
class OrientationOptions:
    window: int = 15  # voting frames considered (the first ones)
    min_frames: int = 3  # votes needed for a decision
    min_agreement: float = 0.7  # share of the votes the winning turn needs
    min_confidence: float = 0.5  # keypoint confidence for the axis
    probe_frames: int = 8  # frames of each rotated copy perceived when too few frames vote


@dataclass
class OrientationDecision:
    """``rotation`` in degrees (None when unsure), how it was found and why it may be unsure."""

    rotation: int | None
    votes: int
    agreement: float
    method: str  # "body axis" | "rotated copies" | "none"
    reason: str | None = None

    def notes(self) -> dict:
        return asdict(self)


def body_axes(keypoints: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """[T, 2] head → feet vector per frame (pixels), NaN where the head or the feet are not confident."""
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = kp[..., 2] >= min_confidence

    def centre(idx: tuple[int, ...]) -> np.ndarray:
        w = conf[:, idx].astype(np.float64)
        n = w.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (kp[:, idx, :2] * w[..., None]).sum(1) / n, np.nan)

    head, feet, knees = centre(HEAD), centre(FEET), centre(KNEES)
    feet = np.where(np.isnan(feet), knees, feet)
    return feet - head


def axis_votes(keypoints: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """[T] quarter turn (0..3) each frame's body axis votes for, -1 where it has no axis.

    Upright: the axis points down (+y). Turned ``k`` quarters counter-clockwise: right (k = 1), up (2),
    left (3)."""
    axes = body_axes(keypoints, min_confidence)
    ok = ~np.isnan(axes).any(1) & (np.linalg.norm(np.nan_to_num(axes), axis=1) > 1.0)
    angle = np.degrees(np.arctan2(axes[:, 1], axes[:, 0]))  # down = 90, right = 0, up = -90, left = 180
    k = np.mod(np.rint((90.0 - np.nan_to_num(angle)) / 90.0).astype(int), 4)
    return np.where(ok, k, -1)


def decide_from_pose(keypoints: np.ndarray, options: OrientationOptions | None = None) -> OrientationDecision:
    """The clip's rotation from its body-axis votes (see the module docstring)."""
    options = options or OrientationOptions()
    votes = axis_votes(keypoints, options.min_confidence)
    votes = votes[votes >= 0][: options.window]
    if len(votes) < options.min_frames:
        return OrientationDecision(None, len(votes), 0.0, "body axis",
                                   f"only {len(votes)} frames with a head-to-feet axis (< {options.min_frames})")  # fmt: skip
    counts = np.bincount(votes, minlength=4)
    best = int(np.argmax(counts))
    agreement = float(counts[best] / len(votes))
    if agreement < options.min_agreement:
        return OrientationDecision(None, len(votes), agreement, "body axis",
                                   f"body axis votes disagree ({counts.tolist()} for 0/90/180/270 degrees)")  # fmt: skip
    return OrientationDecision(90 * best, len(votes), agreement, "body axis")


def to_upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Undo ``rotation`` on [T, H, W, ...] frames (or masks)."""
    return np.ascontiguousarray(np.rot90(frames, k=-(rotation // 90) % 4, axes=(1, 2)))


def masks_from_upright(masks: np.ndarray, rotation: int) -> np.ndarray:
    """Upright [T, H', W'] masks back into the stored frames' pixels."""
    return np.ascontiguousarray(np.rot90(masks, k=(rotation // 90) % 4, axes=(1, 2)))


def _rot_points_ccw(xy: np.ndarray, width: int) -> np.ndarray:
    """Pixel coordinates after one ``np.rot90`` (k = 1) of an image ``width`` wide: (x, y) → (y, W-1-x)."""
    return np.stack([xy[..., 1], width - 1 - xy[..., 0]], -1)


def points_from_upright(keypoints: np.ndarray, rotation: int, upright_hw: tuple[int, int]) -> np.ndarray:
    """[T, K, 3] keypoints (x, y, conf) found in upright frames of size ``upright_hw`` → stored pixels.
    Undetected points (all zero) stay zero."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    h, w = upright_hw
    xy = out[..., :2].astype(np.float64)
    for _ in range((rotation // 90) % 4):
        xy = _rot_points_ccw(xy, w)
        h, w = w, h
    empty = ~np.asarray(keypoints)[..., :3].any(-1)
    out[..., :2] = np.where(empty[..., None], 0.0, xy)
    return out


def points_to_upright(keypoints: np.ndarray, rotation: int, stored_hw: tuple[int, int]) -> np.ndarray:
    """Stored-frame keypoints → the upright frame (the inverse of :func:`points_from_upright`)."""
    k = (-(rotation // 90)) % 4
    return points_from_upright(keypoints, 90 * k, stored_hw)


def upright_size(stored_hw: tuple[int, int], rotation: int) -> tuple[int, int]:
    h, w = stored_hw
    return (w, h) if (rotation // 90) % 2 else (h, w)


def decide(
    frames: np.ndarray,
    keypoints: np.ndarray,
    estimate: Callable[[np.ndarray], np.ndarray],
    options: OrientationOptions | None = None,
) -> OrientationDecision:
    """The rotation of a clip from the keypoints of its stored frames; when too few frames vote,
    ``estimate`` (frames → [T, 17, 3] keypoints) is run on rotated copies of ``probe_frames`` frames."""
    options = options or OrientationOptions()
    first = decide_from_pose(keypoints, options)
    if first.rotation is not None or first.votes >= options.min_frames:
        return first
    idx = np.unique(np.linspace(0, len(frames) - 1, min(options.probe_frames, len(frames))).astype(int))
    sample = np.asarray(frames)[idx]
    upright = {}
    for rotation in ROTATIONS[1:]:
        votes = axis_votes(estimate(to_upright(sample, rotation)), options.min_confidence)
        upright[rotation] = int((votes == 0).sum())
    best = max(upright, key=lambda r: upright[r])
    found, total = upright[best], sum(upright.values())
    if first.votes == 0 and total == 0:
        # Nobody in any orientation: not an orientation question; the frame checks say "no person".
        return OrientationDecision(0, 0, 0.0, "none", f"nobody found upright in any quarter turn of {len(idx)} frames")
    needed = min(options.min_frames, len(idx))
    if found < needed:
        return OrientationDecision(None, first.votes, 0.0, "rotated copies",
                                   f"{first.reason}; no quarter turn shows an upright person in {needed} of "
                                   f"{len(idx)} sampled frames ({upright})")  # fmt: skip
    agreement = found / max(total, 1)
    if agreement < options.min_agreement:
        return OrientationDecision(None, found, agreement, "rotated copies",
                                   f"{first.reason}; upright under several turns ({upright})")  # fmt: skip
    return OrientationDecision(best, found, agreement, "rotated copies")


def stored_rotation(store, sequence_id: str) -> int:
    """The rotation a frame store recorded for a sequence (0 when the store has no such field)."""
    if ROTATION_FIELD not in store.arrays:
        return 0
    return int(store.get(sequence_id, ROTATION_FIELD))


def groundtruth_rotation(row: dict) -> int:
    """The world's ``rotate`` covariate of a sequence (its ground truth is upright; the video is not)."""
    from pipeline.io.sequences import groundtruth

    try:
        return int(groundtruth(row, "seq:rotate"))
    except KeyError:  # a shard without sideways sequences stores no such field
        return 0
