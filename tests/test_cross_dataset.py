"""Cross-dataset scoring (`recognisers.train_on`): a dataset without a train split is scored with the
recognisers trained on another dataset of the study, through the workflow.

The end-to-end test renders the tiny CI world, copies a few of its videos into a user's folder (a
`custom` dataset with a sheet, every sequence in the test split), and runs the study with
`train_on: {mine: tiny}`: the folder's real probes and its generated probes are scored with tiny's
DeepGaitV2, no recogniser is trained on it, and the tables and the report say so.
"""

from __future__ import annotations

import copy
import csv
import shutil

import polars as pl
import pytest
import yaml
from test_workflow import ROOT, snakemake

from pipeline.config import ConfigError
from pipeline.contracts import MANIFEST, read_table
from pipeline.study.config import validate_study

TINY = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())


def study(mine_root, **recognisers) -> dict:
    """The CI world plus a custom dataset, one cheap recogniser, the two control models, one scenario."""
    config = copy.deepcopy(TINY)
    config["study"] = "cross"
    # without the CI study's second world and guidance ablation (tests/test_workflow.py covers them)
    config["datasets"].pop("tinyb")
    config["sweep"].pop("guidance_ablation")
    config["recognisers"].pop("train_on")
    config["datasets"]["mine"] = {"kind": "custom", "root": str(mine_root), "sheet": "sheet.csv", "perception_shards": 1}
    config["perception"]["guidance"] = {"formats": []}
    config["models"] = {"oracle": {"generator": "oracle"}, "static": {"generator": "static"}}
    config["sweep"]["models"] = ["oracle", "static"]
    config["sweep"]["scenarios"] = [s for s in config["sweep"]["scenarios"] if s["name"] == "baseline"]
    config["recognisers"]["names"] = ["deepgaitv2"]
    config["recognisers"].update(recognisers)
    config["gaitcrafter"] = {"datasets": []}
    return config


def fail_message(result, workdir) -> str:
    logs = "\n".join(p.read_text()[-1500:] for p in (workdir / "logs").rglob("*.log"))
    return result.stdout[-3000:] + result.stderr[-3000:] + logs


@pytest.mark.slow
def test_custom_folder_scored_with_the_worlds_recognisers(tmp_path):
    mine = tmp_path / "my-videos"
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(study(mine, train_on={"mine": "tiny"})))
    result = snakemake(tmp_path, "results/manifests/tiny.parquet", "-q", config=config_path)
    assert result.returncode == 0, fail_message(result, tmp_path)

    # A user's folder: three walkers (the world's test identities), a gallery and a probe video each.
    world = pl.from_arrow(read_table(tmp_path / "results/manifests/tiny.parquet", MANIFEST))
    chosen = world.filter((pl.col("split") == "test") & pl.col("condition").is_in(["nm-01", "cl-01"]))
    assert chosen.height == 6
    mine.mkdir()
    with open(mine / "sheet.csv", "w", newline="") as handle:
        sheet = csv.writer(handle)
        sheet.writerow(["path", "subject", "condition", "view", "split", "role"])
        for row in chosen.iter_rows(named=True):
            person = f"person-{row['subject']}"
            relative = f"{person}/{row['condition']}.mp4"
            (mine / person).mkdir(exist_ok=True)
            shutil.copy(tmp_path / row["path_video"], mine / relative)  # relative to the working directory
            role = "gallery" if row["condition"] == "nm-01" else "probe"
            sheet.writerow([relative, person, row["condition"], row["view"], "test", role])

    planned = snakemake(tmp_path, "-n", config=config_path)
    assert planned.returncode == 0, fail_message(planned, tmp_path)
    assert "results/recognisers/tiny/deepgaitv2/model.pt" in planned.stdout
    assert "results/recognisers/mine/" not in planned.stdout  # no train job for the scored dataset

    result = snakemake(tmp_path, "-q", config=config_path)
    assert result.returncode == 0, fail_message(result, tmp_path)
    aggregate = tmp_path / "results/aggregate"
    real = pl.read_parquet(aggregate / "real_retrieval.parquet").filter(pl.col("dataset") == "mine")
    assert real.height and set(real["recogniser"]) == {"deepgaitv2"}
    rank1 = real.filter((pl.col("metric") == "Rank-1") & (pl.col("condition") == "Overall"))
    assert rank1.height == 1 and 0 <= rank1["value"][0] <= 100
    embeddings = pl.read_parquet(tmp_path / "results/embeddings/mine/deepgaitv2/shard-0000.parquet")
    assert set(embeddings["checkpoint"]) == {"results/recognisers/tiny/deepgaitv2/model.pt"}
    probes = pl.read_parquet(aggregate / "probes.parquet").filter(pl.col("dataset") == "mine")
    assert probes.height and probes["driving_rank"].drop_nulls().len()  # generated probes were ranked
    notes = pl.read_parquet(aggregate / "notes.parquet")
    assert notes.filter((pl.col("dataset") == "mine") & pl.col("note").str.starts_with("trained on tiny")).height == 1
    assert not (tmp_path / "results/recognisers/mine").exists()
    html = (tmp_path / "results/report/report.html").read_text()
    assert "Datasets scored with another dataset" in html
    assert "mine: trained on tiny" in html


def test_train_on_is_validated():
    def config(train_on):
        c = study("/videos", train_on=train_on)
        c["datasets"]["other"] = {"kind": "custom", "root": "/other"}
        return validate_study(c)

    assert config({"mine": "tiny", "other": "tiny"})["recognisers"]["train_on"] == {"mine": "tiny", "other": "tiny"}
    assert validate_study(study("/videos"))["recognisers"]["train_on"] == {}  # the default when none is given
    for train_on, message in (
        ({"yours": "tiny"}, r"recognisers/train_on/yours: 'yours' is not a dataset of the study"),
        ({"mine": "wrld"}, r"recognisers/train_on/mine: 'wrld' is not a dataset of the study"),
        ({"mine": "mine"}, r"recognisers/train_on/mine: a dataset cannot be scored with its own"),
        ({"mine": "other", "other": "tiny"}, r"recognisers/train_on/mine: 'other' is itself scored .* mine: tiny"),
        ({"mine": 3}, r"recognisers/train_on/mine: 3 is not of type 'string'"),
    ):
        with pytest.raises(ConfigError, match=message):
            config(train_on)


@pytest.mark.slow
def test_a_folder_of_hard_phone_videos_goes_through_the_whole_study(tmp_path):
    """The user's case end to end: a custom folder whose probes are a landscape video, a portrait one, one
    that decodes sideways and one where a second person walks in after the first has left; perception,
    generation with the four built-in animators (posewarp-dense on approximate part maps), evaluation
    with the world's recognisers (`train_on`) and the report."""
    from pipeline.contracts import read_frame_store

    mine = tmp_path / "my-phone"
    config = study(mine, train_on={"mine": "tiny"})
    config["worlds"]["tiny"]["conditions"] += [
        {"name": "rot-01", "rotate": 90},
        {"name": "por-01", "resolution": [96, 128]},
        {"name": "seq-01", "walkers": "sequential", "frames": 24},
    ]
    config["models"] = {name: {"generator": name} for name in ("oracle", "static", "posewarp-sparse", "posewarp-dense")}
    config["sweep"]["models"] = list(config["models"])
    probes = ["cl-01", "rot-01", "por-01", "seq-01"]
    config["datasets"]["mine"]["scenario_conditions"] = {"baseline": "|".join(probes)}
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/manifests/tiny.parquet", "-q", config=config_path)
    assert result.returncode == 0, fail_message(result, tmp_path)

    world = pl.from_arrow(read_table(tmp_path / "results/manifests/tiny.parquet", MANIFEST))
    chosen = world.filter((pl.col("split") == "test") & pl.col("condition").is_in(["nm-01", *probes]))
    mine.mkdir()
    with open(mine / "sheet.csv", "w", newline="") as handle:
        sheet = csv.writer(handle)
        sheet.writerow(["path", "subject", "condition", "view", "split", "role"])
        for row in chosen.iter_rows(named=True):
            relative = f"p{row['subject']}/{row['condition']}.mp4"
            (mine / relative).parent.mkdir(exist_ok=True)
            shutil.copy(tmp_path / row["path_video"], mine / relative)
            role = "gallery" if row["condition"] == "nm-01" else "probe"
            sheet.writerow([relative, f"p{row['subject']}", row["condition"], row["view"], "test", role])

    result = snakemake(tmp_path, "-q", config=config_path)
    assert result.returncode == 0, fail_message(result, tmp_path)
    manifest = pl.from_arrow(read_table(tmp_path / "results/manifests/mine.parquet", MANIFEST))
    sizes = {(r["width"], r["height"]) for r in manifest.iter_rows(named=True)}
    assert {(128, 96), (96, 128)} <= sizes  # portrait and landscape in one dataset (and one shard)
    by_condition = {r["sequence_id"]: r["condition"] for r in manifest.iter_rows(named=True)}
    pose = read_frame_store(tmp_path / "results/perception/mine/pose/shard-0000.npz")
    turned = {by_condition[s]: int(pose.get(s, "seq:upright_rotation")) for s in pose.sequence_ids}
    assert turned["rot-01"] in (90, 270) and turned["cl-01"] == 0 and turned["por-01"] == 0
    switches = {by_condition[s]: int(pose.get(s, "seq:identity_switches")) for s in pose.sequence_ids}
    assert switches["seq-01"] >= 1 and switches["nm-01"] == 0

    aggregate = tmp_path / "results/aggregate"
    videos = pl.read_parquet(aggregate / "videos.parquet").filter(pl.col("dataset") == "mine")
    assert set(videos["model"]) == set(config["models"])
    dense = pl.read_parquet(aggregate / "probes.parquet").filter(
        (pl.col("dataset") == "mine") & (pl.col("model") == "posewarp-dense")
    )
    assert dense.height and dense["driving_rank"].drop_nulls().len()  # dense guidance worked on real video
    assert pl.read_parquet(aggregate / "real_retrieval.parquet").filter(pl.col("dataset") == "mine").height
    html = (tmp_path / "results/report/report.html").read_text()
    assert "mine: trained on tiny" in html
