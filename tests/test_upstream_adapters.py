"""Upstream-animator adapters: preparation, ingestion and failure handling, against a stand-in.

Each fake checkout holds the upstream entry files as tiny scripts that run
``tests/upstream_standin/standin.py``, which checks the inputs in upstream's formats (failing loudly
otherwise) and writes outputs in upstream's layouts with a frame code in the generated panel. The
tests then check which upstream frame landed on which driving frame, that the panel was cut from the
right place and the padding undone, and the error paths (bad config before any run, a crashing or
hanging upstream → GenerationError with the stderr tail).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.generation.generators import REGISTRY, GenerationError, Generator, make_generator
from pipeline.generation.generators.base import Driving, GenerationJob, Reference
from pipeline.generation.generators.upstream import DEFAULTS, RESOURCES, animateanyone, mtvcrafter
from pipeline.generation.generators.upstream.common import (
    GridLayout,
    UpstreamConfigError,
    UpstreamRunError,
    aspect_padding,
    merge_params,
    plan_windows,
    resampled_timeline,
    stitch_windows,
)
from pipeline.io.video import read_frames
from pipeline.perception.guidance import Padding
from tests.upstream_standin import standin

STANDIN = Path(standin.__file__).resolve()
ROOT = Path(__file__).resolve().parents[1]
H, W = 160, 120  # a tall gait frame (driving and reference)

ENTRY = {
    "magicanimate": "magicanimate/pipelines/animation.py",
    "animateanyone": "scripts/pose2vid.py",
    "unianimate": "inference.py",
    "mtvcrafter": "infer_7b.py",
}


# ---------------------------------------------------------------------------------------------
# fake checkouts


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stand-in weights\n")


def _entry_script(model: str) -> str:
    return (
        "import runpy, sys\n"
        f"sys.argv = [{str(STANDIN)!r}, {model!r}, *sys.argv[1:]]\n"
        f"runpy.run_path({str(STANDIN)!r}, run_name='__main__')\n"
    )


def make_checkout(tmp_path: Path, model: str, entry_source: str | None = None) -> Path:
    """A directory shaped like the upstream checkout, whose entry point runs the stand-in."""
    root = tmp_path / f"{model}-checkout"
    entry = root / ENTRY[model]
    entry.parent.mkdir(parents=True)
    entry.write_text(entry_source if entry_source is not None else _entry_script(model))
    if model == "magicanimate":
        weights = {
            "pretrained_vae_path": "pretrained/vae.bin",
            "pretrained_controlnet_path": "pretrained/MagicAnimate/densepose_controlnet.bin",
            "pretrained_appearance_encoder_path": "pretrained/MagicAnimate/appearance_encoder.bin",
            "motion_module": "pretrained/MagicAnimate/temporal_attention.ckpt",
        }
        _touch(root, *weights.values(), "configs/inference/inference.yaml")
        # the SD1.5 folder: from_pretrained_2d reads unet/config.json and unet/diffusion_pytorch_model.bin
        weights["pretrained_model_path"] = "pretrained/sd15"
        _touch(root, "pretrained/sd15/unet/diffusion_pytorch_model.bin")
        (root / "pretrained/sd15/unet/config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
        prompt = {**weights, "pretrained_unet_path": "", "savename": None, "fusion_blocks": "midup", "seed": [1],
                  "steps": 25, "guidance_scale": 7.5, "source_image": ["inputs/a.png"], "video_path": ["inputs/a.mp4"],
                  "inference_config": "configs/inference/inference.yaml", "size": 512, "L": 16, "S": 1, "I": 0,
                  "clip": 0, "offset": 0, "max_length": None, "video_type": "condition", "invert_video": False,
                  "save_individual_videos": False}  # fmt: skip
        (root / "configs/prompts").mkdir(parents=True)
        (root / "configs/prompts/animation.yaml").write_text(yaml.safe_dump(prompt))
    elif model == "animateanyone":
        weights = {
            "pretrained_base_model_path": "pretrained_weights/stable-diffusion-v1-5",
            "pretrained_vae_path": "pretrained_weights/sd-vae-ft-mse",
            "image_encoder_path": "pretrained_weights/image_encoder",
            "denoising_unet_path": "pretrained_weights/denoising_unet.pth",
            "reference_unet_path": "pretrained_weights/reference_unet.pth",
            "pose_guider_path": "pretrained_weights/pose_guider.pth",
            "motion_module_path": "pretrained_weights/motion_module.pth",
        }
        _touch(root, *list(weights.values())[3:], "configs/inference/inference_v2.yaml")
        # the folders pose2vid loads with from_pretrained: a config and plainly named weights
        _touch(root, "pretrained_weights/stable-diffusion-v1-5/unet/config.json",
               "pretrained_weights/stable-diffusion-v1-5/unet/diffusion_pytorch_model.bin",
               "pretrained_weights/sd-vae-ft-mse/config.json", "pretrained_weights/sd-vae-ft-mse/diffusion_pytorch_model.bin",
               "pretrained_weights/image_encoder/config.json", "pretrained_weights/image_encoder/pytorch_model.bin")  # fmt: skip
        prompt = {**weights, "inference_config": "./configs/inference/inference_v2.yaml", "weight_dtype": "fp16",
                  "test_cases": {"./ref.png": ["./pose_kps.mp4"]}}  # fmt: skip
        (root / "configs/prompts").mkdir(parents=True)
        (root / "configs/prompts/animation.yaml").write_text(yaml.safe_dump(prompt))
    elif model == "unianimate":
        _touch(root, "tools/inferences/inference_unianimate_entrance.py", "checkpoints/unianimate_16f_32f_non_ema_223000.pth",
               "checkpoints/open_clip_pytorch_model.bin", "checkpoints/v2-1_512-ema-pruned.ckpt")  # fmt: skip
        config = {"max_frames": 32, "resolution": [512, 768], "round": 1, "ddim_timesteps": 30, "seed": 11,
                  "test_list_path": [[2, "data/images/a.jpg", "data/saved_pose/a"]],
                  "partial_keys": [["image", "local_image", "dwpose"], ["image", "randomref", "dwpose"]],
                  "TASK_TYPE": "inference_unianimate_entrance", "guide_scale": 2.5, "vit_resolution": [224, 224],
                  "test_model": "checkpoints/unianimate_16f_32f_non_ema_223000.pth",
                  "embedder": {"type": "FrozenOpenCLIPTextVisualEmbedder", "layer": "penultimate",
                               "pretrained": "checkpoints/open_clip_pytorch_model.bin"},
                  "auto_encoder": {"type": "AutoencoderKL", "embed_dim": 4,
                                   "pretrained": "checkpoints/v2-1_512-ema-pruned.ckpt"},
                  "CPU_CLIP_VAE": True, "noise_prior_value": 949}  # fmt: skip
        (root / "configs").mkdir()
        (root / "configs/UniAnimate_infer.yaml").write_text(yaml.safe_dump(config))
    elif model == "mtvcrafter":
        (root / "data").mkdir()
        rng = np.random.default_rng(0)
        np.save(root / "data/mean.npy", rng.normal(size=(24, 3)) + [0, 200, 1800])
        np.save(root / "data/std.npy", np.ones((24, 3)))
    return root


def options(tmp_path: Path, model: str, **extra: object) -> dict[str, object]:
    checkout = tmp_path / f"{model}-checkout"
    if not checkout.exists():
        make_checkout(tmp_path, model)
    return {"checkout": str(checkout), "python": sys.executable, "work_dir": str(tmp_path / "work"), **extra}


# ---------------------------------------------------------------------------------------------
# a small job: tall 160x120 frames, a walking COCO pose, part maps and SMPL joints

# COCO-17 pose of a standing person in a 160x120 (HxW) frame
COCO_XY = np.array([
    (60, 22), (64, 18), (56, 18), (69, 20), (51, 20), (75, 42), (45, 42), (80, 68), (40, 68),
    (82, 92), (38, 92), (70, 88), (50, 88), (71, 115), (49, 115), (72, 142), (48, 142),
], dtype=float)  # fmt: skip


def reference_image() -> np.ndarray:
    """A pattern whose every region is recognisable: colour ramps plus coarse blocks."""
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack(
        [xx * 255 // (W - 1), yy * 255 // (H - 1), ((yy // 20 + xx // 20) % 2) * 200 + 20], axis=-1
    )
    return image.astype(np.uint8)


def make_job(frames: int = 30, fps: float = 25.0, *, ref_keypoints: bool = True) -> GenerationJob:
    t = np.arange(frames)[:, None]
    xy = COCO_XY[None] + np.stack([np.sin(t / 3.0) * 6, np.zeros_like(t, dtype=float)], axis=-1)
    keypoints = np.concatenate([xy, np.full((frames, 17, 1), 0.9)], axis=-1)
    parts = np.zeros((frames, H, W, 3), dtype=np.uint8)
    for k in range(frames):  # a body made of part labels 1..24 in horizontal bands, swaying
        x0 = 40 + int(np.sin(k / 3.0) * 6)
        parts[k, 15:150, x0 : x0 + 40, 0] = np.repeat(np.arange(1, 25), 6)[:135, None].astype(np.uint8)
    smpl = np.zeros((frames, 24, 3))
    smpl[..., 1] = np.linspace(-800, 900, 24)[None]  # y down the body (camera space, mm)
    smpl[..., 0] = np.sin(t / 3.0) * 100
    smpl[..., 2] = 4000.0
    driving = Driving(
        keypoints=keypoints, height=H, width=W, fps=fps, parts=parts, smpl_mm=smpl, sequence_id="drv"
    )
    ref_kps = np.concatenate([COCO_XY, np.full((17, 1), 0.9)], axis=-1) if ref_keypoints else None
    reference = Reference(image=reference_image(), keypoints=ref_kps, sequence_id="ref")
    return GenerationJob(job_id="subj/nm-01/090 x ref", reference=reference, driving=driving, seed=5)


def decoded(frames: np.ndarray, padding: Padding) -> list[int]:
    return [standin.decode_code(f, padding.padded_hw, (padding.top, padding.left)) for f in frames]


def check_appearance(frames: np.ndarray, padding: Padding, tolerance: float = 8.0) -> None:
    """Outside the code box every output frame shows the reference where it was: panel cut and padding undone."""
    mask = ~standin.code_mask((H, W), padding.padded_hw, (padding.top, padding.left))
    error = np.abs(frames.astype(np.int16) - reference_image().astype(np.int16))[:, mask].mean()
    assert error < tolerance, f"mean abs error {error:.1f} against the reference outside the code box"


def nearest(positions: np.ndarray, frames: int) -> np.ndarray:
    return np.array([int(np.argmin(np.abs(positions - t))) for t in range(frames)])


# ---------------------------------------------------------------------------------------------
# registry and defaults


def test_registry_has_the_four_adapters_and_no_standin() -> None:
    assert {"magicanimate", "animateanyone", "unianimate", "mtvcrafter"} <= set(REGISTRY)
    assert not [name for name in REGISTRY if "stand" in name]
    with pytest.raises(ValueError, match="unknown generator"):
        make_generator("standin")
    for name in ENTRY:  # each satisfies the Generator protocol once constructed
        assert isinstance(make_generator(name, checkout="/nowhere", python=sys.executable), Generator)


@pytest.mark.parametrize(
    ("model", "steps", "cfg", "seed"),
    [
        ("magicanimate", 25, 7.5, 1),
        ("animateanyone", 30, 3.5, 42),
        ("unianimate", 30, 2.5, 11),
        ("mtvcrafter", 50, 3.0, 6666),
    ],
)
def test_defaults_follow_the_reference(model: str, steps: int, cfg: float, seed: int) -> None:
    defaults = DEFAULTS[model]
    assert (defaults["steps"], defaults["guidance_scale"], defaults["seed"]) == (steps, cfg, seed)
    assert RESOURCES[model]["gpu_mem_gb"] >= 12


# ---------------------------------------------------------------------------------------------
# shared machinery


def test_grid_crop_geometry_and_macro_block_rescale() -> None:
    panels = [np.full((2, 6, 4, 3), 40 * (k + 1), np.uint8) for k in range(3)]
    grid = standin.make_grid(panels, gap=2, border=2)
    layout = GridLayout(3, (6, 4), gap=2, border=2)
    assert grid.shape[1:3] == layout.size_hw == (10, 20)  # make_grid: 3 * (4 + 2) + 2
    for k in range(3):
        assert (layout.crop(grid, k) == 40 * (k + 1)).all()
    big = standin.make_grid(
        [np.full((1, 64, 80, 3), v, np.uint8) for v in (0, 90, 250)], gap=2, border=0, macro_block=16
    )
    assert big.shape[1:3] == (64, 256)  # 3*80 + 4 = 244 scaled up to 256, as imageio does
    cropped = GridLayout(3, (64, 80), gap=2, macro_block=16).crop(big, 2)
    assert abs(float(cropped[:, :, 4:-4].mean()) - 250) < 3
    with pytest.raises(GenerationError, match="3-panel grid"):
        layout.crop(np.zeros((1, 11, 20, 3), np.uint8), 0)


def test_aspect_padding_pads_instead_of_squashing() -> None:
    assert aspect_padding(160, 120, 1, 1) == Padding(0, 0, 20, 20, 160, 120)
    # 120 * 784 / 512 = 183.75 rows → 184: 12 above, 12 below
    assert aspect_padding(160, 120, 784, 512) == Padding(12, 12, 0, 0, 160, 120)
    assert aspect_padding(300, 100, 768, 512) == Padding(0, 0, 50, 50, 300, 100)
    assert aspect_padding(100, 300, 1, 1) == Padding(100, 100, 0, 0, 100, 300)


def test_windows_timeline_and_stitching() -> None:
    assert [(w.start, w.length) for w in plan_windows(25, 10, fixed=False)] == [(0, 10), (10, 10), (15, 10)]
    assert [(w.start, w.length) for w in plan_windows(5, 10, fixed=True)] == [(0, 10)]
    assert plan_windows(5, 10, fixed=True)[0].slots(5).tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4]
    assert [(w.start, w.length) for w in plan_windows(5, None, fixed=False)] == [(0, 5)]
    timeline = resampled_timeline(30, 30.0, 25.0)
    assert timeline.count == 25 and np.allclose(timeline.positions[:3], [0, 1.2, 2.4])
    assert timeline.sources[:4].tolist() == [0, 1, 2, 4]
    windows = plan_windows(25, 10, fixed=False)
    outputs = [np.full((10, 1, 1, 1), 100 * i + np.arange(10)[:, None, None, None]) for i in range(3)]
    stitched, owner = stitch_windows(outputs, windows, 25)
    assert stitched[:, 0, 0, 0].tolist() == [*range(10), *range(100, 110), *range(205, 210)]
    assert owner.tolist() == [0] * 10 + [1] * 10 + [2] * 5


def test_params_reject_unknown_fixed_and_bad_values() -> None:
    base = {"steps": 30, "guidance_scale": 3.0, "seed": 1, "window": 49}
    assert merge_params(base, {"steps": 5}, where="p")["steps"] == 5
    with pytest.raises(GenerationError, match="unknown parameter"):
        merge_params(base, {"step": 5}, where="p")
    with pytest.raises(GenerationError, match="the seed comes from the job"):
        merge_params(base, {"seed": 3}, where="p")
    with pytest.raises(GenerationError, match="hard-coded"):
        merge_params(base, {"window": 16}, where="p", fixed={"window": "hard-coded upstream"})
    with pytest.raises(GenerationError, match="positive integer"):
        merge_params(base, {"steps": 0}, where="p")


# ---------------------------------------------------------------------------------------------
# configuration errors: before anything runs


@pytest.mark.parametrize("model", list(ENTRY))
def test_missing_checkout_fails_at_load_naming_the_key(tmp_path: Path, model: str) -> None:
    generator = make_generator(model, **options(tmp_path, model, checkout=str(tmp_path / "nowhere")))
    with pytest.raises(
        UpstreamConfigError, match=rf"models\.{model}\.checkout = .*nowhere: no such directory"
    ):
        generator.load()
    with pytest.raises(UpstreamConfigError):  # generate validates too, before making any work dir
        generator.generate(make_job(frames=4))
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("model", list(ENTRY))
def test_missing_python_or_entry_file_fails_at_load(tmp_path: Path, model: str) -> None:
    missing = tmp_path / "env" / "bin" / "python"
    with pytest.raises(
        UpstreamConfigError, match=rf"models\.{model}\.python = .*env/bin/python: no such file"
    ):
        make_generator(model, **options(tmp_path, model, python=str(missing))).load()
    (tmp_path / f"{model}-checkout" / ENTRY[model]).unlink()
    with pytest.raises(UpstreamConfigError, match=rf"models\.{model}\.checkout = .* missing {ENTRY[model]}"):
        make_generator(model, **options(tmp_path, model)).load()


def test_config_key_errors(tmp_path: Path) -> None:
    with pytest.raises(UpstreamConfigError, match=r"models\.unianimate\.checkpoint"):
        make_generator("unianimate", **options(tmp_path, "unianimate", checkpoint="x"))
    opts = options(tmp_path, "magicanimate")
    del opts["python"]
    with pytest.raises(
        UpstreamConfigError, match=r"models\.magicanimate\.python .* or models\.magicanimate\.conda_env"
    ):
        make_generator("magicanimate", **opts).load()
    with pytest.raises(UpstreamConfigError, match=r"models\.magicanimate\.conda = no-such-conda-here"):
        make_generator("magicanimate", **opts, conda_env="gait", conda="no-such-conda-here").load()
    with pytest.raises(
        UpstreamConfigError, match=r"not found: .*gone\.ckpt.*models\.magicanimate\.weights\.motion_module"
    ):
        make_generator(
            "magicanimate", **options(tmp_path, "magicanimate", weights={"motion_module": "gone.ckpt"})
        ).load()
    with pytest.raises(UpstreamConfigError, match=r"has no key 'motion_modul'"):
        make_generator(
            "magicanimate", **options(tmp_path, "magicanimate", weights={"motion_modul": "x"})
        ).load()
    with pytest.raises(UpstreamConfigError, match=r"models\.mtvcrafter\.defaults\.steps .* hard-codes"):
        make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter", defaults={"steps": 20}))
    with pytest.raises(
        UpstreamConfigError, match=r"models\.mtvcrafter\.weights: infer_7b.py takes no weight paths"
    ):
        make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter", weights={"x": "y"}))


# ---------------------------------------------------------------------------------------------
# upstream failures → GenerationError with the stderr tail


def test_crashing_upstream_gives_generation_error_with_stderr_tail(tmp_path: Path) -> None:
    crash = "import sys\nprint('loading weights', flush=True)\nsys.stderr.write('Traceback ...\\ntorch.cuda.OutOfMemoryError: CUDA out of memory\\n')\nsys.exit(3)\n"
    make_checkout(tmp_path, "mtvcrafter", entry_source=crash)
    generator = make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter"))
    with pytest.raises(UpstreamRunError) as caught:
        generator.generate(make_job(frames=6))
    error = caught.value
    assert isinstance(error, GenerationError)
    assert (
        error.returncode == 3
        and "CUDA out of memory" in error.stderr_tail
        and "CUDA out of memory" in str(error)
    )
    assert "loading weights" in error.stdout_tail
    assert (Path(error.work_dir) / "logs" / "stderr.log").is_file()  # kept for debugging


def test_hanging_upstream_times_out(tmp_path: Path) -> None:
    make_checkout(tmp_path, "unianimate", entry_source="import time\ntime.sleep(60)\n")
    generator = make_generator("unianimate", **options(tmp_path, "unianimate", timeout_s=1))
    with pytest.raises(UpstreamRunError, match=r"timed out after 1 s \(models\.unianimate\.timeout_s\)"):
        generator.generate(make_job(frames=6))


def test_standin_rejects_wrong_fps_and_the_error_carries_its_message(tmp_path: Path) -> None:
    generator = make_generator("magicanimate", **options(tmp_path, "magicanimate", defaults={"fps": 30.0}))
    with pytest.raises(UpstreamRunError, match="MagicAnimate drivers are 25 fps"):
        generator.generate(make_job(frames=6))


def test_missing_guidance_is_a_clear_error(tmp_path: Path) -> None:
    job = make_job(frames=6, ref_keypoints=False)
    with pytest.raises(GenerationError, match=r"Reference\.keypoints"):
        make_generator("unianimate", **options(tmp_path, "unianimate")).generate(job)
    job.driving.parts = None
    with pytest.raises(GenerationError, match=r"Driving\.parts"):
        make_generator("magicanimate", **options(tmp_path, "magicanimate")).generate(job)
    with pytest.raises(GenerationError, match=r"hard-codes"):
        make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter")).generate(
            GenerationJob("j", job.reference, job.driving, seed=1, params={"guidance_scale": 2.0})
        )


# ---------------------------------------------------------------------------------------------
# end to end against the stand-in: preparation accepted, panel cut, padding undone, frames resampled


def test_magicanimate_resamples_30fps_driver_to_25_and_back(tmp_path: Path) -> None:
    job = make_job(frames=30, fps=30.0)
    video = make_generator("magicanimate", **options(tmp_path, "magicanimate", keep_work=True)).generate(job)
    assert video.frames.shape == (30, H, W, 3) and video.fps == 30.0
    padding = Padding(0, 0, 20, 20, H, W)
    assert video.notes["padding"]["driving"] == padding.__dict__
    assert decoded(video.frames, padding) == nearest(np.arange(25) * 1.2, 30).tolist()
    check_appearance(video.frames, padding)
    assert video.notes["panel"]["sources"] == ["generated-only video"]
    work = Path(video.notes["work_dir"])
    config = yaml.safe_load((work / "animation.yaml").read_text())
    assert (config["seed"], config["steps"], config["guidance_scale"], config["L"]) == ([5], 25, 7.5, 16)
    assert not (tmp_path / "magicanimate-checkout" / "samples" / config["savename"]).exists()  # moved out
    # the tall frame was padded to a square, not stretched: background columns left and right, and the
    # 40-pixel-wide body spans 40/160 of the 512-pixel control frame
    control = read_frames(config["video_path"][0])
    assert control.shape == (25, 512, 512, 3)
    background = np.abs(control.astype(int) - standin.VIRIDIS0_RGB).max(axis=-1) < 12
    assert background[:, :, :60].all() and background[:, :, -60:].all()
    body_columns = (~background[0]).any(axis=0).sum()
    assert abs(body_columns - 40 * 512 / 160) <= 6


def test_magicanimate_windows_and_grid_fallback(tmp_path: Path) -> None:
    opts = options(tmp_path, "magicanimate", defaults={"max_frames": 10}, env={"STANDIN_GRID_ONLY": "1"})
    video = make_generator("magicanimate", **opts).generate(make_job(frames=25))
    padding = Padding(0, 0, 20, 20, H, W)
    assert decoded(video.frames, padding) == [*range(10), *range(100, 110), *range(205, 210)]
    assert video.notes["panel"]["sources"] == ["grid panel 2"] * 3
    check_appearance(video.frames, padding)


def test_animateanyone_kps_video_windows_and_cli(tmp_path: Path) -> None:
    opts = options(tmp_path, "animateanyone", defaults={"max_frames": 8, "steps": 12})
    video = make_generator("animateanyone", **opts).generate(make_job(frames=20, fps=25.0))
    padding = Padding(12, 12, 0, 0, H, W)
    assert video.notes["padding"]["driving"] == padding.__dict__
    expected = [t if t < 8 else 100 + t - 8 if t < 16 else 200 + t - 12 for t in range(20)]
    assert decoded(video.frames, padding) == expected
    check_appearance(video.frames, padding)
    command = video.notes["command"]
    for arg in (
        "-m scripts.pose2vid",
        "-W 512",
        "-H 784",
        "-L 8",
        "--seed 5",
        "--cfg 3.5",
        "--steps 12",
        "--fps 25",
    ):
        assert arg in command
    assert video.notes["guidance"]["kps_canvas_hw"] == [768, 512]
    # the grids were moved out of the user's checkout
    assert not list((tmp_path / "animateanyone-checkout" / "output").rglob("*.mp4"))


def test_animateanyone_squashed_pose_canvas_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(animateanyone, "aspect_padding", lambda h, w, th, tw: Padding(0, 0, 0, 0, h, w))
    with pytest.raises(UpstreamRunError, match="another aspect than -W 512 -H 784"):
        make_generator("animateanyone", **options(tmp_path, "animateanyone")).generate(make_job(frames=6))


def test_unianimate_frame_interval_and_short_clip_padding(tmp_path: Path) -> None:
    video = make_generator("unianimate", **options(tmp_path, "unianimate", keep_work=True)).generate(
        make_job(frames=40)
    )
    padding = Padding(10, 10, 0, 0, H, W)
    assert video.notes["padding"]["driving"] == padding.__dict__
    assert decoded(video.frames, padding) == nearest(np.arange(20) * 2.0, 40).tolist()  # every 2nd frame
    check_appearance(video.frames, padding)
    work = Path(video.notes["work_dir"])
    config = yaml.safe_load((work / "gaitfid_unianimate.yaml").read_text())
    assert (config["max_frames"], config["resolution"], config["seed"], config["guide_scale"]) == (
        32,
        [512, 768],
        5,
        2.5,
    )
    assert config["partial_keys"] == [["image", "randomref", "dwpose"]]
    assert config["test_list_path"][0][0] == 2
    json.dumps(video.notes)  # the notes go into tables as JSON
    folder = Path(config["test_list_path"][0][2])
    assert len(list(folder.glob("[0-9]*.jpg"))) == 63 and (folder / "ref_pose.jpg").is_file()


def test_unianimate_several_windows(tmp_path: Path) -> None:
    opts = options(tmp_path, "unianimate", defaults={"window": 8})
    video = make_generator("unianimate", **opts).generate(make_job(frames=36))
    samples = nearest(np.arange(18) * 2.0, 36)  # sample j; windows cover 0..7, 8..15, 10..17
    owner_code = [j if j < 8 else 100 + j - 8 if j < 16 else 200 + j - 10 for j in range(18)]
    assert decoded(video.frames, Padding(10, 10, 0, 0, H, W)) == [owner_code[j] for j in samples]


def test_mtvcrafter_clips_at_20fps_square_frame_and_panel(tmp_path: Path) -> None:
    video = make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter")).generate(
        make_job(frames=75, fps=25.0)
    )
    assert video.frames.shape == (75, H, W, 3) and video.fps == 25.0
    padding = Padding(0, 0, 20, 20, H, W)
    samples = nearest(np.arange(60) * 1.25, 75)  # 60 model frames at 20 fps: clips 0..48 and 11..59
    owner_code = [j if j < 49 else 100 + j - 11 for j in range(60)]
    assert decoded(video.frames, padding) == [owner_code[j] for j in samples]
    check_appearance(video.frames, padding)
    assert video.notes["guidance"] == {"video_width": 160, "video_height": 160, "clips": 2}
    assert video.notes["seed_requested"] == 5 and video.notes["params"]["seed"] == 6666


def test_mtvcrafter_unpadded_frame_would_be_cropped_by_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mtvcrafter, "aspect_padding", lambda h, w, th, tw: Padding(0, 0, 0, 0, h, w))
    with pytest.raises(UpstreamRunError, match="centre-cropped to 512x512 upstream"):
        make_generator("mtvcrafter", **options(tmp_path, "mtvcrafter")).generate(make_job(frames=6))


# ---------------------------------------------------------------------------------------------
# conda env files


@pytest.mark.parametrize(
    ("model", "python", "pins"),
    [
        ("magicanimate", "python=3.8.5", ("torch==2.0.1", "diffusers==0.21.4", "xformers==0.0.22")),
        ("animateanyone", "python=3.10", ("torch==2.0.1", "diffusers==0.24.0", "xformers==0.0.22")),
        ("unianimate", "python=3.9", ("diffusers==0.26.3", "xformers==0.0.20", "open-clip-torch==2.24.0")),
        ("mtvcrafter", "python=3.11", ("torch==2.7.0", "diffusers==0.33.1", "accelerate==1.6.0")),
    ],
)
def test_env_files_pin_upstream_versions(model: str, python: str, pins: tuple[str, ...]) -> None:
    path = ROOT / "workflow" / "envs" / f"{model}.yaml"
    text = path.read_text()
    env = yaml.safe_load(text)
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert python in deps
    for pin in pins:
        assert pin in pip
    assert "github.com" in text and "commit" in text
