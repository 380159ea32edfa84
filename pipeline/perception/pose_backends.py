"""2-D pose backends behind one interface: COCO-17 keypoints in pixels, one person per sequence.

Generated videos carry no ground truth, so every video that a gait model sees is re-perceived by a real
pose estimator. All backends return the same :class:`PoseResult` (``keypoints`` [T, 17, 3] float32 =
x, y in pixels of the input frames + confidence in [0, 1]; ``detected`` [T] bool; frames without a
person have all-zero keypoints), so downstream code never branches on where keypoints came from.

Backends (:func:`make_pose_backend`):

``mediapipe``
    BlazePose (full model, ``model_complexity=1``, shipped inside the mediapipe 0.10.21 wheel) through
    the legacy ``mp.solutions.pose.Pose`` graph. The 33 BlazePose landmarks are reduced to COCO-17 with
    :data:`BLAZEPOSE_TO_COCO17`; the eye keypoints use BlazePose's eye *centre* landmarks. The confidence
    is the landmark ``visibility`` (BlazePose's estimate that the point is in the image *and not
    occluded*), so a self-occluded far-side limb gets a low confidence even though its position is
    usually still plausible — unlike the ``groundtruth`` backend, where occluded-in-frame points score 1.
    The legacy graph tracks a single person; :class:`MediapipePerception` follows the *main walker*
    (see there) so that a passer-by cannot steal the track. One graph pass gives pose *and* the
    segmentation mask (``pipeline.perception.masks`` reuses it), so a stage that needs both runs the model once.
``groundtruth``
    The synthetic world's stored COCO-17 (x, y, visibility 0 outside / 1 occluded / 2 visible), passed
    by the caller as ``estimate(frames, keypoints2d=...)``: confidence 1 for in-frame points (visible or
    occluded), 0 for points outside the image.
``dataset``
    Keypoints shipped with a dataset (e.g. SUSTech1K's ViTPose COCO-17 pkl, (T, 17, 3) = x, y, score),
    loaded with the restricted unpickler: ``estimate(frames_or_None, path=...)``.
``dwpose``
    YOLOX-L person detector + DWPose RTMPose whole-body (133 keypoints, the first 17 are the COCO body)
    as ONNX models through onnxruntime; model paths from ``perception.dwpose.detector`` and
    ``perception.dwpose.estimator``. See :class:`DWPoseBackend` for the pre/post-processing.

The *stage* (:func:`run_pose_stage`) also accepts ``backend="none"``: no pose is estimated and every
sequence is skipped with ``reason`` — what the workflow uses for generated silhouette videos
(GaitCrafter), on which a pose estimator would only hallucinate keypoints on a white blob.

Optional temporal smoothing of the image-based backends (``smoothing='savgol'`` or ``'one_euro'``) works
on runs of consecutive detected frames only, so a gap never drags a keypoint across it; it is off by
default because gait features are built from exactly the high-frequency limb motion a filter attenuates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.skeleton import COCO17_JOINTS

log = logging.getLogger(__name__)

N_COCO = len(COCO17_JOINTS)

# BlazePose landmark index for every COCO-17 joint, in COCO order (checked against mediapipe's own
# PoseLandmark enum in the tests). BlazePose "left"/"right" are the person's sides, as in COCO.
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (
    0,  # nose            ← NOSE
    2,  # left_eye        ← LEFT_EYE (centre; 1/3 are the inner/outer corners)
    5,  # right_eye       ← RIGHT_EYE (centre; 4/6 are the inner/outer corners)
    7,  # left_ear        ← LEFT_EAR
    8,  # right_ear       ← RIGHT_EAR
    11,  # left_shoulder  ← LEFT_SHOULDER
    12,  # right_shoulder ← RIGHT_SHOULDER
    13,  # left_elbow     ← LEFT_ELBOW
    14,  # right_elbow    ← RIGHT_ELBOW
    15,  # left_wrist     ← LEFT_WRIST
    16,  # right_wrist    ← RIGHT_WRIST
    23,  # left_hip       ← LEFT_HIP
    24,  # right_hip      ← RIGHT_HIP
    25,  # left_knee      ← LEFT_KNEE
    26,  # right_knee     ← RIGHT_KNEE
    27,  # left_ankle     ← LEFT_ANKLE
    28,  # right_ankle    ← RIGHT_ANKLE
)
N_BLAZEPOSE = 33


class PoseBackendError(RuntimeError):
    """A pose backend cannot be built or run (missing model files, missing package, bad input)."""


class ModelFilesMissingError(PoseBackendError, FileNotFoundError):
    """Model files named by configuration keys do not exist; the message names every key and path."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class PoseResult:
    """COCO-17 keypoints of the one followed person per frame.

    ``keypoints`` [T, 17, 3] float32 (x, y pixels; confidence in [0, 1]), ``detected`` [T] bool.
    ``boxes`` [T, 4] float32 (x0, y0, x1, y1) of the followed person where the backend knows it, zeros
    on undetected frames; None for backends that have no box of their own.
    """

    keypoints: np.ndarray
    detected: np.ndarray
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.detected = np.asarray(self.detected, dtype=bool)
        if self.keypoints.ndim != 3 or self.keypoints.shape[1:] != (N_COCO, 3):
            raise ValueError(f"keypoints must be [T, 17, 3], got {self.keypoints.shape}")
        if self.detected.shape != (len(self.keypoints),):
            raise ValueError(f"detected must be [{len(self.keypoints)}], got {self.detected.shape}")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(len(self.keypoints), 4)

    def __len__(self) -> int:
        return len(self.keypoints)

    @classmethod
    def empty(cls, n_frames: int, *, with_boxes: bool = False) -> PoseResult:
        boxes = np.zeros((n_frames, 4), np.float32) if with_boxes else None
        return cls(np.zeros((n_frames, N_COCO, 3), np.float32), np.zeros(n_frames, bool), boxes)

    def to_fields(self, prefix: str = "pose") -> dict[str, np.ndarray]:
        """Per-frame arrays for a frame store (``{prefix}_keypoints``, ``{prefix}_detected``)."""
        return {f"{prefix}_keypoints": self.keypoints, f"{prefix}_detected": self.detected}

    @classmethod
    def from_fields(cls, fields: Mapping[str, np.ndarray], prefix: str = "pose") -> PoseResult:
        return cls(fields[f"{prefix}_keypoints"], fields[f"{prefix}_detected"])


@runtime_checkable
class PoseBackend(Protocol):
    """``estimate(frames [T, H, W, 3] uint8 RGB, **inputs) -> PoseResult``; ``close()`` frees models.

    Image backends ignore ``inputs``; ``groundtruth`` needs ``keypoints2d=``, ``dataset`` needs ``path=``
    (and accepts ``frames=None``), so one call site serves every backend.
    """

    name: str

    def estimate(self, frames: np.ndarray | None, **inputs: Any) -> PoseResult: ...

    def close(self) -> None: ...


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate an RGB clip [T, H, W, 3] uint8 (a single frame is promoted) and return it."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return frames


# ---------------------------------------------------------------------------------------------
# BlazePose → COCO-17


def blazepose_to_coco17(landmarks: np.ndarray, width: float, height: float) -> np.ndarray:
    """[33, ≥4] BlazePose (x, y normalised, z, visibility) → COCO-17 [17, 3] (x px, y px, visibility)."""
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape[0] != N_BLAZEPOSE or landmarks.shape[1] < 4:
        raise ValueError(f"expected [33, 4] BlazePose landmarks, got {landmarks.shape}")
    picked = landmarks[list(BLAZEPOSE_TO_COCO17)]
    out = np.empty((N_COCO, 3), np.float32)
    out[:, 0] = picked[:, 0] * width
    out[:, 1] = picked[:, 1] * height
    out[:, 2] = np.clip(picked[:, 3], 0.0, 1.0)
    return out


def landmarks_array(landmark_list: Any) -> np.ndarray:
    """mediapipe ``NormalizedLandmarkList`` → [33, 4] float32 (x, y, z, visibility)."""
    return np.array([(p.x, p.y, p.z, p.visibility) for p in landmark_list.landmark], dtype=np.float32)


def box_of_points(points: np.ndarray) -> np.ndarray:
    """Axis-aligned box (x0, y0, x1, y1) of [N, 2] points."""
    points = np.asarray(points, dtype=np.float32)
    return np.array([*points.min(0), *points.max(0)], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Main-walker following


@dataclass(frozen=True)
class FollowOptions:
    """How the main walker is followed (all sizes relative to the walker's box height).

    ``margin``: side of the square region left visible around the predicted box = margin × its larger
    side; ``max_missed``: frames without a consistent
    detection before the track is dropped and the whole frame is searched again; a detection whose
    centre is more than ``jump_center`` box heights from the predicted centre, or whose height differs
    by more than a factor ``jump_scale``, is another person (a track jump); ``smoothing``: weight of the
    newest frame in the running estimates of box size and velocity; ``max_people``: how many people the
    initial search enumerates to find the largest one (1 = take whoever the detector picks).
    """

    margin: float = 1.5
    max_missed: int = 5
    jump_center: float = 0.5
    jump_scale: float = 1.5
    smoothing: float = 0.5
    max_people: int = 3


# Region margin for the re-detection after a track jump: just the walker, little room for anyone else.
TIGHT_MARGIN = 1.25


class WalkerTrack:
    """Constant-velocity track of one person's box, used to predict where to look next."""

    def __init__(self, box: np.ndarray, options: FollowOptions) -> None:
        self.options = options
        box = np.asarray(box, dtype=np.float64)
        self.center = (box[:2] + box[2:]) / 2
        self.size = np.maximum(box[2:] - box[:2], 1.0)
        self.velocity = np.zeros(2)
        self.missed = 0

    def predicted_center(self) -> np.ndarray:
        return self.center + self.velocity * (self.missed + 1)

    def predicted_box(self) -> np.ndarray:
        c = self.predicted_center()
        return np.concatenate([c - self.size / 2, c + self.size / 2])

    def region(self, margin: float | None = None) -> tuple[float, float, float]:
        """Square search region (x0, y0, side) around the predicted box."""
        side = float(self.size.max()) * (margin or self.options.margin)
        c = self.predicted_center()
        return float(c[0] - side / 2), float(c[1] - side / 2), side

    def is_jump(self, box: np.ndarray) -> bool:
        """True when ``box`` is too far from, or too differently sized than, the prediction."""
        box = np.asarray(box, dtype=np.float64)
        height = max(box[3] - box[1], 1.0)
        shift = np.linalg.norm((box[:2] + box[2:]) / 2 - self.predicted_center())
        ratio = height / self.size[1]
        scale = self.options.jump_scale
        return bool(shift > self.options.jump_center * self.size[1] or not 1 / scale <= ratio <= scale)

    def update(self, box: np.ndarray) -> None:
        box = np.asarray(box, dtype=np.float64)
        a = self.options.smoothing
        center = (box[:2] + box[2:]) / 2
        step = (center - self.center) / (self.missed + 1)
        self.velocity = (1 - a) * self.velocity + a * step
        self.center = center
        self.size = (1 - a) * self.size + a * np.maximum(box[2:] - box[:2], 1.0)
        self.missed = 0

    def miss(self) -> bool:
        """Record a frame without the walker; False when the track should be dropped."""
        self.missed += 1
        return self.missed <= self.options.max_missed

    def select(self, boxes: np.ndarray) -> int | None:
        """Index of the candidate box that continues this track (nearest non-jump), or None."""
        best, best_dist = None, np.inf
        c = self.predicted_center()
        for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
            if self.is_jump(box):
                continue
            dist = float(np.linalg.norm((box[:2] + box[2:]) / 2 - c))
            if dist < best_dist:
                best, best_dist = i, dist
        return best


def pick_main_walker(boxes: np.ndarray) -> int:
    """Index of the largest box (area): in gait videos the walker is the biggest person in view."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        raise ValueError("no boxes to choose from")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return int(np.argmax(areas))


def region_bounds(region: tuple[float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) of a square region (x0, y0, side), clipped to the frame."""
    x0, y0, side = region
    bx0, by0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    bx1, by1 = min(int(np.ceil(x0 + side)), width), min(int(np.ceil(y0 + side)), height)
    return bx0, by0, max(bx1, bx0), max(by1, by0)


def blank_outside(frame: np.ndarray, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``frame`` that is black outside ``bounds`` (x0, y0, x1, y1): nobody else to pick."""
    x0, y0, x1, y1 = bounds
    out = np.zeros_like(frame)
    out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
    return out


# ---------------------------------------------------------------------------------------------
# MediaPipe: one graph for pose and segmentation


@dataclass
class MediapipeOutput:
    """One pass of :class:`MediapipePerception` over a clip: pose and (if enabled) masks."""

    pose: PoseResult
    masks: np.ndarray | None  # [T, H, W] bool, or None when segmentation is off


@dataclass
class _Found:
    """One tracking-graph detection in frame pixels."""

    landmarks: np.ndarray  # [33, 4] x, y in pixels, z, visibility
    box: np.ndarray  # [4]
    mask: np.ndarray | None  # [H, W] float probabilities


class MediapipePerception:
    """BlazePose pose (+ segmentation) over whole clips, following the main walker.

    ``follow=True`` (default). While a walker is tracked, the graph sees the frame with everything
    outside a square region around the walker's *predicted* box (constant velocity, ``margin`` × the
    larger box side) blacked out, so nobody else can be picked. The frame keeps its size and
    coordinates — unlike a crop, which would move the graph's own landmark-tracking ROI and mask
    smoother (they live in input-image coordinates) every frame. If the graph still returns someone
    else (a jump in box centre or height, see :class:`FollowOptions`), it is reset and re-run with
    only a tight region (``TIGHT_MARGIN`` × box) visible; if that is still inconsistent the frame counts as missed.
    At the start of a clip, or after ``max_missed`` misses, the whole frame is searched: the tracking
    graph finds one person, then a static-image BlazePose graph looks for more on the frame with the
    people found so far blacked out (up to ``max_people``), and the *largest* person becomes the walker.
    Persistence comes from the track: a smaller or new person never replaces a tracked walker.

    ``follow=False`` runs the graph on plain full frames (mediapipe's own single-person tracking).

    Between clips the tracking graph is *flushed* with one blank frame (it loses its person, so the
    next clip starts with a fresh detection and fresh landmark/mask filters) rather than reset, since a
    reset rebuilds the TFLite interpreters (~0.1–0.2 s); a clip of another frame size needs a reset
    because the mask smoother cannot blend masks of different sizes.
    """

    def __init__(
        self,
        *,
        segmentation: bool = False,
        mask_threshold: float = 0.5,
        model_complexity: int = 1,
        smooth_landmarks: bool = True,
        smooth_segmentation: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        follow: bool = True,
        follow_options: FollowOptions | Mapping[str, Any] | None = None,
    ) -> None:
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise PoseBackendError("the mediapipe backend needs the 'mediapipe' package") from err
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
        self.segmentation = segmentation
        self.mask_threshold = float(mask_threshold)
        self.follow = follow
        if isinstance(follow_options, Mapping):
            follow_options = FollowOptions(**follow_options)
        self.follow_options = follow_options or FollowOptions()
        common = {"model_complexity": model_complexity, "min_detection_confidence": min_detection_confidence}
        self._mp_pose = mp_pose
        self._graph = mp_pose.Pose(
            static_image_mode=False,
            smooth_landmarks=smooth_landmarks,
            enable_segmentation=segmentation,
            smooth_segmentation=smooth_segmentation and segmentation,
            min_tracking_confidence=min_tracking_confidence,
            **common,
        )
        self._static_options = common
        self._static: Any = None  # built on the first search for more people
        self._dirty = False  # the tracking graph has seen frames since the last flush
        self._input_shape: tuple[int, ...] | None = None  # frame shape of the last clip

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        for graph in (self._graph, self._static):
            if graph is not None:
                graph.close()
        self._graph = self._static = None

    def __enter__(self) -> MediapipePerception:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_clip(self, shape: tuple[int, ...]) -> None:
        """Forget the previous clip: a blank frame if the frame size is unchanged, else a reset."""
        if self._dirty and shape != self._input_shape:
            self._graph.reset()
        elif self._dirty:
            self._graph.process(np.zeros(shape, np.uint8))
        self._dirty = False
        self._input_shape = shape

    def _static_graph(self) -> Any:
        if self._static is None:
            self._static = self._mp_pose.Pose(
                static_image_mode=True, enable_segmentation=False, **self._static_options
            )
        return self._static

    # -- one clip --------------------------------------------------------------------------------

    def process(self, frames: np.ndarray) -> MediapipeOutput:
        """Run pose (and masks) over one clip [T, H, W, 3] uint8 RGB."""
        if self._graph is None:
            raise PoseBackendError("MediapipePerception is closed")
        frames = check_frames(frames)
        n, h, w = frames.shape[:3]
        pose = PoseResult.empty(n, with_boxes=True)
        masks = np.zeros((n, h, w), bool) if self.segmentation else None
        self._start_clip(frames.shape[1:])
        track: list[WalkerTrack | None] = [None]
        previous = False
        for t in range(n):
            if self.follow:
                found = self._follow_frame(frames[t], track)
            else:
                found = self._run(frames[t], retry=previous)
            previous = found is not None
            if found is None:
                continue
            pose.keypoints[t] = blazepose_to_coco17(found.landmarks, 1.0, 1.0)
            pose.boxes[t], pose.detected[t] = found.box, True
            if masks is not None and found.mask is not None:
                np.greater(found.mask, self.mask_threshold, out=masks[t])
        return MediapipeOutput(pose=pose, masks=masks)

    def _run(self, image: np.ndarray, *, retry: bool = False) -> _Found | None:
        """One tracking-graph call; landmarks converted to pixels.

        With ``retry``, a frame on which the graph *loses* its person is processed again at once: the
        graph only re-detects on the call after a loss, so without the retry every tracking loss also
        costs the frame (the extra call happens only right after a detected frame).
        """
        self._dirty = True
        result = self._graph.process(image)
        if result.pose_landmarks is None and retry:
            result = self._graph.process(image)
        if result.pose_landmarks is None:
            return None
        h, w = image.shape[:2]
        landmarks = landmarks_array(result.pose_landmarks)
        landmarks[:, :2] *= (w, h)
        mask = result.segmentation_mask if self.segmentation else None
        return _Found(landmarks, box_of_points(landmarks[:, :2]), mask)

    def _follow_frame(self, frame: np.ndarray, track: list[WalkerTrack | None]) -> _Found | None:
        if track[0] is None:
            found = self._search(frame)
            if found is not None:
                track[0] = WalkerTrack(found.box, self.follow_options)
            return found
        walker = track[0]
        h, w = frame.shape[:2]
        found = self._run(
            blank_outside(frame, region_bounds(walker.region(), w, h)), retry=walker.missed == 0
        )
        if found is not None and walker.is_jump(found.box):
            # Someone else near the walker: restart detection with only the predicted box visible.
            self._graph.reset()
            found = self._run(blank_outside(frame, region_bounds(walker.region(margin=TIGHT_MARGIN), w, h)))
            if found is not None and walker.is_jump(found.box):
                found = None
        if found is None:
            if not walker.miss():
                track[0] = None
            return None
        walker.update(found.box)
        return found

    def _search(self, frame: np.ndarray) -> _Found | None:
        """Whole-frame search; returns the largest person (the walker) as seen by the tracking graph."""
        first = self._run(frame)
        if first is None or self.follow_options.max_people <= 1:
            return first
        others = self.find_people(frame, exclude=[first.box], limit=self.follow_options.max_people - 1)
        boxes = np.concatenate([first.box[None], others])
        main = pick_main_walker(boxes)
        if main == 0:
            return first
        walker = WalkerTrack(boxes[main], self.follow_options)
        self._graph.reset()  # the graph is locked on a smaller person
        h, w = frame.shape[:2]
        found = self._run(blank_outside(frame, region_bounds(walker.region(), w, h)))
        return None if found is None or walker.is_jump(found.box) else found

    def find_people(
        self, frame: np.ndarray, exclude: list[np.ndarray] | None = None, limit: int | None = None
    ) -> np.ndarray:
        """Boxes [K, 4] of up to ``limit`` (default ``max_people``) people, by static BlazePose.

        BlazePose reports one person per call, so each person found — and each box in ``exclude`` — is
        blacked out (box + 10 %) before the next call: the search enumerates people one by one.
        """
        graph = self._static_graph()
        limit = self.follow_options.max_people if limit is None else limit
        image = np.array(frame, copy=True)
        h, w = image.shape[:2]
        boxes: list[np.ndarray] = []
        for box in exclude or []:
            _blank_box(image, box)
        while len(boxes) < limit:
            result = graph.process(image)
            if result.pose_landmarks is None:
                break
            box = box_of_points(landmarks_array(result.pose_landmarks)[:, :2] * (w, h))
            boxes.append(box)
            _blank_box(image, box)
        return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def _blank_box(image: np.ndarray, box: np.ndarray, pad: float = 0.1) -> None:
    """Black out ``box`` enlarged by ``pad`` of its size, in place."""
    h, w = image.shape[:2]
    grow = pad * (box[2:] - box[:2])
    x0, y0 = np.clip(np.floor(box[:2] - grow), 0, None).astype(int)
    x1, y1 = np.minimum(np.ceil(box[2:] + grow), (w, h)).astype(int)
    image[y0:y1, x0:x1] = 0


class MediapipePoseBackend:
    """``mediapipe`` pose backend; shares its :class:`MediapipePerception` with a mask backend if given."""

    name = "mediapipe"

    def __init__(
        self,
        perception: MediapipePerception | None = None,
        *,
        smoothing: str | None = None,
        smoothing_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.perception = perception or MediapipePerception(**options)
        self.smoother = make_smoother(smoothing, **dict(smoothing_options or {}))

    def estimate(self, frames: np.ndarray | None, **inputs: Any) -> PoseResult:
        if frames is None:
            raise ValueError("the mediapipe backend needs frames")
        return self.from_output(self.perception.process(frames))

    def from_output(self, output: MediapipeOutput) -> PoseResult:
        """The pose part of a shared pass, with this backend's smoothing applied."""
        return self.smoother(output.pose)

    def close(self) -> None:
        """Closes the (possibly shared) graph; idempotent, so closing every sharer is safe."""
        self.perception.close()


# ---------------------------------------------------------------------------------------------
# Caller-supplied keypoints


class GroundTruthPoseBackend:
    """The synthetic world's COCO-17: visibility 1/2 (in frame) → confidence 1, 0 (outside) → 0."""

    name = "groundtruth"

    def estimate(self, frames: np.ndarray | None, **inputs: Any) -> PoseResult:
        if inputs.get("keypoints2d") is None:
            raise ValueError("the groundtruth backend needs keypoints2d=[T, 17, 3] (x, y, visibility)")
        gt = np.asarray(inputs["keypoints2d"], dtype=np.float32)
        if gt.ndim != 3 or gt.shape[1:] != (N_COCO, 3):
            raise ValueError(f"keypoints2d must be [T, 17, 3], got {gt.shape}")
        if frames is not None and len(check_frames(frames)) != len(gt):
            raise ValueError(f"{len(frames)} frames but {len(gt)} ground-truth keypoint frames")
        keypoints = gt.copy()
        keypoints[..., 2] = (gt[..., 2] > 0).astype(np.float32)
        detected = keypoints[..., 2].any(axis=1)
        keypoints[~detected] = 0.0
        return PoseResult(keypoints, detected)

    def close(self) -> None:
        pass


class DatasetPoseBackend:
    """Keypoints shipped with a dataset: a pkl of (T, 17, 3) x, y, score (e.g. SUSTech1K ViTPose).

    A frame is detected when any keypoint has a positive score; scores are clipped to [0, 1] (some
    exporters store heatmap maxima slightly above 1).
    """

    name = "dataset"

    def estimate(self, frames: np.ndarray | None, **inputs: Any) -> PoseResult:
        path = inputs.get("path")
        if path is None:
            raise ValueError("the dataset backend needs path= (a pkl with (T, 17, 3) keypoints)")
        from pipeline.io.safe_pickle import load_array  # lazy: only this backend reads pkls

        array = np.asarray(load_array(path), dtype=np.float32)
        if array.ndim != 3 or array.shape[1:] != (N_COCO, 3):
            raise PoseBackendError(f"{path}: expected (T, 17, 3) COCO-17 keypoints, found {array.shape}")
        if frames is not None and len(check_frames(frames)) != len(array):
            raise PoseBackendError(f"{path}: {len(array)} keypoint frames but {len(frames)} video frames")
        keypoints = np.nan_to_num(array, nan=0.0)
        keypoints[..., 2] = np.clip(keypoints[..., 2], 0.0, 1.0)
        detected = keypoints[..., 2].max(axis=1) > 0
        keypoints[~detected] = 0.0
        return PoseResult(keypoints, detected)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Temporal smoothing


def valid_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of consecutive True frames."""
    v = np.concatenate([[False], np.asarray(valid, bool), [False]])
    edges = np.flatnonzero(np.diff(v.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def savgol_filter(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky–Golay along axis 0 with scipy's ``mode="interp"`` edges: inside, the value at the centre of a
    least-squares polynomial of ``order`` over ``window`` samples; in the first and last ``window // 2``
    samples, the polynomial fitted to the first / last ``window`` samples. Written here because importing
    ``scipy.signal`` costs each perception job ~0.7 s; tests check it against scipy.
    """
    x = np.asarray(x, dtype=np.float64)
    n, half = len(x), window // 2
    if n < window:
        raise ValueError(f"savgol: {n} samples are fewer than the window {window}")
    flat = x.reshape(n, -1)
    # Least-squares polynomial evaluation as a linear map: rows of pinv(V) give the fitted coefficients.
    positions = np.arange(window, dtype=np.float64)
    vander = np.vander(positions - half, order + 1, increasing=True)  # [window, order + 1]
    centre = np.linalg.pinv(vander)[0]  # the fitted value at offset 0
    out = np.empty_like(flat)
    windows = np.lib.stride_tricks.sliding_window_view(flat, window, axis=0)  # [n - window + 1, m, window]
    out[half : n - half] = windows @ centre
    edge = np.vander(positions, order + 1, increasing=True)  # positions 0 … window-1 of an edge block
    fit = np.linalg.pinv(edge)  # [order + 1, window]
    out[:half] = edge[:half] @ (fit @ flat[:window])
    out[n - half :] = edge[window - half :] @ (fit @ flat[n - window :])
    return out.reshape(x.shape)


def savgol_smooth(result: PoseResult, window: int = 7, order: int = 2) -> PoseResult:
    """Zero-phase Savitzky–Golay over x, y within each detected run (runs shorter than the window stay)."""
    if window % 2 == 0 or window <= order:
        raise ValueError(f"savgol window must be odd and > order, got window={window}, order={order}")
    keypoints = result.keypoints.copy()
    for start, stop in valid_runs(result.detected):
        if stop - start >= window:
            keypoints[start:stop, :, :2] = savgol_filter(result.keypoints[start:stop, :, :2], window, order)
    return PoseResult(keypoints, result.detected.copy(), result.boxes)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


def one_euro_smooth(
    result: PoseResult, fps: float = 30.0, min_cutoff: float = 2.0, beta: float = 0.05, d_cutoff: float = 1.0
) -> PoseResult:
    """Causal One-Euro filter over x, y (cutoff rises with speed: less lag on fast limbs).

    ``min_cutoff`` and ``d_cutoff`` in Hz, ``beta`` in Hz per pixel/s (so it depends on the person's
    size in pixels); the filter restarts at every run. Being causal it trades jitter for lag: on a
    1 Hz, ±40 px swing at 30 fps with 3 px noise it halves the frame-to-frame jitter but the lag
    raises the error to the true track slightly. Prefer ``savgol`` (zero-phase) for offline gait.
    """
    dt = 1.0 / fps
    keypoints = result.keypoints.copy()
    for start, stop in valid_runs(result.detected):
        x_hat = result.keypoints[start, :, :2].astype(np.float64)
        dx_hat = np.zeros_like(x_hat)
        for t in range(start + 1, stop):
            x = result.keypoints[t, :, :2]
            a_d = _alpha(d_cutoff, dt)
            dx_hat = a_d * (x - x_hat) / dt + (1 - a_d) * dx_hat
            a = _alpha(min_cutoff + beta * np.abs(dx_hat), dt)
            x_hat = a * x + (1 - a) * x_hat
            keypoints[t, :, :2] = x_hat
    return PoseResult(keypoints, result.detected.copy(), result.boxes)


SMOOTHERS: dict[str, Callable[..., PoseResult]] = {"savgol": savgol_smooth, "one_euro": one_euro_smooth}


def make_smoother(method: str | None, **options: Any) -> Callable[[PoseResult], PoseResult]:
    """A PoseResult → PoseResult filter; ``None``/``'off'`` is the identity."""
    if method in (None, "", "off", "none"):
        return lambda result: result
    if method not in SMOOTHERS:
        raise ValueError(f"unknown smoothing '{method}'; choose one of {['off', *SMOOTHERS]}")
    function = SMOOTHERS[method]
    return lambda result: function(result, **options)
