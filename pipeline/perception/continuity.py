"""Identity continuity of a single-person track: find where "the main walker" became someone else.

Following the main walker (:class:`~pipeline.perception.pose_backends.MediapipePerception`) keeps one
person per frame, but when one walker leaves and another enters, or two walkers pass, the followed
person can change mid-sequence, and the sequence then holds two people under one subject label.
:func:`find_switches` splits the detected frames into *tracklets* wherever, between two consecutive
detected frames,

- the person's box centre is farther from where the track's velocity puts it than ``jump_center`` box
  heights (more allowed across a gap: ``+ gap_allowance`` box heights per missing frame), or its
  height changes by more than a factor ``jump_scale`` (a position jump);
- the colours under the person's mask (or box) differ from the tracklet's recent frames by more than
  ``max_appearance`` (Hellinger distance of 4×4×4 RGB histograms; an appearance change);
- more than ``max_gap`` frames pass without a detection *and* the colours differ by more than half
  ``max_appearance`` (a gap: someone may have left and someone else entered).

:func:`apply_policy` then keeps the longest tracklet (``keep_longest``: the other frames become
undetected, with their keypoints and masks cleared) or keeps everything and flags the sequence
(``flag``). Either way the tracklet per frame and the switch frames are recorded in the pose store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POLICIES = ("keep_longest", "flag", "off")


@dataclass(frozen=True)
class ContinuityOptions:
    jump_center: float = 0.6
    gap_allowance: float = 0.15
    jump_scale: float = 1.4
    max_appearance: float = 0.35
    max_gap: int = 2
    history: int = 5  # frames of the tracklet whose mean histogram is the reference


@dataclass
class Continuity:
    """``tracklet`` [T] int8 (-1 undetected), ``switches`` [(frame, reasons)], ``kept`` (tracklet id
    kept by ``keep_longest``, None otherwise)."""

    tracklet: np.ndarray
    switches: list[tuple[int, str]] = field(default_factory=list)
    kept: int | None = None

    @property
    def switch_frames(self) -> list[int]:
        return [f for f, _ in self.switches]

    def describe(self) -> str:
        return "; ".join(f"frame {f}: {why}" for f, why in self.switches)


def boxes_from_keypoints(keypoints: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """[T, 4] box (x0, y0, x1, y1) of each frame's confident keypoints (zeros where none)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros((len(kp), 4))
    for t in range(len(kp)):
        ok = kp[t, :, 2] >= min_confidence
        if ok.any():
            xy = kp[t, ok, :2]
            out[t] = [*xy.min(0), *xy.max(0)]
    return out


def colour_histogram(frame: np.ndarray, region: np.ndarray | None, box: np.ndarray) -> np.ndarray | None:
    """Normalised 64-bin RGB histogram of the pixels under ``region`` (mask) or inside ``box``."""
    if region is not None and region.any():
        pixels = frame[region]
    else:
        h, w = frame.shape[:2]
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return None
        pixels = frame[y0:y1, x0:x1].reshape(-1, 3)
    if len(pixels) < 20:
        return None
    q = (pixels.astype(np.int32) // 64).astype(np.int32)
    hist = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64).astype(np.float64)
    return hist / hist.sum()


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def find_switches(
    detected: np.ndarray,
    boxes: np.ndarray,
    frames: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    options: ContinuityOptions | None = None,
) -> Continuity:
    """Split the detected frames into tracklets at identity switches (see the module docstring)."""
    options = options or ContinuityOptions()
    detected = np.asarray(detected, bool)
    boxes = np.asarray(boxes, dtype=np.float64)
    tracklet = np.full(len(detected), -1, np.int8)
    switches: list[tuple[int, str]] = []
    current = -1
    prev_t, velocity = None, np.zeros(2)
    recent: list[np.ndarray] = []
    for t in np.flatnonzero(detected):
        box = boxes[t]
        centre, height = (box[:2] + box[2:]) / 2, max(box[3] - box[1], 1.0)
        hist = None
        if frames is not None:
            hist = colour_histogram(frames[t], None if masks is None else masks[t], box)
        reasons = []
        if prev_t is not None:
            pbox = boxes[prev_t]
            pcentre, pheight = (pbox[:2] + pbox[2:]) / 2, max(pbox[3] - pbox[1], 1.0)
            gap = t - prev_t - 1
            predicted = pcentre + velocity * (gap + 1)
            allowed = (options.jump_center + options.gap_allowance * gap) * pheight
            shift = float(np.linalg.norm(centre - predicted))
            if shift > allowed:
                reasons.append(f"position jump of {shift / pheight:.2f} box heights")
            ratio = height / pheight
            if not 1 / options.jump_scale <= ratio <= options.jump_scale:
                reasons.append(f"height changed x{ratio:.2f}")
            appearance = None
            if hist is not None and recent:
                appearance = hellinger(hist, np.mean(recent, axis=0))
                if appearance > options.max_appearance:
                    reasons.append(f"appearance change {appearance:.2f}")
            if gap > options.max_gap and appearance is not None and appearance > options.max_appearance / 2:
                reasons.append(f"gap of {gap} frames with appearance change {appearance:.2f}")
        if prev_t is None or reasons:
            if prev_t is not None:
                switches.append((int(t), ", ".join(reasons)))
            current += 1
            velocity = np.zeros(2)
            recent = []
        else:
            step = (centre - (boxes[prev_t][:2] + boxes[prev_t][2:]) / 2) / (t - prev_t)
            velocity = step if len(recent) <= 1 else 0.5 * velocity + 0.5 * step
        tracklet[t] = current
        if hist is not None:
            recent = [*recent, hist][-options.history :]
        prev_t = int(t)
    return Continuity(tracklet, switches)


def apply_policy(continuity: Continuity, policy: str) -> np.ndarray:
    """[T] bool: the frames to keep (``keep_longest``: the longest tracklet; otherwise every frame)."""
    if policy not in POLICIES:
        raise ValueError(f"identity_switch must be one of {POLICIES}, got {policy!r}")
    keep = np.ones(len(continuity.tracklet), bool)
    if policy != "keep_longest" or not continuity.switches:
        return keep
    ids, counts = np.unique(continuity.tracklet[continuity.tracklet >= 0], return_counts=True)
    continuity.kept = int(ids[np.argmax(counts)])
    return (continuity.tracklet == continuity.kept) | (continuity.tracklet < 0)
