"""Real walking from the CMU motion-capture clips shipped in ``mocap_data/``, retargeted to SMPL-24.

Readers: BVH (cgspeed's MotionBuilder-friendly 31-joint and Daz-friendly 43-joint conversions; any Euler channel
order, CRLF tolerated) and ASF/AMC (CMU's own format). Every source becomes a generic rig (joint offsets in its
zero pose + per-frame local rotations; single-frame marker glitches median-filtered out), retargeted onto the
*mean* body (unit leg length; :func:`pipeline.world.kinematics.reference_body`), so a clip is a body-independent
:class:`~pipeline.world.kinematics.Motion`:

* trunk joints (pelvis, spine, neck, head, collars) and the ankles take the source joint's rotation relative to
  the source's zero pose, so the source's anatomy (spine curvature, collar-bone slope) is not copied, only how
  it moves; each ankle gets one constant pitch so the foot is level in mid-stance;
* arm bones take the source bone's *direction* (the source rotation calibrated once on the zero pose, a T-pose,
  then swung onto the exact source direction); the subject's bone lengths never cross over;
* legs follow the source's ankle paths relative to the hips, scaled by the leg-length ratio, through two-bone
  IK bending in the source knee's plane: copying thigh/shin directions onto other proportions made feet float
  or scuff. Where the mean body's capsule foot would touch down earlier than the source's foot (it cannot roll
  onto the toe tips), the swinging ankle is raised to keep ~2 cm of clearance.

Only the steady walking frames are kept (frame 0 is the converter's rest pose; clip-specific start/stop parts
are cut), the heading is turned so the walk goes along +X, and gait cycles are found from the feet (heel
strikes, :func:`~pipeline.world.kinematics.gait_events`). :meth:`MocapClip.motion` loops whole cycles seamlessly
for as many frames as asked, at any frame rate: the loop's heading drift is spread over it, the remaining pose
mismatch is cross-faded into the frames leading into its start, and the root path continues.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter, uniform_filter1d
from scipy.spatial.transform import Rotation

from pipeline.skeleton import SMPL24_INDEX, SMPL24_PARENTS
from pipeline.world.body import BodyShape
from pipeline.world.kinematics import (
    GaitEvents,
    Motion,
    foot_contact,
    forward_kinematics,
    gait_events,
    local_from_global,
    resample,
    rot_y,
    rot_z,
    swing_rotation,
)
from pipeline.world.kinematics import reference_body as _reference_body

DATA_DIR = Path(__file__).with_name("mocap_data")
SOURCE_FPS = 120.0  # all CMU walking trials (the AMC format carries no frame time)

# Steady walking frames [first, end) per clip; frame 0 of every BVH file is a synthetic rest pose.
_STEADY = {
    "104_02": (60, 641),  # start-walk-stop take: stands at both ends
    "16_31": (90, None),  # starts from a near standstill
}
# Anthropometric ratio leg length / (thigh + shin) of the body model, to turn a source skeleton's bone lengths
# into the leg length that :attr:`Motion.root` is measured in.
_LEG_PER_THIGH_SHIN = 0.530 / 0.491


# --------------------------------------------------------------------------------------------- generic rig


@dataclass(frozen=True)
class _Rig:
    """A source skeleton with its motion: joint i sits at parent + R_parent @ offsets[i]."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray  # [J, 3] in the zero pose
    local: np.ndarray  # [F, J, 3, 3]
    root_pos: np.ndarray  # [F, 3]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def forward(self, zero_pose: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Positions [F, J, 3] and global rotations [F, J, 3, 3]; ``zero_pose`` gives one frame, all identity."""
        local = np.broadcast_to(np.eye(3), (1, *self.local.shape[1:])) if zero_pose else self.local
        root = np.zeros((1, 3)) if zero_pose else self.root_pos
        n, j = local.shape[:2]
        glob = np.empty((n, j, 3, 3))
        pos = np.empty((n, j, 3))
        for i, p in enumerate(self.parents):
            if p < 0:
                glob[:, i] = local[:, i]
                pos[:, i] = root + self.offsets[i]
            else:
                glob[:, i] = glob[:, p] @ local[:, i]
                pos[:, i] = pos[:, p] + glob[:, p] @ self.offsets[i]
        return pos, glob


def _lines(path: Path) -> list[str]:
    # The CMU conversions mix CRLF and LF line endings; splitlines handles both.
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def read_bvh(path: Path) -> _Rig:
    """Parse a BVH file (hierarchy + motion). End sites become joints named ``<parent>_end``."""
    lines = _lines(path)
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    motion_at = None
    for k, raw in enumerate(lines):
        tok = raw.split()
        if not tok:
            continue
        key = tok[0].upper()
        if key in ("ROOT", "JOINT") or (key == "END" and len(tok) > 1 and tok[1].upper() == "SITE"):
            name = tok[1] if key != "END" else f"{names[stack[-1]]}_end"
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            stack.append(len(names) - 1)
        elif key == "OFFSET":
            offsets[stack[-1]] = [float(x) for x in tok[1:4]]
        elif key == "CHANNELS":
            channels[stack[-1]] = tok[2 : 2 + int(tok[1])]
        elif key == "}":
            stack.pop()
        elif key == "MOTION":
            motion_at = k
            break
    if motion_at is None:
        raise ValueError(f"{path.name}: no MOTION section")
    n_frames = int(lines[motion_at + 1].split(":")[1])
    rows = [ln.split() for ln in lines[motion_at + 3 :] if ln.strip()]
    data = np.asarray(rows[:n_frames], dtype=float)
    return _bvh_rig(names, parents, np.asarray(offsets), channels, data)


def _bvh_rig(
    names: list[str], parents: list[int], offsets: np.ndarray, channels: list[list[str]], data: np.ndarray
) -> _Rig:
    n_frames = data.shape[0]
    local = np.broadcast_to(np.eye(3), (n_frames, len(names), 3, 3)).copy()
    root_pos = np.broadcast_to(offsets[0], (n_frames, 3)).copy()
    col = 0
    for j, chans in enumerate(channels):
        rot_cols, order = [], ""
        for c in chans:
            if c.lower().endswith("rotation"):
                rot_cols.append(col)
                order += c[0].upper()
            elif j == 0 and c.lower().endswith("position"):
                root_pos[:, "XYZ".index(c[0].upper())] += data[:, col]
            col += 1
        if rot_cols:
            # BVH applies the listed rotations as intrinsic turns in listed order: R = R_1 @ R_2 @ R_3.
            local[:, j] = Rotation.from_euler(order, data[:, rot_cols], degrees=True).as_matrix()
    if col != data.shape[1]:
        raise ValueError(f"BVH: {col} channels declared but {data.shape[1]} values per frame")
    return _Rig(tuple(names), tuple(parents), offsets, local, root_pos)


def read_asf_amc(asf_path: Path, amc_path: Path) -> _Rig:
    """Parse an ASF skeleton and AMC motion into a rig whose joints sit at each bone's start.

    ASF bone b with axis frame C_b (Euler XYZ, fixed axes) and AMC angles M_b (rotations about C_b's axes) has
    the zero-pose-relative rotation L_b = C_b M_b C_bᵀ; its end is start + R_b @ (direction · length).
    """
    bones, hierarchy, root_order = _parse_asf(asf_path)
    frames = _parse_amc(amc_path)
    n_frames = len(frames)
    names = ["root"]
    parents = [-1]
    offsets = [np.zeros(3)]
    order = _topological(hierarchy)
    for bone in order:
        parent = _parent_of(bone, hierarchy)
        names.append(bone)
        parents.append(names.index(parent))
        offsets.append(np.zeros(3) if parent == "root" else bones[parent]["vector"])
    for bone in order:
        if not hierarchy.get(bone):
            names.append(f"{bone}_end")
            parents.append(names.index(bone))
            offsets.append(bones[bone]["vector"])
    local = np.broadcast_to(np.eye(3), (n_frames, len(names), 3, 3)).copy()
    root_vals = np.array([f["root"] for f in frames])
    root_pos = np.zeros((n_frames, 3))
    angles = np.zeros((n_frames, 3))
    for c, dof in enumerate(root_order):
        if dof.startswith("T"):
            root_pos[:, "XYZ".index(dof[1])] = root_vals[:, c]
        else:
            angles[:, "XYZ".index(dof[1])] = root_vals[:, c]
    local[:, 0] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    for bone in order:
        dofs = bones[bone]["dof"]
        if not dofs:
            continue
        values = np.array([f.get(bone, np.zeros(len(dofs))) for f in frames])
        angles = np.zeros((n_frames, 3))
        for c, dof in enumerate(dofs):
            angles[:, "xyz".index(dof[1])] = values[:, c]
        axis = bones[bone]["axis"]
        motion = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
        local[:, names.index(bone)] = axis @ motion @ axis.T
    return _Rig(tuple(names), tuple(parents), np.asarray(offsets), local, root_pos)


def _parse_asf(path: Path) -> tuple[dict[str, dict], dict[str, list[str]], list[str]]:
    text = "\n".join(_lines(path))
    root_order = re.search(r":root.*?order\s+([^\n]+)", text, re.S).group(1).split()  # type: ignore[union-attr]
    bones: dict[str, dict] = {}
    for block in re.findall(r"begin(.*?)end", text.split(":bonedata")[1].split(":hierarchy")[0], re.S):
        fields = {ln.split()[0]: ln.split()[1:] for ln in block.strip().splitlines() if ln.split()}
        direction = np.array(fields["direction"], dtype=float)
        axis = np.array(fields["axis"][:3], dtype=float)
        if fields["axis"][3].upper() != "XYZ":
            raise ValueError(f"{path.name}: only XYZ axis order is supported")
        bones[fields["name"][0]] = {
            "vector": direction / np.linalg.norm(direction) * float(fields["length"][0]),
            "axis": Rotation.from_euler("xyz", axis, degrees=True).as_matrix(),
            "dof": fields.get("dof", []),
        }
    hierarchy: dict[str, list[str]] = {}
    body = text.split(":hierarchy")[1]
    for ln in body.split("begin")[1].split("end")[0].strip().splitlines():
        tok = ln.split()
        if tok:
            hierarchy[tok[0]] = tok[1:]
    return bones, hierarchy, root_order


def _parse_amc(path: Path) -> list[dict[str, np.ndarray]]:
    frames: list[dict[str, np.ndarray]] = []
    for ln in _lines(path):
        tok = ln.split()
        if not tok or tok[0].startswith((":", "#")):
            continue
        if len(tok) == 1 and tok[0].isdigit():
            frames.append({})
        elif frames:
            frames[-1][tok[0]] = np.array(tok[1:], dtype=float)
    return frames


def _topological(hierarchy: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    todo = list(hierarchy.get("root", []))
    while todo:
        bone = todo.pop(0)
        order.append(bone)
        todo.extend(hierarchy.get(bone, []))
    return order


def _parent_of(bone: str, hierarchy: dict[str, list[str]]) -> str:
    return next(p for p, children in hierarchy.items() if bone in children)


# --------------------------------------------------------------------------------------------- SMPL mapping


@dataclass(frozen=True)
class _Mapping:
    """How one source skeleton family maps onto SMPL-24."""

    drivers: dict[str, str]  # SMPL joint → source joint whose rotation it takes
    bones: dict[str, tuple[str, str]]  # SMPL limb joint → source (start, end) whose direction its bone copies
    hips: tuple[str, str]  # source left / right hip joints
    feet: tuple[tuple[str, str, str], tuple[str, str, str]]  # source (ankle, ball, toe tip), left and right
    unit_m: float  # metres per source length unit


_LIMB_ROLES = ("hip", "knee", "ankle", "collar", "shoulder", "elbow", "wrist")
# SMPL joint whose offset is the bone a limb joint rotates.
_BONE_CHILD = {"hip": "knee", "knee": "ankle", "shoulder": "elbow", "elbow": "wrist", "wrist": "hand"}


def _make_mapping(
    trunk: dict[str, str],
    chain: tuple[str, ...],
    hand_end: str,
    toe: tuple[str, str],
    prefixes: tuple[str, str],
    unit_m: float,
) -> _Mapping:
    """``chain``: source names of hip, knee, ankle, collar, shoulder, elbow, wrist with ``{S}`` = side prefix;
    ``toe``: the ball and the toe-tip joints."""
    drivers = dict(trunk)
    bones: dict[str, tuple[str, str]] = {}
    hips, feet = [], []
    for side, prefix in zip(("left", "right"), prefixes, strict=True):
        name = {role: c.format(S=prefix) for role, c in zip(_LIMB_ROLES, chain, strict=True)}
        name["hand"] = hand_end.format(S=prefix)
        drivers |= {f"{side}_{role}": name[role] for role in _LIMB_ROLES}
        # A limb bone runs from its driver joint to the next joint down the chain.
        bones |= {f"{side}_{role}": (name[role], name[child]) for role, child in _BONE_CHILD.items()}
        hips.append(name["hip"])
        feet.append((name["ankle"], toe[0].format(S=prefix), toe[1].format(S=prefix)))
    return _Mapping(drivers, bones, (hips[0], hips[1]), (feet[0], feet[1]), unit_m)


_CMU_UNIT_M = 0.0254 / 0.45  # ASF "length 0.45": one unit is 1/0.45 inch
_MB = _make_mapping(
    {"pelvis": "Hips", "spine1": "LowerBack", "spine2": "Spine", "spine3": "Spine1", "neck": "Neck1", "head": "Head"},
    ("{S}UpLeg", "{S}Leg", "{S}Foot", "{S}Shoulder", "{S}Arm", "{S}ForeArm", "{S}Hand"),
    "{S}HandIndex1", ("{S}ToeBase", "{S}ToeBase_end"), ("Left", "Right"), _CMU_UNIT_M,
)  # fmt: skip
# The Daz figure's root "hip" also carries the lower trunk (hip → abdomen is ~40 % of the spine).
_DAZ = _make_mapping(
    {"pelvis": "hip", "spine1": "hip", "spine2": "abdomen", "spine3": "chest", "neck": "neck", "head": "head"},
    ("{S}Thigh", "{S}Shin", "{S}Foot", "{S}Collar", "{S}Shldr", "{S}ForeArm", "{S}Hand"),
    "{S}Mid1", ("{S}Foot_end", "{S}Foot_end"), ("l", "r"), 0.01,
)  # fmt: skip
_ASF = _make_mapping(
    {"pelvis": "root", "spine1": "lowerback", "spine2": "upperback", "spine3": "thorax", "neck": "upperneck", "head": "head"},
    ("{S}femur", "{S}tibia", "{S}foot", "{S}clavicle", "{S}humerus", "{S}radius", "{S}wrist"),
    "{S}hand", ("{S}toes", "{S}toes_end"), ("l", "r"), _CMU_UNIT_M,
)  # fmt: skip


def _mapping_for(rig: _Rig) -> _Mapping:
    for mapping in (_MB, _DAZ, _ASF):
        if mapping.hips[0] in rig.names:
            return mapping
    raise ValueError("unknown skeleton: none of LeftUpLeg / lThigh / lfemur")


# --------------------------------------------------------------------------------------------- retargeting


@dataclass(frozen=True)
class _Retargeted:
    local: np.ndarray  # [F, 24, 3, 3], target axes, the source's heading
    pelvis: np.ndarray  # [F, 3] hip-joint midpoint, target axes, source units
    ankles: np.ndarray  # [F, 2, 3]
    balls: np.ndarray  # [F, 2, 3]
    toes: np.ndarray  # [F, 2, 3] toe tips
    leg_length: float  # source units
    scale: float  # mean-body (unit leg) lengths per source unit, as used by the leg IK


def _source_axes(pos0: np.ndarray, rig: _Rig, mapping: _Mapping) -> np.ndarray:
    """Rotation [3, 3] from source axes to ours (X forward, Y up, Z right), read off the zero pose."""
    right = pos0[rig.index(mapping.hips[1])] - pos0[rig.index(mapping.hips[0])]
    right[1] = 0.0
    right /= np.linalg.norm(right)
    up = np.array([0.0, 1.0, 0.0])
    return np.stack([np.cross(up, right), up, right])


def _retarget(rig: _Rig, mapping: _Mapping, lift: np.ndarray | None = None) -> _Retargeted:
    """SMPL-24 rotations of the source motion; ``lift`` [F, 2] raises the (left, right) ankle relative to the
    hip (unit-leg lengths) before the leg IK."""
    pos, glob = rig.forward()
    pos0 = rig.forward(zero_pose=True)[0][0]
    axes = _source_axes(pos0, rig, mapping)
    world = pos @ axes.T
    mean_body = _reference_body()
    rest = mean_body.rest_offsets()
    leg_dirs, scale = _leg_ik(world, pos0, rig, mapping, mean_body, lift)
    out = np.empty((pos.shape[0], 24, 3, 3))
    for name, j in SMPL24_INDEX.items():  # SMPL parents precede their children
        driver = mapping.drivers.get(name)
        if driver is None:  # toes, hand ends: rigid with their parent
            out[:, j] = out[:, SMPL24_PARENTS[j]]
            continue
        # The source rotation (relative to its zero pose), expressed in our axes.
        g = axes @ glob[:, rig.index(driver)] @ axes.T
        if name in mapping.bones:
            start, end = (rig.index(n) for n in mapping.bones[name])
            d_rest = rest[SMPL24_INDEX[_bone_child(name)]]
            # Calibrate on the zero pose (T-pose, splayed legs), then swing onto the wanted direction.
            g = g @ swing_rotation(d_rest, axes @ (pos0[end] - pos0[start]))
            wanted = leg_dirs[name] if name in leg_dirs else world[:, end] - world[:, start]
            g = swing_rotation(g @ d_rest, wanted) @ g
        out[:, j] = g
    feet = [[rig.index(n) for n in pair] for pair in mapping.feet]
    hips = [rig.index(n) for n in mapping.hips]
    return _Retargeted(
        local=local_from_global(out),
        pelvis=world[:, hips].mean(axis=1),
        ankles=world[:, [feet[0][0], feet[1][0]]],
        balls=world[:, [feet[0][1], feet[1][1]]],
        toes=world[:, [feet[0][2], feet[1][2]]],
        leg_length=float(
            np.mean([_thigh_shin(pos0, rig, mapping, s) for s in ("left", "right")]) * _LEG_PER_THIGH_SHIN
        ),
        scale=scale,
    )


def _bone_child(name: str) -> str:
    side, role = name.split("_")
    return f"{side}_{_BONE_CHILD[role]}"


def _thigh_shin(pos0: np.ndarray, rig: _Rig, mapping: _Mapping, side: str) -> float:
    """Source hip → knee → ankle length of one side (source units)."""
    hip, knee = (rig.index(n) for n in mapping.bones[f"{side}_hip"])
    ankle = rig.index(mapping.bones[f"{side}_knee"][1])
    return float(np.linalg.norm(pos0[knee] - pos0[hip]) + np.linalg.norm(pos0[ankle] - pos0[knee]))


def _leg_ik(
    world: np.ndarray,
    pos0: np.ndarray,
    rig: _Rig,
    mapping: _Mapping,
    body: BodyShape,
    lift: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], float]:
    """Thigh and shin directions [F, 3] per side that put the mean body's ankles where the source's are.

    Copying bone directions alone would carry the source's proportions into the contacts: the CMU skeletons
    have thigh/shin ratios from 0.83 to 1.05 and left/right legs up to 3 % different, which made a swing
    foot of a symmetric body brush the floor. Instead both hip → ankle vectors are scaled by one leg-length
    ratio (the measured ankle paths relative to the pelvis are what agrees with the floor, so one scale
    keeps every clearance) and the mean body's two-bone chain is solved for them, bending in the source
    knee's plane. Where the longer source leg reaches beyond the mean body's leg, the pelvis is lowered
    for that frame (both ankles move up relative to it) rather than the leg stretched or the foot lifted.
    The foot keeps its transferred orientation. Returns the directions and the scale.
    """
    thigh = body.thigh
    shin = body.shin + body.ankle_height - body.r_foot  # knee → ankle joint of the body model
    length = thigh + shin
    scale = length / np.mean([_thigh_shin(pos0, rig, mapping, s) for s in ("left", "right")])
    sides = {}
    for k, side in enumerate(("left", "right")):
        hip, knee = (rig.index(n) for n in mapping.bones[f"{side}_hip"])
        ankle = rig.index(mapping.bones[f"{side}_knee"][1])
        # The knee bends towards where the source knee points; a nearly straight source leg does not say,
        # so a tenth of a thigh towards the toes (knees point roughly where feet do) keeps the bend forward
        # instead of following marker noise sideways.
        toes = world[:, rig.index(mapping.feet[k][1])] - world[:, ankle]
        toes /= np.linalg.norm(toes, axis=1, keepdims=True)
        thigh_len = np.linalg.norm(pos0[knee] - pos0[hip])
        pole = world[:, knee] - world[:, hip] + 0.1 * thigh_len * toes
        sides[side] = ((world[:, ankle] - world[:, hip]) * scale, pole)
    # Lowering the pelvis by `drop` shortens a reach r to r + drop·ŷ: the drop that makes each leg fit.
    limit = length * (1.0 - 1e-4)
    drops = []
    for reach, _ in sides.values():
        flat = np.sum(reach[:, [0, 2]] ** 2, axis=1)
        drops.append(-reach[:, 1] - np.sqrt(np.maximum(limit**2 - flat, 0.0)))
    drop = np.maximum(np.max(drops, axis=0), 0.0)
    out = {}
    for k, (side, (reach, pole)) in enumerate(sides.items()):
        up = drop + (0.0 if lift is None else lift[:, k])
        reach = reach + up[:, None] * np.array([0.0, 1.0, 0.0])
        knee_at = _two_bone(reach, pole, thigh, shin)
        out[f"{side}_hip"] = knee_at
        out[f"{side}_knee"] = reach - knee_at
    return out, float(scale)


def _two_bone(reach: np.ndarray, pole: np.ndarray, upper: float, lower: float) -> np.ndarray:
    """Knee positions [F, 3] (relative to the hip) of a two-bone chain reaching ``reach`` [F, 3], bending
    towards ``pole`` [F, 3]; a reach beyond the chain is shortened to a just-straight leg."""
    dist = np.linalg.norm(reach, axis=1)
    d = np.clip(dist, abs(upper - lower) + 1e-6, (upper + lower) * (1.0 - 1e-6))
    u = reach / dist[:, None]
    along = (upper**2 - lower**2 + d**2) / (2.0 * d)
    across = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    side = pole - np.sum(pole * u, axis=1, keepdims=True) * u
    norm = np.linalg.norm(side, axis=1, keepdims=True)
    # A straight source leg has no bending plane: bend forward (its across distance is ~0 anyway).
    fallback = np.cross(u, np.cross([1.0, 0.0, 0.0], u))
    side = np.where(norm > 1e-9, side / np.maximum(norm, 1e-12), fallback)
    return along[:, None] * u + across[:, None] * side


def _yaw_of(rotation: np.ndarray) -> np.ndarray:
    """Heading angle (rad, as in :func:`rot_y`) of where rotations [..., 3, 3] send the +X axis."""
    x = rotation[..., :, 0]
    return np.arctan2(-x[..., 2], x[..., 0])


def _turn_to_x(direction: np.ndarray) -> np.ndarray:
    """The rotation about +Y that sends a horizontal direction (x, ·, z) onto +X."""
    return rot_y(np.arctan2(direction[2], direction[0]))


# --------------------------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class MocapClip:
    """One retargeted CMU walking trial: its steady frames at 120 fps, walking along +X.

    ``root`` is the hip-joint midpoint in leg lengths of the *source* subject (x = z = 0 at the first frame).
    ``loop`` = (a, b): frames a..b span ``loop_cycles`` whole gait cycles from a heel strike; ``loop_rotations`` and
    ``loop_root`` [b - a + 1] are those frames with the end-to-start mismatch spread evenly over the loop, so
    frame b equals frame a (shifted by one loop's progression): :meth:`motion` repeats them after frame a.
    """

    name: str
    subject: str
    fps: float
    local_rotations: np.ndarray  # [N, 24, 3, 3]
    root: np.ndarray  # [N, 3]
    events: GaitEvents
    loop: tuple[int, int]
    loop_cycles: int
    loop_rotations: np.ndarray
    loop_root: np.ndarray
    leg_length_m: float
    stride_length: float  # leg lengths per gait cycle (two steps)

    @property
    def n_frames(self) -> int:
        return int(self.local_rotations.shape[0])

    def cadence(self) -> float:
        """Steps per minute measured from the heel strikes."""
        return self.events.cadence()

    def speed(self) -> float:
        """Walking speed in leg lengths per second over the loop."""
        a, b = self.loop
        return float(self.loop_root[-1, 0] - self.loop_root[0, 0]) * self.fps / (b - a)

    def stream(self, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """``n_frames`` consecutive frames at 120 fps: the lead-in, then the loop repeated, root continued."""
        a, b = self.loop
        period = b - a
        reps = max(1, int(np.ceil((n_frames - a) / period)))
        step = self.loop_root[period] - self.loop_root[0]
        step[1] = 0.0
        rotations = [self.local_rotations[:a]] + [self.loop_rotations[:period]] * reps
        roots = [self.root[:a]] + [self.loop_root[:period] + r * step for r in range(reps)]
        return np.concatenate(rotations)[:n_frames], np.concatenate(roots)[:n_frames]

    def motion(self, fps: float, n_frames: int, start_frame: int = 0) -> Motion:
        """``n_frames`` at ``fps``, starting ``start_frame`` output frames into the steady walk (looped as needed)."""
        if n_frames < 1 or start_frame < 0:
            raise ValueError("motion: need n_frames >= 1 and start_frame >= 0")
        total = start_frame + n_frames
        needed = int(np.ceil((total - 1) * self.fps / fps + 1e-9)) + 2
        rotations, root = self.stream(needed)
        source = Motion(fps=self.fps, local_rotations=rotations, root=root)
        out = resample(source, fps, total)
        root = out.root[start_frame:].copy()
        root[:, [0, 2]] -= root[0, [0, 2]]
        meta = {"source": "cmu", "clip": self.name, "subject": self.subject, "start_frame": int(start_frame)}
        return Motion(
            fps=float(fps),
            local_rotations=out.local_rotations[start_frame:],
            root=root,
            name=f"cmu:{self.name}",
            meta=meta,
        )


def list_clips() -> dict[str, list[str]]:
    """Clip names per CMU subject (one subject = one motion identity), e.g. ``{"02": ["02_01", "02_02"], …}``."""
    clips: dict[str, list[str]] = {}
    for path in sorted(DATA_DIR.iterdir()):
        if path.suffix.lower() in (".bvh", ".amc"):
            clips.setdefault(path.stem.split("_")[0], []).append(path.stem)
    return dict(sorted(clips.items(), key=lambda kv: int(kv[0])))


def _despike(rig: _Rig, seconds: float = 0.06) -> _Rig:
    """The rig with every joint's rotation median-filtered over ``seconds`` (odd frame count).

    Some CMU takes have marker dropouts that throw a joint by tens of degrees for single frames (35_01's
    left foot swings between -27° and +22° from frame to frame around frame 100); a median removes such
    spikes and keeps real motion, which is smooth at this time scale (at 120 fps: 7 frames).
    """
    size = max(1, round(seconds * SOURCE_FPS)) | 1
    n, j = rig.local.shape[:2]
    # Filter rotation vectors relative to each joint's average rotation so no angle wraps around.
    ref = np.stack([Rotation.from_matrix(rig.local[:, k]).mean().as_matrix() for k in range(j)])
    rel = Rotation.from_matrix((np.swapaxes(ref, -1, -2)[None] @ rig.local).reshape(-1, 3, 3)).as_rotvec()
    smooth = median_filter(rel.reshape(n, j, 3), size=(size, 1, 1), mode="nearest")
    local = ref[None] @ Rotation.from_rotvec(smooth.reshape(-1, 3)).as_matrix().reshape(n, j, 3, 3)
    return _Rig(rig.names, rig.parents, rig.offsets, local, rig.root_pos)


def _read(name: str) -> _Rig:
    bvh = DATA_DIR / f"{name}.bvh"
    if bvh.exists():
        return read_bvh(bvh)
    amc = DATA_DIR / f"{name}.amc"
    if amc.exists():
        return read_asf_amc(DATA_DIR / f"{name.split('_')[0]}.asf", amc)
    raise FileNotFoundError(f"no mocap clip {name!r} in {DATA_DIR}")


@functools.lru_cache(maxsize=32)
def load_clip(name: str) -> MocapClip:
    """Read, retarget, trim, turn to +X and prepare the loop of one clip (cached)."""
    rig = _despike(_read(name))
    mapping = _mapping_for(rig)
    first, end = _STEADY.get(name, (1, None))
    keep = slice(first, end)
    rt = _retarget(rig, mapping)
    pelvis, ankles, balls = rt.pelvis[keep], rt.ankles[keep], rt.balls[keep]
    events = gait_events(ankles, balls, pelvis, SOURCE_FPS)
    lift = np.zeros((rt.local.shape[0], 2))
    lift[keep] = _swing_lift(rt, keep, events)
    if lift.any():
        rt = _retarget(rig, mapping, lift)
    local = rt.local[keep].copy()
    _level_feet(local, events)
    root = pelvis / rt.leg_length
    root[:, [0, 2]] -= root[0, [0, 2]]
    a, b, cycles = _choose_loop(local, events)
    loop_rot, loop_root = _close_loop(local, root, a, b)
    # Face +X along the loop's net progression; the lead-in gets the same turn so it joins the loop smoothly.
    turn = _turn_to_x(loop_root[-1] - loop_root[0])
    for rot, path in ((local, root), (loop_rot, loop_root)):
        rot[:, 0] = turn @ rot[:, 0]
        path[:] = path @ turn.T
    stride = _stride_length(ankles @ turn.T, events) / rt.leg_length
    return MocapClip(
        name=name,
        subject=name.split("_")[0],
        fps=SOURCE_FPS,
        local_rotations=local,
        root=root,
        events=events,
        loop=(a, b),
        loop_cycles=cycles,
        loop_rotations=loop_rot,
        loop_root=loop_root,
        leg_length_m=rt.leg_length * mapping.unit_m,
        stride_length=stride,
    )


# Least clearance (leg lengths, ~2 cm) a swinging foot keeps over the supporting one while the source says
# it is in the air; it ramps in over 50 ms after toe-off and out before heel strike.
_MIN_CLEARANCE = 0.02
_CLEARANCE_RAMP_S = 0.05


def _swing_lift(rt: _Retargeted, keep: slice, events: GaitEvents) -> np.ndarray:
    """How far [N, 2] to raise each swinging ankle so the mean body's swing foot stays off the floor.

    The capsule foot cannot roll past the ball onto the toe tips as the source's trailing foot does, so
    late in stance the mean body's supporting leg is up to ~2 cm shorter than the source's, and the other
    foot, still swinging, would touch down early: stopped while moving forward, it jerks the body back.
    Wherever the source has one foot in stance and the other in the air, the swinging foot's lowest
    point is kept at least ``_MIN_CLEARANCE`` above the supporting one's (on the mean body).
    """
    local = rt.local[keep].copy()
    _level_feet(local, events)
    body = _reference_body()
    offsets = body.rest_offsets()
    offsets[0] = 0.0
    have = foot_contact(forward_kinematics(offsets, local)[0], body.r_foot)[0]
    stance = np.stack([events.left_stance, events.right_stance], axis=1)
    ramp = max(1, round(_CLEARANCE_RAMP_S * SOURCE_FPS))
    deficit = np.zeros(have.shape)
    for k in range(2):
        single = ~stance[:, k] & stance[:, 1 - k]
        need = _MIN_CLEARANCE * np.minimum(_run_distance(single) / ramp, 1.0)
        deficit[:, k] = np.where(single, np.maximum(need - (have[:, k] - have[:, 1 - k]), 0.0), 0.0)
    # An envelope (max, then mean over ~40 ms) so the correction rises and falls smoothly.
    size = max(1, round(0.04 * SOURCE_FPS)) | 1
    envelope = maximum_filter1d(deficit, size=size, axis=0)
    return uniform_filter1d(envelope, size=size, axis=0)


def _run_distance(mask: np.ndarray) -> np.ndarray:
    """Frames from each True frame to the nearest edge of its run (1 at the first and last frame of a run)."""
    out = np.zeros(len(mask))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        idx = np.arange(a, b)
        out[a:b] = np.minimum(idx - a, b - 1 - idx) + 1
    return out


def _level_feet(local: np.ndarray, events: GaitEvents) -> None:
    """Turn each ankle by a constant pitch so the foot is level in mid-stance (in place).

    The source's zero pose is not a standing pose and its foot points (ankle → toe marker) differ from our
    flat capsule foot, so the transferred foot pitch carries a subject-specific offset of a few degrees.
    A foot in mid-stance is flat on the floor in every walk, which gives the correction; a foot tilted
    toes-up would shorten the stance leg and let the swing foot touch down early.
    """
    glob = forward_kinematics(np.zeros((24, 3)), local)[1]
    for side, stance in (("left", events.left_stance), ("right", events.right_stance)):
        j = SMPL24_INDEX[f"{side}_ankle"]
        mid = _mid_stance(stance)
        if not mid.any():
            continue
        forward = glob[mid, j, :, 0]  # the rest foot points along +X
        pitch = np.arctan2(forward[:, 1], np.linalg.norm(forward[:, [0, 2]], axis=1))
        local[:, j] = local[:, j] @ rot_z(-float(np.median(pitch)))


def _mid_stance(stance: np.ndarray) -> np.ndarray:
    """Frames in the middle 40 % of each stance run: the foot is flat there (heel down, toes down)."""
    out = np.zeros_like(stance)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], stance.astype(int), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        cut = int(round(0.3 * (b - a)))
        out[a + cut : b - cut] = True
    return out


_SEAM_WINDOW_S = 0.25  # the loop's end is cross-faded into the frames leading into its start over this long
_MIN_SEAM_FRAMES = 8


def _choose_loop(local: np.ndarray, events: GaitEvents, window: int = 6) -> tuple[int, int, int]:
    """(start, end, cycles) of the loop: between two heel strikes of one foot, as many cycles as the clip
    holds with room for the seam's cross-fade before the start; the end nudged (± ``window`` frames) to the
    frame whose pose best matches the start; among equally long loops the best-matching one."""
    best: tuple[int, float, int, int] | None = None
    for strikes in (events.left_strikes, events.right_strikes):
        for i, start in enumerate(strikes):
            for j in range(i + 1, len(strikes)):
                ends = np.arange(
                    max(start + 1, strikes[j] - window), min(len(local) - 1, strikes[j] + window) + 1
                )
                if len(ends) == 0 or _seam_frames(int(start), int(ends.min())) < _MIN_SEAM_FRAMES:
                    continue
                costs = [_pose_distance(local[start], local[e]) for e in ends]
                k = int(np.argmin(costs))
                candidate = (j - i, -costs[k], int(start), int(ends[k]))
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
    if best is None:
        raise ValueError("mocap clip has less than one whole gait cycle after its first heel strike")
    cycles, _, a, b = best
    return a, b, cycles


def _seam_frames(a: int, b: int) -> int:
    return min(round(_SEAM_WINDOW_S * SOURCE_FPS), a, (b - a) // 3)


def _pose_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Summed rotation angle (rad) between two poses [24, 3, 3], the pelvis's heading left out."""
    rel = np.swapaxes(first[1:], -1, -2) @ second[1:]
    return float(np.linalg.norm(Rotation.from_matrix(rel).as_rotvec(), axis=-1).sum())


def _close_loop(local: np.ndarray, root: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames a..b made to repeat seamlessly: frame b becomes frame a (one loop further on).

    The pelvis's heading drift over the loop is spread evenly (a turn about the vertical, which changes no
    contact) and the root's steps are turned with it so the path straightens. The remaining pose mismatch is
    cross-faded over the last ``_SEAM_WINDOW_S`` into the frames that lead into frame a: both stretches are
    at the same gait phase, so feet stay where they were instead of drifting over the whole loop.
    """
    n = b - a
    w = np.arange(n + 1) / n
    drift = _yaw_of(local[b, 0]) - _yaw_of(local[a, 0])
    drift = (drift + np.pi) % (2.0 * np.pi) - np.pi
    turn = rot_y(-drift * w)
    rot = local[a : b + 1].copy()
    rot[:, 0] = turn @ rot[:, 0]
    steps = (rot_y(-drift * 0.5 * (w[1:] + w[:-1])) @ np.diff(root[a : b + 1], axis=0)[..., None])[..., 0]
    path = np.concatenate([root[a : a + 1], root[a] + np.cumsum(steps, axis=0)])
    path[:, 1] = root[a : b + 1, 1] + w * (root[a, 1] - root[b, 1])
    m = _seam_frames(a, b)
    u = np.arange(1, m + 1) / m
    fade = u * u * (3.0 - 2.0 * u)  # reaches 1 at frame b
    tail = rot[n - m + 1 :]  # frames b-m+1 .. b
    lead = local[a - m + 1 : a + 1]  # frames a-m+1 .. a
    for j in range(24):
        rot[n - m + 1 :, j] = _slerp(tail[:, j], lead[:, j], fade)
    return rot, path


def _slerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    rel = Rotation.from_matrix(np.swapaxes(start, -1, -2) @ end).as_rotvec()
    return start @ Rotation.from_rotvec(rel * weight[:, None]).as_matrix()


def _stride_length(ankles: np.ndarray, events: GaitEvents) -> float:
    """Mean forward distance (source units) between successive heel strikes of the same foot."""
    strides = [
        np.diff(ankles[s, k, 0])
        for k, s in enumerate((events.left_strikes, events.right_strikes))
        if len(s) > 1
    ]
    return float(np.mean(np.concatenate(strides))) if strides else float("nan")


# --------------------------------------------------------------------------------------------- statistics


def sagittal_leg_angles(local_rotations: np.ndarray) -> dict[str, np.ndarray]:
    """Per side, thigh angle from vertical, knee flexion and ankle dorsiflexion (deg) [T] in the walking plane.

    Conventions as in :mod:`pipeline.world.motion`: thigh + forward, knee + flexed, ankle + toes up
    relative to the foot's rest angle (a right angle to the shank).
    """
    glob = forward_kinematics(np.zeros((24, 3)), local_rotations)[1]
    out = {}
    for side in ("left", "right"):
        thigh_dir = glob[:, SMPL24_INDEX[f"{side}_hip"], :, 1] * -1.0  # the rest thigh points down (-Y)
        shank_dir = glob[:, SMPL24_INDEX[f"{side}_knee"], :, 1] * -1.0
        foot_dir = glob[:, SMPL24_INDEX[f"{side}_ankle"], :, 0]  # the rest foot points forward (+X)
        thigh = np.degrees(np.arctan2(thigh_dir[:, 0], -thigh_dir[:, 1]))
        shank = np.degrees(np.arctan2(shank_dir[:, 0], -shank_dir[:, 1]))
        foot = np.degrees(np.arctan2(foot_dir[:, 1], foot_dir[:, 0]))
        out[side] = np.stack([thigh, thigh - shank, foot - shank], axis=1)
    return out


def mean_leg_cycle(samples: int = 100) -> np.ndarray:
    """Mean thigh, knee and ankle angle curves [samples, 3] (deg) over one gait cycle of every shipped clip,
    both legs pooled; phase 0 is the foot becoming planted (:func:`gait_events`' heel strike)."""
    grid = np.arange(samples) / samples
    cycles = []
    for clips in list_clips().values():
        for name in clips:
            clip = load_clip(name)
            angles = sagittal_leg_angles(clip.local_rotations)
            for side, strikes in (("left", clip.events.left_strikes), ("right", clip.events.right_strikes)):
                frames = np.arange(clip.n_frames)
                for a, b in zip(strikes[:-1], strikes[1:], strict=True):
                    t = a + grid * (b - a)
                    cycles.append(
                        np.stack([np.interp(t, frames, angles[side][:, k]) for k in range(3)], axis=1)
                    )
    return np.mean(cycles, axis=0)
