"""``gaitcrafter``: the sweep's adapter for GaitCrafter (:mod:`pipeline.gaitcrafter`), a silhouette generator.

GaitCrafter has no reference image and no pose input: it is conditioned on an *identity token* and on
covariates (view, clothing, carried bag). The adapter maps a sweep job to those labels with
:func:`pipeline.gaitcrafter.sample.jobs_from_plan` (``GenerationJob.context`` carries the plan row and
the driving sequence's manifest row):

* covariates: always the **driving** sequence's (view label, clothing and bag from the world's
  attributes or the OpenGait condition code; unknown ones are ``any``);
* identity: Task 1 (restoration) the driving identity A — the reference shows A too; Task 2
  (transfer) the **reference identity B** with A's covariates. That is the natural analogue of "B's
  appearance on A's walk" for a model without a reference image, but note what it is not: the clip's
  gait is whatever the model samples for token B, not A's motion, because nothing of A's motion enters
  the model. ``params.identity_from`` ({task: driving|reference}) overrides the choice.

The sample is a binary 64×44 silhouette clip with as many frames as the driving sequence (the model
was trained on shorter clips; its UNet3D is convolutional/attentional in time, so any length works).
It is written as a video at the driving frame size — the clip scaled by nearest neighbour to fit the
frame height (or width), centred, white person on black — so the generated video is indexed like
every other one, and ``notes.output == "silhouette"`` tells the downstream stages what it is: masks
come from the video itself (``from_video``), no pose is estimated, RGB crops and RGB metrics are
skipped with that reason. GaitCrafter does not follow the driving trajectory: the walker stays
centred (recorded in the notes).

Options (``models.<name>`` besides ``generator``): ``checkpoint`` (the training stage's
``model.json``, a run folder or a checkpoint folder; the workflow sets it per dataset), ``device``
(default: the checkpoint's), ``weights`` (``ema``). Params (``models.<name>.params``, per job):
``steps``, ``guidance_scale``, ``guidance_on``, ``sampler`` (default: the checkpoint's config), ``identity_from``,
``unknown_identity`` (``error``: a job whose identity the model was not trained on fails with the
reason; ``any``: sample it unconditioned on identity).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.generation.generators.base import (
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    register_generator,
)
from pipeline.generation.generators.builtin import check_driving

DEFAULT_IDENTITY_FROM = {"restoration": "driving", "transfer": "reference"}
PARAMS = ("steps", "guidance_scale", "guidance_on", "sampler", "identity_from", "unknown_identity")
MOTION_NOTE = (
    "GaitCrafter is not conditioned on the driving motion or trajectory: the gait is sampled for the "
    "identity token, the walker stays centred"
)


def resolve_checkpoint_option(path: str | Path) -> Path:
    """A GaitCrafter checkpoint (or run) folder from ``path``, following the training stage's ``model.json``."""
    path = Path(path)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(
                f"GaitCrafter model file not found: {path} (run the train_gaitcrafter rule)"
            )
        try:
            return Path(json.loads(path.read_text())["checkpoint"])
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path}: not a GaitCrafter model file (needs a 'checkpoint' entry): {err}"
            ) from err
    return path


def render_silhouette_frames(clip: np.ndarray, height: int, width: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Binary clip [T, h, w] (uint8 0/255) → RGB frames [T, height, width, 3]: scaled to fit, centred.

    Nearest-neighbour scaling keeps the frames binary, so thresholding the video gives the clip back.
    """
    clip = np.asarray(clip)
    if clip.ndim != 3:
        raise ValueError(f"expected a silhouette clip [T, h, w], got shape {clip.shape}")
    t, h, w = clip.shape
    scale = min(height / h, width / w)
    new_h, new_w = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    frames = np.zeros((t, height, width, 3), dtype=np.uint8)
    for i in range(t):
        resized = cv2.resize(clip[i], (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        frames[i, top : top + new_h, left : left + new_w] = resized[..., None]
    placement = {"scale": float(scale), "box": [int(top), int(left), int(new_h), int(new_w)], "centred": True}
    return frames, placement


@register_generator("gaitcrafter")
class GaitCrafterGenerator:
    """Silhouette clips from a trained GaitCrafter checkpoint, conditioned on the job's identity and covariates."""

    name = "gaitcrafter"
    needs: tuple[str, ...] = ()
    output = "silhouette"
    uses_reference = False  # conditioned on the reference *identity label* (transfer), never on its image

    def __init__(
        self,
        checkpoint: str | None = None,
        *,
        device: str | None = None,
        weights: str = "ema",
        **options: Any,
    ) -> None:
        if options:
            raise ValueError(f"generator 'gaitcrafter' got unknown option(s) {sorted(options)}")
        if not checkpoint:
            raise ValueError(
                "generator 'gaitcrafter' needs a checkpoint (the workflow passes results/gaitcrafter/{dataset}/model.json)"
            )
        self.checkpoint = checkpoint
        self.device = device
        self.weights = weights
        self.model = None
        self.info = None

    def load(self) -> None:
        from pipeline.gaitcrafter.train import load_gaitcrafter

        self.model, self.info = load_gaitcrafter(
            resolve_checkpoint_option(self.checkpoint), weights=self.weights, device=self.device
        )

    def close(self) -> None:
        self.model = None

    def conditioning(self, job: GenerationJob) -> tuple[Any, str]:
        """(the SilhouetteJob built from the plan row and the driving row, whose identity it uses)."""
        from pipeline.gaitcrafter.sample import jobs_from_plan

        plan, driving_row = job.context.get("plan"), job.context.get("driving_row")
        if not plan or not driving_row:
            raise GenerationError(
                "gaitcrafter is conditioned on identity and covariates: the job lacks its plan row and the "
                "driving sequence's manifest row (GenerationJob.context 'plan' and 'driving_row')"
            )
        chosen = job.params.get("identity_from") or {}
        if isinstance(chosen, str):
            chosen = dict.fromkeys(DEFAULT_IDENTITY_FROM, chosen)
        identity_from = {**DEFAULT_IDENTITY_FROM, **dict(chosen)}
        (silhouette_job,) = jobs_from_plan([plan], [driving_row], identity_from=identity_from)
        return silhouette_job, str(silhouette_job.notes["identity_from"])

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        from pipeline.gaitcrafter.config import ANY
        from pipeline.gaitcrafter.sample import sample

        if self.model is None:
            raise GenerationError("gaitcrafter: load() was not called")
        unknown = sorted(set(job.params) - set(PARAMS))
        if unknown:
            raise GenerationError(f"gaitcrafter: unknown params {unknown}; known: {list(PARAMS)}")
        check_driving(job.driving)
        target, source = self.conditioning(job)
        identity = str(target.identity)
        vocabulary = self.model.vocabulary
        if identity not in vocabulary.identities:
            if job.params.get("unknown_identity", "error") != "any":
                raise GenerationError(
                    f"identity {identity!r} ({source}) is not a GaitCrafter training identity; enrol the test "
                    "split's gallery (gaitcrafter.enrol: gallery) or set params.unknown_identity: any"
                )
            identity = ANY
        try:
            cond = self.model.conditions([identity], [target.view], [target.clothing], [target.bag])
        except ValueError as err:  # e.g. a view the model has never seen
            raise GenerationError(str(err)) from err
        config = self.info.config
        steps = int(job.params.get("steps") or config.sample_steps)
        scale = float(job.params.get("guidance_scale", config.guidance_scale))
        sampler = str(job.params.get("sampler") or config.sampler)
        guidance_on = str(job.params.get("guidance_on") or config.guidance_on)
        try:
            out = sample(
                self.model, cond, n_frames=job.driving.frame_count, steps=steps, guidance_scale=scale,
                seed=job.seed, sampler=sampler, guidance_on=guidance_on,
            )  # fmt: skip
        except ValueError as err:  # a bad sampling param names itself
            raise GenerationError(str(err)) from err
        frames, placement = render_silhouette_frames(
            out.silhouettes[0], int(job.driving.height), int(job.driving.width)
        )
        notes = {
            "output": "silhouette",
            "identity_from": source,
            "identity": identity,
            "covariates": {"view": target.view, "clothing": target.clothing, "bag": target.bag},
            "checkpoint": str(self.info.path),
            "step": int(self.info.step),
            "sampler": sampler,
            "sample_steps": steps,
            "guidance_scale": scale,
            "guidance_on": guidance_on,
            "sampling_seconds": round(float(out.seconds), 3),
            "placement": placement,
            "motion": MOTION_NOTE,
        }
        return GeneratedVideo(frames=frames, fps=float(job.driving.fps), notes=notes)
