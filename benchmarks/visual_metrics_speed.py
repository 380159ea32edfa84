"""Frames per second of masked SSIM + PSNR: ours (batched) vs skimage called per frame, on 256x192.

Run pinned to one core for numbers that mean something (the script pins itself to ``--core`` too):
    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/visual_metrics_speed.py

Both sides do the same work from the same inputs: union of the two person masks, background zeroed,
crop to the union box + 8 px, SSIM (Gaussian σ = 1.5, skimage's defaults otherwise) and PSNR
(data range 255). skimage's side is the straightforward loop a user would write (mask, crop, call
``structural_similarity`` and ``peak_signal_noise_ratio`` per frame); ours is :func:`video_metrics`
end to end (alignment, masks, boxes included, LPIPS off). The scene is a synthetic walker with smooth
textures; ``--scale`` sets the walker's height as a fraction of the frame. Rounds of the two
alternate, and the best round of each is reported (the machine is shared; the best round is the one
least disturbed). The maximum absolute difference between the two sides is printed as a check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from pipeline.evaluation.visual_metrics import video_metrics  # noqa: E402


def walker_masks(
    n: int, height: int, width: int, scale: float, *, widen: float = 1.0, lag: float = 0.0
) -> np.ndarray:
    """Person masks [n, H, W] bool: head, torso, swinging legs and arms of a walker crossing the frame."""
    masks = np.zeros((n, height, width), np.uint8)
    tall = scale * height
    for t in range(n):
        phase = 2 * np.pi * (t / 25.0 + lag)
        cx = width * (0.3 + 0.4 * t / max(n - 1, 1))
        top = (height - tall) / 2
        hip = (cx, top + 0.52 * tall)
        shoulder = (cx, top + 0.2 * tall)
        cv2.ellipse(masks[t], (round(cx), round(top + 0.07 * tall)), (round(0.06 * tall), round(0.07 * tall)),
                    0, 0, 360, 1, -1)  # fmt: skip
        cv2.ellipse(masks[t], (round(cx), round(top + 0.36 * tall)),
                    (max(1, round(0.09 * tall * widen)), round(0.18 * tall)), 0, 0, 360, 1, -1)  # fmt: skip
        for sign in (1, -1):
            swing = 0.35 * sign * np.sin(phase)
            foot = (hip[0] + 0.48 * tall * np.sin(swing), hip[1] + 0.48 * tall * np.cos(swing))
            hand = (shoulder[0] - 0.35 * tall * np.sin(swing), shoulder[1] + 0.35 * tall * np.cos(swing))
            for a, b, w in ((hip, foot, 0.07), (shoulder, hand, 0.045)):
                pts = np.round([a, b]).astype(np.int32)
                cv2.line(masks[t], tuple(pts[0]), tuple(pts[1]), 1, max(1, round(w * tall * widen)))
    return masks.astype(bool)


def textured_frames(masks: np.ndarray, seed: int, tint: float = 0.0) -> np.ndarray:
    """RGB frames [n, H, W, 3] uint8: a smooth background and a striped, shaded person inside ``masks``."""
    n, height, width = masks.shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    background = np.stack(
        [90 + 40 * np.sin(xx / 23 + c) * np.cos(yy / 31 - c) + 0.2 * yy for c in range(3)], -1
    )
    person = np.stack([120 + 60 * np.sin(yy / 5 + c) + 30 * np.cos(xx / 9) + tint for c in range(3)], -1)
    frames = np.where(masks[..., None], person, background)
    frames += rng.normal(0, 4, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


def skimage_per_frame(
    real: np.ndarray,
    gen: np.ndarray,
    real_masks: np.ndarray | None,
    gen_masks: np.ndarray | None,
    margin: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference loop: union mask, zero the background, crop to the box + margin, skimage metrics.

    Without masks (policy "none") it compares whole frames.
    """
    height, width = real.shape[1:3]
    ssim, psnr = np.empty(len(real)), np.empty(len(real))
    for t in range(len(real)):
        if real_masks is None or gen_masks is None:
            a, b = real[t], gen[t]
        else:
            union = real_masks[t] | gen_masks[t]
            rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
            y0, y1 = max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, height)
            x0, x1 = max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, width)
            a = (real[t] * union[..., None])[y0:y1, x0:x1]
            b = (gen[t] * union[..., None])[y0:y1, x0:x1]
        ssim[t] = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, data_range=255, channel_axis=-1
        )
        psnr[t] = peak_signal_noise_ratio(a, b, data_range=255)
    return ssim, psnr


def compare(
    real: np.ndarray, gen: np.ndarray, real_masks: np.ndarray, gen_masks: np.ndarray, policy: str, rounds: int
) -> dict[str, float]:
    """Frames/s of both sides (best round, rounds alternating) and the largest per-frame differences."""
    ref_masks = (None, None) if policy == "none" else (real_masks, gen_masks)
    ours = video_metrics(real, gen, real_masks, gen_masks, policy=policy)
    ref_ssim, ref_psnr = skimage_per_frame(real, gen, *ref_masks)
    best_ours = best_ref = float("inf")
    for _ in range(rounds):  # alternate so that both see the same load
        start = time.perf_counter()
        video_metrics(real, gen, real_masks, gen_masks, policy=policy)
        best_ours = min(best_ours, time.perf_counter() - start)
        start = time.perf_counter()
        skimage_per_frame(real, gen, *ref_masks)
        best_ref = min(best_ref, time.perf_counter() - start)
    return {
        "ours": len(real) / best_ours,
        "skimage": len(real) / best_ref,
        "d_ssim": float(np.abs(ours["per_frame"]["ssim"] - ref_ssim).max()),
        "d_psnr": float(np.abs(ours["per_frame"]["psnr"] - ref_psnr).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument(
        "--scale", type=float, nargs="+", default=[0.8, 0.4], help="walker height / frame height"
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: do not pin)")
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)

    print(
        f"{args.frames} frames {args.height}x{args.width}, best of {args.rounds} alternating rounds, one core"
    )
    cases = [(f"union mask + box, walker {s:.0%} of the height", s, "union") for s in args.scale]
    cases.append(("policy none (whole frames), walker 80%", 0.8, "none"))
    for label, scale, policy in cases:
        real_masks = walker_masks(args.frames, args.height, args.width, scale)
        gen_masks = walker_masks(args.frames, args.height, args.width, scale, widen=1.2, lag=0.03)
        real = textured_frames(real_masks, seed=1)
        gen = textured_frames(gen_masks, seed=2, tint=12)
        r = compare(real, gen, real_masks, gen_masks, policy, args.rounds)
        print(
            f"{label:42s} ours {r['ours']:7.1f} frames/s | skimage {r['skimage']:6.1f} frames/s | "
            f"ratio {r['ours'] / r['skimage']:5.2f}x (target >= 5x) | "
            f"max |dSSIM| {r['d_ssim']:.1e} |dPSNR| {r['d_psnr']:.1e}"
        )


if __name__ == "__main__":
    main()
