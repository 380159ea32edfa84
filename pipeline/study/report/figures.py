"""The report's matplotlib figures (Agg canvas, no pyplot state): visual-vs-biometric scatter, per-model
bars with CIs, diagnostics, Spearman heat maps and guidance density. Each returns the figure (or None)
and a caption."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from pipeline.evaluation.metrics import DIAGNOSTICS, VISUAL
from pipeline.study.aggregate import (
    KEYS,
    RANK_METRICS,
    VIDEO_BIOMETRIC,
)
from pipeline.study.report.common import (
    DPI,
    MISSING,
    Tables,
    label,
    model_colours,
    model_order,
    ordered_names,
    scenario_order,
    scenario_styles,
    unique_values,
)
from pipeline.study.report.summary import real_metric_value

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Figures


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def placeholder(reason: str) -> Any:
    fig = figure(6, 1.2)
    fig.text(0.5, 0.5, f"no plot: {reason}", ha="center", va="center", wrap=True, fontsize=10)
    return fig


def _asymmetric(mean: float | None, low: float | None, high: float | None) -> tuple[float, float]:
    if mean is None or low is None or high is None:
        return 0.0, 0.0
    return max(mean - low, 0.0), max(high - mean, 0.0)


def _cells(visual: pl.DataFrame, bio: pl.DataFrame) -> pl.DataFrame:
    """One row per cell × visual metric × recogniser: visual mean/CI and driving Rank-1 mean/CI."""
    v = visual.select(*KEYS, "metric", v_mean="mean", v_low="ci_low", v_high="ci_high").filter(
        pl.col("v_mean").is_not_null()
    )
    b = bio.filter((pl.col("identity") == "driving") & (pl.col("metric") == "Rank-1")).select(
        *KEYS, "recogniser", b_mean="mean", b_low="ci_low", b_high="ci_high"
    )
    return v.join(b, on=list(KEYS), how="inner").filter(pl.col("b_mean").is_not_null())


def scatter_figure(tables: Tables) -> tuple[Any | None, str]:
    """Visual metric (x) vs Rank-1 of the driving identity (y), one point per cell; rows: dataset ×
    visual metric, columns: recognisers; colour = model, marker = scenario, dashed = real probes."""
    cells = _cells(tables["visual"], tables["biometric"])
    if cells.is_empty():
        why = "needs cells with both visual metrics and Rank-1"
        return None, f"{why} ({tables.why_empty('visual')}; {tables.why_empty('biometric')})"
    models, scenarios = model_order(cells), scenario_order(cells)
    colours, (markers, _) = model_colours(models), scenario_styles(scenarios)
    blocks = [
        (d, m)
        for d in unique_values(cells, "dataset")
        for m in VISUAL
        if not cells.filter((pl.col("dataset") == d) & (pl.col("metric") == m)).is_empty()
    ]
    n_cols = max(len(unique_values(cells.filter(pl.col("dataset") == d), "recogniser")) for d, _ in blocks)
    fig = figure(3.4 * n_cols + 2.0, 2.8 * len(blocks))
    axes = fig.subplots(len(blocks), n_cols, squeeze=False)
    corr = tables["correlations"]
    for row, (dataset, metric) in enumerate(blocks):
        part = cells.filter((pl.col("dataset") == dataset) & (pl.col("metric") == metric))
        recognisers = unique_values(part, "recogniser")
        for col in range(n_cols):
            ax = axes[row][col]
            if col >= len(recognisers):
                ax.set_visible(False)
                continue
            _scatter_panel(ax, part.filter(pl.col("recogniser") == recognisers[col]), colours, markers)
            real = real_metric_value(tables["real_retrieval"], dataset, recognisers[col])
            if real is not None:
                ax.axhline(real, color="0.4", linestyle="--", linewidth=1)
            ax.set_title(f"{dataset} · {recognisers[col]}", fontsize=9)
            ax.set_xlabel(label(metric), fontsize=8)
            ax.set_ylabel("Rank-1 (%)", fontsize=8)
            ax.tick_params(labelsize=7)
            rho = corr.filter(
                (pl.col("dataset") == dataset) & (pl.col("recogniser") == recognisers[col]) & (pl.col("level") == "cell")
                & (pl.col("task") == "all") & (pl.col("visual_metric") == metric) & (pl.col("biometric_metric") == "Rank-1")
            )  # fmt: skip
            if (
                not rho.is_empty() and rho.get_column("rho")[0] is not None
            ):  # in the title: never over a point
                ax.set_title(
                    f"{dataset} · {recognisers[col]} · ρ = {rho.get_column('rho')[0]:+.2f}", fontsize=9
                )
    fig.legend(
        handles=_legend_handles(colours, markers, real_line=True),
        loc="outside right upper",
        fontsize=8,
        frameon=False,
    )
    return fig, ""


def _scatter_panel(
    ax: Any, part: pl.DataFrame, colours: Mapping[str, Any], markers: Mapping[str, str]
) -> None:
    """Cell means with CI whiskers: one line collection for all whiskers and one scatter call per
    scenario (marker), so a panel stays a handful of artists however many cells it has."""
    from matplotlib.collections import LineCollection

    segments, segment_colours = [], []
    for r in part.iter_rows(named=True):
        x, y = r["v_mean"], r["b_mean"]
        (x_lo, x_hi), (y_lo, y_hi) = (
            _asymmetric(x, r["v_low"], r["v_high"]),
            _asymmetric(y, r["b_low"], r["b_high"]),
        )
        segments += [[(x - x_lo, y), (x + x_hi, y)], [(x, y - y_lo), (x, y + y_hi)]]
        segment_colours += [colours[r["model"]]] * 2
    ax.add_collection(LineCollection(segments, colors=segment_colours, alpha=0.35, linewidths=0.8))
    for (scenario,), group in part.group_by(["scenario"], maintain_order=True):
        ax.scatter(
            group.get_column("v_mean").to_numpy(), group.get_column("b_mean").to_numpy(),
            color=[colours[m] for m in group.get_column("model")], marker=markers[scenario],
            s=30, edgecolors="black", linewidths=0.4, zorder=3,
        )  # fmt: skip
    ax.autoscale_view()
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)


def _legend_handles(
    colours: Mapping[str, Any], markers: Mapping[str, str], *, real_line: bool = False
) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=m) for m, c in colours.items()]
    handles += [
        Line2D([], [], marker=mk, linestyle="", markerfacecolor="white", markeredgecolor="black", label=s)
        for s, mk in markers.items()
    ]
    if real_line:
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="real probes"))
    return handles


def bars_figure(tables: Tables) -> tuple[Any | None, str]:
    """Per dataset: SSIM, PSNR, LPIPS and Rank-1 per recogniser; bars = models × scenarios with CI."""
    visual, bio = tables["visual"], tables["biometric"]
    panels: list[tuple[str, str, pl.DataFrame, str | None]] = []  # (dataset, title, rows, recogniser)
    models: dict[str, list[str]] = {}  # same x positions in every panel of a dataset
    for dataset in ordered_names([*unique_values(visual, "dataset"), *unique_values(bio, "dataset")]):
        models[dataset] = model_order(
            visual.filter(pl.col("dataset") == dataset), bio.filter(pl.col("dataset") == dataset)
        )
        for metric in VISUAL:
            rows = visual.filter(
                (pl.col("dataset") == dataset) & (pl.col("metric") == metric) & pl.col("mean").is_not_null()
            )
            if not rows.is_empty():
                panels.append((dataset, label(metric), rows, None))
        rank = bio.filter(
            (pl.col("dataset") == dataset)
            & (pl.col("identity") == "driving")
            & (pl.col("metric") == "Rank-1")
        )
        for recogniser in unique_values(rank, "recogniser"):
            panels.append(
                (
                    dataset,
                    f"Rank-1 (%) · {recogniser}",
                    rank.filter(pl.col("recogniser") == recogniser),
                    recogniser,
                )
            )
    if not panels:
        return (
            None,
            f"no visual or Rank-1 values ({tables.why_empty('visual')}; {tables.why_empty('biometric')})",
        )
    scenarios = scenario_order(*(p[2] for p in panels))
    _, scenario_colours = scenario_styles(scenarios)
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.6 * n_cols + 1.6, 2.9 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, title, rows, recogniser) in zip(axes, panels, strict=False):
        _bar_panel(ax, rows, models[dataset], scenarios, scenario_colours)
        ax.set_title(f"{dataset} · {title}", fontsize=9)
        if recogniser is not None:
            real = real_metric_value(tables["real_retrieval"], dataset, recogniser)
            if real is not None:
                ax.axhline(real, color="0.3", linestyle="--", linewidth=1)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    from matplotlib.patches import Patch

    handles = [Patch(color=scenario_colours[s], label=s) for s in scenarios]
    fig.legend(
        handles=handles,
        loc="outside right upper",
        fontsize=8,
        frameon=False,
        title="scenario",
        title_fontsize=8,
    )
    return fig, ""


def _bar_panel(
    ax: Any, rows: pl.DataFrame, models: Sequence[str], scenarios: Sequence[str], colours: Mapping[str, Any]
) -> None:
    width = 0.8 / max(len(scenarios), 1)
    for j, scenario in enumerate(scenarios):
        xs, heights, errors = [], [], []
        for i, model in enumerate(models):
            cell = rows.filter((pl.col("model") == model) & (pl.col("scenario") == scenario))
            if cell.is_empty() or cell.get_column("mean")[0] is None:
                continue
            r = cell.row(0, named=True)
            xs.append(i - 0.4 + width * (j + 0.5))
            heights.append(r["mean"])
            errors.append(_asymmetric(r["mean"], r["ci_low"], r["ci_high"]))
        if xs:
            ax.bar(
                xs,
                heights,
                width=width,
                color=colours[scenario],
                yerr=np.array(errors).T,
                capsize=2,
                error_kw={"linewidth": 0.8},
            )
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def diagnostics_figure(tables: Tables) -> tuple[Any | None, str]:
    """Per dataset and diagnostic: box plots of the per-video values per model (scenarios pooled)."""
    videos = tables["videos"].filter(pl.col("diagnostics_error").is_null())
    panels = [
        (d, m, videos.filter((pl.col("dataset") == d) & pl.col(m).is_not_null()))
        for d in unique_values(videos, "dataset")
        for m in DIAGNOSTICS
    ]
    panels = [p for p in panels if not p[2].is_empty()]
    if not panels:
        return None, f"no diagnostic values ({tables.why_empty('videos')})"
    colours = model_colours(model_order(videos))
    n_cols = min(5, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.0 * n_cols, 2.8 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, metric, rows) in zip(axes, panels, strict=False):
        models = model_order(rows)
        data = [rows.filter(pl.col("model") == m).get_column(metric).to_numpy() for m in models]
        boxes = ax.boxplot(data, patch_artist=True, widths=0.6, flierprops={"markersize": 2})
        for patch, model in zip(boxes["boxes"], models, strict=True):
            patch.set_facecolor(colours[model])
            patch.set_alpha(0.7)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{dataset} · {label(metric)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig, ""


def correlations_figure(tables: Tables) -> tuple[Any | None, str]:
    """Heat maps of Spearman ρ (all tasks): per dataset, cell level and video level side by side."""
    corr = tables["correlations"].filter(pl.col("task") == "all")
    if corr.is_empty():
        return None, tables.why_empty("correlations")
    datasets = unique_values(corr, "dataset")
    levels = (("cell", RANK_METRICS), ("video", VIDEO_BIOMETRIC))
    widest = max(len(unique_values(corr.filter(pl.col("dataset") == d), "recogniser")) * 3 for d in datasets)
    fig = figure(max(2 * (0.8 * widest + 1.6), 7), 2.4 * len(datasets) + 0.4)
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    image = None
    for row, dataset in enumerate(datasets):
        part = corr.filter(pl.col("dataset") == dataset)
        recognisers = unique_values(part, "recogniser")
        for col, (level, metrics) in enumerate(levels):
            ax = axes[row][col]
            columns = [(r, m) for r in recognisers for m in metrics]
            grid = np.full((len(VISUAL), len(columns)), np.nan)
            for r in part.filter(pl.col("level") == level).iter_rows(named=True):
                if r["rho"] is not None and (r["recogniser"], r["biometric_metric"]) in columns:
                    grid[
                        VISUAL.index(r["visual_metric"]),
                        columns.index((r["recogniser"], r["biometric_metric"])),
                    ] = r["rho"]
            image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                ax.text(
                    j,
                    i,
                    MISSING if np.isnan(value) else f"{value:+.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
            ax.set_yticks(range(len(VISUAL)), [label(v).split(" ")[0] for v in VISUAL], fontsize=7)
            ax.set_xticks(range(len(columns)), [f"{r}\n{m}" for r, m in columns], fontsize=6)
            ax.set_title(f"{dataset} · per {level}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="Spearman ρ")
    return fig, ""


def guidance_figure(tables: Tables) -> tuple[Any | None, str]:
    """Mean paired difference dense − sparse with 95 % CI, one panel per quantity, rows = scenarios."""
    gd = tables["guidance_density"]
    if gd.is_empty():
        notes = tables["notes"].filter(pl.col("section") == "guidance_density").get_column("note").to_list()
        return None, "; ".join(notes) or tables.why_empty("guidance_density")
    keep = pl.col("recogniser").is_null() | pl.col("quantity").is_in(["Rank-1", "mAP"])
    panels = gd.filter(keep).select("dataset", "quantity", "recogniser").unique(maintain_order=True).rows()
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.2 * n_cols, 2.4 * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, quantity, recogniser) in zip(axes, panels, strict=False):
        rows = gd.filter((pl.col("dataset") == dataset) & (pl.col("quantity") == quantity))
        rows = rows.filter(
            pl.col("recogniser").is_null() if recogniser is None else pl.col("recogniser") == recogniser
        )
        labels = [
            f"{r['scenario']}" if r["scenario"] == "all" else f"{r['task']}/{r['scenario']}"
            for r in rows.iter_rows(named=True)
        ]
        for y, r in enumerate(rows.iter_rows(named=True)):
            err = np.array(_asymmetric(r["mean_diff"], r["ci_low"], r["ci_high"]))[:, None]
            ax.errorbar(
                r["mean_diff"],
                y,
                xerr=err,
                fmt="o",
                color="C0" if r["scenario"] == "all" else "C7",
                capsize=2,
                markersize=4,
            )
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(
            f"{dataset} · {label(quantity)}" + (f" · {recogniser}" if recogniser else ""), fontsize=9
        )
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        "posewarp-dense − posewarp-sparse (paired by job), mean and 95 % CI over identities", fontsize=9
    )
    return fig, ""
