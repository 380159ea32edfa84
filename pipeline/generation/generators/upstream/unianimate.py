"""UniAnimate (ali-vilab/UniAnimate): DWPose folders + reference pose, 512x768, 32-frame clips.

What the adapter hands upstream (``/work/shared/reference/animators.md`` §3):

* per window a pose folder ``0000.jpg ... NNNN.jpg`` + ``ref_pose.jpg`` on the fixed 768x512 (HxW)
  canvas, as ``run_align_pose.py`` writes it (:func:`pipeline.perception.guidance.render_openpose_frames` style
  ``"unianimate"`` + :func:`pipeline.perception.guidance.write_unianimate_pose_dir`): the driving keypoints and
  the reference's own keypoints (``Reference.keypoints``), each frame padded to 2:3 first so the
  stretch to the canvas does not squash a tall gait frame. No bone-length retargeting is applied
  (``run_align_pose.py`` would rescale the driver's bones to the reference's, which changes the gait
  geometry under study); COCO-17 has no toes, so the two foot points are not drawn;
* the reference at exactly 512x768, padded to 2:3 (edge padding);
* a copy of the checkout's ``configs/UniAnimate_infer.yaml`` with ``test_list_path``
  [[frame_interval, reference, pose folder], ...] (one entry per window), ``max_frames``,
  ``resolution``, ``seed``, ``ddim_timesteps``, ``guide_scale``, a single ``partial_keys`` variant
  (``['image', 'randomref', 'dwpose']`` by default: the reference is not forced in as frame 0, which
  suits a reference whose pose differs from the driver's) and ``log_dir`` in the job's work dir;
* ``python inference.py --cfg <yaml>`` with cwd = the checkout.

Upstream samples every ``frame_interval``-th pose frame from the first and needs at least
``frame_interval * (max_frames - 1) + 1`` of them (a shorter folder hits a fall-back branch that
crashes), so each folder holds exactly that many frames (the last one repeated past the end of the
driving sequence); generated frames standing for those repeats are dropped. Upstream writes
``<log_dir>/<cfg stem>/rank_<ws>_<rank>_<idx>_seed_<s>_<keys>_<ref>_<H>x<W>.mp4``: three columns
([randomref or local_image | dwpose | generated], no gaps) at ``save_fps`` 8, which only labels the
container; the generated frame i of a window stands for driving frame ``frame_interval * i`` after
the window's start. Upstream catches any error while writing a video, prints ``save video to <path>
failed, error: ...`` and still exits 0; the adapter raises that message as a GenerationError.

Checked against the real code with tiny random weights (``benchmarks/upstream_smoke.py --model
unianimate``): the grid's panel 0 is the reference, panel 1 the pose folder's frame
``frame_interval * i``, panel 2 the generated frame. On a node with several visible GPUs upstream
spawns one process per GPU and each runs the whole list (rank 00's files are read): set
``models.unianimate.env.CUDA_VISIBLE_DEVICES`` to one GPU.
"""

from __future__ import annotations

import re
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
    apply_weights,
    aspect_padding,
    check_weight_paths,
    find_one,
    fit_image,
    ingest,
    load_upstream_yaml,
    padding_notes,
    plan_windows,
    read_output,
    run_upstream,
    shift_keypoints,
    stitch_windows,
    strided_timeline,
    timing_notes,
    write_image,
    write_yaml,
)
from pipeline.perception.guidance import (
    UNIANIMATE_CANVAS_HW,
    coco17_to_openpose18,
    render_openpose_frames,
    write_unianimate_pose_dir,
)

REPO = "ali-vilab/UniAnimate"
COMMIT = "643c963"
ENTRY_SCRIPT = "inference.py"
ENTRY_FILES = ("inference.py", "tools/inferences/inference_unianimate_entrance.py")
WEIGHT_KEYS = ("test_model", "embedder.pretrained", "auto_encoder.pretrained")
SHORT_ENTRANCE = "inference_unianimate_entrance"
CONFIG_STEM = "gaitfid_unianimate"  # upstream names its output folder after the config file's stem

# configs/UniAnimate_infer.yaml (short mode): max_frames 32 (``window``), resolution [512, 768],
# ddim_timesteps 30, seed 11, guide_scale 2.5, demo frame_interval 2, save_fps 8.
DEFAULTS: dict[str, Any] = {
    "steps": 30,
    "guidance_scale": 2.5,
    "seed": 11,
    "width": 512,
    "height": 768,
    "window": 32,
    "frame_interval": 2,
    "partial_keys": ("image", "randomref", "dwpose"),
    "save_fps": 8,
    "config": "configs/UniAnimate_infer.yaml",
    "reference_pad": "edge",
}
PARTIAL_KEYS = (("image", "randomref", "dwpose"), ("image", "local_image", "dwpose"))

RESOURCES: dict[str, Any] = {
    "gpu_mem_gb": 12,
    "gpu_mem_note": "~12 GB for 32 frames at 768x512 with CPU_CLIP_VAE (README); ~21 GB at 1216x768",
    "typical_runtime_s": 180,
    "runtime_note": "75 frames at 512x768 in about 3 min on an A100 (issue #32)",
}

GRID_PANELS, GENERATED_PANEL = 3, 2
SPEC = UpstreamSpec("unianimate", ("keypoints",), REPO, COMMIT, ENTRY_FILES, DEFAULTS, RESOURCES)


# utils/video_op.py catches every error while writing a video, prints this line and goes on: the
# process still exits 0 (seen with imageio-ffmpeg 0.4.9 in an env whose setuptools lacks pkg_resources).
SAVE_FAILED = re.compile(r"save video to (?P<path>.+?) failed, error: (?P<error>.*)")


def _raise_failed_saves(stdout_log: Path, work: Path) -> None:
    """Upstream's own word on a video it could not write, instead of a bare "no output file"."""
    text = stdout_log.read_text(errors="replace") if stdout_log.is_file() else ""
    failed = [m.groupdict() for m in SAVE_FAILED.finditer(text)]
    if failed:
        first = failed[0]
        raise GenerationError(
            f"unianimate: upstream exited 0 but could not write {len(failed)} video(s); first: "
            f"{first['path']}: {first['error']} (upstream's stdout: {stdout_log}; work dir {work})"
        )


def _check_partial_keys(keys: Any, where: str, error: type[Exception]) -> None:
    """Exactly one of upstream's two condition sets (each produces its own video)."""
    if isinstance(keys, str) or tuple(keys) not in PARTIAL_KEYS:
        raise error(f"{where} must be one of {[list(k) for k in PARTIAL_KEYS]}, got {keys!r}")


class UniAnimateGenerator(UpstreamGenerator, spec=SPEC):
    """UniAnimate through its ``inference.py``; options: the ``models.unianimate`` keys."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        where = self.config.key("defaults.partial_keys")
        _check_partial_keys(self.defaults["partial_keys"], where, UpstreamConfigError)

    def _upstream_config(self, relative: str) -> dict[str, Any]:
        """The checkout's inference config with the weight overrides; only the short-clip entrance."""
        data = apply_weights(self.config, load_upstream_yaml(self.config, relative), relative)
        if data.get("TASK_TYPE") != SHORT_ENTRANCE:
            # the long-video entrance names and lays out its outputs differently
            raise UpstreamConfigError(
                f"{self.config.key('defaults.config')} = {relative}: TASK_TYPE is {data.get('TASK_TYPE')!r}; "
                f"only the short-clip entrance {SHORT_ENTRANCE!r} is supported"
            )
        return data

    def _check_weights(self) -> None:
        relative = str(self.defaults["config"])
        check_weight_paths(self.config, self._upstream_config(relative), WEIGHT_KEYS, relative)

    def _generate(self, job: GenerationJob, params: dict[str, Any], work: Path) -> GeneratedVideo:
        driving, reference = job.driving, job.reference
        _check_partial_keys(params["partial_keys"], f"job {job.job_id} params.partial_keys", GenerationError)
        if reference.keypoints is None:
            raise GenerationError(
                "unianimate needs the reference's keypoints (Reference.keypoints) for ref_pose.jpg"
            )
        width, height = int(params["width"]), int(params["height"])
        stride, length = int(params["frame_interval"]), int(params["window"])
        timeline = strided_timeline(driving.frame_count, stride, driving.fps)
        windows = plan_windows(timeline.count, length, fixed=True)

        padding = aspect_padding(driving.height, driving.width, height, width)
        pose18 = shift_keypoints(coco17_to_openpose18(driving.keypoints), padding)
        poses = render_openpose_frames(
            pose18, UNIANIMATE_CANVAS_HW, style="unianimate", src_hw=padding.padded_hw
        )
        image, ref_padding = fit_image(reference.image, height, width, params["reference_pad"])
        ref18 = shift_keypoints(coco17_to_openpose18(np.asarray(reference.keypoints)[None]), ref_padding)
        ref_pose = render_openpose_frames(
            ref18, UNIANIMATE_CANVAS_HW, style="unianimate", src_hw=ref_padding.padded_hw
        )[0]

        token = f"gf{uuid.uuid4().hex[:12]}"
        ref_path = write_image(work / "inputs" / f"{token}ref.png", image)
        cover = stride * (length - 1) + 1  # pose frames upstream reads per clip
        folders = [
            write_unianimate_pose_dir(
                work / "poses" / f"{token}w{i}",
                poses[self._pose_frames(w, stride, cover, driving.frame_count)],
                ref_pose,
            )
            for i, w in enumerate(windows)
        ]
        config = self._upstream_config(str(params["config"]))
        config.update(
            max_frames=length,
            resolution=[width, height],
            round=1,
            ddim_timesteps=int(params["steps"]),
            seed=int(params["seed"]),
            guide_scale=float(params["guidance_scale"]),
            test_list_path=[[stride, str(ref_path), str(folder)] for folder in folders],
            partial_keys=[list(params["partial_keys"])],
            log_dir=str(work / "outputs"),
            save_fps=int(params["save_fps"]),
        )
        config_path = write_yaml(work / f"{CONFIG_STEM}.yaml", config)
        result = run_upstream(self.config, [ENTRY_SCRIPT, "--cfg", config_path], work)
        _raise_failed_saves(work / "logs" / "stdout.log", work)

        out_dir = work / "outputs" / CONFIG_STEM
        keys = "_".join(params["partial_keys"])
        layout = GridLayout(GRID_PANELS, (height, width))
        outputs = []
        for idx in range(len(windows)):
            # rank 00 wrote it (every GPU rank runs the whole list); the seed in the name is upstream's
            pattern = f"rank_*_00_{idx:02d}_seed_*_{keys}_{ref_path.stem}_{height}x{width}.mp4"
            found = find_one(out_dir, pattern, "unianimate output", work)
            outputs.append(layout.crop(read_output(found, length), GENERATED_PANEL, source=str(found)))
        stitched, _ = stitch_windows(outputs, windows, timeline.count)
        frames, chosen = ingest(stitched, timeline, padding, driving.frame_count)
        notes = self.base_notes(params, job, result)
        notes.update(
            padding=padding_notes(driving=padding, reference=ref_padding),
            model_size_hw=[height, width],
            guidance={
                "canvas_hw": list(UNIANIMATE_CANVAS_HW),
                "pose_frames_per_window": cover,
                "feet": False,
            },
            panel={"grid_panel_index": GENERATED_PANEL, "grid_panels": GRID_PANELS},
            timing=timing_notes(timeline, windows, chosen, driving.fps),
        )
        return GeneratedVideo(frames=frames, fps=float(driving.fps), notes=notes)

    @staticmethod
    def _pose_frames(window: Window, stride: int, cover: int, frame_count: int) -> np.ndarray:
        """Driving frames of one window's pose folder: ``cover`` frames from the window's first sample."""
        return np.minimum(window.start * stride + np.arange(cover), frame_count - 1)


__all__ = ["COMMIT", "DEFAULTS", "REPO", "RESOURCES", "UniAnimateGenerator"]
