"""Diagnostics calibrated on the oracle: each diagnostic's noise floor next to a known effect.

Runs the workflow on a small world (config/demo.yaml's, cut to ``--identities`` identities, the side
view, normal walks, the baseline scenario, no recognisers, no GaitCrafter) with the ``oracle`` (the
driving video itself: every diagnostic's known zero, so its mean and 95 % CI are the noise floor of
re-perceiving a video) and the perturbed oracles of pipeline/generation/generators/controls.py (the
driving video with one known change: the known non-zeros; ``oracle-thick-1`` is oracle-thick with 1 px). Prints, per diagnostic, the oracle's mean
and CI from the aggregated diagnostics table next to each perturbed model's, with the effect each was
built to have, and the flow divergence relative to the real flow (per-video notes).

    python benchmarks/diagnostics_calibration.py [--keep DIR] [--identities 10] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSTICS = ("flow_divergence", "thickening_index", "foot_sliding", "arm_swing_error", "cadence_error")
TEMPO, SLIDE, THICK, STRETCH = 1.2, 0.2, 3, 0.8
MODELS = {
    "oracle": {"generator": "oracle"},
    "oracle-tempo": {"generator": "oracle-tempo", "params": {"factor": TEMPO}},
    "oracle-slide": {"generator": "oracle-slide", "params": {"speed": SLIDE}},
    "oracle-thick": {"generator": "oracle-thick", "params": {"pixels": THICK}},
    "oracle-thick-1": {"generator": "oracle-thick", "params": {"pixels": 1}},
    "oracle-stretch": {"generator": "oracle-stretch", "params": {"factor": STRETCH}},
    "oracle-swap": {"generator": "oracle-swap", "params": {"block": 2}},
}
# (model, diagnostic) -> the effect the control was built to have (what the row should read)
EXPECTED = {
    ("oracle-tempo", "cadence_error"): f"+{TEMPO - 1:.0%} of the real cadence",
    ("oracle-slide", "foot_sliding"): f"+{SLIDE} body heights/s",
    ("oracle-slide", "flow_divergence"): "≥ the drift (px/frame)",
    ("oracle-thick", "thickening_index"): f"> 1 ({THICK} px on each side)",
    ("oracle-thick-1", "thickening_index"): "> 1 (1 px on each side)",
    ("oracle-stretch", "arm_swing_error"): f"{STRETCH - 1:+.2f}",
    ("oracle-stretch", "thickening_index"): f"{STRETCH}",
    ("oracle-swap", "flow_divergence"): "≈ 2 × the real flow",
}


def study(identities: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # _study.py is beside this script
    from _study import demo_world_only

    config = demo_world_only("diagnostics-calibration")
    for world in config["worlds"].values():
        world.update(identities=identities, train_identities=2, views=[90], shards=2,
                     mocap_identities=min(4, identities), twins={"motion_only": 0, "appearance_only": 0},
                     conditions=[{"name": "nm-01"}, {"name": "nm-02"}])  # fmt: skip
    config["perception"]["shards"] = 2
    config["models"] = MODELS
    config["sweep"]["models"] = list(MODELS)
    config["sweep"]["scenarios"] = [
        {"name": "baseline", "task": "restoration", "driving": "^nm", "reference": "same_sequence"}
    ]
    config["recognisers"]["names"] = []
    # no GaitCrafter stage (the novelty check is validated even without datasets, so it is switched off)
    config["gaitcrafter"] = {"datasets": [], "evaluation": {"novelty": {"enabled": False}}}
    return config


def per_video_extras(work: Path) -> pl.DataFrame:
    """Per model: videos, the mean real cadence of their driving sequences where it can be measured
    (the perception of the real video; oracle-tempo should read (factor − 1) × it) and how many videos
    each diagnostic is null for (the reasons are in the row notes; for cadence: a 30-frame clip
    shorter than one stride)."""
    from pipeline.evaluation.diagnostics import cadence
    from pipeline.generation.generate import RealSource

    results = work / "results"
    source = RealSource(str(results / "manifests" / "world.parquet"),
                        str(results / "perception" / "world" / "pose" / "summary.parquet"),
                        str(results / "perception" / "world" / "masks" / "summary.parquet"))  # fmt: skip
    driving = {}
    for path in (results / "generated").rglob("manifest.parquet"):
        for r in pl.read_parquet(path).iter_rows(named=True):
            driving[r["sequence_id"]] = json.loads(r["attributes"])["driving_sequence"]
    rows = []
    for path in sorted((results / "metrics").rglob("diagnostics.parquet")):
        for r in pl.read_parquet(path).iter_rows(named=True):
            sid = driving[r["job_id"]]
            real, _ = cadence(
                source.field("pose", sid, "pose_keypoints"), float(source.rows[sid]["fps"] or 25.0)
            )
            reasons = json.loads(r["notes"] or "{}")
            rows.append({"model": r["model"], "real_cadence": real,
                         **{f"null_{m}": m in reasons for m in DIAGNOSTICS}})  # fmt: skip
    nulls = [pl.col(f"null_{m}").sum().alias(f"null {m}") for m in DIAGNOSTICS]
    return (
        pl.DataFrame(rows)
        .group_by("model")
        .agg(pl.len().alias("videos"), pl.col("real_cadence").mean().alias("real cadence (mean)"), *nulls)
        .sort("model")
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="work directory to use and keep")
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="diag-calibration-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    from _study import run_study  # beside this script (run as a script: its folder is on sys.path)

    result = run_study(study(args.identities), work, args.cores, "results/aggregate/diagnostics.parquet")
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    table = pl.read_parquet(work / "results" / "aggregate" / "diagnostics.parquet")
    print(f"{'diagnostic':<17} {'model':<15} {'mean':>8}  {'95 % CI':<20} {'n':>3}  built to read")
    for metric in DIAGNOSTICS:
        for model in MODELS:
            cell = table.filter((pl.col("metric") == metric) & (pl.col("model") == model))
            if cell.is_empty():
                continue
            r = cell.row(0, named=True)
            ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            mean = "–" if r["mean"] is None else f"{r['mean']:+.3f}"
            floor = "noise floor" if model == "oracle" else EXPECTED.get((model, metric), "≈ oracle")
            print(f"{metric:<17} {model:<15} {mean:>8}  {ci:<20} {r['n']:>3}  {floor}")
        print()
    os.chdir(work)  # the stores' paths are relative to the work directory
    with pl.Config(tbl_rows=20, tbl_cols=10, tbl_width_chars=160):
        print(per_video_extras(work))
    print(f"{time.monotonic() - start:.0f} s in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
