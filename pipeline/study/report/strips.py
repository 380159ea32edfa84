"""Frame strips: real driving frames above generated ones, for the best and worst case of a metric
(:class:`StripChooser` picks them from the tables and the generation manifests)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.contracts import MANIFEST, read_frame
from pipeline.evaluation.metrics import DIAGNOSTICS
from pipeline.study.report.common import (
    FRAMES_PER_STRIP,
    STRIP_HEIGHT,
    Tables,
    decimals,
    fmt,
    label,
    model_order,
    unique_values,
)
from pipeline.study.report.figures import figure

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Frame strips


@dataclass(frozen=True)
class Strip:
    """A few frames of a real driving video (top) above the generated video made from it (bottom)."""

    title: str
    real: str | os.PathLike
    generated: str | os.PathLike


def sample_frames(path: str | os.PathLike, count: int) -> np.ndarray:
    """``count`` frames evenly spread over a video, a frame folder or an RGB pkl: [count, H, W, 3] uint8."""
    from pipeline.io.video import list_images, probe_video, read_frames, read_image

    path = Path(path)

    def spread(n: int) -> list[int]:
        if n < 1:
            raise ValueError(f"{path}: no frames")
        return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(count, n))})

    if path.is_dir():
        images = list_images(path)
        return np.stack([read_image(images[i]) for i in spread(len(images))])
    if path.suffix == ".pkl":
        from pipeline.io.safe_pickle import load_array

        frames = load_array(path)
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.transpose(0, 2, 3, 1)  # OpenGait stores (T, 3, H, W)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{path}: not an RGB frame array (shape {frames.shape})")
        return np.ascontiguousarray(frames[spread(len(frames))].astype(np.uint8))
    return read_frames(path, spread(probe_video(path).frame_count))


def _resize_height(frame: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    width = width or max(1, round(w * height / h))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def strip_image(strip: Strip, count: int = FRAMES_PER_STRIP, height: int = STRIP_HEIGHT) -> np.ndarray:
    """[2·height + 4, W, 3] uint8: sampled real frames on top, generated frames (resized to the real
    frames' size, same relative time positions) below, separated by a white band."""
    real, generated = sample_frames(strip.real, count), sample_frames(strip.generated, count)
    k = min(len(real), len(generated))  # a video shorter than ``count`` gives fewer frames

    def at_same_times(frames: np.ndarray) -> np.ndarray:
        return frames[np.linspace(0, len(frames) - 1, k).round().astype(int)]

    top = [_resize_height(f, height) for f in at_same_times(real)]
    bottom = [
        _resize_height(f, height, t.shape[1]) for f, t in zip(at_same_times(generated), top, strict=True)
    ]
    gap = np.full((height, 2, 3), 255, np.uint8)

    def row(frames: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([x for f in frames for x in (f, gap)][:-1], axis=1)

    upper, lower = row(top), row(bottom)
    return np.concatenate([upper, np.full((4, upper.shape[1], 3), 255, np.uint8), lower], axis=0)


def strips_figure(images: Sequence[tuple[str, np.ndarray]]) -> Any:
    # each row is ~1.9 in of image under a title; the width follows the widest strip's aspect ratio
    aspect = max(img.shape[1] / img.shape[0] for _, img in images)
    fig = figure(min(14.0, 1.9 * aspect + 1.0), 2.3 * len(images))
    axes = fig.subplots(len(images), 1, squeeze=False).ravel()
    for ax, (title, img) in zip(axes, images, strict=True):
        ax.imshow(img)
        half = (img.shape[0] - 4) / 2
        ax.set_yticks([half / 2, half + 4 + half / 2], ["real", "generated"], fontsize=8)
        ax.set_xticks([])
        ax.set_title(title, fontsize=8, loc="left")
    return fig


LOWER_IS_BETTER = {"lpips", "driving_rank", *DIAGNOSTICS}


def sorted_groups(df: pl.DataFrame, by: Sequence[str]) -> list[tuple[tuple, pl.DataFrame]]:
    """``df`` split by ``by`` in study order (datasets alphabetical, models in MODEL_ORDER)."""
    if df.is_empty():
        return []
    order = {m: i for i, m in enumerate(model_order(df))}
    groups = df.group_by(list(by), maintain_order=True)
    return sorted(groups, key=lambda kv: (kv[0][0], order.get(kv[0][1], 0) if len(kv[0]) > 1 else 0))


def media_path(row: Mapping[str, Any]) -> str | None:
    return row["path_video"] or row["path_frames"] or row["path_rgb"]


def _generated_videos(manifests: Iterable[str | os.PathLike]) -> dict[tuple, tuple[str | None, str | None]]:
    """(dataset, model, job id) → (driving sequence, generated media) from generation manifests."""
    index = {}
    for manifest in manifests:
        for row in read_frame(manifest, MANIFEST).filter(pl.col("error").is_null()).iter_rows(named=True):
            attributes = json.loads(row["attributes"] or "{}")
            key = (row["dataset"], attributes.get("model"), row["sequence_id"])
            index[key] = (attributes.get("driving_sequence"), media_path(row))
    return index


def real_video_paths(manifests: Iterable[str | os.PathLike]) -> dict[tuple[str, str], str | None]:
    """(dataset, sequence id) → media of the real sequences."""
    return {
        (row["dataset"], row["sequence_id"]): media_path(row)
        for manifest in manifests
        for row in read_frame(manifest, MANIFEST).iter_rows(named=True)
    }


@dataclass
class StripChooser:
    """Picks the best and worst generated video by ``metric`` (per model or overall) and finds the
    generated video and its real driving video through the manifests.

    ``metric``: a column of the ``videos`` table (ssim, psnr, lpips or a diagnostic) or, with
    ``recogniser`` (default: the first one), ``driving_rank``, ``RR`` or ``AP`` of the ``probes`` table.
    Generated manifests (``manifest`` contract, one per generation shard) give each job's video and,
    in ``attributes``, its model and driving sequence; real manifests give the driving sequence's
    video. Relative paths are resolved against ``root`` (default: the working directory).
    """

    generated_manifests: Sequence[str | os.PathLike]
    real_manifests: Sequence[str | os.PathLike]
    metric: str = "ssim"
    recogniser: str | None = None
    per_model: bool = True
    root: str | os.PathLike | None = None
    notes: list[str] = field(default_factory=list)

    def _candidates(self, tables: Tables) -> pl.DataFrame:
        if self.metric in ("driving_rank", "RR", "AP"):
            probes = tables["probes"].filter(pl.col("error").is_null())
            recogniser = self.recogniser or next(iter(unique_values(probes, "recogniser")), None)
            return probes.filter(pl.col("recogniser") == recogniser).drop_nulls(self.metric)
        videos = tables["videos"]
        if self.metric not in videos.columns:
            raise ValueError(
                f"strip metric '{self.metric}' is neither a videos column nor driving_rank/RR/AP"
            )
        return videos.filter(pl.col("visual_error").is_null()).drop_nulls(self.metric)

    def _picks(self, candidates: pl.DataFrame) -> list[tuple[str, dict[str, Any]]]:
        """("best" | "worst", row) per dataset and model (or per dataset when not ``per_model``)."""
        higher = self.metric not in LOWER_IS_BETTER
        by = ["dataset", "model"] if self.per_model else ["dataset"]
        picks = []
        for _, group in sorted_groups(candidates, by):
            ranked = group.sort([self.metric, "job_id"], descending=[higher, False])
            picks.append(("best", ranked.row(0, named=True)))
            if ranked.height > 1:
                picks.append(("worst", ranked.row(-1, named=True)))
        return picks

    def _resolve(self, path: str | None) -> Path:
        p = Path(path or "")
        return p if p.is_absolute() else Path(self.root or Path.cwd()) / p

    def choose(self, tables: Tables) -> list[Strip]:
        """Strips of the best and worst videos among those whose generated and real media are known."""
        generated, real = _generated_videos(self.generated_manifests), real_video_paths(self.real_manifests)
        playable = {
            key for key, (driving, media) in generated.items() if media and real.get((key[0], driving))
        }
        candidates = self._candidates(tables)
        keys = list(candidates.select("dataset", "model", "job_id").iter_rows())
        found = candidates.filter(pl.Series([k in playable for k in keys], dtype=pl.Boolean))
        if found.height < candidates.height:
            self.notes.append(
                f"{candidates.height - found.height} of {candidates.height} video(s) with a {self.metric} value "
                "have no generated or real video in the manifests: not eligible for a strip"
            )
        strips = []
        for kind, row in self._picks(found):
            driving, media = generated[(row["dataset"], row["model"], row["job_id"])]
            value = fmt(row[self.metric], decimals(self.metric))
            title = (
                f"{row['model']} · {kind} {label(self.metric)} = {value} · {row['dataset']} {row['job_id']}"
            )
            strips.append(Strip(title, self._resolve(real[(row["dataset"], driving)]), self._resolve(media)))
        return strips
