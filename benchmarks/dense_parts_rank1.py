"""Rank-1 of posewarp-dense with approximate part maps against ground-truth ones, on the demo world.

Two models in one sweep: ``dense-gt`` (``parts: groundtruth``, the world's DensePose-like maps) and
``dense-approx`` (``parts: approx_from_pose``: mask pixels assigned to the nearest limb of the perceived
pose, what real video gets). Same driving sequences, references and recognisers; the difference in
Rank-1 / mAP of the driving identity is what the approximation costs the biometric fidelity study.

Runs the workflow on config/demo.yaml's world with only these two models, the baseline scenario, DeepGaitV2
(silhouettes) and BigGait (RGB: the texture the approximation changes) and no GaitCrafter, in a scratch
directory (default: a temporary one), and prints the biometric table's cells.

    python benchmarks/dense_parts_rank1.py [--keep DIR] [--identities 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent


def study(identities: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # _study.py is beside this script
    from _study import demo_world_only

    config = demo_world_only("dense-parts")
    for world in config["worlds"].values():
        world["identities"] = identities
        world["train_identities"] = identities // 2
    config["models"] = {
        "dense-gt": {"generator": "posewarp-dense", "parts": "groundtruth"},
        "dense-approx": {"generator": "posewarp-dense", "parts": "approx_from_pose"},
    }
    config["sweep"]["models"] = list(config["models"])
    # the schema's baseline scenario: restoration of normal walks, reference from the driving sequence
    config["sweep"]["scenarios"] = [{"name": "baseline", "task": "restoration", "driving": "^nm", "reference": "same_sequence"}]
    config["recognisers"]["names"] = ["deepgaitv2", "biggait"]
    config["gaitcrafter"]["datasets"] = []
    config["perception"]["guidance"] = {"formats": []}
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work directory to use and keep")
    parser.add_argument("--identities", type=int, default=16)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dense-parts-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    from _study import run_study  # beside this script (run as a script: its folder is on sys.path)

    result = run_study(study(args.identities), work, args.cores)
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    table = pl.read_parquet(work / "results" / "aggregate" / "biometric.parquet")
    cells = table.filter(pl.col("identity") == "driving").select(
        "model", "recogniser", "metric", "mean", "ci_low", "ci_high", "n"
    ).sort("recogniser", "metric", "model")
    with pl.Config(tbl_rows=50, tbl_cols=10):
        print(cells)
    print(f"{time.monotonic() - start:.0f} s in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
