"""``posewarp``: a classical part-based animator, with sparse (COCO-17) or dense (IUV part map) guidance.

Both variants keep the reference person's look and take the motion from the driving guidance, over the
reference background with the reference person removed (``cv2.inpaint``, letterboxed to the driving
frame size). They share that backbone so the study's guidance-density question (does a denser guidance
carry more gait?) can be asked without a change of model.

**Sparse** (``posewarp-sparse``, needs the driving keypoints). The reference person (mask + COCO-17) is
cut into 14 rigid parts: torso, head, and per side upper arm, forearm, hand, thigh, shin and foot. Each
part has a capsule (a segment between its keypoints, radius proportional to the torso length; hands
run on along the forearm, feet forwards from the ankle). A mask pixel goes to the front-most part, in
the reference's own depth order, whose capsule holds it, else to the part it is relatively nearest;
nothing above the hip line belongs to a thigh. A part also takes its parent's and children's pixels
around the joint they share, so a joint does not open a wedge when its two parts rotate apart. For
every driving frame each part moves by an affine map from its reference segment onto the driving one:

* limbs: along the segment scaled by the length ratio, across it by the body scale (torso-length
  ratio), so a foreshortened limb is not thinned; hands and feet rigidly (body scale) about the wrist
  or ankle, turning with their limb;
* torso: a similarity taking the hip midpoint → shoulder midpoint axis onto the driving one;
* head: a similarity at the head centre (mean of the face points) turning with the neck → head axis.

The facing of a pose is the angle of (shoulders/hips left-right offset, nose offset) in its body frame.
Where the reference and the driving walker face opposite ways (left vs right side view, front vs back)
every part is mirrored across its axis. Parts are painted back to front: far-side limbs, torso, head,
near-side legs, near-side arms (frontal views: torso, head, legs, arms); the near side comes from the
facing, else from which side's keypoints are more confident. A side-view reference shows the far limbs
only in fragments, so the far chains take the near chains' texture. A part whose driving keypoints are
missing (confidence below ``min_confidence``, or an invalid frame) keeps its previous transform, or
stays hidden until it first has one; the counts are in the notes.

**Dense** (``posewarp-dense``, needs the driving part maps). Every driving body pixel (part I, surface
coordinates U, V) takes the reference colour at the same part and nearest (U, V): see :func:`uv_atlas`.

Both are deterministic (the seed is not used) and vectorised (OpenCV warps, numpy gathers); the only
Python loops run over frames and parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from pipeline.generation.generators.base import (
    Driving,
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    Reference,
    register_generator,
)
from pipeline.generation.generators.builtin import check_driving, check_reference, letterbox
from pipeline.skeleton import COCO17_INDEX

K = COCO17_INDEX
SIDES = ("left", "right")
FACE = tuple(K[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))

SPARSE_DEFAULTS: dict[str, Any] = {"min_confidence": 0.3}
DENSE_DEFAULTS: dict[str, Any] = {"uv_bins": 64}


# --------------------------------------------------------------------------------------------------
# the body model: parts, their joints and capsule radii (fractions of the torso length)


@dataclass(frozen=True)
class Limb:
    name: str
    joint_a: str
    joint_b: str
    radius: float  # capsule radius / torso length: claims pixels for the part
    distal: str  # name of the rigid end part beyond joint_b ("" for none)
    chain: str  # "arm" | "leg"


def _limbs() -> tuple[Limb, ...]:
    out = []
    for side in SIDES:
        out += [
            Limb(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow", 0.13, "", "arm"),
            Limb(f"{side}_lower_arm", f"{side}_elbow", f"{side}_wrist", 0.11, f"{side}_hand", "arm"),
            Limb(f"{side}_thigh", f"{side}_hip", f"{side}_knee", 0.19, "", "leg"),
            Limb(f"{side}_shin", f"{side}_knee", f"{side}_ankle", 0.14, f"{side}_foot", "leg"),
        ]
    return tuple(out)


LIMBS = _limbs()
LIMB = {limb.name: limb for limb in LIMBS}
TORSO_RADIUS = 0.32  # body half-depth beyond the shoulder/hip hull (a side view's torso is that thick)
HEAD_RADIUS = 0.27  # head (with hair) around the neck-top → head-centre segment
DISTAL_START = 0.95  # along-segment position (1 = distal joint) where the hand/foot begins
# Hands and feet have no COCO-17 end point: their capsules start at the wrist/ankle and reach this far
# (torso lengths): a hand along its forearm, a foot forwards (the facing) and a little down.
HAND = (0.36, 0.11)  # (length, radius)
FOOT = (0.36, 0.15)
MIN_LIMB_LENGTH = 0.12  # a reference limb shorter than this (torso lengths) has no usable direction
CHAINS = {
    "arm": ("upper_arm", "lower_arm", "hand"),
    "leg": ("thigh", "shin", "foot"),
}
PARTS = ("torso", "head", *(f"{s}_{p}" for s in SIDES for c in ("arm", "leg") for p in CHAINS[c]))
# The kinematic tree of the parts: a part and its parent overlap around the joint they share.
PARENT: dict[str, str] = {"head": "torso"}
for _s in SIDES:
    PARENT.update({
        f"{_s}_upper_arm": "torso", f"{_s}_lower_arm": f"{_s}_upper_arm", f"{_s}_hand": f"{_s}_lower_arm",
        f"{_s}_thigh": "torso", f"{_s}_shin": f"{_s}_thigh", f"{_s}_foot": f"{_s}_shin",
    })  # fmt: skip


def _other(side: str) -> str:
    return "right" if side == "left" else "left"


def paint_order(near: str) -> list[str]:
    """Parts back to front for a body whose ``near`` side ('left', 'right', or 'none' when frontal)."""

    def chain(side: str, kind: str) -> list[str]:
        return [f"{side}_{p}" for p in CHAINS[kind]]

    if near == "none":
        return [
            "torso",
            "head",
            *chain("left", "leg"),
            *chain("right", "leg"),
            *chain("left", "arm"),
            *chain("right", "arm"),
        ]
    far = _other(near)
    return [*chain(far, "arm"), *chain(far, "leg"), "torso", "head", *chain(near, "leg"), *chain(near, "arm")]


# --------------------------------------------------------------------------------------------------
# one pose's landmarks


@dataclass
class Landmarks:
    """What one COCO-17 pose says about the body (pixels); ``None`` where its keypoints are missing."""

    xy: np.ndarray  # [17, 2]
    ok: np.ndarray  # [17] bool: confident keypoints
    hip_mid: np.ndarray | None
    shoulder_mid: np.ndarray | None
    head: np.ndarray | None  # head centre: mean of the confident face points
    length: float  # torso length |shoulder_mid - hip_mid| (0 when unknown)

    def joint(self, name: str) -> np.ndarray | None:
        i = K[name]
        return self.xy[i] if self.ok[i] else None

    @property
    def axis(self) -> np.ndarray | None:
        """Unit vector hip midpoint → shoulder midpoint."""
        if self.length <= 1e-6:
            return None
        return (self.shoulder_mid - self.hip_mid) / self.length

    def facing(self) -> float | None:
        """Angle (rad) of the body's facing in the image: 0 front, ±π/2 side views, π back; None if unknown.

        cos ~ how far the person's left lies on the image side of the body-frame normal (front views),
        sin ~ how far the nose sits to that side of the ears/shoulders (side views); both in torso lengths,
        normalised by their typical extremes (0.5 and 0.2).
        """
        axis = self.axis
        if axis is None:
            return None
        normal = np.array([-axis[1], axis[0]])
        lateral = [
            (self.xy[K[f"left_{j}"]] - self.xy[K[f"right_{j}"]]) @ normal
            for j in ("shoulder", "hip")
            if self.ok[K[f"left_{j}"]] and self.ok[K[f"right_{j}"]]
        ]
        c = float(np.mean(lateral)) / self.length / 0.5 if lateral else 0.0
        s = 0.0
        nose = self.joint("nose")
        if nose is not None:
            ears = [self.xy[K[e]] for e in ("left_ear", "right_ear") if self.ok[K[e]]]
            base = np.mean(ears, 0) if ears else self.shoulder_mid
            s = float((nose - base) @ normal) / self.length / 0.2
        if abs(c) < 1e-6 and abs(s) < 1e-6:
            return None
        return float(np.arctan2(s, c))

    def side_confidence(self, conf: np.ndarray) -> float:
        """Mean confidence of the right limb joints minus the left ones, over the larger of the two."""
        joints = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
        right = np.mean([conf[K[f"right_{j}"]] for j in joints])
        left = np.mean([conf[K[f"left_{j}"]] for j in joints])
        top = max(right, left)
        return float((right - left) / top) if top > 0 else 0.0


def landmarks(keypoints: np.ndarray, min_confidence: float) -> Landmarks:
    """:class:`Landmarks` of one COCO-17 pose ``keypoints`` [17, 3] (x, y, confidence)."""
    kps = np.asarray(keypoints, dtype=np.float64)
    xy = kps[:, :2]
    ok = np.isfinite(kps).all(1) & (kps[:, 2] >= min_confidence)

    def mid(names: tuple[str, str]) -> np.ndarray | None:
        pts = [xy[K[n]] for n in names if ok[K[n]]]
        return np.mean(pts, 0) if pts else None

    hip, shoulder = mid(("left_hip", "right_hip")), mid(("left_shoulder", "right_shoulder"))
    face = [xy[i] for i in FACE if ok[i]]
    length = float(np.linalg.norm(shoulder - hip)) if hip is not None and shoulder is not None else 0.0
    return Landmarks(xy, ok, hip, shoulder, np.mean(face, 0) if face else None, length)


def near_side(facings: list[float], side_conf: list[float]) -> str:
    """'right', 'left' or 'none' (frontal): from the mean facing, else from which side is more confident.

    Facing right (sin > 0) shows the person's right side to the camera (see :meth:`Landmarks.facing`).
    """
    if facings:
        s = float(np.mean(np.sin(facings)))
        if abs(s) > 0.35:
            return "right" if s > 0 else "left"
    if side_conf:
        d = float(np.mean(side_conf))
        if abs(d) > 0.1:
            return "right" if d > 0 else "left"
    return "none"


# --------------------------------------------------------------------------------------------------
# segmentation of the reference person into parts


@dataclass
class Capsule:
    a: np.ndarray  # [2] start (pixels)
    b: np.ndarray  # [2] end
    radius: float  # pixels


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of ``points`` [N, 2] to segment a-b and their unclamped position t along it ([N] each)."""
    ab = b - a
    t = (points - a) @ ab / max(float(ab @ ab), 1e-9)
    closest = a + np.clip(t, 0.0, 1.0)[:, None] * ab
    return np.linalg.norm(points - closest, axis=1), t


def _torso_distance(points: np.ndarray, lm: Landmarks, shape: tuple[int, int]) -> np.ndarray:
    """Distance of ``points`` [N, 2] to the torso: 0 inside the shoulder/hip hull, else to its outline or axis."""
    d_axis, _ = _segment_distance(points, lm.hip_mid, lm.shoulder_mid)
    corners = [lm.joint(f"{s}_{j}") for s in SIDES for j in ("shoulder", "hip")]
    corners = np.array([c for c in corners if c is not None])
    if len(corners) < 3:
        return d_axis
    hull = cv2.convexHull(corners.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return d_axis
    inside = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(inside, np.rint(hull).astype(np.int32), 1)
    cols = np.clip(np.rint(points[:, 0]).astype(int), 0, shape[1] - 1)
    rows = np.clip(np.rint(points[:, 1]).astype(int), 0, shape[0] - 1)
    d_edges = np.min(
        [_segment_distance(points, hull[i], hull[(i + 1) % len(hull)])[0] for i in range(len(hull))], 0
    )
    return np.where(inside[rows, cols] > 0, 0.0, np.minimum(d_edges, d_axis))


def _head_capsule(lm: Landmarks) -> Capsule | None:
    if lm.head is None or lm.shoulder_mid is None:
        return None
    neck_top = lm.shoulder_mid + 0.6 * (lm.head - lm.shoulder_mid)
    return Capsule(neck_top, lm.head, HEAD_RADIUS * lm.length)


def _limb_capsule(lm: Landmarks, limb: Limb) -> Capsule | None:
    a, b = lm.joint(limb.joint_a), lm.joint(limb.joint_b)
    if a is None or b is None or np.linalg.norm(b - a) < MIN_LIMB_LENGTH * lm.length:
        return None
    return Capsule(a, b, limb.radius * lm.length)


def _distal_capsule(lm: Landmarks, limb: Limb, facing: float | None) -> Capsule | None:
    """The hand or foot beyond ``limb`` (a forearm or shin), for claiming its pixels."""
    cap = _limb_capsule(lm, limb)
    if cap is None:
        return None
    if limb.chain == "arm":
        length, radius = HAND
        direction = (cap.b - cap.a) / np.linalg.norm(cap.b - cap.a)
    else:
        length, radius = FOOT
        normal = np.array([-lm.axis[1], lm.axis[0]])
        direction = np.sin(facing or 0.0) * normal - 0.3 * lm.axis  # forwards in side views, down in frontal
    return Capsule(cap.b, cap.b + length * lm.length * direction, radius * lm.length)


@dataclass
class Layer:
    """One part cut out of the reference: a premultiplied RGBA crop and where it sits in the reference."""

    rgba: np.ndarray  # [h, w, 4] float32: colour × alpha (0..255) and alpha (0..1)
    origin: tuple[int, int]  # (x, y) of the crop's top-left pixel in the reference image
    pixels: int  # pixels the part owns (without the neighbours' overlap)


def segment_parts(image: np.ndarray, mask: np.ndarray, lm: Landmarks, near: str) -> dict[str, Layer]:
    """Cut the reference person (``mask`` [H, W] bool of ``image`` [H, W, 3]) into part layers.

    A pixel goes to the front-most part (``near`` side's depth order) whose capsule holds it, else to the
    part with the smallest distance / radius. Parts the keypoints cannot place are absent from the result.
    """
    if lm.axis is None:
        raise ValueError("segment_parts: the landmarks have no torso (shoulder and hip midpoints)")
    rows, cols = np.nonzero(mask)
    points = np.stack([cols, rows], 1).astype(np.float64)
    names = ["torso"]
    scores = [_torso_distance(points, lm, mask.shape) / (TORSO_RADIUS * lm.length)]
    along: dict[str, np.ndarray] = {}
    capsules = {"head": _head_capsule(lm), **{limb.name: _limb_capsule(lm, limb) for limb in LIMBS}}
    facing = lm.facing()
    capsules.update({limb.distal: _distal_capsule(lm, limb, facing) for limb in LIMBS if limb.distal})
    capsules = {name: cap for name, cap in capsules.items() if cap is not None}
    above_hips = (points - lm.hip_mid) @ lm.axis > 0.0
    for name, cap in capsules.items():
        d, t = _segment_distance(points, cap.a, cap.b)
        score = d / cap.radius
        if name.endswith("_thigh"):  # the pelvis above the hip joints moves with the torso, not the legs
            score[above_hips] = np.inf
        names.append(name)
        scores.append(score)
        along[name] = t
    score = np.stack(scores, 1)  # [N, P]
    # Front-to-back claim: reversing the paint order puts the front-most part first.
    rank = {name: i for i, name in enumerate(reversed(paint_order(near)))}
    order = np.argsort([rank[n] for n in names], kind="stable")
    inside = score[:, order] <= 1.0
    claimed = np.where(inside.any(1), order[np.argmax(inside, 1)], np.argmin(score, 1))
    owner = np.array(names, dtype=object)[claimed]
    for name, t in along.items():  # hands and feet: the forearm/shin beyond its distal joint
        distal = LIMB[name].distal if name in LIMB else ""
        if distal and distal in capsules:
            owner[(owner == name) & (t > DISTAL_START)] = distal
    return _layers(image, points, owner, capsules)


def _joint(child: str, capsules: dict[str, Capsule]) -> tuple[np.ndarray, float] | None:
    """Where ``child`` meets its parent and the radius of the joint's neighbourhood (None if not placed)."""
    if child in capsules:  # a limb or the head: its capsule starts at the joint
        return capsules[child].a, capsules[child].radius
    parent = capsules.get(PARENT[child])  # a hand or foot: beyond the end of its limb's capsule
    return (parent.b, parent.radius) if parent is not None else None


def _layers(
    image: np.ndarray, points: np.ndarray, owner: np.ndarray, capsules: dict[str, Capsule]
) -> dict[str, Layer]:
    """One :class:`Layer` per owned part, plus the pixels of its parent and children around their joints.

    The overlap closes the wedge a joint opens when the parts on either side of it rotate apart; the
    paint order decides which of the two shows where both cover a pixel.
    """
    take = {part: owner == part for part in PARTS}
    for child, parent in PARENT.items():
        joint = _joint(child, capsules)
        if joint is None:
            continue
        near = np.linalg.norm(points - joint[0], axis=1) <= joint[1]
        take[child] |= near & (owner == parent)
        take[parent] |= near & (owner == child)
    layers = {}
    for part in PARTS:
        owned = int((owner == part).sum())
        if owned:
            rows, cols = points[take[part], 1].astype(int), points[take[part], 0].astype(int)
            layers[part] = _crop(image, rows, cols, owned)
    return layers


def _crop(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, owned: int) -> Layer:
    y0, x0 = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[rows - y0, cols - x0, :3] = image[rows, cols]
    rgba[rows - y0, cols - x0, 3] = 1.0
    return Layer(rgba, (x0, y0), owned)


# --------------------------------------------------------------------------------------------------
# transforms from the reference pose to a driving pose


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def frame_map(
    origin_r: np.ndarray,
    axis_r: np.ndarray,
    origin_d: np.ndarray,
    axis_d: np.ndarray,
    along: float,
    across: float,
) -> np.ndarray:
    """[2, 3] affine map: ``origin_r`` → ``origin_d``, unit ``axis_r`` → ``along`` × unit ``axis_d``,
    its normal → ``across`` × the driving normal (a negative ``across`` mirrors across the axis)."""
    source = np.stack([axis_r, _perp(axis_r)])  # rows: reference coordinates along / across
    target = np.stack([axis_d * along, _perp(axis_d) * across], 1)  # columns
    linear = target @ source
    return np.hstack([linear, (origin_d - linear @ origin_r)[:, None]])


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else None


@dataclass
class PoseMapper:
    """Per-part affine maps from the reference pose ``ref`` onto driving poses."""

    ref: Landmarks
    mirror: float  # +1, or -1 when the two face opposite ways
    # part → the part whose reference segment and texture it uses, where that is its mirror part
    sources: dict[str, str]

    def maps(self, drv: Landmarks) -> dict[str, np.ndarray]:
        """{part: [2, 3] map} for the parts ``drv`` places; the others are left out."""
        ref, out = self.ref, {}
        if drv.axis is None:
            return out
        scale = drv.length / ref.length
        out["torso"] = frame_map(ref.hip_mid, ref.axis, drv.hip_mid, drv.axis, scale, self.mirror * scale)
        head = self._head(drv, scale)
        if head is not None:
            out["head"] = head
        for limb in LIMBS:
            self._limb(limb, drv, scale, out)
        return out

    def _head(self, drv: Landmarks, scale: float) -> np.ndarray | None:
        ref = self.ref
        if drv.head is None or ref.head is None:
            return None
        axis_r, axis_d = _unit(ref.head - ref.shoulder_mid), _unit(drv.head - drv.shoulder_mid)
        if axis_r is None or axis_d is None:
            return None
        return frame_map(ref.head, axis_r, drv.head, axis_d, scale, self.mirror * scale)

    def _limb(self, limb: Limb, drv: Landmarks, scale: float, out: dict[str, np.ndarray]) -> None:
        source = LIMB[self.sources.get(limb.name, limb.name)]
        ra, rb = self.ref.joint(source.joint_a), self.ref.joint(source.joint_b)
        da, db = drv.joint(limb.joint_a), drv.joint(limb.joint_b)
        if ra is None or rb is None or da is None or db is None:
            return
        length_r, length_d = float(np.linalg.norm(rb - ra)), float(np.linalg.norm(db - da))
        axis_r, axis_d = _unit(rb - ra), _unit(db - da)
        if axis_r is None or axis_d is None or length_r < MIN_LIMB_LENGTH * self.ref.length:
            return
        # Along the limb: its own length ratio (foreshortening); across: the body scale, never thinner.
        along = float(np.clip(length_d / length_r, 0.2 * scale, 5.0 * scale))
        out[limb.name] = frame_map(ra, axis_r, da, axis_d, along, self.mirror * scale)
        if limb.distal:  # the hand/foot: rigid about the distal joint, turning with the limb
            out[limb.distal] = frame_map(rb, axis_r, db, axis_d, scale, self.mirror * scale)


# --------------------------------------------------------------------------------------------------
# painting


def paint(canvas: np.ndarray, cover: np.ndarray, layer: Layer, matrix: np.ndarray) -> None:
    """Warp ``layer`` by ``matrix`` (reference → output pixels) and put it over ``canvas`` [H, W, 3] float32.

    Only the layer's bounding box in the output is touched; ``cover`` [H, W] accumulates the person's alpha.
    """
    height, width = canvas.shape[:2]
    h, w = layer.rgba.shape[:2]
    ox, oy = layer.origin
    src = matrix @ np.array([[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]])  # crop pixels → output
    corners = src @ np.array([[-1.0, w, -1.0, w], [-1.0, -1.0, h, h], [1.0, 1.0, 1.0, 1.0]])
    x0, y0 = max(int(np.floor(corners[0].min())), 0), max(int(np.floor(corners[1].min())), 0)
    x1, y1 = min(int(np.ceil(corners[0].max())) + 1, width), min(int(np.ceil(corners[1].max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    local = src.copy()
    local[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(layer.rgba, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    alpha = warped[..., 3]
    region = canvas[y0:y1, x0:x1]
    region *= (1.0 - alpha)[..., None]
    region += warped[..., :3]
    cover[y0:y1, x0:x1] += alpha * (1.0 - cover[y0:y1, x0:x1])


# --------------------------------------------------------------------------------------------------
# background


def person_mask(reference: Reference) -> np.ndarray | None:
    """The reference person's mask: Reference.mask, else its part map's body pixels, else None."""
    if reference.mask is not None:
        return np.asarray(reference.mask, dtype=bool)
    if reference.parts is not None:
        return np.asarray(reference.parts)[..., 0] > 0
    return None


def background_plate(reference: Reference, height: int, width: int) -> tuple[np.ndarray, dict]:
    """The reference frame without its person (inpainted), letterboxed to ``height`` x ``width`` [H, W, 3].

    The mask is grown by 2 pixels first so the person's anti-aliased outline goes too.
    """
    mask = person_mask(reference)
    if mask is None:
        raise GenerationError(
            "posewarp needs the reference person's mask (Reference.mask or Reference.parts)"
        )
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    clean = cv2.inpaint(np.ascontiguousarray(reference.image), grown, 5, cv2.INPAINT_TELEA)
    plate, how = letterbox(clean, height, width, border="replicate")
    return plate, {"background": "reference, person inpainted (cv2.INPAINT_TELEA)", "letterbox": how}


# --------------------------------------------------------------------------------------------------
# the two animators


@dataclass
class Animation:
    """Frames [T, H, W, 3] uint8 and the person's coverage [T, H, W] float32 (0..1) in them."""

    frames: np.ndarray
    cover: np.ndarray
    notes: dict[str, Any] = field(default_factory=dict)


def _frame_valid(driving: Driving) -> np.ndarray:
    return np.ones(driving.frame_count, bool) if driving.valid is None else np.asarray(driving.valid, bool)


def _chain_sources(layers: dict[str, Layer], ref: Landmarks, near: str) -> dict[str, str]:
    """Limb → the limb whose texture it uses, for the limb chains that borrow their mirror chain's.

    A side view (``near`` known) shows the far limbs only in fragments between the near limbs and the
    torso, so the far chains take the near chains' texture (clothes are left/right symmetric). In a
    frontal view a chain borrows only when the reference shows it barely (< 40 % of its mirror's pixels).
    Borrowing needs every limb of the lending chain placed in the reference.
    """
    sources = {}
    for parts in CHAINS.values():
        count = {s: sum(layers[f"{s}_{p}"].pixels for p in parts if f"{s}_{p}" in layers) for s in SIDES}
        for side in SIDES:
            other = _other(side)
            lender = [f"{other}_{p}" for p in parts]
            placed = all(_limb_capsule(ref, LIMB[n]) is not None for n in lender if n in LIMB) and all(
                n in layers for n in lender
            )
            hidden = side != near if near != "none" else count[side] < 0.4 * count[other]
            if hidden and placed:
                sources.update({f"{side}_{p}": f"{other}_{p}" for p in parts})
    return sources


def _views(
    ref: Landmarks, ref_conf: np.ndarray, drv: list[Landmarks | None], drv_conf: np.ndarray
) -> tuple[str, str, float]:
    """(reference near side, driving near side, mirror ±1) from the poses' facings and confidences.

    One decision per sequence: a walk keeps its direction, and a per-frame flip would flicker. The
    parts are mirrored when the driving facings lie mostly more than 90° from the reference's.
    """
    seen = [t for t, d in enumerate(drv) if d is not None]
    facings = [f for f in (drv[t].facing() for t in seen) if f is not None]
    drv_near = near_side(facings, [drv[t].side_confidence(drv_conf[t]) for t in seen])
    ref_facing = ref.facing()
    ref_near = near_side([ref_facing] if ref_facing is not None else [], [ref.side_confidence(ref_conf)])
    turned = ref_facing is not None and facings and np.median(np.cos(np.asarray(facings) - ref_facing)) < 0.0
    return ref_near, drv_near, -1.0 if turned else 1.0


def animate_sparse(reference: Reference, driving: Driving, *, min_confidence: float = 0.3) -> Animation:
    """The reference person's parts moved onto every driving COCO-17 pose, over the inpainted background."""
    check_reference(reference)
    check_driving(driving)
    if reference.keypoints is None:
        raise GenerationError("posewarp-sparse needs the reference keypoints (Reference.keypoints is None)")
    mask = person_mask(reference)
    if mask is None or not mask.any():
        raise GenerationError("posewarp-sparse needs a non-empty reference person mask (Reference.mask)")
    if min_confidence < 0:
        raise GenerationError(f"posewarp-sparse: min_confidence must be >= 0, got {min_confidence}")
    ref = landmarks(reference.keypoints, min_confidence)
    if ref.length < 2.0:
        raise GenerationError(
            "posewarp-sparse: the reference keypoints lack a shoulder and a hip above min_confidence"
        )
    valid = _frame_valid(driving)
    drv = [landmarks(k, min_confidence) if v else None for k, v in zip(driving.keypoints, valid, strict=True)]
    ref_near, drv_near, mirror = _views(
        ref, np.asarray(reference.keypoints)[:, 2], drv, np.asarray(driving.keypoints)[:, :, 2]
    )
    layers = segment_parts(np.asarray(reference.image), mask, ref, ref_near)
    mapper = PoseMapper(ref, mirror, _chain_sources(layers, ref, ref_near))
    height, width = int(driving.height), int(driving.width)
    plate, notes = background_plate(reference, height, width)
    frames, cover, held, hidden = _paint_sequence(plate, layers, mapper, drv, paint_order(drv_near))
    notes.update({
        "variant": "sparse", "near_side": drv_near, "reference_near_side": ref_near, "mirrored": mirror < 0,
        "reference_parts": sorted(layers), "borrowed_texture": mapper.sources, "held_frames": held,
        "hidden_frames": hidden, "invalid_frames": int((~valid).sum()), "seed": "unused (deterministic)",
    })  # fmt: skip
    return Animation(frames, cover, notes)


def _paint_sequence(
    plate: np.ndarray,
    layers: dict[str, Layer],
    mapper: PoseMapper,
    drv: list[Landmarks | None],
    order: list[str],
) -> tuple[np.ndarray, np.ndarray, dict[str, int], dict[str, int]]:
    """Paint every frame; a part without a driving transform keeps its last one, or is hidden until it has one."""
    height, width = plate.shape[:2]
    frames = np.empty((len(drv), height, width, 3), np.uint8)
    cover = np.zeros((len(drv), height, width), np.float32)
    background = plate.astype(np.float32)
    last: dict[str, np.ndarray] = {}
    held = {p: 0 for p in order}
    hidden = {p: 0 for p in order}
    for t, pose in enumerate(drv):
        maps = mapper.maps(pose) if pose is not None else {}
        canvas = background.copy()
        for part in order:
            source = mapper.sources.get(part, part)
            layer = layers.get(source)
            if part in maps:
                last[part] = maps[part]
            elif part in last:
                held[part] += 1
            if layer is None or part not in last:
                hidden[part] += 1
                continue
            paint(canvas, cover[t], layer, last[part])
        np.clip(canvas + 0.5, 0.0, 255.0, out=canvas)
        frames[t] = canvas.astype(np.uint8)
    return frames, cover, {k: v for k, v in held.items() if v}, {k: v for k, v in hidden.items() if v}


# Counterparts of the DensePose parts (1..24) and how V (the angle around the segment, 0.5 = facing
# forwards) maps between them: a left/right mirror negates the sideways normal (V → 1 - V), a front/back
# mirror the forward one (V → 1.5 - V, mod 1).
LEFT_RIGHT = {3: 4, 5: 6, 7: 8, 9: 10, 11: 12, 13: 14, 15: 16, 17: 18, 19: 20, 21: 22, 23: 24}
LEFT_RIGHT.update({b: a for a, b in list(LEFT_RIGHT.items())})
FRONT_BACK = {1: 2, 7: 9, 8: 10, 11: 13, 12: 14, 15: 17, 16: 18, 19: 21, 20: 22}
FRONT_BACK.update({b: a for a, b in list(FRONT_BACK.items())})
MATE_PENALTY = 2.0  # bins: a mirrored counterpart's sample must be this much nearer to beat the part's own


def _mirrored(grid: np.ndarray, kind: str) -> np.ndarray:
    """A part's [bins(U), bins(V), ...] grid as its left/right ('lr') or front/back ('fb') counterpart sees it."""
    bins = grid.shape[1]
    v = np.arange(bins)
    source = bins - 1 - v if kind == "lr" else (bins + bins // 2 - 1 - v) % bins
    return grid[:, source]


def _nearest(grid: np.ndarray, filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``grid`` [bins, bins, 3] with every bin set to its nearest filled bin (V periodic), and that distance."""
    bins = filled.shape[1]
    if not filled.any():
        return grid, np.full(filled.shape, np.inf)
    tiled = np.tile(filled, (1, 3))  # V wraps: look for the nearest bin in the copies either side too
    dist, (iu, iv) = ndimage.distance_transform_edt(~tiled, return_indices=True)
    iu, iv = iu[:, bins : 2 * bins], iv[:, bins : 2 * bins] % bins
    return grid[iu, iv], dist[:, bins : 2 * bins]


def uv_atlas(image: np.ndarray, iuv: np.ndarray, bins: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-part colour atlas [25, bins(U), bins(V), 3] float32 from a reference ``image`` and its ``iuv``.

    Row 0 (background) is unused. A bin holds the mean reference colour of its pixels, else the colour
    of the nearest sampled bin (V periodic) of the part itself or of its left/right counterpart seen
    mirrored, whichever is nearer (the counterpart by a margin): a side view shows the far limbs and
    the far side of the head only in fragments, the near ones in full. A part with neither borrows its
    front/back counterpart (mirrored), failing that the mean colour of the person.
    """
    part = iuv[..., 0].astype(np.int64)
    body = (part > 0) & (part <= 24)
    if not body.any():
        raise GenerationError("posewarp-dense: the reference part map (Reference.parts) has no body pixels")
    u = iuv[..., 1][body].astype(np.int64) * bins >> 8
    v = iuv[..., 2][body].astype(np.int64) * bins >> 8
    flat = (part[body] * bins + u) * bins + v
    size = 25 * bins * bins
    counts = np.bincount(flat, minlength=size).reshape(25, bins, bins)
    colours = image[body].astype(np.float64)
    sums = np.stack([np.bincount(flat, colours[:, c], minlength=size) for c in range(3)], -1)
    sampled = (sums.reshape(25, bins, bins, 3) / np.maximum(counts, 1)[..., None]).astype(np.float32)
    own = [_nearest(sampled[i], counts[i] > 0) for i in range(25)]
    atlas, notes = np.empty_like(sampled), {}
    for i in range(1, 25):
        grid, dist = own[i]
        mate = LEFT_RIGHT.get(i)
        if mate is not None and counts[mate].any():
            other = _mirrored(sampled[mate], "lr")
            other, other_dist = _nearest(other, _mirrored(counts[mate] > 0, "lr"))
            use = other_dist + MATE_PENALTY < dist
            grid = np.where(use[..., None], other, grid)
            if use.any():
                notes[str(i)] = f"{float(use.mean()):.0%} of bins from part {mate} (left/right mirror)"
        elif not counts[i].any():
            face = FRONT_BACK.get(i)
            if face is not None and counts[face].any():
                grid = _nearest(_mirrored(sampled[face], "fb"), _mirrored(counts[face] > 0, "fb"))[0]
                notes[str(i)] = f"part {face} (front/back mirror)"
            else:
                grid = np.broadcast_to(colours.mean(0).astype(np.float32), grid.shape)
                notes[str(i)] = "person mean colour"
        atlas[i] = grid
    present = [int(i) for i in range(1, 25) if counts[i].any()]
    return atlas, {"reference_parts": present, "borrowed_parts": notes}


def animate_dense(reference: Reference, driving: Driving, *, uv_bins: int = 64) -> Animation:
    """Every driving body pixel (I, U, V) painted with the reference colour at the same part and nearest (U, V)."""
    check_reference(reference)
    check_driving(driving)
    if driving.parts is None:
        raise GenerationError(
            "posewarp-dense needs dense part maps of the driving sequence (Driving.parts is None); "
            "use posewarp-sparse for keypoint guidance"
        )
    if reference.parts is None:
        raise GenerationError("posewarp-dense needs the reference's dense part map (Reference.parts is None)")
    if not 2 <= int(uv_bins) <= 256:
        raise GenerationError(f"posewarp-dense: uv_bins must be in 2..256, got {uv_bins}")
    bins = int(uv_bins)
    for name, parts in (("Reference.parts", reference.parts), ("Driving.parts", driving.parts)):
        if np.asarray(parts).dtype != np.uint8 or np.asarray(parts)[..., 0].max() > 24:
            raise GenerationError(f"posewarp-dense: {name} must be uint8 IUV (I 0..24, U, V 0..255)")
    atlas, atlas_notes = uv_atlas(np.asarray(reference.image), np.asarray(reference.parts), bins)
    height, width = int(driving.height), int(driving.width)
    plate, notes = background_plate(reference, height, width)
    parts = np.asarray(driving.parts)
    valid = _frame_valid(driving)
    frames = np.empty((driving.frame_count, height, width, 3), np.uint8)
    cover = np.zeros((driving.frame_count, height, width), np.float32)
    atlas8 = np.clip(atlas + 0.5, 0, 255).astype(np.uint8).reshape(-1, 3)
    last = -1
    for t in range(driving.frame_count):
        if valid[t]:
            last = t
        frames[t] = plate
        if last < 0:  # no usable part map yet: background only
            continue
        iuv = parts[last]
        body = (iuv[..., 0] > 0) & (iuv[..., 0] <= 24)
        sel = iuv[body].astype(np.int64)
        index = (sel[:, 0] * bins + (sel[:, 1] * bins >> 8)) * bins + (sel[:, 2] * bins >> 8)
        frames[t][body] = atlas8[index]
        cover[t][body] = 1.0
    notes.update({"variant": "dense", "uv_bins": bins, **atlas_notes, "invalid_frames": int((~valid).sum()),
                  "seed": "unused (deterministic)"})  # fmt: skip
    return Animation(frames, cover, notes)


# --------------------------------------------------------------------------------------------------
# the generators


def _options(
    name: str, defaults: Mapping[str, Any], given: Mapping[str, Any], error: type[Exception]
) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise error(f"{name}: unknown params {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **given}


def _number(name: str, options: dict[str, Any], key: str) -> float:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise GenerationError(f"{name}: param '{key}' must be a finite number, got {value!r}")
    return float(value)


def _sparse(reference: Reference, driving: Driving, options: dict[str, Any]) -> Animation:
    return animate_sparse(
        reference, driving, min_confidence=_number("posewarp-sparse", options, "min_confidence")
    )


def _dense(reference: Reference, driving: Driving, options: dict[str, Any]) -> Animation:
    bins = _number("posewarp-dense", options, "uv_bins")
    if bins != int(bins):
        raise GenerationError(f"posewarp-dense: param 'uv_bins' must be an integer, got {bins}")
    return animate_dense(reference, driving, uv_bins=int(bins))


# variant → (guidance it consumes, default params, animator)
VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, Any], Callable[..., Animation]]] = {
    "sparse": (("keypoints",), SPARSE_DEFAULTS, _sparse),
    "dense": (("parts",), DENSE_DEFAULTS, _dense),
}


class PoseWarp:
    """The posewarp animator as a :class:`~pipeline.generation.generators.base.Generator`.

    Constructor ``options`` set the defaults of the params; a job's ``params`` override them per job.
    Unknown names are an error (a typo must not silently fall back to a default).
    """

    def __init__(self, variant: str, **options: Any) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"posewarp: unknown variant {variant!r}; known: {sorted(VARIANTS)}")
        self.variant = variant
        self.name = f"posewarp-{variant}"
        self.needs, self.defaults, self._animate = VARIANTS[variant]
        self.options = _options(self.name, self.defaults, options, ValueError)

    def load(self) -> None:
        """Nothing to load: the animator is classical."""

    def close(self) -> None:
        """Nothing to release."""

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        options = _options(self.name, self.defaults, {**self.options, **dict(job.params)}, GenerationError)
        animation = self._animate(job.reference, job.driving, options)
        return GeneratedVideo(frames=animation.frames, fps=float(job.driving.fps), notes=animation.notes)


@register_generator("posewarp-sparse")
def make_posewarp_sparse(**options: Any) -> PoseWarp:
    """Part-based warping driven by the COCO-17 keypoints of the driving sequence."""
    return PoseWarp("sparse", **options)


@register_generator("posewarp-dense")
def make_posewarp_dense(**options: Any) -> PoseWarp:
    """Texture transfer through the dense part maps (IUV) of the driving sequence."""
    return PoseWarp("dense", **options)


# What each variant consumes, readable without building one (the config check uses it).
make_posewarp_sparse.needs = VARIANTS["sparse"][0]  # type: ignore[attr-defined]
make_posewarp_dense.needs = VARIANTS["dense"][0]  # type: ignore[attr-defined]
