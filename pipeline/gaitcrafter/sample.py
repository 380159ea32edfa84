"""Sampling GaitCrafter: DDIM / DPM-Solver with classifier-free guidance, novel identities, sweep jobs.

:func:`sample` draws clips for a :class:`~pipeline.gaitcrafter.model.ConditionBatch`. Each sample's
starting noise comes from its own CPU generator (``seed + row``), so a sample does not depend on the
device or on which other samples share its batch (up to float rounding). With guidance scale ``w`` the
prediction is ``ε_null + w·(ε_cond − ε_null)`` where ``ε_null`` uses the all-null tokens (``guidance_on``
``all``) or the sample's own tokens with only the identity slot null (``identity``: guidance then amplifies
the identity alone); ``w = 1`` skips the null branch. The result is the soft clip in [0, 1] and its binarisation at 0.5
(uint8 0/255, the value range of the silhouette stores).

:func:`generate_silhouettes` runs the sweep's jobs (identity + covariates of the driving sequence,
:func:`jobs_from_plan`) and writes one silhouette frame store in the perception layout (``sil``
[T, 64, 64] uint8 — the 64×44 sample padded back with the 10 columns per side that OpenGait's cut
removes — and ``valid`` [T]), so the silhouette recognisers read generated and real sequences alike.
A job that cannot run (e.g. an identity the model was not trained on) is a row with ``error`` set.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.contracts import MANIFEST, read_table, write_frame_store
from pipeline.gaitcrafter.config import ANY, GUIDANCE_TARGETS, HEIGHT, WIDTH
from pipeline.gaitcrafter.model import (
    SLOTS,
    ConditionBatch,
    GaitCrafter,
    identity_weights,
    make_conditions,
    novel_identity,
    to_pixel_space,
)

log = logging.getLogger(__name__)

IDENTITY_SOURCES = ("driving", "reference")
# Recorded with every generated clip: the sweep skips SSIM/PSNR/LPIPS for GaitCrafter with this reason.
RGB_METRICS_SKIP_REASON = (
    "GaitCrafter generates binary 64x44 silhouettes, not RGB frames: RGB metrics do not apply"
)
UNKNOWN_IDENTITY = ("error", "any")


@dataclass
class SampleOutput:
    silhouettes: np.ndarray  # uint8 [n, T, 64, 44], 0 or 255 (soft >= 0.5)
    soft: np.ndarray  # float32 [n, T, 64, 44] in [0, 1]
    seconds: float


def sampling_scheduler(model: GaitCrafter, sampler: str | None = None, steps: int | None = None):
    """A diffusers DDIM or DPM-Solver++ scheduler built from the model's training schedule."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from pipeline.gaitcrafter.train import noise_scheduler

    config = model.config
    kind = sampler or config.sampler
    base = noise_scheduler(config).config
    if kind == "ddim":
        scheduler = DDIMScheduler.from_config(base, set_alpha_to_one=True)
    elif kind == "dpm":
        scheduler = DPMSolverMultistepScheduler.from_config(
            base, algorithm_type="dpmsolver++", solver_order=2
        )
    else:
        raise ValueError(f"gaitcrafter: unknown sampler {kind!r}; choose 'ddim' or 'dpm'")
    count = int(steps or config.sample_steps)
    if not 1 <= count <= config.train_timesteps:
        raise ValueError(
            f"gaitcrafter: sampling steps must lie in [1, {config.train_timesteps}], got {count}"
        )
    scheduler.set_timesteps(count)
    return scheduler


def initial_noise(n: int, frames: int, seed: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> torch.Tensor:
    """[n, 1, T, *size] standard normal noise, row i from ``torch.Generator().manual_seed(seed + i)``."""
    rows = [
        torch.randn((1, 1, frames, *size), generator=torch.Generator().manual_seed(int(seed) + i))
        for i in range(n)
    ]
    return torch.cat(rows) if rows else torch.zeros(0, 1, frames, *size)


@torch.no_grad()
def sample(
    model: GaitCrafter,
    conditions: ConditionBatch,
    n_frames: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    *,
    sampler: str | None = None,
    batch_size: int = 8,
    guidance_on: str | None = None,
) -> SampleOutput:
    """Clips for every row of ``conditions``: binarised uint8 [n, T, 64, 44] and soft float [n, T, 64, 44]."""
    start = time.perf_counter()
    frames = int(n_frames or model.config.frames)
    scale = float(model.config.guidance_scale if guidance_scale is None else guidance_scale)
    if frames < 1:
        raise ValueError(f"gaitcrafter: n_frames must be >= 1, got {frames}")
    if scale < 0:
        raise ValueError(f"gaitcrafter: guidance_scale must be >= 0, got {scale}")
    target = guidance_on or model.config.guidance_on
    if target not in GUIDANCE_TARGETS:
        raise ValueError(f"gaitcrafter: guidance_on must be one of {GUIDANCE_TARGETS}, got {target!r}")
    model.eval()
    device = next(model.parameters()).device
    noise = initial_noise(len(conditions), frames, seed, model.config.diffusion_size)
    outputs = []
    for first in range(0, len(conditions), max(1, batch_size)):
        rows = list(range(first, min(first + batch_size, len(conditions))))
        batch = conditions.select(rows).to(device)
        outputs.append(_denoise(model, batch, noise[rows].to(device), steps, scale, sampler, target))
    clips = to_pixel_space(torch.cat(outputs) if outputs else noise)
    soft = ((clips[:, 0].float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0).numpy()
    binary = np.where(soft >= 0.5, 255, 0).astype(np.uint8)
    return SampleOutput(binary, soft.astype(np.float32), time.perf_counter() - start)


def _denoise(
    model: GaitCrafter,
    cond: ConditionBatch,
    x: torch.Tensor,
    steps: int | None,
    scale: float,
    sampler: str | None,
    guidance_on: str = "all",
) -> torch.Tensor:
    scheduler = sampling_scheduler(model, sampler, steps)
    tokens = model.encoder(cond)
    guided = scale != 1.0
    if guided:
        tokens = torch.cat([guidance_branch(model, cond, guidance_on), tokens])
    for t in scheduler.timesteps:
        model_input = torch.cat([x, x]) if guided else x
        timesteps = torch.full((len(model_input),), int(t), device=x.device, dtype=torch.long)
        eps = model(model_input, timesteps, tokens)
        if guided:
            eps_null, eps_cond = eps.chunk(2)
            eps = eps_null + scale * (eps_cond - eps_null)
        x = scheduler.step(eps, t, x).prev_sample
    return x


def guidance_branch(model: GaitCrafter, cond: ConditionBatch, guidance_on: str) -> torch.Tensor:
    """The tokens [n, 4, dim] of classifier-free guidance's other branch: all slots null (``all``) or the
    sample's own tokens with the identity slot null (``identity``)."""
    if guidance_on == "all":
        return model.encoder.null_tokens(len(cond))
    drop = torch.zeros(len(cond), len(SLOTS), dtype=torch.bool)
    drop[:, SLOTS.index("identity")] = True
    return model.encoder(cond, drop)


# ---------------------------------------------------------------------------------------------
# Novel identities


def novel_identity_weights(weights: Mapping[int | str, float], model: GaitCrafter) -> dict[str, float]:
    """Validated convex weights as ``{identity label: weight}`` (what a job's ``identity`` accepts)."""
    vector = identity_weights(dict(weights), model.vocabulary)
    return {
        model.vocabulary.identities[i]: float(vector[i]) for i in torch.nonzero(vector).flatten().tolist()
    }


def random_novel_identities(
    model: GaitCrafter,
    count: int,
    parents: int = 2,
    seed: int = 0,
    *,
    min_weight: float = 0.2,
    pool: Sequence[str] | None = None,
) -> list[dict[str, float]]:
    """``count`` novel identities, each a random convex mix of ``parents`` distinct training identities.

    Weights are ``min_weight + (1 − parents·min_weight)·Dirichlet(1)``, so no parent dominates a mix
    so much that the "novel" identity is a copy of it (2 parents, 0.2: each weight in [0.2, 0.8]).
    ``pool`` restricts the parents to these identity labels (e.g. the train split's, when the model
    also enrolled test identities); default: every identity of the model.
    """
    labels = list(model.vocabulary.identities)
    if pool is not None:
        unknown = sorted(set(pool) - set(labels))
        if unknown:
            raise ValueError(
                f"gaitcrafter: parent pool has identities the model does not know: {unknown[:5]}"
            )
        indices = [labels.index(label) for label in dict.fromkeys(pool)]
    else:
        indices = list(range(len(labels)))
    n = len(indices)
    if not 2 <= parents <= n:
        raise ValueError(
            f"gaitcrafter: a novel identity mixes 2..{n} training identities, got parents={parents}"
        )
    if not 0.0 <= min_weight <= 1.0 / parents:
        raise ValueError(
            f"gaitcrafter: min_weight must lie in [0, 1/parents = {1 / parents}], got {min_weight}"
        )
    rng = np.random.default_rng([seed, 7])
    mixes = []
    for _ in range(count):
        chosen = np.asarray(indices)[rng.choice(n, size=parents, replace=False)]
        weights = min_weight + (1.0 - parents * min_weight) * rng.dirichlet(np.ones(parents))
        weights = weights / weights.sum()
        mixes.append(
            novel_identity_weights({int(i): float(w) for i, w in zip(chosen, weights, strict=True)}, model)
        )
    return mixes


# ---------------------------------------------------------------------------------------------
# Sweep jobs


@dataclass
class SilhouetteJob:
    """One clip to generate: identity (label, ``{label: weight}`` mix or ``any``) + covariates + seed."""

    job_id: str
    identity: str | Mapping[str, float]
    view: str = ANY
    clothing: str = ANY
    bag: str = ANY
    seed: int = 0
    n_frames: int | None = None
    notes: dict[str, object] = field(default_factory=dict)


def pad_to_64(sils: np.ndarray) -> np.ndarray:
    """[..., 64, 44] → [..., 64, 64]: put back the 10 zero columns per side that OpenGait's cut removes."""
    if sils.shape[-1] != WIDTH:
        raise ValueError(f"expected width {WIDTH}, got {sils.shape[-1]}")
    pad = [(0, 0)] * (sils.ndim - 1) + [(10, 10)]
    return np.pad(sils, pad)


def jobs_from_plan(
    plan: str | os.PathLike | Sequence[Mapping[str, object]],
    manifest: str | os.PathLike | Sequence[Mapping[str, object]],
    *,
    identity_from: str | Mapping[str, str] = "driving",
) -> list[SilhouetteJob]:
    """Sweep plan rows → jobs conditioned on the covariates of the driving sequence.

    ``identity_from``: whose identity token is used, ``driving`` (default, what the issue asks) or
    ``reference``; a mapping gives it per task, e.g. ``{"restoration": "driving", "transfer": "reference"}``.
    """
    from pipeline.contracts import PLAN
    from pipeline.gaitcrafter.train import covariates_of

    plan_rows = read_table(plan, PLAN).to_pylist() if isinstance(plan, (str, os.PathLike)) else list(plan)
    rows = (
        read_table(manifest, MANIFEST).to_pylist()
        if isinstance(manifest, (str, os.PathLike))
        else list(manifest)
    )
    by_id = {str(r["sequence_id"]): r for r in rows}
    jobs = []
    for job in plan_rows:
        source = (
            identity_from
            if isinstance(identity_from, str)
            else identity_from.get(str(job["task"]), "driving")
        )
        if source not in IDENTITY_SOURCES:
            raise ValueError(f"gaitcrafter: identity_from must be one of {IDENTITY_SOURCES}, got {source!r}")
        driving = by_id.get(str(job["driving_sequence"]))
        if driving is None:
            raise KeyError(
                f"plan job {job['job_id']}: driving sequence {job['driving_sequence']} not in the manifest"
            )
        view, clothing, bag = covariates_of(driving)
        jobs.append(
            SilhouetteJob(
                job_id=str(job["job_id"]),
                identity=str(job[f"{source}_subject"]),
                view=view,
                clothing=clothing,
                bag=bag,
                seed=int(job["seed"]),
                notes={"identity_from": source, "task": job["task"], "scenario": job["scenario"]},
            )
        )
    return jobs


def _as_job(job: SilhouetteJob | Mapping[str, object]) -> SilhouetteJob:
    if isinstance(job, SilhouetteJob):
        return job
    return SilhouetteJob(**dict(job))  # type: ignore[arg-type]


def _job_conditions(
    model: GaitCrafter, job: SilhouetteJob, unknown_identity: str
) -> tuple[ConditionBatch, str]:
    """(conditions, the identity actually used) — or ValueError naming the bad value."""
    identity = job.identity
    used = identity if isinstance(identity, str) else json.dumps(dict(identity), sort_keys=True)
    if isinstance(identity, str) and identity != ANY and identity not in model.vocabulary.identities:
        if unknown_identity == "error":
            raise ValueError(
                f"identity {identity!r} is not a GaitCrafter training identity "
                f"({len(model.vocabulary.identities)} known); use unknown_identity='any' to generate unconditioned"
            )
        identity, used = ANY, f"{ANY} (unknown identity {job.identity!r})"
    cond = make_conditions(model.vocabulary, [identity], [job.view], [job.clothing], [job.bag])
    return cond, used


def generate_silhouettes(
    checkpoint_dir: str | os.PathLike,
    jobs: Sequence[SilhouetteJob | Mapping[str, object]],
    out_store: str | os.PathLike | None = None,
    *,
    steps: int | None = None,
    guidance_scale: float | None = None,
    sampler: str | None = None,
    guidance_on: str | None = None,
    unknown_identity: str = "error",
    weights: str = "ema",
    device: str | None = None,
) -> list[dict[str, object]]:
    """Generate every job with the checkpoint's model; write the clips to ``out_store`` (if given).

    Returns one row per job: ``job_id``, ``identity`` (as used), ``view``, ``clothing``, ``bag``, ``seed``,
    ``frames``, ``seconds``, ``error`` (None when the clip was generated) and ``notes``.
    """
    from pipeline.gaitcrafter.train import load_gaitcrafter

    if unknown_identity not in UNKNOWN_IDENTITY:
        raise ValueError(f"unknown_identity must be one of {UNKNOWN_IDENTITY}, got {unknown_identity!r}")
    model, checkpoint = load_gaitcrafter(checkpoint_dir, weights=weights, device=device)
    results: list[dict[str, object]] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for raw in jobs:
        job = _as_job(raw)
        row: dict[str, object] = {
            "job_id": job.job_id,
            "identity": job.identity if isinstance(job.identity, str) else dict(job.identity),
            "view": job.view,
            "clothing": job.clothing,
            "bag": job.bag,
            "seed": job.seed,
            "frames": None,
            "seconds": None,
            "error": None,
            "notes": {
                **job.notes,
                "checkpoint": str(checkpoint.path),
                "weights": weights,
                "modality": "silhouette",
                "rgb_metrics_skipped": RGB_METRICS_SKIP_REASON,
            },
        }
        try:
            cond, used = _job_conditions(model, job, unknown_identity)
            out = sample(
                model, cond, job.n_frames, steps, guidance_scale, job.seed, sampler=sampler, guidance_on=guidance_on
            )
        except ValueError as err:
            row["error"] = str(err)
            results.append(row)
            log.warning("gaitcrafter job %s: %s", job.job_id, err)
            continue
        clip = pad_to_64(out.silhouettes[0])
        arrays[job.job_id] = {"sil": clip, "valid": np.ones(len(clip), dtype=bool)}
        row.update(identity=used, frames=int(len(clip)), seconds=out.seconds)
        results.append(row)
    if out_store is not None:
        write_frame_store(out_store, arrays)
    return results


__all__ = [
    "RGB_METRICS_SKIP_REASON",
    "SampleOutput",
    "SilhouetteJob",
    "generate_silhouettes",
    "guidance_branch",
    "initial_noise",
    "jobs_from_plan",
    "novel_identity",
    "novel_identity_weights",
    "pad_to_64",
    "random_novel_identities",
    "sample",
    "sampling_scheduler",
]
