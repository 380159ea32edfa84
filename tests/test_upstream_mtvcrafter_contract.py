"""MTVCrafter adapter: what running it against the real ``infer_7b.py`` (DINGYANB/MTVCrafter @ 91d5132)
showed, kept as stand-in cases so it stays fixed without the upstream code.

The contract run (``benchmarks/upstream_smoke.py --model mtvcrafter``: upstream's own CLI, pickle
reading, sampling, decord, motion VQ-VAE with random weights, grid writing; only the CogVideoX-based
DiT replaced) found:

* at the pinned commit ``infer_7b.py`` reads every pose frame; the first-98-frames cut that the
  stand-in and the pickle writer's docs still described went in upstream commit 20b2c1f. The
  stand-in now reads them all, so a clip whose unseeded window starts past frame 49 is accepted;
* upstream's own 55° pose drawing of the world's joints came out 1.26x smaller than the person in
  the padded frame: the world camera's focal length is not NLF's. The adapter now fits the driving
  camera to ``Driving.keypoints`` and moves each frame's body so that the 55° camera sees it where
  and as large as the driving frame shows it;
* the env's unpinned ``transformers`` made pip backtrack through 5.x releases against upstream's
  pins; it is pinned to 4.51.3, with which the contract run imported upstream's models.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.generation.generators import make_generator
from pipeline.generation.generators.base import Driving, GenerationJob
from pipeline.generation.generators.upstream import mtvcrafter
from pipeline.generation.generators.upstream.common import aspect_padding, write_image
from pipeline.io.video import probe_video, write_video
from pipeline.perception.guidance import write_mtvcrafter_pkl
from tests.test_upstream_adapters import ROOT, H, W, make_checkout, make_job, options
from tests.upstream_standin import standin


def test_standin_reads_every_pose_frame_as_infer_7b_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = make_checkout(tmp_path, "mtvcrafter")
    frames = 150  # the last possible window starts at 101, past the old 98-frame cut
    joints = np.zeros((frames, 24, 3))
    joints[..., 1] = np.linspace(-800, 900, 24)[None]
    joints[..., 2] = 4000.0
    video = write_video(tmp_path / "drv.mp4", np.zeros((frames, 64, 64, 3), np.uint8), 20.0)
    motion = write_mtvcrafter_pkl(
        tmp_path / "m.pkl", joints, video_path=video, video_width=512, video_height=512
    )
    reference = write_image(tmp_path / "ref.png", np.full((512, 512, 3), 128, np.uint8))
    monkeypatch.chdir(checkout)
    monkeypatch.setattr(standin.random, "randint", lambda low, high: high)  # upstream's start is unseeded
    out = tmp_path / "out"
    standin.mtvcrafter(
        ["--ref_image_path", str(reference), "--motion_data_path", str(motion), "--output_dir", str(out)]
    )
    written = sorted(out.glob("0_ref_drv_guidance_3.0.mp4"))
    assert len(written) == 1 and probe_video(written[0]).frame_count == 49


def test_env_pins_transformers_and_imageio_ffmpeg() -> None:
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "mtvcrafter.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "transformers==4.51.3" in pip and "imageio-ffmpeg==0.6.0" in pip


def _walker(frames: int, focal: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-24 joints (camera space, mm) of a body walking across at ~5 m and their exact COCO-17 view."""
    rng = np.random.default_rng(3)
    body = rng.normal(0, 1, (24, 3)) * [150, 0, 80]
    body[:, 1] = np.linspace(-850, 850, 24)  # head-to-foot extent along y (down)
    t = np.arange(frames)[:, None, None]
    joints = body[None] + np.concatenate([t * 15.0 - 300, t * 0 + 100, t * 0 + 5000], axis=-1)
    keypoints = np.zeros((frames, 17, 3))
    for coco, smpl in mtvcrafter.CAMERA_PAIRS:
        point = joints[:, smpl]
        keypoints[:, coco] = np.stack(
            [focal * point[:, 0] / point[:, 2] + centre[0], focal * point[:, 1] / point[:, 2] + centre[1],
             np.ones(frames)], -1,
        )  # fmt: skip
    return joints, keypoints


def test_joints_are_reexpressed_for_nlf_55_degree_camera_on_the_padded_frame() -> None:
    # the contract run: upstream's own 55° drawing of the world's joints came out 1.26x too small
    joints, keypoints = _walker(20, focal=400.0, centre=(60.0, 80.0))  # a 160x120 (HxW) frame
    padding = aspect_padding(160, 120, 1, 1)  # 20 columns each side: a 160x160 video
    moved, notes = mtvcrafter.nlf_view(joints, keypoints, padding)
    assert notes["reexpressed"] and abs(notes["fitted_focal_px"] - 400.0) < 1e-3
    nlf = 160 / (2 * np.tan(np.radians(55) / 2))  # draw_pose.intrinsic_matrix_from_field_of_view
    drawn = nlf * moved[..., :2] / moved[..., 2:3] + 80.0
    coco, smpl = (list(i) for i in zip(*mtvcrafter.CAMERA_PAIRS, strict=True))
    seen = keypoints[:, coco, :2] + [padding.left, padding.top]
    assert np.abs(drawn[:, smpl] - seen).max() < 3.0  # rigid move: close at every joint
    centre, moved_centre = joints.mean(1), moved.mean(1)
    at = centre[:, :2] / centre[:, 2:3] * 400.0 + [60.0 + padding.left, 80.0 + padding.top]
    assert np.abs(nlf * moved_centre[:, :2] / moved_centre[:, 2:3] + 80.0 - at).max() < 1e-6  # exact there
    size_ratio = np.ptp(drawn[:, smpl, 1], axis=1) / np.ptp(seen[..., 1], axis=1)
    assert np.abs(size_ratio - 1).max() < 0.02
    unmoved = nlf * joints[:, smpl, 1] / joints[:, smpl, 2]
    assert np.ptp(unmoved, axis=1).max() / np.ptp(seen[..., 1], axis=1).min() < 0.4  # 153.7 px / 400 px
    bones = np.linalg.norm(np.diff(moved, axis=1), axis=-1)
    assert np.allclose(bones, np.linalg.norm(np.diff(joints, axis=1), axis=-1))  # the body's shape kept


def test_joints_go_as_given_when_keypoints_disagree() -> None:
    joints, keypoints = _walker(10, focal=400.0, centre=(60.0, 80.0))
    keypoints[..., :2] = np.random.default_rng(0).uniform(0, 120, keypoints[..., :2].shape)
    moved, notes = mtvcrafter.nlf_view(joints, keypoints, aspect_padding(160, 120, 1, 1))
    assert not notes["reexpressed"] and "fit rejected" in notes["reason"] and moved is joints
    keypoints[..., 2] = 0
    assert mtvcrafter.nlf_view(joints, keypoints, aspect_padding(160, 120, 1, 1))[1] == {
        "reexpressed": False, "reason": "no confident keypoints",
    }  # fmt: skip


def test_adapter_writes_the_reexpressed_joints_and_notes_the_camera(tmp_path: Path) -> None:
    joints, keypoints = _walker(25, focal=400.0, centre=(60.0, 80.0))
    job = make_job(frames=25, fps=20.0)  # 20 fps: model frame k is driving frame k
    job = GenerationJob(
        job_id=job.job_id, reference=job.reference, seed=job.seed,
        driving=Driving(keypoints=keypoints, height=H, width=W, fps=20.0, smpl_mm=joints, sequence_id="drv"),
    )  # fmt: skip
    video = make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter", keep_work=True)).generate(job)
    assert video.notes["camera"]["reexpressed"] and abs(video.notes["camera"]["fitted_focal_px"] - 400) < 1e-3
    (motion,) = Path(video.notes["work_dir"], "inputs").glob("*clip0.pkl")
    with open(motion, "rb") as handle:
        data = pickle.load(handle)  # the adapter's own file
    written = np.array([pose[0][0].numpy() for pose in data["pose"]["joints3d_nonparam"]])[:25]
    nlf = data["video_width"] / (2 * np.tan(np.radians(55) / 2))
    drawn = nlf * written[..., :2] / written[..., 2:3] + data["video_width"] / 2
    coco, smpl = (list(i) for i in zip(*mtvcrafter.CAMERA_PAIRS, strict=True))
    assert np.abs(drawn[:, smpl] - (keypoints[:, coco, :2] + [20, 0])).max() < 3.0


def test_adapter_notes_why_the_joints_went_as_given(tmp_path: Path) -> None:
    video = make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter")).generate(make_job(frames=6))
    assert video.notes["camera"]["reexpressed"] is False and video.notes["camera"]["reason"]


SHIM = ROOT / "benchmarks" / "upstream_tiny" / "cpu_shim"
STUB_CHECK = """
import json, os, torch
from huggingface_hub import snapshot_download
import models
from models import MTVCrafterPipeline7B
assert snapshot_download("yanboding/MTVCrafter") == os.environ["GAITFID_MTVCRAFTER_STUB"]
pipe = MTVCrafterPipeline7B.from_pretrained(model_path="THUDM/CogVideoX-5b", transformer_model_path="x",
                                            torch_dtype=torch.bfloat16, scheduler_type="dpm").to("cuda:0")
pipe.vae.enable_tiling()
ref = torch.full((3, 3, 8, 8), -1.0)  # black, normalised to [-1, 1] as infer_7b.py does
frames = pipe(height=8, width=8, num_frames=3, num_inference_steps=50, guidance_scale=3.0, seed=6666,
              ref_images=ref, motion_embeds=torch.zeros(1, 4, 6), joint_mean=torch.zeros(24, 3),
              joint_std=torch.ones(24, 3)).frames[0]
assert len(frames) == 3 and frames[0].size == (8, 8) and frames[0].getpixel((0, 0)) == (255, 255, 255)
try:
    pipe(height=8, width=8, num_frames=4, num_inference_steps=50, guidance_scale=3.0, seed=1,
         ref_images=ref, motion_embeds=torch.zeros(1), joint_mean=torch.zeros(1), joint_std=torch.ones(1))
except ValueError:
    print("stub ok")
"""


def test_cpu_shim_mtvcrafter_stand_in_takes_infer_7b_arguments(tmp_path: Path) -> None:
    """Set ``GAITFID_MTVCRAFTER_STUB``: snapshot_download serves the folder, the DiT pipeline is the
    stand-in (inverted reference, shapes checked, calls recorded)."""
    if not (SHIM / "sitecustomize.py").is_file():
        pytest.skip("the generic CPU shim (sitecustomize.py) comes with the smoke script's branch")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("MTVCrafterPipeline7B = None  # the real one is a DiT\n")
    stub = tmp_path / "stub"
    stub.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{SHIM}:{tmp_path}", "UPSTREAM_SHIM_QUIET": "1",
           "GAITFID_MTVCRAFTER_STUB": str(stub), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", STUB_CHECK], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "stub ok" in done.stdout, done.stderr[-2000:]
    calls = [json.loads(line)["what"] for line in (stub / "calls.jsonl").read_text().splitlines()]
    assert calls == ["snapshot_download", "from_pretrained", "call"]
