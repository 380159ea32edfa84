"""The world's identity plan: independent factors, twins, splits and stable shards."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import validate_config
from pipeline.world.generate import build_identity, build_motion
from pipeline.world.kinematics import pose
from pipeline.world.plan import plan_identities, plan_sequences

MOCAP = ["02", "05", "06", "07", "08", "16", "35", "104"]


def world(**overrides) -> dict:
    spec = {"identities": 8, "train_identities": 4, "twins": {"motion_only": 2, "appearance_only": 2}}
    spec.update(overrides)
    config = validate_config({"datasets": {"w": {"kind": "world", "world": "x"}}, "worlds": {"x": spec}})
    return config["worlds"]["x"]


def joints_of(spec: dict, identity) -> np.ndarray:
    body, _ = build_identity(identity)
    # The same sequence randomness for both identities, so only the identity factors differ.
    motion = build_motion(spec, identity, np.random.default_rng(123))
    return pose(body, motion).joints


def test_motion_only_twins_share_look_but_not_motion():
    spec = world(motion_source="procedural")
    ids = {p.subject: p for p in plan_identities(spec, MOCAP)}
    twins = [p for p in ids.values() if p.twin_kind == "motion_only"]
    assert len(twins) == 2
    for twin in twins:
        base = ids[twin.twin_of]
        body_a, look_a = build_identity(base)
        body_b, look_b = build_identity(twin)
        assert body_a == body_b and look_a == look_b
        # Joint trajectories differ well beyond rendering noise (centimetres, averaged over the sequence).
        diff = np.abs(joints_of(spec, base) - joints_of(spec, twin)).mean()
        assert diff > 0.01, diff


def test_appearance_only_twins_share_motion_but_not_look():
    spec = world(motion_source="procedural")
    ids = {p.subject: p for p in plan_identities(spec, MOCAP)}
    twins = [p for p in ids.values() if p.twin_kind == "appearance_only"]
    assert len(twins) == 2
    for twin in twins:
        base = ids[twin.twin_of]
        body_a, look_a = build_identity(base)
        body_b, look_b = build_identity(twin)
        assert body_a == body_b and look_a != look_b
        np.testing.assert_allclose(joints_of(spec, base), joints_of(spec, twin))


def test_identities_are_stable_when_more_are_added():
    small = {p.subject: p for p in plan_identities(world(identities=8), MOCAP)}
    large = {p.subject: p for p in plan_identities(world(identities=12), MOCAP)}
    for subject in ("w001", "w002", "w003"):
        assert small[subject].seeds == large[subject].seeds


def test_sequences_roles_and_shards():
    spec = world(conditions=[{"name": "nm-01"}, {"name": "bg-01", "bag": True}], views=[0, 90], shards=3)
    ids = plan_identities(spec, MOCAP)
    plans = plan_sequences(spec, ids)
    assert len(plans) == len(ids) * 2 * 2
    assert {p.role for p in plans if p.split == "train"} == {"train"}
    gallery = {p.condition for p in plans if p.role == "gallery"}
    assert gallery == {"nm-01"}
    assert {p.shard for p in plans} == {"shard-0000", "shard-0001", "shard-0002"}
    assert len({p.sequence_id for p in plans}) == len(plans)
    # Test identities: the base test identities plus every twin.
    assert sum(p.split == "test" for p in ids) == 4 + 4


def test_mocap_identities_are_spread_over_splits():
    spec = world(motion_source="mixed", mocap_identities=4)
    ids = plan_identities(spec, MOCAP)
    mocap = [p for p in ids if p.motion_source == "mocap" and p.twin_of is None]
    assert len(mocap) == 4
    assert {p.split for p in mocap} == {"train", "test"}


@pytest.mark.parametrize("source", ["procedural", "mocap"])
def test_motion_sources_render_joints(source):
    spec = world(motion_source=source, frames=16)
    identity = plan_identities(spec, MOCAP)[0]
    joints = joints_of(spec, identity)
    assert joints.shape == (16, 24, 3) and np.isfinite(joints).all()
