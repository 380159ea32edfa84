"""Person-centred RGB crops for BigGait, following OpenGait's RGB pretreatment.

OpenGait's ``datasets/pretreatment_rgb.py`` takes frames that are already cropped to the person,
resizes each to the target height keeping its aspect ratio (width ``int(w * H / h)``, OpenCV's default
bilinear), then centres it in the target width: zero padding when it is narrower, a centred crop when it
is wider (offset ``abs((W - w') // 2)``, so an odd excess loses one more column on the left). It stores
the frames channels-first next to a ``ratios`` pkl with each crop's w/h, which BigGait uses to undo the
padding of square inputs. :func:`pad_resize` reproduces that per image; :func:`person_crops` first cuts
the person box out of full frames (from masks or boxes), so its output for ``size=(256, 128)`` is
exactly what OpenGait's script stores. For ``size=(448, 224)`` (BigGait's network input) it crops
straight to the network size instead of going through 256×128 and the model's own bilinear resize.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.perception.silhouettes import export_opengait_pkl

log = logging.getLogger(__name__)

BIGGAIT_SIZE = (448, 224)  # (H, W) of BigGait's DINOv2 input
OPENGAIT_RGB_SIZE = (256, 128)  # (H, W) stored by pretreatment_rgb.py
FITS = ("height", "contain")


class PersonCrops(NamedTuple):
    """Per-frame crops; frames without a person are black, ``valid`` False and ratio NaN."""

    images: np.ndarray  # uint8 [T, H, W, 3]
    ratios: np.ndarray  # float64 [T], w/h of the region that was resized (the person box)
    valid: np.ndarray  # bool [T]


def _centre_width(image: np.ndarray, width: int) -> np.ndarray:
    """Zero-pad or crop the columns of ``image`` to ``width`` around its centre (upstream offsets)."""
    offset = (width - image.shape[1]) // 2
    if offset < 0:
        start = abs(offset)  # floor division of a negative excess: the left side loses the extra column
        return np.ascontiguousarray(image[:, start : start + width])
    out = np.zeros((image.shape[0], width, *image.shape[2:]), dtype=image.dtype)
    out[:, offset : offset + image.shape[1]] = image
    return out


def _contain(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """Scale to fit inside ``size`` entirely and zero-pad both axes around the centre."""
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h = max(1, min(height, round(image.shape[0] * scale)))
    new_w = max(1, min(width, round(image.shape[1] * scale)))
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def pad_resize(
    image: np.ndarray,
    size: tuple[int, int] = OPENGAIT_RGB_SIZE,
    *,
    fit: str = "height",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resize one person image [h, w, 3] to ``size`` = (H, W) without changing its aspect ratio.

    ``fit="height"`` is OpenGait's rule (height to H, width padded or centre-cropped to W);
    ``fit="contain"`` never crops (the whole image fits, padded on both axes).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected a non-empty image [h, w, C], got shape {image.shape}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if fit == "contain":
        return _contain(image, size, interpolation)
    target_h, target_w = size
    h, w = image.shape[:2]
    # Same expression order as upstream (w * H / h, then int); at least 1 column so cv2 cannot fail.
    new_w = max(1, int(w * target_h / h))
    resized = cv2.resize(image, (new_w, target_h), interpolation=interpolation)
    if resized.ndim == 2:  # cv2 drops a singleton channel axis
        resized = resized[..., None]
    return _centre_width(resized, target_w)


def pad_resize_sequence(
    images: Sequence[np.ndarray], size: tuple[int, int] = OPENGAIT_RGB_SIZE, *, fit: str = "height"
) -> tuple[np.ndarray, np.ndarray]:
    """``pretreatment_rgb.py`` on already-cropped images: (uint8 [T, H, W, 3], ratios w/h [T])."""
    if not len(images):
        return np.zeros((0, *size, 3), dtype=np.uint8), np.zeros((0,), dtype=np.float64)
    ratios = np.array([img.shape[1] / img.shape[0] for img in images], dtype=np.float64)
    return np.stack([pad_resize(img, size, fit=fit) for img in images]), ratios


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes [T, 4] = (x0, y0, x1, y1), ends exclusive, of each mask; NaN rows for empty masks."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks [T, H, W], got shape {masks.shape}")
    boxes = np.full((len(masks), 4), np.nan)
    for t, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[t] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _crop_box(frame: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray | None:
    """The box (grown by ``margin`` × its height on every side) cut from ``frame``, zero outside it."""
    if not np.isfinite(box).all():
        return None
    grow = margin * (box[3] - box[1])
    x0, y0 = int(np.floor(box[0] - grow)), int(np.floor(box[1] - grow))
    x1, y1 = int(np.ceil(box[2] + grow)), int(np.ceil(box[3] + grow))
    if x1 <= x0 or y1 <= y0:
        return None
    out = np.zeros((y1 - y0, x1 - x0, frame.shape[2]), dtype=frame.dtype)
    # Only the part inside the frame is copied; a box over the border keeps the person centred.
    fy0, fy1 = max(y0, 0), min(y1, frame.shape[0])
    fx0, fx1 = max(x0, 0), min(x1, frame.shape[1])
    if fy1 <= fy0 or fx1 <= fx0:
        return None
    out[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = frame[fy0:fy1, fx0:fx1]
    return out


def person_crops(
    frames: np.ndarray,
    people: np.ndarray,
    size: tuple[int, int] = BIGGAIT_SIZE,
    *,
    margin: float = 0.0,
    fit: str = "height",
) -> PersonCrops:
    """Person-centred, aspect-preserving RGB crops of ``frames`` [T, H, W, 3].

    ``people`` is either masks [T, H, W] (the person box is the mask's tight box) or boxes [T, 4] =
    (x0, y0, x1, y1) in pixels, ends exclusive, NaN where no person was found. A frame with no person
    (empty mask, NaN or degenerate box) gives a black image with ``valid`` False instead of an error.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {frames.shape}")
    people = np.asarray(people)
    if people.ndim == 3:
        if people.shape != frames.shape[:3]:
            raise ValueError(f"masks {people.shape} do not match frames {frames.shape[:3]}")
        boxes = boxes_from_masks(people)
    elif people.shape == (len(frames), 4):
        boxes = people.astype(np.float64)
    else:
        raise ValueError(f"expected masks [T, H, W] or boxes [T, 4], got shape {people.shape}")
    images = np.zeros((len(frames), *size, 3), dtype=np.uint8)
    ratios = np.full(len(frames), np.nan)
    valid = np.zeros(len(frames), dtype=bool)
    for t, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        crop = _crop_box(frame, box, margin)
        if crop is None:
            continue
        images[t] = pad_resize(crop, size, fit=fit)
        ratios[t] = crop.shape[1] / crop.shape[0]
        valid[t] = True
    if not valid.all():
        log.warning("no person in %d of %d frames; their crops are black", int((~valid).sum()), len(frames))
    return PersonCrops(images=images, ratios=ratios, valid=valid)


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] → [T, 3, H, W], the layout OpenGait's RGB pkls use."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))


def export_rgb_pkls(
    images: np.ndarray,
    ratios: np.ndarray,
    root: str | os.PathLike,
    subject: str,
    condition: str,
    view: str,
) -> tuple[Path, Path]:
    """Write ``<view>-aligned-rgbs.pkl`` (uint8 [T, 3, H, W]) and ``<view>-ratios.pkl`` like upstream.

    The names sort RGB before ratios, which is the order OpenGait's ``data_in_use`` then sees.
    """
    images = np.asarray(images, dtype=np.uint8)
    ratios = np.asarray(ratios, dtype=np.float64)
    if len(images) != len(ratios):
        raise ValueError(f"{len(images)} images but {len(ratios)} ratios")
    if not np.isfinite(ratios).all():
        raise ValueError("ratios contain NaN (frames without a person): drop them before exporting")
    rgb = export_opengait_pkl(
        to_channels_first(images), root, subject, condition, view, filename=f"{view}-aligned-rgbs.pkl"
    )
    ratio = export_opengait_pkl(ratios, root, subject, condition, view, filename=f"{view}-ratios.pkl")
    return rgb, ratio


__all__ = [
    "BIGGAIT_SIZE",
    "OPENGAIT_RGB_SIZE",
    "PersonCrops",
    "boxes_from_masks",
    "export_rgb_pkls",
    "pad_resize",
    "pad_resize_sequence",
    "person_crops",
    "to_channels_first",
]


# ---------------------------------------------------------------------------------------------
# The "crops" stage


SILHOUETTE_SKIP = "no RGB to crop: the generator outputs silhouettes (BigGait needs RGB crops)"
SHIPPED_NO_RGB_SKIP = "no RGB to crop: the dataset ships silhouettes only (BigGait needs RGB crops)"
SHIPPED_MASKS_SKIP = (
    "no person boxes in frame coordinates: the masks are the dataset's aligned silhouettes (set"
    " datasets.<name>.mask_backend to mediapipe to crop the RGB for BigGait)"
)


def run_crops_stage(
    rows: list[dict],
    *,
    masks_store: str,
    masks_status: str,
    store: str,
    status: str,
    min_valid_frames: int,
    size: tuple[int, int] = BIGGAIT_SIZE,
    shipped: bool = False,
) -> list[dict]:
    """Person-centred RGB crops (``size`` = H, W) and w/h ratios for BigGait, boxed by the stage's masks.

    A generated video whose generator outputs silhouettes (``attributes.notes.output``) has no RGB to
    crop: it is skipped with that reason instead of handing BigGait a white blob. With ``shipped`` (mask
    backend ``dataset``: aligned silhouettes, not frame-sized masks) every row is skipped with the reason."""
    from pipeline.contracts import read_frame_store
    from pipeline.io.sequences import generated_output, load_rgb
    from pipeline.perception.orientation import stored_rotation, to_upright
    from pipeline.perception.segmentation import mask_width, masks_from_store
    from pipeline.runner import SkipSequence, StageOutput, run_shard, upstream_errors

    masks = read_frame_store(masks_store)
    skip = upstream_errors([masks_status])
    for row in rows:
        if generated_output(row) == "silhouette":
            skip.setdefault(row["sequence_id"], SILHOUETTE_SKIP)
        elif shipped and not any(row.get(c) for c in ("path_video", "path_frames", "path_rgb")):
            skip.setdefault(row["sequence_id"], SHIPPED_NO_RGB_SKIP)
        elif shipped:
            skip.setdefault(row["sequence_id"], SHIPPED_MASKS_SKIP)

    def process(row: dict) -> StageOutput:
        sid = row["sequence_id"]
        if sid not in masks:
            raise SkipSequence("masks stage stored nothing for this sequence")
        people = masks_from_store(masks, sid, mask_width(masks, sid, row)).masks
        frames = load_rgb(row)
        if len(frames) != len(people):
            raise ValueError(f"{len(frames)} video frames but {len(people)} masks")
        rotation = stored_rotation(masks, sid)
        if rotation:  # frames that decode sideways: crops of the upright person
            frames, people = to_upright(frames, rotation), to_upright(people, rotation)
        crops = person_crops(frames, people, size)
        valid = crops.valid & masks.get(sid, "valid")
        return StageOutput({"rgb": crops.images, "ratio": crops.ratios.astype(np.float32)}, valid)

    return run_shard(
        stage="crops",
        backend="mask-box",
        rows=rows,
        process=process,
        store_path=store,
        status_path=status,
        min_valid_frames=min_valid_frames,
        skip=skip,
        compress=False,  # photographic crops barely compress with zlib and would cost minutes per shard
    )
