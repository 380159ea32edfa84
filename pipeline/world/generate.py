"""Render the synthetic world as a dataset on disk, one shard per job.

``write_world_spec`` resolves the world's identities into ``world.json`` (the dataset's root); then
``render_shard`` renders the shard's sequences to ``videos/<shard>/<subject>/<condition>/<view>.mp4``,
writes the shard's ground truth as a frame store and a CSV sheet with one row per sequence. A sequence
that fails to render becomes a sheet row with ``error`` set; the shard carries on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.contracts import atomic_path, pack_masks, write_frame_store
from pipeline.world.appearance import Appearance
from pipeline.world.body import BodyShape
from pipeline.world.plan import (
    IdentityPlan,
    SequencePlan,
    identities_json,
    plan_identities,
    plan_sequences,
    view_label,
)

log = logging.getLogger(__name__)

SHEET_COLUMNS = ("path", "subject", "condition", "view", "split", "role", "groundtruth", "attributes", "error")


def write_world_spec(spec: dict, out: str | Path) -> Path:
    """Resolve identities (which needs the list of shipped mocap subjects) and write world.json."""
    from pipeline.world.mocap import list_clips

    identities = plan_identities(spec, sorted(list_clips(), key=_numeric_first))
    payload = {**spec, "identities": json.loads(identities_json(identities))}
    final, tmp = atomic_path(out)
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, final)
    log.info("world '%s': %d identities", spec.get("dataset"), len(identities))
    return final


def _numeric_first(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (10**9, name)


def load_world(spec_path: str | Path) -> tuple[dict, list[IdentityPlan], list[SequencePlan]]:
    world = json.loads(Path(spec_path).read_text())
    identities = [IdentityPlan(**d) for d in world["identities"]]
    return world, identities, plan_sequences(world, identities)


@dataclass
class RenderedSequence:
    rgb: np.ndarray
    fps: float
    groundtruth: dict[str, np.ndarray]


def build_identity(identity: IdentityPlan) -> tuple[BodyShape, Appearance]:
    body = BodyShape.sample(np.random.default_rng(identity.seeds["body"]))
    appearance = Appearance.sample(np.random.default_rng(identity.seeds["appearance"]))
    return body, appearance


def build_motion(world: dict, identity: IdentityPlan, rng: np.random.Generator, frames: int | None = None):
    """The identity's motion for one sequence: its gait style at a random phase, or one of its mocap trials."""
    frames, fps = frames or world["frames"], float(world["fps"])
    if identity.motion_source == "mocap":
        from pipeline.world.mocap import list_clips, load_clip

        clips = list_clips()[identity.mocap_subject]
        clip = load_clip(clips[int(rng.integers(len(clips)))])
        return clip.motion(fps, frames, start_frame=int(rng.integers(0, max(1, int(fps)))))
    from pipeline.world.motion import GaitStyle, synthesize

    style = GaitStyle.sample(np.random.default_rng(identity.seeds["motion"]))
    return synthesize(style, frames, fps, phase=float(rng.uniform(0.0, 1.0)))


def render_sequence_plan(
    world: dict, identity: IdentityPlan, plan: SequencePlan, identities: list[IdentityPlan] | None = None
) -> RenderedSequence:
    """Render one planned sequence with its ground truth.

    The hard-case covariates of a condition (none of them by default): ``frames`` (sequence length),
    ``resolution`` ([width, height], e.g. portrait), ``walkers`` (``sequential``: another identity walks
    in after the first has left, from frame ``switch_frame``; ``crossing``: another identity walks the
    opposite way ``crossing_depth_m`` nearer (> 0) or farther (< 0) and passes the main walker mid-way)
    and ``rotate`` (90 / 180 / 270: the stored frames are turned that many degrees counter-clockwise,
    with no rotation metadata; the ground truth stays upright and records the angle in ``seq:rotate``).
    """
    from pipeline.world.camera import Camera
    from pipeline.world.kinematics import place, pose
    from pipeline.world.render import Walker, render_sequence

    rng = np.random.default_rng(plan.seed)
    condition = plan.condition_spec
    n_frames = int(condition.get("frames") or world["frames"])
    body, appearance = build_identity(identity)
    posed = pose(body, build_motion(world, identity, rng, n_frames))
    # Centre the walk on the camera's target so the walker crosses the middle of the view.
    heading = 180.0 if condition.get("reverse") else 0.0
    kind = condition.get("walkers", "single")
    present, others, main = None, [], None
    if kind == "single":
        mid = posed.joints[len(posed.joints) // 2, 0]
        posed = place(posed, heading, (-mid[0], 0.0, -mid[2]))
    else:
        partner = second_walker(identity, plan, identities or [])
        p_body, p_look = build_identity(partner)
        p_rng = np.random.default_rng(_partner_seed(plan))
        p_posed = pose(p_body, build_motion(world, partner, p_rng, n_frames))
        frames_idx = np.arange(n_frames)
        if kind == "sequential":
            switch, gap = sequential_switch(condition, n_frames)
            present = frames_idx < switch - gap
            p_present = frames_idx >= switch
            # Each walker crosses the middle of the view half-way through its own stretch of frames.
            mid = posed.joints[(switch - gap) // 2, 0]
            posed = place(posed, heading, (-mid[0], 0.0, -mid[2]))
            p_mid = p_posed.joints[(switch + n_frames) // 2, 0]
            p_posed = place(p_posed, heading, (-p_mid[0], 0.0, -p_mid[2]))
            main = np.where(present, 0, np.where(p_present, 1, -1))
        elif kind == "crossing":
            mid = posed.joints[n_frames // 2, 0]
            posed = place(posed, heading, (-mid[0], 0.0, -mid[2]))
            theta = np.deg2rad(plan.view)
            towards = np.array([np.cos(theta), 0.0, np.sin(theta)])  # from the path towards the camera
            depth = float(condition.get("crossing_depth_m", -1.5))
            p_mid = p_posed.joints[n_frames // 2, 0]
            p_mid_placed = rot_y_apply(180.0 + heading, p_mid)
            offset = -p_mid_placed + depth * towards
            p_posed = place(p_posed, 180.0 + heading, (offset[0], 0.0, offset[2]))
            p_present = np.ones(n_frames, bool)
        else:
            raise ValueError(f"{plan.sequence_id}: unknown walkers '{kind}' (single, sequential, crossing)")
        others = [Walker(p_posed.joints, p_posed.orientations, p_body, p_look, present=p_present)]
        if present is None:
            present = np.ones(n_frames, bool)
    width, height = condition.get("resolution") or (world["width"], world["height"])
    cam = world["camera"]
    camera = Camera.for_view(
        plan.view, width, height, distance_m=cam["distance_m"], height_m=cam["height_m"], fov_deg=cam["fov_deg"]
    )
    rendered = render_sequence(
        posed.joints,
        posed.orientations,
        body,
        appearance,
        coat=bool(condition.get("coat")),
        bag=bool(condition.get("bag")),
        camera=camera,
        background=condition.get("background", "studio"),
        rng=rng,
        present=present,
        others=others,
        main=main,
    )
    groundtruth = {
        "mask": pack_masks(rendered.mask),
        "parts": rendered.parts,
        "keypoints2d": rendered.keypoints2d.astype(np.float32),
        "joints2d": rendered.joints2d.astype(np.float32),
        "joints3d": posed.joints.astype(np.float32),
        # The renderer applies the background's camera shake, so its own K and per-frame [R|t] are the truth.
        "extrinsics": np.asarray(rendered.Rt, dtype=np.float32),
        "seq:K": np.asarray(rendered.K, dtype=np.float32),
    }
    if rendered.walker is not None:
        groundtruth["walker"] = rendered.walker.astype(np.int8)
        groundtruth["mask_other"] = pack_masks(rendered.mask_other)
    rgb = rendered.rgb
    rotate = int(condition.get("rotate", 0)) % 360
    if rotate:
        if rotate % 90:
            raise ValueError(f"{plan.sequence_id}: rotate must be a multiple of 90, got {rotate}")
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotate // 90, axes=(1, 2)))
        groundtruth["seq:rotate"] = np.int16(rotate)
    return RenderedSequence(rgb=rgb, fps=float(world["fps"]), groundtruth=groundtruth)


# Ground-truth fields only the hard cases write, and their value for the sequences of the same shard
# that do not (a frame store needs the same fields for every sequence).
HARD_CASE_FIELDS = {
    "walker": lambda gt: np.zeros(len(gt["keypoints2d"]), np.int8),
    "mask_other": lambda gt: np.zeros_like(gt["mask"]),
    "seq:rotate": lambda gt: np.int16(0),
}


def sequential_switch(condition: dict, n_frames: int) -> tuple[int, int]:
    """(switch frame, gap): the second walker is in view from the switch frame; the first left ``gap``
    frames earlier."""
    gap = int(condition.get("gap_frames", 3))
    switch = int(round(float(condition.get("switch_at", 0.55)) * n_frames))
    if not gap < switch < n_frames:
        raise ValueError(f"sequential walkers: switch frame {switch} (gap {gap}) does not fit {n_frames} frames")
    return switch, gap


def walker_attributes(world: dict, identity: IdentityPlan, plan: SequencePlan, identities: list[IdentityPlan]) -> dict:
    """Ground truth of a two-walker sequence for its attributes: who the other walker is and, for
    sequential walkers, the frame where they take over (empty for a single walker)."""
    kind = plan.condition_spec.get("walkers", "single")
    if kind == "single":
        return {}
    try:
        out = {"second_subject": second_walker(identity, plan, identities).subject}
    except ValueError:
        return {}  # the sequence's render failed with this reason, which its row's error holds
    if kind == "sequential":
        n_frames = int(plan.condition_spec.get("frames") or world["frames"])
        switch, gap = sequential_switch(plan.condition_spec, n_frames)
        out |= {"switch_frame": switch, "first_leaves_frame": switch - gap}
    return out


def _partner_seed(plan: SequencePlan) -> int:
    return int(np.random.SeedSequence([plan.seed, 4242]).generate_state(1)[0])


def second_walker(identity: IdentityPlan, plan: SequencePlan, identities: list[IdentityPlan]) -> IdentityPlan:
    """The other identity of a two-walker sequence: a base identity of the same split, seeded by the plan."""
    pool = [p for p in identities if p.split == identity.split and p.subject != identity.subject and p.twin_of is None]
    if not pool:
        raise ValueError(f"{plan.sequence_id}: a two-walker condition needs another identity in the {identity.split} split")
    return pool[int(np.random.default_rng(_partner_seed(plan)).integers(len(pool)))]


def rot_y_apply(heading_deg: float, point: np.ndarray) -> np.ndarray:
    from pipeline.world.kinematics import rot_y

    return rot_y(np.deg2rad(heading_deg)) @ np.asarray(point, dtype=float)


def render_shard(spec_path: str | Path, shard: str, *, sheet: str | Path, groundtruth: str | Path, videos: str | Path) -> None:
    from pipeline.io.video import write_video

    world, identities, plans = load_world(spec_path)
    root = Path(spec_path).parent
    by_subject = {p.subject: p for p in identities}
    videos = Path(videos)
    videos.mkdir(parents=True, exist_ok=True)
    mine = [p for p in plans if p.shard == shard]
    gt_rel = os.path.relpath(Path(groundtruth).resolve(), root.resolve())
    store: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for plan in mine:
        identity = by_subject[plan.subject]
        video = videos / plan.subject / plan.condition / f"{view_label(plan.view)}.mp4"
        error = None
        try:
            rendered = render_sequence_plan(world, identity, plan, identities)
            video.parent.mkdir(parents=True, exist_ok=True)
            write_video(video, rendered.rgb, rendered.fps)
            store[plan.sequence_id] = rendered.groundtruth
        except Exception as err:  # one bad sequence must not lose the shard: record it and go on
            log.exception("failed to render %s", plan.sequence_id)
            error = f"render failed: {type(err).__name__}: {err}"
        rows.append(
            {
                "path": os.path.relpath(video.resolve(), root.resolve()),
                "subject": plan.subject,
                "condition": plan.condition,
                "view": view_label(plan.view),
                "split": plan.split,
                "role": plan.role,
                "groundtruth": gt_rel,
                "attributes": json.dumps(plan.attributes(identity) | walker_attributes(world, identity, plan, identities), sort_keys=True),
                "error": error or "",
            }
        )
    for name, default in HARD_CASE_FIELDS.items():  # only when a hard case of this shard wrote the field
        if any(name in gt for gt in store.values()):
            for gt in store.values():
                gt.setdefault(name, default(gt))
    write_frame_store(groundtruth, store)
    _write_sheet(sheet, rows)
    log.info("%s: %d sequences rendered, %d failed", shard, len(store), len(rows) - len(store))


def _write_sheet(path: str | Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SHEET_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    final, tmp = atomic_path(path)
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, final)
