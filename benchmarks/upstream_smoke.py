"""Run an upstream animator adapter end to end against a real upstream checkout, with tiny random weights.

    python benchmarks/upstream_smoke.py --model magicanimate --checkout PATH --python PATH \
        [--work DIR] [--no-shim] [--device cpu|cuda] [--keep] [--frames N]

What it does:

1. renders a tiny world (one walker, two sequences) with the project's own world code;
2. imports ``benchmarks/upstream_tiny/<model>.py`` (any module there is a model; no table here) and
   calls its ``prepare(checkout, python, work, device) -> dict``, which builds tiny random weights
   under ``work/`` with the upstream's own classes (in the upstream's env) and returns the overrides
   of the adapter's ``models.<model>`` options (``weights``, ``defaults``, ``env``, ...). An upstream
   that can only be checked at the contract level returns ``{"contract_level": {...what ran...}}``
   instead; the script then reports that and does not run the adapter;
3. builds the project's adapter from the generator registry with ``checkout``, ``python`` and
   ``env = {"PYTHONPATH": "<cpu shim>:<checkout>"}`` (``--no-shim``: the checkout only, as on a GPU
   node) plus the overrides, and generates one video per sequence (driving = one sequence, reference =
   first frame of the other), checking that each video has the driving sequence's frame count and size;
4. prints one JSON line: the upstream commit, how far it ran, frames generated, seconds per generated
   frame and the adapter's overhead (preparation + ingestion) as a share of the job; when the upstream
   fails (or the adapter refuses the config) the line says ``"reached": "failed"`` with the error and
   its stderr tail, and the exit code is 1.

Timing: CPU seconds from ``getrusage``: the adapter's own preparation and ingestion run in this
process (RUSAGE_SELF), the upstream command in a child (RUSAGE_CHILDREN). Wall seconds are reported
too (the upstream's from the adapter's ``notes["runtime_s"]``), and mean little on a shared machine.

The CPU shim (``benchmarks/upstream_tiny/cpu_shim``) maps CUDA to CPU and fp16 to fp32: it is for
CPU-only machines. On a GPU node pass ``--no-shim --device cuda``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).resolve().parent / "upstream_tiny"
SHIM = TINY / "cpu_shim"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TINY.parent))

CONTRACT_KEY = "contract_level"  # prepare() returns {CONTRACT_KEY: {...}} when the adapter cannot run


def tiny_models() -> list[str]:
    """Every ``upstream_tiny/<model>.py`` (helpers start with an underscore)."""
    return sorted(p.stem for p in TINY.glob("*.py") if not p.stem.startswith("_"))


def render_world(frames: int) -> list[dict[str, Any]]:
    """Two sequences (nm-01, nm-02) of one world walker with their ground truth (a world needs 2 identities)."""
    from pipeline.config import validate_config
    from pipeline.world.generate import render_sequence_plan
    from pipeline.world.plan import plan_identities, plan_sequences

    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": 2, "train_identities": 1, "seed": 14, "views": [90],
                         "conditions": [{"name": "nm-01"}, {"name": "nm-02"}], "frames": frames,
                         "motion_source": "procedural"}},
    })  # fmt: skip
    world = config["worlds"]["x"]
    identities = plan_identities(world, [])
    by = {p.subject: p for p in identities}
    sequences = []
    plans = plan_sequences(world, identities)
    for plan in [p for p in plans if p.subject == plans[0].subject]:
        rendered = render_sequence_plan(world, by[plan.subject], plan, identities)
        sequences.append(
            {"id": plan.sequence_id, "rgb": rendered.rgb, "fps": rendered.fps, "gt": rendered.groundtruth}
        )
    return sequences


def make_jobs(sequences: list[dict[str, Any]]) -> list[Any]:
    """One job per sequence: it drives, the other sequence's first frame is the reference."""
    from pipeline.contracts import unpack_masks
    from pipeline.generation.generators.base import Driving, GenerationJob, Reference
    from pipeline.perception.guidance import smpl24_for_mtvcrafter

    def keypoints(seq: dict[str, Any]) -> np.ndarray:
        kp = seq["gt"]["keypoints2d"].copy()
        kp[..., 2] = (kp[..., 2] > 0).astype(np.float32)
        return kp

    jobs = []
    for i, drv in enumerate(sequences):
        ref = sequences[(i + 1) % len(sequences)]
        height, width = drv["rgb"].shape[1:3]
        masks = unpack_masks(drv["gt"]["mask"], width)
        reference = Reference(
            image=ref["rgb"][0], mask=unpack_masks(ref["gt"]["mask"], width)[0], keypoints=keypoints(ref)[0],
            parts=ref["gt"]["parts"][0], sequence_id=ref["id"], frame_index=0,
        )  # fmt: skip
        driving = Driving(
            keypoints=keypoints(drv), height=height, width=width, fps=float(drv["fps"]), parts=drv["gt"]["parts"],
            smpl_mm=smpl24_for_mtvcrafter(drv["gt"]["joints3d"], drv["gt"]["extrinsics"]),
            frames=drv["rgb"], masks=masks, sequence_id=drv["id"],
        )  # fmt: skip
        jobs.append(GenerationJob(job_id=f"smoke-{drv['id']}", reference=reference, driving=driving, seed=7))
    return jobs


def adapter_options(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    checkout = str(Path(args.checkout).resolve())
    pythonpath = checkout if args.no_shim else f"{SHIM}:{checkout}"
    env = {
        "PYTHONPATH": pythonpath,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.update(overrides.pop("env", {}) or {})
    return {
        "checkout": checkout,
        "python": str(Path(args.python).absolute()),
        "env": env,
        "work_dir": str(Path(args.work) / "jobs"),
        "keep_work": bool(args.keep),
        **overrides,
    }


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_jobs(model: str, options: dict[str, Any], jobs: list[Any]) -> dict[str, Any]:
    """Generate every job; CPU and wall seconds split into upstream (child) and adapter (this process)."""
    from pipeline.generation.generators import make_generator

    generator = make_generator(model, **options)
    generator.load()
    totals = {"adapter_cpu_s": 0.0, "upstream_cpu_s": 0.0, "job_wall_s": 0.0, "upstream_wall_s": 0.0}
    generated, per_job = 0, []
    for job in jobs:
        self0, child0, wall0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.monotonic()
        video = generator.generate(job)
        wall = time.monotonic() - wall0
        adapter_cpu = _cpu(resource.RUSAGE_SELF) - self0
        upstream_cpu = _cpu(resource.RUSAGE_CHILDREN) - child0
        expected = (job.driving.frame_count, job.driving.height, job.driving.width, 3)
        if video.frames.shape != expected or video.frames.dtype != np.uint8:
            raise SystemExit(
                f"{model}: video {video.frames.shape} {video.frames.dtype}, expected {expected} uint8"
            )
        count = int(video.notes.get("timing", {}).get("generated_frames", len(video.frames)))
        generated += count
        totals["adapter_cpu_s"] += adapter_cpu
        totals["upstream_cpu_s"] += upstream_cpu
        totals["job_wall_s"] += wall
        totals["upstream_wall_s"] += float(video.notes.get("runtime_s", 0.0))
        per_job.append({"job": job.job_id, "generated_frames": count, "driving_frames": len(video.frames),
                        "upstream_cpu_s": round(upstream_cpu, 2), "adapter_cpu_s": round(adapter_cpu, 2),
                        "panel": video.notes.get("panel")})  # fmt: skip
    generator.close()
    job_cpu = totals["adapter_cpu_s"] + totals["upstream_cpu_s"]
    return {
        "reached": "end to end",
        "generated_frames": generated,
        "s_per_generated_frame_cpu": round(totals["upstream_cpu_s"] / max(generated, 1), 3),
        "s_per_generated_frame_wall": round(totals["upstream_wall_s"] / max(generated, 1), 3),
        "adapter_overhead_share_cpu": round(totals["adapter_cpu_s"] / job_cpu, 4) if job_cpu else None,
        "adapter_overhead_share_wall": round(1 - totals["upstream_wall_s"] / totals["job_wall_s"], 4),
        **{k: round(v, 2) for k, v in totals.items()},
        "jobs": per_job,
    }


def checkout_commit(checkout: Path) -> str | None:
    """The checkout's git commit when it is a git work tree (an archive extract has none)."""
    try:
        found = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=tiny_models())
    parser.add_argument("--checkout", required=True, type=Path, help="the upstream repository checkout")
    parser.add_argument("--python", required=True, type=Path, help="python executable of the upstream's env")
    parser.add_argument(
        "--work", type=Path, default=None, help="tiny weights and job dirs (default: a temp dir)"
    )
    parser.add_argument(
        "--no-shim", action="store_true", help="run upstream as is (GPU node), without the CPU shim"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--keep", action="store_true", help="keep the per-job work dirs")
    parser.add_argument("--frames", type=int, default=16, help="frames per world sequence")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device == "cuda" and not args.no_shim:
        raise SystemExit("--device cuda needs --no-shim: the CPU shim turns every CUDA call into a CPU one")
    args.work = Path(args.work or tempfile.mkdtemp(prefix=f"upstream-smoke-{args.model}-")).absolute()
    args.work.mkdir(parents=True, exist_ok=True)
    from pipeline.generation.generators.upstream import SPECS

    tiny = importlib.import_module(f"upstream_tiny.{args.model}")
    spec = SPECS[args.model]
    cpu0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    overrides = dict(tiny.prepare(args.checkout.resolve(), args.python.absolute(), args.work, args.device))
    report: dict[str, Any] = {
        "model": args.model, "upstream": spec.repo, "pinned_commit": spec.commit,
        "checkout_commit": checkout_commit(args.checkout), "shim": not args.no_shim, "device": args.device,
        "prepare_cpu_s": round(_cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu0, 2),
    }  # fmt: skip
    if CONTRACT_KEY in overrides:
        report.update(reached="contract level", details=overrides[CONTRACT_KEY])
    else:
        from pipeline.generation.generators import GenerationError

        jobs = make_jobs(render_world(args.frames))
        try:
            report.update(sequences=len(jobs), **run_jobs(args.model, adapter_options(args, overrides), jobs))
        except (GenerationError, ValueError) as err:  # the upstream failed, or the adapter refused the config
            report.update(reached="failed", error=str(err)[-3000:])
            print(json.dumps(report), flush=True)
            raise SystemExit(1) from err
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
