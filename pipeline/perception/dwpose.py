"""DWPose (YOLOX-L person detector + RTMPose whole-body, ONNX through onnxruntime): a pose backend.

See :class:`DWPoseBackend` for the pre/post-processing; the first 17 of the 133 whole-body keypoints are the
COCO body. Model paths come from ``perception.dwpose.detector`` and ``perception.dwpose.estimator``."""


from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.perception.pose_backends import (
    N_COCO,
    FollowOptions,
    ModelFilesMissingError,
    PoseBackendError,
    PoseResult,
    WalkerTrack,
    check_frames,
    make_smoother,
    pick_main_walker,
)

# ---------------------------------------------------------------------------------------------
# DWPose (YOLOX-L + RTMPose whole-body, ONNX)

YOLOX_INPUT = (640, 640)  # (h, w)
YOLOX_STRIDES = (8, 16, 32)
RTMPOSE_INPUT = (288, 384)  # (w, h)
RTMPOSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB (ImageNet, mmpose convention)
RTMPOSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
SIMCC_SPLIT_RATIO = 2.0
BBOX_PADDING = 1.25


def letterbox(
    image: np.ndarray, size: tuple[int, int] = YOLOX_INPUT, pad_value: int = 114
) -> tuple[np.ndarray, float]:
    """YOLOX-style resize: keep aspect, paste at the top-left of a ``size`` canvas filled with 114.

    Returns the canvas and the scale ``r``; a box on the canvas maps back to the image as box / r.
    """
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(1, int(round(w * r))), max(1, int(round(h * r)))
    canvas = np.full((size[0], size[1], image.shape[2]), pad_value, dtype=image.dtype)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, r


def yolox_grids(
    input_hw: tuple[int, int] = YOLOX_INPUT, strides: tuple[int, ...] = YOLOX_STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell offsets [N, 2] and strides [N, 1] in YOLOX's output order (stride by stride, row-major)."""
    grids, expanded = [], []
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        expanded.append(np.full((gh * gw, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def yolox_decode(raw: np.ndarray, input_hw: tuple[int, int] = YOLOX_INPUT) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX head output [N, 5 + C] → boxes [N, 4] xyxy (input pixels), person scores [N].

    Assumes the usual YOLOX export (objectness and class scores already through a sigmoid, box
    regression not yet decoded): centre = (t_xy + cell) · stride, size = exp(t_wh) · stride.
    """
    raw = np.asarray(raw, dtype=np.float32).reshape(-1, raw.shape[-1])
    grids, strides = yolox_grids(input_hw)
    if len(raw) != len(grids):
        raise PoseBackendError(f"YOLOX output has {len(raw)} rows, a {input_hw} input needs {len(grids)}")
    centre = (raw[:, :2] + grids) * strides
    size = np.exp(np.clip(raw[:, 2:4], -20, 20)) * strides
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes, raw[:, 4] * raw[:, 5]  # objectness × P(person), class 0 of COCO-80


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores))
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        xy0 = np.maximum(boxes[i, :2], boxes[rest, :2])
        xy1 = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(xy1 - xy0, 0, None), axis=1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def box_center_scale(
    box: np.ndarray, aspect: float, padding: float = BBOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Top-down crop of a box: centre and (w, h) padded by ``padding`` and widened to ``aspect`` = w/h."""
    box = np.asarray(box, dtype=np.float64)
    center = (box[:2] + box[2:]) / 2
    w, h = (box[2:] - box[:2]) * padding
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h])


def crop_matrix(center: np.ndarray, scale: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Affine map (no rotation) from the image to the crop: the region centre ± scale/2 → [0, out_wh]."""
    sx, sy = out_wh[0] / scale[0], out_wh[1] / scale[1]
    x0, y0 = center - scale / 2
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)


def simcc_decode(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """SimCC [N, K, Wx], [N, K, Hy] → crop-pixel locations [N, K, 2] and scores [N, K].

    Each axis is a 1-D classification over ``split_ratio`` bins per pixel: location = argmax / ratio.
    The score is the smaller of the two axis maxima (both axes must be confident); keypoints with a
    non-positive score get location -1, as in mmpose/DWPose.
    """
    simcc_x, simcc_y = np.asarray(simcc_x, np.float32), np.asarray(simcc_y, np.float32)
    locs = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], -1).astype(np.float32) / split_ratio
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    locs[scores <= 0] = -1.0
    return locs, scores


def crop_to_image(
    points: np.ndarray, center: np.ndarray, scale: np.ndarray, out_wh: tuple[int, int]
) -> np.ndarray:
    """Inverse of :func:`crop_matrix` for points [..., 2]."""
    return np.asarray(points) / np.asarray(out_wh, dtype=np.float64) * scale + center - scale / 2


def _session(path: Path, providers: list[str] | None, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise PoseBackendError("the dwpose backend needs 'onnxruntime' (pip install onnxruntime)") from err
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def resolve_dwpose_models(
    config: Mapping[str, Any] | None = None,
    *,
    detector: str | os.PathLike | None = None,
    estimator: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Model paths from arguments or ``perception.dwpose.{detector,estimator}``; one error for all missing."""
    section = ((config or {}).get("perception") or {}).get("dwpose") or {}
    paths = {
        "detector": detector or section.get("detector"),
        "estimator": estimator or section.get("estimator"),
    }
    problems = []
    for key, value in paths.items():
        if not value:
            problems.append(f"perception.dwpose.{key} is not set")
        elif not Path(value).is_file():
            problems.append(f"perception.dwpose.{key} = {value} (file not found)")
    if problems:
        raise ModelFilesMissingError(
            "DWPose model files are missing: " + "; ".join(problems)
            + ". Download yolox_l.onnx and dw-ll_ucoco_384.onnx (HF yzd-v/DWPose) and set these config keys."
        )  # fmt: skip
    return Path(paths["detector"]), Path(paths["estimator"])


class DWPoseBackend:
    """DWPose: YOLOX-L person boxes, then RTMPose-l whole-body on a top-down crop of the walker.

    Pre/post-processing (DWPose's onnx pipeline; assumptions marked):

    * detector: letterbox to 640×640 (top-left, pad 114, no normalisation), **BGR** channel order
      (assumption: YOLOX/mmdet models are trained on cv2-loaded BGR images), raw head decoded on the
      8/16/32 grids, person score = objectness × class-0 probability, score threshold 0.1, NMS IoU 0.45,
      then boxes below ``box_threshold`` (0.3, DWPose's ``isscore``) are dropped.
    * main walker: the largest box on the first frame, then the box that continues the
      :class:`WalkerTrack` (DWPose itself keeps the highest-scoring person per frame).
    * estimator: box padded by 1.25 and widened to 288:384, warped (no rotation) to 288×384,
      **RGB**, (x − mean) / std with the ImageNet mean/std (mmpose's ``bgr_to_rgb=True`` preprocessor);
      outputs SimCC x [1, 133, 576] and y [1, 133, 768] (told apart by length), decoded with split ratio 2
      and mapped back through the crop; the first 17 of the 133 whole-body points are COCO-17. Scores
      are clipped to [0, 1] (SimCC maxima are not probabilities and can exceed 1).
    """

    name = "dwpose"

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        detector: str | os.PathLike | None = None,
        estimator: str | os.PathLike | None = None,
        sessions: tuple[Any, Any] | None = None,
        providers: list[str] | None = None,
        threads: int = 0,
        score_threshold: float = 0.1,
        nms_threshold: float = 0.45,
        box_threshold: float = 0.3,
        follow_options: FollowOptions | Mapping[str, Any] | None = None,
        smoothing: str | None = None,
        smoothing_options: Mapping[str, Any] | None = None,
    ) -> None:
        if sessions is None:  # real models; tests inject fake sessions to check the maths end to end
            det_path, est_path = resolve_dwpose_models(config, detector=detector, estimator=estimator)
            sessions = (_session(det_path, providers, threads), _session(est_path, providers, threads))
        self.detector, self.estimator = sessions
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.box_threshold = box_threshold
        if isinstance(follow_options, Mapping):
            follow_options = FollowOptions(**follow_options)
        self.follow_options = follow_options or FollowOptions()
        self.smoother = make_smoother(smoothing, **dict(smoothing_options or {}))

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes [K, 4] (frame pixels) and scores [K] of one RGB frame."""
        canvas, r = letterbox(np.ascontiguousarray(frame[..., ::-1]))
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        raw = self.detector.run(None, {self.detector.get_inputs()[0].name: blob})[0]
        boxes, scores = yolox_decode(raw[0] if raw.ndim == 3 else raw)
        ok = scores > self.score_threshold
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, self.nms_threshold)
        boxes, scores = boxes[keep] / r, scores[keep]
        ok = scores > self.box_threshold
        return boxes[ok].astype(np.float32), scores[ok].astype(np.float32)

    def keypoints(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """COCO-17 [17, 3] (frame pixels, score) of the person in ``box``."""
        out_wh = RTMPOSE_INPUT
        center, scale = box_center_scale(box, out_wh[0] / out_wh[1])
        crop = cv2.warpAffine(frame, crop_matrix(center, scale, out_wh), out_wh, flags=cv2.INTER_LINEAR)
        blob = ((crop.astype(np.float32) - RTMPOSE_MEAN) / RTMPOSE_STD).transpose(2, 0, 1)[None]
        outputs = self.estimator.run(None, {self.estimator.get_inputs()[0].name: blob})
        simcc_x, simcc_y = sorted(outputs[:2], key=lambda a: a.shape[-1])  # x axis is the shorter
        locs, scores = simcc_decode(simcc_x, simcc_y)
        points = crop_to_image(locs[0, :N_COCO], center, scale, out_wh)
        return np.concatenate([points, np.clip(scores[0, :N_COCO, None], 0, 1)], -1).astype(np.float32)

    def estimate(self, frames: np.ndarray | None, **inputs: Any) -> PoseResult:
        if frames is None:
            raise ValueError("the dwpose backend needs frames")
        frames = check_frames(frames)
        result = PoseResult.empty(len(frames), with_boxes=True)
        track: WalkerTrack | None = None
        for t, frame in enumerate(frames):
            boxes, _ = self.detect(frame)
            if track is None:
                index = pick_main_walker(boxes) if len(boxes) else None
                track = WalkerTrack(boxes[index], self.follow_options) if index is not None else None
            else:
                index = track.select(boxes) if len(boxes) else None
            if index is None:
                if track is not None and not track.miss():
                    track = None
                continue
            track.update(boxes[index])
            result.keypoints[t] = self.keypoints(frame, boxes[index])
            result.boxes[t], result.detected[t] = boxes[index], True
        return self.smoother(result)

    def close(self) -> None:
        self.detector = self.estimator = None
