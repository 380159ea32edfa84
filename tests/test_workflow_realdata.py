"""Real-data layouts through `snakemake` with the schema's defaults (issue 12, items 1, 3 and 4).

One tiny study of three datasets on disk:

* ``casiab``: a CASIA-B-layout OpenGait pkl tree that ships silhouettes only (walker-like, so training
  learns something). Its shipped silhouettes are used by default; DeepGaitV2 is trained and scored per
  condition; SkeletonGait (no pose) and BigGait (no RGB) say why they are not.
* ``walkers``: a SUSTech1K-layout tree that ships silhouettes and keypoints (used by default, so
  SkeletonGait trains too) and an RGB pkl without frames: the sweep's animator fails on every job.
* ``broken``: four sequences over two perception shards (one shard empty) whose silhouette pkls
  are unusable (every sequence fails in the masks stage).

Every failure must reach the tables and the report; nothing may crash.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.contracts import MANIFEST, read_frame_store, read_table
from pipeline.runner import STAGE_STATUS
from tests.dataset_fixtures import dump, make_walker_opengait_tree, make_walker_sustech1k_tree
from tests.test_workflow import ROOT, snakemake

SHARDS = 2


def _broken_subjects() -> list[str]:
    """Two subject names whose four sequences (nm-01 and bg-01, view 090) all fall into one of the
    two perception shards, so the other shard of the dataset is empty."""
    for i in range(1000):
        names = [f"b{i:03d}", f"c{i:03d}"]
        shards = {
            zlib.crc32(f"{s}/{t}/090".encode()) % SHARDS for s in names for t in ("nm-01", "bg-01")
        }
        if len(shards) == 1:
            return names
    raise AssertionError("no subject names found")


def _config(base: Path) -> Path:
    casiab = make_walker_opengait_tree(base, "casiab", [f"{i:03d}" for i in range(1, 9)], train=4)
    walkers = make_walker_sustech1k_tree(base)
    broken = make_walker_opengait_tree(base, "broken", _broken_subjects(), train=1, types=("nm-01", "bg-01"))
    for sequence_id in broken.frames:
        dump(broken.root / sequence_id / "090.pkl", np.zeros(10, np.uint8))  # not [T, H, W] silhouettes
    tiny = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())["recognisers"]["settings"]
    config = {
        "study": "realdata",
        "datasets": {
            "casiab": {
                "kind": "opengait", "root": str(casiab.root), "partition": str(casiab.partition),
                "gallery_types": ["nm-01", "nm-02"], "probe_types": ["bg-01", "cl-01"],
            },
            "walkers": {"kind": "sustech1k", "root": str(walkers.root), "partition": str(walkers.partition)},
            "broken": {
                "kind": "opengait", "root": str(broken.root), "partition": str(broken.partition),
                "gallery_types": ["nm-01"], "probe_types": ["bg-01"],
            },
        },
        "perception": {"shards": SHARDS, "min_valid_frames": 6, "guidance": {"formats": []}},
        "models": {"oracle": {"generator": "oracle"}},
        "sweep": {
            "models": ["oracle"], "identities": 2, "sequences_per_identity": 1, "shards": 1,
            "scenarios": [{"name": "baseline", "task": "restoration", "driving": ".", "reference": "same_sequence"}],
        },
        "recognisers": {
            "names": ["deepgaitv2", "skeletongait", "biggait"],
            "threads": 1,
            "settings": {name: tiny[name] for name in ("deepgaitv2", "skeletongait", "biggait")},
        },
    }  # fmt: skip
    path = base / "realdata.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def realdata_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("realdata")
    config = _config(base / "data")
    workdir = base / "run"
    result = snakemake(workdir, "-q", config=config)
    if result.returncode != 0:
        logs = "\n".join(f"{p}:\n{p.read_text()[-1500:]}" for p in (workdir / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{logs[-12000:]}")
    return workdir


def _statuses(run: Path, dataset: str, stage: str) -> list[dict]:
    return [
        r
        for shard in range(SHARDS)
        for r in read_table(run / f"results/perception/{dataset}/{stage}/shard-{shard:04d}.parquet", STAGE_STATUS).to_pylist()
    ]


def _real(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "results/aggregate/real_retrieval.parquet")


@pytest.mark.slow
def test_shipped_silhouettes_are_used_and_passed_through(realdata_run):
    manifest = read_table(realdata_run / "results/manifests/casiab.parquet", MANIFEST).to_pylist()
    assert len(manifest) == 32 and all(r["error"] is None for r in manifest)
    sils = _statuses(realdata_run, "casiab", "silhouettes")
    assert len(sils) == 32 and all(r["error"] is None and r["backend"] == "dataset" for r in sils)
    # passed through unchanged: the store holds the shipped pkl's frames
    row = manifest[0]
    store = next(
        read_frame_store(realdata_run / f"results/perception/casiab/silhouettes/shard-{k:04d}.npz")
        for k in range(SHARDS)
        if row["sequence_id"]
        in read_frame_store(realdata_run / f"results/perception/casiab/silhouettes/shard-{k:04d}.npz")
    )
    import pickle

    shipped = pickle.loads(Path(row["path_silhouette"]).read_bytes())
    assert np.array_equal(store.get(row["sequence_id"], "sil"), shipped)
    # no pose shipped: pose and skeleton maps say so per sequence; crops say there is no RGB
    assert all("ships no pose" in r["error"] for r in _statuses(realdata_run, "casiab", "pose"))
    assert all("ships no pose" in r["error"] for r in _statuses(realdata_run, "casiab", "skeleton_maps"))
    assert all("no RGB to crop" in r["error"] for r in _statuses(realdata_run, "casiab", "crops"))


@pytest.mark.slow
def test_silhouette_dataset_is_trained_on_and_scored_per_condition(realdata_run):
    real = _real(realdata_run).filter(pl.col("dataset") == "casiab")
    deep = real.filter((pl.col("recogniser") == "deepgaitv2") & (pl.col("metric") == "Rank-1"))
    assert set(deep.get_column("condition")) == {"Overall", "condition=bg-01", "condition=cl-01"}
    assert deep.get_column("value").null_count() == 0
    assert all(0.0 <= v <= 100.0 for v in deep.get_column("value"))
    assert deep.get_column("note").null_count() == deep.height
    # the skeleton and RGB recognisers are not trained, and say why
    for recogniser, why in (("skeletongait", "ships no pose"), ("biggait", "no RGB to crop")):
        rows = real.filter(pl.col("recogniser") == recogniser)
        assert rows.height == 1 and rows.get_column("value").to_list() == [None]
        assert "not trained on this dataset" in rows.get_column("note")[0] and why in rows.get_column("note")[0]
    report = (realdata_run / "results/report/report.html").read_text()
    assert "condition=cl-01" in report and "condition=bg-01" in report
    assert "ships no pose" in report and "no RGB to crop" in report


@pytest.mark.slow
def test_shipped_keypoints_train_the_skeleton_recogniser(realdata_run):
    pose = _statuses(realdata_run, "walkers", "pose")
    assert len(pose) == 56 and all(r["error"] is None and r["backend"] == "dataset" for r in pose)
    real = _real(realdata_run).filter((pl.col("dataset") == "walkers") & (pl.col("metric") == "Rank-1"))
    for recogniser in ("deepgaitv2", "skeletongait"):
        values = real.filter(pl.col("recogniser") == recogniser).get_column("value")
        assert values.len() > 0 and values.null_count() < values.len(), real


@pytest.mark.slow
def test_empty_and_all_failed_shards_flow_to_the_report(realdata_run):
    sizes = [
        len(read_table(realdata_run / f"results/perception/broken/masks/shard-{k:04d}.parquet", STAGE_STATUS))
        for k in range(SHARDS)
    ]
    assert 0 in sizes and sum(sizes) == 4
    masks = _statuses(realdata_run, "broken", "masks")
    assert all("expected silhouettes [T, H, W]" in r["error"] for r in masks)
    for stage in ("silhouettes", "skeleton_maps", "crops"):
        assert all(r["error"] for r in _statuses(realdata_run, "broken", stage))
    for shard in range(SHARDS):  # embeddings of every shard, empty ones included
        table = pl.read_parquet(realdata_run / f"results/embeddings/broken/deepgaitv2/shard-{shard:04d}.parquet")
        assert table.get_column("error").null_count() == 0
    real = _real(realdata_run).filter(pl.col("dataset") == "broken")
    assert set(real.get_column("recogniser")) == {"deepgaitv2", "skeletongait", "biggait"}
    assert real.get_column("value").null_count() == real.height
    notes = (realdata_run / "results/aggregate/notes.csv").read_text()
    assert "broken / deepgaitv2" in notes and "expected silhouettes" in notes


@pytest.mark.slow
def test_a_generator_failing_every_job_still_yields_the_report(realdata_run):
    generated = read_table(
        realdata_run / "results/generated/walkers/oracle/restoration/baseline/shard-0000/manifest.parquet", MANIFEST
    ).to_pylist()
    assert generated and all(r["error"] and r["error"].startswith("generation failed") for r in generated)
    # the empty generation shard of the silhouette-only dataset (no pose: no sweep job) goes through too
    empty = read_table(
        realdata_run / "results/generated/casiab/oracle/restoration/baseline/shard-0000/manifest.parquet", MANIFEST
    )
    assert empty.num_rows == 0
    failures = pl.read_parquet(realdata_run / "results/aggregate/failures.parquet")
    walkers = failures.filter(pl.col("dataset") == "walkers")
    assert walkers.height and (walkers.get_column("n_failed") == walkers.get_column("n_rows")).all()
    assert all(e.startswith("generation failed") for e in walkers.get_column("top_error"))
    report = (realdata_run / "results/report/report.html").read_text()
    assert "generation failed" in report
    summary = json.loads(json.dumps(walkers.to_dicts()))
    assert {r["table"] for r in summary} >= {"visual_metrics", "probe_results"}
