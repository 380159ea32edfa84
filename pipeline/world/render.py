"""Software renderer of the synthetic gait world: shaded capsule people with clothes, on a background.

The body is a union of capsules (segments with a radius at each end) built from SMPL-24 joints and the
radii of a :class:`~pipeline.world.body.BodyShape`. Each capsule is rasterised as an *impostor*: over its
screen bounding box every pixel gets the closest point on the projected axis, a signed distance to the
projected outline (→ anti-aliased coverage), and a hemispherical bulge towards the camera (→ depth and a
surface normal). The normal drives Lambert + ambient shading, the DensePose front/back and left/right
split, and the V coordinate (angle around the segment); U is the position along the segment (along the
spine for the torso). All capsules of a frame are rasterised together as one flat array of fragments
(vectorised numpy, no per-pixel Python), which are then sorted by (pixel, depth) and composited front
to back: each fragment adds its colour times its coverage times the transmittance of the fragments in
front of it. Overlaps are thereby depth-ordered and anti-aliased edges blend correctly with whatever
lies behind them, body or background.

Ground truth: ``mask`` is the person as a segmenter would see it — body, clothes, coat *and* the carried
bag — i.e. composited coverage ≥ 0.5. ``parts`` (DensePose IUV) covers body surfaces only (clothing is
labelled as the body part it covers, a bag in front of the body hides the part: I = 0 there).
Keypoint visibility comes from the depth buffer: a joint is visible when the surface seen at its pixel
lies no more than that joint's flesh radius (+ margin) in front of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.skeleton import COCO17_JOINTS, SMPL24_INDEX
from pipeline.world.appearance import Appearance
from pipeline.world.body import BodyShape
from pipeline.world.camera import Camera
from pipeline.world.scene import Background, make_background

J = SMPL24_INDEX
UP = np.array([0.0, 1.0, 0.0])
NON_BODY = 255  # internal part id of occluders that are not body (the bag); written out as 0


# Per-primitive per-frame scalars (filled by _frame_params, read by _fragments and _surface).
_P_AX, _P_AY, _P_BX, _P_BY, _P_ZA, _P_ZB, _P_RA, _P_RB, _P_MA, _P_MB = range(10)
_P_L, _P_F, _P_S, _P_UP = 10, 13, 16, 19  # each: (along image x, along image y, towards camera) components
_P_TORSO = 22  # torso-U axis: origin x, y, direction x, y (already divided by its squared length)
_N_PARAMS = 26

DENSEPOSE_IDS = {
    "torso": (2, 1),  # (front, back)
    "upper_leg_right": (9, 7),
    "upper_leg_left": (10, 8),
    "lower_leg_right": (13, 11),
    "lower_leg_left": (14, 12),
    "upper_arm_left": (15, 17),
    "upper_arm_right": (16, 18),
    "lower_arm_left": (19, 21),
    "lower_arm_right": (20, 22),
    "hand_right": (3, 3),
    "hand_left": (4, 4),
    "foot_left": (5, 5),
    "foot_right": (6, 6),
    "head": (23, 24),  # (right side, left side)
    "none": (NON_BODY, NON_BODY),
}


# --------------------------------------------------------------------------------------------------
# public result


@dataclass
class Rendered:
    """A rendered sequence with its ground truth; pixel coordinates put pixel centres on integers."""

    rgb: np.ndarray  # [T, H, W, 3] uint8
    mask: np.ndarray  # [T, H, W] bool: person incl. clothes, coat and bag
    parts: np.ndarray  # [T, H, W, 3] uint8 DensePose IUV: I = part 1..24 (0 background), U, V in 0..255
    keypoints2d: np.ndarray  # [T, 17, 3] float32 COCO-17 (x, y, v): v 0 outside, 1 occluded, 2 visible
    joints2d: np.ndarray  # [T, 24, 3] float32 SMPL-24 (x, y, v), same visibility rule
    joints_depth: np.ndarray  # [T, 24] float32 camera-frame depth of each joint (m)
    K: np.ndarray  # [3, 3] intrinsics
    Rt: np.ndarray  # [T, 3, 4] world→camera extrinsics of every frame (camera shake included)
    background: str  # kind of the background
    # With more than one walker (:func:`render_sequence` ``others``): which walker the ground truth above
    # describes per frame (0 = the main walker, k = ``others[k - 1]``, -1 = nobody), and the visible
    # mask of everyone else. None for a single walker.
    walker: np.ndarray | None = None  # [T] int8
    mask_other: np.ndarray | None = None  # [T, H, W] bool


@dataclass
class Walker:
    """Another person in the scene (sequential or crossing walkers): posed joints, body, look, and the
    frames where they are in the scene (``present`` [T] bool, None = every frame)."""

    joints: np.ndarray
    orientations: np.ndarray | None
    body: BodyShape
    appearance: Appearance
    coat: bool = False
    bag: bool = False
    present: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------
# body frames and primitives


@dataclass
class _Prim:
    """One capsule over the whole sequence: endpoints [T, 3] and radii at each end (m)."""

    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray | float  # screen radius (m) at a; [T] when it changes per frame
    rb: np.ndarray | float
    part: str
    split: str  # "fwd": front/back by the forward axis; "side": right/left by the side axis
    fwd: np.ndarray  # [T, 3] reference forward (unit, world)
    side: np.ndarray  # [T, 3] reference right (unit, world)
    up: np.ndarray  # [T, 3] reference up (used by the head material)
    albedo: Callable[[dict[str, np.ndarray]], np.ndarray]
    torso_u: bool = False  # U along the spine instead of along the capsule
    ma: np.ndarray | float | None = None  # depth bulge at each end (m) when it differs from the radius
    mb: np.ndarray | float | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _orthogonal(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` orthogonal to unit ``axis`` (both [T, 3])."""
    return _unit(v - np.sum(v * axis, -1, keepdims=True) * axis)


@dataclass
class _Frames:
    """Per-frame body axes (world): pelvis and chest 'right', body forward/up, and the head frame."""

    hip_right: np.ndarray
    chest_right: np.ndarray
    fwd: np.ndarray
    up: np.ndarray
    head_fwd: np.ndarray
    head_up: np.ndarray
    head_right: np.ndarray


def _body_frames(joints: np.ndarray, orientations: np.ndarray | None) -> _Frames:
    """Facing from the orientations when given (rest pose faces +X), else from the hip and collar lines."""
    up = _unit(joints[:, J["neck"]] - joints[:, J["pelvis"]])
    hip_right = _orthogonal(joints[:, J["right_hip"]] - joints[:, J["left_hip"]], up)
    chest_right = _orthogonal(joints[:, J["right_collar"]] - joints[:, J["left_collar"]], up)
    fwd = _unit(np.cross(up, 0.5 * (hip_right + chest_right)))
    if orientations is not None:
        head = orientations[:, J["head"]]
        head_fwd, head_up = head[..., 0], head[..., 1]  # columns: the rotated rest X (forward), Y (up)
    else:
        head_up = _unit(joints[:, J["head"]] - joints[:, J["neck"]])
        head_fwd = _orthogonal(np.cross(up, chest_right), head_up)
    head_fwd = _orthogonal(head_fwd, head_up)
    head_right = np.cross(head_fwd, head_up)
    return _Frames(hip_right, chest_right, fwd, up, head_fwd, head_up, head_right)


# --------------------------------------------------------------------------------------------------
# materials (albedo as a function of the surface coordinates of the covered pixels)

Colour = tuple[int, int, int]


def _rgb(colour: Colour) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32)


def _pattern_mask(pattern: str, um: np.ndarray, ctx: dict[str, np.ndarray], circumference: float):
    """Where the top's pattern colour shows, from metric surface coordinates along (um) and around."""
    if pattern == "stripes":
        return (um * 12.5) % 1.0 < 0.45
    if pattern == "checks":
        return ((um * 10.0) % 1.0 < 0.5) ^ ((_around(ctx) * (circumference * 10.0)) % 1.0 < 0.5)
    if pattern == "dots":
        du, dv = (um * 14.0) % 1.0 - 0.5, (_around(ctx) * (circumference * 14.0)) % 1.0 - 0.5
        return du * du + dv * dv < 0.09
    return None


def _around(ctx: dict[str, np.ndarray]) -> np.ndarray:
    """V (0..1 around the segment) of the covered pixels, computed once and only when a pattern needs it."""
    if "V" not in ctx:
        ctx["V"] = _pseudo_angle(ctx["nf"], ctx["ns"])
    return ctx["V"]


Fabric = Callable[[dict[str, np.ndarray], np.ndarray, float], np.ndarray]


def _cloth(colour: Colour, pattern: str = "plain", pattern_colour: Colour = (0, 0, 0)) -> Fabric:
    """Albedo ``f(ctx, um, circumference)`` of one fabric: a [3] colour, or [n, 3] where patterned."""
    base, alt = _rgb(colour), _rgb(pattern_colour)

    def albedo(ctx: dict[str, np.ndarray], um: np.ndarray, circumference: float) -> np.ndarray:
        where = _pattern_mask(pattern, um, ctx, circumference)
        return base if where is None else np.where(where[:, None], alt, base)

    return albedo


def _zones(zones: list[tuple[float, Fabric]], length: float, circumference: float) -> Callable:
    """Albedo of a segment whose coverings change along U: ``zones`` = [(U upper bound, fabric), ...]."""
    zones = [z for z in zones[:-1] if z[0] > 0.0] + [zones[-1]]  # a bound ≤ 0 covers nothing

    def albedo(ctx: dict[str, np.ndarray]) -> np.ndarray:
        u = ctx["U"]
        um = u * length
        out = zones[-1][1](ctx, um, circumference)
        for bound, fabric in reversed(zones[:-1]):
            below = u < bound
            if below.any():
                out = np.where(below[:, None], fabric(ctx, um, circumference), out)
        return out

    return albedo


def _head_albedo(app: Appearance, brow_colour: np.ndarray) -> Callable:
    """Skin with a hair cap, eyes (white + dark iris), brows and a mouth on the face.

    The hair covers the back of the head down to the nape even when short (lower still when long): from
    behind a head is mostly hair, from the front mostly face, and that contrast is what tells a pose
    estimator whether it sees the person's front or back at low resolution.
    """
    skin, hair = _rgb(app.skin), _rgb(app.hair)
    iris = np.array([28, 22, 20], np.float32)
    sclera = np.array([215, 210, 200], np.float32)
    lips = skin * np.array([0.72, 0.42, 0.42], np.float32)
    # Hairline as a height (normal's up component) at the face (nf = 1) and at the back (nf = -1).
    front, back = 0.5, -0.45 - 0.5 * app.hair_length
    mid, half = (front + back) / 2, (front - back) / 2

    def ellipse(ns: np.ndarray, nu: np.ndarray, cs: float, cu: float, rs: float, ru: float) -> np.ndarray:
        return ((ns - cs) / rs) ** 2 + ((nu - cu) / ru) ** 2 < 1.0

    def albedo(ctx: dict[str, np.ndarray]) -> np.ndarray:
        nf, nu, ns = ctx["nf"], ctx["nu"], np.abs(ctx["ns"])
        out = skin
        face = nf > 0.5
        if face.any():
            out = np.where((face & ellipse(ns, nu, 0.34, 0.12, 0.22, 0.14))[:, None], skin * 0.8, out)
            out = np.where((face & ellipse(ns, nu, 0.34, 0.1, 0.17, 0.065))[:, None], sclera, out)
            out = np.where((face & ellipse(ns, nu, 0.34, 0.1, 0.08, 0.075))[:, None], iris, out)
            out = np.where((face & ellipse(ns, nu, 0.34, 0.27, 0.17, 0.04))[:, None], brow_colour, out)
            out = np.where((face & ellipse(ns, nu, 0.0, -0.42, 0.22, 0.05))[:, None], lips, out)
        return np.where((nu > mid + half * nf)[:, None], hair, out)

    return albedo


def _solid(colour: Colour) -> Callable:
    c = _rgb(colour)
    return lambda ctx: c


# --------------------------------------------------------------------------------------------------
# assembling the body


def _segment(a, b, ra, rb, part: str, albedo: Callable, fwd: np.ndarray, right: np.ndarray, up: np.ndarray) -> _Prim:
    """A limb capsule whose front/back split uses ``fwd`` made orthogonal to the limb axis."""
    return _Prim(a, b, ra, rb, part, "fwd", _orthogonal(fwd, _unit(b - a)), right, up, albedo)


def _leg_prims(joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance, side: str) -> list[_Prim]:
    """Thigh and shin (trousers down to ``trouser_length`` of the leg, skin below) and the shoe."""
    hip, knee, ankle, foot = (joints[:, J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle", "foot"))
    skin, bottom = _cloth(app.skin), _cloth(app.bottom)
    covered = app.trouser_length * (body.thigh + body.shin)  # metres of leg below the hip in trousers
    axes = (frames.fwd, frames.hip_right, frames.up)
    thigh = _zones([(covered / body.thigh, bottom), (9.0, skin)], body.thigh, 0.4)
    shin = _zones([((covered - body.thigh) / body.shin, bottom), (9.0, skin)], body.shin, 0.3)
    # The shoe: the kinematics keep a capsule of radius r_foot from the ankle to the ball joint on the
    # floor; the heel and toe extend it along the foot's own axis so it stays flat on the floor too.
    along = _unit(foot - ankle)
    heel = ankle - 0.25 * body.foot * along
    toe = foot + 0.25 * body.foot * along
    return [
        _segment(hip, knee, body.r_thigh, 0.72 * body.r_thigh, f"upper_leg_{side}", thigh, *axes),
        _segment(knee, ankle, 1.1 * body.r_shin, 0.62 * body.r_shin, f"lower_leg_{side}", shin, *axes),
        _segment(heel, toe, body.r_foot, 0.9 * body.r_foot, f"foot_{side}", _solid(app.shoes),
                 np.broadcast_to(UP, heel.shape), frames.hip_right, frames.up),
    ]  # fmt: skip


def _arm_prims(
    joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance, coat: bool, side: str
) -> list[_Prim]:
    """Upper arm and forearm (sleeve down to ``sleeve_length`` of the arm; a coat: full, thicker) and hand."""
    sh, el, wr, ha = (joints[:, J[f"{side}_{n}"]] for n in ("shoulder", "elbow", "wrist", "hand"))
    top = _cloth(app.coat) if coat else _cloth(app.top, app.top_pattern, app.top_pattern_colour)
    skin = _cloth(app.skin)
    thick = app.coat_thickness if coat else 1.0
    covered = (1.0 if coat else app.sleeve_length) * (body.upper_arm + body.forearm)
    axes = (frames.fwd, frames.chest_right, frames.up)
    upper = _zones([(covered / body.upper_arm, top), (9.0, skin)], body.upper_arm, 0.28)
    fore = _zones([((covered - body.upper_arm) / body.forearm, top), (9.0, skin)], body.forearm, 0.22)
    tip = wr + (ha - wr) * (0.85 / 0.6)  # the hand joint sits at 60 % of the hand length
    r_up, r_fore = body.r_upper_arm * thick, body.r_forearm * (1 + (thick - 1) * 0.7)  # less coat at the wrist
    return [
        _segment(sh, el, 1.12 * r_up, 0.85 * r_up, f"upper_arm_{side}", upper, *axes),
        _segment(el, wr, 1.05 * r_fore, 0.75 * r_fore, f"lower_arm_{side}", fore, *axes),
        _segment(wr, tip, 0.85 * body.r_hand, 0.8 * body.r_hand, f"hand_{side}", _solid(app.skin), *axes),
    ]


def _torso_fabric(app: Appearance, coat: bool, spine_len: float) -> Callable:
    top = _cloth(app.top, app.top_pattern, app.top_pattern_colour)
    return _zones([(9.0, _cloth(app.coat))] if coat else [(0.14, _cloth(app.bottom)), (9.0, top)], spine_len, 0.9)


def _torso_albedo(app: Appearance, coat: bool, spine_len: float) -> Callable:
    """Trousers up to the waist, the top above; a front neckline, and for a coat an open front.

    The neckline (skin in a V at the front, none at the back) and the coat's opening (the top showing
    down the front) are the cues that tell a viewer the torso's front from its back at low resolution.
    """
    zones = _torso_fabric(app, coat, spine_len)
    skin, shirt = _rgb(app.skin), _rgb(app.top)

    def albedo(ctx: dict[str, np.ndarray]) -> np.ndarray:
        out = zones(ctx)
        u, front, side = ctx["U"], ctx["nf"] > 0.0, np.abs(ctx["ns"])
        if coat:
            opening = front & (side < 0.1 + 0.9 * np.maximum(u - 0.7, 0.0))
            out = np.where(opening[:, None], shirt, out)
        neckline = front & (u > 0.9 + 0.5 * side)
        return np.where(neckline[:, None], skin, out)

    return albedo


def _coat_layer(app: Appearance, coat: bool) -> float:
    """Thickness (m) a coat adds over the torso: ``coat_thickness`` 1.15..1.35 → about 2..4 cm.

    The torso is much wider than a limb, so applying the limbs' radius factor to it would turn a coat
    into a barrel; the torso gets the same *absolute* padding a 12 cm limb would get.
    """
    return (app.coat_thickness - 1.0) * 0.12 if coat else 0.0


def _ellipse_radii(a: float, b: float, right: np.ndarray, fwd: np.ndarray, eye: np.ndarray, centre: np.ndarray):
    """Screen half-width and depth half-extent [T] of a vertical elliptic cylinder (semi-axes a along
    ``right``, b along ``fwd``) seen from ``eye``: sqrt(a² f² + b² s²) and sqrt(a² s² + b² f²), where
    (s, f) is the horizontal viewing direction in the body's (right, forward) axes."""
    view = centre - eye
    s, f = np.sum(view * right, -1), np.sum(view * fwd, -1)
    norm = np.maximum(np.hypot(s, f), 1e-9)
    s, f = s / norm, f / norm
    return np.sqrt(a * a * f * f + b * b * s * s), np.sqrt(a * a * s * s + b * b * f * f)


def _torso_stations(body: BodyShape) -> list[tuple[float, float, float]]:
    """Stations up the spine: (position 0..1 from pelvis to neck, half width, half depth) in metres."""
    hw, sw = body.hip_half_width, body.shoulder_half_width
    return [
        (0.12, 0.45 * hw + 0.72 * body.r_hips, 0.72 * body.r_hips),
        (0.32, 0.25 * hw + 0.8 * body.r_waist, 0.7 * body.r_waist),
        (0.55, 0.35 * sw + 0.5 * body.r_chest, 0.7 * body.r_chest),
        (0.78, 0.5 * sw + 0.4 * body.r_chest, 0.68 * body.r_chest),
    ]


def _torso_prims(
    joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance, coat: bool, eye: np.ndarray
) -> list[_Prim]:
    """The torso as a chain of vertical capsules with an elliptic cross-section (wider than deep).

    A capsule is round, so each link's radius is the view-dependent half-width of its ellipse (and its
    depth bulge the half-extent along the view), recomputed per frame as the walker turns; shading then
    follows a smooth vertical surface instead of a stack of bumps.
    """
    layer = _coat_layer(app, coat)
    pelvis, neck, spine3 = joints[:, J["pelvis"]], joints[:, J["neck"]], joints[:, J["spine3"]]
    spine_len = float(np.mean(np.linalg.norm(neck - pelvis, axis=-1)))
    albedo = _torso_albedo(app, coat, spine_len)
    shoulder = _torso_fabric(app, coat, spine_len)  # no neckline or opening on the shoulder caps
    stations = _torso_stations(body)
    points, radii = [], []
    for pos, a, b in stations:
        a, b = a + layer, b + layer
        centre = pelvis + pos * (neck - pelvis)
        right = _unit((1 - pos) * frames.hip_right + pos * frames.chest_right)
        points.append(centre)
        radii.append(_ellipse_radii(a, b, right, frames.fwd, eye, centre))
    prims = []
    for k in range(len(stations) - 1):
        prims.append(_Prim(points[k], points[k + 1], radii[k][0], radii[k + 1][0], "torso", "fwd", frames.fwd,
                           frames.chest_right, frames.up, albedo, torso_u=True,
                           ma=radii[k][1], mb=radii[k + 1][1]))
    # Shoulder caps: from each shoulder joint towards the neck, so the outline squares off at the top.
    for side in ("left", "right"):
        sh = joints[:, J[f"{side}_shoulder"]]
        inner = spine3 + 0.75 * (neck - spine3)
        r = 1.2 * body.r_upper_arm + layer
        prims.append(_Prim(sh - 0.2 * r * frames.up, inner, r, 1.3 * r, "torso", "fwd", frames.fwd,
                           frames.chest_right, frames.up, shoulder, torso_u=True))
    return prims  # fmt: skip


def _coat_skirt_prims(joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance) -> list[_Prim]:
    """The coat below the waist: thick coat-coloured upper thighs plus a flap bridging them."""
    fabric = _zones([(9.0, _cloth(app.coat))], body.thigh, 0.5)
    r = body.r_thigh + _coat_layer(app, True) + 0.01
    prims, mids = [], []
    for side in ("left", "right"):
        hip, knee = joints[:, J[f"{side}_hip"]], joints[:, J[f"{side}_knee"]]
        hem = hip + 0.5 * (knee - hip)
        mids.append(hem)
        axis = _unit(hem - hip)
        prims.append(_Prim(hip, hem, r, 0.95 * r, f"upper_leg_{side}", "fwd", _orthogonal(frames.fwd, axis),
                           frames.hip_right, frames.up, fabric))
    pelvis = joints[:, J["pelvis"]]
    for k, side in enumerate(("left", "right")):
        upper = pelvis + 0.55 * (mids[k] - pelvis)
        prims.append(_Prim(upper, 0.5 * (mids[0] + mids[1]) + 0.25 * (mids[k] - mids[1 - k]), 0.9 * r, 0.85 * r,
                           f"upper_leg_{side}", "fwd", frames.fwd, frames.hip_right, frames.up, fabric))
    return prims  # fmt: skip


def _head_prims(joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance) -> list[_Prim]:
    """Neck, head sphere (hair + face marks), jaw, nose, ears and, for long hair, a hair mass at the back."""
    head, neck = joints[:, J["head"]], joints[:, J["neck"]]
    r = body.r_head
    f, u, s = frames.head_fwd, frames.head_up, frames.head_right
    skin = _solid(app.skin)
    brow = _rgb(app.hair) * 0.8

    def prim(a, b, ra, rb, albedo):
        return _Prim(a, b, ra, rb, "head", "side", f, s, u, albedo)

    neck_top = neck + 0.75 * (head - neck) - 0.2 * r * f
    prims = [
        prim(neck, neck_top, 1.1 * body.r_neck, body.r_neck, skin),
        prim(head + 0.08 * r * u, head + 0.08 * r * u, 0.96 * r, 0.96 * r, _head_albedo(app, brow)),
        prim(head - 0.3 * r * u + 0.12 * r * f, head - 0.62 * r * u + 0.3 * r * f, 0.62 * r, 0.5 * r, skin),
        prim(head + 0.82 * r * f - 0.05 * r * u, head + 1.04 * r * f - 0.28 * r * u, 0.12 * r, 0.14 * r, skin),
    ]
    for sign in (-1.0, 1.0):
        ear = head + sign * 0.9 * r * s - 0.05 * r * f
        prims.append(prim(ear + 0.06 * r * u, ear - 0.1 * r * u, 0.2 * r, 0.17 * r, skin))
    if app.hair_length > 0.4:
        drop = (0.2 + 1.8 * (app.hair_length - 0.4)) * r
        # Behind the head and narrowing downwards, so from the front it frames the face instead of
        # showing under the chin like a beard.
        prims.append(prim(head - 0.35 * r * f + 0.25 * r * u, head - 0.75 * r * f - drop * u, 0.85 * r, 0.5 * r,
                          _solid(app.hair)))
    return prims


def _bag_prims(joints: np.ndarray, frames: _Frames, body: BodyShape, app: Appearance, coat: bool) -> list[_Prim]:
    """A cross-body shoulder bag: strap over the left shoulder, front and back, to a bag at the right hip.

    The bag swings with a lagged copy of the right thigh's fore-aft swing, like a bag bumped by the leg.
    """
    layer = _coat_layer(app, coat)
    colour = _solid(app.bag)
    pelvis = joints[:, J["pelvis"]]
    hip, knee = joints[:, J["right_hip"]], joints[:, J["right_knee"]]
    swing = np.sum((knee - hip) * frames.fwd, -1) / body.thigh
    lagged = np.empty_like(swing)
    acc = swing[0]
    for t, x in enumerate(swing):  # first-order low-pass: the bag lags the leg
        acc += 0.3 * (x - acc)
        lagged[t] = acc
    out = 0.45 * body.hip_half_width + 0.72 * body.r_hips + layer + 0.06
    centre = pelvis + out * frames.hip_right + 0.04 * UP + 0.08 * lagged[:, None] * frames.fwd
    prims = []
    # The bag itself: one fat capsule along the walking direction (a messenger/duffel bag, 36 x 17 cm).
    prims.append(_Prim(centre - 0.1 * frames.fwd, centre + 0.1 * frames.fwd, 0.085, 0.085, "none", "fwd",
                       frames.fwd, frames.hip_right, frames.up, colour))
    # The strap runs diagonally over the torso surface, from the left shoulder to the bag's top corner.
    neck = joints[:, J["neck"]]
    path = [(1.0, -0.55, 0.0)] + [(pos, lat, 1.0) for pos, lat in ((0.78, -0.35), (0.55, 0.05), (0.32, 0.45))]
    for sign in (1.0, -1.0):  # over the chest and over the back
        points = []
        for pos, lat, depth_weight in path:
            _, a, b = min(_torso_stations(body), key=lambda st, pos=pos: abs(st[0] - pos))
            a, b = a + layer, b + layer
            bulge = b * np.sqrt(max(1.0 - lat * lat, 0.0)) + 0.015
            points.append(pelvis + pos * (neck - pelvis) + lat * a * frames.chest_right
                          + sign * depth_weight * bulge * frames.fwd + (0.03 * UP if pos == 1.0 else 0.0))
        points.append(centre + 0.07 * UP)
        for p0, p1 in zip(points[:-1], points[1:], strict=True):
            prims.append(_Prim(p0, p1, 0.013, 0.013, "none", "fwd", frames.fwd, frames.hip_right, frames.up, colour))
    return prims  # fmt: skip


def build_primitives(
    joints: np.ndarray,
    orientations: np.ndarray | None,
    body: BodyShape,
    appearance: Appearance,
    *,
    coat: bool = False,
    bag: bool = False,
    eye: np.ndarray | None = None,
) -> list[_Prim]:
    """All capsules of the dressed body over the sequence, as seen from camera centre ``eye``."""
    eye = np.array([10.0, 1.0, 0.0]) if eye is None else np.asarray(eye, dtype=float)
    frames = _body_frames(joints, orientations)
    prims = _torso_prims(joints, frames, body, appearance, coat, eye)
    for side in ("left", "right"):
        prims += _leg_prims(joints, frames, body, appearance, side)
        prims += _arm_prims(joints, frames, body, appearance, coat, side)
    prims += _head_prims(joints, frames, body, appearance)
    if coat:
        prims += _coat_skirt_prims(joints, frames, body, appearance)
    if bag:
        prims += _bag_prims(joints, frames, body, appearance, coat)
    return prims


# --------------------------------------------------------------------------------------------------
# per-frame primitive parameters (vectorised over frames and primitives)


def _frame_params(prims: list[_Prim], camera: Camera, light: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """[T, P, _N_PARAMS] screen-space parameters of every capsule in every frame (see the _P_* indices)."""
    n_frames = joints.shape[0]
    frames = np.arange(n_frames)
    a = np.stack([p.a for p in prims], 1)  # [T, P, 3]
    b = np.stack([p.b for p in prims], 1)
    ca, cb = camera.to_camera(a, frames), camera.to_camera(b, frames)
    rot = camera.rotations(frames)  # [T, 3, 3]
    out = np.zeros((n_frames, len(prims), _N_PARAMS))
    f = camera.focal
    cx, cy = camera.principal_point
    za, zb = np.maximum(ca[..., 2], 1e-3), np.maximum(cb[..., 2], 1e-3)
    out[..., _P_AX], out[..., _P_AY] = f * ca[..., 0] / za + cx, f * ca[..., 1] / za + cy
    out[..., _P_BX], out[..., _P_BY] = f * cb[..., 0] / zb + cx, f * cb[..., 1] / zb + cy
    out[..., _P_ZA], out[..., _P_ZB] = za, zb
    def per_frame(values: list) -> np.ndarray:
        return np.stack([np.broadcast_to(np.asarray(v, dtype=float), (n_frames,)) for v in values], 1)

    ra, rb = per_frame([p.ra for p in prims]), per_frame([p.rb for p in prims])
    out[..., _P_RA], out[..., _P_RB] = f * ra / za, f * rb / zb
    out[..., _P_MA] = per_frame([p.ra if p.ma is None else p.ma for p in prims])
    out[..., _P_MB] = per_frame([p.rb if p.mb is None else p.mb for p in prims])
    # A per-capsule basis for the normal: image x and y made orthogonal to the direction towards the camera.
    towards = _unit(-(ca + cb))
    ex = _unit(np.array([1.0, 0.0, 0.0]) - towards[..., :1] * towards)
    ey = np.cross(ex, towards)
    basis = np.stack([ex, ey, towards], -2)  # [T, P, 3, 3]
    light_cam = np.einsum("tij,j->ti", rot, light)[:, None, :]
    vectors = {
        _P_L: np.broadcast_to(light_cam, a.shape),
        _P_F: np.stack([p.fwd for p in prims], 1),
        _P_S: np.stack([p.side for p in prims], 1),
        _P_UP: np.stack([p.up for p in prims], 1),
    }
    for col, vec in vectors.items():
        cam_vec = vec if col == _P_L else np.einsum("tij,tpj->tpi", rot, vec)
        out[..., col : col + 3] = np.einsum("tpij,tpj->tpi", basis, cam_vec)
    # Torso U axis: pelvis → neck on screen.
    axis_xy, _ = camera.project(joints[:, [J["pelvis"], J["neck"]]], frames)
    d = axis_xy[:, 1] - axis_xy[:, 0]
    d /= np.maximum(np.sum(d * d, -1, keepdims=True), 1e-6)
    out[..., _P_TORSO : _P_TORSO + 2] = axis_xy[:, None, 0]
    out[..., _P_TORSO + 2 : _P_TORSO + 4] = d[:, None]
    return out


# --------------------------------------------------------------------------------------------------
# rasterisation


def _pseudo_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Monotone stand-in for atan2(b, a) mapped to [0, 1) (0.5 = facing the forward axis); no trig."""
    r = b / (np.abs(a) + np.abs(b) + 1e-6)
    angle = np.where(a >= 0, r, np.where(b >= 0, 2.0 - r, -2.0 - r))
    return (angle + 2.0) * 0.25


@dataclass
class _Statics:
    """Per-primitive constants of the rasteriser, as arrays over primitives."""

    prims: list[_Prim]
    part_pos: np.ndarray  # part id where the split axis points towards the viewer's side of the normal
    part_neg: np.ndarray
    split_fwd: np.ndarray  # True: split by the forward axis (front/back), False: by the side axis
    torso_u: np.ndarray

    @classmethod
    def of(cls, prims: list[_Prim]) -> _Statics:
        ids = np.array([DENSEPOSE_IDS[p.part] for p in prims], np.float32)
        return cls(
            prims=prims,
            part_pos=ids[:, 0],
            part_neg=ids[:, 1],
            split_fwd=np.array([p.split == "fwd" for p in prims]),
            torso_u=np.array([p.torso_u for p in prims]),
        )


@dataclass
class _Layer:
    """The body layer of one frame at the pixels it touches (flat pixel indices)."""

    pixels: np.ndarray  # [S] every touched pixel
    colour: np.ndarray  # [S, 3] premultiplied colour
    cover: np.ndarray  # [S] coverage 0..1
    label_pixels: np.ndarray  # [L] pixels whose nearest solid (coverage ≥ 0.5) surface is known
    part: np.ndarray  # [L] part id of that surface (NON_BODY for the bag)
    u: np.ndarray  # [L]
    v: np.ndarray  # [L]
    depth: np.ndarray  # [L]


def _fragments(p: np.ndarray, width: int, height: int) -> dict[str, np.ndarray] | None:
    """Pixels near each capsule's projected axis, for all capsules at once.

    ``p`` [_N_PARAMS, P] float32. Every capsule's screen box is enumerated into one flat array (capsule
    order kept), each pixel gets its closest point on the axis (t), the offset from it (qx, qy) and is
    kept if it lies within the larger end radius + half a pixel.
    """
    ax, ay, bx, by, ra, rb = p[_P_AX], p[_P_AY], p[_P_BX], p[_P_BY], p[_P_RA], p[_P_RB]
    x0 = np.clip(np.floor(np.minimum(ax - ra, bx - rb)) - 1, 0, width).astype(np.int64)
    x1 = np.clip(np.ceil(np.maximum(ax + ra, bx + rb)) + 2, 0, width).astype(np.int64)
    y0 = np.clip(np.floor(np.minimum(ay - ra, by - rb)) - 1, 0, height).astype(np.int64)
    y1 = np.clip(np.ceil(np.maximum(ay + ra, by + rb)) + 2, 0, height).astype(np.int64)
    w = x1 - x0
    valid = (p[_P_ZA] > 0.05) & (p[_P_ZB] > 0.05) & (w > 0) & (y1 > y0)
    n = np.where(valid, w * (y1 - y0), 0)
    total = int(n.sum())
    if total == 0:
        return None
    prim = np.repeat(np.arange(len(n)), n)
    local = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    w_rep = np.repeat(w, n)
    row = local // w_rep
    x = local - row * w_rep + np.repeat(x0, n)
    y = row + np.repeat(y0, n)
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    inv_len2 = np.where(len2 > 1e-6, 1.0 / np.maximum(len2, 1e-6), 0.0).astype(np.float32)
    dx_rep, dy_rep = np.repeat(dx, n), np.repeat(dy, n)
    px = x.astype(np.float32) - np.repeat(ax, n)
    py = y.astype(np.float32) - np.repeat(ay, n)
    t = (px * dx_rep + py * dy_rep) * np.repeat(inv_len2, n)
    np.minimum(np.maximum(t, 0.0, out=t), 1.0, out=t)
    qx = px - t * dx_rep
    qy = py - t * dy_rep
    d2 = qx * qx + qy * qy
    reach = np.maximum(ra, rb) + 0.5
    keep = np.flatnonzero(d2 < np.repeat(reach * reach, n))
    if len(keep) == 0:
        return None
    return {
        "prim": prim[keep], "t": t[keep], "qx": qx[keep], "qy": qy[keep], "d2": d2[keep],
        "x": x[keep], "y": y[keep], "pixel": y[keep] * width + x[keep],
    }  # fmt: skip


def _surface(f: dict[str, np.ndarray], p: np.ndarray, light: dict) -> dict[str, np.ndarray]:
    """Coverage, depth, shading and surface coordinates of every fragment (capsule impostor model)."""
    prm = p[:, f["prim"]]  # [_N_PARAMS, M]: each fragment's capsule parameters, rows contiguous
    t, qx, qy = f["t"], f["qx"], f["qy"]
    d = np.sqrt(f["d2"])
    rad = prm[_P_RA] + t * (prm[_P_RB] - prm[_P_RA])
    alpha = rad + np.float32(0.5) - d  # coverage of a pixel-wide edge from the signed distance
    np.minimum(np.maximum(alpha, 0.0, out=alpha), 1.0, out=alpha)
    # The surface bulges towards the camera: s = distance from the axis / radius, h = sqrt(1 - s²).
    s = np.minimum(d / np.maximum(rad, np.float32(1e-3)), np.float32(1.0))
    h = np.sqrt(np.float32(1.0) - s * s)
    k = s / (d + np.float32(1e-6))
    ux, uy = qx * k, qy * k

    def dot(col: int) -> np.ndarray:  # normal · a stored vector, in the capsule's screen basis
        return ux * prm[col] + uy * prm[col + 1] + h * prm[col + 2]

    depth = prm[_P_ZA] + t * (prm[_P_ZB] - prm[_P_ZA]) - (prm[_P_MA] + t * (prm[_P_MB] - prm[_P_MA])) * h
    shade = np.maximum(dot(_P_L), 0.0) * np.float32(light["diffuse"]) + np.float32(light["ambient"])
    return {"alpha": alpha, "depth": depth, "shade": shade, "nf": dot(_P_F), "ns": dot(_P_S), "nu": dot(_P_UP)}


def _torso_u(f: dict[str, np.ndarray], p: np.ndarray, torso: np.ndarray) -> np.ndarray:
    """U of each fragment: along its capsule, or along the projected pelvis → neck axis for the torso."""
    o = p[_P_TORSO : _P_TORSO + 4, 0]
    along_spine = (f["x"] - o[0]) * o[2] + (f["y"] - o[1]) * o[3]
    u = np.where(torso[f["prim"]], along_spine.astype(np.float32), f["t"])
    return np.minimum(np.maximum(u, 0.0), 1.0)


def _albedo(statics: _Statics, f: dict[str, np.ndarray], surf: dict[str, np.ndarray]) -> np.ndarray:
    """[M, 3] colour of every fragment from its capsule's material (fragments are grouped by capsule)."""
    colour = np.empty((len(f["prim"]), 3), np.float32)
    bounds = np.searchsorted(f["prim"], np.arange(len(statics.prims) + 1))
    for i, prim in enumerate(statics.prims):
        a, b = bounds[i], bounds[i + 1]
        if a < b:
            ctx = {"U": surf["U"][a:b], "nf": surf["nf"][a:b], "ns": surf["ns"][a:b], "nu": surf["nu"][a:b]}
            colour[a:b] = prim.albedo(ctx)
    return colour


def _rasterise(statics: _Statics, p: np.ndarray, width: int, height: int, light: dict) -> _Layer | None:
    """Render the body of one frame: fragments → surfaces → depth-sorted 'over' compositing per pixel."""
    f = _fragments(p, width, height)
    if f is None:
        return None
    surf = _surface(f, p, light)
    surf["U"] = _torso_u(f, p, statics.torso_u)
    colour = _albedo(statics, f, surf) * surf["shade"][:, None]
    prim = f["prim"]
    split = np.where(statics.split_fwd[prim], surf["nf"], surf["ns"])
    part = np.where(split >= 0, statics.part_pos[prim], statics.part_neg[prim])
    # Front-to-back per pixel: sort by (pixel, depth); transmittance = running product of (1 - alpha).
    order = np.argsort(f["pixel"] * 1024.0 + surf["depth"], kind="stable")
    pix, alpha = f["pixel"][order], surf["alpha"][order]
    first = np.empty(len(pix), bool)
    first[0], first[1:] = True, pix[1:] != pix[:-1]
    starts = np.flatnonzero(first)
    log_clear = np.log(np.maximum(1.0 - alpha, 1e-6))
    before = np.cumsum(log_clear, dtype=np.float64) - log_clear  # sum over the nearer fragments, within and across pixels
    before -= np.repeat(before[starts], np.diff(np.append(starts, len(pix))))  # restart at each pixel
    weight = alpha * np.exp(before)
    premult = np.add.reduceat(colour[order] * weight[:, None], starts, axis=0)
    cover = 1.0 - np.exp(np.add.reduceat(log_clear, starts))
    # The label (part, U, V, depth) of a pixel is its nearest solid fragment.
    solid = np.flatnonzero(alpha >= 0.5)
    if len(solid):
        solid = solid[np.append(True, pix[solid[1:]] != pix[solid[:-1]])]
    src = order[solid]
    return _Layer(
        pixels=pix[starts], colour=premult, cover=cover, label_pixels=pix[solid], part=part[src],
        u=surf["U"][src], v=_pseudo_angle(surf["nf"][src], surf["ns"][src]), depth=surf["depth"][src],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# keypoints


def _coco_points(joints: np.ndarray, frames: _Frames, body: BodyShape) -> np.ndarray:
    """COCO-17 3-D points [T, 17, 3]: face points from the head frame, the rest straight from SMPL-24."""
    head, r = joints[:, J["head"]], body.r_head
    f, u, s = frames.head_fwd, frames.head_up, frames.head_right
    eye = lambda sign: head + r * (0.86 * f + 0.18 * u + sign * 0.34 * s)  # noqa: E731
    face = {
        "nose": head + r * (1.08 * f - 0.22 * u),
        "left_eye": eye(-1.0),
        "right_eye": eye(1.0),
        "left_ear": head - 0.95 * r * s,
        "right_ear": head + 0.95 * r * s,
    }
    return np.stack([face[n] if n in face else joints[:, J[n]] for n in COCO17_JOINTS], 1)


def _keypoint_tolerance(body: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """How far (m) behind the seen surface a joint may lie and still count as visible: its flesh radius."""
    margin = 0.05
    face = {"nose": 0.04, "left_eye": 0.03, "right_eye": 0.03, "left_ear": 0.04, "right_ear": 0.04}
    radius = {
        "pelvis": body.r_hips, "hip": body.r_thigh * 1.2, "knee": body.r_shin * 1.2, "ankle": body.r_foot * 1.2,
        "foot": body.r_foot, "spine1": body.r_waist, "spine2": body.r_waist, "spine3": body.r_chest,
        "neck": body.r_neck, "collar": body.r_chest * 0.6, "head": body.r_head, "shoulder": body.r_upper_arm * 1.3,
        "elbow": body.r_forearm * 1.2, "wrist": body.r_hand, "hand": body.r_hand,
    }  # fmt: skip

    def tol(name: str) -> float:
        if name in face:
            return face[name]
        key = name.split("_", 1)[-1] if name.startswith(("left_", "right_")) else name
        return radius[key] + margin

    from pipeline.skeleton import SMPL24_JOINTS

    return np.array([tol(n) for n in COCO17_JOINTS]), np.array([tol(n) for n in SMPL24_JOINTS])


@dataclass
class _Visibility:
    """Where each point of each frame falls (flat pixel, or -1 outside the image), to test against the
    frame's depth buffer: v = 0 outside, 2 when no surface lies more than ``tol`` in front of it, else 1."""

    pixel: np.ndarray  # [T, N] int
    depth: np.ndarray  # [T, N] minus the tolerance
    width: int
    height: int

    @classmethod
    def of(cls, xy: np.ndarray, depth: np.ndarray, tol: np.ndarray, width: int, height: int) -> _Visibility:
        col = np.rint(np.nan_to_num(xy[..., 0], nan=-1.0)).astype(np.int64)
        row = np.rint(np.nan_to_num(xy[..., 1], nan=-1.0)).astype(np.int64)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height) & (depth > 0)
        return cls(np.where(inside, row * width + col, -1), depth - tol, width, height)

    def at(self, t: int, zbuf: np.ndarray) -> np.ndarray:
        pixel = self.pixel[t]
        seen = zbuf.reshape(-1)[np.maximum(pixel, 0)]
        return np.where(pixel < 0, 0.0, np.where(self.depth[t] <= seen, 2.0, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# the sequence


def _shadow_blobs(joints: np.ndarray, body: BodyShape) -> np.ndarray:
    """[T, 3, 5] soft contact-shadow blobs (x, z, sx, sz, weight): the body under the pelvis and each foot."""
    pelvis = joints[:, J["pelvis"]]
    blobs = [np.stack([pelvis[:, 0], pelvis[:, 2], np.full(len(pelvis), 0.3), np.full(len(pelvis), 0.22),
                       np.full(len(pelvis), 0.55)], -1)]
    for side in ("left", "right"):
        centre = 0.5 * (joints[:, J[f"{side}_ankle"]] + joints[:, J[f"{side}_foot"]])
        lift = np.maximum(centre[:, 1] - body.r_foot, 0.0)
        blobs.append(np.stack([centre[:, 0], centre[:, 2], np.full(len(centre), 0.13), np.full(len(centre), 0.08),
                               0.7 * np.exp(-lift / 0.08)], -1))
    return np.stack(blobs, 1)  # fmt: skip


def render_sequence(
    joints: np.ndarray,
    orientations: np.ndarray | None,
    body: BodyShape,
    appearance: Appearance,
    *,
    coat: bool,
    bag: bool,
    camera: Camera,
    background: str | Background,
    rng: np.random.Generator,
    present: np.ndarray | None = None,
    others: list[Walker] | tuple[Walker, ...] = (),
    main: np.ndarray | None = None,
) -> Rendered:
    """Render a walking sequence with its ground truth (see the module docstring for the conventions).

    ``joints`` [T, 24, 3] SMPL-24 world positions (m); ``orientations`` [T, 24, 3, 3] global joint rotations
    relative to the rest pose (which faces +X), or None to derive the facing from the hip and collar lines.
    ``background`` is a :class:`Background` or a kind ('studio', 'wild') built here from ``rng``; a wild
    background's camera shake is applied to ``camera`` unless it already carries its own.

    More than one person (the world's ``walkers`` covariate): ``present`` [T] bool says where the main
    walker is in the scene, ``others`` adds more walkers, and ``main`` [T] int says whose ground truth
    (mask, parts, keypoints) each frame stores (0 = the main walker, k = ``others[k - 1]``, -1 = nobody;
    default: the main walker where present). Everyone is composited far to near; ``mask_other`` holds
    the visible mask of the walkers not described.
    """
    joints = np.asarray(joints, dtype=float)
    n_frames = joints.shape[0]
    if isinstance(background, str):
        background = make_background(background, camera, n_frames, rng)
    if background.size != (camera.width, camera.height):
        raise ValueError(f"background is {background.size}, camera is {(camera.width, camera.height)}")
    if camera.shake is None and background.shake_deg > 0:
        camera = camera.with_shake(rng, n_frames, background.shake_deg)
    if others or present is not None:
        walkers = [Walker(joints, orientations, body, appearance, coat, bag, present), *others]
        return _render_walkers(walkers, camera, background, main)
    frames = _body_frames(joints, orientations)
    prims = build_primitives(joints, orientations, body, appearance, coat=coat, bag=bag, eye=camera.position)
    statics = _Statics.of(prims)
    # [T, _N_PARAMS, P] float32: per frame, one contiguous row per parameter.
    params = np.ascontiguousarray(_frame_params(prims, camera, background.light, joints).transpose(0, 2, 1), np.float32)
    light = {"ambient": background.ambient, "diffuse": 1.12 - background.ambient}
    blobs = _shadow_blobs(joints, body)

    idx = np.arange(n_frames)
    coco_xy, coco_depth = camera.project(_coco_points(joints, frames, body), idx)
    smpl_xy, smpl_depth = camera.project(joints, idx)
    coco_tol, smpl_tol = _keypoint_tolerance(body)
    coco_vis = _Visibility.of(coco_xy, coco_depth, coco_tol, camera.width, camera.height)
    smpl_vis = _Visibility.of(smpl_xy, smpl_depth, smpl_tol, camera.width, camera.height)

    h, w = camera.height, camera.width
    rgb = np.empty((n_frames, h, w, 3), np.uint8)
    mask = np.zeros((n_frames, h, w), bool)
    parts = np.zeros((n_frames, h, w, 3), np.uint8)
    keypoints = np.zeros((n_frames, 17, 3), np.float32)
    joints2d = np.zeros((n_frames, 24, 3), np.float32)
    zbuf = np.empty((h, w), np.float32)
    for t in range(n_frames):
        layer = _rasterise(statics, params[t], w, h, light)
        frame = background.frame(t, camera, blobs[t])
        zbuf.fill(np.inf)
        _compose(frame, layer, mask[t], parts[t], zbuf)
        keypoints[t, :, :2], joints2d[t, :, :2] = coco_xy[t], smpl_xy[t]
        keypoints[t, :, 2] = coco_vis.at(t, zbuf)
        joints2d[t, :, 2] = smpl_vis.at(t, zbuf)
        rgb[t] = background.finish(t, frame)
    return Rendered(
        rgb=rgb,
        mask=mask,
        parts=parts,
        keypoints2d=keypoints,
        joints2d=joints2d,
        joints_depth=smpl_depth.astype(np.float32),
        K=camera.K,
        Rt=camera.extrinsics(idx),
        background=background.kind,
    )


@dataclass
class _Person:
    """One walker prepared for rendering: primitives, per-frame parameters, keypoint projections."""

    statics: _Statics
    params: np.ndarray
    blobs: np.ndarray
    present: np.ndarray
    coco_xy: np.ndarray
    coco_vis: _Visibility
    smpl_xy: np.ndarray
    smpl_vis: _Visibility
    depth: np.ndarray  # [T, 24] joint depth


def _prepare(walker: Walker, camera: Camera, background: Background, n_frames: int) -> _Person:
    joints = np.asarray(walker.joints, dtype=float)
    if joints.shape[0] != n_frames:
        raise ValueError(f"every walker needs {n_frames} frames of joints, got {joints.shape[0]}")
    frames = _body_frames(joints, walker.orientations)
    prims = build_primitives(joints, walker.orientations, walker.body, walker.appearance, coat=walker.coat,
                             bag=walker.bag, eye=camera.position)  # fmt: skip
    params = np.ascontiguousarray(_frame_params(prims, camera, background.light, joints).transpose(0, 2, 1), np.float32)
    idx = np.arange(n_frames)
    coco_xy, coco_depth = camera.project(_coco_points(joints, frames, walker.body), idx)
    smpl_xy, smpl_depth = camera.project(joints, idx)
    coco_tol, smpl_tol = _keypoint_tolerance(walker.body)
    present = np.ones(n_frames, bool) if walker.present is None else np.asarray(walker.present, bool)
    if present.shape != (n_frames,):
        raise ValueError(f"Walker.present must be [{n_frames}] bool, got {present.shape}")
    return _Person(
        statics=_Statics.of(prims), params=params, blobs=_shadow_blobs(joints, walker.body), present=present,
        coco_xy=coco_xy, coco_vis=_Visibility.of(coco_xy, coco_depth, coco_tol, camera.width, camera.height),
        smpl_xy=smpl_xy, smpl_vis=_Visibility.of(smpl_xy, smpl_depth, smpl_tol, camera.width, camera.height),
        depth=smpl_depth,
    )  # fmt: skip


def _render_walkers(walkers: list[Walker], camera: Camera, background: Background, main: np.ndarray | None) -> Rendered:
    """Several people in one scene: each rasterised on its own, composited far to near."""
    n_frames = np.asarray(walkers[0].joints).shape[0]
    people = [_prepare(w, camera, background, n_frames) for w in walkers]
    if main is None:
        main = np.where(people[0].present, 0, -1)
    main = np.asarray(main, dtype=np.int8)
    if main.shape != (n_frames,) or main.max() >= len(people) or main.min() < -1:
        raise ValueError(f"main must be [{n_frames}] ints in -1..{len(people) - 1}")
    light = {"ambient": background.ambient, "diffuse": 1.12 - background.ambient}
    h, w = camera.height, camera.width
    rgb = np.empty((n_frames, h, w, 3), np.uint8)
    mask = np.zeros((n_frames, h, w), bool)
    mask_other = np.zeros((n_frames, h, w), bool)
    parts = np.zeros((n_frames, h, w, 3), np.uint8)
    keypoints = np.zeros((n_frames, 17, 3), np.float32)
    joints2d = np.zeros((n_frames, 24, 3), np.float32)
    depth = np.zeros((n_frames, 24), np.float32)
    for t in range(n_frames):
        here = [k for k, p in enumerate(people) if p.present[t]]
        here.sort(key=lambda k: -float(people[k].depth[t, J["pelvis"]]))  # far first
        blobs = np.concatenate([people[k].blobs[t] for k in here]) if here else np.zeros((0, 5))
        frame = background.frame(t, camera, blobs)
        zbuf = np.full((h, w), np.inf, np.float32)
        seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in here:
            layer = _rasterise(people[k].statics, people[k].params[t], w, h, light)
            m, pt, z = np.zeros((h, w), bool), np.zeros((h, w, 3), np.uint8), np.full((h, w), np.inf, np.float32)
            _compose(frame, layer, m, pt, z)
            for other in seen.values():  # this walker is nearer: it hides the ones drawn before
                other[0][m] = False
            seen[k] = (m, pt)
            np.minimum(zbuf, z, out=zbuf)
        g = int(main[t])
        for k, (m, pt) in seen.items():
            if k == g:
                mask[t] = m
                parts[t][m] = pt[m]
            else:
                mask_other[t] |= m
        if g >= 0:
            p = people[g]
            keypoints[t, :, :2], joints2d[t, :, :2] = p.coco_xy[t], p.smpl_xy[t]
            keypoints[t, :, 2] = p.coco_vis.at(t, zbuf) if p.present[t] else 0.0
            joints2d[t, :, 2] = p.smpl_vis.at(t, zbuf) if p.present[t] else 0.0
            depth[t] = p.depth[t]
        rgb[t] = background.finish(t, frame)
    idx = np.arange(n_frames)
    return Rendered(
        rgb=rgb, mask=mask, parts=parts, keypoints2d=keypoints, joints2d=joints2d, joints_depth=depth,
        K=camera.K, Rt=camera.extrinsics(idx), background=background.kind, walker=main, mask_other=mask_other,
    )  # fmt: skip


def _compose(frame: np.ndarray, layer: _Layer | None, mask: np.ndarray, parts: np.ndarray, zbuf: np.ndarray) -> None:
    """Put the body layer 'over' ``frame`` and write ``mask``, ``parts`` and ``zbuf`` (all in place)."""
    if layer is None:
        return
    flat = frame.reshape(-1, 3)
    under = flat[layer.pixels].astype(np.float32)
    blended = layer.colour + (1.0 - layer.cover)[:, None] * under
    flat[layer.pixels] = np.minimum(blended + 0.5, 255.0).astype(np.uint8)
    mask.reshape(-1)[layer.pixels] = layer.cover >= 0.5
    body = layer.part != NON_BODY  # a bag in front of the body hides the part: I = 0 there
    iuv = np.stack([layer.part, layer.u * 255.0 + 0.5, np.minimum(layer.v * 256.0, 255.0)], 1).astype(np.uint8)
    parts.reshape(-1, 3)[layer.label_pixels[body]] = iuv[body]
    zbuf.reshape(-1)[layer.label_pixels] = layer.depth
