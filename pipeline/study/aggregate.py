"""Stage "aggregate": the study's tables from the per-video results, with identity-bootstrap CIs.

Inputs (contracts declared by the stages that write them: :mod:`pipeline.evaluation.metrics` and
:mod:`pipeline.evaluation.retrieval`):

``visual_metrics``
    one row per generated video: masked SSIM / PSNR / LPIPS against its driving video.
``diagnostics``
    one row per generated video: motion and shape diagnostics (flow divergence, thickening, ...).
``probe_results``
    one row per generated probe × recogniser: the 1-based rank and the AP of the driving identity
    (and of the reference identity, which only differs from it in the transfer task).
``real_retrieval``
    the real-probe baseline (no generation), one row per dataset × recogniser × metric.

A row whose ``error`` is set is left out of every mean and counted in ``n_failed``; so is a row
without a driving subject (it cannot be resampled by identity), with that reason.

Confidence intervals (:func:`bootstrap_ci`): 95 % percentile intervals of a *cluster* bootstrap
whose unit is the **identity** (the driving subject). Videos driven by the same person share that
person's body and gait, so they are not independent draws; resampling videos would count one
identity's many videos as many independent observations and give intervals that are too narrow.
Each resample draws as many identities as there are, with replacement, keeps all videos of every
drawn identity (an identity drawn twice counts twice) and recomputes the statistic over those
videos. The point estimate is the statistic over all videos (so an identity with more videos weighs
more). With fewer than two identities there is nothing to resample and the interval is null.

Biometric numbers per cell (dataset × model × task × scenario × recogniser): Rank-k = mean(rank ≤ k)
× 100 and mAP = mean(AP) × 100, where a null rank (that identity has no gallery sequence) counts as a
miss and a null AP as 0; how many there were is ``n_no_gallery``. The transfer task reports both the
driving identity (whose motion the video carries) and the reference identity (whose appearance it
carries), and :func:`transfer_table` the share of probes ranking one above the other.

Correlations (:func:`correlations`): Spearman ρ (``scipy.stats.spearmanr``) between each visual
metric and each biometric quantity, per dataset and recogniser, at two levels: per **video** (hit@1,
reciprocal rank and AP of the driving identity) and per **cell** (cell means: Rank-1, Rank-5, mAP).
The control models (``oracle``: the driving video itself; ``static``: one frame, no motion) are left
out by default: they are bounds, not generators, and would manufacture a correlation between their
two extremes.

Guidance density (:func:`guidance_density`): paired by job (same driving video, reference and seed),
``posewarp-dense`` minus ``posewarp-sparse`` for every visual, diagnostic and biometric quantity;
mean difference with an identity-bootstrap CI.

:func:`run_aggregate` writes every table as Parquet (validated against the output contracts below)
and CSV into one folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.contracts import (
    TASKS,
    Contract,
    ContractError,
    atomic_path,
    declare,
    field,
    read_frame,
    rows_to_arrow,
    string_fields,
    write_table,
)
from pipeline.evaluation.metrics import DIAGNOSTICS, DIAGNOSTICS_INPUT, VISUAL, VISUAL_METRICS
from pipeline.evaluation.retrieval import PROBE_RESULTS, REAL_RETRIEVAL

log = logging.getLogger(__name__)

KEYS = ("dataset", "model", "task", "scenario")
RANK_METRICS = ("Rank-1", "Rank-5", "mAP")
IDENTITIES = ("driving", "reference")
# Per-video biometric quantities of the driving identity (correlations and guidance density).
VIDEO_BIOMETRIC = ("hit@1", "RR", "AP")
CONTROLS = ("oracle", "static")
# real_retrieval's condition over all probes: "all" here, "Overall" as pipeline.evaluation.retrieval writes it
OVERALL_CONDITIONS = ("all", "Overall")
SPARSE, DENSE = "posewarp-sparse", "posewarp-dense"
# Display order of the study's models and scenarios.
MODEL_ORDER = (
    "oracle", "static", "posewarp-sparse", "posewarp-dense",
    "magicanimate", "animateanyone", "unianimate", "mtvcrafter", "gaitcrafter",
)  # fmt: skip
SCENARIO_ORDER = ("baseline", "off_pose", "in_the_wild", "transfer")
# Whether a larger value is better (for best/worst choices and the summary).
HIGHER_IS_BETTER = {"ssim": True, "psnr": True, "lpips": False}
N_BOOT = 2000


_field, _strings, _contract = field, string_fields, declare
_JOB = _strings("dataset", "model", "task", "scenario", "job_id")
_SUBJECTS = _strings("driving_subject", "reference_subject", nullable=True)

# ---------------------------------------------------------------------------------------------
# Output contracts

_STATS = [
    _field("mean", pa.float64()), _field("ci_low", pa.float64()), _field("ci_high", pa.float64()),
    _field("n", pa.int64(), False), _field("n_identities", pa.int64(), False),
    _field("n_rows", pa.int64(), False), _field("n_failed", pa.int64(), False),
]  # fmt: skip
_CELL = _strings(*KEYS)

VISUAL_TABLE = _contract(
    "visual_table",
    "per cell and visual metric: mean, identity-bootstrap 95 % CI, counts",
    [*_CELL, *_strings("metric"), *_STATS],
    (*KEYS, "metric"),
)
BIOMETRIC_TABLE = _contract(
    "biometric_table",
    "per cell, recogniser, identity (driving/reference) and metric (Rank-1/Rank-5/mAP, percent)",
    [
        *_CELL,
        *_strings("recogniser", "identity", "metric"),
        *_STATS,
        _field("n_no_gallery", pa.int64(), False),
    ],
    (*KEYS, "recogniser", "identity", "metric"),
    identity=IDENTITIES,
)
TRANSFER_TABLE = _contract(
    "transfer_table",
    "transfer task: share of probes ranking the reference identity above the driving one, and vice versa",
    [*_CELL, *_strings("recogniser", "metric"), *_STATS],
    (*KEYS, "recogniser", "metric"),
)
DIAGNOSTICS_TABLE = _contract(
    "diagnostics_table",
    "per cell and diagnostic: mean, identity-bootstrap 95 % CI, counts",
    [*_CELL, *_strings("metric"), *_STATS],
    (*KEYS, "metric"),
)
CORRELATIONS = _contract(
    "correlations",
    "Spearman rho between visual metrics and biometric quantities, per video and per cell",
    [
        *_strings("dataset", "recogniser", "level", "task", "visual_metric", "biometric_metric"),
        _field("rho", pa.float64()), _field("p_value", pa.float64()), _field("n", pa.int64(), False),
        _field("note", pa.string()),
    ],
    ("dataset", "recogniser", "level", "task", "visual_metric", "biometric_metric"),
    level=("video", "cell"),
)  # fmt: skip
GUIDANCE_DENSITY = _contract(
    "guidance_density",
    "paired by job: posewarp-dense minus posewarp-sparse, mean difference with identity-bootstrap CI",
    [
        *_strings("dataset", "task", "scenario"), _field("recogniser", pa.string()), *_strings("quantity"),
        _field("mean_sparse", pa.float64()), _field("mean_dense", pa.float64()), _field("mean_diff", pa.float64()),
        _field("ci_low", pa.float64()), _field("ci_high", pa.float64()),
        _field("n_pairs", pa.int64(), False), _field("n_identities", pa.int64(), False),
    ],
    ("dataset", "task", "scenario", "recogniser", "quantity"),
)  # fmt: skip
FAILURES = _contract(
    "failures",
    "per input table and cell: rows, failed rows and the most common error",
    [
        *_strings("table", *KEYS),
        _field("n_rows", pa.int64(), False),
        _field("n_failed", pa.int64(), False),
        _field("top_error", pa.string()),
    ],
    ("table", *KEYS),
)
NOTES = _contract(
    "aggregate_notes",
    "notes for the report: metric nulls and their reasons, generator/metric notes, recogniser set-up",
    [
        *_strings("section"),
        _field("dataset", pa.string()),
        _field("model", pa.string()),
        *_strings("note"),
        _field("count", pa.int64(), False),
    ],
    (),
)
VIDEOS = _contract(
    "videos",
    "one row per generated video: visual metrics and diagnostics side by side",
    [
        *_JOB, *_SUBJECTS, *[_field(m, pa.float64()) for m in (*VISUAL, *DIAGNOSTICS)],
        _field("visual_error", pa.string()), _field("diagnostics_error", pa.string()),
    ],
    ("dataset", "model", "task", "scenario", "job_id"),
)  # fmt: skip
PROBES = _contract(
    "probes",
    "probe_results plus the per-video quantities of the driving identity (hit@1, hit@5 in 0/1, RR, AP)",
    [*PROBE_RESULTS.schema, *[_field(q, pa.float64()) for q in ("hit@1", "hit@5", "RR", "AP")]],
    ("dataset", "model", "task", "scenario", "job_id", "recogniser"),
)

# File stem in the output folder → contract.
OUTPUTS: dict[str, Contract] = {
    "visual": VISUAL_TABLE,
    "biometric": BIOMETRIC_TABLE,
    "transfer": TRANSFER_TABLE,
    "diagnostics": DIAGNOSTICS_TABLE,
    "correlations": CORRELATIONS,
    "guidance_density": GUIDANCE_DENSITY,
    "real_retrieval": REAL_RETRIEVAL,
    "failures": FAILURES,
    "notes": NOTES,
    "videos": VIDEOS,
    "probes": PROBES,
}


class TableResult(NamedTuple):
    """An aggregated table and the notes explaining what it lacks (empty inputs, absent models, ...)."""

    table: pl.DataFrame
    notes: list[str]


# ---------------------------------------------------------------------------------------------
# Identity bootstrap


class BootstrapCI(NamedTuple):
    estimate: float
    low: float | None
    high: float | None
    n_values: int
    n_groups: int


def _group_codes(groups: Sequence[object] | np.ndarray, n: int) -> np.ndarray:
    """[n] integer identity codes 0..G-1 (labels compared as strings unless already numbers/strings)."""
    labels = np.asarray(groups)
    if labels.dtype.kind not in "UiuS":
        labels = labels.astype(str)
    if len(labels) != n:
        raise ValueError(f"bootstrap_ci: {n} values but {len(labels)} group labels")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


@lru_cache(maxsize=64)
def _draw_counts(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_groups] how often each identity is drawn in each resample (each row sums to n_groups).

    Deterministic in its arguments, so cells with the same number of identities share one (read-only)
    matrix instead of drawing it again: the cache only saves time, results are unchanged.
    """
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    flat = (np.arange(n_boot)[:, None] * n_groups + draws).ravel()
    # float64 (exact for counts): the mean path multiplies it with float sums without a conversion
    counts = np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups).astype(np.float64)
    counts.flags.writeable = False
    return counts


def _drawn(members: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Value indices of one resample: the members of identity g repeated ``counts[g]`` times."""
    return np.concatenate([np.repeat(m, int(c)) for m, c in zip(members, counts, strict=True) if c])


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n: int = N_BOOT,
    seed: int = 0,
    *,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile CI of ``stat(values)`` by resampling *groups* (identities) with replacement.

    ``values`` [N] finite floats, ``groups`` [N] the identity of each value. Each of ``n`` resamples
    draws G identities (G = number of distinct groups) with replacement and evaluates ``stat`` on all
    values of the drawn identities. Returns the estimate on all values, the (1-level)/2 and
    (1+level)/2 quantiles (None with fewer than two identities: no between-identity variation can be
    estimated), and the counts. For ``stat=np.mean`` the resampled means are computed from per-identity
    sums and counts in one matrix product instead of a Python loop.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if n < 1:
        raise ValueError(f"bootstrap_ci: n (resamples) must be >= 1, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    if not np.isfinite(x).all():
        raise ValueError(
            f"bootstrap_ci: {int((~np.isfinite(x)).sum())} value(s) are NaN or infinite; drop nulls first"
        )
    codes = _group_codes(groups, len(x))
    if len(x) == 0:
        return BootstrapCI(math.nan, None, None, 0, 0)
    n_groups = int(codes.max()) + 1
    estimate = float(stat(x))
    if n_groups < 2:
        return BootstrapCI(estimate, None, None, len(x), n_groups)
    counts = _draw_counts(n_groups, n, seed)
    if stat is np.mean:
        sums = np.bincount(codes, weights=x, minlength=n_groups)
        sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)  # values per identity
        boot = (counts @ sums) / (counts @ sizes)
    else:
        order = np.argsort(codes, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(codes, minlength=n_groups))[:-1])
        boot = np.array([float(stat(x[_drawn(members, row)])) for row in counts])
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapCI(estimate, float(low), float(high), len(x), n_groups)


# ---------------------------------------------------------------------------------------------
# Loading and checking inputs


def _empty(contract: Contract) -> pl.DataFrame:
    return pl.from_arrow(contract.empty())


def load_inputs(
    paths: str | os.PathLike | Sequence[str | os.PathLike] | None, contract: Contract
) -> pl.DataFrame:
    """Read and concatenate the Parquet files of one input (each validated); None or [] → empty table."""
    if paths is None:
        paths = []
    elif isinstance(paths, str | os.PathLike):
        paths = [paths]
    frames = [read_frame(p, contract) for p in paths]
    if not frames:
        return _empty(contract)
    table = pl.concat(frames, how="vertical")
    # the unique key must hold across files too (one video listed in two shards would count twice)
    contract.validate(table.to_arrow(), where=f"{contract.name} ({len(frames)} file(s))")
    return table


def _check_values(
    df: pl.DataFrame, table: str, columns: Iterable[str], low: float | None = None, high: float | None = None
) -> None:
    """Refuse NaN/inf (they would silently poison means) and values outside [low, high], naming the column."""
    usable = df.filter(pl.col("error").is_null())
    for column in columns:
        values = usable.get_column(column).drop_nulls().cast(pl.Float64)
        bad = values.filter(~values.is_finite())
        if len(bad):
            raise ContractError(
                f"{table}: column '{column}' has {len(bad)} NaN/inf value(s) in rows without error; use null"
            )
        if low is not None and len(values) and values.min() < low:
            raise ContractError(f"{table}: column '{column}' has values below {low} (min {values.min()})")
        if high is not None and len(values) and values.max() > high:
            raise ContractError(f"{table}: column '{column}' has values above {high} (max {values.max()})")


def _mark_unusable(df: pl.DataFrame) -> pl.DataFrame:
    """A row without a driving subject cannot be resampled by identity: it becomes a failed row."""
    reason = "no driving_subject: the row cannot be resampled by identity"
    return df.with_columns(
        error=pl.when(pl.col("error").is_null() & pl.col("driving_subject").is_null())
        .then(pl.lit(reason))
        .otherwise(pl.col("error"))
    )


def check_visual(df: pl.DataFrame) -> pl.DataFrame:
    _check_values(df, "visual_metrics", ["ssim"], -1.0, 1.0)
    _check_values(df, "visual_metrics", ["psnr"])
    _check_values(df, "visual_metrics", ["lpips"], 0.0)
    return _mark_unusable(df)


def check_diagnostics(df: pl.DataFrame) -> pl.DataFrame:
    _check_values(df, "diagnostics", DIAGNOSTICS)
    return _mark_unusable(df)


def check_probes(df: pl.DataFrame) -> pl.DataFrame:
    _check_values(df, "probe_results", ["driving_rank", "reference_rank"], 1.0)
    _check_values(df, "probe_results", ["driving_ap", "reference_ap"], 0.0, 1.0)
    return _mark_unusable(df)


# ---------------------------------------------------------------------------------------------
# Per-cell statistics


# Display order of categorical columns; values not listed follow alphabetically.
ORDERS: dict[str, tuple[str, ...]] = {
    "model": MODEL_ORDER,
    "scenario": SCENARIO_ORDER,
    "metric": (*VISUAL, *RANK_METRICS, *DIAGNOSTICS),
    "quantity": (*VISUAL, *RANK_METRICS, "RR", *DIAGNOSTICS),
    "visual_metric": VISUAL,
    "biometric_metric": (*RANK_METRICS, *VIDEO_BIOMETRIC),
    "level": ("cell", "video"),
    "task": ("all", *TASKS),
}


def _sorted(df: pl.DataFrame, *extra: str) -> pl.DataFrame:
    """Sort by dataset, model, task, scenario, then ``extra``, using :data:`ORDERS` where a column has one."""
    if df.is_empty():
        return df
    by = [c for c in dict.fromkeys(("dataset", "model", "task", "scenario", *extra)) if c in df.columns]
    ranks = []
    for column in by:
        if column in ORDERS:
            rank = {name: i for i, name in enumerate(ORDERS[column])}
            expr = pl.col(column).replace_strict(rank, default=len(rank), return_dtype=pl.Int32)
            ranks.append(expr.alias(f"__{column}"))
    df = df.with_columns(ranks)
    keys = [k for c in by for k in ((f"__{c}", c) if c in ORDERS else (c,))]
    return df.sort(keys, nulls_last=True).drop([r.meta.output_name() for r in ranks])


def _stats(values: list[float], groups: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    ci = bootstrap_ci(values, groups, n=n_boot, seed=seed)
    return {
        "mean": None if ci.n_values == 0 else ci.estimate,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "n": ci.n_values,
        "n_identities": ci.n_groups,
    }


def _cell_stats(
    df: pl.DataFrame,
    keys: Sequence[str],
    quantities: Mapping[str, pl.Expr],
    *,
    n_boot: int,
    seed: int,
    extra: Mapping[str, pl.Expr] | None = None,
) -> list[dict[str, Any]]:
    """One row per group of ``keys`` and quantity: bootstrap stats over usable rows with a value.

    ``quantities`` maps the output metric name to a per-row expression; ``extra`` adds per-group
    aggregate columns (e.g. how many probes had no gallery identity).
    """
    if df.is_empty():
        return []
    usable = pl.col("error").is_null()
    columns = {f"__q{i}": expr for i, expr in enumerate(quantities.values())}
    aggregates: list[pl.Expr] = [
        pl.len().alias("n_rows"),
        pl.col("error").is_not_null().sum().alias("n_failed"),
    ]
    for column in columns:
        keep = usable & pl.col(column).is_not_null()
        aggregates += [
            pl.col(column).filter(keep).alias(column),
            pl.col("driving_subject").filter(keep).alias(f"{column}_g"),
        ]
    aggregates += [expr.alias(name) for name, expr in (extra or {}).items()]
    grouped = df.with_columns(**columns).group_by(list(keys), maintain_order=True).agg(aggregates)
    rows = []
    for group in grouped.iter_rows(named=True):
        base = {k: group[k] for k in keys}
        counts = {"n_rows": group["n_rows"], "n_failed": group["n_failed"]} | {
            k: group[k] for k in extra or {}
        }
        for name, column in zip(quantities, columns, strict=True):
            stats = _stats(group[column], group[f"{column}_g"], n_boot, seed)
            rows.append({**base, "metric": name, **stats, **counts})
    return rows


def _frame(rows: list[dict[str, Any]], contract: Contract, *extra_sort: str) -> pl.DataFrame:
    if not rows:
        return _empty(contract)
    table = rows_to_arrow(rows, contract.schema)
    return _sorted(pl.from_arrow(contract.validate(table, where=contract.name)), *extra_sort)


def visual_table(visual: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> TableResult:
    """Per cell × visual metric: mean, CI over identities, n, counts (``visual_table`` contract)."""
    if visual.is_empty():
        return TableResult(_empty(VISUAL_TABLE), ["no visual_metrics rows: the visual table is empty"])
    visual = check_visual(visual)
    rows = _cell_stats(visual, KEYS, {m: pl.col(m) for m in VISUAL}, n_boot=n_boot, seed=seed)
    return TableResult(_frame(rows, VISUAL_TABLE, "metric"), [])


def diagnostics_table(diagnostics: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> TableResult:
    """Per cell × diagnostic: mean, CI over identities, n, counts (``diagnostics_table`` contract)."""
    if diagnostics.is_empty():
        return TableResult(_empty(DIAGNOSTICS_TABLE), ["no diagnostics rows: the diagnostics table is empty"])
    diagnostics = check_diagnostics(diagnostics)
    rows = _cell_stats(diagnostics, KEYS, {m: pl.col(m) for m in DIAGNOSTICS}, n_boot=n_boot, seed=seed)
    return TableResult(_frame(rows, DIAGNOSTICS_TABLE, "metric"), [])


def _rank_quantities(identity: str) -> dict[str, pl.Expr]:
    """Per-probe percentages whose mean is Rank-1 / Rank-5 / mAP; a null rank is a miss, a null AP is 0."""
    rank, ap = pl.col(f"{identity}_rank"), pl.col(f"{identity}_ap")
    return {
        "Rank-1": (rank == 1).fill_null(False).cast(pl.Float64) * 100.0,
        "Rank-5": (rank <= 5).fill_null(False).cast(pl.Float64) * 100.0,
        "mAP": ap.fill_null(0.0) * 100.0,
    }


def biometric_table(probes: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> TableResult:
    """Per cell × recogniser × identity: Rank-1, Rank-5, mAP (percent) with CIs (``biometric_table``).

    The driving identity for every task; the reference identity for the transfer task as well.
    """
    if probes.is_empty():
        return TableResult(_empty(BIOMETRIC_TABLE), ["no probe_results rows: the biometric table is empty"])
    probes = check_probes(probes)
    keys = (*KEYS, "recogniser")
    rows = []
    for identity in IDENTITIES:
        part = probes if identity == "driving" else probes.filter(pl.col("task") == "transfer")
        no_gallery = {
            "n_no_gallery": (pl.col("error").is_null() & pl.col(f"{identity}_rank").is_null()).sum()
        }
        for row in _cell_stats(
            part, keys, _rank_quantities(identity), n_boot=n_boot, seed=seed, extra=no_gallery
        ):
            rows.append({**row, "identity": identity})
    return TableResult(_frame(rows, BIOMETRIC_TABLE, "recogniser", "identity", "metric"), [])


def transfer_table(probes: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> TableResult:
    """Transfer task: % of probes ranking the reference identity strictly above the driving one (and vice versa).

    A null rank (identity absent from the gallery) ranks below every found one; two nulls are a tie.
    """
    transfer = probes.filter(pl.col("task") == "transfer")
    if transfer.is_empty():
        return TableResult(
            _empty(TRANSFER_TABLE), ["no transfer-task probes: the identity-transfer table is empty"]
        )
    transfer = check_probes(transfer)
    never = np.iinfo(np.int32).max
    reference, driving = pl.col("reference_rank").fill_null(never), pl.col("driving_rank").fill_null(never)
    quantities = {
        "reference ranked above driving": (reference < driving).cast(pl.Float64) * 100.0,
        "driving ranked above reference": (driving < reference).cast(pl.Float64) * 100.0,
    }
    rows = _cell_stats(transfer, (*KEYS, "recogniser"), quantities, n_boot=n_boot, seed=seed)
    return TableResult(_frame(rows, TRANSFER_TABLE, "recogniser", "metric"), [])


# ---------------------------------------------------------------------------------------------
# Spearman correlations


def video_biometrics(probes: pl.DataFrame) -> pl.DataFrame:
    """``probe_results`` plus hit@1, hit@5 (0/1), RR = 1/rank and AP of the driving identity (``probes``).

    A null rank gives hit 0 and RR 0, a null AP gives 0; failed rows keep nulls.
    """
    rank, usable = pl.col("driving_rank"), pl.col("error").is_null()
    derived = {
        "hit@1": (rank == 1).fill_null(False).cast(pl.Float64),
        "hit@5": (rank <= 5).fill_null(False).cast(pl.Float64),
        "RR": (1.0 / rank.cast(pl.Float64)).fill_null(0.0),
        "AP": pl.col("driving_ap").fill_null(0.0),
    }
    return probes.with_columns(**{k: pl.when(usable).then(v).otherwise(None) for k, v in derived.items()})


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None, int, str | None]:
    from scipy.stats import spearmanr

    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 3:
        return None, None, n, f"only {n} pair(s) with both values (3 needed)"
    for values, what in ((x, "visual"), (y, "biometric")):
        if np.ptp(values) == 0:
            return None, None, n, f"the {what} quantity is constant: rank correlation undefined"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None), n, None


def _column(df: pl.DataFrame, name: str) -> np.ndarray:
    return df.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _correlation_rows(
    df: pl.DataFrame, level: str, pairs: Iterable[tuple[str, str]], by: Sequence[str]
) -> list[dict]:
    rows = []
    for (dataset, recogniser), part in sorted(df.group_by(list(by)), key=lambda kv: tuple(map(str, kv[0]))):
        for task in ("all", *TASKS):
            scoped = part if task == "all" else part.filter(pl.col("task") == task)
            if scoped.is_empty():
                continue
            for visual_metric, bio in pairs:
                rho, p, n, note = _spearman(_column(scoped, visual_metric), _column(scoped, bio))
                rows.append({
                    "dataset": dataset, "recogniser": recogniser, "level": level, "task": task,
                    "visual_metric": visual_metric, "biometric_metric": bio, "rho": rho, "p_value": p, "n": n, "note": note,
                })  # fmt: skip
    return rows


def correlations(
    visual: pl.DataFrame,
    probes: pl.DataFrame,
    *,
    visual_cells: pl.DataFrame | None = None,
    biometric_cells: pl.DataFrame | None = None,
    controls: Sequence[str] = CONTROLS,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> TableResult:
    """Spearman ρ between each visual metric and each biometric quantity (``correlations`` contract).

    Per video: visual metrics joined to the same video's probe rows (one recogniser at a time) against
    hit@1, RR and AP of the driving identity. Per cell: the cell means of :func:`visual_table` against
    Rank-1, Rank-5 and mAP (driving) of :func:`biometric_table`. Each for all tasks and per task.
    Rows of ``controls`` models are left out. Failed rows and null values are dropped pairwise.
    """
    notes = []
    if visual.is_empty() or probes.is_empty():
        return TableResult(
            _empty(CORRELATIONS), ["correlations need both visual_metrics and probe_results rows"]
        )
    if controls:
        notes.append(
            f"correlations leave out the control models {', '.join(controls)} (bounds, not generators)"
        )
    visual = check_visual(visual).filter(~pl.col("model").is_in(list(controls)) & pl.col("error").is_null())
    probes = video_biometrics(check_probes(probes)).filter(
        ~pl.col("model").is_in(list(controls)) & pl.col("error").is_null()
    )
    per_video = visual.select(*KEYS, "job_id", *VISUAL).join(
        probes.select(*KEYS, "job_id", "recogniser", *VIDEO_BIOMETRIC), on=[*KEYS, "job_id"], how="inner"
    )
    rows = _correlation_rows(
        per_video, "video", [(v, b) for v in VISUAL for b in VIDEO_BIOMETRIC], ("dataset", "recogniser")
    )
    if visual_cells is None:
        visual_cells = visual_table(visual, n_boot=n_boot, seed=seed).table
    if biometric_cells is None:
        biometric_cells = biometric_table(probes.drop(VIDEO_BIOMETRIC), n_boot=n_boot, seed=seed).table
    cells = _cell_means(visual_cells, biometric_cells, controls)
    rows += _correlation_rows(
        cells, "cell", [(v, b) for v in VISUAL for b in RANK_METRICS], ("dataset", "recogniser")
    )
    if not rows:
        notes.append("no video has both visual metrics and probe results (after leaving out failed rows)")
    return TableResult(
        _frame(rows, CORRELATIONS, "recogniser", "level", "task", "visual_metric", "biometric_metric"), notes
    )


def _cell_means(
    visual_cells: pl.DataFrame, biometric_cells: pl.DataFrame, controls: Sequence[str]
) -> pl.DataFrame:
    """[cell × recogniser] rows with the visual means and the driving identity's Rank-1/Rank-5/mAP."""
    if visual_cells.is_empty() or biometric_cells.is_empty():
        return pl.DataFrame(
            schema={
                **{k: pl.String for k in (*KEYS, "recogniser")},
                **dict.fromkeys((*VISUAL, *RANK_METRICS), pl.Float64),
            }
        )
    wide_visual = visual_cells.pivot(on="metric", index=list(KEYS), values="mean")
    wide_bio = biometric_cells.filter(pl.col("identity") == "driving").pivot(
        on="metric", index=[*KEYS, "recogniser"], values="mean"
    )
    for name in VISUAL:
        if name not in wide_visual.columns:
            wide_visual = wide_visual.with_columns(pl.lit(None, pl.Float64).alias(name))
    joined = wide_bio.join(wide_visual, on=list(KEYS), how="inner")
    return joined.filter(~pl.col("model").is_in(list(controls)))


# ---------------------------------------------------------------------------------------------
# Guidance density: posewarp-dense minus posewarp-sparse, paired by job


def _per_video_quantities(
    visual: pl.DataFrame, diagnostics: pl.DataFrame, probes: pl.DataFrame
) -> pl.DataFrame:
    """Long table: dataset, model, task, scenario, job_id, driving_subject, recogniser (null for
    non-biometric), quantity, value — usable rows and non-null values only."""
    ident = ["dataset", "model", "task", "scenario", "job_id", "driving_subject"]
    parts = []
    for df, names in ((visual, VISUAL), (diagnostics, DIAGNOSTICS)):
        if not df.is_empty():
            parts.append(
                df.filter(pl.col("error").is_null())
                .unpivot(on=list(names), index=ident, variable_name="quantity", value_name="value")
                .with_columns(recogniser=pl.lit(None, pl.String))
            )
    if not probes.is_empty():
        usable = video_biometrics(probes).filter(pl.col("error").is_null())
        percent = {
            "Rank-1": pl.col("hit@1") * 100,
            "Rank-5": pl.col("hit@5") * 100,
            "mAP": pl.col("AP") * 100,
            "RR": pl.col("RR"),
        }
        parts.append(
            usable.select(*ident, "recogniser", **percent).unpivot(
                on=list(percent), index=[*ident, "recogniser"], variable_name="quantity", value_name="value"
            )
        )
    if not parts:
        return pl.DataFrame()
    columns = [*ident, "recogniser", "quantity", "value"]
    return pl.concat([p.select(columns) for p in parts], how="vertical").drop_nulls("value")


def guidance_density(
    visual: pl.DataFrame,
    diagnostics: pl.DataFrame,
    probes: pl.DataFrame,
    *,
    sparse: str = SPARSE,
    dense: str = DENSE,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> TableResult:
    """Paired comparison ``dense − sparse`` per job (``guidance_density`` contract).

    Pairs are the jobs (dataset, task, scenario, job_id) that both models produced without error and
    with a value of the quantity. Grouped per dataset × task × scenario (and recogniser for biometric
    quantities), plus all scenarios pooled (task and scenario ``all``). Percent quantities (Rank-1,
    Rank-5, mAP) are per-video 0/100 hits and AP × 100, so their mean difference is in percentage points.
    """
    present = set()
    for df in (visual, diagnostics, probes):
        if not df.is_empty():
            present |= set(df.get_column("model").unique().to_list())
    absent = [m for m in (sparse, dense) if m not in present]
    if absent:
        return TableResult(
            _empty(GUIDANCE_DENSITY),
            [f"guidance density not compared: model(s) {', '.join(absent)} absent from the results"],
        )
    visual = check_visual(visual) if not visual.is_empty() else visual
    diagnostics = check_diagnostics(diagnostics) if not diagnostics.is_empty() else diagnostics
    probes = check_probes(probes) if not probes.is_empty() else probes
    long = _per_video_quantities(visual, diagnostics, probes)
    pair_keys = ["dataset", "task", "scenario", "job_id", "recogniser", "quantity"]
    a = long.filter(pl.col("model") == sparse).select(*pair_keys, "driving_subject", sparse=pl.col("value"))
    b = long.filter(pl.col("model") == dense).select(*pair_keys, dense=pl.col("value"))
    pairs = a.join(b, on=pair_keys, how="inner", nulls_equal=True)
    if pairs.is_empty():
        return TableResult(
            _empty(GUIDANCE_DENSITY),
            [f"guidance density not compared: {sparse} and {dense} share no successful job"],
        )
    pooled = pairs.with_columns(task=pl.lit("all"), scenario=pl.lit("all"))
    rows = []
    for df in (pairs, pooled):
        grouped = df.group_by(
            ["dataset", "task", "scenario", "recogniser", "quantity"], maintain_order=True
        ).agg(pl.col("sparse"), pl.col("dense"), pl.col("driving_subject"))
        for g in grouped.iter_rows(named=True):
            diff = np.asarray(g["dense"], dtype=np.float64) - np.asarray(g["sparse"], dtype=np.float64)
            ci = bootstrap_ci(diff, g["driving_subject"], n=n_boot, seed=seed)
            rows.append({
                **{k: g[k] for k in ("dataset", "task", "scenario", "recogniser", "quantity")},
                "mean_sparse": float(np.mean(g["sparse"])), "mean_dense": float(np.mean(g["dense"])),
                "mean_diff": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                "n_pairs": ci.n_values, "n_identities": ci.n_groups,
            })  # fmt: skip
    return TableResult(_frame(rows, GUIDANCE_DENSITY, "quantity", "recogniser"), [])


# ---------------------------------------------------------------------------------------------
# Failures, notes, per-video tables


def failures_table(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per input table and cell: rows, failed rows, the most common error (``failures`` contract)."""
    rows = []
    for name, df in tables.items():
        if df.is_empty():
            continue
        for key, part in df.group_by(list(KEYS), maintain_order=True):
            errors = [e for e in part.get_column("error").to_list() if e is not None]
            top = Counter(errors).most_common(1)[0][0] if errors else None
            rows.append(
                {
                    "table": name,
                    **dict(zip(KEYS, key, strict=True)),
                    "n_rows": part.height,
                    "n_failed": len(errors),
                    "top_error": top,
                }
            )
    return _frame(rows, FAILURES, "table")


NULL_REASON_KEYS = ("reasons", "null_reasons")  # {metric: why it is null}, as pipeline.evaluation.metrics writes them


def _note_lines(key: str, item: object) -> list[str]:
    """Readable lines of one notes entry: lists give one line each, null reasons 'metric is null: why'."""
    if item is None or item == [] or item == {}:
        return []
    if isinstance(item, list):
        return [str(v) if key == "notes" else f"{key}: {v}" for v in item]
    if isinstance(item, dict):
        if key in NULL_REASON_KEYS:
            return [f"{metric} is null: {why}" for metric, why in item.items()]
        return [line for k, v in item.items() for line in _note_lines(f"{key}.{k}", v)]
    return [f"{key}: {item}"]


def parse_notes(text: str | None) -> list[str]:
    """Notes of one row as readable lines.

    Accepts a JSON list of strings, or a JSON object such as pipeline.evaluation.metrics writes:
    ``{"alignment": [...], "null_reasons": {metric: why}, "policy": "...", "lpips": "..."}`` (a list
    gives one line per item, ``notes`` items stand alone, null reasons read "metric is null: why",
    other values "key: value"). A non-JSON string is kept as one note.
    """
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return [text]
    if isinstance(value, dict):
        return [line for key, item in value.items() for line in _note_lines(str(key), item)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def trained_on_note(trainer: str) -> str:
    """The note of a dataset scored with the recognisers trained on ``trainer`` (the report shows it)."""
    return f"trained on {trainer} (recognisers.train_on): its real and generated probes are scored with {trainer}'s recognisers"


MAX_NOTES = 12  # distinct notes kept per (section, dataset, model); the rest are counted in one line


def notes_table(
    visual: pl.DataFrame,
    diagnostics: pl.DataFrame,
    *,
    table_notes: Mapping[str, Sequence[str]] | None = None,
    recogniser_notes: Mapping[str, str] | None = None,
    trained_on: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Distinct notes with their counts (``aggregate_notes`` contract).

    Sections: ``visual`` / ``diagnostics`` (the rows' notes JSON, plus how many usable rows have each
    metric null), ``recognisers`` (set-up notes given by the caller, e.g. a randomly initialised small
    backbone; with ``trained_on``, one row per dataset scored with another dataset's recognisers, its
    ``dataset`` set: ``trained on <dataset> (recognisers.train_on)``) and one section per aggregated table
    (why it is empty, what it leaves out).
    """
    rows: list[dict[str, Any]] = []
    for section, df, metrics in (("visual", visual, VISUAL), ("diagnostics", diagnostics, DIAGNOSTICS)):
        if df.is_empty():
            continue
        for (dataset, model), part in df.group_by(["dataset", "model"], maintain_order=True):
            usable = part.filter(pl.col("error").is_null())
            for metric in metrics:
                nulls = usable.get_column(metric).null_count()
                if nulls:
                    rows.append(
                        {
                            "section": section,
                            "dataset": dataset,
                            "model": model,
                            "note": f"{metric} is null in {nulls} of {usable.height} usable video(s)",
                            "count": nulls,
                        }
                    )
            counts = Counter(n for text in usable.get_column("notes").to_list() for n in parse_notes(text))
            for note, count in counts.most_common(MAX_NOTES):
                rows.append(
                    {"section": section, "dataset": dataset, "model": model, "note": note, "count": count}
                )
            if len(counts) > MAX_NOTES:
                rest = sum(c for _, c in counts.most_common()[MAX_NOTES:])
                rows.append(
                    {
                        "section": section,
                        "dataset": dataset,
                        "model": model,
                        "note": f"... and {len(counts) - MAX_NOTES} other distinct note(s)",
                        "count": rest,
                    }
                )
    for recogniser, note in (recogniser_notes or {}).items():
        rows.append(
            {
                "section": "recognisers",
                "dataset": None,
                "model": None,
                "note": f"{recogniser}: {note}",
                "count": 1,
            }
        )
    for dataset, trainer in sorted((trained_on or {}).items()):
        rows.append(
            {
                "section": "recognisers",
                "dataset": dataset,
                "model": None,
                "note": trained_on_note(trainer),
                "count": 1,
            }
        )
    for section, notes in (table_notes or {}).items():
        rows += [{"section": section, "dataset": None, "model": None, "note": n, "count": 1} for n in notes]
    if not rows:
        return _empty(NOTES)
    return pl.from_arrow(NOTES.validate(rows_to_arrow(rows, NOTES.schema), where="notes"))


def videos_table(visual: pl.DataFrame, diagnostics: pl.DataFrame) -> pl.DataFrame:
    """Visual metrics and diagnostics of each video side by side (``videos`` contract; outer join)."""
    key = [*KEYS, "job_id"]
    v = visual.select(*key, "driving_subject", "reference_subject", *VISUAL, visual_error="error")
    d = diagnostics.select(
        *key, "driving_subject", "reference_subject", *DIAGNOSTICS, diagnostics_error="error"
    )
    joined = v.join(d, on=key, how="full", coalesce=True, suffix="_d")
    joined = joined.with_columns(
        driving_subject=pl.coalesce("driving_subject", "driving_subject_d"),
        reference_subject=pl.coalesce("reference_subject", "reference_subject_d"),
    )
    joined = joined.select(VIDEOS.schema.names)
    return _sorted(pl.from_arrow(VIDEOS.validate(joined.to_arrow(), where="videos")), "job_id")


# ---------------------------------------------------------------------------------------------
# The stage


def write_outputs(
    tables: Mapping[str, pl.DataFrame], out_dir: str | os.PathLike, contracts: Mapping[str, Contract] | None = None
) -> list[Path]:
    """Write each table as ``{name}.parquet`` (validated against ``contracts[name]``, default
    :data:`OUTPUTS`; atomic) and ``{name}.csv``."""
    out = Path(out_dir)
    written = []
    for name, df in tables.items():
        contract = (contracts or OUTPUTS)[name]
        written.append(write_table(df.to_arrow(), out / f"{name}.parquet", contract))
        final, tmp = atomic_path(out / f"{name}.csv")
        try:
            df.write_csv(tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written


def aggregate(
    visual: pl.DataFrame,
    diagnostics: pl.DataFrame,
    probes: pl.DataFrame,
    real: pl.DataFrame,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    controls: Sequence[str] = CONTROLS,
    recogniser_notes: Mapping[str, str] | None = None,
    trained_on: Mapping[str, str] | None = None,
) -> dict[str, pl.DataFrame]:
    """Every output table (keyed like :data:`OUTPUTS`) from the four input tables."""
    visual = check_visual(visual) if not visual.is_empty() else visual
    diagnostics = check_diagnostics(diagnostics) if not diagnostics.is_empty() else diagnostics
    probes = check_probes(probes) if not probes.is_empty() else probes
    options = {"n_boot": n_boot, "seed": seed}
    results = {
        "visual": visual_table(visual, **options),
        "biometric": biometric_table(probes, **options),
        "transfer": transfer_table(probes, **options),
        "diagnostics": diagnostics_table(diagnostics, **options),
    }
    results["correlations"] = correlations(
        visual, probes, visual_cells=results["visual"].table, biometric_cells=results["biometric"].table,
        controls=controls, **options,
    )  # fmt: skip
    results["guidance_density"] = guidance_density(visual, diagnostics, probes, **options)
    tables = {name: r.table for name, r in results.items()}
    if real.is_empty():
        results["real_retrieval"] = TableResult(
            real, ["no real_retrieval rows: the real-probe baseline is missing"]
        )
    tables["real_retrieval"] = _sorted(real, "recogniser", "protocol", "condition", "metric")
    if not real.is_empty() and "note" in real.columns:
        unscored = real.filter(pl.col("note").is_not_null()).select("dataset", "recogniser", "note").unique(
            maintain_order=True
        )
        if unscored.height:
            results["real_retrieval"] = TableResult(
                real, [f"{d} / {r}: {n}" for d, r, n in unscored.iter_rows()]
            )
    tables["failures"] = failures_table(
        {"visual_metrics": visual, "diagnostics": diagnostics, "probe_results": probes}
    )
    tables["notes"] = notes_table(
        visual,
        diagnostics,
        table_notes={k: r.notes for k, r in results.items() if r.notes},
        recogniser_notes=recogniser_notes,
        trained_on=trained_on,
    )
    tables["videos"] = videos_table(visual, diagnostics)
    tables["probes"] = _sorted(video_biometrics(probes), "job_id", "recogniser")
    return tables


def run_aggregate(
    out_dir: str | os.PathLike,
    *,
    visual: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    diagnostics: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    probes: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    real: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    controls: Sequence[str] = CONTROLS,
    recogniser_notes: Mapping[str, str] | None = None,
    trained_on: Mapping[str, str] | None = None,
) -> list[Path]:
    """Read the inputs (each a Parquet path or a list of them, concatenated; None = absent), aggregate
    and write every table of :data:`OUTPUTS` as Parquet and CSV into ``out_dir``. Returns the paths.
    ``trained_on`` maps a dataset to the dataset whose recognisers scored it (``recognisers.train_on``)."""
    tables = aggregate(
        load_inputs(visual, VISUAL_METRICS),
        load_inputs(diagnostics, DIAGNOSTICS_INPUT),
        load_inputs(probes, PROBE_RESULTS),
        load_inputs(real, REAL_RETRIEVAL),
        n_boot=n_boot, seed=seed, controls=controls, recogniser_notes=recogniser_notes, trained_on=trained_on,
    )  # fmt: skip
    written = write_outputs(tables, out_dir)
    failed = tables["failures"].get_column("n_failed").sum() if not tables["failures"].is_empty() else 0
    log.info("aggregate: %d tables written to %s (%d failed input rows)", len(tables), out_dir, failed)
    return written
