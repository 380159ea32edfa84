"""The index rules through Snakemake, for every dataset kind, on fixtures in the real on-disk layouts.

The adapters' own tests (test_datasets.py) call them directly; these run `snakemake <manifest>` on a
config that gives only what a user writes (schema defaults for the rest) plus the workflow-only keys
(`perception_shards`, `scenario_conditions`, backends, `protocol`) that must never reach an adapter.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from dataset_fixtures import make_casiab_tree, make_ccgr_mini_tree, make_custom_folder, make_sustech1k_tree
from test_workflow import snakemake

from pipeline.config import ConfigError
from pipeline.contracts import MANIFEST, read_table
from pipeline.datasets import adapter_options, check_datasets
from pipeline.study.config import validate_study

# A world of 2 identities × 1 condition × 1 view, 8 frames of 64×48: renders in seconds.
MICRO_WORLD = {
    "seed": 1, "identities": 2, "train_identities": 1, "motion_source": "procedural",
    "conditions": [{"name": "nm-01"}], "gallery_conditions": ["nm-01"], "views": [90], "frames": 8,
    "width": 64, "height": 48, "shards": 1,
}  # fmt: skip
WORKFLOW_ONLY = {"perception_shards": 3, "scenario_conditions": {"baseline": "nm"}}


def manifest(workdir, name) -> pl.DataFrame:
    return pl.from_arrow(read_table(workdir / f"results/manifests/{name}.parquet", MANIFEST))


@pytest.mark.slow
def test_index_rule_for_every_kind(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    casiab = make_casiab_tree(data, n_subjects=4, views=("090",))
    sustech = make_sustech1k_tree(data, n_subjects=3, views=("000",))
    ccgr = make_ccgr_mini_tree(data, n_subjects=4)
    custom = make_custom_folder(data)
    config = {
        "study": "index-rule",
        "datasets": {
            "casiab": {"kind": "opengait", "root": str(casiab.root), "partition": str(casiab.partition),
                       "pose_backend": "mediapipe", **WORKFLOW_ONLY},
            "sustech": {"kind": "sustech1k", "root": str(sustech.root), "partition": str(sustech.partition),
                        "protocol": "sustech1k", **WORKFLOW_ONLY},
            "ccgr": {"kind": "ccgr_mini", "root": str(ccgr.root), "partition": str(ccgr.partition),
                     "count_frames": False, **WORKFLOW_ONLY},
            "mine": {"kind": "custom", "root": str(custom.root), "train_fraction": 0.5,
                     "mask_backend": "from_pose", **WORKFLOW_ONLY},
            "micro": {"kind": "world", "world": "micro", **WORKFLOW_ONLY},
        },
        "worlds": {"micro": MICRO_WORLD},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    names = ("casiab", "sustech", "ccgr", "mine", "micro")
    result = snakemake(tmp_path, *(f"results/manifests/{n}.parquet" for n in names), config=path)
    logs = "\n".join(p.read_text()[-1500:] for p in (tmp_path / "logs").rglob("*.log"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs

    for name, tree in (("casiab", casiab), ("sustech", sustech)):
        table = manifest(tmp_path, name)
        counted = {s: c for s, c in zip(table["sequence_id"], table["frame_count"], strict=True) if s in tree.frames}
        assert counted and all(tree.frames[s] == c for s, c in counted.items()), name
        assert set(table.filter(pl.col("role") == "gallery")["sequence_id"]) == set(tree.gallery), name
    ccgr_table = manifest(tmp_path, "ccgr")
    assert set(ccgr_table["sequence_id"]) == set(ccgr.frames)
    assert ccgr_table["frame_count"].null_count() == ccgr_table.height  # count_frames: false reached it
    mine = manifest(tmp_path, "mine")
    by_path = {p.split("/custom/", 1)[1]: row for p, row in zip(mine["path_video"], mine.iter_rows(named=True), strict=True)}
    assert {p: by_path[p]["frame_count"] for p in custom.good} == custom.good
    assert all(by_path[p]["error"] for p in custom.broken)
    assert {"train", "test"} <= set(mine["split"])  # train_fraction 0.5 reached the adapter
    micro = manifest(tmp_path, "micro")
    assert micro.height == 2 and micro["error"].null_count() == 2


def test_adapters_get_only_their_own_keys():
    spec = {"name": "x", "kind": "custom", "root": "/r", "sheet": "s.csv", "count_frames": True, **WORKFLOW_ONLY,
            "pose_backend": "dataset", "mask_backend": "mediapipe", "protocol": "generic"}  # fmt: skip
    assert adapter_options("custom", spec) == {"sheet": "s.csv"}
    spec |= {"kind": "opengait", "partition": "p.json", "gallery_types": ["nm-01"]}
    del spec["sheet"]
    assert adapter_options("opengait", spec) == {"partition": "p.json", "gallery_types": ["nm-01"], "count_frames": True}
    with pytest.raises(ValueError, match=r"does not take \['sheet'\]"):
        adapter_options("opengait", {**spec, "sheet": "s.csv"})


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"kind": "opengait", "root": "/r", "partition": "p", "sheet": "s.csv"}, r"datasets/d: kind 'opengait' does not take \['sheet'\]"),
        ({"kind": "custom", "root": "/r", "partition": "p.json"}, r"datasets/d: kind 'custom' does not take \['partition'\]"),
        ({"kind": "custom", "root": "/r", "rgb_root": "/f"}, r"does not take \['rgb_root'\]"),
        ({"kind": "world", "world": "w", "root": "/r"}, r"datasets/d: kind 'world' does not take \['root'\]"),
    ],
)  # fmt: skip
def test_misplaced_dataset_keys_fail_validation(entry, message):
    config = {"datasets": {"d": entry}, "worlds": {"w": dict(MICRO_WORLD)}}
    with pytest.raises(ConfigError, match=message):
        validate_study(json.loads(json.dumps(config)))
    check_datasets({"datasets": {"ok": {"kind": "custom", "root": "/r", "sheet": "s", **WORKFLOW_ONLY}}})
