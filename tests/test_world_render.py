"""Camera, backgrounds and the capsule renderer of the synthetic gait world."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.skeleton import COCO17_INDEX, DENSEPOSE_PARTS, SMPL24_INDEX, SMPL24_PARENTS
from pipeline.world.appearance import Appearance
from pipeline.world.body import BodyShape
from pipeline.world.camera import Camera
from pipeline.world.render import Rendered, render_sequence
from pipeline.world.scene import make_background, studio

J = SMPL24_INDEX
W, H = 256, 192


# --------------------------------------------------------------------------------------------------
# fixtures: a body, an appearance and simple walking-like poses


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _subtree(joint: int) -> list[int]:
    out = [joint]
    for j, parent in enumerate(SMPL24_PARENTS):
        if parent in out:
            out.append(j)
    return out


def _swing(joints: np.ndarray, joint: int, angle: float) -> np.ndarray:
    """Rotate the limb below ``joint`` about the walker's right axis (Z): positive swings it forward."""
    out = joints.copy()
    idx = _subtree(joint)[1:]
    out[idx] = (joints[idx] - joints[joint]) @ _rot_z(angle).T + joints[joint]
    return out


def walk(body: BodyShape, n_frames: int, start_x: float = -0.3, speed: float = 1.2) -> np.ndarray:
    """Walking-like joints [T, 24, 3]: rest pose, counter-swinging legs and arms, forward translation."""
    rest = body.rest_joints()
    frames = []
    for t in range(n_frames):
        phase = 2 * np.pi * t / 25.0
        pose = rest.copy()
        for side, sign in (("left", 1.0), ("right", -1.0)):
            pose = _swing(pose, J[f"{side}_hip"], 0.35 * sign * np.sin(phase))
            pose = _swing(pose, J[f"{side}_shoulder"], -0.3 * sign * np.sin(phase))
        pose[:, 0] += start_x + speed * t / 25.0
        frames.append(pose)
    return np.stack(frames)


@pytest.fixture(scope="module")
def body() -> BodyShape:
    return BodyShape.sample(np.random.default_rng(3))


@pytest.fixture(scope="module")
def appearance() -> Appearance:
    return Appearance.sample(np.random.default_rng(4))


def _render(body, appearance, joints, view=90.0, background="studio", coat=False, bag=False, seed=0, **cam):
    camera = Camera.for_view(view, W, H, distance_m=cam.pop("distance_m", 4.0), **cam)
    if background == "studio-noshadow":
        background = studio(camera, len(joints), np.random.default_rng(seed), shadow_strength=0.0)
    return render_sequence(joints, None, body, appearance, coat=coat, bag=bag, camera=camera,
                           background=background, rng=np.random.default_rng(seed))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# camera


def test_point_on_the_optical_axis_projects_to_the_image_centre() -> None:
    camera = Camera.for_view(37.0, W, H, distance_m=5.0, height_m=1.3, target=(0.2, 0.9, -0.1))
    target = np.array([0.2, 0.9, -0.1])
    xy, depth = camera.project(target + 2.5 * (target - camera.position))
    np.testing.assert_allclose(xy, [(W - 1) / 2, (H - 1) / 2], atol=1e-9)
    assert depth > 0
    xy, depth = camera.project(camera.position - (target - camera.position))  # behind the camera
    assert np.isnan(xy).all() and depth < 0


def test_views_follow_the_casia_b_convention() -> None:
    path = np.array([[-0.5, 1.0, 0.0], [0.5, 1.0, 0.0]])  # one metre of walking along +X
    (side_a, side_b), _ = Camera.for_view(90.0, W, H).project(path)
    assert side_b[0] - side_a[0] > 30 and abs(side_b[1] - side_a[1]) < 1  # left → right across the image
    _, depth_front = Camera.for_view(0.0, W, H).project(path)
    _, depth_back = Camera.for_view(180.0, W, H).project(path)
    assert depth_front[1] < depth_front[0]  # walking towards the camera
    assert depth_back[1] > depth_back[0]  # walking away


def test_projection_matrix_and_shake() -> None:
    camera = Camera.for_view(60.0, W, H).with_shake(np.random.default_rng(0), 10, amplitude_deg=0.5)
    points = np.random.default_rng(1).uniform(-1, 1, (10, 4, 3)) + [0.0, 1.0, 0.0]
    xy, depth = camera.project(points, np.arange(10))
    homog = np.einsum("tij,tnj->tni", camera.projection_matrix(np.arange(10)), np.concatenate([points, np.ones((10, 4, 1))], -1))
    np.testing.assert_allclose(homog[..., :2] / homog[..., 2:], xy, atol=1e-6)
    np.testing.assert_allclose(homog[..., 2], depth, atol=1e-9)
    angles = np.rad2deg(np.abs(camera.shake)).max(0)
    assert 0.1 < angles[:2].max() <= 0.5 + 1e-9  # it shakes, by about the requested amplitude
    assert not np.allclose(camera.rotations(0), camera.rotations(5))


# --------------------------------------------------------------------------------------------------
# rendering


def test_rendered_fields_and_determinism(body, appearance) -> None:
    joints = walk(body, 4)
    a = _render(body, appearance, joints, background="wild", bag=True, seed=5)
    b = _render(body, appearance, joints, background="wild", bag=True, seed=5)
    c = _render(body, appearance, joints, background="wild", bag=True, seed=6)
    assert isinstance(a, Rendered)
    assert a.rgb.shape == (4, H, W, 3) and a.rgb.dtype == np.uint8
    assert a.mask.shape == (4, H, W) and a.mask.dtype == bool
    assert a.parts.shape == (4, H, W, 3) and a.parts.dtype == np.uint8
    assert a.keypoints2d.shape == (4, 17, 3) and a.joints2d.shape == (4, 24, 3)
    assert a.K.shape == (3, 3) and a.Rt.shape == (4, 3, 4)
    for field in ("rgb", "mask", "parts", "keypoints2d", "joints2d", "Rt"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.rgb, c.rgb)
    assert not np.allclose(a.Rt[0], a.Rt[-1])  # the wild camera shakes


def test_mask_is_the_person_and_leaves_the_background_alone(body, appearance) -> None:
    import cv2

    joints = walk(body, 3)
    camera = Camera.for_view(90.0, W, H, distance_m=4.0)
    bg = studio(camera, 3, np.random.default_rng(0), shadow_strength=0.0)
    out = render_sequence(joints, None, body, appearance, coat=False, bag=False, camera=camera, background=bg,
                          rng=np.random.default_rng(0))  # fmt: skip
    for t in range(3):
        mask = out.mask[t]
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 1000  # a 1.6 m person at 4 m is about 120 px tall
        height = ys.max() - ys.min()
        assert 100 < height < 170 and ys.min() > 0 and ys.max() < H - 1
        # Anti-aliased edges touch at most one pixel beyond the mask; everything else is the plate.
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        np.testing.assert_array_equal(out.rgb[t][~near], bg.plate[~near])
        assert np.any(out.rgb[t][mask] != bg.plate[mask])
        # The part map covers the body inside the mask (no bag here) and nothing outside it.
        labelled = out.parts[t, ..., 0] > 0
        assert not np.any(labelled & ~mask)
        assert labelled.sum() > 0.97 * mask.sum()


def test_shadow_darkens_the_floor_under_the_walker(body, appearance) -> None:
    joints = walk(body, 1)
    out = _render(body, appearance, joints, view=90.0)
    plain = _render(body, appearance, joints, view=90.0, background="studio-noshadow")
    darker = (out.rgb[0].astype(int).sum(-1) < plain.rgb[0].astype(int).sum(-1) - 6) & ~out.mask[0]
    feet = out.keypoints2d[0, [COCO17_INDEX["left_ankle"], COCO17_INDEX["right_ankle"]], 1]
    ys = np.nonzero(darker)[0]
    assert darker.sum() > 50 and ys.min() > feet.min() - 25  # only around the feet, on the floor


def test_nearer_limb_occludes_the_torso(body, appearance) -> None:
    rest = body.rest_joints()[None]
    out = _render(body, appearance, rest, view=90.0)  # the camera sees the walker's right side
    parts = out.parts[0, ..., 0]
    right_arm = {16, 18, 20, 22}
    for name in ("right_elbow", "right_wrist"):
        x, y = np.rint(out.joints2d[0, J[name], :2]).astype(int)
        assert parts[y, x] in right_arm
    ids = set(np.unique(parts)) - {0}
    assert not ids & {15, 17, 19, 21}  # the left arm hangs behind the torso: hidden
    assert ids <= set(DENSEPOSE_PARTS)
    # The right leg (nearer) shows more than the left one.
    right_leg = np.isin(parts, [7, 9, 11, 13]).sum()
    left_leg = np.isin(parts, [8, 10, 12, 14]).sum()
    assert right_leg > 1.5 * left_leg
    assert (parts == 23).sum() > 3 * (parts == 24).sum()  # head: right side faces the camera


@pytest.mark.parametrize("view, right_on_image_left", [(0.0, True), (180.0, False)])
def test_left_right_parts_follow_the_view(body, appearance, view, right_on_image_left) -> None:
    rest = body.rest_joints()[None]
    parts = _render(body, appearance, rest, view=view).parts[0, ..., 0]
    xs = np.arange(W)[None, :].repeat(H, 0)
    right = xs[np.isin(parts, [3, 6, 7, 9, 11, 13, 16, 18, 20, 22])].mean()
    left = xs[np.isin(parts, [4, 5, 8, 10, 12, 14, 15, 17, 19, 21])].mean()
    assert (right < left) == right_on_image_left
    torso = parts[np.isin(parts, [1, 2])]
    front_share = np.mean(torso == 2)
    assert front_share > 0.9 if view == 0.0 else front_share < 0.1
    u, v = _render(body, appearance, rest, view=view).parts[0, ..., 1:3][parts > 0].T
    assert u.max() > 200 and u.min() < 60 and v.max() > v.min() + 60  # U along, V around the segments


def test_keypoint_visibility_from_the_depth_buffer(body, appearance) -> None:
    rest = body.rest_joints()[None]
    stride = walk(body, 7)[6:]  # right arm swung forward, off the hip it hangs over in the rest pose
    side = _render(body, appearance, stride, view=90.0).keypoints2d[0]
    assert side[COCO17_INDEX["left_hip"], 2] == 1  # behind the pelvis
    assert side[COCO17_INDEX["right_hip"], 2] == 2
    assert side[COCO17_INDEX["left_ear"], 2] == 1 and side[COCO17_INDEX["right_ear"], 2] == 2
    front = _render(body, appearance, rest, view=0.0).keypoints2d[0]
    back = _render(body, appearance, rest, view=180.0).keypoints2d[0]
    assert front[COCO17_INDEX["nose"], 2] == 2 and back[COCO17_INDEX["nose"], 2] == 1
    assert np.all(front[5:, 2] == 2)  # every limb joint is seen from the front
    away = rest + [30.0, 0.0, 0.0]  # far outside the field of view
    far = _render(body, appearance, away, view=90.0)
    assert np.all(far.keypoints2d[0, :, 2] == 0) and not far.mask.any()


def test_coat_widens_and_bag_adds_to_the_silhouette(body, appearance) -> None:
    rest = body.rest_joints()[None]
    plain = _render(body, appearance, rest, view=0.0).mask[0]
    coat = _render(body, appearance, rest, view=0.0, coat=True).mask[0]
    rows = slice(*np.rint(np.sort(_render(body, appearance, rest, view=0.0).joints2d[0, [J["pelvis"], J["neck"]], 1])).astype(int))
    assert coat[rows].sum(1).mean() > plain[rows].sum(1).mean() + 2  # a wider torso
    assert coat.sum() > plain.sum()
    side_plain = _render(body, appearance, rest, view=90.0).mask[0]
    side_bag = _render(body, appearance, rest, view=90.0, bag=True).mask[0]
    assert side_bag.sum() > side_plain.sum() + 100
    assert np.mean(side_plain[side_bag]) < 0.95 and side_bag[side_plain].all()


def test_facing_without_orientations_comes_from_the_hips(body, appearance) -> None:
    joints = walk(body, 2)
    turned = joints.copy()
    turned[..., 2] *= -1  # mirror Z: the walker now has its right side on the other side ...
    turned[..., 0] *= -1  # ... and walks along -X, i.e. faces the camera at view 180
    out = _render(body, appearance, turned, view=180.0)
    assert np.all(out.keypoints2d[:, COCO17_INDEX["nose"], 2] == 2)
    torso = out.parts[..., 0][np.isin(out.parts[..., 0], [1, 2])]
    assert np.mean(torso == 2) > 0.9


def test_wild_background_varies_over_time_and_studio_does_not(body) -> None:
    camera = Camera.for_view(90.0, W, H)
    rng = np.random.default_rng(0)
    wild = make_background("wild", camera, 30, rng)
    assert wild.gains.shape == (30, 3) and np.ptp(wild.gains[:, 1]) > 0.05
    shaken = camera.with_shake(rng, 30, wild.shake_deg)
    empty = np.zeros((0, 5))
    first, last = (wild.finish(t, wild.frame(t, shaken, empty)) for t in (0, 29))
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 2
    plain = make_background("studio", camera, 30, rng)
    np.testing.assert_array_equal(plain.finish(0, plain.frame(0, camera, empty)), plain.finish(29, plain.frame(29, camera, empty)))
    with pytest.raises(ValueError):
        make_background("moon", camera, 3, rng)


def test_head_orientation_decides_where_the_face_is(body, appearance) -> None:
    rest = body.rest_joints()[None]
    camera = Camera.for_view(0.0, W, H, distance_m=4.0)
    orientations = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    looking_back = orientations.copy()
    looking_back[0, J["head"]] = np.diag([-1.0, 1.0, -1.0])  # the head turned 180° about the vertical

    def nose(orient: np.ndarray) -> float:
        out = render_sequence(rest, orient, body, appearance, coat=False, bag=False, camera=camera,
                              background="studio", rng=np.random.default_rng(0))  # fmt: skip
        return out.keypoints2d[0, COCO17_INDEX["nose"], 2]

    assert nose(orientations) == 2 and nose(looking_back) == 1


def test_edges_are_anti_aliased(body, appearance) -> None:
    rest = body.rest_joints()[None]
    camera = Camera.for_view(90.0, W, H, distance_m=4.0)
    bg = studio(camera, 1, np.random.default_rng(0), shadow_strength=0.0)
    out = render_sequence(rest, None, body, appearance, coat=False, bag=False, camera=camera, background=bg,
                          rng=np.random.default_rng(0))  # fmt: skip
    changed = np.any(out.rgb[0] != bg.plate, -1)
    fringe = changed & ~out.mask[0]  # partly covered pixels: blended, yet under half covered
    assert fringe.sum() > 30
