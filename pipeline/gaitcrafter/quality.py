"""Plain sample-quality numbers for generated silhouette clips (no learned metric, nothing to tune).

* **Person-like frames** (:func:`person_like`): a frame counts when its foreground, after ignoring
  specks smaller than ``min_component`` pixels, is exactly one 8-connected component that holds at
  least ``min_share`` of the foreground, and whose area lies in the range of the real frames' areas
  (1st–99th percentile of the real frames given). Real frames are scored the same way as a reference.
* **Identity/view match** (:func:`identity_view_iou`): for every generated clip, the soft IoU
  (Σ min / Σ max) of its gait energy image (mean frame) with the GEIs of the real sequences of the
  *same* identity and view, against the real sequences of *other* identities in the same view; and the
  best-frame IoU (each generated frame's best IoU over the real frames, averaged), same vs other.
  Generated clips are not phase-aligned with real ones, hence GEIs and best frames rather than
  frame-by-frame IoU.
* **Own-identity matching** (:func:`identity_match`): each generated clip is assigned the identity
  whose real GEIs (same view) it overlaps most on average; the share assigned to their own identity,
  beside its chance level (the mean of 1 / identities in the clip's view).
* **Temporal consistency**: mean IoU of consecutive frames, generated vs real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def binary(clip: np.ndarray) -> np.ndarray:
    """bool frames from uint8 0..255 (>= 128) or float in [0, 1] (>= 0.5)."""
    clip = np.asarray(clip)
    return clip >= 128 if clip.dtype == np.uint8 else clip >= 0.5


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Σ min(a, b) / Σ max(a, b) (1.0 when both are empty)."""
    union = float(np.maximum(a, b).sum())
    return 1.0 if union == 0 else float(np.minimum(a, b).sum()) / union


def gei(clip: np.ndarray) -> np.ndarray:
    """Gait energy image: the mean binary frame [64, 44] in [0, 1]."""
    return binary(clip).mean(axis=0)


def best_frame_iou(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean over generated frames of the best IoU with any real frame (both [T, h, w])."""
    g = binary(generated).reshape(len(generated), -1).astype(np.float32)
    r = binary(real).reshape(len(real), -1).astype(np.float32)
    inter = g @ r.T
    union = g.sum(1)[:, None] + r.sum(1)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)
    return float(iou.max(axis=1).mean())


def consecutive_iou(clip: np.ndarray) -> float:
    """Mean IoU of frames t and t+1 (NaN for a single frame)."""
    frames = binary(clip).reshape(len(clip), -1)
    if len(frames) < 2:
        return float("nan")
    inter = (frames[1:] & frames[:-1]).sum(1)
    union = (frames[1:] | frames[:-1]).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def area_range(real_clips: Sequence[np.ndarray], low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The ``low``–``high`` percentile of foreground areas (pixels) of the non-empty real frames."""
    areas = np.concatenate([binary(c).reshape(len(c), -1).sum(1) for c in real_clips])
    areas = areas[areas > 0]
    if areas.size == 0:
        raise ValueError("the real clips have no foreground; no plausible area range")
    return float(np.percentile(areas, low)), float(np.percentile(areas, high))


def person_like(
    frame: np.ndarray, areas: tuple[float, float], *, min_component: int = 10, min_share: float = 0.95
) -> bool:
    """One dominant 8-connected blob of plausible area (see the module docstring)."""
    mask = binary(frame).astype(np.uint8)
    total = int(mask.sum())
    if total == 0:
        return False
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sizes = stats[1:count, cv2.CC_STAT_AREA]
    blobs = sizes[sizes >= min_component]
    if len(blobs) != 1:
        return False
    area = int(blobs[0])
    return area >= min_share * total and areas[0] <= area <= areas[1]


def person_like_fraction(clips: Sequence[np.ndarray], areas: tuple[float, float]) -> float:
    flags = [person_like(frame, areas) for clip in clips for frame in clip]
    return float(np.mean(flags)) if flags else float("nan")


@dataclass
class LabelledClip:
    identity: str
    view: str
    clip: np.ndarray  # [T, 64, 44] uint8 0/255 or float in [0, 1]


def identity_view_iou(
    generated: Sequence[LabelledClip], real: Sequence[LabelledClip]
) -> list[dict[str, object]]:
    """Per generated clip: GEI and best-frame IoU with real clips of the same identity+view vs other identities."""
    real_geis = [gei(r.clip) for r in real]
    rows = []
    for g in generated:
        g_gei = gei(g.clip)
        same = [i for i, r in enumerate(real) if r.identity == g.identity and r.view == g.view]
        other = [i for i, r in enumerate(real) if r.identity != g.identity and r.view == g.view]
        row: dict[str, object] = {
            "identity": g.identity,
            "view": g.view,
            "same_n": len(same),
            "other_n": len(other),
        }
        for name, index in (("same", same), ("other", other)):
            row[f"gei_iou_{name}"] = (
                float(np.mean([soft_iou(g_gei, real_geis[i]) for i in index])) if index else None
            )
            row[f"frame_iou_{name}"] = (
                float(np.mean([best_frame_iou(g.clip, real[i].clip) for i in index])) if index else None
            )
        rows.append(row)
    return rows


def _match_share(
    probes: Sequence[tuple[LabelledClip, np.ndarray, int | None]], real: Sequence[LabelledClip]
) -> tuple[float | None, float | None]:
    """(share of probes whose nearest identity by mean GEI IoU with the real clips of their view is their
    own; chance). A probe is (clip, its GEI, the index of a real clip to leave out or None); probes whose
    identity has no real clip left in their view are skipped; (None, None) when none is left."""
    real_geis = [gei(r.clip) for r in real]
    hits, chances = [], []
    for probe, probe_gei, skip in probes:
        by_identity: dict[str, list[float]] = {}
        for j, (r, r_gei) in enumerate(zip(real, real_geis, strict=True)):
            if j != skip and r.view == probe.view:
                by_identity.setdefault(r.identity, []).append(soft_iou(probe_gei, r_gei))
        if probe.identity not in by_identity:
            continue
        best = max(by_identity, key=lambda k: float(np.mean(by_identity[k])))
        hits.append(best == probe.identity)
        chances.append(1.0 / len(by_identity))
    if not hits:
        return None, None
    return float(np.mean(hits)), float(np.mean(chances))


def identity_match(
    generated: Sequence[LabelledClip], real: Sequence[LabelledClip]
) -> tuple[float | None, float | None]:
    """(share of generated clips whose nearest identity by mean GEI IoU, same view, is their own; chance).

    Clips whose own identity has no real clip in their view are left out; (None, None) when none is left."""
    return _match_share([(g, gei(g.clip), None) for g in generated], real)


def identity_match_real(real: Sequence[LabelledClip], frames: int) -> tuple[float | None, float | None]:
    """The same matching for real clips, leave-one-out: each real clip's first ``frames`` frames (the
    length of a generated clip) against the other real clips (whole). What a perfect generator would
    reach — the ceiling to read :func:`identity_match` against. (None, None) when no real clip has
    another real clip of its identity in its view."""
    return _match_share([(r, gei(r.clip[:frames]), k) for k, r in enumerate(real)], real)


def summarise_quality(generated: Sequence[LabelledClip], real: Sequence[LabelledClip]) -> dict[str, object]:
    """All numbers of the module docstring, for generated clips against real ones."""
    if not generated or not real:
        raise ValueError("summarise_quality needs generated and real clips")
    areas = area_range([r.clip for r in real])
    rows = identity_view_iou(generated, real)

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else None

    paired = [r for r in rows if r["gei_iou_same"] is not None and r["gei_iou_other"] is not None]
    match, chance = identity_match(generated, real)
    match_real, chance_real = identity_match_real(real, frames=len(generated[0].clip))
    return {
        "generated_clips": len(generated),
        "real_clips": len(real),
        "plausible_area_px": areas,
        "person_like_generated": person_like_fraction([g.clip for g in generated], areas),
        "person_like_real": person_like_fraction([r.clip for r in real], areas),
        "foreground_share_generated": float(np.mean([binary(g.clip).mean() for g in generated])),
        "foreground_share_real": float(np.mean([binary(r.clip).mean() for r in real])),
        "gei_iou_same": mean("gei_iou_same"),
        "gei_iou_other": mean("gei_iou_other"),
        "frame_iou_same": mean("frame_iou_same"),
        "frame_iou_other": mean("frame_iou_other"),
        "fraction_same_beats_other_gei": float(
            np.mean([r["gei_iou_same"] > r["gei_iou_other"] for r in paired])
        )
        if paired
        else None,
        "identity_match_gei": match,
        "identity_match_chance": chance,
        "identity_match_real": match_real,
        "identity_match_real_chance": chance_real,
        "consecutive_iou_generated": float(np.nanmean([consecutive_iou(g.clip) for g in generated])),
        "consecutive_iou_real": float(np.nanmean([consecutive_iou(r.clip) for r in real])),
    }


def real_clips(data, covariates: tuple[int, int] | None = (0, 0)) -> list[LabelledClip]:
    """Every training sequence (all its valid frames, cut to 64×44) as a labelled clip.

    ``covariates`` = (clothing index, bag index) keeps only sequences with those covariates (default
    normal / none, what :func:`evaluate_checkpoint` generates); None keeps all.
    """
    vocabulary = data.vocabulary
    clips = []
    for i, frames in enumerate(data.frames):
        if covariates is not None and (int(data.clothing[i]), int(data.bag[i])) != covariates:
            continue
        clips.append(
            LabelledClip(
                vocabulary.identities[int(data.identity[i])],
                vocabulary.views[int(data.view[i])] if data.view[i] >= 0 else "any",
                np.ascontiguousarray(frames[:, :, 10:54]),
            )
        )
    return clips


def evaluate_checkpoint(
    checkpoint,
    silhouette_stores,
    manifest,
    *,
    samples_per_cell: int = 1,
    steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    splits: Sequence[str] = ("train",),
    roles: Sequence[str] | None = None,
    sampler: str | None = None,
    guidance_on: str | None = None,
) -> tuple[dict[str, object], list[LabelledClip]]:
    """Sample every (training identity, view) with normal clothing and no bag; compare with the real
    sequences of the same covariates (:func:`summarise_quality`). Returns (summary, generated clips).

    ``splits`` / ``roles`` must select the sequences the model was trained on (its vocabulary)."""
    from pipeline.gaitcrafter.sample import sample
    from pipeline.gaitcrafter.train import load_gaitcrafter, load_training_data

    model, info = load_gaitcrafter(checkpoint)
    data = load_training_data(silhouette_stores, manifest, info.config, splits=splits, roles=roles)
    if data.vocabulary != model.vocabulary:
        raise ValueError(f"{info.path}: the data's identities/views differ from the model's vocabulary")
    cells = [(i, v) for i in model.vocabulary.identities for v in model.vocabulary.views]
    cells = [cell for cell in cells for _ in range(samples_per_cell)]
    cond = model.conditions(
        [i for i, _ in cells], [v for _, v in cells], ["normal"] * len(cells), ["none"] * len(cells)
    )
    out = sample(
        model, cond, steps=steps, guidance_scale=guidance_scale, seed=seed, sampler=sampler, guidance_on=guidance_on
    )
    generated = [LabelledClip(i, v, clip) for (i, v), clip in zip(cells, out.silhouettes, strict=True)]
    summary = summarise_quality(generated, real_clips(data))
    summary.update(
        checkpoint=str(info.path),
        step=info.step,
        sampling_seconds_per_clip=out.seconds / max(1, len(cells)),
        sample_steps=int(steps or info.config.sample_steps),
        guidance_scale=float(info.config.guidance_scale if guidance_scale is None else guidance_scale),
        guidance_on=guidance_on or info.config.guidance_on,
    )
    return summary, generated


__all__ = [
    "LabelledClip",
    "area_range",
    "evaluate_checkpoint",
    "real_clips",
    "best_frame_iou",
    "consecutive_iou",
    "gei",
    "identity_match",
    "identity_match_real",
    "identity_view_iou",
    "person_like",
    "person_like_fraction",
    "soft_iou",
    "summarise_quality",
]
