"""Stage "metrics": visual fidelity (SSIM / PSNR / LPIPS on segmentation-masked frames) and behavioural
diagnostics of every generated video of one generation shard against its driving video.

Both sides go through the same perception: the driving video's masks and keypoints come from the real
source's perception stages, the generated video's from the generated source's, so no metric compares
ground truth with an estimate. A video that failed to generate keeps its row with the error; a
generated video in which no person was found is measured with the real person mask only and says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.contracts import (
    MANIFEST,
    TASKS,
    declare,
    field,
    read_frame_store,
    read_table,
    string_fields,
    unpack_masks,
    write_table,
)
from pipeline.io.sequences import load_rgb
from pipeline.runner import stores_by_sequence

log = logging.getLogger(__name__)

DIAGNOSTIC_NAMES = ("flow_divergence", "thickening_index", "foot_sliding", "arm_swing_error", "cadence_error")
# Generators whose output is a silhouette video (notes.output == "silhouette", GaitCrafter): what does
# not apply to them is null with these reasons (not an error: the video is fine, the metric is not).
SILHOUETTE_RGB_REASON = "not applicable: the generator outputs binary silhouettes, not RGB frames"
SILHOUETTE_POSE_REASON = "not applicable: no pose is estimated on a generated silhouette video"
SILHOUETTE_FLOW_REASON = (
    "not applicable: a silhouette video has no texture and its walker is centred (no trajectory to compare)"
)

VISUAL = ("ssim", "psnr", "lpips")
DIAGNOSTICS = ("flow_divergence", "thickening_index", "foot_sliding", "arm_swing_error", "cadence_error")
_JOB = string_fields("dataset", "model", "task", "scenario", "job_id")
_SUBJECTS = string_fields("driving_subject", "reference_subject", nullable=True)

# Output contracts (read by pipeline.study.aggregate)

VISUAL_METRICS = declare(
    "visual_metrics",
    "one row per generated video: masked SSIM/PSNR/LPIPS against the driving video",
    [
        *_JOB, *_SUBJECTS,
        *[field(m, pa.float64()) for m in VISUAL],  # null = not computable (reason in notes)
        field("frames", pa.int32()),
        field("notes", pa.string()),  # JSON: a list of notes or {"notes": [...], "reasons": {metric: why}}
        field("error", pa.string()),
    ],
    ("dataset", "model", "task", "scenario", "job_id"),
    task=TASKS,
)  # fmt: skip

DIAGNOSTICS_INPUT = declare(
    "diagnostics",
    "one row per generated video: motion and shape diagnostics against the driving video",
    [
        *_JOB,
        *_SUBJECTS,
        *[field(m, pa.float64()) for m in DIAGNOSTICS],
        field("notes", pa.string()),
        field("error", pa.string()),
    ],
    ("dataset", "model", "task", "scenario", "job_id"),
    task=TASKS,
)



class Perception:
    """Keypoints, masks and validity of sequences, from stage stores found through summaries or paths."""

    def __init__(self, pose: dict[str, str], masks: dict[str, str]):
        self.pose, self.masks = pose, masks
        self._cache: dict[str, Any] = {}

    def _store(self, path: str):
        if path not in self._cache:
            self._cache[path] = read_frame_store(path)
        return self._cache[path]

    def keypoints(self, sid: str) -> np.ndarray | None:
        return self._store(self.pose[sid]).get(sid, "pose_keypoints") if sid in self.pose else None

    def mask(self, sid: str, width: int) -> np.ndarray | None:
        """Unpacked masks of ``sid``: at the size stored with them where the store has it (sequences of
        one shard may differ in size), else at ``width`` (the manifest's)."""
        if sid not in self.masks:
            return None
        store = self._store(self.masks[sid])
        if "seq:mask_size" in store.arrays:
            width = int(store.get(sid, "seq:mask_size")[1])
        return unpack_masks(store.get(sid, "mask"), width)


def _base(row: dict, attributes: dict) -> dict:
    return {
        "dataset": row["dataset"],
        "model": attributes.get("model", ""),
        "task": attributes.get("task", ""),
        "scenario": attributes.get("scenario", ""),
        "job_id": row["sequence_id"],
        "driving_subject": attributes.get("driving_subject"),
        "reference_subject": attributes.get("reference_subject"),
    }


def measure_video(
    row: dict,
    attributes: dict,
    real_row: dict,
    real: Perception,
    gen: Perception,
    *,
    settings: dict,
    lpips_model,
) -> tuple[dict, dict]:
    """(visual_metrics row, diagnostics row) of one generated video."""
    visual: dict[str, Any] = {
        **_base(row, attributes),
        "ssim": None,
        "psnr": None,
        "lpips": None,
        "frames": None,
    }
    diag: dict[str, Any] = {**_base(row, attributes), **dict.fromkeys(DIAGNOSTIC_NAMES)}
    notes: dict[str, Any] = {}
    if row.get("error"):
        visual["error"] = diag["error"] = row["error"]
        return visual | {"notes": "{}"}, diag | {"notes": "{}"}
    gen_frames = load_rgb(row)
    real_frames = load_rgb(real_row)
    real_sid, sid = real_row["sequence_id"], row["sequence_id"]
    real_masks = real.mask(real_sid, real_frames.shape[2])
    gen_masks = gen.mask(sid, gen_frames.shape[2])
    policy = settings.get("policy", "union")
    if gen_masks is None and policy in ("union", "generated"):
        notes["policy"] = (
            f"no person mask for the generated video: measured with the 'real' policy instead of '{policy}'"
        )
        policy = "real"
    silhouette = (attributes.get("notes") or {}).get("output") == "silhouette"
    if silhouette:
        notes.pop("policy", None)  # no masked RGB comparison happens, so no policy applies
        notes["null_reasons"] = dict.fromkeys(("ssim", "psnr", "lpips"), SILHOUETTE_RGB_REASON)
        visual["frames"] = len(gen_frames)
        diagnostics = silhouette_diagnostics(real_masks, gen_masks)
    else:
        result = video_metrics_row(
            real_frames, gen_frames, real_masks, gen_masks, policy, settings, lpips_model
        )
        visual.update({k: result.get(k) for k in ("ssim", "psnr", "lpips")})
        visual["frames"] = int(result.get("frames", len(gen_frames)))
        notes.update(result.get("notes", {}))
        from pipeline.evaluation.diagnostics import video_diagnostics

        diagnostics = video_diagnostics(
            real.keypoints(real_sid)
            if real.keypoints(real_sid) is not None
            else np.zeros((len(real_frames), 17, 3)),
            gen.keypoints(sid) if gen.keypoints(sid) is not None else np.zeros((len(gen_frames), 17, 3)),
            float(real_row["fps"] or 25.0),
            gen_fps=float(row["fps"] or real_row["fps"] or 25.0),
            real_masks=real_masks,
            gen_masks=gen_masks,
            real_frames=real_frames,
            gen_frames=gen_frames,
            flow_method=settings.get("flow_method", "dis"),
        )
    diag_notes = {}
    for name in DIAGNOSTIC_NAMES:
        value = diagnostics.get(name)
        diag[name] = None if value is None or value.value is None else float(value.value)
        if value is not None and value.value is None:
            diag_notes[name] = value.reason
    visual["notes"] = json.dumps(notes, sort_keys=True, default=str)
    diag["notes"] = json.dumps(diag_notes, sort_keys=True, default=str)
    return visual, diag


def silhouette_diagnostics(real_masks: np.ndarray | None, gen_masks: np.ndarray | None) -> dict:
    """Diagnostics of a generated silhouette video: the scale-free thickening index from the two
    masks; the keypoint and optical-flow diagnostics are null with the reason."""
    from pipeline.evaluation.diagnostics import Diagnostic, thickening_index

    out = {
        name: Diagnostic(None, SILHOUETTE_POSE_REASON)
        for name in ("foot_sliding", "arm_swing_error", "cadence_error")
    }
    out["flow_divergence"] = Diagnostic(None, SILHOUETTE_FLOW_REASON)
    if real_masks is None or gen_masks is None:
        out["thickening_index"] = Diagnostic(None, "masks not given")
    else:
        out["thickening_index"] = thickening_index(real_masks, gen_masks)
    return out


def video_metrics_row(real_frames, gen_frames, real_masks, gen_masks, policy, settings, lpips_model) -> dict:
    from pipeline.evaluation.visual_metrics import video_metrics

    result = video_metrics(
        real_frames,
        gen_frames,
        real_masks,
        gen_masks,
        policy=policy,
        crop=settings.get("crop", "frame"),
        lpips_model=lpips_model,
    )
    return {
        "ssim": _finite(result.get("ssim")),
        "psnr": _finite(result.get("psnr")),
        "lpips": _finite(result.get("lpips")),
        "frames": result.get("frames", len(gen_frames)),
        "notes": {"alignment": result.get("notes"), "null_reasons": result.get("reasons") or {}},
    }


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def run_metrics_stage(
    *,
    generated_manifest: str,
    gen_pose: str,
    gen_masks: str,
    real_manifest: str,
    real_pose_summary: str,
    real_masks_summary: str,
    settings: dict,
    visual_out: str,
    diagnostics_out: str,
) -> tuple[Path, Path]:
    from pipeline.evaluation.visual_metrics import lpips_from_config

    rows = read_table(generated_manifest, MANIFEST).to_pylist()
    real_rows = {r["sequence_id"]: r for r in read_table(real_manifest, MANIFEST).to_pylist()}
    real = Perception(stores_by_sequence(real_pose_summary), stores_by_sequence(real_masks_summary))
    gen_ids = [r["sequence_id"] for r in rows]
    # fields=[]: the sequence ids only (a store may be empty: no pose is estimated on silhouette videos)
    gen = Perception(
        {
            sid: gen_pose
            for sid in read_frame_store(gen_pose, fields=[]).sequence_ids
            if sid in gen_ids
        },
        {
            sid: gen_masks
            for sid in read_frame_store(gen_masks, fields=[]).sequence_ids
            if sid in gen_ids
        },
    )
    lpips_model = lpips_from_config({"metrics": settings})
    if lpips_model is None:
        log.warning(
            "LPIPS is null for this run: the AlexNet backbone weights were not found (see the notes column)"
        )
    visual_rows, diag_rows = [], []
    for row in rows:
        attributes = json.loads(row["attributes"] or "{}")
        try:
            visual, diag = measure_video(
                row,
                attributes,
                real_rows[attributes["driving_sequence"]],
                real,
                gen,
                settings=settings,
                lpips_model=lpips_model,
            )
            notes = json.loads(visual.get("notes") or "{}")
            if (
                lpips_model is None
                and visual.get("error") is None
                and "lpips" not in notes.get("null_reasons", {})
            ):
                notes.setdefault(
                    "lpips",
                    "null: AlexNet backbone weights not found (metrics.lpips.alexnet_weights or the torch hub cache)",
                )
                visual["notes"] = json.dumps(notes, sort_keys=True)
        except Exception as err:  # one bad video is a row, not a lost shard
            log.exception("metrics failed on %s", row["sequence_id"])
            message = f"metrics failed: {type(err).__name__}: {err}"
            visual = {
                **_base(row, attributes),
                "ssim": None,
                "psnr": None,
                "lpips": None,
                "frames": None,
                "notes": "{}",
                "error": message,
            }
            diag = {
                **_base(row, attributes),
                **dict.fromkeys(DIAGNOSTIC_NAMES),
                "notes": "{}",
                "error": message,
            }
        visual_rows.append(visual)
        diag_rows.append(diag)
    return (
        write_table(visual_rows, visual_out, VISUAL_METRICS),
        write_table(diag_rows, diagnostics_out, DIAGNOSTICS_INPUT),
    )
