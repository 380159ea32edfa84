"""AnimateAnyone, through the Moore-AnimateAnyone reproduction (MooreThreads/Moore-AnimateAnyone).

The official HumanAIGC repository has no code; Moore's ``scripts/pose2vid.py`` is what runs.
What the adapter hands upstream (``/work/shared/reference/animators.md`` §2b):

* the DWPose skeleton video ``<name>_kps.mp4`` as ``tools/vid2pose.py`` would write it: drawn by
  :func:`pipeline.perception.guidance.render_openpose_frames` (style ``"moore"``) on the DWPose canvas
  (:func:`pipeline.perception.guidance.dwpose_canvas_size`: short side 512, multiples of 64) of the driving frame
  *after* padding it to the model's W:H (512:784), at the driving fps, so upstream's straight resize
  to 512x784 does not squash a tall gait frame;
* the reference at exactly 512x784 (``-W``, ``-H``), padded to that aspect (edge padding);
* a copy of the checkout's ``configs/prompts/animation.yaml`` with ``test_cases`` {reference: [pose
  videos]} (one pose video per window), and the CLI ``-W -H -L --seed --cfg --steps --fps``.
  ``-L`` is the window length: upstream only uses the first ``-L`` pose frames, so it is set to the
  number of frames of every pose video (the whole driving sequence unless ``max_frames`` splits it).

Upstream writes ``output/<date>/<HHMM>--seed_<s>-<W>x<H>/<ref>_<pose>_<H>x<W>_<int(cfg)>_<HHMM>.mp4``
in the checkout: a [reference | pose | generated] grid (torchvision ``make_grid``, 2-pixel padding,
PyAV libx264). The adapter moves its files out of the checkout and crops panel 2.

Checked before any job, because the real code fails late or not at all (found running pose2vid with
tiny weights, ``benchmarks/upstream_smoke.py``):

* ``width`` and ``height`` must be multiples of 8: the pipeline rounds its latents down to the VAE's
  x8 grid, and pose2vid's final ``torch.cat`` of [reference, pose, generated] then fails *after* the
  whole denoising run;
* ``motion_module_path`` must be a weight file: ``UNet3DConditionModel.from_pretrained_2d`` loads it
  only when it is a file with a known suffix and otherwise silently keeps the random motion module;
* the base model, VAE and image encoder folders must hold the config and plainly named weights that
  ``from_pretrained`` (no ``variant``) reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generation.generators.base import GeneratedVideo, GenerationError, GenerationJob
from pipeline.generation.generators.upstream.common import (
    GridLayout,
    UpstreamConfigError,
    UpstreamGenerator,
    UpstreamSpec,
    apply_weights,
    aspect_padding,
    find_one,
    fit_image,
    ingest,
    load_upstream_yaml,
    padding_notes,
    plan_windows,
    read_output,
    resampled_timeline,
    run_upstream,
    shift_keypoints,
    stitch_windows,
    timing_notes,
    write_image,
    write_yaml,
)
from pipeline.perception.guidance import (
    coco17_to_openpose18,
    dwpose_canvas_size,
    render_openpose_frames,
    save_guidance_video,
)

REPO = "MooreThreads/Moore-AnimateAnyone"
COMMIT = "a914ef3"
ENTRY_MODULE = "scripts.pose2vid"
ENTRY_FILES = ("scripts/pose2vid.py", "configs/prompts/animation.yaml")
PROMPT_CONFIG = "configs/prompts/animation.yaml"
WEIGHT_KEYS = (
    "pretrained_base_model_path",
    "pretrained_vae_path",
    "image_encoder_path",
    "denoising_unet_path",
    "reference_unet_path",
    "pose_guider_path",
    "motion_module_path",
    "inference_config",
)

# scripts/pose2vid.py argparse defaults; the long pipeline's context (24 frames, overlap 4) is fixed.
# ``fps``: None keeps the driving fps (upstream keeps the pose video's); ``max_frames``: window length
# (None = the whole driving sequence in one window, i.e. -L = its length).
DEFAULTS: dict[str, Any] = {
    "steps": 30,
    "guidance_scale": 3.5,
    "seed": 42,
    "width": 512,
    "height": 784,
    "window": 24,
    "context_overlap": 4,
    "max_frames": None,
    "fps": None,
    "detect_resolution": 512,
    "reference_pad": "edge",
}
FIXED = {
    "window": "the context length (24) is fixed in src/pipelines/pipeline_pose2vid_long.py",
    "context_overlap": "the context overlap (4) is fixed in src/pipelines/pipeline_pose2vid_long.py",
}

RESOURCES: dict[str, Any] = {
    "gpu_mem_gb": 16,
    "gpu_mem_note": "'about 15 GB for 512x768' (maintainer, issue #3); one OOM report on 16 GB (#65)",
    "typical_runtime_s": 600,
    "runtime_note": "10 min for a 4 s video on a 3090 Ti at 30 steps (issue #40); 15-20 steps suggested",
}

GRID_PANELS, GENERATED_PANEL = 3, 2
LATENT_SCALE = 8  # SD's VAE: the pipeline's latents are (H/8, W/8), rounded down
MOTION_MODULE_KEY = "motion_module_path"
MOTION_MODULE_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")  # src/models/unet_3d.py from_pretrained_2d
# Folders pose2vid loads with from_pretrained and no ``variant``: the config and one plainly named weight
# file (an SD download holding only ``*.fp16.safetensors`` fails there, once the job is on its GPU)
FOLDER_LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "pretrained_base_model_path": (
        "unet/config.json",
        ("unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors"),
    ),
    "pretrained_vae_path": (
        "config.json",
        ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"),
    ),
    "image_encoder_path": ("config.json", ("pytorch_model.bin", "model.safetensors")),
}
SPEC = UpstreamSpec("animateanyone", ("keypoints",), REPO, COMMIT, ENTRY_FILES, DEFAULTS, RESOURCES, fixed=FIXED, prompt_config=PROMPT_CONFIG, weight_keys=WEIGHT_KEYS)  # fmt: skip


class AnimateAnyoneGenerator(UpstreamGenerator, spec=SPEC):
    """Moore-AnimateAnyone through ``scripts/pose2vid.py``; options: the ``models.animateanyone`` keys."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_frame_size(self.defaults, self.config.key("defaults"), UpstreamConfigError)

    def _check_weights(self) -> None:
        """The base checks (every weight path exists), then that each is of the kind pose2vid loads."""
        super()._check_weights()
        config = apply_weights(self.config, load_upstream_yaml(self.config, PROMPT_CONFIG), PROMPT_CONFIG)
        for key, (config_file, weight_files) in FOLDER_LAYOUT.items():
            if config.get(key):  # a missing key stops pose2vid at once, before any model loads
                self._check_folder(key, self.config.resolve(str(config[key])), config_file, weight_files)
        if config.get(MOTION_MODULE_KEY):
            self._check_motion_module(self.config.resolve(str(config[MOTION_MODULE_KEY])))

    def _check_folder(self, key: str, folder: Path, config_file: str, weight_files: tuple[str, ...]) -> None:
        if not (folder / config_file).is_file() or not any((folder / w).is_file() for w in weight_files):
            raise UpstreamConfigError(
                f"{self.config.key('weights.' + key)}: {folder} lacks {config_file} or one of "
                f"{list(weight_files)}, which pose2vid loads (a diffusers/transformers folder; fp16-only "
                "variants are not read)"
            )

    def _check_motion_module(self, path: Path) -> None:
        if not path.is_file() or path.suffix.lower() not in MOTION_MODULE_SUFFIXES:
            raise UpstreamConfigError(
                f"{self.config.key('weights.' + MOTION_MODULE_KEY)}: {path} is not a motion-module file "
                f"({'/'.join(MOTION_MODULE_SUFFIXES)}); upstream would silently run without its motion module"
            )

    def _generate(self, job: GenerationJob, params: dict[str, Any], work: Path) -> GeneratedVideo:
        check_frame_size(params, f"job {job.job_id} params", GenerationError)
        driving = job.driving
        width, height = int(params["width"]), int(params["height"])
        timeline = resampled_timeline(driving.frame_count, driving.fps, params["fps"])
        padding = aspect_padding(driving.height, driving.width, height, width)
        padded_hw = padding.padded_hw
        canvas_hw = dwpose_canvas_size(*padded_hw, resolution=int(params["detect_resolution"]))
        pose18 = shift_keypoints(
            coco17_to_openpose18(np.asarray(driving.keypoints)[timeline.sources]), padding
        )
        poses = render_openpose_frames(pose18, canvas_hw, style="moore", src_hw=padded_hw)
        reference, ref_padding = fit_image(job.reference.image, height, width, params["reference_pad"])
        windows = plan_windows(timeline.count, params["max_frames"], fixed=False)
        length = windows[0].length  # every window has the same length, which -L must be

        token = f"gf{uuid.uuid4().hex[:12]}"
        inputs = work / "inputs"
        ref_path = write_image(inputs / f"{token}ref.png", reference)
        videos = [
            save_guidance_video(inputs / f"{token}w{i}_kps.mp4", poses[w.slots(timeline.count)], timeline.fps)
            for i, w in enumerate(windows)
        ]
        config = apply_weights(self.config, load_upstream_yaml(self.config, PROMPT_CONFIG), PROMPT_CONFIG)
        config["test_cases"] = {str(ref_path): [str(v) for v in videos]}
        config_path = write_yaml(work / "animation.yaml", config)
        fps_arg = max(1, round(timeline.fps))  # pose2vid's --fps is an int; it only labels the container
        args = [
            "-m", ENTRY_MODULE, "--config", config_path, "-W", width, "-H", height, "-L", length,
            "--seed", params["seed"], "--cfg", float(params["guidance_scale"]), "--steps", params["steps"],
            "--fps", fps_arg,
        ]  # fmt: skip
        try:
            result = run_upstream(self.config, args, work)
        finally:
            moved = self._collect_outputs(ref_path, videos, work / "outputs")
        layout = GridLayout(GRID_PANELS, (height, width), gap=2, border=2)
        outputs = []
        for video in videos:
            stem = f"{ref_path.stem}_{video.stem.replace('_kps', '')}"  # upstream: <ref_name>_<pose_name>
            found = find_one(work / "outputs", f"{stem}_{height}x{width}_*.mp4", "animateanyone output", work)
            outputs.append(layout.crop(read_output(found, length), GENERATED_PANEL, source=str(found)))
        stitched, _ = stitch_windows(outputs, windows, timeline.count)
        frames, chosen = ingest(stitched, timeline, padding, driving.frame_count)
        notes = self.base_notes(params, job, result)
        notes.update(
            padding=padding_notes(driving=padding, reference=ref_padding),
            model_size_hw=[height, width],
            guidance={"kps_canvas_hw": list(canvas_hw), "fps_arg": fps_arg, "L": length},
            panel={"grid_panel_index": GENERATED_PANEL, "grid_panels": GRID_PANELS, "files": moved},
            timing=timing_notes(timeline, windows, chosen, driving.fps),
        )
        return GeneratedVideo(frames=frames, fps=float(driving.fps), notes=notes)

    def _collect_outputs(self, ref: Path, videos: list[Path], target: Path) -> list[str]:
        """Move this job's grids out of ``<checkout>/output/<date>/<run>/``; drop the dirs if left empty.

        The file names carry the job's unique token, so concurrent jobs on one checkout never collide.
        """
        root = Path(str(self.config.checkout)) / "output"
        moved: list[str] = []
        for video in videos:
            stem = f"{ref.stem}_{video.stem.replace('_kps', '')}"
            for found in sorted(root.glob(f"*/*/{stem}_*.mp4")) if root.is_dir() else []:
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(str(found), str(target / found.name))
                moved.append(found.name)
                for folder in (found.parent, found.parent.parent):
                    with contextlib.suppress(OSError):  # not empty: another run's files are there
                        os.rmdir(folder)
        return moved


def check_frame_size(params: Mapping[str, Any], where: str, error: type[Exception]) -> None:
    """``width`` and ``height`` must be positive multiples of the VAE's latent scale (8)."""
    for key in ("width", "height"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % LATENT_SCALE:
            raise error(
                f"{where}.{key} = {value!r}: Moore-AnimateAnyone needs a positive multiple of {LATENT_SCALE} "
                "(its latents are 1/8 of the frame; otherwise pose2vid fails after the whole denoising run)"
            )


__all__ = ["COMMIT", "DEFAULTS", "REPO", "RESOURCES", "AnimateAnyoneGenerator", "check_frame_size"]
