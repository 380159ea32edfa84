"""Dry-run of a full-size study: 16,000 generated videos, with manifests of the real datasets' sizes.

4 models (3 upstream animators + posewarp-dense) × 2 datasets (SUSTech1K: 25,239 sequences, CCGR-MINI: 47,884) × 250 identities ×
4 task-scenarios × 2 sequences = 16,000 videos. No real data is needed: the benchmark writes the two
manifests (what the index stage would produce) into a scratch working directory, marks them as
existing outputs, and times `snakemake -n --quiet` (DAG construction for everything downstream),
reporting wall time and peak memory of the snakemake process. Target: ≤ 5 s on 2 cores. The study is
exactly the one described here (`--replace-workflow-config`: no default config file is merged in), and
the run fails if the plan holds any other dataset.

Snakemake spends ~2 ms per DAG job on top of ~2 s of start-up, so the time follows the job count,
which follows the shard sizes (both options below; the defaults are sizes a SLURM cluster likes:
jobs of tens of minutes, not seconds). Finer shards are valid configurations, just slower to plan.

    python benchmarks/dryrun_scale.py [--keep DIR] [--perception-shards 25 50] [--sweep-shards 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.contracts import MANIFEST, write_table

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"sustech1k": (1050, 25_239), "ccgr_mini": (970, 47_884)}
# MTVCrafter needs SMPL-24 joints, which generation takes from the world's ground truth only (NLF joints
# of real video are rendered by the guidance stage but not yet passed to generation), so the plan refuses
# it on SUSTech1K / CCGR-MINI before any job; posewarp-dense (approximate part maps) is the fourth model
# here: the DAG has the same shape and job count.
MODELS = ("magicanimate", "animateanyone", "unianimate", "posewarp-dense")
UPSTREAM = {"magicanimate", "animateanyone", "unianimate"}


def fake_manifest(dataset: str, subjects: int, sequences: int) -> list[dict]:
    rows = []
    per_subject = sequences // subjects + 1
    for i in range(sequences):
        subject = f"{i // per_subject:04d}"
        condition = f"{(i % per_subject) // 3:02d}-nm"
        view = f"{(i % 3) * 45:03d}"
        rows.append(
            {
                "dataset": dataset,
                "subject": subject,
                "condition": condition,
                "view": view,
                "sequence_id": f"{subject}/{condition}/{view}",
                "split": "train" if int(subject) < 250 else "test",
                "role": "train" if int(subject) < 250 else ("gallery" if condition.startswith("00") else "probe"),
                "path_video": f"/data/{dataset}/{subject}/{condition}/{view}.mp4",
                "frame_count": 60,
            }
        )
    return rows


def study_config(sustech_shards: int, ccgr_shards: int, sweep_shards: int) -> dict:
    return {
        "study": "fullsize",
        "datasets": {
            "sustech1k": {"kind": "sustech1k", "root": "/data/SUSTech1K", "partition": "/data/SUSTech1K.json",
                          "perception_shards": sustech_shards},
            "ccgr_mini": {"kind": "ccgr_mini", "root": "/data/CCGR-MINI", "partition": "/data/CCGR-MINI.json",
                          "perception_shards": ccgr_shards},
        },
        # ~1,000 real sequences per perception job (about half an hour of one core: SLURM favours fewer,
        # longer jobs) and ~170 generated videos per generation job (2-3 GPU hours for the slowest
        # animator). The upstream adapters render their own guidance, so no separate guidance jobs.
        "perception": {"real": {"pose": "mediapipe", "masks": "from_pose"}, "guidance": {"formats": []}},
        "models": {
            m: {"generator": m, "resources": {"gpu": 1, "mem_mb": 32000, "runtime": 240},
                **({"checkout": f"/opt/{m}", "python": f"/opt/envs/{m}/bin/python"} if m in UPSTREAM else {})}
            for m in MODELS
        },  # fmt: skip
        "sweep": {"models": list(MODELS), "identities": 250, "sequences_per_identity": 2, "shards": sweep_shards},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", help="working directory to use (kept afterwards)")
    parser.add_argument("--perception-shards", type=int, nargs=2, default=(25, 50), metavar=("SUSTECH", "CCGR"),
                        help="real perception shards per dataset (default 25 50: ~1,000 sequences per job)")
    parser.add_argument("--runs", type=int, default=5, help="timed dry-runs (median and range are printed)")
    parser.add_argument("--slurm-conf", default="/dev/null",
                        help="SLURM_CONF for the runs (default /dev/null, as the Makefile's local targets: the "
                             "SLURM plugin's import-time scontrol probe then fails at once; '' keeps yours)")
    parser.add_argument("--sweep-shards", type=int, default=3,
                        help="generation shards per (dataset, model, task, scenario); default 3: ~170 videos per job")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="dryrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for dataset, (subjects, sequences) in SIZES.items():
        write_table(fake_manifest(dataset, subjects, sequences), workdir / f"results/manifests/{dataset}.parquet", MANIFEST)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(study_config(*args.perception_shards, args.sweep_shards)))
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
    videos = len(MODELS) * len(SIZES) * 250 * 4 * 2
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow/Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), "--replace-workflow-config",
        "-n", "--quiet", "--cores", "2",
    ]  # fmt: skip
    env = dict(os.environ)
    if args.slurm_conf:
        env["SLURM_CONF"] = args.slurm_conf
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    seconds = statistics.median(times)
    # A second, untimed run that prints the job table (printing costs time of its own).
    stats = subprocess.run([*command[:-4], "-n", "--quiet", "rules", "--cores", "2"], capture_output=True, text=True)
    jobs = next((line.split()[-1] for line in stats.stdout.splitlines() if line.startswith("total")), "?")
    planned = subprocess.run([*command[:-4], "-n", "--cores", "2"], capture_output=True, text=True).stdout
    others = sorted(set(re.findall(r"results/manifests/([^/\s,]+)\.parquet", planned)) - set(SIZES))
    if others:
        raise SystemExit(f"the plan holds datasets that are not the described study's: {others}")
    print(f"full-size dry-run: {videos} generated videos, {jobs} jobs in the DAG")
    print(f"wall time: median {seconds:.2f} s of {len(times)} runs (range {min(times):.2f}-{max(times):.2f} s; "
          f"target <= 5 s), peak RSS {peak_mb:.0f} MB, SLURM_CONF={env.get('SLURM_CONF', '(unset)')}")
    print(f"ratio to target: {seconds / 5.0:.2f}")


if __name__ == "__main__":
    main()
