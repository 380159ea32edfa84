"""The workflow's GaitCrafter stages, each a ``python -m pipeline.cli <command> --spec JSON`` entry.

``train-gaitcrafter`` (:func:`train_stage`)
    Trains a dataset's GaitCrafter on the silhouettes of its train split **and the test split's
    gallery sequences** (``enrol: gallery``, the default): a generator conditioned on identity can only
    generate the sweep's test identities if it has an identity token for them, i.e. if they were
    enrolled with their gallery sequences — the same sequences every recogniser is given as its
    gallery. Probe sequences are never seen. ``enrol: none`` trains on the train split alone (then
    every sweep job fails with the reason "not a training identity"). The run folder is
    ``{out_dir}/train/{fingerprint}`` where the fingerprint hashes the architecture/diffusion keys
    and the vocabulary, so a longer run (more ``steps``) resumes the same folder from its newest
    checkpoint, while another architecture starts a new one. Writes ``model.json`` (the final
    checkpoint, steps, seconds, the train-split and enrolled identities).
``gaitcrafter-quality`` (:func:`quality_stage`)
    :func:`pipeline.gaitcrafter.quality.evaluate_checkpoint` → ``quality.parquet`` (contract
    ``gaitcrafter_quality``: one row per number, generated beside real where both exist).
``gaitcrafter-novelty`` (:func:`novelty_stage`)
    :func:`pipeline.gaitcrafter.novelty.evaluate_novelty` with the dataset's trained silhouette
    recogniser (DeepGaitV2) as the embedding, mixing train-split identities only, against generated
    and real train-split clips → ``novelty.parquet`` (contract ``gaitcrafter_novelty``).
``gaitcrafter-synthesize`` (:func:`synthesize_stage`)
    :func:`pipeline.gaitcrafter.augment.synthesize_training_set` (``same`` or ``novel``) restricted to
    the train split's identities (a model that enrolled test identities must not put them into a
    recogniser's training set).
``gaitcrafter-augment`` (:func:`augment_variant_stage`)
    One training-set variant of the augmentation experiment (:func:`~pipeline.gaitcrafter.augment.augmentation_variants`):
    trains the configured recogniser with :func:`pipeline.recognisers.train.train` on real +
    synthetic silhouette stores, embeds the real test split (:func:`pipeline.evaluation.embed.run_embed_stage`)
    and scores it with the dataset's retrieval protocol (:func:`pipeline.evaluation.retrieval.protocol_rows`, the
    code the real-probe baseline uses).
``gaitcrafter-augmentation`` (:func:`augmentation_table_stage`)
    All variants in one table, ``augmentation.parquet`` (contract ``gaitcrafter_augmentation``).

Every stage logs its wall time; the tables carry it (``seconds`` columns / rows).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.contracts import MANIFEST, Contract, atomic_path, read_table, register, write_table

log = logging.getLogger(__name__)

ENROL = ("gallery", "none")
QUALITY = register(
    Contract(
        name="gaitcrafter_quality",
        schema=pa.schema(
            [
                pa.field("dataset", pa.string(), nullable=False),
                pa.field("metric", pa.string(), nullable=False),
                pa.field("generated", pa.float64()),  # the generated clips' value (or the only value)
                pa.field("real", pa.float64()),  # the same number for the real clips, where it exists
                pa.field("note", pa.string()),
            ],
            metadata={"doc": "GaitCrafter sample quality: one row per number, generated beside real"},
        ),
        allowed_values={},
        unique_key=("dataset", "metric"),
    )
)
NOVELTY = register(
    Contract(
        name="gaitcrafter_novelty",
        schema=pa.schema(
            [
                pa.field("dataset", pa.string(), nullable=False),
                pa.field("comparison", pa.string(), nullable=False),
                pa.field("statistic", pa.string(), nullable=False),
                pa.field("value", pa.float64()),
            ],
            metadata={"doc": "distinctness of GaitCrafter's novel identities: one row per statistic"},
        ),
        allowed_values={"comparison": ("vs_generated_training", "vs_real_training", "run")},
        unique_key=("dataset", "comparison", "statistic"),
    )
)
AUGMENTATION = register(
    Contract(
        name="gaitcrafter_augmentation",
        schema=pa.schema(
            [
                pa.field("dataset", pa.string(), nullable=False),
                pa.field("variant", pa.string(), nullable=False),
                pa.field("recogniser", pa.string(), nullable=False),
                pa.field("protocol", pa.string(), nullable=False),
                pa.field("condition", pa.string(), nullable=False),
                pa.field("metric", pa.string(), nullable=False),
                pa.field("value", pa.float64()),  # percent, on the real test split
                pa.field("probes", pa.int64(), nullable=False),  # probes the value averages
                pa.field("real_sequences", pa.int64(), nullable=False),
                pa.field("synthetic_sequences", pa.int64(), nullable=False),
                pa.field("identities", pa.int64(), nullable=False),
                pa.field("iterations", pa.int64(), nullable=False),
                pa.field("train_seconds", pa.float64(), nullable=False),
                pa.field("embed_seconds", pa.float64(), nullable=False),
                # Rank-1 rows: 95 % percentile CI of a bootstrap over the probes' identities (null elsewhere)
                pa.field("ci_low", pa.float64()),
                pa.field("ci_high", pa.float64()),
                pa.field("note", pa.string()),
            ],
            metadata={
                "doc": "augmentation experiment: a recogniser trained on each training-set variant, "
                "scored on the real test split"
            },  # fmt: skip
        ),
        allowed_values={},
        unique_key=("dataset", "variant", "protocol", "condition", "metric"),
    )
)

# Pairs of summarise_quality keys shown side by side (generated, real); the rest are single numbers.
QUALITY_PAIRS = {
    "person_like": ("person_like_generated", "person_like_real"),
    "foreground_share": ("foreground_share_generated", "foreground_share_real"),
    "consecutive_iou": ("consecutive_iou_generated", "consecutive_iou_real"),
}
QUALITY_NOTES = {
    "person_like": "share of frames that are one dominant blob of plausible area",
    "gei_iou_same": "GEI soft IoU with real clips of the same identity and view",
    "gei_iou_other": "GEI soft IoU with real clips of other identities, same view",
    "frame_iou_same": "best-frame IoU with real clips of the same identity and view",
    "frame_iou_other": "best-frame IoU with real clips of other identities, same view",
    "fraction_same_beats_other_gei": "share of clips closer (GEI IoU) to their own identity than to others",
    "consecutive_iou": "IoU of consecutive frames (temporal consistency)",
    "identity_match_gei": "share of clips whose nearest identity (mean GEI IoU, same view) is their own",
    "identity_match_chance": "chance level of identity_match_gei (mean of 1 / identities per view)",
    "identity_match_real": "the same matching for real clips (leave-one-out, clip-length windows): the ceiling",
    "identity_match_real_chance": "chance level of identity_match_real",
}


# ---------------------------------------------------------------------------------------------
# Helpers


def write_json(value: Mapping[str, object], path: str | os.PathLike) -> Path:
    final, tmp = atomic_path(path)
    try:
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=str))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def read_model(path: str | os.PathLike) -> dict:
    """The training stage's ``model.json``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"GaitCrafter model file not found: {path} (the train_gaitcrafter rule writes it)"
        )
    return json.loads(path.read_text())


def begin_sampling_stage(
    model: str | os.PathLike, sampling: Mapping[str, object] | None, threads: int | None
) -> tuple[float, dict, dict]:
    """What every stage that samples a trained GaitCrafter does first: (start time, model.json, sampling)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return time.perf_counter(), read_model(model), dict(sampling or {})


def enrol_selection(enrol: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(splits, roles) of the training sequences for ``enrol`` (see the module docstring)."""
    if enrol not in ENROL:
        raise ValueError(f"gaitcrafter.enrol must be one of {ENROL}, got {enrol!r}")
    return (("train", "test"), ("train", "gallery")) if enrol == "gallery" else (("train",), None)


def run_fingerprint(
    config, vocabulary, splits: Sequence[str], roles: Sequence[str] | None, world: Mapping | None = None
) -> str:
    """Hash of everything that makes a checkpoint non-resumable (architecture, diffusion, data labels,
    and the world config of a world dataset: another world has the same identity labels)."""
    from pipeline.gaitcrafter.config import RESUMABLE_CHANGES

    fixed = {k: v for k, v in config.as_plain().items() if k not in RESUMABLE_CHANGES}
    value = {"config": fixed, "vocabulary": vocabulary.as_plain(), "splits": list(splits), "roles": roles}
    if world is not None:
        value["world"] = dict(world)
    text = json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _resolve(preset: str, settings: Mapping[str, object]):
    from pipeline.gaitcrafter.config import GaitCrafterConfig

    return GaitCrafterConfig.from_mapping({**dict(settings), "preset": preset})


# ---------------------------------------------------------------------------------------------
# Training


def train_stage(
    *,
    manifest: str,
    silhouettes: Sequence[str],
    out_dir: str,
    model: str,
    dataset: str,
    preset: str = "tiny",
    settings: Mapping[str, object] | None = None,
    enrol: str = "gallery",
    pretrained: str | None = None,
    world: Mapping[str, object] | None = None,
) -> dict:
    """Train (or resume) a dataset's GaitCrafter — or use the shipped checkpoint ``pretrained`` when its
    fingerprint matches this run's (:mod:`pipeline.gaitcrafter.pretrained`); write ``model`` (JSON,
    with ``source``: where the model came from) and return its content."""
    from pipeline.gaitcrafter.model import count_parameters
    from pipeline.gaitcrafter.pretrained import fingerprint, fingerprint_inputs
    from pipeline.gaitcrafter.train import load_training_data

    start, cpu_start = time.perf_counter(), time.process_time()
    config = _resolve(preset, settings or {})
    splits, roles = enrol_selection(enrol)
    data = load_training_data(silhouettes, manifest, config, splits=splits, roles=roles)
    for sid, reason in list(data.skipped.items())[:20]:
        log.warning("gaitcrafter training set: skipped %s: %s", sid, reason)
    rows = {r["sequence_id"]: r for r in read_table(manifest, MANIFEST).to_pylist()}
    train_ids = sorted({rows[s]["subject"] for s in data.sequence_ids if rows[s]["split"] == "train"})
    enrolled = sorted({rows[s]["subject"] for s in data.sequence_ids if rows[s]["split"] != "train"})
    run_dir = Path(out_dir) / "train" / run_fingerprint(config, data.vocabulary, splits, roles, world)
    log.info(
        "gaitcrafter %s: %d sequences (%d skipped), %d train + %d enrolled test identities, views %s → %s",
        dataset, len(data), len(data.skipped), len(train_ids), len(enrolled), list(data.vocabulary.views), run_dir,
    )  # fmt: skip
    inputs = fingerprint_inputs(config, data.vocabulary, splits, roles, world)
    checkpoint, step, resumed_from, losses, source = _pretrained_or_trained(
        config, data, run_dir, inputs, pretrained
    )
    seconds = time.perf_counter() - start
    info = {
        "dataset": dataset,
        "checkpoint": str(checkpoint),
        "run": str(run_dir),
        "source": source,
        "fingerprint": fingerprint(inputs),
        "world": None if world is None else dict(world),
        "step": step,
        "resumed_from": resumed_from,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "seconds_per_step": round(seconds / max(1, step - resumed_from), 3),
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "first_loss": float(np.mean(losses[:10])) if losses else None,
        "sequences": len(data),
        "skipped": len(data.skipped),
        "train_identities": train_ids,
        "enrolled_identities": enrolled,
        "views": list(data.vocabulary.views),
        "enrol": enrol,
        "splits": list(splits),
        "roles": None if roles is None else list(roles),
        "parameters": count_parameters(_load_model(checkpoint)),
        "preset": preset,
        "config": config.as_plain(),
    }
    write_json(info, model)
    log.info(
        "gaitcrafter %s: step %d (resumed from %d) in %.1f s (%.2f s/step), loss %.4f → %.4f",
        dataset, info["step"], info["resumed_from"], seconds, info["seconds_per_step"],
        info["first_loss"] or math.nan, info["final_loss"] or math.nan,
    )  # fmt: skip
    return info


def _pretrained_or_trained(config, data, run_dir: Path, inputs: Mapping, pretrained: str | None):
    """(checkpoint, step, resumed_from, losses, source) of the shipped checkpoint when it fits, else of training."""
    from pipeline.gaitcrafter.pretrained import materialise, mismatch, read_pretrained
    from pipeline.gaitcrafter.train import train

    refused = None
    if pretrained:
        info = read_pretrained(pretrained)
        refused = mismatch(info, inputs)
        if refused is None:
            checkpoint = materialise(pretrained, run_dir, config)
            source = {"kind": "pretrained", "path": str(pretrained), "made_by": info.get("made_by"),
                      "train_cpu_seconds": info.get("train_cpu_seconds"), "fingerprint": info["fingerprint"]}  # fmt: skip
            log.info(
                "gaitcrafter: using the shipped checkpoint %s (fingerprint %s)",
                pretrained,
                info["fingerprint"],
            )
            return checkpoint, int(info["step"]), int(info["step"]), [], source
        log.warning(
            "gaitcrafter: not using the shipped checkpoint %s: %s; training instead", pretrained, refused
        )
    result = train(config, data, run_dir)
    losses = [row["loss"] for row in read_table(result.log, _training_log()).to_pylist()]
    source = {"kind": "trained", "pretrained": pretrained, "not_used_because": refused}
    return result.checkpoint, int(result.step), int(result.resumed_from), losses, source


def _load_model(checkpoint):
    from pipeline.gaitcrafter.train import load_gaitcrafter

    return load_gaitcrafter(checkpoint, device="cpu")[0]


def _training_log():
    from pipeline.gaitcrafter.train import TRAINING_LOG

    return TRAINING_LOG


# ---------------------------------------------------------------------------------------------
# Sample quality and novelty


def quality_rows(dataset: str, summary: Mapping[str, object]) -> list[dict]:
    """``gaitcrafter_quality`` rows of an :func:`~pipeline.gaitcrafter.quality.evaluate_checkpoint` summary."""
    rows, used = [], set()
    for name, (generated, real) in QUALITY_PAIRS.items():
        if generated in summary:
            rows.append({"dataset": dataset, "metric": name, "generated": _number(summary[generated]),
                         "real": _number(summary.get(real)), "note": QUALITY_NOTES.get(name)})  # fmt: skip
            used |= {generated, real}
    for key, value in summary.items():
        if key in used or _number(value) is None:
            continue
        rows.append({"dataset": dataset, "metric": key, "generated": _number(value), "real": None,
                     "note": QUALITY_NOTES.get(key)})  # fmt: skip
    if "plausible_area_px" in summary:
        low, high = summary["plausible_area_px"]  # type: ignore[misc]
        rows.append({"dataset": dataset, "metric": "plausible_area_px_low", "generated": None, "real": float(low),
                     "note": "1st-99th percentile of the real frames' foreground areas (pixels)"})  # fmt: skip
        rows.append({"dataset": dataset, "metric": "plausible_area_px_high", "generated": None, "real": float(high),
                     "note": None})  # fmt: skip
    return rows


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
        return float(value)
    return None


def quality_stage(
    *,
    model: str,
    manifest: str,
    silhouettes: Sequence[str],
    dataset: str,
    out: str,
    sampling: Mapping[str, object] | None = None,
    samples_per_cell: int = 1,
    seed: int = 0,
    threads: int | None = None,
) -> list[dict]:
    """Sample quality of a dataset's GaitCrafter (every identity × view, normal clothing, no bag)."""

    from pipeline.gaitcrafter.quality import evaluate_checkpoint

    start, info, sampling = begin_sampling_stage(model, sampling, threads)
    summary, generated = evaluate_checkpoint(
        info["checkpoint"], silhouettes, manifest, samples_per_cell=samples_per_cell, seed=seed,
        steps=sampling.get("steps"), guidance_scale=sampling.get("guidance_scale"), sampler=sampling.get("sampler"),
        guidance_on=sampling.get("guidance_on"), splits=info["splits"], roles=info["roles"],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    summary = {**summary, "seconds": seconds, "training_steps": info["step"]}
    rows = quality_rows(dataset, summary)
    write_table(rows, out, QUALITY)
    log.info(
        "gaitcrafter quality %s: %d clips in %.1f s; person-like frames %.3f (real %.3f), GEI IoU same %.3f vs other %.3f",
        dataset, len(generated), seconds, summary["person_like_generated"], summary["person_like_real"],
        summary["gei_iou_same"] or math.nan, summary["gei_iou_other"] or math.nan,
    )  # fmt: skip
    return rows


def flatten(prefix: str, value: object) -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{dotted.key: float}`` (strings and lists left out)."""
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    number = _number(value)
    return {} if number is None else {prefix: number}


def real_clips_by_identity(
    silhouettes: Sequence[str], manifest: str, identities: Sequence[str], view: str
) -> dict[str, list[np.ndarray]]:
    """Real train-split clips [T, 64, 44] of ``identities`` in ``view`` with normal clothing and no bag."""
    from pipeline.gaitcrafter.config import GaitCrafterConfig
    from pipeline.gaitcrafter.quality import real_clips
    from pipeline.gaitcrafter.train import load_training_data

    data = load_training_data(silhouettes, manifest, GaitCrafterConfig(frames=1), splits=("train",))
    wanted = set(identities)
    clips: dict[str, list[np.ndarray]] = {}
    for clip in real_clips(data):
        if clip.identity in wanted and clip.view == view:
            clips.setdefault(clip.identity, []).append(clip.clip)
    return clips


def novelty_stage(
    *,
    model: str,
    recogniser: str,
    recogniser_checkpoint: str,
    manifest: str,
    silhouettes: Sequence[str],
    dataset: str,
    out: str,
    novel_identities: int = 6,
    samples: int = 3,
    parents: int = 2,
    view: str | None = None,
    sampling: Mapping[str, object] | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> list[dict]:
    """Distinctness of novel identities (mixes of train-split identities) under ``recogniser``'s embedding."""

    from pipeline.evaluation.embed import load_recogniser
    from pipeline.gaitcrafter.novelty import evaluate_novelty, recogniser_embedder

    start, info, sampling = begin_sampling_stage(model, sampling, threads)
    views = info["views"]
    view = view if view is not None else views[len(views) // 2]
    if view not in views:
        raise ValueError(
            f"gaitcrafter.evaluation.novelty.view: {view!r} is not one of the model's views {views}"
        )
    embed = recogniser_embedder(load_recogniser(recogniser, recogniser_checkpoint))
    pool = info["train_identities"]
    real = real_clips_by_identity(silhouettes, manifest, pool, view)
    result = evaluate_novelty(
        info["checkpoint"], embed, novel_count=novel_identities, samples=samples, parents=parents, view=view,
        seed=seed, steps=sampling.get("steps"), guidance_scale=sampling.get("guidance_scale"),
        sampler=sampling.get("sampler"), guidance_on=sampling.get("guidance_on"), real=real or None, identities=pool,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    rows = []
    for comparison in ("vs_generated_training", "vs_real_training"):
        for statistic, value in flatten("", result.get(comparison, {})).items():
            rows.append(
                {"dataset": dataset, "comparison": comparison, "statistic": statistic, "value": value}
            )
    run = {"seconds": seconds, "sampling_seconds": result["sampling_seconds"], "training_steps": info["step"],
           "novel_identities": novel_identities, "samples_per_identity": samples, "parents": parents,
           "real_training_identities": len(real)}  # fmt: skip
    rows += [
        {"dataset": dataset, "comparison": "run", "statistic": k, "value": float(v)} for k, v in run.items()
    ]
    write_table(rows, out, NOVELTY)
    summary = result["vs_generated_training"]["summary"]
    log.info(
        "gaitcrafter novelty %s (%s, view %s): %.1f s; captured by a training identity %.3f (real baseline: other "
        "identity closer %.3f)", dataset, recogniser, view, seconds, summary["fraction_captured_by_training"],
        result["vs_generated_training"]["real_baseline"].get("fraction_other_closer", math.nan),
    )  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# Synthetic training sets and the augmentation experiment


def synthesize_stage(
    *,
    model: str,
    out_dir: str,
    kind: str,
    dataset: str,
    per_identity: int,
    novel_identities: int | None = None,
    parents: int = 2,
    covariates: Mapping[str, Sequence[str] | None] | None = None,
    sampling: Mapping[str, object] | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """A synthetic source (``same`` or ``novel``) of the train split's identities; ``{out_dir}/info.json``."""

    from pipeline.gaitcrafter.augment import synthesize_training_set

    start, info, sampling = begin_sampling_stage(model, sampling, threads)
    manifest, store = synthesize_training_set(
        info["checkpoint"], out_dir, kind=kind, per_identity=per_identity, dataset=dataset,
        novel_count=novel_identities, parents=parents, seed=seed, steps=sampling.get("steps"),
        guidance_scale=sampling.get("guidance_scale"), sampler=sampling.get("sampler"),
        guidance_on=sampling.get("guidance_on"), identities=info["train_identities"], covariates=covariates,
    )  # fmt: skip
    rows = read_table(manifest, MANIFEST).to_pylist()
    seconds = time.perf_counter() - start
    summary = {
        "kind": kind,
        "clips": len(rows),
        "failed": sum(1 for r in rows if r["error"]),
        "identities": len({r["subject"] for r in rows}),
        "seconds": round(seconds, 2),
        "manifest": str(manifest),
        "store": str(store),
    }
    write_json(summary, Path(out_dir) / "info.json")
    log.info("gaitcrafter synthesize %s %s: %d clips of %d identities in %.1f s", dataset, kind,
             summary["clips"], summary["identities"], seconds)  # fmt: skip
    return summary


LOW_LABEL_PREFIX = "real-"
# A calibration row, not a training set: the recogniser with its seeded random initialisation, never
# trained. What it scores is what the architecture alone separates on this test split.
UNTRAINED = "untrained"


def variant_names(variants: Sequence[str], low_label_percents: Sequence[float]) -> list[str]:
    """Config variant keys → the experiment's variant names (``low-label*`` expands over the percents)."""
    names = []
    for variant in variants:
        if variant.startswith("low-label"):
            suffix = variant[len("low-label") :]
            names += [f"{LOW_LABEL_PREFIX}{p:g}pct{suffix}" for p in low_label_percents]
        else:
            names.append(variant)
    return list(dict.fromkeys(names))


def variant_needs(name: str) -> tuple[str, ...]:
    """The synthetic sets a variant reads (``same``, ``novel``)."""
    if name == "novel-only" or name.endswith("+novel"):
        return ("novel",)
    if name.endswith("+same"):
        return ("same",)
    return ()


def variant_percent(name: str) -> float | None:
    """k of a low-label variant ``real-{k}pct[...]``, None for the others."""
    if not name.startswith(LOW_LABEL_PREFIX) or "pct" not in name:
        return None
    return float(name[len(LOW_LABEL_PREFIX) : name.index("pct")])


def _store_rows(store: Path) -> set[str]:
    """Every sequence id of a perception shard: those with arrays and those its status table lists."""
    from pipeline.contracts import read_frame_store
    from pipeline.runner import STAGE_STATUS

    ids = set(read_frame_store(store, []).sequence_ids)
    status = store.with_suffix(".parquet")
    if status.is_file():
        ids |= {r["sequence_id"] for r in read_table(status, STAGE_STATUS).to_pylist()}
    return ids


def augment_variant_stage(
    *,
    dataset: str,
    variant: str,
    real_manifest: str,
    real_silhouettes: Sequence[str],
    synthetic: Mapping[str, str] | None,
    recogniser: str,
    model_options: Mapping[str, object],
    train_settings: Mapping[str, object],
    protocol: str,
    metric: str,
    out_dir: str,
    out: str,
    seed: int = 0,
    threads: int | None = None,
    note: str | None = None,
) -> list[dict]:
    """Train ``recogniser`` on one variant's training set and score it on the real test split."""
    from pipeline.evaluation.embed import run_embed_stage
    from pipeline.evaluation.retrieval import protocol_rows, read_embedding_files
    from pipeline.gaitcrafter.augment import augmentation_variants
    from pipeline.recognisers.data import GaitDataset
    from pipeline.recognisers.train import TrainConfig, recogniser_modality, train

    if recogniser_modality(recogniser) != "silhouette":
        raise ValueError(
            f"gaitcrafter.augmentation.recogniser: {recogniser} does not read silhouettes; GaitCrafter "
            "generates silhouettes only (use deepgaitv2)"
        )
    synthetic = dict(synthetic or {})
    missing = [k for k in variant_needs(variant) if k not in synthetic]
    if missing:
        raise ValueError(f"variant {variant!r} needs the synthetic set(s) {missing}")
    real_rows = read_table(real_manifest, MANIFEST).to_pylist()
    sets = {
        kind: read_table(Path(folder) / "manifest.parquet", MANIFEST).to_pylist()
        for kind, folder in synthetic.items()
    }
    percent = variant_percent(variant)
    variants = augmentation_variants(
        real_rows, sets.get("same", []), sets.get("novel", []),
        low_label_percents=() if percent is None else (percent,), seed=seed,
    )  # fmt: skip
    if variant not in variants and variant != UNTRAINED:
        raise ValueError(f"unknown augmentation variant {variant!r}; known: {sorted([*variants, UNTRAINED])}")
    rows = variants["real" if variant == UNTRAINED else variant]
    stores = [*map(str, real_silhouettes)]
    stores += [str(Path(folder) / "silhouettes" / "shard-0000.npz") for folder in synthetic.values()]
    data = GaitDataset.from_stores(rows, {"silhouettes": stores}, "silhouette")
    synthetic_ids = {r["sequence_id"] for kind in sets.values() for r in kind}
    n_synthetic = sum(1 for item in data.items if item.sequence_id in synthetic_ids)
    config = TrainConfig.from_mapping(
        {**dict(train_settings), "recogniser": recogniser, "model_options": dict(model_options),
         "threads": threads, "progress": False}
    )  # fmt: skip
    log.info(
        "augmentation %s %s: %d sequences (%d synthetic) of %d identities, %d skipped",
        dataset, variant, len(data), n_synthetic, len(data.labels), len(data.skipped),
    )  # fmt: skip
    start = time.perf_counter()
    if variant == UNTRAINED:
        checkpoint, iterations = untrained_checkpoint(config, data, Path(out_dir) / "untrained.pt"), 0
    else:
        result = train(config, data, Path(out_dir) / "train")
        checkpoint, iterations = result.checkpoint, int(result.iteration)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test = [r for r in real_rows if r["split"] == "test"]
    paths = []
    for store in map(Path, real_silhouettes):
        ids = _store_rows(store)
        shard_rows = [r for r in test if r["sequence_id"] in ids]
        if not shard_rows:
            continue
        path = Path(out_dir) / "embeddings" / f"{store.stem}.parquet"
        run_embed_stage(
            shard_rows, out=path, recogniser=recogniser, checkpoint=checkpoint,
            stores={"silhouettes": store}, threads=threads,
        )  # fmt: skip
        paths.append(str(path))
    embed_seconds = time.perf_counter() - start
    table = read_embedding_files(paths)
    scored = protocol_rows(
        table, protocol=protocol, metric=metric, dataset=dataset, recogniser=recogniser, with_probes=True
    )
    if not scored:
        raise ValueError(
            f"augmentation {dataset} {variant}: no retrieval numbers (no usable gallery or probe)"
        )
    intervals = rank1_intervals(table, protocol=protocol, metric=metric, seed=seed)
    scored = [{**row, **_interval_of(row, intervals)} for row in scored]
    out_rows = [
        {**row, "variant": variant, "real_sequences": len(data) - n_synthetic, "synthetic_sequences": n_synthetic,
         "identities": len(data.labels), "iterations": iterations, "train_seconds": round(train_seconds, 2),
         "embed_seconds": round(embed_seconds, 2), "note": note}
        for row in scored
    ]  # fmt: skip
    write_table(out_rows, out, AUGMENTATION)
    overall = next(
        (r["value"] for r in out_rows if r["metric"] == "Rank-1" and r["condition"] in ("Overall", "all")),
        None,
    )
    log.info(
        "augmentation %s %s: trained %d iterations in %.1f s, embedded the test split in %.1f s; Rank-1 %s",
        dataset, variant, iterations, train_seconds, embed_seconds, "–" if overall is None else f"{overall:.1f}",
    )  # fmt: skip
    return out_rows


CI_RESAMPLES = 2000


def identity_bootstrap(
    hits: np.ndarray, identities: Sequence[str], *, n: int = CI_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """(mean, low, high) in percent of per-probe hits [0/1], resampling identities (all of a drawn
    identity's probes together: probes of one person are not independent). No CI below 2 identities."""
    hits = np.asarray(hits, dtype=np.float64)
    if hits.size == 0:
        return math.nan, None, None
    labels, codes = np.unique(np.asarray(identities, dtype=str), return_inverse=True)
    mean = 100.0 * float(hits.mean())
    if len(labels) < 2:
        return mean, None, None
    sums = np.bincount(codes, weights=hits, minlength=len(labels))
    sizes = np.bincount(codes, minlength=len(labels)).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(labels), size=(n, len(labels)))
    counts = np.stack([np.bincount(row, minlength=len(labels)) for row in draws]).astype(np.float64)
    boot = 100.0 * (counts @ sums) / (counts @ sizes)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def rank1_intervals(
    table, *, protocol: str, metric: str, seed: int = 0
) -> dict[str, tuple[float, float | None, float | None]]:
    """Probe group → (Rank-1 %, CI low, CI high) from the protocol's per-probe ranks (the groups of
    :func:`pipeline.evaluation.retrieval.protocol_rows`). Single-view-gallery protocols (one row per
    probe and gallery view) get none: their Rank-1 averages view cells, not probes."""
    from pipeline.evaluation.retrieval import _groups, evaluate, get_protocol

    overrides: dict[str, object] = {"metric": metric}
    if protocol == "generic":
        overrides["group_by"] = "condition"
    spec = get_protocol(protocol, **overrides)
    if spec.single_view_gallery:
        return {}
    per_probe = evaluate(table, spec).per_probe
    if spec.no_match == "skip":
        per_probe = per_probe.filter(per_probe["n_matches"] > 0)
    hits = (per_probe["first_match"].to_numpy() == 1).astype(np.float64)
    subjects = per_probe["subject"].cast(str).to_list()
    out = {}
    for name, mask in _groups(per_probe, spec).items():
        out[name] = identity_bootstrap(
            hits[mask], [s for s, m in zip(subjects, mask, strict=True) if m], seed=seed
        )
    return out


def _interval_of(row: Mapping[str, object], intervals: Mapping[str, tuple]) -> dict[str, float | None]:
    """CI columns of one scored row: only Rank-1 rows whose value the per-probe hits reproduce."""
    found = intervals.get(str(row["condition"])) if row["metric"] == "Rank-1" else None
    if found is None or row["value"] is None or not math.isclose(found[0], float(row["value"]), abs_tol=1e-6):
        return {"ci_low": None, "ci_high": None}
    return {"ci_low": found[1], "ci_high": found[2]}


def untrained_checkpoint(config, data, path: Path) -> Path:
    """The recogniser as built and seeded by the trainer, saved untrained (the ``untrained`` row)."""
    import torch

    from pipeline.recognisers.checkpoints import save_checkpoint
    from pipeline.recognisers.models import build_recogniser

    torch.manual_seed(config.seed)
    model = build_recogniser(config.recogniser, class_num=len(data.labels), **dict(config.model_options))
    extra = {"config": config.as_plain(), "labels": list(data.labels), "trainer": "untrained reference"}
    return save_checkpoint(path, model, iteration=0, extra=extra)


def augmentation_table_stage(*, inputs: Sequence[str], out: str) -> Path:
    """Every variant's rows in one ``gaitcrafter_augmentation`` table."""
    rows = [row for path in inputs for row in read_table(path, AUGMENTATION).to_pylist()]
    return write_table(rows, out, AUGMENTATION)


__all__ = [
    "AUGMENTATION",
    "NOVELTY",
    "QUALITY",
    "augment_variant_stage",
    "augmentation_table_stage",
    "enrol_selection",
    "identity_bootstrap",
    "rank1_intervals",
    "novelty_stage",
    "quality_rows",
    "quality_stage",
    "read_model",
    "run_fingerprint",
    "synthesize_stage",
    "train_stage",
    "variant_names",
    "variant_needs",
    "variant_percent",
]
