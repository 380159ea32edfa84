"""MTVCrafter-7B (DINGYANB/MTVCrafter ``infer_7b.py``): SMPL-24 joints (NLF format), 49 frames at 512x512.

What the adapter hands upstream (``/work/shared/reference/animators.md`` §4):

* one motion pickle in ``process_nlf.py``'s structure (:func:`pipeline.perception.guidance.write_mtvcrafter_pkl`:
  camera-space SMPL-24 joints in millimetres from ``Driving.smpl_mm``), holding a *list* of clips (one
  per window; ``infer_7b.py`` accepts a list and loads the model once). Every clip has exactly 49
  frames at 20 fps (the output fps), so upstream's unseeded random clip start can only be 0; a
  shorter driver repeats its last pose, and those frames are dropped afterwards;
* ``video_width`` / ``video_height`` = the driving frame padded to a square, so upstream's
  "resize so both sides >= 512, centre-crop 512x512" keeps the whole frame instead of cutting off the
  head and feet of a tall gait frame; ``video_path`` = a black placeholder video (upstream reads it
  only for its preview panel; the driving RGB never leaves the project);
* the reference at exactly 512x512 (square-padded, edge), as a ``.png`` (upstream derives the output
  name by splitting at ``.png``);
* ``python infer_7b.py --ref_image_path R --motion_data_path P --output_dir O`` with cwd = the checkout
  (it reads ``data/mean.npy`` / ``data/std.npy`` from there).

``infer_7b.py`` hard-codes 50 DPM steps, motion guidance 3.0, seed 6666, 512x512 and 49 frames, and
fetches its weights with ``snapshot_download`` (set ``models.mtvcrafter.env`` HF_HOME / HF_HUB_OFFLINE
for an offline node); those parameters cannot be changed without editing upstream, so overriding them
raises. It writes ``<output_dir>/<i>_<ref>_<video>_guidance_3.0.mp4``: five 512x512 panels [reference |
driving frame | NLF pose | VQ-reconstructed pose | generated] with 2 pixels between, at 20 fps
(imageio may scale the grid up to whole 16-pixel blocks). The adapter crops panel 4.

The camera: MTVCrafter's joints come from NLF, whose joints a 55° field-of-view camera (on the larger
side of the video, principal point in the centre; ``draw_pose.py``) projects onto the person. The
world's camera has another focal length: upstream's own pose drawing of our joints came out 1.26x
smaller than the person in the 256x256 padded world frame. So the adapter fits the driving camera's
focal length and principal point to the joints and ``Driving.keypoints`` (least squares over 12
COCO-17 / SMPL-24 joint pairs) and moves each frame's body rigidly (shape kept) to the depth and place
where the 55° camera on the padded square frame sees its centroid where the driving frame shows it. When
the fit is poor (RMS > 5 % of the frame height) or no keypoints are confident, the joints go as given
and ``notes.camera`` says why.

Not handled: the 17B ``infer_17b.py`` variant.
"""

from __future__ import annotations

import pickle
import uuid
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
    UpstreamConfigError,
    UpstreamGenerator,
    UpstreamSpec,
    Window,
    aspect_padding,
    find_one,
    fit_image,
    ingest,
    padding_notes,
    plan_windows,
    read_output,
    resampled_timeline,
    run_upstream,
    stitch_windows,
    timing_notes,
    write_image,
)
from pipeline.io.video import write_video
from pipeline.perception.guidance import Padding, write_mtvcrafter_pkl
from pipeline.skeleton import COCO17_INDEX, SMPL24_INDEX

REPO = "DINGYANB/MTVCrafter"
COMMIT = "91d5132"
ENTRY_SCRIPT = "infer_7b.py"
ENTRY_FILES = ("infer_7b.py", "data/mean.npy", "data/std.npy")

DEFAULTS: dict[str, Any] = {
    "steps": 50,
    "guidance_scale": 3.0,
    "seed": 6666,
    "size": 512,
    "window": 49,
    "fps": 20.0,
    "reference_pad": "edge",
}
FIXED = {
    "steps": "infer_7b.py hard-codes num_inference_steps=50",
    "guidance_scale": "infer_7b.py hard-codes guidance_scale=3.0",
    "seed": "infer_7b.py hard-codes seed=6666",
    "size": "infer_7b.py hard-codes a 512x512 output",
    "window": "infer_7b.py hard-codes num_frames=49",
}

RESOURCES: dict[str, Any] = {
    "gpu_mem_gb": 24,
    "gpu_mem_note": "the author says the 7B model runs on one RTX 4090 (24 GB; issue #3); bf16, VAE tiling",
    "typical_runtime_s": None,
    "runtime_note": "not published; 50 DPM steps of a CogVideoX-5B-based DiT per 49-frame clip",
}

NLF_FOV_DEG = 55.0  # draw_pose.intrinsic_matrix_from_field_of_view's default: NLF's
CAMERA_PAIRS = tuple(
    (COCO17_INDEX[name], SMPL24_INDEX[name])
    for side in ("left", "right")
    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    for name in [f"{side}_{part}"]
)
MAX_FIT_RMS = 0.05  # of the frame height: beyond it the keypoints and the joints disagree

GRID_PANELS, GENERATED_PANEL = 5, 4
SPEC = UpstreamSpec("mtvcrafter", ("smpl",), REPO, COMMIT, ENTRY_FILES, DEFAULTS, RESOURCES, fixed=FIXED)
PLACEHOLDER_HW = (64, 64)


class MTVCrafterGenerator(UpstreamGenerator, spec=SPEC):
    """MTVCrafter-7B through ``infer_7b.py``; options: the ``models.mtvcrafter`` keys."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.config.weights:
            raise UpstreamConfigError(
                f"{self.config.key('weights')}: infer_7b.py takes no weight paths (it calls "
                "snapshot_download('yanboding/MTVCrafter') and loads THUDM/CogVideoX-5b by name); point "
                f"{self.config.key('env')}.HF_HOME to a filled Hugging Face cache instead"
            )

    def _generate(self, job: GenerationJob, params: dict[str, Any], work: Path) -> GeneratedVideo:
        driving = job.driving
        if driving.smpl_mm is None:
            raise GenerationError(
                "mtvcrafter needs SMPL-24 camera-space joints (Driving.smpl_mm), this driving source has none"
            )
        if np.shape(driving.smpl_mm) != (driving.frame_count, 24, 3):
            raise GenerationError(
                f"Driving.smpl_mm has shape {np.shape(driving.smpl_mm)}, expected ({driving.frame_count}, 24, 3)"
            )
        size, length = int(params["size"]), int(params["window"])
        timeline = resampled_timeline(driving.frame_count, driving.fps, params["fps"])
        windows = plan_windows(timeline.count, length, fixed=True)
        padding = aspect_padding(driving.height, driving.width, 1, 1)
        side_h, side_w = padding.padded_hw
        reference, ref_padding = fit_image(job.reference.image, size, size, params["reference_pad"])

        token = f"gf{uuid.uuid4().hex[:12]}"
        inputs = work / "inputs"
        ref_path = write_image(inputs / f"{token}ref.png", reference)
        placeholder = write_video(
            inputs / f"{token}drv.mp4", np.zeros((length, *PLACEHOLDER_HW, 3), np.uint8), timeline.fps
        )
        joints, camera = nlf_view(
            np.asarray(driving.smpl_mm, dtype=np.float64)[timeline.sources],
            np.asarray(driving.keypoints, dtype=np.float64)[timeline.sources],
            padding,
        )
        motion = self._write_motion(
            inputs, token, joints, windows, timeline.count, placeholder, (side_h, side_w)
        )
        args = [
            ENTRY_SCRIPT,
            "--ref_image_path",
            ref_path,
            "--motion_data_path",
            motion,
            "--output_dir",
            work / "outputs",
        ]
        result = run_upstream(self.config, args, work)

        layout = GridLayout(GRID_PANELS, (size, size), gap=2, macro_block=16)
        outputs = []
        for idx in range(len(windows)):
            # upstream: <i>_<ref name before .png>_<video name without .mp4>_guidance_<scale>.mp4
            pattern = f"{idx}_{ref_path.stem}_{placeholder.stem}_guidance_*.mp4"
            found = find_one(work / "outputs", pattern, "mtvcrafter output", work)
            outputs.append(layout.crop(read_output(found, length), GENERATED_PANEL, source=str(found)))
        stitched, _ = stitch_windows(outputs, windows, timeline.count)
        frames, chosen = ingest(stitched, timeline, padding, driving.frame_count)
        notes = self.base_notes(params, job, result)
        notes.update(
            padding=padding_notes(driving=padding, reference=ref_padding),
            model_size_hw=[size, size],
            guidance={"video_width": side_w, "video_height": side_h, "clips": len(windows)},
            camera=camera,
            panel={"grid_panel_index": GENERATED_PANEL, "grid_panels": GRID_PANELS},
            timing=timing_notes(timeline, windows, chosen, driving.fps),
        )
        return GeneratedVideo(frames=frames, fps=float(driving.fps), notes=notes)

    @staticmethod
    def _write_motion(
        folder: Path,
        token: str,
        joints: np.ndarray,
        windows: list[Window],
        count: int,
        video: Path,
        size_hw: tuple[int, int],
    ) -> Path:
        """One pickle with one NLF-format clip per window (a bare dict when there is one window)."""
        clips = []
        for i, window in enumerate(windows):
            path = folder / f"{token}clip{i}.pkl"
            try:
                write_mtvcrafter_pkl(
                    path,
                    joints[window.slots(count)],
                    video_path=video,
                    video_width=size_hw[1],
                    video_height=size_hw[0],
                )
            except ValueError as err:
                raise GenerationError(f"Driving.smpl_mm cannot feed MTVCrafter: {err}") from err
            clips.append(path)
        if len(clips) == 1:
            return clips[0]
        combined = []
        for path in clips:
            # our own files, written a moment ago by write_mtvcrafter_pkl (not a downloaded pickle)
            with open(path, "rb") as handle:
                combined.append(pickle.load(handle))
        target = folder / f"{token}.pkl"
        with open(target, "wb") as handle:
            pickle.dump(combined, handle)
        return target


def fit_pinhole(joints_mm: np.ndarray, keypoints: np.ndarray) -> tuple[float, float, float, float] | None:
    """Focal length and principal point (pixels) projecting the joints onto the keypoints, and the RMS.

    ``joints_mm`` ``[T, 24, 3]`` camera space, ``keypoints`` ``[T, 17, 3]`` COCO-17 (x, y, confidence) in
    the driving frame. None when fewer than 3 confident pairs with positive depth exist.
    """
    coco, smpl = (list(i) for i in zip(*CAMERA_PAIRS, strict=True))
    points, seen = joints_mm[:, smpl], keypoints[:, coco]
    usable = (
        (seen[..., 2] > 0) & (points[..., 2] > 0) & np.isfinite(points).all(-1) & np.isfinite(seen).all(-1)
    )
    if usable.sum() < 3:
        return None
    ratio = points[usable][:, :2] / points[usable][:, 2:3]
    ones, zeros = np.ones(len(ratio)), np.zeros(len(ratio))
    design = np.concatenate(
        [np.stack([ratio[:, 0], ones, zeros], 1), np.stack([ratio[:, 1], zeros, ones], 1)]
    )
    target = np.concatenate([seen[usable][:, 0], seen[usable][:, 1]])
    (focal, cx, cy), *_ = np.linalg.lstsq(design, target, rcond=None)
    rms = float(np.sqrt(np.mean((design @ np.array([focal, cx, cy]) - target) ** 2)))
    return float(focal), float(cx), float(cy), rms


def nlf_view(
    joints_mm: np.ndarray, keypoints: np.ndarray, padding: Padding
) -> tuple[np.ndarray, dict[str, Any]]:
    """The joints as NLF would give them for the padded square video: each frame's body moved rigidly so
    that a 55° camera sees its centroid where the driving frame shows it, at the same size."""
    height, width = padding.padded_hw
    nlf_focal = max(height, width) / (2 * np.tan(np.radians(NLF_FOV_DEG) / 2))
    fit = fit_pinhole(joints_mm, keypoints)
    limit = MAX_FIT_RMS * padding.height
    if fit is None or fit[0] <= 0 or fit[3] > limit:
        reason = (
            "no confident keypoints"
            if fit is None
            else f"fit rejected (focal {fit[0]:.1f} px, RMS {fit[3]:.1f} px)"
        )
        return joints_mm, {"reexpressed": False, "reason": reason}
    focal, cx, cy, rms = fit
    centre = joints_mm.mean(axis=1)  # the body's centroid: its depth sets the body's image size
    u = focal * centre[:, 0] / centre[:, 2] + cx + padding.left
    v = focal * centre[:, 1] / centre[:, 2] + cy + padding.top
    depth = centre[:, 2] * nlf_focal / focal  # same image size under the new focal length
    moved = np.stack([(u - width / 2) * depth / nlf_focal, (v - height / 2) * depth / nlf_focal, depth], -1)
    notes = {"reexpressed": True, "fitted_focal_px": round(focal, 2), "fitted_principal_point": [round(cx, 2), round(cy, 2)],
             "fit_rms_px": round(rms, 3), "nlf_focal_px": round(float(nlf_focal), 2)}  # fmt: skip
    return joints_mm - centre[:, None] + moved[:, None], notes


__all__ = ["COMMIT", "DEFAULTS", "REPO", "RESOURCES", "MTVCrafterGenerator"]
