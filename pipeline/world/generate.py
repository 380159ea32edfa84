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


def build_motion(world: dict, identity: IdentityPlan, rng: np.random.Generator):
    """The identity's motion for one sequence: its gait style at a random phase, or one of its mocap trials."""
    frames, fps = world["frames"], float(world["fps"])
    if identity.motion_source == "mocap":
        from pipeline.world.mocap import list_clips, load_clip

        clips = list_clips()[identity.mocap_subject]
        clip = load_clip(clips[int(rng.integers(len(clips)))])
        return clip.motion(fps, frames, start_frame=int(rng.integers(0, max(1, int(fps)))))
    from pipeline.world.motion import GaitStyle, synthesize

    style = GaitStyle.sample(np.random.default_rng(identity.seeds["motion"]))
    return synthesize(style, frames, fps, phase=float(rng.uniform(0.0, 1.0)))


def render_sequence_plan(world: dict, identity: IdentityPlan, plan: SequencePlan) -> RenderedSequence:
    from pipeline.world.camera import Camera
    from pipeline.world.kinematics import place, pose
    from pipeline.world.render import render_sequence

    rng = np.random.default_rng(plan.seed)
    body, appearance = build_identity(identity)
    posed = pose(body, build_motion(world, identity, rng))
    condition = plan.condition_spec
    # Centre the walk on the camera's target so the walker crosses the middle of the view.
    mid = posed.joints[len(posed.joints) // 2, 0]
    heading = 180.0 if condition.get("reverse") else 0.0
    posed = place(posed, heading, (-mid[0], 0.0, -mid[2]))
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
    return RenderedSequence(rgb=rendered.rgb, fps=float(world["fps"]), groundtruth=groundtruth)


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
            rendered = render_sequence_plan(world, identity, plan)
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
                "attributes": json.dumps(plan.attributes(identity), sort_keys=True),
                "error": error or "",
            }
        )
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
