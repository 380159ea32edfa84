"""Frames per second of the world renderer (rgb + mask + parts + keypoints) on one core.

Run pinned to one core for numbers that mean something:
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/render_speed.py

The walker is a self-contained analytic walk (forward kinematics of sinusoidal joint swings), so the
benchmark does not depend on the motion module. Per-sequence setup (background plate, primitives) is
included in the timing, amortised over the sequence.
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

from pipeline.skeleton import SMPL24_INDEX, SMPL24_PARENTS  # noqa: E402
from pipeline.world.appearance import Appearance  # noqa: E402
from pipeline.world.body import BodyShape  # noqa: E402
from pipeline.world.camera import Camera  # noqa: E402
from pipeline.world.render import render_sequence  # noqa: E402

J = SMPL24_INDEX


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations [T, 3, 3] about world axis 0 (X), 1 (Y) or 2 (Z) by ``angle`` [T] radians."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((*np.shape(angle), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i], out[..., j, j], out[..., i, j], out[..., j, i] = c, c, -s, s
    return out


def toy_walk(
    body: BodyShape, n_frames: int, fps: float = 25.0, speed: float = 1.3, start_x: float = -1.6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An analytic walk along +X: (joints [T, 24, 3], global orientations [T, 24, 3, 3]).

    Sagittal swings are rotations about Z (the walker's right axis): positive angles swing a hanging limb
    forward. Pelvis yaw and a counter-rotating chest give the walk some twist; the whole body is lifted
    so the lower foot stays on the floor.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    stride_hz = speed / (1.45 * body.leg_length)  # a stride (two steps) is about 1.45 leg lengths
    phi = 2 * np.pi * stride_hz * t + rng.uniform(0, 2 * np.pi)
    local = np.broadcast_to(np.eye(3), (n_frames, 24, 3, 3)).copy()
    local[:, J["pelvis"]] = _rot(1, 0.08 * np.sin(phi))
    local[:, J["spine3"]] = _rot(1, -0.12 * np.sin(phi))
    for side, shift in (("left", 0.0), ("right", np.pi)):
        p = phi + shift
        local[:, J[f"{side}_hip"]] = _rot(2, 0.05 + 0.38 * np.sin(p))
        local[:, J[f"{side}_knee"]] = _rot(2, -(0.12 + 0.5 * np.maximum(0.0, np.sin(p + 1.2)) ** 1.5))
        local[:, J[f"{side}_ankle"]] = _rot(2, 0.12 * np.sin(p - 0.6))
        local[:, J[f"{side}_shoulder"]] = _rot(2, -0.32 * np.sin(p)) @ _rot(0, np.full(n_frames, 0.08 * (1 if side == "right" else -1)))
        local[:, J[f"{side}_elbow"]] = _rot(2, 0.25 + 0.2 * np.maximum(0.0, -np.sin(p)))
    offsets = body.rest_offsets()
    rot = np.empty_like(local)
    pos = np.zeros((n_frames, 24, 3))
    for j, parent in enumerate(SMPL24_PARENTS):
        if parent < 0:
            rot[:, j], pos[:, j] = local[:, j], offsets[j]
        else:
            rot[:, j] = rot[:, parent] @ local[:, j]
            pos[:, j] = pos[:, parent] + np.einsum("tij,j->ti", rot[:, parent], offsets[j])
    floor = body.rest_joints()[J["left_foot"], 1]
    lowest = np.minimum(pos[:, J["left_foot"], 1], pos[:, J["right_foot"], 1])
    pos[..., 1] += (floor - lowest)[:, None]
    pos[..., 0] += start_x + speed * t[:, None]
    return pos, rot


def _time(width: int, height: int, background: str, n_frames: int, repeats: int) -> float:
    rng = np.random.default_rng(1)
    body, app = BodyShape.sample(rng), Appearance.sample(rng)
    joints, rot = toy_walk(body, n_frames)
    camera = Camera.for_view(90.0, width, height)
    best = np.inf
    for r in range(repeats):
        start = time.perf_counter()
        out = render_sequence(joints, rot, body, app, coat=False, bag=False, camera=camera, background=background,
                              rng=np.random.default_rng(r))
        best = min(best, time.perf_counter() - start)
        assert out.rgb.shape == (n_frames, height, width, 3)
    return n_frames / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"affinity={sorted(os.sched_getaffinity(0))} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'resolution':>12} {'background':>10} {'frames/s':>9}")
    for width, height in ((128, 96), (256, 192), (512, 384)):
        for background in ("studio", "wild"):
            fps = _time(width, height, background, args.frames, args.repeats)
            print(f"{width:>5}x{height:<6} {background:>10} {fps:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
