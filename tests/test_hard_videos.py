"""Hard real videos, made by the world: frames that decode sideways and identity switches in the track."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import validate_config
from pipeline.contracts import read_frame_store, unpack_masks
from pipeline.perception.continuity import apply_policy, boxes_from_keypoints, find_switches
from pipeline.perception.orientation import (
    ROTATIONS,
    decide_from_pose,
    points_from_upright,
    points_to_upright,
    to_upright,
)
from pipeline.world.generate import render_sequence_plan, walker_attributes
from pipeline.world.plan import plan_identities, plan_sequences

CONDITIONS = [
    {"name": "nm-01"},
    {"name": "rot-90", "rotate": 90},
    {"name": "rot-270", "rotate": 270},
    {"name": "seq-01", "walkers": "sequential", "frames": 40},
    {"name": "cross-01", "walkers": "crossing"},
]


@pytest.fixture(scope="module")
def world():
    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": 4, "train_identities": 2, "conditions": CONDITIONS, "frames": 30,
                         "motion_source": "procedural", "views": [90]}},
    })  # fmt: skip
    spec = config["worlds"]["x"]
    identities = plan_identities(spec, [])
    return spec, identities, {p.sequence_id: p for p in plan_sequences(spec, identities)}


def render(world, sequence_id):
    spec, identities, plans = world
    plan = plans[sequence_id]
    identity = next(p for p in identities if p.subject == plan.subject)
    return render_sequence_plan(spec, identity, plan, identities), walker_attributes(spec, identity, plan, identities)


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_points_follow_np_rot90(rotation):
    image = np.zeros((1, 7, 11), bool)
    image[0, 2, 9] = True  # x = 9, y = 2
    stored = np.rot90(image, rotation // 90, axes=(1, 2))
    kp = np.array([[[9.0, 2.0, 1.0]]], np.float32)
    moved = points_from_upright(kp, rotation, (7, 11))
    y, x = np.argwhere(stored[0])[0]
    np.testing.assert_allclose(moved[0, 0, :2], [x, y])
    np.testing.assert_allclose(points_to_upright(moved, rotation, stored.shape[1:3]), kp)
    np.testing.assert_array_equal(to_upright(stored, rotation), image)


@pytest.mark.parametrize("condition,rotation", [("nm-01", 0), ("rot-90", 90), ("rot-270", 270)])
def test_body_axis_finds_the_turn_of_ground_truth_keypoints(world, condition, rotation):
    rendered, _ = render(world, f"w001/{condition}/090")
    gt = rendered.groundtruth["keypoints2d"].copy()
    gt[..., 2] = (gt[..., 2] > 0).astype(np.float32)
    upright_hw = to_upright(rendered.rgb[:1], rotation).shape[1:3]
    decision = decide_from_pose(points_from_upright(gt, rotation, upright_hw))
    assert decision.rotation == rotation and decision.agreement == 1.0


def test_body_axis_votes_that_disagree_are_unsure():
    upright = np.zeros((10, 17, 3), np.float32)
    upright[:, :7] = [50, 10, 1]
    upright[:, 15:] = [50, 90, 1]
    sideways = upright.copy()
    sideways[5:, :, :2] = upright[5:, :, 1::-1]  # half the frames lie on their side
    assert decide_from_pose(upright).rotation == 0
    unsure = decide_from_pose(sideways)
    assert unsure.rotation is None and "disagree" in unsure.reason


def _gt_track(rendered):
    gt = rendered.groundtruth
    detected = gt["walker"] >= 0 if "walker" in gt else np.ones(len(gt["keypoints2d"]), bool)
    masks = unpack_masks(gt["mask"], rendered.rgb.shape[2])
    keypoints = gt["keypoints2d"].copy()
    keypoints[..., 2] = (keypoints[..., 2] > 0).astype(np.float32)
    return detected & masks.any(axis=(1, 2)), boxes_from_keypoints(keypoints), masks


def test_switch_found_at_the_sequential_walkers_frame_on_ground_truth(world):
    rendered, attrs = render(world, "w001/seq-01/090")
    detected, boxes, masks = _gt_track(rendered)
    continuity = find_switches(detected, boxes, rendered.rgb, masks)
    assert continuity.switch_frames == [attrs["switch_frame"]]
    keep = apply_policy(continuity, "keep_longest")
    assert not keep[detected & (np.arange(len(keep)) >= attrs["switch_frame"])].any()  # the first walker kept
    assert keep[: attrs["first_leaves_frame"]].all()


@pytest.mark.parametrize("sequence_id", ["w001/nm-01/090", "w002/nm-01/090", "w001/cross-01/090", "w003/cross-01/090"])
def test_no_switch_when_the_track_stays_on_one_walker(world, sequence_id):
    rendered, _ = render(world, sequence_id)
    detected, boxes, masks = _gt_track(rendered)
    assert find_switches(detected, boxes, rendered.rgb, masks).switches == []


# -- through mediapipe ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mediapipe():
    pytest.importorskip("mediapipe")
    from pipeline.perception.person import make_perception

    pose, masks = make_perception("mediapipe", "mediapipe")
    yield pose, masks
    pose.close()


@pytest.mark.parametrize("condition,rotation", [("nm-01", 0), ("rot-90", 90), ("rot-270", 270)])
def test_sideways_world_sequence_is_perceived_upright(world, mediapipe, condition, rotation):
    from pipeline.perception.person import perceive_checked

    rendered, _ = render(world, f"w002/{condition}/090")
    checked = perceive_checked(rendered.rgb, *mediapipe)
    assert checked.rotation == rotation and checked.error is None
    # Keypoints come back in the stored (sideways) frame's pixels, where the ground truth lands too.
    gt = points_from_upright(rendered.groundtruth["keypoints2d"], rotation, to_upright(rendered.rgb[:1], rotation).shape[1:3])
    pose = checked.result.pose
    ok = pose.detected[:, None] & (pose.keypoints[..., 2] > 0.5) & (rendered.groundtruth["keypoints2d"][..., 2] == 2)
    error = np.linalg.norm(pose.keypoints[..., :2] - gt[..., :2], axis=-1)[ok]
    assert ok.sum() > 100 and np.median(error) < 6.0, np.median(error)


def test_sequential_walkers_are_split_and_the_longest_kept(world, mediapipe):
    from pipeline.perception.person import perceive_checked

    rendered, attrs = render(world, "w002/seq-01/090")
    checked = perceive_checked(rendered.rgb, *mediapipe, identity_switch="keep_longest")
    switches = checked.continuity.switch_frames
    assert len(switches) == 1, checked.continuity.describe()
    # Between the first walker leaving and the tracker's re-search after losing it (max_missed 5 + 3).
    assert attrs["first_leaves_frame"] <= switches[0] <= attrs["switch_frame"] + 8
    kept = checked.result.pose.detected
    assert kept.sum() >= 15 and not kept[switches[0]:].any()
    assert int(checked.fields["seq:identity_switches"]) == 1
    flagged = perceive_checked(rendered.rgb, *mediapipe, identity_switch="flag")
    assert flagged.error and "identity switch" in flagged.error


def test_pose_stage_records_the_turn_and_silhouettes_stand_upright(world, tmp_path):
    pytest.importorskip("mediapipe")
    from pipeline.io.video import write_video
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.perception.silhouettes import run_silhouettes_stage

    rows = []
    for sid in ("w001/rot-90/090", "w001/nm-01/090"):
        rendered, _ = render(world, sid)
        path = tmp_path / f"{sid.replace('/', '_')}.mp4"
        write_video(path, rendered.rgb, 25.0)
        h, w = rendered.rgb.shape[1:3]
        rows.append({"sequence_id": sid, "path_video": str(path), "height": h, "width": w, "frame_count": 30,
                     "subject": "w001", "condition": sid.split("/")[1], "view": "090"})  # fmt: skip
    # One shard per video: the two frame sizes cannot share a store until frame stores are ragged (issue 12 item 3).
    for row in rows:
        sid, d = row["sequence_id"], tmp_path / row["condition"]
        d.mkdir()
        p = {k: str(d / f"{k}.npz") for k in ("pose", "masks", "sils")}
        s = {k: str(d / f"{k}.parquet") for k in ("pose", "masks", "sils")}
        status = run_pose_stage([row], backend="mediapipe", store=p["pose"], status=s["pose"], min_valid_frames=10,
                                keep_masks=True, mediapipe={"smoothing": False})  # fmt: skip
        assert status[0]["error"] is None
        poses = read_frame_store(p["pose"])
        assert int(poses.get(sid, "seq:upright_rotation")) == (90 if "rot" in sid else 0)
        run_masks_stage([row], backend="from_pose", store=p["masks"], status=s["masks"], min_valid_frames=10,
                        pose_store=p["pose"], pose_status=s["pose"])  # fmt: skip
        run_silhouettes_stage([row], masks_store=p["masks"], masks_status=s["masks"], store=p["sils"],
                              status=s["sils"], min_valid_frames=10)  # fmt: skip
        sils = read_frame_store(p["sils"])
        sil = sils.get(sid, "sil")[sils.get(sid, "valid")]
        assert len(sil) >= 10
        rows_on = (sil > 127).any(axis=2).sum(1).mean()  # a standing person: tall, not wide
        cols_on = (sil > 127).any(axis=1).sum(1).mean()
        assert rows_on > 1.8 * cols_on, (sid, rows_on, cols_on)


def test_groundtruth_backends_put_the_upright_truth_into_sideways_frames(world, tmp_path):
    from pipeline.perception.masks import run_masks_stage
    from pipeline.perception.pose import run_pose_stage
    from pipeline.perception.silhouettes import run_silhouettes_stage
    from pipeline.world.generate import render_shard, write_world_spec

    spec = {**world[0], "conditions": [{"name": "rot-90", "rotate": 90}], "identities": 2, "train_identities": 1,
            "shards": 1, "frames": 12, "dataset": "w"}  # fmt: skip
    path = write_world_spec(spec, tmp_path / "world.json")
    gt = tmp_path / "gt.npz"
    render_shard(path, "shard-0000", sheet=tmp_path / "sheet.csv", groundtruth=gt, videos=tmp_path / "v")
    sid = "w001/rot-90/090"
    row = {"sequence_id": sid, "path_video": str(tmp_path / "v/w001/rot-90/090.mp4"), "path_groundtruth": str(gt),
           "height": 256, "width": 192, "frame_count": 12, "subject": "w001", "condition": "rot-90", "view": "090"}  # fmt: skip
    st = {k: (str(tmp_path / f"{k}.npz"), str(tmp_path / f"{k}.parquet")) for k in ("pose", "masks", "sils")}
    run_pose_stage([row], backend="groundtruth", store=st["pose"][0], status=st["pose"][1], min_valid_frames=5)
    run_masks_stage([row], backend="groundtruth", store=st["masks"][0], status=st["masks"][1], min_valid_frames=5)
    run_silhouettes_stage([row], masks_store=st["masks"][0], masks_status=st["masks"][1], store=st["sils"][0],
                          status=st["sils"][1], min_valid_frames=5)  # fmt: skip
    masks = read_frame_store(st["masks"][0])
    mask = unpack_masks(masks.get(sid, "mask"), 192)
    assert mask.shape[1:] == (256, 192) and int(masks.get(sid, "seq:upright_rotation")) == 90
    # The stored-frame keypoints fall on the stored-frame mask.
    kp = read_frame_store(st["pose"][0]).get(sid, "pose_keypoints")
    on = kp[..., 2] > 0
    xs, ys = np.rint(kp[..., 0]).astype(int).clip(0, 191), np.rint(kp[..., 1]).astype(int).clip(0, 255)
    t = np.broadcast_to(np.arange(len(kp))[:, None], on.shape)
    assert mask[t[on], ys[on], xs[on]].mean() > 0.8
    sils = read_frame_store(st["sils"][0])
    sil = sils.get(sid, "sil")[sils.get(sid, "valid")]
    assert (sil > 127).any(axis=2).sum(1).mean() > 1.8 * (sil > 127).any(axis=1).sum(1).mean()


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_copies_decide_when_nobody_is_found_sideways(rotation):
    from pipeline.perception.orientation import decide

    upright = np.zeros((8, 20, 10, 3), np.uint8)
    upright[:, 0, 0] = 255  # a marker only the upright frame has at its top-left corner
    stored = np.rot90(upright, rotation // 90, axes=(1, 2))
    standing = np.zeros((17, 3), np.float32)
    standing[:7] = [5, 2, 1]
    standing[15:] = [5, 18, 1]

    def estimate(clip):  # a pose model that finds the person only when it stands upright
        out = np.zeros((len(clip), 17, 3), np.float32)
        out[clip[:, 0, 0, 0] == 255] = standing
        return out

    decision = decide(stored, np.zeros((8, 17, 3), np.float32), estimate)
    assert decision.rotation == rotation and decision.method == "rotated copies"
    # Nobody at all is not an orientation question: left as stored (the frame checks say "no person").
    nobody = decide(stored, np.zeros((8, 17, 3), np.float32), lambda clip: np.zeros((len(clip), 17, 3), np.float32))
    assert nobody.rotation == 0 and nobody.method == "none"
    # One voting frame, and too few upright frames under any turn: unsure.
    one = np.zeros((8, 17, 3), np.float32)
    one[0] = np.array([[2, 5, 1]] * 7 + [[0, 0, 0]] * 8 + [[18, 5, 1]] * 2, np.float32)  # lying: feet to the right

    def rarely(clip):
        out = np.zeros((len(clip), 17, 3), np.float32)
        out[0] = standing if clip[0, 0, 0, 0] == 255 else 0
        return out

    unsure = decide(stored, one, rarely)
    assert unsure.rotation is None and "no quarter turn shows an upright person" in unsure.reason


def test_a_clip_without_anybody_is_not_an_orientation_error(mediapipe):
    from pipeline.perception.person import perceive_checked

    checked = perceive_checked(np.full((6, 64, 48, 3), 90, np.uint8), *mediapipe)
    assert checked.error is None and checked.rotation == 0 and not checked.result.pose.detected.any()
