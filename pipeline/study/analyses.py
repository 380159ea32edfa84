"""Stage "analyses": three questions the seed paper leaves open, from the aggregated tables.

``guidance_ablation``
    The same generator driven by the world's ground-truth guidance (``<model>@groundtruth``) and by
    estimated guidance (``<model>@estimated``: the pose stage's keypoints, ``approx_from_pose`` part
    maps), paired by job: Δ = estimated − ground truth of every visual metric, diagnostic, the motion
    consistency and Rank-1 / mAP per recogniser, with identity-bootstrap CIs, per scenario and pooled.
``motion`` and ``predictors``
    Which per-video quantity predicts biometric fidelity: Spearman ρ of every predictor — visual (SSIM,
    PSNR, LPIPS), temporal (flow divergence, and the motion consistency: DTW of the joint-angle curves
    of generated vs driving, :mod:`pipeline.evaluation.motion`), diagnostic (thickening, foot sliding,
    arm swing, cadence) — with each biometric quantity, per recogniser, at video level (hit@1, RR, AP)
    and cell level (cell means: Rank-1, mAP), CIs by the identity bootstrap (:mod:`pipeline.study.predictors`).
    ``predictor_tests``: does the best temporal predictor (largest |ρ|) beat SSIM? The paired
    bootstrap of |ρ_temporal| − |ρ_SSIM| over the same identity resamples.
``domain``
    Recognisers trained on dataset A scored on dataset B (``recognisers.train_on``): B's real probes
    and B's generated videos, next to every in-domain row.

Control models (``oracle``, ``static``) are left out of the predictors, as from the correlations.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.contracts import (
    MANIFEST,
    declare,
    field,
    read_frame,
    read_frame_store,
    read_table,
    rows_to_arrow,
    string_fields,
)
from pipeline.evaluation.metrics import DIAGNOSTICS, VISUAL
from pipeline.evaluation.motion import motion_consistency
from pipeline.evaluation.retrieval import REAL_RETRIEVAL
from pipeline.generation.config import ablation_arm
from pipeline.runner import STAGE_STATUS, stores_by_sequence
from pipeline.study import predictors as sp
from pipeline.study.aggregate import (
    BIOMETRIC_TABLE,
    CONTROLS,
    KEYS,
    N_BOOT,
    OVERALL_CONDITIONS,
    PROBES,
    VIDEOS,
    bootstrap_ci,
    write_outputs,
)

log = logging.getLogger(__name__)

MOTION = "motion_dtw"
KINDS = {
    **dict.fromkeys(VISUAL, "visual"),
    "flow_divergence": "temporal",
    MOTION: "temporal",
    **{d: "diagnostic" for d in DIAGNOSTICS if d != "flow_divergence"},
}
PREDICTORS = tuple(KINDS)
VIDEO_BIOMETRIC = ("hit@1", "RR", "AP")
CELL_BIOMETRIC = {"Rank-1": "hit@1", "mAP": "AP"}  # cell metric → the per-video quantity it averages (× 100)
REFERENCE_PREDICTOR = "ssim"

_STAT = [field("ci_low", pa.float64()), field("ci_high", pa.float64()),
         field("n", pa.int64(), False), field("n_identities", pa.int64(), False)]  # fmt: skip
MOTION_TABLE = declare(
    "motion_consistency",
    "per generated video: DTW of its joint-angle curves against the driving video's (degrees per aligned pair)",
    [*string_fields(*KEYS, "job_id"), field("driving_subject", pa.string()), field(MOTION, pa.float64()),
     field("error", pa.string())],
    (*KEYS, "job_id"),
)  # fmt: skip
PREDICTORS_TABLE = declare(
    "predictors",
    "Spearman rho of each predictor with each biometric quantity per recogniser and level, identity-bootstrap CI",
    [*string_fields("dataset", "recogniser", "level", "predictor", "kind", "biometric"),
     field("rho", pa.float64()), *_STAT, field("note", pa.string())],
    ("dataset", "recogniser", "level", "predictor", "biometric"),
    level=("video", "cell"), kind=("visual", "temporal", "diagnostic"),
)  # fmt: skip
PREDICTOR_TESTS = declare(
    "predictor_tests",
    "best temporal predictor vs SSIM: paired identity bootstrap of |rho_temporal| - |rho_ssim|",
    [*string_fields("dataset", "recogniser", "level", "biometric"), field("temporal", pa.string()),
     field("rho_temporal", pa.float64()), field("rho_ssim", pa.float64()), field("diff", pa.float64()),
     *_STAT, field("beats_ssim", pa.bool_()), field("note", pa.string())],
    ("dataset", "recogniser", "level", "biometric"),
)  # fmt: skip
ABLATION_TABLE = declare(
    "guidance_ablation",
    "paired by job: <model>@estimated minus <model>@groundtruth, mean difference with identity-bootstrap CI",
    [*string_fields("dataset", "model", "task", "scenario"), field("recogniser", pa.string()),
     *string_fields("quantity"), field("mean_groundtruth", pa.float64()), field("mean_estimated", pa.float64()),
     field("mean_diff", pa.float64()), *_STAT],
    ("dataset", "model", "task", "scenario", "recogniser", "quantity"),
)  # fmt: skip
DOMAIN_TABLE = declare(
    "domain",
    "recognisers trained on one dataset scored on another (and in-domain): real probes and generated videos",
    [*string_fields("trained_on", "scored", "domain", "recogniser", "probes", "metric"),
     field("value", pa.float64()), field("ci_low", pa.float64()), field("ci_high", pa.float64()),
     field("n", pa.int64())],
    ("trained_on", "scored", "recogniser", "probes", "metric"),
    domain=("in-domain", "cross-domain"),
)  # fmt: skip
OUTPUTS = {"motion": MOTION_TABLE, "predictors": PREDICTORS_TABLE, "predictor_tests": PREDICTOR_TESTS,
           "guidance_ablation": ABLATION_TABLE, "domain": DOMAIN_TABLE}  # fmt: skip


def _frame(rows: list[dict], contract) -> pl.DataFrame:
    return pl.from_arrow(
        contract.validate(rows_to_arrow(rows, contract.schema), where=contract.name)
    )


# ---------------------------------------------------------------------------------------------
# Motion consistency of every generated video


def motion_table(sources: Sequence[Mapping[str, str]], real_pose: Mapping[str, str]) -> pl.DataFrame:
    """One row per generated video (``motion_consistency``). ``sources``: per generation shard its
    ``manifest`` and its pose ``status`` / ``store``; ``real_pose``: dataset → its pose summary."""
    real = {d: stores_by_sequence(path) for d, path in real_pose.items()}
    rows = []
    for source in sources:
        status = {r["sequence_id"]: r for r in read_table(source["status"], STAGE_STATUS).to_pylist()}
        store = read_frame_store(source["store"]) if Path(source["store"]).exists() else None
        for video in read_table(source["manifest"], MANIFEST).to_pylist():
            attrs = json.loads(video["attributes"] or "{}")
            row = {"dataset": video["dataset"], "model": attrs.get("model"), "task": attrs.get("task"),
                   "scenario": attrs.get("scenario"), "job_id": video["sequence_id"],
                   "driving_subject": attrs.get("driving_subject"), MOTION: None, "error": None}  # fmt: skip
            row[MOTION], row["error"] = _video_motion(
                video, attrs, status, store, real.get(video["dataset"], {})
            )
            rows.append(row)
    return _frame(rows, MOTION_TABLE)


@lru_cache(maxsize=8)
def _store(path: str):
    """A real pose shard's frame store, read once for all the videos it drives."""
    return read_frame_store(path)


def _video_motion(
    video: dict, attrs: dict, status: dict, store, real: Mapping[str, str]
) -> tuple[float | None, str | None]:
    sid, driving = video["sequence_id"], attrs.get("driving_sequence")
    if video["error"]:
        return None, "generation failed"
    if status.get(sid, {}).get("error") or store is None or sid not in store:
        return None, f"pose of the generated video: {status.get(sid, {}).get('error') or 'not stored'}"
    if driving not in real:
        return None, f"pose of the driving video {driving}: not stored"
    drv = _store(real[driving])
    pair = [(s.get(i, "pose_keypoints"), s.get(i, "valid")) for s, i in ((store, sid), (drv, driving))]
    return motion_consistency(*pair)


# ---------------------------------------------------------------------------------------------
# Predictors of biometric fidelity


def video_predictors(
    videos: pl.DataFrame, motion: pl.DataFrame, probes: pl.DataFrame, controls=CONTROLS
) -> pl.DataFrame:
    """Per (video, recogniser): every predictor and the driving identity's hit@1, RR, AP (usable rows only)."""
    key = [*KEYS, "job_id"]
    preds = videos.with_columns(
        [pl.when(pl.col("visual_error").is_null()).then(pl.col(m)).alias(m) for m in VISUAL]
        + [pl.when(pl.col("diagnostics_error").is_null()).then(pl.col(m)).alias(m) for m in DIAGNOSTICS]
    ).select(*key, "driving_subject", *VISUAL, *DIAGNOSTICS)
    preds = preds.join(motion.filter(pl.col("error").is_null()).select(*key, MOTION), on=key, how="left")
    bio = probes.filter(pl.col("error").is_null()).select(*key, "recogniser", *VIDEO_BIOMETRIC)
    joined = preds.join(bio, on=key, how="inner")
    return joined.filter(~pl.col("model").is_in(list(controls)) & pl.col("driving_subject").is_not_null())


def _rho_boot(part: pl.DataFrame, level: str, predictor: str, bio: str, n_boot: int, seed: int):
    """(ρ, [B] resampled ρ, n, identities, note) of one predictor × biometric quantity on usable rows."""
    use = part.drop_nulls([predictor, bio])
    n, ids = use.height, use["driving_subject"].n_unique() if use.height else 0
    if n < 3 or ids < 2:
        return None, None, n, ids, f"{n} video(s) of {ids} identities with both values (3 and 2 needed)"
    x, y = use[predictor].to_numpy().astype(float), use[bio].to_numpy().astype(float)
    codes, counts = sp.identity_counts(use["driving_subject"].to_numpy(), n_boot, seed)
    if level == "video":
        point, boot = sp.video_rho_boot(x, y, codes, counts)
    else:
        cells = np.unique(
            use.select(pl.concat_str(list(KEYS), separator="|")).to_series().to_numpy(), return_inverse=True
        )[1]
        if cells.max() < 2:
            return None, None, n, ids, f"only {cells.max() + 1} cell(s) (3 needed)"
        point, boot = sp.cell_rho_boot(x, y, cells.reshape(-1), codes, counts)
    note = None if np.isfinite(point) else "a quantity is constant: rank correlation undefined"
    return (point if np.isfinite(point) else None), boot, n, ids, note


def _biometrics(level: str) -> dict[str, str]:
    return {b: b for b in VIDEO_BIOMETRIC} if level == "video" else CELL_BIOMETRIC


def predictors_tables(
    per_video: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(``predictors``, ``predictor_tests``) from :func:`video_predictors`' table."""
    rows, tests = [], []
    for (dataset, recogniser), part in sorted(
        per_video.group_by(["dataset", "recogniser"]), key=lambda kv: kv[0]
    ):
        for level in ("video", "cell"):
            for name, bio in _biometrics(level).items():
                boots = {}
                for predictor in PREDICTORS:
                    rho, boot, n, ids, note = _rho_boot(part, level, predictor, bio, n_boot, seed)
                    low, high = sp.interval(boot) if boot is not None else (None, None)
                    rows.append({"dataset": dataset, "recogniser": recogniser, "level": level, "predictor": predictor,
                                 "kind": KINDS[predictor], "biometric": name, "rho": rho, "ci_low": low,
                                 "ci_high": high, "n": n, "n_identities": ids, "note": note})  # fmt: skip
                    if rho is not None:
                        boots[predictor] = rho
                tests.append(_best_vs_ssim(part, level, name, bio, boots, n_boot, seed, dataset, recogniser))
    return _frame(rows, PREDICTORS_TABLE), _frame(tests, PREDICTOR_TESTS)


def _best_vs_ssim(part, level, name, bio, rhos, n_boot, seed, dataset, recogniser) -> dict:
    row = {"dataset": dataset, "recogniser": recogniser, "level": level, "biometric": name, "temporal": None,
           "rho_temporal": None, "rho_ssim": rhos.get(REFERENCE_PREDICTOR), "diff": None, "ci_low": None,
           "ci_high": None, "n": 0, "n_identities": 0, "beats_ssim": None, "note": None}  # fmt: skip
    temporal = {p: r for p, r in rhos.items() if KINDS[p] == "temporal"}
    if not temporal or REFERENCE_PREDICTOR not in rhos:
        row["note"] = "no defined rho for a temporal predictor or for SSIM"
        return row
    best = max(temporal, key=lambda p: abs(temporal[p]))
    # both on the same videos (those with both values), so the resamples are paired
    both = part.drop_nulls([best, REFERENCE_PREDICTOR, bio])
    r_t, boot_t, n, ids, _ = _rho_boot(both, level, best, bio, n_boot, seed)
    r_s, boot_s, *_ = _rho_boot(both, level, REFERENCE_PREDICTOR, bio, n_boot, seed)
    row.update(temporal=best, rho_temporal=r_t, rho_ssim=r_s, n=n, n_identities=ids)
    if r_t is None or r_s is None:
        row["note"] = "rho undefined on the videos that have both predictors"
        return row
    low, high = sp.interval(np.abs(boot_t) - np.abs(boot_s))
    row.update(
        diff=abs(r_t) - abs(r_s), ci_low=low, ci_high=high, beats_ssim=None if low is None else bool(low > 0)
    )
    return row


# ---------------------------------------------------------------------------------------------
# Guidance-source ablation


def _long(per_video: pl.DataFrame, videos: pl.DataFrame, motion: pl.DataFrame) -> pl.DataFrame:
    """[dataset, model, task, scenario, job_id, driving_subject, recogniser, quantity, value] of the arms."""
    key = [*KEYS, "job_id"]
    v = videos.join(motion.select(*key, MOTION), on=key, how="left")
    parts = []
    for names, err in ((VISUAL, "visual_error"), (DIAGNOSTICS, "diagnostics_error"), ((MOTION,), None)):
        use = v if err is None else v.filter(pl.col(err).is_null())
        parts.append(use.unpivot(on=list(names), index=[*key, "driving_subject"], variable_name="quantity",
                                 value_name="value").with_columns(recogniser=pl.lit(None, pl.String)))  # fmt: skip
    bio = per_video.select(
        *key, "driving_subject", "recogniser", **{"Rank-1": pl.col("hit@1") * 100, "mAP": pl.col("AP") * 100}
    )
    parts.append(bio.unpivot(on=["Rank-1", "mAP"], index=[*key, "driving_subject", "recogniser"],
                             variable_name="quantity", value_name="value"))  # fmt: skip
    columns = [*key, "driving_subject", "recogniser", "quantity", "value"]
    return pl.concat([p.select(columns) for p in parts]).drop_nulls(["value", "driving_subject"])


def ablation_table(
    videos: pl.DataFrame, probes: pl.DataFrame, motion: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0
) -> pl.DataFrame:
    """``guidance_ablation``: Δ = estimated − ground truth per job, by scenario and pooled (``all``)."""
    arms = {m: ablation_arm(m) for m in videos["model"].unique().to_list() if ablation_arm(m)}
    if not arms:
        return _frame([], ABLATION_TABLE)
    usable = probes.filter(pl.col("error").is_null())
    long = _long(usable, videos.filter(pl.col("model").is_in(list(arms))), motion).filter(
        pl.col("model").is_in(list(arms))
    )
    long = long.with_columns(
        base=pl.col("model").replace_strict({m: a[0] for m, a in arms.items()}),
        arm=pl.col("model").replace_strict({m: a[1] for m, a in arms.items()}),
    )
    pair_key = ["dataset", "base", "task", "scenario", "job_id", "recogniser", "quantity"]
    gt = long.filter(pl.col("arm") == "groundtruth").select(*pair_key, "driving_subject", groundtruth="value")
    est = long.filter(pl.col("arm") == "estimated").select(*pair_key, estimated="value")
    pairs = gt.join(est, on=pair_key, how="inner", nulls_equal=True)
    rows = []
    for df in (pairs, pairs.with_columns(task=pl.lit("all"), scenario=pl.lit("all"))):
        groups = df.group_by(
            ["dataset", "base", "task", "scenario", "recogniser", "quantity"], maintain_order=True
        )
        for g in groups.agg("groundtruth", "estimated", "driving_subject").iter_rows(named=True):
            gt_v, est_v = np.asarray(g["groundtruth"], float), np.asarray(g["estimated"], float)
            ci = bootstrap_ci(est_v - gt_v, g["driving_subject"], n=n_boot, seed=seed)
            rows.append({"dataset": g["dataset"], "model": g["base"], "task": g["task"], "scenario": g["scenario"],
                         "recogniser": g["recogniser"], "quantity": g["quantity"],
                         "mean_groundtruth": float(gt_v.mean()), "mean_estimated": float(est_v.mean()),
                         "mean_diff": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "n": ci.n_values,
                         "n_identities": ci.n_groups})  # fmt: skip
    table = _frame(rows, ABLATION_TABLE)
    return table.sort("dataset", "model", "task", "scenario", "quantity", "recogniser", nulls_last=False)


# ---------------------------------------------------------------------------------------------
# Cross-domain table


def domain_table(real: pl.DataFrame, biometric: pl.DataFrame, trained_on: Mapping[str, str]) -> pl.DataFrame:
    """``domain``: per scored dataset, its trainer (``trained_on``, else itself), Rank-1 and mAP of
    the real probes (all conditions) and of each (model, scenario) of its generated videos (driving identity)."""
    rows = []
    real = real.filter(
        pl.col("condition").is_in(list(OVERALL_CONDITIONS)) & pl.col("metric").is_in(["Rank-1", "mAP"])
    )
    protocols = real.group_by("dataset").agg(k=pl.col("protocol").n_unique())
    several = set(protocols.filter(pl.col("k") > 1)["dataset"].to_list())  # then one row per protocol
    for r in real.iter_rows(named=True):
        probes = f"real ({r['protocol']})" if r["dataset"] in several else "real"
        rows.append({"scored": r["dataset"], "recogniser": r["recogniser"], "probes": probes, "metric": r["metric"],
                     "value": r["value"], "ci_low": None, "ci_high": None, "n": None})  # fmt: skip
    gen = biometric.filter((pl.col("identity") == "driving") & pl.col("metric").is_in(["Rank-1", "mAP"]))
    for r in gen.iter_rows(named=True):
        rows.append({"scored": r["dataset"], "recogniser": r["recogniser"], "probes": f"{r['model']} / {r['scenario']}",
                     "metric": r["metric"], "value": r["mean"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "n": r["n"]})  # fmt: skip
    for row in rows:
        row["trained_on"] = trained_on.get(row["scored"], row["scored"])
        row["domain"] = "in-domain" if row["trained_on"] == row["scored"] else "cross-domain"
    table = _frame(rows, DOMAIN_TABLE)
    return table.sort("recogniser", "metric", "domain", "scored", "probes")


# ---------------------------------------------------------------------------------------------
# The stage


def run_analyses(
    out_dir: str | os.PathLike,
    *,
    tables_dir: str | os.PathLike,
    sources: Sequence[Mapping[str, str]],
    real_pose: Mapping[str, str],
    trained_on: Mapping[str, str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[Path]:
    """Every table of :data:`OUTPUTS` (Parquet and CSV) from the aggregate's ``videos``, ``probes``,
    ``biometric`` and ``real_retrieval`` tables and the generated / driving pose stores."""
    tables_dir = Path(tables_dir)
    videos, probes = (
        read_frame(tables_dir / "videos.parquet", VIDEOS),
        read_frame(tables_dir / "probes.parquet", PROBES),
    )
    motion = motion_table(sources, real_pose)
    per_video = video_predictors(videos, motion, probes)
    predictors, tests = predictors_tables(per_video, n_boot=n_boot, seed=seed)
    tables = {
        "motion": motion,
        "predictors": predictors,
        "predictor_tests": tests,
        "guidance_ablation": ablation_table(videos, probes, motion, n_boot=n_boot, seed=seed),
        "domain": domain_table(read_frame(tables_dir / "real_retrieval.parquet", REAL_RETRIEVAL),
                               read_frame(tables_dir / "biometric.parquet", BIOMETRIC_TABLE), trained_on or {}),
    }  # fmt: skip
    log.info("analyses: %s", {k: v.height for k, v in tables.items()})
    return write_outputs(tables, out_dir, OUTPUTS)
