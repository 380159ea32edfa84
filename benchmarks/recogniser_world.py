"""Train one recogniser on the world's train split and report its Rank-1 on the test split.

Needs a finished default run (``results/manifests/world.parquet`` and ``results/perception/world``).
Uses the recogniser's settings from the config (``--set`` overrides training keys, ``--model`` model
options, both as JSON) and writes everything under a scratch directory, never into ``results/``.

``--skeletons groundtruth`` rebuilds the skeleton maps from the world's ground-truth COCO-17 keypoints
instead of mediapipe's, which separates "the world's identities are hard to tell apart from their
skeletons" from "the pose estimator's keypoints are noisy" (coats and bags hide hips and knees).

    python benchmarks/recogniser_world.py skeletongait --skeletons groundtruth
    python benchmarks/recogniser_world.py deepgaitv2 --set '{"iterations": 150}'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "results/manifests/world.parquet"
PERCEPTION = ROOT / "results/perception/world"


def stage(name: str, shard: str, shards: int, base: Path, options: dict) -> None:
    command = [
        sys.executable, "-m", "pipeline.cli", "stage", name, "--manifest", str(MANIFEST), "--shard", shard,
        "--shards", str(shards), "--store", str(base / name / f"{shard}.npz"),
        "--status", str(base / name / f"{shard}.parquet"), "--options", json.dumps(options),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)


def groundtruth_skeletons(base: Path, shards: int, config: dict) -> None:
    """Pose from the world's ground truth, then skeleton maps; silhouettes and crops are linked."""
    for other in ("silhouettes", "crops"):
        (base / other).symlink_to(PERCEPTION / other)
    perception = config.get("perception", {})
    min_valid = perception.get("min_valid_frames", 10)
    sigma = perception.get("skeleton_maps", {}).get("sigma", 8.0)
    for k in range(shards):
        shard = f"shard-{k:04d}"
        stage("pose", shard, shards, base, {"backend": "groundtruth", "keep_masks": False,
                                            "min_valid_frames": min_valid, "mediapipe": {}, "dwpose": {}})  # fmt: skip
        pose = {
            "pose_store": str(base / "pose" / f"{shard}.npz"),
            "pose_status": str(base / "pose" / f"{shard}.parquet"),
        }
        stage("skeleton_maps", shard, shards, base, {"min_valid_frames": min_valid, "sigma": sigma, **pose})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recogniser", nargs="?", default="deepgaitv2")
    parser.add_argument("--config", default=str(ROOT / "config/demo.yaml"))
    parser.add_argument("--skeletons", choices=("perception", "groundtruth"), default="perception")
    parser.add_argument("--set", default="{}", help="JSON of training keys to override")
    parser.add_argument("--model", default=None, help="JSON of model options replacing the config's")
    parser.add_argument("--keep", help="scratch directory to use (kept afterwards)")
    args = parser.parse_args()
    if not MANIFEST.exists() or not PERCEPTION.exists():
        print(f"needs a finished default run: {MANIFEST} and {PERCEPTION} (run `make demo` first)")
        return
    config = yaml.safe_load(Path(args.config).read_text())
    settings = config["recognisers"]["settings"].get(args.recogniser, {})
    train = {
        "recogniser": args.recogniser,
        "threads": config["recognisers"].get("threads", 1),
        "progress": False,
    }
    train.update(settings.get("train", {}))
    train.update(json.loads(args.set))
    train["model_options"] = json.loads(args.model) if args.model else dict(settings.get("model_options", {}))
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="recogniser-world-"))
    scratch.mkdir(parents=True, exist_ok=True)
    shards = config["datasets"]["world"].get("perception_shards") or config["perception"]["shards"]
    perception = PERCEPTION
    if args.skeletons == "groundtruth":
        perception = scratch / "perception"
        perception.mkdir(exist_ok=True)
        groundtruth_skeletons(perception, shards, config)

    os.chdir(ROOT)
    from pipeline.cli import embed_shard, train_recogniser
    from pipeline.evaluation.retrieval import run_real_retrieval

    start = time.perf_counter()
    train_recogniser(manifest=str(MANIFEST), perception_root=str(perception), out_dir=str(scratch / "train"),
                     config=train, model=str(scratch / "model.pt"))  # fmt: skip
    seconds = time.perf_counter() - start
    names = [f"shard-{k:04d}" for k in range(shards)]
    for shard in names:
        embed_shard(manifest=str(MANIFEST), shard=shard, shards=shards, source_root=str(perception),
                    recognisers={args.recogniser: str(scratch / "model.pt")},
                    out={args.recogniser: str(scratch / "emb" / f"{shard}.parquet")}, threads=train["threads"])  # fmt: skip
    run_real_retrieval(
        embeddings={args.recogniser: [str(scratch / "emb" / f"{s}.parquet") for s in names]},
        protocol="generic", metric=config["recognisers"].get("metric", "euc"), dataset="world",
        out=str(scratch / "real.parquet"), gallery_out={args.recogniser: str(scratch / "emb" / "test.parquet")},
        manifest=str(MANIFEST), twins_out=str(scratch / "twins.parquet"),
    )  # fmt: skip
    rank1 = pl.read_parquet(scratch / "real.parquet").filter(pl.col("metric") == "Rank-1")
    log = pl.read_parquet(scratch / "train" / "train_log.parquet")
    print(f"{args.recogniser} ({args.skeletons} skeletons), {train['iterations']} iterations: "
          f"training {seconds:.0f} s, {log['sequences_per_s'].median():.1f} sequences/s, "
          f"final CE accuracy {log['ce_accuracy'].tail(10).mean():.2f}")  # fmt: skip
    for condition, value in zip(rank1["condition"], rank1["value"], strict=True):
        print(f"  Rank-1 {condition:<20} {value:5.1f} %")


if __name__ == "__main__":
    main()
