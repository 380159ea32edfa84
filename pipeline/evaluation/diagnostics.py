"""Behavioural diagnostics of a generated video against its driving (real) video.

Inputs are what the perception stages produce for both videos: COCO-17 keypoints [T, 17, 3] (x, y in
pixels, confidence in [0, 1]; the world's visibility 0/1/2 works too), person masks [T, H, W] bool,
RGB frames [T, H, W, 3] uint8 and the frame rate. Each diagnostic returns a :class:`Diagnostic`: a
number, or None with the reason, plus the per-video values it compared (``details``).

``flow_divergence``
    Motion fidelity: dense optical flow (OpenCV DIS, medium preset, or Farneback) between consecutive
    frames of each video (in the box of the pair's mask grown by 32 px: the flow needed, at a fraction of
    the cost); the mean end-point difference |flow_gen - flow_real| (pixels per frame, at
    the real video's resolution) over the union of the two person masks of the first frame of each
    pair. 0 for identical videos. ``details['relative']`` divides it by the real flow's mean magnitude
    in the same pixels. (This is not a warping error: it compares the generated motion with the
    driving motion, not the generated video with itself.)
``thickening_index``
    Body shape: each silhouette's rows from its top to its bottom are split into ``bands`` (8) equal
    horizontal bands; a band's width is its mean pixels per row divided by the silhouette height
    (so the index does not change with scale). Per band, the generated mean over frames divided by the
    real mean; the index is the mean of the band ratios. > 1: the generated body is wider.
``foot_sliding``
    Ankle speed while in stance, in body heights per second: the median over stance samples of both
    ankles (central differences), so that heel-strike and toe-off frames, where the speed passes the
    threshold, do not dominate. An ankle is in stance in a frame when it is the lower of the two
    (image y, within 2% of the body height) and slower than ``stance_speed`` (1 body height/s; a foot
    sliding faster than that is not counted as standing). Value: generated minus real (the real
    video's own value is keypoint noise and camera motion, a baseline).
``arm_swing_error``
    Arm swing amplitude: half the 5-95 percentile range of (wrist x - same-side shoulder x) / body
    height, averaged over both arms. Value: (generated - real) / real; -0.5 = swing halved. Horizontal
    swing is what a side-ish view shows; for frontal views the swing is in depth and this is weak.
``cadence_error``
    Generated minus real cadence (steps/min), measured as a *tempo ratio* of the paired videos rather
    than as the difference of two absolute cadences. The ankle separation (left - right ankle,
    projected on the real video's principal axis) of the generated video is compared with the real
    one under time scalings ``t → t / r`` (each video on its own fps); the ratio ``r`` whose
    correlation is largest is the generated tempo relative to the real one, and the value is
    ``real cadence · (r - 1)``. The real cadence (the scale only) is the peak of the Hann-windowed
    periodogram between 60 and 180 steps/min (a stride, the signal's period, is two steps). Why paired:
    a 30-frame clip holds about one stride, so each absolute periodogram peak moves by several steps/min
    with keypoint noise alone, and their difference read −7 to +2 steps/min on the oracle (the driving
    video itself); the ratio of two near-identical signals is 1 whatever the noise does to the peak.

The body height is the median over frames of the vertical extent of the confident keypoints from the
head (nose, eyes, ears) to the ankles, about 0.9 of stature; diagnostics in body heights are then
independent of image scale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipeline.evaluation.alignment import align_frames, match_size
from pipeline.skeleton import COCO17_INDEX

K = COCO17_INDEX
HEAD = (K["nose"], K["left_eye"], K["right_eye"], K["left_ear"], K["right_ear"])
ANKLES = (K["left_ankle"], K["right_ankle"])
ARMS = ((K["left_shoulder"], K["left_wrist"]), (K["right_shoulder"], K["right_wrist"]))
MIN_CONFIDENCE = 0.3
CADENCE_RANGE = (60.0, 180.0)  # steps per minute searched
FLOW_METHODS = ("dis", "farneback")


@dataclass(frozen=True)
class Diagnostic:
    """A value (None when it cannot be computed, with ``reason``) and the inputs it compared."""

    value: float | None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("a Diagnostic has either a value or a reason, not both or neither")

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason, **self.details}


def _null(reason: str, **details: Any) -> Diagnostic:
    return Diagnostic(None, reason, details)


# ----------------------------------------------------------------------------------------------------
# keypoint helpers
# ----------------------------------------------------------------------------------------------------


def check_keypoints(keypoints: np.ndarray, what: str) -> np.ndarray:
    """Keypoints [T, 17, 3] as float64; raise naming ``what`` otherwise."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (17, 3):
        raise ValueError(f"{what} must be COCO-17 keypoints [T, 17, 3], got {keypoints.shape}")
    return keypoints


def _points(keypoints: np.ndarray, joints: tuple[int, ...] | int, min_confidence: float) -> np.ndarray:
    """x, y [T, (J,) 2] with NaN where the confidence is below ``min_confidence``."""
    pts = keypoints[:, joints, :2].copy()
    pts[keypoints[:, joints, 2] < min_confidence] = np.nan
    return pts


def body_height(keypoints: np.ndarray, min_confidence: float = MIN_CONFIDENCE) -> float | None:
    """Median over frames of (lowest confident ankle y - highest confident head point y), pixels."""
    head = _points(keypoints, HEAD, min_confidence)[..., 1]
    ankles = _points(keypoints, ANKLES, min_confidence)[..., 1]
    ok = np.isfinite(head).any(axis=1) & np.isfinite(ankles).any(axis=1)
    if not ok.any():
        return None
    extent = np.nanmax(ankles[ok], axis=1) - np.nanmin(head[ok], axis=1)
    height = float(np.median(extent))
    return height if height > 0 else None


def _fill_gaps(series: np.ndarray, max_missing: float = 0.5) -> np.ndarray | None:
    """Linear interpolation over NaNs of [T, ...] along time; None if more than ``max_missing`` is NaN."""
    flat = series.reshape(len(series), -1)
    out = flat.copy()
    t = np.arange(len(series))
    for column in range(flat.shape[1]):
        ok = np.isfinite(flat[:, column])
        if ok.mean() < 1 - max_missing or ok.sum() < 2:
            return None
        out[:, column] = np.interp(t, t[ok], flat[ok, column])
    return out.reshape(series.shape)


# ----------------------------------------------------------------------------------------------------
# per-video quantities
# ----------------------------------------------------------------------------------------------------


def stance_sliding(
    keypoints: np.ndarray,
    fps: float,
    *,
    stance_speed: float = 1.0,
    min_confidence: float = MIN_CONFIDENCE,
) -> tuple[float | None, str | None, int]:
    """Median ankle speed in stance frames (body heights/s), or None and why; and the stance samples used."""
    height = body_height(keypoints, min_confidence)
    if height is None:
        return None, "no frame with a confident head point and ankle (body height unknown)", 0
    if len(keypoints) < 3:
        return None, "fewer than 3 frames", 0
    ankles = _points(keypoints, ANKLES, min_confidence) / height  # [T, 2, 2] in body heights
    velocity = np.gradient(ankles, 1.0 / fps, axis=0)  # central differences; NaN spreads to neighbours
    speed = np.linalg.norm(velocity, axis=-1)  # [T, 2]
    y = ankles[..., 1]
    lower = y >= y[:, ::-1] - 0.02  # image y grows downwards; both count in double support
    stance = lower & (speed < stance_speed) & np.isfinite(speed)
    if not stance.any():
        return None, f"no stance frames (lower ankle slower than {stance_speed} body heights/s)", 0
    # the median: heel-strike and toe-off frames, where the speed crosses the threshold, are a minority
    return float(np.median(speed[stance])), None, int(stance.sum())


def arm_swing_amplitude(
    keypoints: np.ndarray, min_confidence: float = MIN_CONFIDENCE
) -> tuple[float | None, str | None]:
    """Half the 5-95 percentile range of (wrist x - shoulder x) / body height, mean of both arms."""
    height = body_height(keypoints, min_confidence)
    if height is None:
        return None, "no frame with a confident head point and ankle (body height unknown)"
    amplitudes = []
    for shoulder, wrist in ARMS:
        offset = (
            _points(keypoints, wrist, min_confidence)[:, 0]
            - _points(keypoints, shoulder, min_confidence)[:, 0]
        )
        offset = offset[np.isfinite(offset)] / height
        if offset.size >= 3:
            lo, hi = np.percentile(offset, [5, 95])
            amplitudes.append((hi - lo) / 2)
    if not amplitudes:
        return None, "no arm with 3 or more frames of confident shoulder and wrist"
    return float(np.mean(amplitudes)), None


def cadence(
    keypoints: np.ndarray,
    fps: float,
    *,
    search: tuple[float, float] = CADENCE_RANGE,
    min_confidence: float = MIN_CONFIDENCE,
) -> tuple[float | None, str | None]:
    """Steps per minute from the periodicity of the ankle separation, or None and why."""
    ankles = _fill_gaps(_points(keypoints, ANKLES, min_confidence))
    if ankles is None:
        return None, "ankles missing in more than half of the frames"
    separation = ankles[:, 0] - ankles[:, 1]  # [T, 2]
    centred = separation - separation.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    signal = centred @ axes[0]  # along the direction the feet move apart in
    if not np.any(signal):
        return None, "the ankle separation does not change"
    duration = len(signal) / fps
    stride_hz = _peak_frequency(signal, fps, (search[0] / 120.0, search[1] / 120.0))
    if stride_hz * duration < 1.0:
        return None, f"video ({duration:.2f} s) shorter than one stride ({1 / stride_hz:.2f} s)"
    return 120.0 * stride_hz, None


def _peak_frequency(signal: np.ndarray, fps: float, band: tuple[float, float]) -> float:
    """Frequency (Hz) in ``band`` of the largest Hann-windowed periodogram value, refined by a parabola."""
    t = np.arange(len(signal)) / fps
    windowed = (signal - signal.mean()) * np.hanning(len(signal))
    freqs = np.linspace(band[0], band[1], 2401)  # 0.05 steps/min apart over 60-180: finer than needed
    power = np.abs(np.exp(-2j * np.pi * np.outer(freqs, t)) @ windowed) ** 2
    k = int(np.argmax(power))
    if 0 < k < len(freqs) - 1:
        left, mid, right = power[k - 1 : k + 2]
        denom = left - 2 * mid + right
        shift = 0.5 * (left - right) / denom if denom else 0.0
        return float(freqs[k] + shift * (freqs[1] - freqs[0]))
    return float(freqs[k])


# ----------------------------------------------------------------------------------------------------
# diagnostics: generated vs real
# ----------------------------------------------------------------------------------------------------


def foot_sliding(
    real_keypoints: np.ndarray,
    gen_keypoints: np.ndarray,
    fps: float,
    gen_fps: float | None = None,
    *,
    stance_speed: float = 1.0,
) -> Diagnostic:
    """Generated minus real stance ankle speed (body heights/s); > 0: the generated feet slide more."""
    real, real_why, real_n = stance_sliding(check_keypoints(real_keypoints, "real keypoints"), fps,
                                            stance_speed=stance_speed)  # fmt: skip
    gen, gen_why, gen_n = stance_sliding(check_keypoints(gen_keypoints, "generated keypoints"), gen_fps or fps,
                                         stance_speed=stance_speed)  # fmt: skip
    details = {
        "real": real,
        "generated": gen,
        "real_stance_samples": real_n,
        "generated_stance_samples": gen_n,
    }
    if real is None or gen is None:
        return _null(f"real: {real_why}" if real is None else f"generated: {gen_why}", **details)
    return Diagnostic(gen - real, None, details)


def arm_swing_error(real_keypoints: np.ndarray, gen_keypoints: np.ndarray) -> Diagnostic:
    """(generated - real) / real arm swing amplitude; -0.5 = half the real swing."""
    real, real_why = arm_swing_amplitude(check_keypoints(real_keypoints, "real keypoints"))
    gen, gen_why = arm_swing_amplitude(check_keypoints(gen_keypoints, "generated keypoints"))
    details = {"real": real, "generated": gen}
    if real is None or gen is None:
        return _null(f"real: {real_why}" if real is None else f"generated: {gen_why}", **details)
    if real <= 0:
        return _null("the real arms do not swing (amplitude 0)", **details)
    return Diagnostic((gen - real) / real, None, details)


TEMPO_RATIOS = (0.5, 2.0)  # generated / real tempo searched by cadence_error


def _ankle_signal(keypoints: np.ndarray, min_confidence: float, axis: np.ndarray | None = None):
    """The ankle separation projected on ``axis`` (default: its own principal axis), and the axis."""
    ankles = _fill_gaps(_points(keypoints, ANKLES, min_confidence))
    if ankles is None:
        return None, None
    separation = ankles[:, 0] - ankles[:, 1]  # [T, 2]
    centred = separation - separation.mean(axis=0)
    if axis is None:
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return centred @ axis, axis


def tempo_ratio(
    real: np.ndarray, gen: np.ndarray, fps: float, gen_fps: float, search: tuple[float, float] = TEMPO_RATIOS
) -> tuple[float, float]:
    """The time scaling ``r`` (generated tempo / real tempo) that best maps ``gen`` onto ``real``, and
    the Pearson correlation it reaches: ``real(t) ≈ gen(t / r)`` over the real times the generated
    video covers. A coarse grid (1 % steps), then a fine one (0.05 %) around the best."""
    t_real = np.arange(len(real)) / fps
    t_gen = np.arange(len(gen)) / gen_fps

    def correlation(ratio: float) -> float:
        at = t_real / ratio
        inside = at <= t_gen[-1]
        if inside.sum() < 8:
            return -np.inf
        a, b = real[inside], np.interp(at[inside], t_gen, gen)
        a, b = a - a.mean(), b - b.mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / denom) if denom > 0 else -np.inf

    # log-spaced and through r = 1 exactly, so identical videos read exactly 0
    steps = np.arange(np.ceil(np.log(search[0]) / 0.01), np.floor(np.log(search[1]) / 0.01) + 1)
    coarse = np.exp(steps * 0.01)
    best = coarse[int(np.argmax([correlation(r) for r in coarse]))]
    fine = best * np.exp(np.arange(-20, 21) * 0.0005)
    scores = [correlation(r) for r in fine]
    k = int(np.argmax(scores))
    return float(fine[k]), float(scores[k])


def cadence_error(
    real_keypoints: np.ndarray,
    gen_keypoints: np.ndarray,
    fps: float,
    gen_fps: float | None = None,
    *,
    min_confidence: float = MIN_CONFIDENCE,
) -> Diagnostic:
    """Generated minus real cadence (steps/min): real cadence × (tempo ratio − 1); see the module doc."""
    gen_fps = gen_fps or fps
    real_kp = check_keypoints(real_keypoints, "real keypoints")
    gen_kp = check_keypoints(gen_keypoints, "generated keypoints")
    real, real_why = cadence(real_kp, fps)
    gen_alone, gen_why = cadence(gen_kp, gen_fps)
    details: dict[str, Any] = {"real": real, "generated": None, "generated_periodogram": gen_alone}
    if real is None or (gen_alone is None and gen_why.startswith("ankles")):
        return _null(f"real: {real_why}" if real is None else f"generated: {gen_why}", **details)
    real_signal, axis = _ankle_signal(real_kp, min_confidence)
    gen_signal, _ = _ankle_signal(gen_kp, min_confidence, axis)
    if gen_signal is None or not np.any(gen_signal - gen_signal.mean()):
        return _null("generated: the ankle separation does not change", **details)
    ratio, score = tempo_ratio(real_signal, gen_signal, fps, gen_fps)
    details.update(generated=real * ratio, tempo_ratio=ratio, correlation=score)
    return Diagnostic(real * (ratio - 1.0), None, details)


def band_widths(masks: np.ndarray, bands: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and band, mean mask pixels per row / silhouette height: ([T, bands], valid [T]).

    Rows from the silhouette's first to last row are split into ``bands`` equal bands.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got {masks.shape}")
    n, height, _ = masks.shape
    counts = masks.sum(axis=2)  # [T, H]
    rows = counts > 0
    valid = rows.any(axis=1)
    top = np.argmax(rows, axis=1)
    bottom = height - np.argmax(rows[:, ::-1], axis=1)
    tall = np.maximum(bottom - top, 1)
    r = np.arange(height)
    band = np.floor((r - top[:, None]) * bands / tall[:, None]).astype(np.int64)
    inside = (band >= 0) & (band < bands) & valid[:, None]
    flat = (np.arange(n)[:, None] * bands + band)[inside]
    width_sum = np.bincount(flat, weights=counts[inside], minlength=n * bands).reshape(n, bands)
    row_count = np.bincount(flat, minlength=n * bands).reshape(n, bands)
    widths = width_sum / np.maximum(row_count, 1) / tall[:, None]
    return widths, valid


def thickening_index(real_masks: np.ndarray, gen_masks: np.ndarray, *, bands: int = 8) -> Diagnostic:
    """Mean over bands of generated / real height-normalised silhouette width; > 1: thicker."""
    real_w, real_ok = band_widths(real_masks, bands)
    gen_w, gen_ok = band_widths(gen_masks, bands)
    if not real_ok.any() or not gen_ok.any():
        which = "real" if not real_ok.any() else "generated"
        return _null(f"every {which} mask is empty")
    real_mean, gen_mean = real_w[real_ok].mean(axis=0), gen_w[gen_ok].mean(axis=0)
    ratios = np.where(real_mean > 0, gen_mean / np.where(real_mean > 0, real_mean, 1), np.nan)
    details = {
        "bands": [None if np.isnan(v) else float(v) for v in ratios],
        "real_frames": int(real_ok.sum()),
        "generated_frames": int(gen_ok.sum()),
    }
    if np.isnan(ratios).all():
        return _null("the real silhouette has no width in any band", **details)
    return Diagnostic(float(np.nanmean(ratios)), None, details)


FLOW_MARGIN = 32  # px around the person's box in which flow is computed (see _pair_window)


def _flow(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Optical flow [H, W, 2] float32 from gray frame a to b (uint8 [H, W])."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)  # windows of a frame are views
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _pair_window(region: np.ndarray, margin: int = FLOW_MARGIN) -> tuple[slice, slice] | None:
    """The rows and columns where a pair's flow is needed: the box of its region (the union mask of
    frame t) grown by ``margin``. Flow is local (DIS matches 8-pixel patches over a pyramid whose
    coarsest level follows the image size), so outside a generous margin the background changes the
    values inside the mask only through the pyramid; computing flow there is most of the cost."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if not len(rows):
        return None
    h, w = region.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, w)))  # fmt: skip


def flow_divergence(
    real_frames: np.ndarray,
    gen_frames: np.ndarray,
    real_masks: np.ndarray | None = None,
    gen_masks: np.ndarray | None = None,
    *,
    method: str = "dis",
) -> Diagnostic:
    """Mean |flow_gen - flow_real| (px/frame) inside the union mask; frames already aligned, same size.

    Frames [T, H, W, 3] uint8 RGB; masks [T, H, W] bool (the union of those given; whole frames when
    neither is). Pair (t, t+1) is compared inside the mask of frame t.
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown optical flow method {method!r}; expected one of {FLOW_METHODS}")
    for frames, what in ((real_frames, "real frames"), (gen_frames, "generated frames")):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{what} must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if real_frames.shape != gen_frames.shape:
        raise ValueError(f"align and resize first: real {real_frames.shape} vs generated {gen_frames.shape}")
    if len(real_frames) < 2:
        return _null("fewer than 2 frames")
    region = np.zeros(real_frames.shape[:3], bool)
    for masks in (real_masks, gen_masks):
        if masks is not None:
            region |= np.asarray(masks, bool)
    if real_masks is None and gen_masks is None:
        region[:] = True
    region = region[:-1]
    if not region.any():
        return _null("every mask is empty")
    gray_r = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in real_frames])
    gray_g = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in gen_frames])
    epe: list[np.ndarray] = []
    speed: list[np.ndarray] = []
    for t, inside in enumerate(region):
        window = _pair_window(inside)
        if window is None:
            continue
        flow_r = _flow(gray_r[t][window], gray_r[t + 1][window], method)
        flow_g = _flow(gray_g[t][window], gray_g[t + 1][window], method)
        keep = inside[window]
        epe.append(np.linalg.norm(flow_g - flow_r, axis=-1)[keep])
        speed.append(np.linalg.norm(flow_r, axis=-1)[keep])
    real_speed = float(np.concatenate(speed).mean())
    value = float(np.concatenate(epe).mean())
    details = {
        "real_flow": real_speed,
        "relative": value / real_speed if real_speed > 0 else None,
        "method": method,
        "window_margin": FLOW_MARGIN,
    }
    return Diagnostic(value, None, details)


def _take(masks: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    return None if masks is None else masks[index]


def video_diagnostics(
    real_keypoints: np.ndarray,
    gen_keypoints: np.ndarray,
    fps: float,
    *,
    gen_fps: float | None = None,
    real_masks: np.ndarray | None = None,
    gen_masks: np.ndarray | None = None,
    real_frames: np.ndarray | None = None,
    gen_frames: np.ndarray | None = None,
    flow_method: str = "dis",
) -> dict[str, Diagnostic]:
    """All diagnostics of one generated video vs its driving video; those without inputs are null.

    Flow is computed after :func:`pipeline.evaluation.alignment.align_frames` and ``match_size`` (generated
    resized to the real frame size, with the notes in ``details``).
    """
    out = {
        "foot_sliding": foot_sliding(real_keypoints, gen_keypoints, fps, gen_fps),
        "arm_swing_error": arm_swing_error(real_keypoints, gen_keypoints),
        "cadence_error": cadence_error(real_keypoints, gen_keypoints, fps, gen_fps),
    }
    if real_masks is None or gen_masks is None:
        out["thickening_index"] = _null("masks not given")
    else:
        out["thickening_index"] = thickening_index(real_masks, gen_masks)
    if real_frames is None or gen_frames is None:
        out["flow_divergence"] = _null("frames not given")
        return out
    resized, resized_masks, size_note = match_size(gen_frames, gen_masks, real_frames.shape[1:3])
    align = align_frames(len(real_frames), len(resized))
    flow = flow_divergence(
        real_frames[align.real_index], resized[align.generated_index],
        _take(real_masks, align.real_index), _take(resized_masks, align.generated_index), method=flow_method,
    )  # fmt: skip
    notes = [n for n in (size_note, align.note) if n]
    out["flow_divergence"] = Diagnostic(flow.value, flow.reason, {**flow.details, "notes": notes})
    return out


def summary_row(diagnostics: dict[str, Diagnostic]) -> dict[str, Any]:
    """The per-video columns of the ``diagnostics`` table: one float (or None) per diagnostic and
    ``notes``, JSON with each null's reason and each diagnostic's details."""
    row: dict[str, Any] = {name: d.value for name, d in diagnostics.items()}
    reasons = {name: d.reason for name, d in diagnostics.items() if d.reason}
    details = {name: d.details for name, d in diagnostics.items() if d.details}
    row["notes"] = json.dumps({"reasons": reasons, "details": details})
    return row
