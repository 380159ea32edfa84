"""Index CCGR-MINI (OpenGait's ``organize_ccgr.py`` layout) into MANIFEST rows.

Layout: ``root/<id>/<type, e.g. NM1, ASBGCLBXCV1>/<view, e.g. 90_3.avi, over.avi>/`` with pkls named
``000-…ratios_HW…`` ((T, 2) H, W), ``001-…rgb_f…`` ((T, 3, 128, 128) uint8), ``002-…sil…``,
``003-…par…`` (parsing; not a MANIFEST column) and ``004-…pose…``. The view keeps its ``.avi``
suffix because the partition's ``GALLERY_SET`` keys (``f"{id}-{type}-{view}"``) include it.

Assumptions: only the silhouette pkl is required (``organize_ccgr.py`` skips RGB/ratios when a video
is missing); the pose pkl holds rows of 5 leading extra columns followed by 17×3 COCO keypoints
(x, y, score), as the CCGR repository's loader reads it (``pose[:, 5:].reshape(-1, 17, 3)``), see
:func:`load_ccgr_pose`; all referenced pkls of one sequence have the same frame count.

Roles follow ``evaluate_CCGR_MINI``: a test sequence whose key is in ``GALLERY_SET`` is gallery, every
other test sequence a probe.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.datasets.opengait import (
    PklSpec,
    attributes_json,
    base_row,
    iter_sequences,
    load_partition,
    locate_modalities,
    require_dir,
    subjects_in_partition,
)
from pipeline.io.safe_pickle import PickleLoadError, load_array
from pipeline.io.video import VIDEO_SUFFIXES

CCGR_MODALITIES: Mapping[str, PklSpec] = {
    "path_ratios": PklSpec("000-", "ratios_HW"),
    "path_rgb": PklSpec("001-", "rgb_f"),
    "path_silhouette": PklSpec("002-", "sil"),
    "path_pose": PklSpec("004-", "pose"),
}
REQUIRED = ("path_silhouette",)
POSE_EXTRA_COLUMNS = 5  # leading per-frame columns before the 17 × (x, y, score) keypoints
COCO17 = 17


def load_ccgr_pose(path: str | os.PathLike) -> np.ndarray:
    """A CCGR-MINI pose pkl as COCO-17 keypoints ``(T, 17, 3)`` (x, y, score), extra columns dropped."""
    rows = load_array(path)
    expected = POSE_EXTRA_COLUMNS + COCO17 * 3
    if rows.ndim != 2 or rows.shape[1] != expected:
        raise PickleLoadError(f"{path}: CCGR pose rows should be (T, {expected}), found {rows.shape}")
    return rows[:, POSE_EXTRA_COLUMNS:].reshape(-1, COCO17, 3)


def gallery_key(subject: str, condition: str, view: str) -> str:
    return f"{subject}-{condition}-{view}"


def ccgr_attributes(condition: str) -> dict[str, object]:
    """``ASBGCLBXCV1`` → {"covariates": ["AS", "BG", "CL", "BX", "CV"], "take": "1"}.

    CCGR type names are two-letter covariate codes followed by a take number; names that do not fit
    that pattern keep only the raw string.
    """
    letters = condition.rstrip("0123456789")
    take = condition[len(letters) :]
    if letters and len(letters) % 2 == 0 and letters.isalpha() and take:
        return {"covariates": [letters[i : i + 2] for i in range(0, len(letters), 2)], "take": take}
    return {"type": condition}


def _video_for(video_root: Path | None, relative: Path) -> str | None:
    """The raw video: ``video_root/<id>/<type>/<view>`` is the file itself or a folder holding it."""
    if video_root is None:
        return None
    target = video_root / relative
    if target.is_file():
        return str(target)
    if target.is_dir():
        videos = sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        return str(videos[0]) if videos else None
    return None


def index_ccgr_mini(
    root: str | os.PathLike,
    *,
    dataset: str = "CCGR-MINI",
    partition: str | os.PathLike | Mapping[str, Sequence[object]],
    video_root: str | os.PathLike | None = None,
    count_frames: bool = True,
) -> list[dict[str, object]]:
    """MANIFEST rows for a CCGR-MINI pkl tree; optional raw videos (same relative layout) → path_video."""
    root = require_dir(root)
    videos = None if video_root is None else require_dir(video_root, "CCGR-MINI video root")
    parts = load_partition(partition)
    gallery = frozenset(parts.extra.get("GALLERY_SET", ()))
    if not gallery:
        warnings.warn(
            f"{root}: partition has no GALLERY_SET; every test sequence becomes a probe", stacklevel=2
        )
    rows: list[dict[str, object]] = []
    seen_gallery: set[str] = set()
    test_subjects: set[str] = set()
    for subject, split in subjects_in_partition(root, parts):
        test_subjects.update({subject} if split == "test" else ())
        for condition, view, folder in iter_sequences(root, subject):
            key = gallery_key(subject, condition, view)
            role = "train" if split == "train" else ("gallery" if key in gallery else "probe")
            seen_gallery.update({key} & gallery)
            row = base_row(dataset, subject, condition, view, split, role)
            paths, row["frame_count"], row["error"] = locate_modalities(
                folder, CCGR_MODALITIES, REQUIRED, count_frames
            )
            row.update(paths)
            row["path_video"] = _video_for(videos, Path(subject, condition, view))
            row["attributes"] = attributes_json(ccgr_attributes(condition))
            rows.append(row)
    # only subjects that are on disk count: a partial download already got the "no folder" warning
    unmatched = sorted(k for k in gallery - seen_gallery if k.split("-", 1)[0] in test_subjects)
    if unmatched:
        warnings.warn(
            f"{root}: {len(unmatched)} GALLERY_SET entries of indexed subjects have no sequence (e.g. {unmatched[:3]})",
            stacklevel=2,
        )
    return rows
