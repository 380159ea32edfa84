"""Stage "generate": run one model on one shard of a scenario's jobs, loading the model once.

For every job the stage assembles the reference (a frame of the reference sequence with its mask and
keypoints from the real source's perception) and the driving guidance (the driving sequence's
keypoints from the same perception, the world's part maps and SMPL joints where they exist), calls the
generator, and writes the video atomically. Its output is a manifest (contract ``manifest``) of the
generated videos, so the perception stages run on generated videos exactly as on real ones. A job that
fails becomes a row with ``error`` (including the upstream's stderr tail); the shard goes on.
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.contracts import MANIFEST, PLAN, read_frame_store, read_table, write_table
from pipeline.generation.generators import Driving, GenerationJob, Reference, make_generator
from pipeline.io.sequences import MissingModality, frame_size, groundtruth, load_rgb

log = logging.getLogger(__name__)


class RealSource:
    """The real dataset a plan refers to: its manifest and its pose / masks stores (all shards)."""

    def __init__(self, manifest: str, pose_summary: str, masks_summary: str):
        from pipeline.runner import stores_by_sequence

        self.rows = {r["sequence_id"]: r for r in read_table(manifest, MANIFEST).to_pylist()}
        self.pose = stores_by_sequence(pose_summary)
        self.masks = stores_by_sequence(masks_summary)

    def field(self, kind: str, sequence_id: str, name: str) -> np.ndarray:
        paths = self.pose if kind == "pose" else self.masks
        if sequence_id not in paths:
            raise MissingModality(f"{sequence_id}: the {kind} stage stored nothing for it")
        return _store(paths[sequence_id]).get(sequence_id, name)

    def mask(self, sequence_id: str) -> np.ndarray:
        from pipeline.contracts import unpack_masks

        store = _store(self.masks[sequence_id]) if sequence_id in self.masks else None
        if store is not None and "seq:mask_size" in store.arrays:  # the size stored with the masks
            width = int(store.get(sequence_id, "seq:mask_size")[1])
        else:
            width = frame_size(self.rows[sequence_id])[1]
        return unpack_masks(self.field("masks", sequence_id, "mask"), width)


@lru_cache(maxsize=16)
def _store(path: str):
    return read_frame_store(path)


def _optional_groundtruth(row: dict, name: str) -> np.ndarray | None:
    try:
        return groundtruth(row, name)
    except MissingModality:
        return None


def part_maps(
    source: RealSource, sequence_id: str, backend: str = "auto", frames: slice | int | None = None
) -> tuple[np.ndarray | None, str | None]:
    """Dense part maps (IUV) of a sequence and where they came from: the world's ground truth
    (``groundtruth``; ``auto`` prefers it) or the approximation from the pose and mask stages
    (``approx_from_pose``, :mod:`pipeline.perception.parts`; ``auto`` falls back to it). (None, None)
    when ``groundtruth`` is asked for and the sequence has none."""
    from pipeline.perception.parts import BACKENDS, approx_parts

    if backend not in BACKENDS:
        raise ValueError(f"parts backend must be one of {BACKENDS}, got {backend!r}")
    pick = slice(None) if frames is None else frames
    if backend in ("auto", "groundtruth"):
        parts = _optional_groundtruth(source.rows[sequence_id], "parts")
        if parts is not None:
            return parts[pick], "groundtruth"
        if backend == "groundtruth":
            return None, None
    keypoints = source.field("pose", sequence_id, "pose_keypoints")[pick]
    masks = source.mask(sequence_id)[pick]
    if isinstance(pick, int):
        return approx_parts(keypoints[None], masks[None])[0], "approx_from_pose"
    return approx_parts(keypoints, masks), "approx_from_pose"


def part_source(source: RealSource, job: dict, backend: str) -> str:
    """What :func:`part_maps` used for a job's driving sequence (for the generator notes)."""
    if backend == "approx_from_pose":
        return backend
    has_gt = bool(source.rows[job["driving_sequence"]].get("path_groundtruth"))
    return "groundtruth" if has_gt else ("approx_from_pose" if backend == "auto" else "none")


# models.<name>.guidance: where a generator's pose guidance comes from (the guidance-source ablation).
GUIDANCE_SOURCES = ("auto", "groundtruth", "estimated")
# guidance → the part-map backend it implies (None: the model's own `parts` setting)
GUIDANCE_PARTS = {"auto": None, "groundtruth": "groundtruth", "estimated": "approx_from_pose"}


def groundtruth_keypoints(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """The world's COCO-17 keypoints of a sequence as the pose stage stores them ([T, 17, 3] x, y,
    confidence 1 in frame / 0 outside; [T] valid), through the ``groundtruth`` pose backend."""
    from pipeline.perception.pose_backends import GroundTruthPoseBackend

    result = GroundTruthPoseBackend().estimate(None, keypoints2d=groundtruth(row, "keypoints2d"))
    return result.keypoints, result.detected


def keypoints_of(source: RealSource, sequence_id: str, guidance: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and valid frames a generator reads: the pose stage's (``auto``, ``estimated``) or
    the world's ground truth (``groundtruth``; a sequence without it is an error naming it)."""
    if guidance == "groundtruth":
        return groundtruth_keypoints(source.rows[sequence_id])
    return source.field("pose", sequence_id, "pose_keypoints"), source.field("pose", sequence_id, "valid")


def build_reference(
    source: RealSource,
    job: dict,
    parts_backend: str = "auto",
    needs: tuple[str, ...] = ("parts",),
    guidance: str = "auto",
) -> Reference:
    sid, index = job["reference_sequence"], int(job["reference_frame"])
    row = source.rows[sid]
    frames = load_rgb(row)
    # Part maps only for a model that reads them: the mask is the reference person everywhere else, and
    # loading a world shard's part maps costs seconds per job.
    parts = part_maps(source, sid, parts_backend, index)[0] if "parts" in needs else None
    return Reference(
        image=frames[index],
        mask=source.mask(sid)[index],
        keypoints=keypoints_of(source, sid, guidance)[0][index],
        parts=parts,
        sequence_id=sid,
        frame_index=index,
    )


def build_driving(
    source: RealSource, job: dict, needs: tuple[str, ...], parts_backend: str = "auto", guidance: str = "auto"
) -> Driving:
    sid = job["driving_sequence"]
    keypoints, valid = keypoints_of(source, sid, guidance)
    row = source.rows[sid]
    height, width = frame_size(row)
    smpl = None
    if "smpl" in needs:
        from pipeline.perception.guidance import smpl24_for_mtvcrafter

        smpl = smpl24_for_mtvcrafter(groundtruth(row, "joints3d"), groundtruth(row, "extrinsics"))
    return Driving(
        keypoints=keypoints,
        height=height,
        width=width,
        fps=float(row["fps"] or 25.0),
        valid=valid,
        parts=part_maps(source, sid, parts_backend)[0] if "parts" in needs else None,
        smpl_mm=smpl,
        frames=load_rgb(row) if "frames" in needs else None,
        masks=source.mask(sid) if "masks" in needs else None,
        sequence_id=sid,
    )


def label_only_reference(job: dict) -> Reference:
    """The reference of a generator that uses no reference image (``uses_reference = False``, e.g.
    GaitCrafter, conditioned on identity labels): only which sequence and frame the plan names, so the
    shard does not decode reference videos it would throw away."""
    return Reference(
        image=np.zeros((0, 0, 3), dtype=np.uint8),
        sequence_id=job["reference_sequence"],
        frame_index=int(job["reference_frame"]),
    )


def generated_row(job: dict, model: str, source: RealSource) -> dict:
    driving = source.rows[job["driving_sequence"]]
    attributes = {
        k: job[k]
        for k in ("task", "scenario", "driving_sequence", "reference_sequence", "reference_frame", "seed")
    }
    attributes.update(
        model=model, driving_subject=job["driving_subject"], reference_subject=job["reference_subject"]
    )
    return {
        "dataset": job["dataset"],
        "subject": job["driving_subject"],
        "condition": driving["condition"],
        "view": driving["view"],
        "sequence_id": job["job_id"],
        "split": "test",
        "role": "probe",
        "attributes": attributes,
    }


def run_generation_shard(
    *,
    plan: str,
    scenario: str,
    shard: str,
    model: str,
    spec: dict,
    manifest: str,
    pose_summary: str,
    masks_summary: str,
    videos: str,
    out: str,
) -> Path:
    """Generate every job of (scenario, shard) with one model load; write videos and their manifest."""
    from pipeline.io.video import write_video

    jobs = [
        j for j in read_table(plan, PLAN).to_pylist() if j["scenario"] == scenario and j["shard"] == shard
    ]
    source = RealSource(manifest, pose_summary, masks_summary)
    # Constructor options are the model's setup (checkout, env, weights); `params` go to every job.
    options = {k: v for k, v in spec.items() if k not in {"generator", "resources", "params", "parts", "guidance", "scenarios"}}
    guidance = spec.get("guidance", "auto")
    if guidance not in GUIDANCE_SOURCES:
        raise ValueError(f"{model}: guidance must be one of {GUIDANCE_SOURCES}, got {guidance!r}")
    parts_backend = GUIDANCE_PARTS[guidance] or spec.get("parts", "auto")
    generator = make_generator(spec["generator"], **options)
    generator.load()  # a missing checkout or env fails here, before any job (and any GPU time)
    uses_reference = bool(getattr(generator, "uses_reference", True))
    videos_dir = Path(videos)
    videos_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for job in jobs:
            row = generated_row(job, model, source)
            start = time.perf_counter()
            try:
                result = generator.generate(
                    GenerationJob(
                        job_id=job["job_id"],
                        reference=build_reference(source, job, parts_backend, tuple(generator.needs), guidance)
                        if uses_reference
                        else label_only_reference(job),
                        driving=build_driving(source, job, tuple(generator.needs), parts_backend, guidance),
                        seed=int(job["seed"]),
                        params=spec.get("params", {}),
                        context={"plan": job, "driving_row": source.rows[job["driving_sequence"]]},
                    )
                )
                path = videos_dir / (job["job_id"].replace("/", "__") + ".mp4")
                write_video(path, result.frames, result.fps)
                height, width = result.frames.shape[1:3]
                row.update(
                    path_video=str(path),
                    frame_count=len(result.frames),
                    fps=result.fps,
                    width=width,
                    height=height,
                )
                row["attributes"]["notes"] = result.notes
                if "parts" in generator.needs:  # which part maps guided it: ground truth or the approximation
                    row["attributes"]["notes"]["parts"] = part_source(source, job, parts_backend)
                if guidance != "auto":  # the guidance-source ablation's arm
                    row["attributes"]["notes"]["guidance"] = guidance
            except Exception as err:  # a failed job is a row; the shard carries on
                log.exception("%s failed on %s", model, job["job_id"])
                row["error"] = f"generation failed: {type(err).__name__}: {err}"[-2000:]
            row["attributes"]["seconds"] = round(time.perf_counter() - start, 3)
            row["attributes"] = json.dumps(row["attributes"], sort_keys=True, default=str)
            rows.append(row)
    finally:
        generator.close()
    failed = sum(1 for r in rows if r.get("error"))
    log.info("%s %s %s: %d jobs, %d failed", model, scenario, shard, len(rows), failed)
    return write_table(rows, out, MANIFEST)
