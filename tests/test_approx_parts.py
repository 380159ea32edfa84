"""Dense part maps for real video (approx_from_pose), posewarp-dense on them, and the plan's guidance check."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError, validate_config
from pipeline.contracts import unpack_masks
from pipeline.generation.generate import build_driving, build_reference, part_maps
from pipeline.generation.generators.posewarp import animate_dense
from pipeline.perception.parts import approx_parts
from pipeline.study.config import validate_study
from pipeline.world.generate import render_sequence_plan
from pipeline.world.plan import plan_identities, plan_sequences

# Coarse body part of each DensePose label: front/back and left/right merged.
COARSE = np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8])


@pytest.fixture(scope="module")
def walk():
    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": 2, "train_identities": 1, "frames": 16, "motion_source": "procedural",
                         "views": [90]}},
    })  # fmt: skip
    spec = config["worlds"]["x"]
    identities = plan_identities(spec, [])
    plans = {p.sequence_id: p for p in plan_sequences(spec, identities)}
    out = {}
    for sid in ("w002/nm-01/090", "w002/nm-02/090"):
        rendered = render_sequence_plan(spec, identities[1], plans[sid], identities)
        keypoints = rendered.groundtruth["keypoints2d"].copy()
        keypoints[..., 2] = (keypoints[..., 2] > 0).astype(np.float32)
        masks = unpack_masks(rendered.groundtruth["mask"], rendered.rgb.shape[2])
        out[sid] = (rendered, keypoints, masks)
    return out


def test_approx_parts_label_every_mask_pixel_and_mostly_the_right_part(walk):
    rendered, keypoints, masks = walk["w002/nm-02/090"]
    iuv = approx_parts(keypoints, masks)
    assert iuv.shape == (*masks.shape, 3) and iuv.dtype == np.uint8
    np.testing.assert_array_equal(iuv[..., 0] > 0, masks)
    assert iuv[..., 0].max() <= 24
    gt = rendered.groundtruth["parts"][..., 0]
    body = gt > 0
    coarse = (COARSE[iuv[..., 0][body]] == COARSE[gt[body]]).mean()
    assert coarse > 0.6, coarse  # measured 72 % on the world (benchmarks/approx_parts.py)


def test_approx_parts_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="one mask per keypoint frame"):
        approx_parts(np.zeros((3, 17, 3)), np.zeros((2, 8, 8), bool))
    with pytest.raises(ValueError, match="COCO-17"):
        approx_parts(np.zeros((3, 18, 3)), np.zeros((3, 8, 8), bool))


class _Source:
    """A real dataset's perception as the generation stage reads it (no ground truth at all)."""

    def __init__(self, walk):
        self.walk = walk
        self.rows = {sid: {"sequence_id": sid, "fps": 25.0, "height": r.rgb.shape[1], "width": r.rgb.shape[2]}
                     for sid, (r, _, _) in walk.items()}  # fmt: skip

    def field(self, kind, sid, name):
        rendered, keypoints, masks = self.walk[sid]
        return {"pose_keypoints": keypoints, "valid": masks.any(axis=(1, 2))}[name]

    def mask(self, sid):
        return self.walk[sid][2]


def test_posewarp_dense_runs_on_a_source_without_ground_truth(walk, monkeypatch):
    import pipeline.generation.generate as generate

    source = _Source(walk)
    monkeypatch.setattr(generate, "load_rgb", lambda row: walk[row["sequence_id"]][0].rgb)
    job = {"reference_sequence": "w002/nm-01/090", "reference_frame": 0, "driving_sequence": "w002/nm-02/090"}
    assert part_maps(source, "w002/nm-02/090", "groundtruth") == (None, None)
    reference = build_reference(source, job, "auto", ("parts",))
    driving = build_driving(source, job, ("parts",), "auto")
    assert reference.parts is not None and driving.parts is not None
    assert generate.part_source(source, job, "auto") == "approx_from_pose"
    animation = animate_dense(reference, driving)
    rendered, _, masks = walk["w002/nm-02/090"]
    inter = np.logical_and(animation.cover > 0.5, masks).sum()
    assert inter / np.logical_or(animation.cover > 0.5, masks).sum() > 0.95
    error = np.abs(animation.frames.astype(int) - rendered.rgb.astype(int)).mean(-1)[masks].mean()
    assert error < 30.0, error  # the same walker re-textured: colours close to the true frames


def _study(model: dict) -> dict:
    return {
        "datasets": {"mine": {"kind": "custom", "root": "/data/mine"}},
        "models": {"m": model},
        "sweep": {"models": ["m"]},
    }


def test_plan_refuses_guidance_a_real_dataset_cannot_give():
    with pytest.raises(ConfigError, match=r"model 'm' \(generator posewarp-dense\) needs dense part maps"):
        validate_study(_study({"generator": "posewarp-dense", "parts": "groundtruth"}))
    with pytest.raises(ConfigError, match=r"model 'm' \(generator mtvcrafter\) needs SMPL joints"):
        validate_study(_study({"generator": "mtvcrafter"}))
    validate_study(_study({"generator": "posewarp-dense"}))  # auto: the approximation
    validate_study(_study({"generator": "magicanimate", "parts": "approx_from_pose"}))


def test_densepose_guidance_of_a_real_video_comes_from_the_approximation(walk, tmp_path):
    from pipeline.contracts import pack_masks, read_frame_store, read_table, write_frame_store, write_table
    from pipeline.perception.guidance import densepose_palette, run_guidance_stage
    from pipeline.runner import STAGE_STATUS

    rendered, keypoints, masks = walk["w002/nm-02/090"]
    sid = "clip-1"
    valid = masks.any(axis=(1, 2))
    write_frame_store(tmp_path / "pose.npz", {sid: {"pose_keypoints": keypoints, "pose_detected": valid, "valid": valid}})
    write_frame_store(tmp_path / "masks.npz", {sid: {"mask": pack_masks(masks), "mask_present": valid, "valid": valid}})
    write_table([], tmp_path / "pose.parquet", STAGE_STATUS)
    row = {"sequence_id": sid, "height": masks.shape[1], "width": masks.shape[2], "frame_count": len(masks)}
    common = dict(guidance_format="densepose", pose_store=str(tmp_path / "pose.npz"),
                  pose_status=str(tmp_path / "pose.parquet"), min_valid_frames=5)  # fmt: skip
    status = run_guidance_stage([row], store=str(tmp_path / "g.npz"), status=str(tmp_path / "g.parquet"),
                                masks_store=str(tmp_path / "masks.npz"), **common)  # fmt: skip
    assert status[0]["error"] is None and status[0]["backend"] == "approx_from_pose"
    frames = read_frame_store(tmp_path / "g.npz").get(sid, "densepose")
    np.testing.assert_array_equal((frames != densepose_palette()[0]).any(-1), masks)
    # Without the masks store a real video has no part maps: skipped with the reason.
    status = run_guidance_stage([row], store=str(tmp_path / "h.npz"), status=str(tmp_path / "h.parquet"), **common)
    assert "densepose guidance unavailable" in status[0]["error"]
    assert read_table(tmp_path / "h.parquet", STAGE_STATUS).num_rows == 1
