"""MagicAnimate (magic-research/magic-animate): DensePose-driven, square 512x512.

What the adapter hands upstream (facts: ``/work/shared/reference/animators.md`` §1):

* the DensePose guidance as an mp4 of 512x512 frames at 25 fps (the demo drivers' format; upstream
  resizes non-512 frames straight to a square, so a tall gait frame is first padded to a square with
  background instead of being squashed), rendered from ``Driving.parts`` by
  :func:`pipeline.perception.guidance.densepose_guidance_square` (vid2densepose's Viridis colouring);
* the reference image at exactly 512x512, padded to a square the same way (edge padding, as the
  author suggests), so upstream's straight ``resize((512, 512))`` is a no-op;
* a copy of the checkout's ``configs/prompts/animation.yaml`` with the job's inputs, seed, steps,
  guidance scale, ``size``, ``L`` and a unique ``savename``;
* the command ``python -m magicanimate.pipelines.animation --config <yaml>`` with cwd = the checkout.

Upstream writes ``samples/<savename>/videos/<src>_<vid>.mp4`` (generated frames only, 25 fps) and
``.../<src>_<vid>/grid.mp4`` ([source | control | generated], torchvision ``make_grid`` with 2-pixel
padding). imageio scales both up to whole 16-pixel macro blocks (size 72 gives an 80x80 generated-only
video; three 64-pixel panels give a 68x200 grid written as 80x208: measured on upstream's output). The
adapter reads the generated-only video and falls back to cropping panel 2 of the grid.

Checked against the real code with tiny random weights (``benchmarks/upstream_smoke.py``, docs/architecture.md
"Upstream animators against their real code"): ``guidance_scale`` must be > 1 and ``size`` a multiple of 8,
and the SD1.5 UNet folder must hold the ``config.json`` and ``diffusion_pytorch_model.bin`` that
``from_pretrained_2d`` opens; the adapter refuses anything else before a job starts.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generation.generators.base import (
    GeneratedVideo,
    GenerationError,
    GenerationJob,
)
from pipeline.generation.generators.upstream.common import (
    GridLayout,
    UpstreamConfig,
    UpstreamConfigError,
    UpstreamGenerator,
    UpstreamSpec,
    Window,
    apply_weights,
    fit_image,
    ingest,
    load_upstream_yaml,
    padding_notes,
    plan_windows,
    read_output,
    resampled_timeline,
    run_upstream,
    stitch_windows,
    timing_notes,
    write_image,
    write_yaml,
)
from pipeline.perception.guidance import densepose_guidance_square, save_guidance_video

REPO = "magic-research/magic-animate"
COMMIT = "d2bc3bc"
ENTRY_MODULE = "magicanimate.pipelines.animation"
ENTRY_FILES = ("magicanimate/pipelines/animation.py", "configs/prompts/animation.yaml")
PROMPT_CONFIG = "configs/prompts/animation.yaml"
# keys of configs/prompts/animation.yaml that name weights (pretrained_unet_path is "" by default)
WEIGHT_KEYS = (
    "pretrained_model_path",
    "pretrained_vae_path",
    "pretrained_controlnet_path",
    "pretrained_appearance_encoder_path",
    "pretrained_unet_path",
    "motion_module",
    "inference_config",
)

# Upstream's defaults (configs/prompts/animation.yaml, pipeline_animation.py). ``window`` is ``L``:
# control frames are edge-padded to a multiple of it; the sliding context (16 frames, overlap 4) is
# fixed inside the pipeline. ``max_frames``: split longer drivers into separate runs (None = whole).
DEFAULTS: dict[str, Any] = {
    "steps": 25,
    "guidance_scale": 7.5,
    "seed": 1,
    "size": 512,
    "window": 16,
    "context_overlap": 4,
    "fps": 25.0,
    "max_frames": None,
    "reference_pad": "edge",
}
FIXED = {
    "context_overlap": "the sliding-context overlap is fixed in magicanimate/pipelines/pipeline_animation.py"
}

# Reported by users and the authors (reference §1): ~12-15 GB; >300 s on an 8x3090 node per video.
RESOURCES: dict[str, Any] = {
    "gpu_mem_gb": 15,
    "gpu_mem_note": "fails on 10 GB; 'at least 12 GB'; ~14-15 GB on a V100 (fp16, xformers)",
    "typical_runtime_s": 300,
    "runtime_note": "per video, '>300 s on an 8x3090 node' (issue #32); scales with driving length",
}

# torchvision make_grid of 3 videos: 2-pixel padding between and around; imageio scales to 16-multiples.
GRID_PANELS, GENERATED_PANEL = 3, 2
SPEC = UpstreamSpec("magicanimate", ("parts",), REPO, COMMIT, ENTRY_FILES, DEFAULTS, RESOURCES, fixed=FIXED, prompt_config=PROMPT_CONFIG, weight_keys=WEIGHT_KEYS)  # fmt: skip


# Upstream limits the shared parameter checks do not know; both crash upstream only after every model
# has loaded (found running the real code with tiny weights, benchmarks/upstream_smoke.py).
GUIDANCE_NOTE = (
    "pipeline_animation.py always runs classifier-free guidance (it splits the ControlNet text "
    "embeddings in two halves), so guidance_scale <= 1 crashes it; use a value > 1 (upstream: 7.5)"
)
SIZE_MULTIPLE = 8  # pipeline_animation.check_inputs: height and width divisible by 8


def check_params(params: Mapping[str, Any], where: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``where.<key>`` for a value upstream cannot run."""
    if float(params["guidance_scale"]) <= 1.0:
        raise error(f"{where}.guidance_scale = {params['guidance_scale']!r}: {GUIDANCE_NOTE}")
    if int(params["size"]) % SIZE_MULTIPLE:
        raise error(
            f"{where}.size = {params['size']!r}: MagicAnimate needs a multiple of {SIZE_MULTIPLE} "
            "(pipeline_animation.check_inputs); upstream's default is 512"
        )


def check_unet_folder(config: UpstreamConfig, data: Mapping[str, Any]) -> Path:
    """The SD1.5 UNet folder upstream's ``UNet3DConditionModel.from_pretrained_2d`` reads.

    It opens ``config.json`` and ``diffusion_pytorch_model.bin`` by name (a folder with only
    ``.safetensors`` fails), and passes the config's ``mid_block_type`` to the 3D UNet unchanged: a
    config re-saved by a newer diffusers names ``UNetMidBlock2DCrossAttn``, which the 3D UNet rejects
    (SD1.5's own config has no such key). Both only fail after the text encoder has loaded on the node.
    """
    own = data.get("pretrained_unet_path")
    key = "pretrained_unet_path" if own else "pretrained_model_path"
    folder = config.resolve(str(own)) if own else config.resolve(str(data[key])) / "unet"
    where = f"{key} (point {config.key('weights.' + key)} to an SD1.5 folder in diffusers layout)"
    for name in ("config.json", "diffusion_pytorch_model.bin"):
        if not (folder / name).is_file():
            raise UpstreamConfigError(
                f"not found: {folder / name}, which MagicAnimate's UNet3DConditionModel.from_pretrained_2d "
                f"reads by that name, from {where}"
            )
    try:
        unet = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise UpstreamConfigError(f"cannot read {folder / 'config.json'} ({err}), from {where}") from err
    mid = unet.get("mid_block_type") if isinstance(unet, dict) else None
    if mid not in (None, "UNetMidBlock3DCrossAttn"):
        raise UpstreamConfigError(
            f"{folder / 'config.json'} has mid_block_type {mid!r}, which MagicAnimate's 3D UNet rejects "
            "(SD1.5's original config has no mid_block_type; a copy re-saved by a newer diffusers "
            f"adds it): use the original SD1.5 unet config, from {where}"
        )
    return folder


class MagicAnimateGenerator(UpstreamGenerator, spec=SPEC):
    """MagicAnimate through its own ``animation.py``; options: the ``models.magicanimate`` keys."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_params(self.defaults, self.config.key("defaults"), UpstreamConfigError)

    def params_for(self, job: GenerationJob) -> dict[str, Any]:
        params = super().params_for(job)
        check_params(params, f"job {job.job_id} params", GenerationError)
        return params

    def _check_weights(self) -> None:
        """The paths exist (base class); the UNet folder is one ``from_pretrained_2d`` can read."""
        super()._check_weights()
        data = apply_weights(self.config, load_upstream_yaml(self.config, PROMPT_CONFIG), PROMPT_CONFIG)
        check_unet_folder(self.config, data)

    def _generate(self, job: GenerationJob, params: dict[str, Any], work: Path) -> GeneratedVideo:
        driving = job.driving
        if driving.parts is None:
            raise GenerationError(
                "magicanimate needs DensePose part maps (Driving.parts), this driving source has none"
            )
        size = int(params["size"])
        timeline = resampled_timeline(driving.frame_count, driving.fps, params["fps"])
        guidance, padding = densepose_guidance_square(np.asarray(driving.parts)[timeline.sources], size)
        reference, ref_padding = fit_image(job.reference.image, size, size, params["reference_pad"])
        windows = plan_windows(timeline.count, params["max_frames"], fixed=False)

        token = f"gf{uuid.uuid4().hex[:12]}"
        inputs = work / "inputs"
        ref_path = write_image(inputs / f"{token}ref.png", reference)
        videos = [
            save_guidance_video(inputs / f"{token}w{i}.mp4", guidance[w.slots(timeline.count)], timeline.fps)
            for i, w in enumerate(windows)
        ]
        config_path = write_yaml(
            work / "animation.yaml", self._prompt_config(params, ref_path, videos, token)
        )
        savedir = Path(str(self.config.checkout)) / "samples" / token  # upstream: samples/<savename>
        try:
            result = run_upstream(self.config, ["-m", ENTRY_MODULE, "--config", config_path], work)
        finally:
            if savedir.is_dir():  # move our outputs out of the user's checkout, success or not
                shutil.move(str(savedir), str(work / "samples"))
        outputs, sources = [], []
        for video, window in zip(videos, windows, strict=True):
            frames, source = self._read_window(work / "samples" / "videos", ref_path, video, window, size)
            outputs.append(frames)
            sources.append(source)
        stitched, _ = stitch_windows(outputs, windows, timeline.count)
        frames, chosen = ingest(stitched, timeline, padding, driving.frame_count)
        notes = self.base_notes(params, job, result)
        notes.update(
            padding=padding_notes(driving=padding, reference=ref_padding),
            model_size_hw=[size, size],
            panel={"sources": sources, "grid_panel_index": GENERATED_PANEL, "grid_panels": GRID_PANELS},
            timing=timing_notes(timeline, windows, chosen, driving.fps),
        )
        return GeneratedVideo(frames=frames, fps=float(driving.fps), notes=notes)

    def _prompt_config(
        self, params: dict[str, Any], ref: Path, videos: list[Path], token: str
    ) -> dict[str, Any]:
        data = apply_weights(self.config, load_upstream_yaml(self.config, PROMPT_CONFIG), PROMPT_CONFIG)
        data.update(
            savename=token,
            seed=[int(params["seed"])],  # one seed, broadcast by upstream to every (source, video) pair
            steps=int(params["steps"]),
            guidance_scale=float(params["guidance_scale"]),
            source_image=[str(ref)] * len(videos),
            video_path=[str(v) for v in videos],
            size=int(params["size"]),
            L=int(params["window"]),
            S=1,
            offset=0,
            max_length=None,
            save_individual_videos=False,
        )
        return data

    @staticmethod
    def _read_window(
        videos_dir: Path, ref: Path, video: Path, window: Window, size: int
    ) -> tuple[np.ndarray, str]:
        """Generated frames of one window: the generated-only mp4, else panel 2 of the grid."""
        stem = f"{ref.name.split('.')[0]}_{video.stem}"  # upstream: <source_name>_<video_name>
        alone = videos_dir / f"{stem}.mp4"
        if alone.is_file():
            return read_output(alone, window.length), "generated-only video"
        grid_path = videos_dir / stem / "grid.mp4"
        if not grid_path.is_file():
            raise GenerationError(f"magicanimate wrote neither {alone} nor {grid_path}")
        layout = GridLayout(GRID_PANELS, (size, size), gap=2, border=2, macro_block=16)
        grid = read_output(grid_path, window.length)
        return layout.crop(grid, GENERATED_PANEL, source=str(grid_path)), "grid panel 2"


__all__ = ["COMMIT", "DEFAULTS", "REPO", "RESOURCES", "MagicAnimateGenerator"]
