"""Synthetic training sets for the augmentation experiment, and the experiment's training-set variants.

:func:`synthesize_training_set` samples a trained GaitCrafter into a *source* that the recogniser
trainer reads like any other: ``{out}/manifest.parquet`` (contract ``manifest``, ``split`` = ``role`` =
``train``) and ``{out}/silhouettes/shard-0000.npz`` (``sil`` [T, 64, 64], ``valid``). Two kinds:

* ``same`` — clips of the training identities themselves (``subject`` = the real label, so they join
  the real identity's class);
* ``novel`` — clips of novel identities, each a random convex mix of ``parents`` training identities
  (``subject`` = ``novel-XXX``; the mix is in ``attributes.identity_weights``).

Covariates (view, clothing, bag) are drawn uniformly from the model's vocabulary per clip and written
to ``attributes`` (``coat``/``bag`` booleans, ``world_view_deg`` is not invented), so
:func:`pipeline.gaitcrafter.train.covariates_of` reads them back.

:func:`augmentation_variants` assembles the experiment's training manifests: (a) ``real``, (b)
``real+same``, (c) ``real+novel``, (d) ``novel-only`` and (e) low-label variants ``real-{k}pct`` (k %
of the real identities, all their sequences), ``real-{k}pct+same`` (plus the synthetic clips of those
identities only) and ``real-{k}pct+novel`` (plus every novel identity). All are evaluated on the real
test split, which none of them touches. Caveat: the generator itself saw every real training identity
(with its label), so the low-label variants measure "few labelled real identities for the
recogniser", not a generator trained under the same label budget.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.contracts import MANIFEST, write_table

KINDS = ("same", "novel")
SYNTHETIC_STORE = "silhouettes/shard-0000.npz"


COVARIATE_SLOTS = {"views": "view", "clothing": "clothing", "bag": "bag"}


def covariate_grid(
    vocabulary, covariates: Mapping[str, Sequence[str] | None] | None = None
) -> list[tuple[str, str, str]]:
    """Every (view, clothing, bag) combination to draw synthetic clips from.

    ``covariates`` (keys ``views``, ``clothing``, ``bag``; a missing or null key = the model's whole
    vocabulary for that slot) restricts the grid; a value the model does not know is an error naming
    the slot and the value (``any`` is not allowed here: a synthetic clip has concrete covariates).
    """
    covariates = dict(covariates or {})
    unknown_keys = sorted(set(covariates) - set(COVARIATE_SLOTS))
    if unknown_keys:
        raise ValueError(
            f"gaitcrafter: unknown covariate slot(s) {unknown_keys}; known: {list(COVARIATE_SLOTS)}"
        )
    chosen = {}
    for key, slot in COVARIATE_SLOTS.items():
        allowed = vocabulary.values(slot)
        values = covariates.get(key)
        if values is None:
            chosen[key] = list(allowed)
            continue
        values = [str(v) for v in values]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(
                f"gaitcrafter: unknown {slot} value(s) {bad or '(none given)'}; the model knows {list(allowed)}"
            )
        chosen[key] = list(dict.fromkeys(values))
    return [(v, c, b) for v in chosen["views"] for c in chosen["clothing"] for b in chosen["bag"]]


def synthesize_training_set(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    kind: str,
    per_identity: int,
    dataset: str,
    novel_count: int | None = None,
    parents: int = 2,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float | None = None,
    device: str | None = None,
    identities: Sequence[str] | None = None,
    covariates: Mapping[str, Sequence[str] | None] | None = None,
    sampler: str | None = None,
    guidance_on: str | None = None,
) -> tuple[Path, Path]:
    """Write a synthetic source (``kind`` ``same`` or ``novel``); returns (manifest, silhouette store).

    ``identities`` restricts the clips (``same``) or the parents of the mixes (``novel``) to these
    training identities — a model that also enrolled test identities must not leak them into a
    recogniser's training set; ``covariates`` restricts the drawn covariates (:func:`covariate_grid`).
    """
    from pipeline.gaitcrafter.sample import generate_silhouettes, random_novel_identities
    from pipeline.gaitcrafter.train import load_gaitcrafter

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if per_identity < 1:
        raise ValueError(f"per_identity must be >= 1, got {per_identity}")
    model, checkpoint_info = load_gaitcrafter(checkpoint, device=device)
    pool = list(model.vocabulary.identities) if identities is None else list(dict.fromkeys(identities))
    unknown = sorted(set(pool) - set(model.vocabulary.identities))
    if unknown:
        raise ValueError(f"gaitcrafter: identities the model was not trained on: {unknown[:5]}")
    if kind == "same":
        chosen: list[tuple[str, str | Mapping[str, float]]] = [(i, i) for i in pool]
    else:
        count = int(novel_count if novel_count is not None else len(pool))
        mixes = random_novel_identities(model, count, parents, seed, pool=pool)
        chosen = [(f"novel-{k:03d}", mix) for k, mix in enumerate(mixes)]
    grid = covariate_grid(model.vocabulary, covariates)
    rng = np.random.default_rng([seed, 11])
    jobs, rows = [], []
    for k, (subject, identity) in enumerate(chosen):
        for j in range(per_identity):
            view, clothing, bag = grid[int(rng.integers(len(grid)))]
            condition = f"gc{j:03d}"
            sequence_id = f"{subject}/{condition}/{view}"
            jobs.append(
                {
                    "job_id": sequence_id,
                    "identity": identity,
                    "view": view,
                    "clothing": clothing,
                    "bag": bag,
                    "seed": int(seed) * 1_000_003 + k * 1000 + j,
                }
            )
            attributes = {
                "source": "gaitcrafter",
                "kind": kind,
                "identity_weights": identity if isinstance(identity, dict) else {identity: 1.0},
                "coat": clothing == "coat",
                "bag": bag == "bag",
                "clothing": clothing,
                "checkpoint": str(checkpoint_info.path),
            }
            rows.append(
                {
                    "dataset": dataset,
                    "subject": subject,
                    "condition": condition,
                    "view": view,
                    "sequence_id": sequence_id,
                    "split": "train",
                    "role": "train",
                    "frame_count": model.config.frames,
                    "attributes": json.dumps(attributes, sort_keys=True),
                }
            )
    del model  # generate_silhouettes loads its own copy; free this one first
    out = Path(out_dir)
    store = out / SYNTHETIC_STORE
    results = generate_silhouettes(
        checkpoint, jobs, store, steps=steps, guidance_scale=guidance_scale, sampler=sampler, device=device,
        guidance_on=guidance_on,
    )
    failed = {r["job_id"]: r["error"] for r in results if r["error"]}
    for row in rows:
        row["error"] = failed.get(row["sequence_id"])
    manifest = write_table(rows, out / "manifest.parquet", MANIFEST)
    return manifest, store


def low_label_subjects(subjects: Sequence[str], percent: float, seed: int = 0) -> list[str]:
    """A reproducible ``percent`` % of the identities (at least 2: the triplet loss needs negatives)."""
    unique = sorted(set(subjects))
    if not 0 < percent <= 100:
        raise ValueError(f"percent must lie in (0, 100], got {percent}")
    if len(unique) < 2:
        raise ValueError("low-label subsets need at least 2 identities")
    count = max(2, int(round(len(unique) * percent / 100.0)))
    rng = np.random.default_rng([seed, 13])
    return sorted(rng.choice(unique, size=min(count, len(unique)), replace=False).tolist())


def augmentation_variants(
    real_rows: Sequence[Mapping[str, object]],
    same_rows: Sequence[Mapping[str, object]],
    novel_rows: Sequence[Mapping[str, object]],
    *,
    low_label_percents: Sequence[float] = (25, 50),
    seed: int = 0,
) -> dict[str, list[Mapping[str, object]]]:
    """Training manifests (train-split rows) of the experiment's variants (module docstring)."""
    real = [r for r in real_rows if r["split"] == "train"]
    same = [r for r in same_rows if not r.get("error")]
    novel = [r for r in novel_rows if not r.get("error")]
    variants: dict[str, list[Mapping[str, object]]] = {
        "real": real,
        "real+same": real + same,
        "real+novel": real + novel,
        "novel-only": novel,
    }
    for percent in low_label_percents:
        keep = set(low_label_subjects([str(r["subject"]) for r in real], percent, seed))
        name = f"real-{percent:g}pct"
        variants[name] = [r for r in real if r["subject"] in keep]
        variants[f"{name}+same"] = variants[name] + [r for r in same if r["subject"] in keep]
        variants[f"{name}+novel"] = variants[name] + novel
    return variants


__all__ = [
    "KINDS",
    "augmentation_variants",
    "covariate_grid",
    "low_label_subjects",
    "synthesize_training_set",
]
