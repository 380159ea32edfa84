"""Frames per second of the posewarp animator (sparse and dense guidance) on one core.

Run pinned to one core for numbers that mean something:
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/posewarp_speed.py

The reference is frame 0 of a world sequence of identity A, the driving guidance (COCO-17 keypoints
and IUV part maps) a world sequence of identity B, both rendered by :mod:`pipeline.world` at the given
resolution. The timing covers the whole ``generate`` call (segmentation / atlas and background
inpainting once per job, then every frame), amortised over the driving frames; best of ``--repeats``.
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

from pipeline.generation.generators.base import Driving, GenerationJob, Reference, make_generator  # noqa: E402
from pipeline.generation.generators.posewarp import PoseWarp  # noqa: E402, F401  (registers the posewarp generators)
from pipeline.world.camera import Camera  # noqa: E402
from pipeline.world.generate import build_identity, build_motion  # noqa: E402
from pipeline.world.kinematics import place, pose  # noqa: E402
from pipeline.world.plan import IdentityPlan  # noqa: E402
from pipeline.world.render import Rendered, render_sequence  # noqa: E402


def identity(index: int) -> IdentityPlan:
    """A procedural-motion identity whose body, appearance and gait seeds derive from ``index``."""
    seeds = {"body": 1000 + index, "appearance": 2000 + index, "motion": 3000 + index}
    return IdentityPlan(
        f"bench{index}", index, "test", seeds, dict.fromkeys(seeds, f"bench{index}"), "procedural"
    )


def render(index: int, frames: int, width: int, height: int, view: float = 90.0) -> Rendered:
    """One walk of identity ``index`` across the middle of a ``view``-degree camera on a studio background."""
    rng = np.random.default_rng(index)
    plan = identity(index)
    body, appearance = build_identity(plan)
    posed = pose(body, build_motion({"frames": frames, "fps": 25.0}, plan, rng))
    mid = posed.joints[frames // 2, 0]
    posed = place(posed, 0.0, (-mid[0], 0.0, -mid[2]))
    camera = Camera.for_view(view, width, height, distance_m=4.5)
    return render_sequence(posed.joints, posed.orientations, body, appearance, coat=False, bag=False,
                           camera=camera, background="studio", rng=rng)  # fmt: skip


def make_job(ref: Rendered, drv: Rendered) -> GenerationJob:
    reference = Reference(
        image=ref.rgb[0], mask=ref.mask[0], keypoints=ref.keypoints2d[0], parts=ref.parts[0]
    )
    height, width = drv.rgb.shape[1:3]
    driving = Driving(keypoints=drv.keypoints2d, height=height, width=width, fps=25.0, parts=drv.parts)
    return GenerationJob("bench", reference, driving, seed=0)


def fps_of(name: str, job: GenerationJob, repeats: int) -> tuple[float, float]:
    """(frames/s by wall clock, frames/s by this process's CPU time), best of ``repeats``.

    The CPU-time figure is the one to quote on a shared machine: it does not count the time the core
    spent on other processes.
    """
    generator = make_generator(name)
    generator.load()
    wall = cpu = np.inf
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = generator.generate(job)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
        assert out.frames.shape == (job.driving.frame_count, job.driving.height, job.driving.width, 3)
    generator.close()
    return job.driving.frame_count / wall, job.driving.frame_count / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="256x192", help="WxH of reference and driving frames")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    cv2.setNumThreads(1)
    print(f"affinity={sorted(os.sched_getaffinity(0))} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    job = make_job(render(1, 1, width, height), render(2, args.frames, width, height))
    print(f"{'generator':>16} {'size':>8} {'frames':>6} {'frames/s':>9} {'(cpu time)':>10}")
    for name in ("posewarp-sparse", "posewarp-dense"):
        fps, cpu_fps = fps_of(name, job, args.repeats)
        print(f"{name:>16} {width:>4}x{height:<3} {args.frames:>6} {fps:9.1f} {cpu_fps:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
