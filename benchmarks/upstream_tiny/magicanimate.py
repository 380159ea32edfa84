"""Tiny random MagicAnimate weights, built with the upstream's own classes, for ``upstream_smoke.py``.

``prepare()`` runs this file with the upstream env's python (``build`` below), which writes, under
``work/pretrained_models``, the layout ``configs/prompts/animation.yaml`` expects, with tiny channel
counts (32 channels, SD1.5's block layout, 64x64 frames):

* ``stable-diffusion-v1-5/{unet,text_encoder,tokenizer}``: diffusers ``UNet2DConditionModel`` saved as
  ``diffusion_pytorch_model.bin`` (upstream's ``UNet3DConditionModel.from_pretrained_2d`` reads only
  that file name), a transformers ``CLIPTextModel`` and a ``CLIPTokenizer`` over a byte-level vocabulary
  with no merges (the prompt is always empty upstream);
* ``sd-vae-ft-mse``: diffusers ``AutoencoderKL`` (4 blocks, so the x8 latent scale of SD1.5);
* ``MagicAnimate/appearance_encoder`` and ``MagicAnimate/densepose_controlnet``: upstream's
  ``AppearanceEncoderModel`` and ``ControlNetModel`` with the UNet's block layout;
* ``MagicAnimate/temporal_attention/temporal_attention.ckpt``: the ``motion_modules`` entries of
  upstream's ``UNet3DConditionModel.from_pretrained_2d(tiny unet, inference.yaml's unet_additional_kwargs)``.

Weights are random (seeded): the video is noise; what is exercised is the code path, the formats
and the file layout. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SIZE = 64  # frames are size x size; 64 = x8 VAE x 8 (three stride-2 UNet blocks) at latent 1x1
STEPS = 2
CHANNELS = (32, 32, 32, 32)  # GroupNorm(32) in the motion module needs multiples of 32
BLOCKS = {
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": list(CHANNELS),
    # 2 as in SD1.5: AppearanceEncoderModel.__init__ hard-codes up_blocks[3].attentions[2]
    "layers_per_block": 2,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
LAYOUT = {
    "pretrained_model_path": "stable-diffusion-v1-5",
    "pretrained_vae_path": "sd-vae-ft-mse",
    "pretrained_controlnet_path": "MagicAnimate/densepose_controlnet",
    "pretrained_appearance_encoder_path": "MagicAnimate/appearance_encoder",
    "motion_module": "MagicAnimate/temporal_attention/temporal_attention.ckpt",
}
DONE = ".tiny-weights-done"


def prepare(checkout: Path, python: Path, work: Path, device: str) -> dict[str, Any]:
    """Build the tiny weights (once per ``work``) and return the ``models.magicanimate`` overrides."""
    root = Path(work) / "pretrained_models"
    if not (root / DONE).is_file():
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        # run_path, not `python this_file.py`: the script's folder on sys.path would make this file
        # shadow upstream's `magicanimate` package
        code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        subprocess.run(
            [str(python), "-c", code, str(Path(__file__).resolve()), "build", str(root), str(checkout)],
            cwd=checkout, env=env, check=True,
        )  # fmt: skip
    return {
        "weights": {key: str(root / rel) for key, rel in LAYOUT.items()},
        "defaults": {"steps": STEPS, "size": SIZE},
        "timeout_s": 3600,
    }


# ---------------------------------------------------------------------------------------------
# Runs in the upstream env (torch, diffusers, transformers, the checkout on PYTHONPATH)


def _tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer over single bytes (no merges); returns the vocabulary size."""
    from transformers import CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(str(folder))
    return len(tokens)


def build(root: Path, checkout: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from magicanimate.models.appearance_encoder import AppearanceEncoderModel
    from magicanimate.models.controlnet import ControlNetModel
    from magicanimate.models.unet_controlnet import UNet3DConditionModel
    from omegaconf import OmegaConf
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    sd = root / LAYOUT["pretrained_model_path"]
    vocab = _tokenizer(sd / "tokenizer")
    eos = vocab - 1
    text = CLIPTextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=eos - 1, eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    CLIPTextModel(text).save_pretrained(str(sd / "text_encoder"))
    unet = UNet2DConditionModel(sample_size=SIZE // 8, in_channels=4, out_channels=4, **BLOCKS)
    unet.save_pretrained(str(sd / "unet"), safe_serialization=False)  # from_pretrained_2d reads the .bin
    # SD1.5's unet/config.json predates diffusers' mid_block_type key; with it (as diffusers >= 0.15
    # writes it), from_pretrained_2d passes "UNetMidBlock2DCrossAttn" to the 3D UNet, which rejects it
    config_path = sd / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("mid_block_type", None)
    config_path.write_text(json.dumps(config, indent=2))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=list(CHANNELS), layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=32, sample_size=SIZE,
    )  # fmt: skip
    vae.save_pretrained(str(root / LAYOUT["pretrained_vae_path"]))
    vae.save_pretrained(str(sd / "vae"))
    AppearanceEncoderModel(sample_size=SIZE // 8, in_channels=4, out_channels=4, **BLOCKS).save_pretrained(
        str(root / LAYOUT["pretrained_appearance_encoder_path"])
    )
    ControlNetModel(
        in_channels=4, conditioning_embedding_out_channels=(8, 8, 16, 16),
        **{k: v for k, v in BLOCKS.items() if k != "up_block_types"},
    ).save_pretrained(str(root / LAYOUT["pretrained_controlnet_path"]))  # fmt: skip
    inference = OmegaConf.load(str(checkout / "configs/inference/inference.yaml"))
    temporal = UNet3DConditionModel.from_pretrained_2d(
        str(sd),
        subfolder="unet",
        unet_additional_kwargs=OmegaConf.to_container(inference.unet_additional_kwargs),
    )
    motion = {k: v for k, v in temporal.state_dict().items() if "motion_modules" in k}
    if not motion:
        raise RuntimeError("the tiny UNet3DConditionModel has no motion_modules parameters")
    path = root / LAYOUT["motion_module"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(motion, str(path))
    (root / DONE).write_text(f"{len(motion)} motion-module tensors\n")


if __name__ == "__main__" and sys.argv[1:2] == ["build"]:
    build(Path(sys.argv[2]), Path(sys.argv[3]))
