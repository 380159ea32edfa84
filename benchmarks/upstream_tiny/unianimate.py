"""Tiny random weights for UniAnimate (ali-vilab/UniAnimate), made with its own config-driven builders.

``prepare(checkout, python, work, device)`` (called by ``benchmarks/upstream_smoke.py``) runs this
file under the upstream's python with cwd = the checkout (``python unianimate.py --out DIR``). That
build step reads the checkout's ``configs/UniAnimate_infer.yaml``, shrinks the model sections (UNet
``dim`` 32 with two levels, a 32-channel VAE that still downsamples by 8, a two-layer OpenCLIP with a 32-wide
vision tower; its text width and ``embed_dim`` stay 1024 because the UNet's decoder hard-codes a
1024-wide cross-attention context) and builds each model
through upstream's own registries (``MODEL.build`` for ``UNetSD_UniAnimate``, ``AUTO_ENCODER.build``
for ``AutoencoderKL``) and ``open_clip.create_model``, then saves random weights in the formats the
inference entrance loads (a bare UNet state dict; ``{"state_dict": {"first_stage_model.*": ...}}``
for the VAE; an OpenCLIP state dict). Nothing is downloaded.

The tiny OpenCLIP architecture is not one OpenCLIP ships: the yaml names it by the path of its
``.json`` config, which ``cpu_shim/shim_unianimate.py`` registers with OpenCLIP. The tiny run
therefore needs the shim (CPU); a GPU node runs the real checkpoints without it.

The returned overrides point the adapter at the tiny yaml (``defaults.config``) and at the three
weight files (``weights``, through the adapter's own override path), and shrink the job (64x96,
8-frame windows, 2 DDIM steps). On CPU they add upstream's ``--debug`` flag: one process, no NCCL
process group, which upstream's single-GPU path would otherwise open.

The top level imports the standard library only, so the build step runs in the upstream's env.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CONFIG = "configs/UniAnimate_infer.yaml"
# OpenCLIP text width = embed_dim = the UNet's context_dim and y_dim. It stays ViT-H-14's 1024: the
# UNet's decoder builds its cross-attention with a literal context_dim=1024 (unet_unianimate.py).
CLIP_WIDTH = 1024
TINY_CLIP = {
    "embed_dim": CLIP_WIDTH,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": CLIP_WIDTH, "heads": 16, "layers": 2},
}
TINY_UNET = {
    "dim": 32, "y_dim": CLIP_WIDTH, "context_dim": CLIP_WIDTH, "dim_mult": [1, 2], "num_heads": 2,
    "head_dim": 16, "num_res_blocks": 1, "use_checkpoint": False,
}  # fmt: skip
TINY_VAE = {
    "ch": 32,
    "ch_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
}  # four levels: still 8x down, as `scale: 8`
JOB_DEFAULTS = {"width": 64, "height": 96, "window": 8, "frame_interval": 2, "steps": 2}
SHIM = Path(__file__).resolve().parent / "cpu_shim"


def tiny_config(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """The checkout's inference config with tiny model sections and weight paths under ``out``."""
    tiny = copy.deepcopy(data)
    tiny["UNet"].update(TINY_UNET)
    tiny["auto_encoder"]["ddconfig"].update(TINY_VAE)
    tiny["auto_encoder"]["pretrained"] = str(out / "vae_tiny.ckpt")
    tiny["embedder"].update(
        arch=str(out / "gaitfid-tiny-openclip.json"), pretrained=str(out / "clip_tiny.bin")
    )
    tiny["test_model"] = str(out / "unianimate_tiny.pth")
    tiny["vit_resolution"] = [TINY_CLIP["vision_cfg"]["image_size"]] * 2
    return tiny


def build(out: Path) -> None:
    """Runs under the upstream's python, cwd = the checkout: build and save the tiny models."""
    import open_clip
    import torch
    import yaml

    sys.path.insert(0, os.getcwd())
    import tools  # noqa: F401  (registers upstream's models)
    from tools.modules.config import cfg
    from utils.registry_class import AUTO_ENCODER, MODEL

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    tiny = tiny_config(yaml.safe_load(Path(CONFIG).read_text()), out)
    clip_json = Path(tiny["embedder"]["arch"])
    clip_json.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(clip_json)
    clip = open_clip.create_model(clip_json.stem)
    torch.save(clip.state_dict(), tiny["embedder"]["pretrained"])

    for key, value in copy.deepcopy(tiny).items():  # as the entrance does: the yaml over the base config
        if isinstance(value, dict) and key in cfg:
            cfg[key].update(value)
        else:
            cfg[key] = value
    vae = AUTO_ENCODER.build({**cfg.auto_encoder, "pretrained": None})
    state = {f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}
    torch.save({"state_dict": state}, tiny["auto_encoder"]["pretrained"])

    zero_y = torch.zeros(1, TINY_CLIP["text_cfg"]["context_length"], CLIP_WIDTH)
    # the base config's UNet keys (attn_scales, ...) count too, as in the entrance
    unet = MODEL.build({**cfg.UNet, "config": cfg, "zero_y": zero_y})
    torch.save(unet.state_dict(), tiny["test_model"])
    Path(out / "tiny_infer.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    sizes = {"unet": unet, "vae": vae, "clip": clip}
    print(json.dumps({k: sum(p.numel() for p in m.parameters()) for k, m in sizes.items()}))


def prepare(checkout: Path, python: Path, work: Path, device: str) -> dict[str, Any]:
    """Build the tiny weights under ``work`` and return the ``models.unianimate`` overrides."""
    out = Path(work).absolute() / "unianimate_tiny"
    pythonpath = f"{SHIM}:{checkout}" if device == "cpu" else str(checkout)
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", "UPSTREAM_SHIM_QUIET": "1"}
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--out", str(out)],
        cwd=checkout, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"unianimate tiny weights: the build step failed:\n{done.stderr[-4000:]}")
    print(f"unianimate tiny parameter counts: {done.stdout.strip().splitlines()[-1]}", file=sys.stderr)
    return {
        "defaults": {"config": str(out / "tiny_infer.yaml"), **JOB_DEFAULTS},
        "weights": {
            "test_model": str(out / "unianimate_tiny.pth"),
            "embedder.pretrained": str(out / "clip_tiny.bin"),
            "auto_encoder.pretrained": str(out / "vae_tiny.ckpt"),
        },
        "extra_args": ["--debug"] if device == "cpu" else [],
        "timeout_s": 3600,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="build UniAnimate's tiny random weights (upstream env)")
    parser.add_argument("--out", required=True, type=Path)
    build(parser.parse_args().out.absolute())
