"""Tiny random Moore-AnimateAnyone weights, built with the upstream's own classes, for ``upstream_smoke.py``.

``prepare()`` runs this file with the upstream env's python (``build`` below), which writes, under
``work/pretrained_weights``, every file ``configs/prompts/animation.yaml`` names, in the layout
``scripts/pose2vid.py`` loads:

* ``stable-diffusion-v1-5/unet``: upstream's ``src.models.unet_2d_condition.UNet2DConditionModel``
  (config.json + ``diffusion_pytorch_model.bin``). pose2vid builds both the reference UNet (2D) and,
  through ``UNet3DConditionModel.from_pretrained_2d``, the denoising UNet (3D) from it. The 3D UNet
  forces SD1.5's four blocks, and ``PoseGuider(320, ...)`` is hard-coded in pose2vid, whose output is
  added after ``conv_in``: so the first block keeps SD1.5's 320 channels, the other three have 32;
* ``reference_unet.pth`` / ``denoising_unet.pth``: state dicts of the 2D UNet and of the 3D UNet
  without its motion modules (pose2vid loads the first strictly, the second with ``strict=False``);
* ``motion_module.pth``: the ``motion_modules`` entries of that 3D UNet, built with the checkout's
  ``configs/inference/inference_v2.yaml`` ``unet_additional_kwargs``;
* ``pose_guider.pth``: upstream's ``PoseGuider(320, block_out_channels=(16, 32, 96, 256))``, as
  pose2vid constructs it (its ``conv_out`` is re-drawn at random: upstream zero-initialises it);
* ``sd-vae-ft-mse``: diffusers ``AutoencoderKL`` with four blocks (SD1.5's x8 latent scale), 32 channels;
* ``image_encoder``: transformers ``CLIPVisionModelWithProjection`` (224 px, patch 32, 2 layers),
  whose projection width is the UNet's ``cross_attention_dim``.

Weights are random (seeded): the video is noise; what is exercised is the code path, the formats and
the file layout. Nothing is downloaded. The frame size is 64x96 (W x H, a multiple of 8 near the
512:784 aspect of upstream's default), with 3 DDIM steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 64, 96
STEPS = 3
POSE_GUIDER_CHANNELS = 320  # scripts/pose2vid.py: PoseGuider(320, ...), added to conv_in's output
UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [POSE_GUIDER_CHANNELS, 32, 32, 32],  # GroupNorm(32) everywhere
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
LAYOUT = {
    "pretrained_base_model_path": "stable-diffusion-v1-5",
    "pretrained_vae_path": "sd-vae-ft-mse",
    "image_encoder_path": "image_encoder",
    "denoising_unet_path": "denoising_unet.pth",
    "reference_unet_path": "reference_unet.pth",
    "pose_guider_path": "pose_guider.pth",
    "motion_module_path": "motion_module.pth",
}
DONE = ".tiny-weights-done"


def prepare(checkout: Path, python: Path, work: Path, device: str) -> dict[str, Any]:
    """Build the tiny weights (once per ``work``) and return the ``models.animateanyone`` overrides.

    ``device`` changes nothing here: the weights are device-free files, and pose2vid itself moves
    everything to ``cuda`` (the CPU shim maps that to the CPU).
    """
    root = Path(work) / "pretrained_weights"
    if not (root / DONE).is_file():
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        # run_path, not `python this_file.py`: this file's folder on sys.path could shadow upstream modules
        code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        subprocess.run(
            [str(python), "-c", code, str(Path(__file__).resolve()), "build", str(root), str(checkout)],
            cwd=checkout, env=env, check=True,
        )  # fmt: skip
    return {
        "weights": {key: str(root / rel) for key, rel in LAYOUT.items()},
        "defaults": {"steps": STEPS, "width": WIDTH, "height": HEIGHT},
        "timeout_s": 3600,
    }


# ---------------------------------------------------------------------------------------------
# Runs in the upstream env (torch, diffusers, transformers, the checkout on PYTHONPATH)


def _randomise(module: Any, seed: int) -> None:
    """Re-draw zero-initialised output convs, so that every module actually changes the result."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def build(root: Path, checkout: Path) -> None:
    import torch
    from diffusers import AutoencoderKL
    from omegaconf import OmegaConf
    from src.models.pose_guider import PoseGuider
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.models.unet_3d import UNet3DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    base = root / LAYOUT["pretrained_base_model_path"]
    UNet2DConditionModel(**UNET).save_pretrained(str(base / "unet"), safe_serialization=False)
    torch.save(UNet2DConditionModel(**UNET).state_dict(), str(root / LAYOUT["reference_unet_path"]))

    inference = OmegaConf.load(str(checkout / "configs/inference/inference_v2.yaml"))
    denoising = UNet3DConditionModel.from_pretrained_2d(
        str(base),
        "",  # no motion module file yet: it is cut out of this very model below
        subfolder="unet",
        unet_additional_kwargs=OmegaConf.to_container(inference.unet_additional_kwargs),
    )
    _randomise(denoising, 1)
    state = denoising.state_dict()
    motion = {k: v for k, v in state.items() if "motion_modules." in k}
    if not motion:
        raise RuntimeError("the tiny UNet3DConditionModel has no motion_modules parameters")
    torch.save(motion, str(root / LAYOUT["motion_module_path"]))
    torch.save({k: v for k, v in state.items() if k not in motion}, str(root / LAYOUT["denoising_unet_path"]))

    guider = PoseGuider(POSE_GUIDER_CHANNELS, block_out_channels=(16, 32, 96, 256))
    _randomise(guider, 2)
    torch.save(guider.state_dict(), str(root / LAYOUT["pose_guider_path"]))

    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32] * 4, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=32, sample_size=HEIGHT,
    ).save_pretrained(str(root / LAYOUT["pretrained_vae_path"]))  # fmt: skip
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        patch_size=32, projection_dim=UNET["cross_attention_dim"],
    )  # fmt: skip
    CLIPVisionModelWithProjection(vision).save_pretrained(str(root / LAYOUT["image_encoder_path"]))
    (root / DONE).write_text(f"{len(motion)} motion-module tensors\n")


if __name__ == "__main__" and sys.argv[1:2] == ["build"]:
    build(Path(sys.argv[2]), Path(sys.argv[3]))
