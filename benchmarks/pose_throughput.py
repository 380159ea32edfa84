"""Throughput of the pose + segmentation stage vs bare mediapipe ``process()`` calls, on one core.

Both sides see the same frames (synthetic walking figures, drawn by the tests' painter) and run the
same BlazePose graph (full model, segmentation on). "bare" is one ``Pose.process`` per full frame and
nothing else; "stage" is :func:`pipeline.perception.masks.perceive` + :func:`pipeline.perception.masks.flag_frames` per clip,
i.e. everything the stage adds: the clip-start flush, the whole-frame people search, blanking the frame
around the main walker, retries after tracking losses, landmarks to COCO-17 pixels, mask thresholding
and frame flags. Graphs are built and warmed up before timing. Target: stage overhead ≤ 15 %.
``--npy`` times other clips instead (e.g. frames rendered by the synthetic world).

    taskset -c 0 .venv/bin/python benchmarks/pose_throughput.py [--clips 4 --frames 60 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_pose import canvas, draw_person  # noqa: E402  (the figure painter lives with the tests)

from pipeline.perception.person import flag_frames, make_perception, perceive  # noqa: E402


def make_clips(n_clips: int, n_frames: int, width: int, height: int) -> list[np.ndarray]:
    """Walkers crossing the view at different sizes and speeds, one clip each."""
    clips = []
    for c in range(n_clips):
        size = height * (0.55 + 0.3 * c / max(n_clips - 1, 1))
        top = (height - size) / 2
        speed = width * 0.6 / n_frames
        frames = [
            draw_person(canvas(width, height), width * 0.2 + speed * t, top, size, phase=0.6 * t)
            for t in range(n_frames)
        ]
        clips.append(np.stack(frames))
    return clips


def best_time(run: Callable[[], None], repeats: int) -> float:
    """Fastest of ``repeats`` runs (the least disturbed by other processes on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_runner(clips: list[np.ndarray]) -> tuple[Callable[[], None], Callable[[], None]]:
    from mediapipe.python.solutions import pose as mp_pose

    graph = mp_pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=True)

    def run() -> None:
        for clip in clips:
            for frame in clip:
                graph.process(frame)

    return run, graph.close


def stage_runner(clips: list[np.ndarray], follow: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    pose, masks = make_perception("mediapipe", "mediapipe", mediapipe_options={"follow": follow})

    def run() -> None:
        for clip in clips:
            flag_frames(perceive(clip, pose, masks))

    def close() -> None:
        pose.close()
        masks.close()

    return run, close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--npy", type=Path, help="use these clips instead: a .npy of [N, T, H, W, 3] uint8 RGB"
    )
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: leave affinity alone)")
    args = parser.parse_args()
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    if args.npy:
        clips = list(np.load(args.npy))
    else:
        clips = make_clips(args.clips, args.frames, args.width, args.height)
    n = sum(len(c) for c in clips)
    h, w = clips[0].shape[1:3]
    print(f"{len(clips)} clips, {n} frames, {w}x{h}, cores {sorted(os.sched_getaffinity(0))}")

    runners = {
        "bare mediapipe process()": bare_runner(clips),
        "stage (follow main walker)": stage_runner(clips, True),
        "stage (full frames, follow off)": stage_runner(clips, False),
    }
    for run, _ in runners.values():
        run()  # warm-up: graph start, interpreter setup, first detections
    # Interleaved repeats, best of each: load from other processes on the machine hits all alike.
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, (run, _) in runners.items():
            times[name].append(best_time(run, 1))
    results = {name: min(values) for name, values in times.items()}
    for name, (_, close) in runners.items():
        close()
        print(f"{name:34s} {n / results[name]:7.1f} frames/s  ({1000 * results[name] / n:.2f} ms/frame)")
    bare = results["bare mediapipe process()"]
    for name, seconds in results.items():
        if name.startswith("stage"):
            print(f"overhead of {name}: {100 * (seconds / bare - 1):+.1f} % (ratio {seconds / bare:.3f})")


if __name__ == "__main__":
    main()
