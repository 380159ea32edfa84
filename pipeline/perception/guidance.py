"""Guidance renderers: turn any keypoint source into the conditioning input each animator expects.

Real videos (keypoints from a 2-D/3-D estimator) and generated or synthetic ones (keypoints from the
world's ground truth) go through the same functions, so a difference between two guidance videos is a
difference in motion, never in drawing code.

What each upstream consumes, and how this module reproduces it (facts from the upstream sources; see
``/work/shared/reference/animators.md``):

* **Moore-AnimateAnyone** (``*_kps.mp4``, ``src/dwpose``): black canvas; 18 OpenPose joints, the neck
  being the shoulder midpoint; the first 17 limbs of OpenPose's ``limbSeq`` filled as ellipses
  (``cv2.ellipse2Poly``, half-width ``stickwidth`` = 4) in the 18-colour palette; then the *whole* canvas
  is multiplied by 0.6 and truncated to uint8; then joints as radius-4 discs in the same palette; then
  hands (20 edges, HSV hue = edge/20, thickness 2, radius-4 blue keypoints) and 68 face landmarks as
  white radius-3 dots. No foot points. The palette is listed as RGB and saved through PIL, so the
  displayed colour of limb 0 is red. The canvas is the DWPose detect size (short side 512, both sides
  rounded to a multiple of 64): :func:`dwpose_canvas_size`.
* **UniAnimate** (``run_align_pose.py``, ``dwpose/util.py draw_body_and_foot``): the same body on a fixed
  768x512 (HxW) canvas plus two foot points (the midpoint of each foot's big and small toe) joined to
  the ankles, hands, and no face (``dwpose_woface``). The canvas is written with ``cv2.imwrite``, which
  takes channel 0 as blue, and read back by PIL as RGB: the colours the model sees are the palette with
  R and B swapped. :func:`render_openpose_frames` returns the frames as they decode, and
  :func:`write_unianimate_pose_dir` writes the same bytes layout as upstream.
* **MagicAnimate** (DensePose via ``vid2densepose``): canvas pre-filled with ``viridis(0)``; detectron2's
  ``DensePoseResultsFineSegmentationVisualizer(alpha=0.7, cmap=VIRIDIS)`` maps the fine-segmentation
  label I (0..24) to the colormap index ``uint8(clip(I * 255/24))`` and blends only person pixels
  (``I > 0``): ``uint8(canvas * 0.3 + viridis(index) * 0.7)`` (truncation). Background pixels keep
  ``viridis(0)``. So person colours are *not* pure Viridis: they are pulled 30 % towards the dark-purple
  background. :func:`densepose_palette` evaluates exactly those float operations once per label.
* **MTVCrafter** (``process_nlf.py``): a pickle ``{video_path, video_length, video_width, video_height,
  pose: {"joints3d_nonparam": [per frame: [tensor [n_people, 24, 3]]]}}`` holding NLF's non-parametric
  SMPL-24 joints in camera space (OpenCV axes: x right, y down, z forward), millimetres, as torch
  tensors (inference reads ``pose[0][0].cpu().numpy()``).

Frame arrays returned by this module are RGB uint8 ``[T, H, W, 3]`` as displayed, the convention of
:mod:`pipeline.io.video`.
"""

from __future__ import annotations

import colorsys
import math
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pipeline.contracts import atomic_path
from pipeline.io.video import write_video
from pipeline.skeleton import COCO17_INDEX, SMPL24_INDEX

# ---------------------------------------------------------------------------------------------
# OpenPose-18 skeleton, as DWPose reindexes mmpose's COCO order

OPENPOSE18_JOINTS: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
NECK = OPENPOSE18_JOINTS.index("neck")

# Limbs as (joint, joint), 0-based, in upstream's drawing order; limb k is drawn in palette colour k.
# Upstream's limbSeq also lists ear→shoulder limbs after these, but its loop stops at 17, so they are
# never drawn and are left out here.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
# UniAnimate's draw_body_and_foot: joint 18 = left foot (off the left ankle, 13), 19 = right foot (off 10).
FOOT_LIMBS: tuple[tuple[int, int], ...] = ((13, 18), (10, 19))
LEFT_FOOT, RIGHT_FOOT = 18, 19

# The 18-colour OpenPose palette, then UniAnimate's two extra colours for its foot points.
OPENPOSE_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
    (170, 255, 255), (255, 255, 0),
)  # fmt: skip

HAND_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
# DWPose's hand/face drawers skip a point unless its integer pixel coordinates are both > eps.
_DWPOSE_EPS = 0.01

UNIANIMATE_CANVAS_HW = (768, 512)
GuidanceStyle = Literal["moore", "unianimate"]

# COCO-17 index feeding each OpenPose slot (by joint name, so the mapping is checkable); -1 = the neck.
_COCO_FOR_OPENPOSE = tuple(-1 if name == "neck" else COCO17_INDEX[name] for name in OPENPOSE18_JOINTS)


def coco17_to_openpose18(kps: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints ``[..., 17, 3]`` (x, y, score) → OpenPose-18 ``[..., 18, 3]``.

    Same reindexing as DWPose's ``Wholebody`` (mmpose → OpenPose). The neck is the shoulder midpoint
    with score ``min`` of the two shoulder scores. DWPose instead stores 1/0 for "both shoulders > 0.3",
    which draws the neck in exactly the same cases at the 0.3 threshold. It keeps a meaningful value
    for other thresholds.

    COCO-17 has no toes, so foot points are not produced here: pass them separately to the renderers
    (see :func:`feet_from_smpl24` and :func:`feet_from_coco_wholebody`).
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape[-2:] != (17, 3):
        raise ValueError(f"coco17_to_openpose18: expected [..., 17, 3] (x, y, score), got {kps.shape}")
    out = np.empty((*kps.shape[:-2], 18, 3), dtype=np.float64)
    for slot, source in enumerate(_COCO_FOR_OPENPOSE):
        if source >= 0:
            out[..., slot, :] = kps[..., source, :]
    left, right = kps[..., COCO17_INDEX["left_shoulder"], :], kps[..., COCO17_INDEX["right_shoulder"], :]
    out[..., NECK, :2] = (left[..., :2] + right[..., :2]) / 2.0
    out[..., NECK, 2] = np.minimum(left[..., 2], right[..., 2])
    return out


def feet_from_smpl24(kps: np.ndarray) -> np.ndarray:
    """Foot points ``[..., 2, 3]`` (left, right) for UniAnimate from projected SMPL-24 keypoints ``[..., 24, 3]``.

    SMPL's ``left_foot``/``right_foot`` joints sit at the ball of the foot; UniAnimate's foot point is the
    midpoint of the big and small toe tips, a few centimetres further forward. This is the closest point
    SMPL-24 offers.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape[-2:] != (24, 3):
        raise ValueError(f"feet_from_smpl24: expected [..., 24, 3] (x, y, score), got {kps.shape}")
    return kps[..., [SMPL24_INDEX["left_foot"], SMPL24_INDEX["right_foot"]], :]


def feet_from_coco_wholebody(foot: np.ndarray) -> np.ndarray:
    """UniAnimate's foot points from COCO-WholeBody foot keypoints ``[..., 6, 3]``.

    Input order is WholeBody's: left big toe, left small toe, left heel, right big toe, right small toe,
    right heel. Each foot point is the toe midpoint, scored with the lower toe score (upstream needs
    both toes > 0.3).
    """
    foot = np.asarray(foot, dtype=np.float64)
    if foot.shape[-2:] != (6, 3):
        raise ValueError(f"feet_from_coco_wholebody: expected [..., 6, 3], got {foot.shape}")
    out = np.empty((*foot.shape[:-2], 2, 3), dtype=np.float64)
    for side, (big, small) in enumerate(((0, 1), (3, 4))):
        out[..., side, :2] = (foot[..., big, :2] + foot[..., small, :2]) / 2.0
        out[..., side, 2] = np.minimum(foot[..., big, 2], foot[..., small, 2])
    return out


def scale_keypoints(kps: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Map pixel keypoints ``[..., 3]`` from a ``src_hw`` frame to a ``dst_hw`` canvas (scores unchanged).

    Upstream normalises by the source size and multiplies by the canvas size, i.e. it *stretches*: pad
    the source to the canvas aspect first (:func:`pad_to_square` or your own) when that would distort.
    """
    kps = np.array(kps, dtype=np.float64, copy=True)
    kps[..., 0] *= dst_hw[1] / src_hw[1]
    kps[..., 1] *= dst_hw[0] / src_hw[0]
    return kps


def dwpose_canvas_size(height: int, width: int, resolution: int = 512) -> tuple[int, int]:
    """(H, W) of DWPose's drawing canvas for a ``height`` x ``width`` frame (Moore's ``_kps.mp4`` size).

    controlnet_aux ``resize_image``: scale so the short side is ``resolution``, then round each side to a
    multiple of 64 (NumPy rounding, half to even).
    """
    k = float(resolution) / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


# ---------------------------------------------------------------------------------------------
# OpenPose drawing


def _visible(joints: np.ndarray, threshold: float) -> np.ndarray:
    """Body joints upstream would draw: score strictly above the threshold and finite coordinates."""
    return (joints[:, 2] > threshold) & np.isfinite(joints[:, :2]).all(axis=1)


def _fill_limb(
    canvas: np.ndarray, start: np.ndarray, end: np.ndarray, stickwidth: int, color: tuple[int, int, int]
) -> None:
    """One limb as upstream draws it: a filled ellipse polygon, every value truncated with int()."""
    dx, dy = start[0] - end[0], start[1] - end[1]
    length = (dx * dx + dy * dy) ** 0.5
    angle = math.degrees(math.atan2(dy, dx))
    centre = (int((start[0] + end[0]) / 2.0), int((start[1] + end[1]) / 2.0))
    polygon = cv2.ellipse2Poly(centre, (int(length / 2), stickwidth), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


def _body_joints(pose18: np.ndarray, feet: np.ndarray | None) -> np.ndarray:
    pose18 = np.asarray(pose18, dtype=np.float64)
    if pose18.shape != (18, 3):
        raise ValueError(f"draw_openpose_body: pose must be [18, 3] (x, y, score), got {pose18.shape}")
    if feet is None:
        return pose18
    feet = np.asarray(feet, dtype=np.float64)
    if feet.shape != (2, 3):
        raise ValueError(f"draw_openpose_body: feet must be [2, 3] (left, right), got {feet.shape}")
    return np.concatenate([pose18, feet])


def draw_openpose_body(
    canvas_hw: tuple[int, int],
    pose18: np.ndarray,
    *,
    stickwidth: int = 4,
    limb_alpha: float = 0.6,
    score_threshold: float = 0.3,
    joint_radius: int = 4,
    feet: np.ndarray | None = None,
) -> np.ndarray:
    """Draw one OpenPose-18 body (canvas pixel coordinates) on a black ``canvas_hw`` canvas.

    Returns uint8 ``[H, W, 3]`` with the palette values in channel order as listed (displayed RGB for
    Moore-AnimateAnyone). With ``feet`` (``[2, 3]`` left, right) UniAnimate's two foot points and
    ankle→foot limbs are added (20 joints, 19 limbs). Joints scoring ``<= score_threshold`` or with
    non-finite coordinates are not drawn, nor are limbs touching them.
    """
    joints = _body_joints(pose18, feet)
    limbs = OPENPOSE_LIMBS + (FOOT_LIMBS if feet is not None else ())
    visible = _visible(joints, score_threshold)
    canvas = np.zeros((*canvas_hw, 3), dtype=np.uint8)
    for k, (a, b) in enumerate(limbs):
        if visible[a] and visible[b]:
            _fill_limb(canvas, joints[a, :2], joints[b, :2], stickwidth, OPENPOSE_COLORS[k])
    # upstream dims the whole canvas (float64 multiply, truncating cast), so limbs end up at int(c * 0.6)
    canvas = (canvas * limb_alpha).astype(np.uint8)
    for j in np.flatnonzero(visible):
        centre = (int(joints[j, 0]), int(joints[j, 1]))
        cv2.circle(canvas, centre, joint_radius, OPENPOSE_COLORS[j], thickness=-1)
    return canvas


def _dwpose_point(point: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Pixel position of a hand/face point as DWPose draws it, or None when it would be skipped.

    Upstream marks points scoring ``< threshold`` as -1 and then skips any point whose truncated pixel
    coordinates are not both > 0.01, so a point on row or column 0 is never drawn either.
    """
    if not (point[2] >= threshold and np.isfinite(point[:2]).all()):
        return None
    x, y = int(point[0]), int(point[1])
    return (x, y) if x > _DWPOSE_EPS and y > _DWPOSE_EPS else None


def hand_edge_color(edge: int) -> tuple[float, float, float]:
    """Colour of hand edge ``edge`` (0..19): HSV hue edge/20 at full saturation and value, times 255.

    Left as floats as upstream passes them to ``cv2.line``, which rounds them itself.
    """
    r, g, b = colorsys.hsv_to_rgb(edge / float(len(HAND_EDGES)), 1.0, 1.0)
    return (r * 255.0, g * 255.0, b * 255.0)


def draw_hands(canvas: np.ndarray, hands: np.ndarray, *, score_threshold: float = 0.3) -> np.ndarray:
    """Draw hands ``[n_hands, 21, 3]`` (canvas pixels) in place as DWPose does, and return the canvas."""
    hands = np.asarray(hands, dtype=np.float64)
    if hands.ndim != 3 or hands.shape[1:] != (21, 3):
        raise ValueError(f"draw_hands: expected [n_hands, 21, 3], got {hands.shape}")
    for hand in hands:
        points = [_dwpose_point(p, score_threshold) for p in hand]
        for k, (a, b) in enumerate(HAND_EDGES):
            if points[a] is not None and points[b] is not None:
                cv2.line(canvas, points[a], points[b], hand_edge_color(k), thickness=2)
        for point in points:
            if point is not None:
                cv2.circle(canvas, point, 4, HAND_POINT_COLOR, thickness=-1)
    return canvas


def draw_face(canvas: np.ndarray, face: np.ndarray, *, score_threshold: float = 0.3) -> np.ndarray:
    """Draw face landmarks ``[68, 3]`` in place as white radius-3 dots (Moore only), and return the canvas."""
    face = np.asarray(face, dtype=np.float64)
    if face.ndim != 2 or face.shape[1] != 3:
        raise ValueError(f"draw_face: expected [n_landmarks, 3], got {face.shape}")
    for landmark in face:
        point = _dwpose_point(landmark, score_threshold)
        if point is not None:
            cv2.circle(canvas, point, 3, FACE_POINT_COLOR, thickness=-1)
    return canvas


def _per_frame(name: str, values: np.ndarray | None, frames: int, tail: tuple[int, ...]) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (frames, *tail):
        raise ValueError(f"{name}: expected [T={frames}, {', '.join(map(str, tail))}], got {values.shape}")
    return values


def _check_style_inputs(style: str, feet: Any, faces: Any) -> None:
    """Refuse inputs the chosen upstream never draws, so a caller cannot believe they were used."""
    if style not in ("moore", "unianimate"):
        raise ValueError(f"unknown guidance style {style!r}; use 'moore' or 'unianimate'")
    if style == "moore" and feet is not None:
        raise ValueError("Moore-AnimateAnyone draws no foot points; pass feet only for style='unianimate'")
    if style == "unianimate" and faces is not None:
        raise ValueError("UniAnimate's pose frames have no face (dwpose_woface); pass faces only for 'moore'")


def _scaled(
    values: np.ndarray | None, src_hw: tuple[int, int] | None, dst_hw: tuple[int, int]
) -> np.ndarray | None:
    return values if values is None or src_hw is None else scale_keypoints(values, src_hw, dst_hw)


def render_openpose_frames(
    pose18: np.ndarray,
    canvas_hw: tuple[int, int],
    *,
    style: GuidanceStyle,
    src_hw: tuple[int, int] | None = None,
    feet: np.ndarray | None = None,
    hands: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Skeleton guidance frames ``[T, H, W, 3]`` (RGB as displayed) in one upstream's style.

    ``pose18`` ``[T, 18, 3]``; optional ``feet`` ``[T, 2, 3]`` (UniAnimate only), ``hands``
    ``[T, n, 21, 3]``, ``faces`` ``[T, 68, 3]`` (Moore only). Parts we have no keypoints for are simply
    not drawn (our sources have neither hands nor face landmarks). Coordinates are canvas pixels, or
    source pixels when ``src_hw`` is given (then stretched to the canvas as upstream does).

    * ``"moore"``: body, hands, face; colours as listed (Moore saves RGB through PIL).
    * ``"unianimate"``: body (+ feet), hands; R and B swapped, as UniAnimate's ``cv2.imwrite``'d jpgs
      decode. Use ``canvas_hw=UNIANIMATE_CANVAS_HW``.
    """
    _check_style_inputs(style, feet, faces)
    pose18 = np.asarray(pose18, dtype=np.float64)
    if pose18.ndim != 3 or pose18.shape[1:] != (18, 3):
        raise ValueError(f"render_openpose_frames: pose18 must be [T, 18, 3], got {pose18.shape}")
    frames = len(pose18)
    feet = _scaled(_per_frame("feet", feet, frames, (2, 3)), src_hw, canvas_hw)
    faces = _scaled(_per_frame("faces", faces, frames, (68, 3)), src_hw, canvas_hw)
    if hands is not None:
        hands = np.asarray(hands, dtype=np.float64)
        if hands.ndim != 4 or len(hands) != frames:
            raise ValueError(f"hands: expected [T={frames}, n_hands, 21, 3], got {hands.shape}")
    hands = _scaled(hands, src_hw, canvas_hw)
    pose18 = _scaled(pose18, src_hw, canvas_hw)
    out = np.empty((frames, *canvas_hw, 3), dtype=np.uint8)
    for t in range(frames):
        canvas = draw_openpose_body(
            canvas_hw, pose18[t], score_threshold=score_threshold, feet=None if feet is None else feet[t]
        )
        if hands is not None:
            draw_hands(canvas, hands[t], score_threshold=score_threshold)
        if faces is not None:
            draw_face(canvas, faces[t], score_threshold=score_threshold)
        out[t] = canvas[..., ::-1] if style == "unianimate" else canvas
    return out


def write_unianimate_pose_dir(
    folder: str | os.PathLike, frames: np.ndarray, ref_pose: np.ndarray | None = None
) -> Path:
    """Write UniAnimate's pose folder: ``0000.jpg``, ``0001.jpg``, ... and ``ref_pose.jpg``.

    ``frames``/``ref_pose`` are RGB as returned by :func:`render_openpose_frames` (style
    ``"unianimate"``). ``cv2.imwrite`` gets the RGB→BGR flip of them, i.e. exactly upstream's canvas,
    at OpenCV's default JPEG quality (95) as upstream. UniAnimate needs ``ref_pose.jpg`` (the reference
    image's own skeleton), so omit ``ref_pose`` only when another step writes it. The folder is
    replaced as a whole, so a crash never leaves a mix of old and new frames.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"write_unianimate_pose_dir: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    if len(frames) > 10000:
        raise ValueError(
            "UniAnimate sorts frame names as text; more than 10000 four-digit names would misorder"
        )
    final = Path(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        images = [(f"{i:04d}.jpg", frame) for i, frame in enumerate(frames)]
        if ref_pose is not None:
            images.append(("ref_pose.jpg", np.asarray(ref_pose, dtype=np.uint8)))
        for name, image in images:
            if not cv2.imwrite(str(staging / name), np.ascontiguousarray(image[..., ::-1])):
                raise OSError(f"cannot write {staging / name}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def save_guidance_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Write RGB guidance frames as an mp4 through :func:`pipeline.io.video.write_video` (atomic, H.264).

    H.264 at 4:2:0 smears the palette colours at part edges somewhat; lower ``crf`` keeps them closer.
    """
    return write_video(path, frames, fps, crf=crf)


# ---------------------------------------------------------------------------------------------
# DensePose (MagicAnimate)

DENSEPOSE_PART_LABELS = 24  # detectron2 DensePoseDataRelative.N_PART_LABELS
DENSEPOSE_ALPHA = 0.7


def densepose_palette(alpha: float = DENSEPOSE_ALPHA, cmap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """RGB colour ``[25, 3]`` of each fine-segmentation label (0 = background) in vid2densepose's output.

    Mirrors detectron2's ``MatrixVisualizer`` with ``val_scale = 255 / 24`` on a ``cmap(0)`` canvas:
    index = uint8(clip(float32(I) * 255/24, 0, 255)), colour = cmap(index) (BGR), blended as
    ``canvas * (1 - alpha) + colour * alpha`` in float64 and truncated to uint8. Background pixels are
    masked to the canvas itself before the blend, which gives back ``cmap(0)`` exactly.
    """
    background = cv2.applyColorMap(np.zeros((1, 1), dtype=np.uint8), cmap)[0, 0]
    labels = np.arange(DENSEPOSE_PART_LABELS + 1, dtype=np.float32)
    index = (labels * (255.0 / DENSEPOSE_PART_LABELS)).clip(0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(index.reshape(1, -1), cmap)[0]
    colours[0] = background  # label 0 is masked: the canvas shows through
    blended = np.empty_like(colours)
    blended[:] = background * (1.0 - alpha) + colours * alpha  # the truncating assignment of upstream
    return np.ascontiguousarray(blended[:, ::-1])


def _part_labels(parts: np.ndarray, i_channel: int) -> np.ndarray:
    parts = np.asarray(parts)
    if parts.ndim == 4:
        parts = parts[..., i_channel]
    elif parts.ndim != 3:
        raise ValueError(
            f"render_densepose: expected a part map [T, H, W] or IUV [T, H, W, 3], got {parts.shape}"
        )
    whole = np.issubdtype(parts.dtype, np.integer) or bool(
        np.all(np.isfinite(parts) & (parts == np.round(parts)))
    )
    if not whole:
        raise ValueError("render_densepose: part labels must be whole numbers 0..24")
    labels = parts.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > DENSEPOSE_PART_LABELS):
        raise ValueError(
            f"render_densepose: part labels must lie in 0..24, got {labels.min()}..{labels.max()}"
        )
    return labels


def render_densepose(parts: np.ndarray, *, alpha: float = DENSEPOSE_ALPHA, i_channel: int = 0) -> np.ndarray:
    """MagicAnimate's DensePose guidance ``[T, H, W, 3]`` (RGB) at the part map's own resolution.

    ``parts``: fine-segmentation labels ``[T, H, W]`` (0 = background, 1..24 as
    :data:`pipeline.skeleton.DENSEPOSE_PARTS`), or an IUV array ``[T, H, W, 3]`` whose channel
    ``i_channel`` is I (DensePose's own IUV order puts I first).
    """
    return densepose_palette(alpha)[_part_labels(parts, i_channel)]


def densepose_guidance_square(
    parts: np.ndarray, size: int = 512, *, i_channel: int = 0
) -> tuple[np.ndarray, Padding]:
    """MagicAnimate-ready frames: pad the part map to a square with background, resize, render.

    MagicAnimate is square-only and would squash a tall gait frame; padding keeps the body's
    proportions. The label map is resized with nearest neighbour before rendering, so every pixel keeps
    an exact palette colour. Returns the frames ``[T, size, size, 3]`` and the padding, so results can
    be mapped back with :func:`unpad`.
    """
    labels = _part_labels(parts, i_channel).astype(np.uint8)
    square, padding = pad_to_square(labels, fill=0)
    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_NEAREST) for f in square])
    return render_densepose(resized), padding


# ---------------------------------------------------------------------------------------------
# Padding tall frames to square instead of squashing them


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side by :func:`pad_to_square`, and the original frame size."""

    top: int
    bottom: int
    left: int
    right: int
    height: int
    width: int

    @property
    def padded_hw(self) -> tuple[int, int]:
        return self.height + self.top + self.bottom, self.width + self.left + self.right


def square_padding(height: int, width: int) -> Padding:
    """Centre the frame in a square of side max(H, W); an odd remainder goes to the bottom/right."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return Padding(top, side - height - top, left, side - width - left, height, width)


def pad_to_square(
    frames: np.ndarray, fill: float | Sequence[float] | Literal["edge"] = 0
) -> tuple[np.ndarray, Padding]:
    """Pad frames ``[T, H, W]`` or ``[T, H, W, C]`` to ``[T, S, S, ...]`` with S = max(H, W).

    ``fill`` is a scalar, one value per channel (e.g. ``densepose_palette()[0]`` for rendered DensePose)
    or ``"edge"`` (repeat the border, as MagicAnimate's author suggests for reference photos).
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        raise ValueError(f"pad_to_square: expected [T, H, W] or [T, H, W, C], got {frames.shape}")
    padding = square_padding(frames.shape[1], frames.shape[2])
    if isinstance(fill, str):
        if fill != "edge":
            raise ValueError(
                f"pad_to_square: fill must be a value, per-channel values or 'edge', got {fill!r}"
            )
        widths = [(0, 0), (padding.top, padding.bottom), (padding.left, padding.right)]
        return np.pad(frames, widths + [(0, 0)] * (frames.ndim - 3), mode="edge"), padding
    out = np.empty((frames.shape[0], *padding.padded_hw, *frames.shape[3:]), dtype=frames.dtype)
    out[...] = np.asarray(fill, dtype=frames.dtype)
    out[:, padding.top : padding.top + padding.height, padding.left : padding.left + padding.width] = frames
    return out, padding


def unpad(frames: np.ndarray, padding: Padding, *, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Undo :func:`pad_to_square`: crop the original region back out.

    Frames that were resized after padding (e.g. a 512x512 generated video) are cropped at the scaled
    position and resized back to the original ``padding.height`` x ``padding.width``.
    """
    frames = np.asarray(frames)
    padded_h, padded_w = padding.padded_hw
    sy, sx = frames.shape[1] / padded_h, frames.shape[2] / padded_w
    top, bottom = round(padding.top * sy), round((padding.top + padding.height) * sy)
    left, right = round(padding.left * sx), round((padding.left + padding.width) * sx)
    crop = frames[:, top:bottom, left:right]
    if crop.shape[1:3] == (padding.height, padding.width):
        return np.ascontiguousarray(crop)
    size = (padding.width, padding.height)
    return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=interpolation) for f in crop])


# ---------------------------------------------------------------------------------------------
# MTVCrafter: SMPL-24 joints in camera space, millimetres


def _extrinsics_array(camera: Any, frames: int, intrinsics: np.ndarray | None) -> np.ndarray:
    if hasattr(camera, "extrinsics") and callable(camera.extrinsics):
        return np.asarray(camera.extrinsics(np.arange(frames)), dtype=np.float64)
    if isinstance(camera, tuple | list) and len(camera) == 2:
        rotation, translation = (np.asarray(c, dtype=np.float64) for c in camera)
        translation = np.broadcast_to(translation, (*rotation.shape[:-2], 3))
        return np.concatenate([rotation, translation[..., None]], axis=-1)
    matrix = np.asarray(camera, dtype=np.float64)
    if matrix.shape[-2:] != (3, 4):
        raise ValueError(f"camera: expected [R|t] or K[R|t] of shape [3, 4] or [T, 3, 4], got {matrix.shape}")
    if intrinsics is None:
        return matrix
    # P = s·K[R|t] for an unknown scale s: K⁻¹P = s[R|t], and det(sR) = s³ recovers s with its sign
    rigid = np.linalg.solve(np.asarray(intrinsics, dtype=np.float64), matrix)
    return rigid / np.cbrt(np.linalg.det(rigid[..., :3]))[..., None, None]


def camera_extrinsics(camera: Any, frames: int, *, intrinsics: np.ndarray | None = None) -> np.ndarray:
    """World→camera ``[R|t]`` per frame ``[T, 3, 4]`` (x_cam = R x_world + t, OpenCV axes, metres).

    ``camera``: an object with ``extrinsics(frame_indices)`` (:class:`pipeline.world.camera.Camera`),
    a pair ``(R, t)``, an ``[R|t]`` matrix, or a projection matrix ``K[R|t]`` together with
    ``intrinsics=K``; each either static or per frame. The rotation is checked to be proper and
    orthonormal, which catches a projection matrix passed without its ``K``.
    """
    ext = _extrinsics_array(camera, frames, intrinsics)
    if ext.ndim == 3 and len(ext) != frames:
        raise ValueError(f"camera: {len(ext)} per-frame matrices for {frames} frames")
    ext = np.broadcast_to(ext, (frames, 3, 4))
    rotation = ext[..., :3]
    gram = rotation @ np.swapaxes(rotation, -1, -2)
    if not (np.allclose(gram, np.eye(3), atol=1e-5) and np.allclose(np.linalg.det(rotation), 1.0, atol=1e-5)):
        raise ValueError(
            "camera: the 3x3 part is not a rotation; if this is a projection matrix K[R|t], pass intrinsics=K"
        )
    return np.array(ext)


def smpl24_for_mtvcrafter(
    joints3d: np.ndarray, camera: Any, *, intrinsics: np.ndarray | None = None
) -> np.ndarray:
    """World-frame SMPL-24 joints ``[T, 24, 3]`` in metres → camera space in millimetres, as NLF gives them.

    Camera space uses OpenCV axes (x right, y down, z forward), the convention of NLF's output (its
    default world-up is -y) and of :class:`pipeline.world.camera.Camera`. ``camera`` as in
    :func:`camera_extrinsics`.
    """
    joints = np.asarray(joints3d, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3):
        raise ValueError(f"smpl24_for_mtvcrafter: expected [T, 24, 3] world joints, got {joints.shape}")
    ext = camera_extrinsics(camera, len(joints), intrinsics=intrinsics)
    camera_space = np.einsum("tij,tkj->tki", ext[..., :3], joints) + ext[:, None, :, 3]
    return camera_space * 1000.0


# A person's joints lie well over 100 mm in front of the camera; smaller depths mean metres were passed.
_MIN_PLAUSIBLE_DEPTH_MM = 100.0


def write_mtvcrafter_pkl(
    path: str | os.PathLike,
    joints_mm: np.ndarray,
    *,
    video_path: str | os.PathLike,
    video_width: int,
    video_height: int,
) -> Path:
    """Write MTVCrafter's motion pickle (the structure ``process_nlf.py`` writes), atomically.

    ``joints_mm``: ``[T, 24, 3]`` camera-space SMPL-24 joints in millimetres, one person per frame.
    Each frame is stored as a one-image batch holding a ``[1, 24, 3]`` float32 CPU tensor, so upstream's
    ``pose[0][0].cpu().numpy()`` yields the joints. ``video_length`` is T. ``video_path`` /
    ``video_width`` / ``video_height`` describe the driving video the joints belong to (upstream reads
    it for its preview panels and for the centre-crop geometry).

    ``infer_7b.py`` samples its 49-frame window anywhere in ``video_length`` (unseeded) and reads every
    pose frame (its first-98-frames cut went in upstream commit 20b2c1f, before the pinned 91d5132).
    """
    joints = np.asarray(joints_mm, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3) or len(joints) == 0:
        raise ValueError(f"write_mtvcrafter_pkl: expected [T>0, 24, 3] joints, got {joints.shape}")
    bad = np.flatnonzero(~np.isfinite(joints).all(axis=(1, 2)))
    if bad.size:
        # upstream indexes the first person of every frame, so a frame without one would crash it
        raise ValueError(
            f"write_mtvcrafter_pkl: frames {bad[:10].tolist()} have no finite joints (no person?)"
        )
    if np.median(joints[..., 2]) < _MIN_PLAUSIBLE_DEPTH_MM:
        raise ValueError("write_mtvcrafter_pkl: median depth below 100 mm; joints must be in millimetres")
    import torch  # only this writer and the NLF backend need torch

    per_frame = [[torch.from_numpy(joints[t : t + 1].copy())] for t in range(len(joints))]
    data = {
        "video_path": str(video_path),
        "video_length": len(joints),
        "video_width": int(video_width),
        "video_height": int(video_height),
        "pose": {"joints3d_nonparam": per_frame},
    }
    final, tmp = atomic_path(path)
    try:
        with open(tmp, "wb") as handle:
            pickle.dump(data, handle)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


# ---------------------------------------------------------------------------------------------
# NLF backend for real videos


class NLFModelMissingError(FileNotFoundError):
    """The NLF torchscript file configured under ``perception.nlf.model_path`` does not exist."""


class NLFBackend:
    """SMPL-24 joints per frame from NLF (``nlf_l_multi.torchscript``), as MTVCrafter extracts them.

    Calls the model's ``detect_smpl_batched`` and keeps ``joints3d_nonparam`` of the first detected
    person per frame (MTVCrafter's ``pose[0][0]``): camera space, millimetres. Frames without a
    detection come back as NaN rows.
    """

    CONFIG_KEY = "perception.nlf.model_path"

    def __init__(
        self,
        model_path: str | os.PathLike | None,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        default_fov_degrees: float = 55.0,
        channel_order: Literal["rgb", "bgr"] = "rgb",
    ) -> None:
        """Load the model. ``channel_order="bgr"`` feeds frames as MTVCrafter's ``process_nlf.py`` does
        (straight from OpenCV, BGR); the default gives NLF RGB, as its own examples do."""
        if not model_path:
            raise NLFModelMissingError(
                f"config key {self.CONFIG_KEY} is not set; point it to nlf_l_multi.torchscript"
            )
        path = Path(model_path)
        if not path.is_file():
            raise NLFModelMissingError(
                f"NLF model not found at {path} (config key {self.CONFIG_KEY}); download nlf_l_multi.torchscript "
                "from the isarandi/nlf releases and set the key to its path"
            )
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.default_fov_degrees = float(default_fov_degrees)
        self.channel_order = channel_order
        with warnings.catch_warnings():
            # NLF is published only as TorchScript, which recent torch flags as deprecated
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=Warning)
            self.model = torch.jit.load(str(path), map_location=self.device).eval()

    def _call_kwargs(self, intrinsics: np.ndarray | None) -> dict[str, Any]:
        if intrinsics is None:
            return {"default_fov_degrees": self.default_fov_degrees}
        matrix = np.asarray(intrinsics, dtype=np.float32).reshape(1, 3, 3)
        return {"intrinsic_matrix": self._torch.from_numpy(matrix).to(self.device)}

    def _first_person(self, per_image: Sequence[Any]) -> np.ndarray:
        out = np.full((len(per_image), 24, 3), np.nan, dtype=np.float32)
        for i, people in enumerate(per_image):
            if people.shape[0] > 0:
                out[i] = people[0].detach().float().cpu().numpy()
        return out

    def __call__(self, frames: np.ndarray, *, intrinsics: np.ndarray | None = None) -> np.ndarray:
        """Joints ``[T, 24, 3]`` (mm, camera space, NaN where nobody is found) for RGB frames ``[T, H, W, 3]``.

        ``intrinsics`` (3x3, pixels) when the camera is known; otherwise NLF assumes a
        ``default_fov_degrees`` field of view (55°, MTVCrafter's setting).
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(
                f"NLFBackend: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
            )
        if self.channel_order == "bgr":
            frames = frames[..., ::-1]
        kwargs = self._call_kwargs(intrinsics)
        results = []
        with self._torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = np.ascontiguousarray(frames[start : start + self.batch_size].transpose(0, 3, 1, 2))
                pred = self.model.detect_smpl_batched(self._torch.from_numpy(batch).to(self.device), **kwargs)
                if "joints3d_nonparam" not in pred:
                    raise RuntimeError(f"NLF output lacks 'joints3d_nonparam' (has {sorted(pred)})")
                results.append(self._first_person(pred["joints3d_nonparam"]))
        return np.concatenate(results) if results else np.zeros((0, 24, 3), dtype=np.float32)


__all__ = [
    "DENSEPOSE_ALPHA",
    "FOOT_LIMBS",
    "HAND_EDGES",
    "OPENPOSE18_JOINTS",
    "OPENPOSE_COLORS",
    "OPENPOSE_LIMBS",
    "UNIANIMATE_CANVAS_HW",
    "NLFBackend",
    "NLFModelMissingError",
    "Padding",
    "camera_extrinsics",
    "coco17_to_openpose18",
    "densepose_guidance_square",
    "densepose_palette",
    "draw_face",
    "draw_hands",
    "draw_openpose_body",
    "dwpose_canvas_size",
    "feet_from_coco_wholebody",
    "feet_from_smpl24",
    "hand_edge_color",
    "pad_to_square",
    "render_densepose",
    "render_openpose_frames",
    "save_guidance_video",
    "scale_keypoints",
    "smpl24_for_mtvcrafter",
    "square_padding",
    "unpad",
    "write_mtvcrafter_pkl",
    "write_unianimate_pose_dir",
]


# ---------------------------------------------------------------------------------------------
# The "guidance" stage: one format per job, so a format that a source cannot provide (DensePose
# needs part maps, SMPL needs 3-D joints) is recorded per sequence without losing the others.

GUIDANCE_FORMATS = ("openpose", "densepose", "smpl")


def openpose_guidance(keypoints: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Moore-AnimateAnyone-style body skeleton frames at the source resolution."""
    return render_openpose_frames(coco17_to_openpose18(keypoints), frame_hw, style="moore")


def _guidance_backend(guidance_format: str, nlf: bool, approx: bool, rows: list[dict]) -> str:
    if guidance_format == "openpose":
        return "pose"
    if nlf:
        return "nlf"
    if guidance_format == "densepose" and approx and not all(r.get("path_groundtruth") for r in rows):
        return "approx_from_pose"  # ground truth where a sequence has it, the approximation elsewhere
    return "groundtruth"


def run_guidance_stage(
    rows: list[dict],
    *,
    guidance_format: str,
    pose_store: str,
    pose_status: str,
    store: str,
    status: str,
    min_valid_frames: int,
    nlf_model_path: str | None = None,
    masks_store: str | None = None,
) -> list[dict]:
    """Render one guidance format for every row from any keypoint source (real or generated video).

    ``openpose``: from the pose stage's COCO-17 keypoints. ``densepose``: from the world's part maps,
    and where a sequence has none (real video) from the ``approx_from_pose`` approximation of the pose
    and mask stages (:mod:`pipeline.perception.parts`; needs ``masks_store``, else such sequences are
    skipped with that reason; no DensePose model runs here). ``smpl``: SMPL-24 joints
    in camera space (mm) from the world's ground truth, or from NLF when ``nlf_model_path`` is set.
    """
    from pipeline.contracts import read_frame_store
    from pipeline.io.sequences import MissingModality, frame_size, groundtruth, load_rgb
    from pipeline.runner import SkipSequence, StageOutput, run_shard, upstream_errors

    if guidance_format not in GUIDANCE_FORMATS:
        raise ValueError(f"unknown guidance format '{guidance_format}'; choose one of {GUIDANCE_FORMATS}")
    poses = read_frame_store(pose_store)
    masks = read_frame_store(masks_store) if masks_store and guidance_format == "densepose" else None
    nlf = NLFBackend(nlf_model_path) if guidance_format == "smpl" and nlf_model_path else None

    def process(row: dict) -> StageOutput:
        sid = row["sequence_id"]
        if sid not in poses:
            raise SkipSequence("pose stage stored nothing for this sequence")
        valid = poses.get(sid, "valid")
        try:
            if guidance_format == "openpose":
                frames = openpose_guidance(poses.get(sid, "pose_keypoints"), frame_size(row))
                return StageOutput({"openpose": frames}, valid)
            if guidance_format == "densepose":
                if row.get("path_groundtruth") or masks is None:
                    return StageOutput({"densepose": render_densepose(groundtruth(row, "parts"))}, valid)
                if sid not in masks:
                    raise SkipSequence("masks stage stored nothing for this sequence (approx_from_pose needs it)")
                from pipeline.contracts import unpack_masks
                from pipeline.perception.parts import approx_parts

                people = unpack_masks(masks.get(sid, "mask"), frame_size(row)[1])
                parts = approx_parts(poses.get(sid, "pose_keypoints"), people)
                return StageOutput({"densepose": render_densepose(parts)}, valid)
            if nlf is not None:
                joints = nlf(load_rgb(row))
                return StageOutput({"smpl_mm": joints.astype(np.float32)}, valid & np.isfinite(joints).all(axis=(1, 2)))
            joints = smpl24_for_mtvcrafter(groundtruth(row, "joints3d"), groundtruth(row, "extrinsics"))
            return StageOutput({"smpl_mm": joints.astype(np.float32)}, valid)
        except MissingModality as err:
            raise SkipSequence(f"{guidance_format} guidance unavailable: {err}") from err

    return run_shard(
        stage=f"guidance-{guidance_format}",
        backend=_guidance_backend(guidance_format, nlf is not None, masks is not None, rows),
        rows=rows,
        process=process,
        store_path=store,
        status_path=status,
        min_valid_frames=min_valid_frames,
        skip=upstream_errors([pose_status]),
    )
