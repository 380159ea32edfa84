"""MagicAnimate adapter: the mismatches found by running the real upstream code with tiny weights.

``benchmarks/upstream_smoke.py --model magicanimate`` ran magic-research/magic-animate @ d2bc3bc
(torch 2.0.1, diffusers 0.21.4, CPU shim) end to end; each case below is what that run showed, kept
here against the stand-in so that it stays fixed without the upstream code:

* ``guidance_scale <= 1`` crashes upstream (IndexError in pipeline_animation: it always splits the
  ControlNet text embeddings in two) and ``size`` not a multiple of 8 fails its ``check_inputs``; both
  only after every model has loaded, so the adapter now refuses them before any job;
* ``UNet3DConditionModel.from_pretrained_2d`` reads ``unet/config.json`` and
  ``unet/diffusion_pytorch_model.bin`` by name and rejects a 2D ``mid_block_type``; ``load()`` now
  checks the SD1.5 folder for both;
* imageio scales the generated-only video to 16-pixel blocks too (size 72 → 80x80 frames), not only
  the grid; the grid of three 64-pixel panels is 68x200 scaled to 80x208 (measured on upstream's
  output), and panel 2 of it is the generated video.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.generation.generators import GenerationError, make_generator
from pipeline.generation.generators.upstream.common import UpstreamConfigError, Window
from pipeline.generation.generators.upstream.magicanimate import MagicAnimateGenerator
from pipeline.io.video import write_video
from pipeline.perception.guidance import Padding
from tests.test_upstream_adapters import H, W, check_appearance, decoded, make_checkout, make_job, options


def _nothing_ran(tmp_path: Path) -> bool:
    """No job work dir kept logs: the upstream command never started."""
    return not list((tmp_path / "work").glob("*/logs")) if (tmp_path / "work").exists() else True


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_guidance_scale_at_most_one_is_refused_before_upstream_runs(tmp_path: Path, scale: float) -> None:
    with pytest.raises(UpstreamConfigError, match=r"models\.magicanimate\.defaults\.guidance_scale = .*> 1"):
        make_generator(
            "magicanimate", **options(tmp_path, "magicanimate", defaults={"guidance_scale": scale})
        )
    generator = make_generator("magicanimate", **options(tmp_path, "magicanimate"))
    job = make_job(frames=4)
    job.params = {"guidance_scale": scale}
    with pytest.raises(GenerationError, match=r"params\.guidance_scale .*classifier-free guidance"):
        generator.generate(job)
    assert _nothing_ran(tmp_path)
    job.params = {"guidance_scale": 1.5}  # just above 1 runs
    assert generator.generate(job).frames.shape == (4, H, W, 3)


def test_size_must_be_a_multiple_of_eight(tmp_path: Path) -> None:
    with pytest.raises(
        UpstreamConfigError, match=r"models\.magicanimate\.defaults\.size = 68: .*multiple of 8"
    ):
        make_generator("magicanimate", **options(tmp_path, "magicanimate", defaults={"size": 68}))
    generator = make_generator("magicanimate", **options(tmp_path, "magicanimate"))
    job = make_job(frames=4)
    job.params = {"size": 100}
    with pytest.raises(GenerationError, match=r"size = 100: .*multiple of 8"):
        generator.generate(job)
    assert _nothing_ran(tmp_path)


def test_size_not_a_multiple_of_16_reads_the_block_scaled_video(tmp_path: Path) -> None:
    """Size 72: upstream's generated-only mp4 is 80x80 (imageio's macro blocks); the frames still land right."""
    video = make_generator(
        "magicanimate", **options(tmp_path, "magicanimate", defaults={"size": 72})
    ).generate(make_job(frames=12))
    padding = Padding(0, 0, 20, 20, H, W)
    assert video.frames.shape == (12, H, W, 3)
    assert decoded(video.frames, padding) == list(range(12))
    check_appearance(video.frames, padding, tolerance=10.0)


def _sd_checkout(tmp_path: Path, unet_files: dict[str, str]) -> dict[str, object]:
    """Options whose SD1.5 folder holds ``unet_files`` (name → text) under ``unet/``."""
    opts = options(tmp_path, "magicanimate")
    sd = tmp_path / "sd15"
    (sd / "unet").mkdir(parents=True)
    for name, text in unet_files.items():
        (sd / "unet" / name).write_text(text)
    return {**opts, "weights": {"pretrained_model_path": str(sd)}}


def test_load_checks_the_unet_folder_from_pretrained_2d_reads(tmp_path: Path) -> None:
    safetensors_only = _sd_checkout(
        tmp_path / "a", {"config.json": "{}", "diffusion_pytorch_model.safetensors": "w"}
    )
    with pytest.raises(
        UpstreamConfigError,
        match=r"not found: .*unet/diffusion_pytorch_model\.bin.*models\.magicanimate\.weights\.pretrained_model_path",
    ):
        make_generator("magicanimate", **safetensors_only).load()
    resaved = _sd_checkout(
        tmp_path / "b",
        {
            "config.json": json.dumps({"mid_block_type": "UNetMidBlock2DCrossAttn"}),
            "diffusion_pytorch_model.bin": "w",
        },
    )
    with pytest.raises(UpstreamConfigError, match=r"mid_block_type 'UNetMidBlock2DCrossAttn'"):
        make_generator("magicanimate", **resaved).load()
    original = _sd_checkout(tmp_path / "c", {"config.json": "{}", "diffusion_pytorch_model.bin": "w"})
    make_generator("magicanimate", **original).load()  # SD1.5's own layout passes


def test_pretrained_unet_path_is_the_unet_folder_itself(tmp_path: Path) -> None:
    opts = options(tmp_path, "magicanimate")
    unet = tmp_path / "my-unet"
    unet.mkdir()
    (unet / "config.json").write_text("{}")
    with pytest.raises(
        UpstreamConfigError, match=r"my-unet/diffusion_pytorch_model\.bin.*pretrained_unet_path"
    ):
        make_generator("magicanimate", **{**opts, "weights": {"pretrained_unet_path": str(unet)}}).load()
    (unet / "diffusion_pytorch_model.bin").write_text("w")
    make_generator("magicanimate", **{**opts, "weights": {"pretrained_unet_path": str(unet)}}).load()


def test_grid_of_three_64_pixel_panels_as_upstream_wrote_it(tmp_path: Path) -> None:
    """Upstream's grid.mp4 for size 64 was 80x208: 3 panels + 2-pixel padding (68x200), block-scaled."""
    make_checkout(tmp_path, "magicanimate")
    grid = np.zeros((5, 68, 200, 3), np.uint8)
    for k, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        grid[:, 2:66, 2 + 66 * k : 66 + 66 * k] = colour
    videos = tmp_path / "videos"
    ref, control = tmp_path / "tokref.png", tmp_path / "tokw0.mp4"
    scaled = np.stack([cv2.resize(f, (208, 80)) for f in grid])
    write_video(videos / "tokref_tokw0" / "grid.mp4", scaled, 25.0)
    frames, source = MagicAnimateGenerator._read_window(videos, ref, control, Window(0, 5), 64)
    assert source == "grid panel 2" and frames.shape == (5, 64, 64, 3)
    assert np.abs(frames[:, 8:-8, 8:-8].astype(int) - [0, 0, 200]).max() < 40
