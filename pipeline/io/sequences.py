"""Load what a manifest row points at: RGB frames from a video, a frame folder or an RGB pkl, and the
world's ground-truth frame stores (cached, because a shard's sequences share one store)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.contracts import FrameStore, read_frame_store


class MissingModality(LookupError):
    """The manifest row has no path for the modality a stage needs."""


def generated_output(row: dict) -> str:
    """What a manifest row's video shows: ``silhouette`` when its generator said so in
    ``attributes.notes.output`` (GaitCrafter), else ``rgb`` (real videos and RGB generators)."""
    import json

    text = row.get("attributes")
    try:
        attributes = json.loads(text) if isinstance(text, str) and text else dict(text or {})
    except (json.JSONDecodeError, TypeError, ValueError):
        return "rgb"
    notes = attributes.get("notes") if isinstance(attributes, dict) else None
    return "silhouette" if isinstance(notes, dict) and notes.get("output") == "silhouette" else "rgb"


def load_rgb(row: dict) -> np.ndarray:
    """RGB frames [T, H, W, 3] uint8 of a manifest row (video, frame folder or RGB pkl, in that order)."""
    if row.get("path_video"):
        from pipeline.io.video import read_frames

        return read_frames(row["path_video"])
    if row.get("path_frames"):
        from pipeline.io.video import read_image_folder

        return read_image_folder(row["path_frames"])
    if row.get("path_rgb"):
        from pipeline.io.safe_pickle import load_array

        frames = load_array(row["path_rgb"])
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.transpose(0, 2, 3, 1)  # OpenGait stores (T, 3, H, W)
        return np.ascontiguousarray(frames.astype(np.uint8))
    raise MissingModality(f"{row['sequence_id']}: no RGB source (path_video, path_frames or path_rgb)")


@lru_cache(maxsize=16)
def _store_field(path: str, field: str) -> FrameStore:
    # One field at a time: a shard's dense part maps are ~300 MB once decompressed, and most readers
    # (masks, keypoints, the rotation flag) never need them.
    # A field the store lacks (e.g. ``seq:rotate`` in a shard without sideways sequences) is read as
    # absent, so FrameStore.get raises KeyError for it as for a whole-store read.
    with np.load(path, allow_pickle=False) as data:
        present = field in data.files
    return read_frame_store(path, [field] if present else [])


def groundtruth(row: dict, field: str) -> np.ndarray:
    """One ground-truth field of a world sequence (from its shard's frame store)."""
    path = row.get("path_groundtruth")
    if not path:
        raise MissingModality(f"{row['sequence_id']}: no ground truth (only the synthetic world has it)")
    return _store_field(str(Path(path)), field).get(row["sequence_id"], field)


def frame_size(row: dict) -> tuple[int, int]:
    """(height, width) of a row's frames from the manifest."""
    if row.get("height") is None or row.get("width") is None:
        raise MissingModality(f"{row['sequence_id']}: the manifest has no frame size")
    return int(row["height"]), int(row["width"])
