"""MTVCrafter contract-level stand-in for its DiT pipeline (CPU ONLY; see ``sitecustomize.py``).

Inactive unless ``GAITFID_MTVCRAFTER_STUB`` names a folder (``benchmarks/upstream_tiny/mtvcrafter.py``
sets it). MTVCrafter-7B's generator is a CogVideoX-5B-based DiT loaded from the Hugging Face hub; it
cannot be made tiny here, so with the variable set:

* ``huggingface_hub.snapshot_download`` returns that folder, which holds a random-weight
  ``4DMoT/mp_rank_00_model_states.pt`` built with upstream's own ``SMPL_VQVAE`` classes: the real
  motion VQ-VAE runs on our joints;
* ``models.MTVCrafterPipeline7B`` becomes :class:`StubPipeline7B`: ``from_pretrained`` and the call
  take upstream's arguments, check their shapes, record them in ``<folder>/calls.jsonl`` and return
  ``num_frames`` frames that are the colour-inverted reference, so that a wrong panel crop on our
  side is visible (panel 0 is the reference itself).

Everything else in ``infer_7b.py`` is upstream's code: argument parsing, the pickle, ``data/mean.npy``
and ``std.npy``, frame sampling, decord on the placeholder video, the reference image, the pose
drawing, the five-panel grid and ``imageio.mimsave``.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

from sitecustomize import when_imported

STUB_ENV = "GAITFID_MTVCRAFTER_STUB"


class StubPipeline7B:
    """Takes ``MTVCrafterPipeline7B``'s place: same loading and call signature, no DiT."""

    folder: Path

    def __init__(self) -> None:
        self.vae = types.SimpleNamespace(enable_tiling=lambda: None, enable_slicing=lambda: None)

    @classmethod
    def from_pretrained(cls, model_path, transformer_model_path, torch_dtype, scheduler_type):  # noqa: ANN001, ANN206
        cls._record(
            "from_pretrained", model_path=model_path, transformer_model_path=transformer_model_path,
            torch_dtype=str(torch_dtype), scheduler_type=scheduler_type,
        )  # fmt: skip
        return cls()

    def to(self, device):  # noqa: ANN001, ANN201
        return self

    def __call__(
        self,
        *,
        height,
        width,
        num_frames,
        num_inference_steps,
        guidance_scale,
        seed,
        ref_images,
        motion_embeds,
        joint_mean,
        joint_std,
    ):  # noqa: ANN001, ANN204
        import torch
        from PIL import Image

        if tuple(ref_images.shape) != (num_frames, 3, height, width):
            raise ValueError(f"ref_images {tuple(ref_images.shape)} != {(num_frames, 3, height, width)}")
        self._record(
            "call", height=height, width=width, num_frames=num_frames, steps=num_inference_steps,
            guidance_scale=guidance_scale, seed=seed, ref_images=list(ref_images.shape),
            motion_embeds=list(motion_embeds.shape), joint_mean=list(joint_mean.shape),
        )  # fmt: skip
        pixels = ((1 - ref_images) * 127.5).clamp(0, 255).to(torch.uint8)  # the inverted reference
        frames = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in pixels]
        return types.SimpleNamespace(frames=[frames])

    @classmethod
    def _record(cls, what: str, **fields) -> None:  # noqa: ANN003
        with open(cls.folder / "calls.jsonl", "a") as handle:
            handle.write(json.dumps({"what": what, **fields}) + "\n")


def _install(folder: Path) -> None:
    StubPipeline7B.folder = folder

    def snapshot_download(repo_id, *args, **kwargs):  # noqa: ANN001, ANN202
        StubPipeline7B._record("snapshot_download", repo_id=repo_id)
        return str(folder)

    def patch_hub(hub: types.ModuleType) -> None:
        hub.snapshot_download = snapshot_download

    def patch_models(models: types.ModuleType) -> None:
        models.MTVCrafterPipeline7B = StubPipeline7B

    when_imported("huggingface_hub", patch_hub)
    when_imported("models", patch_models)


if os.environ.get(STUB_ENV):
    _install(Path(os.environ[STUB_ENV]))
