"""Frame alignment of a generated video with its driving video: what the visual metrics and the
behavioural diagnostics both compare on.

:func:`align_frames` pairs frame indices (the longer video resampled to the shorter's count by nearest
time index); :func:`match_size` resizes generated frames and masks to the real frame size, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameAlignment:
    """Pairs of frame indices compared: ``real_index`` [n], ``generated_index`` [n]; ``note`` if resampled."""

    real_index: np.ndarray
    generated_index: np.ndarray
    note: str | None


def _nearest_in_time(n_long: int, n_short: int) -> np.ndarray:
    """Index into the longer video for each frame of the shorter one (same duration, centre of each slot)."""
    return np.minimum(((np.arange(n_short) + 0.5) * n_long / n_short).astype(np.int64), n_long - 1)


def align_frames(n_real: int, n_generated: int) -> FrameAlignment:
    """Align two videos of the same clip by index; the longer one is resampled to the shorter's count.

    Both are assumed to span the same time; frame ``i`` of the shorter video is compared with the frame
    of the longer one nearest to the centre of its time slot, so no frame is ever duplicated.
    """
    if n_real < 1 or n_generated < 1:
        raise ValueError(f"cannot align videos with no frames (real {n_real}, generated {n_generated})")
    if n_real == n_generated:
        index = np.arange(n_real)
        return FrameAlignment(index, index.copy(), None)
    if n_real > n_generated:
        real_index, gen_index = _nearest_in_time(n_real, n_generated), np.arange(n_generated)
        which = "real"
    else:
        real_index, gen_index = np.arange(n_real), _nearest_in_time(n_generated, n_real)
        which = "generated"
    note = (
        f"frame counts differ (real {n_real}, generated {n_generated}): the {which} video was resampled "
        f"to {min(n_real, n_generated)} frames by nearest time index"
    )
    return FrameAlignment(real_index, gen_index, note)


def match_size(
    frames: np.ndarray, masks: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Resize frames [T, h, w, 3] (area when shrinking, bilinear otherwise) and masks [T, h, w] (nearest)
    to ``size`` = (H, W); returns them and a note, or the inputs and None when already that size."""
    height, width = size
    if frames.shape[1:3] == (height, width):
        return frames, masks, None
    h, w = frames.shape[1:3]
    interp = cv2.INTER_AREA if (h >= height and w >= width) else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])
    out_masks = None
    if masks is not None:
        out_masks = np.stack(
            [cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) for m in masks]
        ).astype(bool)
    note = f"generated frames {h}x{w} resized to the real {height}x{width}"
    if abs(h / w - height / width) > 0.01 * height / width:
        note += f" (aspect ratio changed from {w / h:.3f} to {width / height:.3f})"
    return out, out_masks, note
