"""Index SUSTech1K (OpenGait's pkl release) into MANIFEST rows.

Layout: ``root/<id, 4 digits>/<seq-no>-<covariate, e.g. 00-nm>/<view, e.g. 000>/`` with 16 pkls that
sort 00..15 (``00-000-LiDAR-PCDs.pkl`` … ``07-000-Camera-Sils_raw.pkl``, then ``08-sync-000-…`` …
``15-sync-…``, the 10 Hz LiDAR-synchronised copies). Only the 30 Hz camera modalities are referenced:
03 Camera-Pose (COCO-17, (T, 17, 3)), 04 Camera-Ratios-HW ((T, 2)), 05 Camera-RGB_raw (64×64 RGB) and
06 Camera-Sils_aligned (the 64×64 silhouettes DeepGaitV2 is evaluated on). All four must exist.

Roles follow OpenGait's ``evaluate_indoor_dataset``: a test sequence whose type contains ``00-nm`` is
gallery, every other test sequence a probe.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

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
from pipeline.io.video import VideoError, list_images

SUSTECH1K_MODALITIES: Mapping[str, PklSpec] = {
    "path_pose": PklSpec("03-", "Camera-Pose"),
    "path_ratios": PklSpec("04-", "Camera-Ratios-HW"),
    "path_rgb": PklSpec("05-", "Camera-RGB_raw"),
    "path_silhouette": PklSpec("06-", "Camera-Sils_aligned"),
}
CAMERA_FPS = 30.0  # the camera modalities (03..07) are 30 Hz; the LiDAR ones are 10 Hz
GALLERY_MARKER = "00-nm"


def sustech1k_attributes(condition: str) -> dict[str, object]:
    """``01-bg`` → {"covariate": "bg", "seq_no": "01"}; a type without ``NN-`` keeps its whole name."""
    number, sep, covariate = condition.partition("-")
    if sep and number.isdigit() and covariate:
        return {"covariate": covariate, "seq_no": number}
    return {"covariate": condition}


def _frames_folder(rgb_root: Path | None, relative: Path) -> str | None:
    if rgb_root is None:
        return None
    folder = rgb_root / relative
    try:
        return str(folder) if list_images(folder) else None
    except VideoError:  # no such folder: this sequence simply has no raw frames
        return None


def index_sustech1k(
    root: str | os.PathLike,
    *,
    dataset: str = "SUSTech1K",
    partition: str | os.PathLike | Mapping[str, Sequence[object]],
    rgb_root: str | os.PathLike | None = None,
    count_frames: bool = True,
) -> list[dict[str, object]]:
    """MANIFEST rows for a SUSTech1K pkl tree; ``rgb_root/<id>/<type>/<view>/`` image folders → path_frames.

    With ``count_frames`` the four referenced pkls are loaded (safely) and must have equal lengths.
    """
    root = require_dir(root)
    frames_root = None if rgb_root is None else require_dir(rgb_root, "SUSTech1K RGB frame root")
    rows: list[dict[str, object]] = []
    without_frames = 0
    for subject, split in subjects_in_partition(root, load_partition(partition)):
        for condition, view, folder in iter_sequences(root, subject):
            role = "train" if split == "train" else ("gallery" if GALLERY_MARKER in condition else "probe")
            row = base_row(dataset, subject, condition, view, split, role)
            paths, row["frame_count"], row["error"] = locate_modalities(
                folder, SUSTECH1K_MODALITIES, tuple(SUSTECH1K_MODALITIES), count_frames
            )
            row.update(paths)
            row["fps"] = CAMERA_FPS
            row["attributes"] = attributes_json(sustech1k_attributes(condition))
            row["path_frames"] = _frames_folder(frames_root, Path(subject, condition, view))
            without_frames += frames_root is not None and row["path_frames"] is None
            rows.append(row)
    if without_frames:
        warnings.warn(f"{rgb_root}: {without_frames} sequences have no RGB frame folder", stacklevel=2)
    return rows
