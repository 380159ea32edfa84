"""Guidance renderers: pixel checks against the upstream drawing rules, padding, MTVCrafter pkl, NLF backend."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from pipeline.perception.guidance import (
    NLFBackend,
    NLFModelMissingError,
    camera_extrinsics,
    coco17_to_openpose18,
    densepose_guidance_square,
    densepose_palette,
    draw_openpose_body,
    dwpose_canvas_size,
    feet_from_coco_wholebody,
    feet_from_smpl24,
    hand_edge_color,
    pad_to_square,
    render_densepose,
    render_openpose_frames,
    save_guidance_video,
    scale_keypoints,
    smpl24_for_mtvcrafter,
    unpad,
    write_mtvcrafter_pkl,
    write_unianimate_pose_dir,
)

try:
    import torch
except ImportError:  # the NLF backend needs the ml extra; everything else here does not
    torch = None

# A frontal standing person on a 220 x 200 (H x W) canvas, COCO-17 order, (x, y) pixels.
COCO_XY = np.array([
    (100, 30), (108, 24), (92, 24), (118, 28), (82, 28),      # nose, l/r eye, l/r ear
    (130, 60), (70, 60), (140, 95), (60, 95), (145, 130), (55, 130),  # l/r shoulder, elbow, wrist
    (118, 120), (82, 120), (120, 155), (80, 155), (122, 190), (78, 190),  # l/r hip, knee, ankle
], dtype=float)  # fmt: skip
CANVAS = (220, 200)
BLACK = (0, 0, 0)


def coco_pose(scores: dict[int, float] | None = None) -> np.ndarray:
    kps = np.concatenate([COCO_XY, np.full((17, 1), 0.9)], axis=1)
    for joint, score in (scores or {}).items():
        kps[joint, 2] = score
    return kps


def pixel(image: np.ndarray, xy: tuple[float, float]) -> tuple[int, ...]:
    return tuple(int(v) for v in image[int(xy[1]), int(xy[0])])


# ---------------------------------------------------------------------------------------------
# COCO-17 → OpenPose-18


def test_coco_to_openpose_reindexing_matches_dwpose():
    kps = coco_pose({5: 0.8, 6: 0.5})
    pose = coco17_to_openpose18(kps[None])[0]
    # DWPose: openpose slots [0, 2..17] take mmpose joints [0, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    expected_source = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    for slot, source in enumerate(expected_source):
        if source is not None:
            np.testing.assert_array_equal(pose[slot], kps[source])
    np.testing.assert_allclose(pose[1], [100.0, 60.0, 0.5])  # shoulder midpoint, min score
    with pytest.raises(ValueError, match="17, 3"):
        coco17_to_openpose18(np.zeros((18, 3)))


def test_feet_helpers():
    foot = np.array([(10, 50, 0.9), (14, 50, 0.4), (0, 0, 0.9), (30, 52, 0.9), (34, 54, 0.8), (0, 0, 0.9)])
    np.testing.assert_allclose(feet_from_coco_wholebody(foot), [(12, 50, 0.4), (32, 53, 0.8)])
    smpl = np.zeros((24, 3))
    smpl[10], smpl[11] = (1, 2, 0.9), (3, 4, 0.8)  # SMPL left_foot, right_foot
    np.testing.assert_allclose(feet_from_smpl24(smpl), [(1, 2, 0.9), (3, 4, 0.8)])


def test_keypoint_scaling_and_dwpose_canvas_size():
    scaled = scale_keypoints(np.array([[50.0, 20.0, 0.7]]), (100, 200), (768, 512))
    np.testing.assert_allclose(scaled, [[128.0, 153.6, 0.7]])
    assert dwpose_canvas_size(1080, 1920) == (512, 896)
    assert dwpose_canvas_size(1920, 1080) == (896, 512)
    assert dwpose_canvas_size(192, 256) == (512, 704)


# ---------------------------------------------------------------------------------------------
# OpenPose body drawing


def test_neck_drawn_at_shoulder_midpoint_in_palette_colour_1():
    canvas = draw_openpose_body(CANVAS, coco17_to_openpose18(coco_pose()))
    assert canvas.shape == (*CANVAS, 3) and canvas.dtype == np.uint8
    assert pixel(canvas, (100, 60)) == (255, 85, 0)
    assert pixel(canvas, (100, 30)) == (255, 0, 0)  # nose: colour 0
    assert pixel(canvas, (70, 60)) == (255, 170, 0)  # right shoulder: colour 2


def test_limb_pixel_is_palette_colour_dimmed_by_0_6():
    canvas = draw_openpose_body(CANVAS, coco17_to_openpose18(coco_pose()))
    # right knee → right ankle is limb 8, colour (0, 255, 170); int(255 * 0.6) = 153, int(170 * 0.6) = 102
    assert pixel(canvas, (79, 172)) == (0, 153, 102)
    # the limb is an ellipse of half-width 4 around the bone: 6 px to the side is background
    assert pixel(canvas, (85, 172)) == BLACK


def test_low_score_joints_and_their_limbs_are_not_drawn():
    left_wrist = 9
    drawn = draw_openpose_body(CANVAS, coco17_to_openpose18(coco_pose()))
    assert pixel(drawn, (145, 130)) != BLACK
    for score in (0.2, 0.3):  # upstream keeps a joint only for score > 0.3
        canvas = draw_openpose_body(CANVAS, coco17_to_openpose18(coco_pose({left_wrist: score})))
        assert pixel(canvas, (145, 130)) == BLACK
        assert pixel(canvas, (142, 112)) == BLACK  # middle of the elbow → wrist limb
        assert pixel(canvas, (140, 95)) != BLACK  # the elbow itself stays


def test_background_stays_black():
    canvas = draw_openpose_body(CANVAS, coco17_to_openpose18(coco_pose()))
    assert not canvas[:, :40].any() and not canvas[:, 165:].any() and not canvas[:15].any()
    nothing = draw_openpose_body(CANVAS, np.zeros((18, 3)))
    assert not nothing.any()


def test_unianimate_style_swaps_channels_and_adds_feet():
    pose = coco17_to_openpose18(coco_pose())[None]
    feet = np.array([[(128, 205, 0.9), (72, 205, 0.9)]])
    frames = render_openpose_frames(pose, CANVAS, style="unianimate", feet=feet)
    assert frames.shape == (1, *CANVAS, 3)
    frame = frames[0]
    assert pixel(frame, (100, 60)) == (0, 85, 255)  # neck colour as the cv2.imwrite'd jpg decodes
    assert pixel(frame, (128, 205)) == (255, 255, 170)  # left foot point: extra colour (170, 255, 255)
    assert pixel(frame, (72, 205)) == (0, 255, 255)  # right foot point: extra colour (255, 255, 0)
    # left ankle → left foot limb, colour 17 (255, 0, 85) dimmed to (153, 0, 51), then swapped
    assert pixel(frame, (125, 197)) == (51, 0, 153)
    moore = render_openpose_frames(pose, CANVAS, style="moore")[0]
    assert pixel(moore, (100, 60)) == (255, 85, 0)
    assert pixel(moore, (128, 205)) == BLACK  # Moore has no feet


def test_styles_refuse_parts_upstream_never_draws():
    pose = coco17_to_openpose18(coco_pose())[None]
    with pytest.raises(ValueError, match="foot"):
        render_openpose_frames(pose, CANVAS, style="moore", feet=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="face"):
        render_openpose_frames(pose, CANVAS, style="unianimate", faces=np.zeros((1, 68, 3)))
    with pytest.raises(ValueError, match="style"):
        render_openpose_frames(pose, CANVAS, style="musepose")  # type: ignore[arg-type]


def test_moore_draws_hands_and_face_dots():
    pose = coco17_to_openpose18(coco_pose())[None]
    hands = np.zeros((1, 2, 21, 3))
    hands[0, 0, 0] = (20, 100, 0.9)
    hands[0, 0, 1] = (20, 140, 0.9)
    hands[0, 1, 0] = (0.5, 60, 0.9)  # visible but on column 0: DWPose skips points not both > 0.01 px
    faces = np.zeros((1, 68, 3))
    faces[0, 0] = (100, 42, 0.9)
    frame = render_openpose_frames(pose, CANVAS, style="moore", hands=hands, faces=faces)[0]
    assert pixel(frame, (20, 100)) == (0, 0, 255)  # hand keypoint
    assert pixel(frame, (20, 120)) == (255, 0, 0)  # edge 0 → 1: hue 0
    assert pixel(frame, (100, 42)) == (255, 255, 255)  # face landmark
    assert pixel(frame, (10, 10)) == BLACK  # invisible hand points (score 0) at the origin are skipped
    assert pixel(frame, (0, 60)) == BLACK


def test_hand_edge_colours_match_matplotlib_hsv():
    from matplotlib.colors import hsv_to_rgb

    for edge in range(20):
        expected = hsv_to_rgb([edge / 20.0, 1.0, 1.0]) * 255
        np.testing.assert_array_equal(hand_edge_color(edge), expected)


def test_unianimate_pose_dir_holds_upstream_canvas(tmp_path):
    pose = coco17_to_openpose18(coco_pose())[None].repeat(2, axis=0)
    frames = render_openpose_frames(pose, CANVAS, style="unianimate")
    folder = write_unianimate_pose_dir(tmp_path / "pose", frames, ref_pose=frames[0])
    assert sorted(p.name for p in folder.iterdir()) == ["0000.jpg", "0001.jpg", "ref_pose.jpg"]
    stored = cv2.imread(str(folder / "0001.jpg"))  # the array as cv2.imwrite received it
    # upstream's canvas holds the palette as listed: neck (255, 85, 0) in channels 0, 1, 2 (JPEG: ± a few)
    np.testing.assert_allclose(stored[60, 100], (255, 85, 0), atol=16)
    write_unianimate_pose_dir(folder, frames[:1])
    assert sorted(p.name for p in folder.iterdir()) == ["0000.jpg"]


# ---------------------------------------------------------------------------------------------
# DensePose


def test_densepose_background_is_viridis_zero_and_parts_are_blended():
    parts = np.zeros((1, 40, 20), dtype=np.uint8)
    parts[0, 5:15, 5:15] = 1
    parts[0, 20:30, 5:15] = 24
    frame = render_densepose(parts)[0]
    assert frame.shape == (40, 20, 3)  # source resolution
    assert pixel(frame, (0, 0)) == (68, 1, 84)  # viridis(0), RGB
    # label I → colormap index int(I * 255 / 24); colour = int(0.3 * viridis(0) + 0.7 * viridis(index))
    background_bgr = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    for label, xy in ((1, (10, 10)), (24, (10, 25))):
        index = int(label * 255 / 24)
        colour_bgr = cv2.applyColorMap(np.full((1, 1), index, np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
        expected = [
            int(float(b) * (1.0 - 0.7) + float(c) * 0.7)
            for b, c in zip(background_bgr, colour_bgr, strict=True)
        ]
        assert pixel(frame, xy) == tuple(expected[::-1])
    assert pixel(frame, (10, 10)) == (70, 11, 94)
    assert pixel(frame, (10, 25)) == (197, 162, 51)  # not pure viridis(255) = (253, 231, 37)


def test_densepose_accepts_iuv_and_rejects_bad_labels():
    parts = np.random.default_rng(0).integers(0, 25, size=(2, 8, 6))
    iuv = np.stack([parts, np.full_like(parts, 77), np.full_like(parts, 200)], axis=-1)
    np.testing.assert_array_equal(render_densepose(iuv), render_densepose(parts))
    np.testing.assert_array_equal(
        render_densepose(parts)[parts == 0], np.broadcast_to(densepose_palette()[0], ((parts == 0).sum(), 3))
    )
    with pytest.raises(ValueError, match="0..24"):
        render_densepose(np.full((1, 2, 2), 25))
    with pytest.raises(ValueError, match="whole numbers"):
        render_densepose(np.full((1, 2, 2), 1.5))


def test_densepose_square_guidance_pads_instead_of_squashing():
    parts = np.zeros((2, 100, 40), dtype=np.uint8)
    parts[:, 10:90, 10:30] = 2
    frames, padding = densepose_guidance_square(parts, size=64)
    assert frames.shape == (2, 64, 64, 3)
    assert (padding.left, padding.right, padding.top, padding.bottom) == (30, 30, 0, 0)
    palette = densepose_palette()
    colours = {tuple(c) for c in frames.reshape(-1, 3)}
    assert colours == {tuple(palette[0]), tuple(palette[2])}  # nearest-neighbour: no mixed colours
    body_columns = np.flatnonzero((frames[0] == palette[2]).all(-1).any(0))
    # the body (columns 10..29 of 40, then 30 px of padding) keeps its width: 20 px of 100 → ~13 of 64
    assert body_columns.min() == pytest.approx((30 + 10) * 0.64, abs=1)
    assert body_columns.max() == pytest.approx((30 + 30) * 0.64, abs=1)


# ---------------------------------------------------------------------------------------------
# Padding


def test_pad_unpad_round_trip_tall_and_wide():
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 255, size=(3, 101, 40, 3), dtype=np.uint8)
    padded, padding = pad_to_square(tall, fill=(68, 1, 84))
    assert padded.shape == (3, 101, 101, 3)
    assert (padding.left, padding.right) == (30, 31)
    assert (padded[:, :, :30] == (68, 1, 84)).all() and (padded[:, :, 70:] == (68, 1, 84)).all()
    np.testing.assert_array_equal(unpad(padded, padding), tall)
    wide = rng.integers(0, 255, size=(2, 10, 30), dtype=np.uint8)
    padded, padding = pad_to_square(wide, fill=0)
    assert padded.shape == (2, 30, 30) and (padding.top, padding.bottom) == (10, 10)
    np.testing.assert_array_equal(unpad(padded, padding), wide)
    edge, _ = pad_to_square(tall, fill="edge")
    np.testing.assert_array_equal(edge[:, :, 0], tall[:, :, 0])
    np.testing.assert_array_equal(edge[:, :, -1], tall[:, :, -1])


def test_unpad_after_resize_restores_original_geometry():
    original = np.zeros((1, 100, 40, 3), dtype=np.uint8)
    original[:, :, :20] = (255, 0, 0)
    original[:, :, 20:] = (0, 0, 255)
    padded, padding = pad_to_square(original, fill=0)
    resized = cv2.resize(padded[0], (512, 512), interpolation=cv2.INTER_NEAREST)[None]
    restored = unpad(resized, padding, interpolation=cv2.INTER_NEAREST)
    assert restored.shape == original.shape
    assert (restored == original).all(-1).mean() > 0.97  # only the resampled seam may differ


# ---------------------------------------------------------------------------------------------
# MTVCrafter


def yaw(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def test_mtvcrafter_units_and_camera_transform():
    joints = np.zeros((2, 24, 3))
    joints[:, 0] = (0.1, 0.2, 0.0)
    identity = np.concatenate([np.eye(3), [[0.0], [0.0], [3.0]]], axis=1)
    out = smpl24_for_mtvcrafter(joints, identity)
    np.testing.assert_allclose(out[:, 0], [[100.0, 200.0, 3000.0]] * 2)
    # a camera turned 90° about y: world x maps to camera -z ... checked against R x + t by hand
    rotation, translation = yaw(90.0), np.array([0.0, 0.0, 5.0])
    out = smpl24_for_mtvcrafter(joints, (rotation, translation))
    np.testing.assert_allclose(out[0, 0], [0.0, 200.0, 4900.0], atol=1e-9)
    # a projection matrix K[R|t] (any scale) with its K gives the same camera space
    K = np.array([[500.0, 0.0, 128.0], [0.0, 500.0, 96.0], [0.0, 0.0, 1.0]])
    projection = 2.5 * K @ np.concatenate([rotation, translation[:, None]], axis=1)
    np.testing.assert_allclose(smpl24_for_mtvcrafter(joints, projection, intrinsics=K), out, atol=1e-9)
    with pytest.raises(ValueError, match="intrinsics=K"):
        smpl24_for_mtvcrafter(joints, projection)


def test_mtvcrafter_camera_space_matches_world_camera_projection():
    from pipeline.world.camera import Camera

    camera = Camera.for_view(90.0, width=256, height=192)
    rng = np.random.default_rng(2)
    joints = rng.normal([0.0, 1.0, 0.0], 0.3, size=(4, 24, 3))
    cam_mm = smpl24_for_mtvcrafter(joints, camera)
    pixels, depth = camera.project(joints)
    np.testing.assert_allclose(cam_mm[..., 2] / 1000.0, depth)
    reprojected = (camera.K @ (cam_mm / cam_mm[..., 2:3])[..., None])[..., :2, 0]
    np.testing.assert_allclose(reprojected, pixels, atol=1e-6)
    assert camera_extrinsics(camera, 4).shape == (4, 3, 4)


def test_write_mtvcrafter_pkl_is_readable_the_upstream_way(tmp_path):
    joints = np.random.default_rng(3).normal([0.0, 200.0, 3000.0], 300.0, size=(5, 24, 3))
    path = write_mtvcrafter_pkl(
        tmp_path / "m.pkl", joints, video_path="v.mp4", video_width=256, video_height=192
    )
    with open(path, "rb") as handle:
        data = pickle.load(handle)  # our own file, written by the test just above
    assert {k: data[k] for k in ("video_path", "video_length", "video_width", "video_height")} == {
        "video_path": "v.mp4",
        "video_length": 5,
        "video_width": 256,
        "video_height": 192,
    }
    # MTVCrafter's inference: np.array([pose[0][0].cpu().numpy() for pose in data['pose']['joints3d_nonparam']])
    poses = np.array([pose[0][0].cpu().numpy() for pose in data["pose"]["joints3d_nonparam"]])
    assert poses.shape == (5, 24, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(poses, joints, rtol=1e-6)


def test_write_mtvcrafter_pkl_refuses_missing_people_and_metres(tmp_path):
    joints = np.full((3, 24, 3), 3000.0)
    joints[1] = np.nan
    with pytest.raises(ValueError, match=r"frames \[1\]"):
        write_mtvcrafter_pkl(tmp_path / "a.pkl", joints, video_path="v.mp4", video_width=1, video_height=1)
    with pytest.raises(ValueError, match="millimetres"):
        write_mtvcrafter_pkl(
            tmp_path / "b.pkl", np.full((3, 24, 3), 3.0), video_path="v.mp4", video_width=1, video_height=1
        )
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# NLF backend


def test_nlf_missing_model_names_config_key_and_path(tmp_path):
    missing = tmp_path / "nlf_l_multi.torchscript"
    with pytest.raises(NLFModelMissingError, match="perception.nlf.model_path") as info:
        NLFBackend(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(NLFModelMissingError, match="perception.nlf.model_path"):
        NLFBackend(None)


if torch is not None:

    class FakeNLF(torch.nn.Module):
        """Stands in for nlf_l_multi.torchscript: no person in a black frame, else one person whose
        joints encode the red-channel mean (x), the focal length or -1 (y) and the field of view (z)."""

        @torch.jit.export
        def detect_smpl_batched(
            self,
            images: torch.Tensor,
            intrinsic_matrix: torch.Tensor | None = None,
            default_fov_degrees: float = 55.0,
        ) -> dict[str, list[torch.Tensor]]:
            people: list[torch.Tensor] = []
            for i in range(images.shape[0]):
                image = images[i].float()
                if image.max() == 0:
                    people.append(torch.zeros(0, 24, 3))
                else:
                    focal = -1.0 if intrinsic_matrix is None else float(intrinsic_matrix[0, 0, 0])
                    joint = torch.tensor([float(image[0].mean()), focal, default_fov_degrees])
                    # a second, different person: the backend must keep the first, as MTVCrafter does
                    people.append(torch.stack([joint.expand(24, 3), joint.expand(24, 3) + 1000.0]))
            return {"joints3d_nonparam": people}

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images


@pytest.mark.skipif(torch is None, reason="torch (ml extra) not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")
def test_nlf_backend_loads_torchscript_and_keeps_first_person(tmp_path):
    model_path = tmp_path / "fake_nlf.torchscript"
    torch.jit.script(FakeNLF()).save(str(model_path))
    frames = np.zeros((3, 8, 6, 3), dtype=np.uint8)
    frames[1:, ..., 0], frames[1:, ..., 2] = 10, 200
    joints = NLFBackend(model_path, batch_size=2, default_fov_degrees=40.0)(frames)
    assert joints.shape == (3, 24, 3) and np.isnan(joints[0]).all()
    np.testing.assert_allclose(joints[1:, 5], [[10.0, -1.0, 40.0]] * 2)
    bgr = NLFBackend(model_path, channel_order="bgr")(frames[1:], intrinsics=np.diag([321.0, 321.0, 1.0]))
    np.testing.assert_allclose(bgr[:, 0, :2], [[200.0, 321.0]] * 2)


# ---------------------------------------------------------------------------------------------
# Video


def test_save_guidance_video(tmp_path):
    from pipeline.io.video import probe_video

    frames = render_densepose(np.zeros((4, 32, 32), dtype=np.uint8))
    path = save_guidance_video(tmp_path / "g.mp4", frames, fps=25)
    info = probe_video(path)
    assert (info.frame_count, info.width, info.height) == (4, 32, 32)
