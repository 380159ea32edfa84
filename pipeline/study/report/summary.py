"""The report's summary: sentences computed from the numbers (headline per dataset, correlations,
counts)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl

from pipeline.evaluation.metrics import VISUAL
from pipeline.study.aggregate import (
    CONTROLS,
    HIGHER_IS_BETTER,
    OVERALL_CONDITIONS,
)
from pipeline.study.report.common import (
    MISSING,
    PERCENT_DECIMALS,
    Tables,
    decimals,
    fmt,
    label,
    ordered_names,
    scenario_order,
    unique_values,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Summary computed from the numbers


def real_metric_value(
    real: pl.DataFrame, dataset: str, recogniser: str, metric: str = "Rank-1"
) -> float | None:
    """The real-probe value over all conditions (first protocol alphabetically when there are several)."""
    rows = real.filter(
        (pl.col("dataset") == dataset)
        & (pl.col("recogniser") == recogniser)
        & pl.col("condition").is_in(list(OVERALL_CONDITIONS))
        & (pl.col("metric") == metric)
        & pl.col("value").is_not_null()
    ).sort("protocol")
    return None if rows.is_empty() else rows.get_column("value")[0]


def _cell_value(df: pl.DataFrame, **where: str) -> float | None:
    rows = df.filter(*[pl.col(k) == v for k, v in where.items()])
    return None if rows.is_empty() else rows.get_column("mean")[0]


def _headline_scenario(visual: pl.DataFrame) -> str | None:
    scenarios = scenario_order(visual)
    return "baseline" if "baseline" in scenarios else (scenarios[0] if scenarios else None)


def _headline(dataset: str, tables: Tables, controls: Sequence[str]) -> str | None:
    """'<dataset> (restoration/<scenario>): <model> has the best SSIM ... while its Rank-1 is ...'."""
    visual = tables["visual"].filter(
        (pl.col("dataset") == dataset)
        & (pl.col("task") == "restoration")
        & ~pl.col("model").is_in(list(controls))
        & pl.col("mean").is_not_null()
    )
    scenario = _headline_scenario(visual)
    if scenario is None:
        return None
    visual = visual.filter(pl.col("scenario") == scenario)
    metric = next(m for m in VISUAL if not visual.filter(pl.col("metric") == m).is_empty())
    scores = visual.filter(pl.col("metric") == metric).sort("mean", descending=HIGHER_IS_BETTER[metric])
    model = scores.get_column("model")[0]
    values = [
        f"{label(m).split(' ')[0]} {fmt(v, decimals(m))}"
        for m in VISUAL
        if (v := _cell_value(visual, model=model, metric=m)) is not None
    ]
    text = (
        f"{dataset} (restoration, {scenario}): {model} has the best {label(metric).split(' ')[0]} of the "
        f"generators ({', '.join(values)})"
    )
    bio = tables["biometric"].filter(
        (pl.col("dataset") == dataset) & (pl.col("model") == model) & (pl.col("task") == "restoration")
        & (pl.col("scenario") == scenario) & (pl.col("identity") == "driving") & (pl.col("metric") == "Rank-1")
    )  # fmt: skip
    if bio.is_empty():
        return text + "; there are no biometric results for it yet."
    ranks, reals = [], []
    for row in bio.iter_rows(named=True):
        ranks.append(f"{fmt(row['mean'], PERCENT_DECIMALS)} % with {row['recogniser']}")
        real = real_metric_value(tables["real_retrieval"], dataset, row["recogniser"])
        if real is not None:
            reals.append(f"{fmt(real, PERCENT_DECIMALS)} % with {row['recogniser']}")
    text += f" while its Rank-1 of the driving identity is {', '.join(ranks)}"
    return text + (f" (real probes: {', '.join(reals)})." if reals else " (no real-probe baseline).")


def p_value(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2g}"


def _correlation_sentences(dataset: str, corr: pl.DataFrame) -> list[str]:
    rows = corr.filter(
        (pl.col("dataset") == dataset) & (pl.col("level") == "cell") & (pl.col("task") == "all")
        & (pl.col("biometric_metric") == "Rank-1") & pl.col("rho").is_not_null()
    )  # fmt: skip
    if rows.is_empty():
        return []
    metric = next(m for m in VISUAL if not rows.filter(pl.col("visual_metric") == m).is_empty())
    parts = [
        f"ρ = {r['rho']:+.2f} with {r['recogniser']} (n = {r['n']}, p = {p_value(r['p_value'])})"
        for r in rows.filter(pl.col("visual_metric") == metric).iter_rows(named=True)
    ]
    return [
        f"{dataset}: Spearman correlation of {label(metric).split(' ')[0]} with Rank-1 across generator cells: {'; '.join(parts)}."
    ]


def summary_sentences(tables: Tables, controls: Sequence[str] = CONTROLS) -> list[str]:
    """The summary, generated from the tables: per dataset the generator with the best visual score in
    restoration (baseline scenario when present) and its Rank-1 against the real-probe Rank-1, then the
    cell-level Spearman ρ of that visual metric with Rank-1."""
    visual, bio = tables["visual"], tables["biometric"]
    if visual.is_empty() and bio.is_empty():
        return ["No results yet: the visual and biometric tables are empty."]
    sentences = []
    for dataset in ordered_names([*unique_values(visual, "dataset"), *unique_values(bio, "dataset")]):
        headline = _headline(dataset, tables, controls)
        sentences.append(
            headline
            or f"{dataset}: no generator (non-control model) has restoration results with visual metrics yet."
        )
        sentences += _correlation_sentences(dataset, tables["correlations"])
    return sentences


def counts_sentence(tables: Tables) -> str | None:
    videos, probes = tables["videos"], tables["probes"]
    if videos.is_empty() and probes.is_empty():
        return None
    source = videos if not videos.is_empty() else probes
    failed = 0
    if not videos.is_empty():
        failed = videos.filter(
            pl.col("visual_error").is_not_null() | pl.col("diagnostics_error").is_not_null()
        ).height
    n_videos = source.select("dataset", "model", "job_id").unique().height
    return (
        f"{n_videos} generated video(s) ({failed} with an error) from {len(unique_values(source, 'model'))} model(s), "
        f"{len(unique_values(source, 'scenario'))} scenario(s), {len(unique_values(source, 'dataset'))} dataset(s); "
        f"{len(unique_values(probes, 'recogniser'))} recogniser(s)."
    )
