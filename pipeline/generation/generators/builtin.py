"""Built-in bounds of the study: ``oracle`` (the driving video itself) and ``static`` (no motion at all).

Any animator's gait fidelity should lie between the two: the oracle hands the gait recogniser the very
frames of the driving person (the best a generator could do), the static generator hands it one frame
of the reference person repeated (no gait at all). The helpers here (input checks, letterboxing) are
shared by the other built-in generators.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.generation.generators.base import (
    Driving,
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    Reference,
    register_generator,
)

# --------------------------------------------------------------------------------------------------
# input checks shared by the built-in generators


def check_reference(reference: Reference) -> None:
    """Raise :class:`GenerationError` naming the field when the reference arrays are malformed."""
    image = reference.image
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise GenerationError(
            f"Reference.image must be an [H, W, 3] uint8 RGB array, got {shape} {getattr(image, 'dtype', type(image))}"
        )
    if min(image.shape[:2]) < 2:
        raise GenerationError(f"Reference.image is too small: {image.shape}")
    size = image.shape[:2]
    if reference.mask is not None and np.shape(reference.mask) != size:
        raise GenerationError(f"Reference.mask has shape {np.shape(reference.mask)}, the image is {size}")
    if reference.keypoints is not None and np.shape(reference.keypoints) != (17, 3):
        raise GenerationError(
            f"Reference.keypoints must be [17, 3] COCO-17, got {np.shape(reference.keypoints)}"
        )
    if reference.parts is not None and np.shape(reference.parts) != (*size, 3):
        raise GenerationError(f"Reference.parts has shape {np.shape(reference.parts)}, expected {(*size, 3)}")


def check_driving(driving: Driving) -> None:
    """Raise :class:`GenerationError` naming the field when the driving arrays disagree with each other."""
    kps = np.asarray(driving.keypoints)
    if kps.ndim != 3 or kps.shape[1:] != (17, 3) or len(kps) < 1:
        raise GenerationError(f"Driving.keypoints must be [T, 17, 3] with T >= 1, got {kps.shape}")
    if int(driving.height) < 2 or int(driving.width) < 2:
        raise GenerationError(f"Driving.height/width must be >= 2, got {driving.height}x{driving.width}")
    if not np.isfinite(driving.fps) or driving.fps <= 0:
        raise GenerationError(f"Driving.fps must be a positive number, got {driving.fps}")
    n, h, w = len(kps), int(driving.height), int(driving.width)
    expected = {"valid": (n,), "parts": (n, h, w, 3), "frames": (n, h, w, 3), "masks": (n, h, w)}
    for name, shape in expected.items():
        value = getattr(driving, name)
        if value is not None and np.shape(value) != shape:
            raise GenerationError(
                f"Driving.{name} has shape {np.shape(value)}, expected {shape} (T, height, width)"
            )


# --------------------------------------------------------------------------------------------------
# placing a reference frame on the driving canvas

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def letterbox(
    image: np.ndarray, height: int, width: int, *, border: str = "constant"
) -> tuple[np.ndarray, dict | None]:
    """``image`` [h, w, C] scaled to fit ``height`` x ``width`` with its aspect kept, the rest padded.

    Returns the placed image and what was done (None when the sizes already agree), so callers can
    record it: ``scale``, ``pad`` (top, bottom, left, right) and the source size. ``border`` is
    'constant' (black bars) or 'replicate' (edge pixels repeated, for backgrounds).
    """
    if border not in _BORDERS:
        raise ValueError(f"letterbox: border must be one of {sorted(_BORDERS)}, got {border!r}")
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image, None
    scale = min(height / h, width / w)
    nh, nw = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    # INTER_AREA averages when shrinking (no aliasing); it degenerates to bilinear-like when enlarging.
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (height - nh) // 2, (width - nw) // 2
    pad = (top, height - nh - top, left, width - nw - left)
    placed = cv2.copyMakeBorder(resized, *pad, _BORDERS[border], value=0)
    if placed.ndim < image.ndim:  # cv2 drops a trailing channel axis of size 1
        placed = placed[..., None]
    return placed, {
        "scale": float(scale),
        "pad": [int(p) for p in pad],
        "source_size": [int(h), int(w)],
        "border": border,
    }


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"generator '{name}' takes no options, got {sorted(options)}")


# --------------------------------------------------------------------------------------------------
# the bounds


@register_generator("oracle")
class OracleGenerator:
    """The driving video itself: the upper bound of every gait-fidelity measure."""

    name = "oracle"
    needs: tuple[str, ...] = ("frames",)

    def __init__(self, **options: Any) -> None:
        _no_options(self.name, options)

    def load(self) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        driving = job.driving
        check_driving(driving)
        if driving.frames is None:
            raise GenerationError("oracle needs the driving RGB frames (Driving.frames is None)")
        frames = np.asarray(driving.frames)
        if frames.dtype != np.uint8:
            raise GenerationError(f"Driving.frames must be uint8, got {frames.dtype}")
        return GeneratedVideo(
            frames=frames.copy(), fps=float(driving.fps), notes={"source": "driving frames"}
        )


@register_generator("static")
class StaticGenerator:
    """The reference frame repeated for every driving frame: the no-motion lower bound.

    Placed as the animators place their reference: the whole reference frame becomes the output
    frame. The upstream animators force-resize it to their canvas; this one keeps the aspect ratio
    (letterbox with black bars) so the person is not stretched, and records it in the notes.
    """

    name = "static"
    needs: tuple[str, ...] = ()

    def __init__(self, **options: Any) -> None:
        _no_options(self.name, options)

    def load(self) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        check_reference(job.reference)
        check_driving(job.driving)
        driving = job.driving
        placed, how = letterbox(job.reference.image, int(driving.height), int(driving.width))
        frames = np.repeat(placed[None], driving.frame_count, axis=0)
        return GeneratedVideo(frames=frames, fps=float(driving.fps), notes={"letterbox": how})
