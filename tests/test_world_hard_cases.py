"""The world's hard cases: sideways frames, sequential and crossing walkers, portrait and landscape sizes."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.config import validate_config
from pipeline.contracts import read_frame_store, unpack_masks
from pipeline.world.generate import render_sequence_plan, render_shard, write_world_spec
from pipeline.world.plan import plan_identities, plan_sequences

CONDITIONS = [
    {"name": "nm-01"},
    {"name": "rot-90", "rotate": 90},
    {"name": "seq-01", "walkers": "sequential", "frames": 40},
    {"name": "cross-01", "walkers": "crossing"},
    {"name": "portrait", "resolution": [144, 256]},
]


@pytest.fixture(scope="module")
def world():
    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": 4, "train_identities": 2, "conditions": CONDITIONS, "frames": 24,
                         "motion_source": "procedural", "shards": 1}},
    })  # fmt: skip
    spec = config["worlds"]["x"]
    identities = plan_identities(spec, [])
    plans = {p.condition: p for p in plan_sequences(spec, identities) if p.subject == "w001"}
    return spec, identities, plans


def render(world, condition):
    spec, identities, plans = world
    plan = plans[condition] if isinstance(condition, str) else condition
    by = {p.subject: p for p in identities}
    return render_sequence_plan(spec, by[plan.subject], plan, identities)


def test_rotate_stores_the_frames_sideways_and_the_truth_upright(world):
    sideways = render(world, "rot-90")
    plan = world[2]["rot-90"]
    upright = render(world, replace(plan, condition_spec={"name": "rot-90"}))
    assert sideways.rgb.shape == (24, 256, 192, 3)
    np.testing.assert_array_equal(np.rot90(sideways.rgb, k=-1, axes=(1, 2)), upright.rgb)
    assert int(sideways.groundtruth["seq:rotate"]) == 90
    np.testing.assert_array_equal(sideways.groundtruth["mask"], upright.groundtruth["mask"])
    assert plan.attributes(world[1][0])["rotate"] == 90


def test_sequential_walkers_record_the_switch(world):
    spec, identities, plans = world
    rendered = render(world, "seq-01")
    walker = rendered.groundtruth["walker"]
    # switch_at 0.55 of 40 frames = frame 22; the first walker left 3 frames earlier.
    np.testing.assert_array_equal(walker, np.r_[np.zeros(19), -np.ones(3), np.ones(18)].astype(np.int8))
    mask = unpack_masks(rendered.groundtruth["mask"], 256)
    assert mask[:19].any(axis=(1, 2)).all() and not mask[19:22].any() and mask[22:].any(axis=(1, 2)).all()
    # The two people look different: the mean colour under the mask changes at the switch.
    before = rendered.rgb[5][mask[5]].mean(0)
    after = rendered.rgb[30][mask[30]].mean(0)
    assert np.abs(before - after).max() > 5
    from pipeline.world.generate import walker_attributes

    attrs = walker_attributes(spec, identities[0], plans["seq-01"], identities)
    assert attrs["switch_frame"] == 22 and attrs["first_leaves_frame"] == 19
    assert attrs["second_subject"] != "w001"


def test_crossing_walkers_pass_each_other(world):
    rendered = render(world, "cross-01")
    assert (rendered.groundtruth["walker"] == 0).all()
    mine = unpack_masks(rendered.groundtruth["mask"], 256)
    other = unpack_masks(rendered.groundtruth["mask_other"], 256)
    assert other.any(axis=(1, 2)).all() and mine.any(axis=(1, 2)).all()
    cx = lambda m: np.nonzero(m)[1].mean()  # noqa: E731
    # They start on opposite sides and end swapped.
    first, last = np.sign(cx(mine[0]) - cx(other[0])), np.sign(cx(mine[-1]) - cx(other[-1]))
    assert first == -last != 0


def test_portrait_and_landscape_in_one_world(world):
    assert render(world, "portrait").rgb.shape[1:3] == (256, 144)
    assert render(world, "nm-01").rgb.shape[1:3] == (192, 256)


def test_a_shard_mixing_hard_cases_writes_one_store(world, tmp_path):
    spec = {**world[0], "conditions": CONDITIONS[:4], "identities": 3, "train_identities": 1, "frames": 40}
    path = write_world_spec({**spec, "dataset": "w"}, tmp_path / "world.json")
    render_shard(path, "shard-0000", sheet=tmp_path / "sheet.csv", groundtruth=tmp_path / "gt.npz", videos=tmp_path / "v")
    store = read_frame_store(tmp_path / "gt.npz")
    sid = "w002/nm-01/090"
    assert (store.get(sid, "walker") == 0).all() and int(store.get(sid, "seq:rotate")) == 0
    assert int(store.get("w002/rot-90/090", "seq:rotate")) == 90
    import csv

    with open(tmp_path / "sheet.csv") as f:
        rows = {r["condition"]: r for r in csv.DictReader(f) if r["subject"] == "w002"}
    assert json.loads(rows["seq-01"]["attributes"])["walkers"] == "sequential"
    assert "walkers" not in json.loads(rows["nm-01"]["attributes"])
    assert all(not r["error"] for r in rows.values())
    # w001 is the train split's only identity: its two-walker sequences fail as rows, with the reason.
    with open(tmp_path / "sheet.csv") as f:
        lonely = {r["condition"]: r["error"] for r in csv.DictReader(f) if r["subject"] == "w001"}
    assert "needs another identity in the train split" in lonely["seq-01"] and not lonely["rot-90"]
