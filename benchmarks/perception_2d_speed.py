"""Frames per second of the 2-D gait inputs on one core: silhouette pretreatment, skeleton maps, RGB crops.

Run pinned to one core for numbers that mean something:
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/perception_2d_speed.py

Inputs are synthetic and self-contained: a walking "body" of ellipses drawn into full-size masks (so the
silhouette numbers include the row crop and the INTER_CUBIC resize of a real-sized frame), and a COCO-17
skeleton whose limbs swing sinusoidally with noisy scores and a few missing joints (so the KNN
imputation runs). Every figure is the best of ``--repeats`` timed runs after one warm-up run, which
also pays the one-off imports (scikit-learn, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from pipeline.perception.crops import person_crops  # noqa: E402
from pipeline.perception.silhouettes import pretreat_silhouettes  # noqa: E402
from pipeline.perception.skeleton_maps import skeleton_maps  # noqa: E402

# A standing COCO-17 skeleton (x, y) in "body units": 100 = roughly the body height.
STANDING = np.array(
    [
        [0, 0], [2, -2], [-2, -2], [4, 0], [-4, 0], [10, 14], [-10, 14], [12, 30], [-12, 30],
        [13, 44], [-13, 44], [7, 50], [-7, 50], [8, 74], [-8, 74], [8, 98], [-8, 98],
    ],
    dtype=np.float64,
)  # fmt: skip


def walking_keypoints(n_frames: int, height_px: float, width: int, seed: int = 0) -> np.ndarray:
    """[T, 17, 3] keypoints of a side-on walk across the middle 60 % of an image ``width`` wide.

    Wrists and ankles swing; 3 % of the joints go missing (0, 0, 0), as a detector's misses would.
    """
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.arange(n_frames) / 30.0
    points = np.repeat(STANDING[None], n_frames, axis=0)
    swing = np.sin(phase)[:, None]
    points[:, [9, 15], 0] += 12 * swing  # left wrist / ankle forward while the right ones go back
    points[:, [10, 16], 0] -= 12 * swing
    points[:, [13], 0] += 6 * swing
    points[:, [14], 0] -= 6 * swing
    points = points * height_px / 100 + (0.0, 0.2 * height_px) + rng.normal(0, 1.0, points.shape)
    points[..., 0] += np.linspace(0.2 * width, 0.8 * width, n_frames)[:, None]  # walking across
    scores = rng.uniform(0.3, 1.0, (n_frames, 17, 1))
    keypoints = np.concatenate([points, scores], axis=-1).astype(np.float32)
    keypoints[rng.random((n_frames, 17)) < 0.03] = 0.0  # missing joints: (0, 0, 0)
    return keypoints


def walking_masks(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [T, H, W]: an ellipse per limb and one for the torso, drawn around the keypoints."""
    masks = np.zeros((len(keypoints), height, width), dtype=np.uint8)
    limbs = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 12), (6, 11), (0, 0))  # fmt: skip
    for mask, frame in zip(masks, keypoints, strict=True):
        for a, b in limbs:
            (xa, ya), (xb, yb) = frame[a, :2], frame[b, :2]
            centre = (int((xa + xb) / 2), int((ya + yb) / 2))
            length = max(int(np.hypot(xb - xa, yb - ya) / 2), 12)
            angle = float(np.degrees(np.arctan2(yb - ya, xb - xa)))
            cv2.ellipse(mask, centre, (length, 12), angle, 0, 360, 1, -1)
    return masks.astype(bool)


def best_fps(function: Callable[[], object], n_frames: int, repeats: int) -> float:
    function()  # warm-up: imports, caches, first-touch allocations
    best = min(_timed(function) for _ in range(repeats))
    return n_frames / best


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def pin_to_one_core() -> str:
    """Pin this process to the first core it may use (no-op where affinity is unsupported)."""
    cv2.setNumThreads(1)  # OpenCV's own pool would otherwise spread resizes over several threads
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames per sequence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    args = parser.parse_args()
    print("one core:", "not pinned (--no-pin)" if args.no_pin else pin_to_one_core())
    for height, width in ((480, 640), (1080, 1920)):
        keypoints = walking_keypoints(args.frames, height_px=0.6 * height, width=width)
        masks = walking_masks(keypoints, height, width)
        fps = best_fps(lambda m=masks: pretreat_silhouettes(m), args.frames, args.repeats)
        print(f"silhouette pretreatment  {width}x{height} masks → 64x64: {fps:8.1f} frames/s")
    keypoints = walking_keypoints(args.frames, height_px=300, width=640)
    fps = best_fps(lambda: skeleton_maps(keypoints), args.frames, args.repeats)
    print(f"skeleton maps            COCO-17 → 2x64x64 (σ 8):    {fps:8.1f} frames/s")
    frames = np.random.default_rng(1).integers(0, 256, (args.frames, 480, 640, 3), dtype=np.uint8)
    masks = walking_masks(walking_keypoints(args.frames, height_px=300, width=640), 480, 640)
    fps = best_fps(lambda: person_crops(frames, masks), args.frames, args.repeats)
    print(f"person crops             640x480 RGB → 448x224:     {fps:8.1f} frames/s")


if __name__ == "__main__":
    main()
