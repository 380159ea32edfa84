"""Perturbed oracles: the driving video with one known change, to calibrate the diagnostics.

The ``oracle`` (the driving video itself) is every diagnostic's known zero: whatever it reads there is
the noise floor of re-perceiving the same video. These controls are the known non-zeros: each is a
deterministic transform of the driving frames (no randomness, no model) whose effect on one diagnostic
is known in advance and recorded in the video's notes (``notes['expected']``). Measured on a study they
say whether a diagnostic detects an effect of that size above its noise floor
(``benchmarks/diagnostics_calibration.py``, docs/architecture.md "Diagnostics calibrated on the oracle").

``oracle-tempo`` (params ``factor``, default 1.2)
    The driving walk played ``factor`` times faster, same frame count and fps: output frame ``t`` is
    the driving frame nearest to time ``factor · t`` (frames, reflected at the last frame, so the walk
    plays backwards after the end rather than freezing). Expected: ``cadence_error`` = real cadence ×
    (factor − 1), tempo ratio = factor, over the first ``T / factor`` frames (the part the paired
    tempo ratio compares). Arm swing and foot sliding stay ≈ 0 (same poses, same still stance feet);
    thickening ≈ 1 (same silhouettes); flow divergence does not (the motion changes).
``oracle-slide`` (params ``speed``, default 0.3 body heights / s)
    The whole frame translated horizontally by a drift growing linearly in time, ``speed`` body heights
    per second (body height from the driving keypoints, as the diagnostics measure it; bilinear,
    edges replicated): a panning camera, so every foot in stance slides at ``speed``. Expected:
    ``foot_sliding`` = +speed; ``flow_divergence`` the drift in px/frame or more (the union of the two
    masks also holds pixels that only one video's person covers); arm swing and cadence ≈ 0 (relative
    positions unchanged), thickening ≈ 1.
``oracle-thick`` (params ``pixels``, default 3)
    The person mask of every frame grown by ``pixels`` (8-neighbour steps), the new pixels painted with
    the mean colour of their person neighbours: a limb thickening of ``pixels`` px on each side.
    Expected: ``thickening_index`` > 1, each run of person pixels in a row ``2 · pixels`` wider and the
    silhouette ``2 · pixels`` taller (notes: ``pixels``, mean mask area before and after); keypoint diagnostics ≈ 0.
``oracle-stretch`` (params ``factor``, default 0.8)
    Every frame scaled horizontally by ``factor`` about its centre column (bilinear, edges
    replicated). Expected: ``arm_swing_error`` = factor − 1 (the wrist-shoulder offset scales, the body
    height does not) and ``thickening_index`` = factor; foot sliding and cadence ≈ 0. It is the known
    non-zero of arm swing, not a specific one: attenuating the arms alone needs arm pixels moved over a
    background that is not there.
``oracle-swap`` (params ``block``, default 2)
    The frame order reversed within consecutive blocks of ``block`` frames (2: 1, 0, 3, 2, ...): the same
    frames, so the same poses and silhouettes, in a scrambled order. Expected, for steady motion and
    block 2: ``flow_divergence`` ≈ 2 × the real flow (``details['relative']`` ≈ 2: each flow of the
    generated video is the real one reversed or tripled); arm swing exactly the real one (the same
    set of frames), thickening 1, foot sliding and cadence ≈ 0.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.generation.generators.base import (
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    register_generator,
)
from pipeline.generation.generators.builtin import check_driving
from pipeline.skeleton import COCO17_INDEX as K

HEAD = (K["nose"], K["left_eye"], K["right_eye"], K["left_ear"], K["right_ear"])
ANKLES = (K["left_ankle"], K["right_ankle"])
MIN_CONFIDENCE = 0.3  # as pipeline.evaluation.diagnostics


def body_height_px(keypoints: np.ndarray, min_confidence: float = MIN_CONFIDENCE) -> float | None:
    """Median over frames of (lowest confident ankle y − highest confident head point y), pixels: the
    body height the diagnostics divide by (``pipeline.evaluation.diagnostics.body_height``, which this
    layer may not import; a test keeps the two equal)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    head = np.where(kp[:, HEAD, 2] >= min_confidence, kp[:, HEAD, 1], np.nan)
    ankles = np.where(kp[:, ANKLES, 2] >= min_confidence, kp[:, ANKLES, 1], np.nan)
    ok = np.isfinite(head).any(axis=1) & np.isfinite(ankles).any(axis=1)
    if not ok.any():
        return None
    height = float(np.median(np.nanmax(ankles[ok], axis=1) - np.nanmin(head[ok], axis=1)))
    return height if height > 0 else None


def tempo_indices(n: int, factor: float) -> np.ndarray:
    """Source frame of each of ``n`` output frames: nearest to ``factor · t``, reflected at ``n − 1``."""
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    source = np.round(factor * np.arange(n)).astype(np.int64) % (2 * (n - 1))
    return np.where(source > n - 1, 2 * (n - 1) - source, source)


def swap_indices(n: int, block: int) -> np.ndarray:
    """Source frame of each of ``n`` output frames: the order reversed within blocks of ``block``."""
    return np.concatenate([np.arange(s, min(s + block, n))[::-1] for s in range(0, n, block)])


def grow_mask(frame: np.ndarray, mask: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` grown by ``pixels`` 8-neighbour steps; each new pixel takes the mean colour of its
    person neighbours (of the mask grown so far). Returns the frame and the grown mask."""
    out, grown = frame.astype(np.float32), mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(pixels):
        ring = cv2.dilate(grown, kernel).astype(bool) & ~grown.astype(bool)
        if not ring.any():
            break
        weight = cv2.boxFilter(grown.astype(np.float32), -1, (3, 3), normalize=False)
        colour = cv2.boxFilter(out * grown[..., None], -1, (3, 3), normalize=False)
        out[ring] = colour[ring] / weight[ring][:, None]
        grown[ring] = 1
    return np.clip(np.round(out), 0, 255).astype(np.uint8), grown.astype(bool)


def _warp(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class _PerturbedOracle:
    """The driving frames (as the oracle) with one transform; ``params`` from ``models.<name>.params``."""

    name = ""
    needs: tuple[str, ...] = ("frames",)
    defaults: dict[str, Any] = {}

    def __init__(self, **options: Any) -> None:
        if options:
            raise ValueError(
                f"generator '{self.name}' takes no options, got {sorted(options)} (its settings go in params)"
            )

    def load(self) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""

    def params(self, job: GenerationJob) -> dict[str, Any]:
        unknown = sorted(set(job.params) - set(self.defaults))
        if unknown:
            raise GenerationError(f"{self.name}: unknown params {unknown}; it takes {sorted(self.defaults)}")
        return {**self.defaults, **job.params}

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        driving = job.driving
        check_driving(driving)
        for need in self.needs:
            if getattr(driving, need) is None:
                raise GenerationError(f"{self.name} needs the driving {need} (Driving.{need} is None)")
        frames = np.asarray(driving.frames)
        if frames.dtype != np.uint8:
            raise GenerationError(f"Driving.frames must be uint8, got {frames.dtype}")
        params = self.params(job)
        out, notes = self.transform(frames, job, params)
        notes = {"source": "driving frames", "control": self.name, "params": params, **notes}
        return GeneratedVideo(frames=out, fps=float(driving.fps), notes=notes)

    def transform(
        self, frames: np.ndarray, job: GenerationJob, params: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError


@register_generator("oracle-tempo")
class TempoOracle(_PerturbedOracle):
    name = "oracle-tempo"
    defaults = {"factor": 1.2}

    def transform(self, frames, job, params):
        factor = float(params["factor"])
        if not 0.5 <= factor <= 2.0:
            raise GenerationError(
                f"{self.name}: factor must lie in [0.5, 2] (the tempo ratios searched), got {factor}"
            )
        n = len(frames)
        index = tempo_indices(n, factor)
        forward = int(min(n, np.floor((n - 1) / factor) + 1))  # output frames before the reflection
        return frames[index].copy(), {
            "source_frames": index.tolist(),
            "forward_frames": forward,
            "expected": {"tempo_ratio": factor, "cadence_error": f"real cadence x {factor - 1:+.3f}"},
        }


@register_generator("oracle-slide")
class SlideOracle(_PerturbedOracle):
    name = "oracle-slide"
    defaults = {"speed": 0.3}

    def transform(self, frames, job, params):
        speed = float(params["speed"])
        height = body_height_px(job.driving.keypoints)
        if height is None:
            raise GenerationError(
                f"{self.name}: no frame with a confident head point and ankle (body height unknown)"
            )
        per_frame = speed * height / float(job.driving.fps)  # px per frame
        out = np.stack(
            [_warp(f, np.float32([[1, 0, per_frame * t], [0, 1, 0]])) for t, f in enumerate(frames)]
        )
        return out, {
            "body_height_px": height,
            "drift_px_per_frame": per_frame,
            "expected": {"foot_sliding": speed, "flow_divergence_at_least": abs(per_frame)},
        }


@register_generator("oracle-thick")
class ThickOracle(_PerturbedOracle):
    name = "oracle-thick"
    needs = ("frames", "masks")
    defaults = {"pixels": 3}

    def transform(self, frames, job, params):
        pixels = int(params["pixels"])
        if pixels < 0:
            raise GenerationError(f"{self.name}: pixels must be >= 0, got {pixels}")
        masks = np.asarray(job.driving.masks, bool)
        grown = [grow_mask(f, m, pixels) for f, m in zip(frames, masks, strict=True)]
        out = np.stack([g[0] for g in grown])
        return out, {
            "pixels": pixels,
            "mask_area": float(masks.sum(axis=(1, 2)).mean()),
            "grown_mask_area": float(np.mean([g[1].sum() for g in grown])),
            "expected": {
                "thickening_index": f"> 1: each run of a row {2 * pixels} px wider, silhouette {2 * pixels} px taller"
            },
        }


@register_generator("oracle-stretch")
class StretchOracle(_PerturbedOracle):
    name = "oracle-stretch"
    defaults = {"factor": 0.8}

    def transform(self, frames, job, params):
        factor = float(params["factor"])
        if factor <= 0:
            raise GenerationError(f"{self.name}: factor must be > 0, got {factor}")
        cx = (frames.shape[2] - 1) / 2
        matrix = np.float32([[factor, 0, cx * (1 - factor)], [0, 1, 0]])
        return np.stack([_warp(f, matrix) for f in frames]), {
            "expected": {"arm_swing_error": factor - 1, "thickening_index": factor},
        }


@register_generator("oracle-swap")
class SwapOracle(_PerturbedOracle):
    name = "oracle-swap"
    defaults = {"block": 2}

    def transform(self, frames, job, params):
        block = int(params["block"])
        if block < 2:
            raise GenerationError(f"{self.name}: block must be >= 2, got {block}")
        index = swap_indices(len(frames), block)
        expected = {"flow_divergence_relative": 2.0} if block == 2 else {}
        return frames[index].copy(), {"source_frames": index.tolist(), "expected": expected}
