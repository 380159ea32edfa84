"""Stage "report": one self-contained HTML file with the study's tables, plots and frame strips.

:func:`build_report` reads the tables that :func:`pipeline.aggregate.run_aggregate` wrote (each
validated against its contract) and writes one HTML file with inline CSS and every plot as a
base64 PNG (matplotlib, Agg canvas, no pyplot state), so the file can be mailed or archived alone.
Optionally it also writes each plot as a PNG into ``plots_dir`` under a fixed name
(:data:`PLOT_NAMES`), so a Snakemake rule can declare them as outputs marked for
``snakemake --report`` (a category with nothing to show gets a PNG that says why).

Sections (:data:`SECTIONS`): a summary computed from the numbers, the visual, biometric, identity-
transfer and diagnostics tables (mean and identity-bootstrap 95 % CI), per-model bars with CIs, the
visual-vs-biometric scatter (one point per cell), the Spearman heat maps, the guidance-density
comparison, frame strips (real driving frames above generated ones, best and worst case of a
metric), the real-probe baseline, failures and notes. A missing, empty or unreadable table makes its
section say so; it never stops the report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.aggregate import (
    CONTROLS,
    DIAGNOSTICS,
    HIGHER_IS_BETTER,
    KEYS,
    MODEL_ORDER,
    OUTPUTS,
    OVERALL_CONDITIONS,
    RANK_METRICS,
    SCENARIO_ORDER,
    VIDEO_BIOMETRIC,
    VISUAL,
)
from pipeline.contracts import MANIFEST, ContractError, atomic_path, read_frame

log = logging.getLogger(__name__)

DEFAULT_TITLE = "Gait fidelity of generated walking videos"
SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "visual": "Visual fidelity",
    "biometric": "Biometric fidelity",
    "transfer": "Identity transfer: driving vs reference identity",
    "bars": "Per-model comparison with 95 % CIs",
    "scatter": "Visual vs biometric",
    "correlations": "Are visual metrics a proxy? Spearman correlations",
    "diagnostics": "Diagnostics",
    "guidance": "Guidance density: posewarp sparse vs dense",
    "strips": "Frame strips: real vs generated",
    "real": "Real-probe baseline",
    "notes": "Failures and notes",
}
# Shown (before the real-probe baseline) only when the report is given GaitCrafter results.
GAITCRAFTER_SECTION = ("gaitcrafter", "GaitCrafter: sample quality, novel identities, augmentation")
PLOT_NAMES = ("visual_vs_biometric", "bars", "diagnostics", "correlations", "guidance_density", "strips")
LABELS = {
    "ssim": "SSIM", "psnr": "PSNR (dB)", "lpips": "LPIPS",
    "flow_divergence": "flow divergence", "thickening_index": "thickening index", "foot_sliding": "foot sliding",
    "arm_swing_error": "arm-swing error", "cadence_error": "cadence error", "RR": "RR", "AP": "AP", "hit@1": "hit@1",
}  # fmt: skip
DECIMALS = {
    "ssim": 3, "lpips": 3, "psnr": 2, "RR": 3, "AP": 3, "hit@1": 3, "driving_rank": 0, **dict.fromkeys(RANK_METRICS, 1)
}  # fmt: skip
PERCENT_DECIMALS = 1
DPI = 100
FRAMES_PER_STRIP = 6
STRIP_HEIGHT = 128  # pixels of one frame in a strip
MISSING = "–"


def label(name: str) -> str:
    return LABELS.get(name, name)


def decimals(name: str) -> int:
    return DECIMALS.get(name, 3)


def fmt(value: float | None, digits: int) -> str:
    """A number as the report prints it (``–`` for null/NaN); tests format table values the same way."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Loading the aggregated tables


@dataclass
class Tables:
    """The aggregated tables of one folder; a missing or unreadable one is empty with a reason."""

    frames: dict[str, pl.DataFrame]
    problems: dict[str, str]

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.frames[name]

    def why_empty(self, name: str) -> str:
        return self.problems.get(name, f"the {name} table has no rows")


def load_tables(tables_dir: str | os.PathLike) -> Tables:
    """Read every table of :data:`pipeline.aggregate.OUTPUTS` from ``tables_dir`` (validated)."""
    frames, problems = {}, {}
    for name, contract in OUTPUTS.items():
        path = Path(tables_dir) / f"{name}.parquet"
        try:
            frames[name] = read_frame(path, contract)
        except FileNotFoundError:
            problems[name] = f"{path} not found"
        except (ContractError, OSError) as err:
            problems[name] = f"{path} unreadable: {err}"
        if name in problems:
            frames[name] = pl.from_arrow(contract.empty())
    return Tables(frames, problems)


# ---------------------------------------------------------------------------------------------
# Ordering helpers


def _ordered(values: Iterable[str | None], known: Sequence[str] = ()) -> list[str]:
    present = {v for v in values if v is not None}
    first = [v for v in known if v in present]
    return first + sorted(present - set(first))


def _models(*frames: pl.DataFrame) -> list[str]:
    return _ordered(
        (m for f in frames if "model" in f.columns for m in f.get_column("model").to_list()), MODEL_ORDER
    )


def _scenarios(*frames: pl.DataFrame) -> list[str]:
    return _ordered(
        (s for f in frames if "scenario" in f.columns for s in f.get_column("scenario").to_list()),
        SCENARIO_ORDER,
    )


def _unique(df: pl.DataFrame, column: str) -> list[str]:
    return _ordered(df.get_column(column).to_list()) if column in df.columns else []


def _model_colours(models: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _scenario_styles(scenarios: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]]:
    from matplotlib import colormaps

    cmap = colormaps["Set2"]
    return (
        {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(scenarios)},
        {s: cmap(i % 8) for i, s in enumerate(scenarios)},
    )


# ---------------------------------------------------------------------------------------------
# Summary computed from the numbers


def _real_value(real: pl.DataFrame, dataset: str, recogniser: str, metric: str = "Rank-1") -> float | None:
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
    scenarios = _scenarios(visual)
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
        real = _real_value(tables["real_retrieval"], dataset, row["recogniser"])
        if real is not None:
            reals.append(f"{fmt(real, PERCENT_DECIMALS)} % with {row['recogniser']}")
    text += f" while its Rank-1 of the driving identity is {', '.join(ranks)}"
    return text + (f" (real probes: {', '.join(reals)})." if reals else " (no real-probe baseline).")


def _p(value: float | None) -> str:
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
        f"ρ = {r['rho']:+.2f} with {r['recogniser']} (n = {r['n']}, p = {_p(r['p_value'])})"
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
    for dataset in _ordered([*_unique(visual, "dataset"), *_unique(bio, "dataset")]):
        headline = _headline(dataset, tables, controls)
        sentences.append(
            headline
            or f"{dataset}: no generator (non-control model) has restoration results with visual metrics yet."
        )
        sentences += _correlation_sentences(dataset, tables["correlations"])
    return sentences


def _counts_sentence(tables: Tables) -> str | None:
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
        f"{n_videos} generated video(s) ({failed} with an error) from {len(_unique(source, 'model'))} model(s), "
        f"{len(_unique(source, 'scenario'))} scenario(s), {len(_unique(source, 'dataset'))} dataset(s); "
        f"{len(_unique(probes, 'recogniser'))} recogniser(s)."
    )


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
    models, scenarios = _models(cells), _scenarios(cells)
    colours, (markers, _) = _model_colours(models), _scenario_styles(scenarios)
    blocks = [
        (d, m)
        for d in _unique(cells, "dataset")
        for m in VISUAL
        if not cells.filter((pl.col("dataset") == d) & (pl.col("metric") == m)).is_empty()
    ]
    n_cols = max(len(_unique(cells.filter(pl.col("dataset") == d), "recogniser")) for d, _ in blocks)
    fig = figure(3.4 * n_cols + 2.0, 2.8 * len(blocks))
    axes = fig.subplots(len(blocks), n_cols, squeeze=False)
    corr = tables["correlations"]
    for row, (dataset, metric) in enumerate(blocks):
        part = cells.filter((pl.col("dataset") == dataset) & (pl.col("metric") == metric))
        recognisers = _unique(part, "recogniser")
        for col in range(n_cols):
            ax = axes[row][col]
            if col >= len(recognisers):
                ax.set_visible(False)
                continue
            _scatter_panel(ax, part.filter(pl.col("recogniser") == recognisers[col]), colours, markers)
            real = _real_value(tables["real_retrieval"], dataset, recognisers[col])
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
    for dataset in _ordered([*_unique(visual, "dataset"), *_unique(bio, "dataset")]):
        models[dataset] = _models(
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
        for recogniser in _unique(rank, "recogniser"):
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
    scenarios = _scenarios(*(p[2] for p in panels))
    _, scenario_colours = _scenario_styles(scenarios)
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.6 * n_cols + 1.6, 2.9 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, title, rows, recogniser) in zip(axes, panels, strict=False):
        _bar_panel(ax, rows, models[dataset], scenarios, scenario_colours)
        ax.set_title(f"{dataset} · {title}", fontsize=9)
        if recogniser is not None:
            real = _real_value(tables["real_retrieval"], dataset, recogniser)
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
        for d in _unique(videos, "dataset")
        for m in DIAGNOSTICS
    ]
    panels = [p for p in panels if not p[2].is_empty()]
    if not panels:
        return None, f"no diagnostic values ({tables.why_empty('videos')})"
    colours = _model_colours(_models(videos))
    n_cols = min(5, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.0 * n_cols, 2.8 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (dataset, metric, rows) in zip(axes, panels, strict=False):
        models = _models(rows)
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
    datasets = _unique(corr, "dataset")
    levels = (("cell", RANK_METRICS), ("video", VIDEO_BIOMETRIC))
    widest = max(len(_unique(corr.filter(pl.col("dataset") == d), "recogniser")) * 3 for d in datasets)
    fig = figure(max(2 * (0.8 * widest + 1.6), 7), 2.4 * len(datasets) + 0.4)
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    image = None
    for row, dataset in enumerate(datasets):
        part = corr.filter(pl.col("dataset") == dataset)
        recognisers = _unique(part, "recogniser")
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


# ---------------------------------------------------------------------------------------------
# Frame strips


@dataclass(frozen=True)
class Strip:
    """A few frames of a real driving video (top) above the generated video made from it (bottom)."""

    title: str
    real: str | os.PathLike
    generated: str | os.PathLike


def sample_frames(path: str | os.PathLike, count: int) -> np.ndarray:
    """``count`` frames evenly spread over a video, a frame folder or an RGB pkl: [count, H, W, 3] uint8."""
    from pipeline.io.video import list_images, probe_video, read_frames, read_image

    path = Path(path)

    def spread(n: int) -> list[int]:
        if n < 1:
            raise ValueError(f"{path}: no frames")
        return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(count, n))})

    if path.is_dir():
        images = list_images(path)
        return np.stack([read_image(images[i]) for i in spread(len(images))])
    if path.suffix == ".pkl":
        from pipeline.io.safe_pickle import load_array

        frames = load_array(path)
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.transpose(0, 2, 3, 1)  # OpenGait stores (T, 3, H, W)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{path}: not an RGB frame array (shape {frames.shape})")
        return np.ascontiguousarray(frames[spread(len(frames))].astype(np.uint8))
    return read_frames(path, spread(probe_video(path).frame_count))


def _resize_height(frame: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    width = width or max(1, round(w * height / h))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def strip_image(strip: Strip, count: int = FRAMES_PER_STRIP, height: int = STRIP_HEIGHT) -> np.ndarray:
    """[2·height + 4, W, 3] uint8: sampled real frames on top, generated frames (resized to the real
    frames' size, same relative time positions) below, separated by a white band."""
    real, generated = sample_frames(strip.real, count), sample_frames(strip.generated, count)
    k = min(len(real), len(generated))  # a video shorter than ``count`` gives fewer frames

    def at_same_times(frames: np.ndarray) -> np.ndarray:
        return frames[np.linspace(0, len(frames) - 1, k).round().astype(int)]

    top = [_resize_height(f, height) for f in at_same_times(real)]
    bottom = [
        _resize_height(f, height, t.shape[1]) for f, t in zip(at_same_times(generated), top, strict=True)
    ]
    gap = np.full((height, 2, 3), 255, np.uint8)

    def row(frames: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([x for f in frames for x in (f, gap)][:-1], axis=1)

    upper, lower = row(top), row(bottom)
    return np.concatenate([upper, np.full((4, upper.shape[1], 3), 255, np.uint8), lower], axis=0)


def strips_figure(images: Sequence[tuple[str, np.ndarray]]) -> Any:
    # each row is ~1.9 in of image under a title; the width follows the widest strip's aspect ratio
    aspect = max(img.shape[1] / img.shape[0] for _, img in images)
    fig = figure(min(14.0, 1.9 * aspect + 1.0), 2.3 * len(images))
    axes = fig.subplots(len(images), 1, squeeze=False).ravel()
    for ax, (title, img) in zip(axes, images, strict=True):
        ax.imshow(img)
        half = (img.shape[0] - 4) / 2
        ax.set_yticks([half / 2, half + 4 + half / 2], ["real", "generated"], fontsize=8)
        ax.set_xticks([])
        ax.set_title(title, fontsize=8, loc="left")
    return fig


LOWER_IS_BETTER = {"lpips", "driving_rank", *DIAGNOSTICS}


def _sorted_groups(df: pl.DataFrame, by: Sequence[str]) -> list[tuple[tuple, pl.DataFrame]]:
    """``df`` split by ``by`` in study order (datasets alphabetical, models in MODEL_ORDER)."""
    if df.is_empty():
        return []
    order = {m: i for i, m in enumerate(_models(df))}
    groups = df.group_by(list(by), maintain_order=True)
    return sorted(groups, key=lambda kv: (kv[0][0], order.get(kv[0][1], 0) if len(kv[0]) > 1 else 0))


def _media(row: Mapping[str, Any]) -> str | None:
    return row["path_video"] or row["path_frames"] or row["path_rgb"]


def _generated_videos(manifests: Iterable[str | os.PathLike]) -> dict[tuple, tuple[str | None, str | None]]:
    """(dataset, model, job id) → (driving sequence, generated media) from generation manifests."""
    index = {}
    for manifest in manifests:
        for row in read_frame(manifest, MANIFEST).filter(pl.col("error").is_null()).iter_rows(named=True):
            attributes = json.loads(row["attributes"] or "{}")
            key = (row["dataset"], attributes.get("model"), row["sequence_id"])
            index[key] = (attributes.get("driving_sequence"), _media(row))
    return index


def _real_videos(manifests: Iterable[str | os.PathLike]) -> dict[tuple[str, str], str | None]:
    """(dataset, sequence id) → media of the real sequences."""
    return {
        (row["dataset"], row["sequence_id"]): _media(row)
        for manifest in manifests
        for row in read_frame(manifest, MANIFEST).iter_rows(named=True)
    }


@dataclass
class StripChooser:
    """Picks the best and worst generated video by ``metric`` (per model or overall) and finds the
    generated video and its real driving video through the manifests.

    ``metric``: a column of the ``videos`` table (ssim, psnr, lpips or a diagnostic) or, with
    ``recogniser`` (default: the first one), ``driving_rank``, ``RR`` or ``AP`` of the ``probes`` table.
    Generated manifests (``manifest`` contract, one per generation shard) give each job's video and,
    in ``attributes``, its model and driving sequence; real manifests give the driving sequence's
    video. Relative paths are resolved against ``root`` (default: the working directory).
    """

    generated_manifests: Sequence[str | os.PathLike]
    real_manifests: Sequence[str | os.PathLike]
    metric: str = "ssim"
    recogniser: str | None = None
    per_model: bool = True
    root: str | os.PathLike | None = None
    notes: list[str] = field(default_factory=list)

    def _candidates(self, tables: Tables) -> pl.DataFrame:
        if self.metric in ("driving_rank", "RR", "AP"):
            probes = tables["probes"].filter(pl.col("error").is_null())
            recogniser = self.recogniser or next(iter(_unique(probes, "recogniser")), None)
            return probes.filter(pl.col("recogniser") == recogniser).drop_nulls(self.metric)
        videos = tables["videos"]
        if self.metric not in videos.columns:
            raise ValueError(
                f"strip metric '{self.metric}' is neither a videos column nor driving_rank/RR/AP"
            )
        return videos.filter(pl.col("visual_error").is_null()).drop_nulls(self.metric)

    def _picks(self, candidates: pl.DataFrame) -> list[tuple[str, dict[str, Any]]]:
        """("best" | "worst", row) per dataset and model (or per dataset when not ``per_model``)."""
        higher = self.metric not in LOWER_IS_BETTER
        by = ["dataset", "model"] if self.per_model else ["dataset"]
        picks = []
        for _, group in _sorted_groups(candidates, by):
            ranked = group.sort([self.metric, "job_id"], descending=[higher, False])
            picks.append(("best", ranked.row(0, named=True)))
            if ranked.height > 1:
                picks.append(("worst", ranked.row(-1, named=True)))
        return picks

    def _resolve(self, path: str | None) -> Path:
        p = Path(path or "")
        return p if p.is_absolute() else Path(self.root or Path.cwd()) / p

    def choose(self, tables: Tables) -> list[Strip]:
        """Strips of the best and worst videos among those whose generated and real media are known."""
        generated, real = _generated_videos(self.generated_manifests), _real_videos(self.real_manifests)
        playable = {
            key for key, (driving, media) in generated.items() if media and real.get((key[0], driving))
        }
        candidates = self._candidates(tables)
        keys = list(candidates.select("dataset", "model", "job_id").iter_rows())
        found = candidates.filter(pl.Series([k in playable for k in keys], dtype=pl.Boolean))
        if found.height < candidates.height:
            self.notes.append(
                f"{candidates.height - found.height} of {candidates.height} video(s) with a {self.metric} value "
                "have no generated or real video in the manifests: not eligible for a strip"
            )
        strips = []
        for kind, row in self._picks(found):
            driving, media = generated[(row["dataset"], row["model"], row["job_id"])]
            value = fmt(row[self.metric], decimals(self.metric))
            title = (
                f"{row['model']} · {kind} {label(self.metric)} = {value} · {row['dataset']} {row['job_id']}"
            )
            strips.append(Strip(title, self._resolve(real[(row["dataset"], driving)]), self._resolve(media)))
        return strips


# ---------------------------------------------------------------------------------------------
# HTML


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1280px;padding:0 24px 48px;color:#1d2430;line-height:1.45}
h1{font-size:1.6em;margin:24px 0 4px}h2{font-size:1.25em;margin-top:36px;border-bottom:2px solid #dde3ea;
padding-bottom:4px}nav{font-size:.85em;margin:8px 0 16px}nav a{margin-right:12px;color:#2457a6;text-decoration:none}
.summary{background:#f3f6fa;border-left:4px solid #2457a6;padding:10px 16px;margin:12px 0}
.summary li{margin:4px 0}.meta{color:#5b6573;font-size:.85em}
table{border-collapse:collapse;font-size:.8em;margin:8px 0 16px;width:auto}
th,td{padding:3px 8px;border-bottom:1px solid #e3e7ec;text-align:left;vertical-align:top}
th{background:#eef2f6;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}.ci{color:#7a8491;font-size:.85em}
.empty{color:#8a5a00;background:#fff7e6;padding:6px 10px;border-left:3px solid #e0a020}
figure{margin:10px 0 20px}figure img{max-width:100%;height:auto;border:1px solid #e3e7ec}
figcaption{font-size:.8em;color:#5b6573;margin-top:4px}details{margin:6px 0 14px}summary{cursor:pointer;color:#2457a6}
.scroll{overflow-x:auto}
"""


def esc(value: object) -> str:
    return html.escape(MISSING if value is None else str(value))


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """Cells are HTML already (escape text with :func:`esc`); ``numeric`` right-aligns a column."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(r, numeric, strict=True)
        )
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def ci_cell(row: Mapping[str, Any] | None, digits: int) -> str:
    if row is None or row.get("mean") is None:
        return MISSING
    ci = (
        ""
        if row.get("ci_low") is None
        else f' <span class="ci">[{fmt(row["ci_low"], digits)}, {fmt(row["ci_high"], digits)}]</span>'
    )
    return fmt(row["mean"], digits) + ci


def _wide(df: pl.DataFrame, keys: Sequence[str], pivot: str) -> list[tuple[tuple, dict[str, dict[str, Any]]]]:
    """Group long rows by ``keys`` (first-seen order) into {value of ``pivot``: row}."""
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in df.iter_rows(named=True):
        groups.setdefault(tuple(row[k] for k in keys), {})[row[pivot]] = row
    return list(groups.items())


def stats_table(
    df: pl.DataFrame, keys: Sequence[str], metrics: Sequence[str], extra: Sequence[str] = ()
) -> str:
    """A wide table: one row per ``keys``, per metric 'mean [CI]', then n videos, identities, failed."""
    metrics = [m for m in metrics if not df.filter(pl.col("metric") == m).is_empty()]
    header = [*keys, *[label(m) for m in metrics], "n", "identities", "failed", *extra]
    rows = []
    for key, by_metric in _wide(df, keys, "metric"):
        any_row = next(iter(by_metric.values()))
        digits = [PERCENT_DECIMALS if m in RANK_METRICS or "ranked" in m else decimals(m) for m in metrics]
        rows.append([
            *[esc(k) for k in key], *[ci_cell(by_metric.get(m), d) for m, d in zip(metrics, digits, strict=True)],
            esc(max(r["n"] for r in by_metric.values())), esc(any_row["n_identities"]), esc(any_row["n_failed"]),
            *[esc(any_row[e]) for e in extra],
        ])  # fmt: skip
    return html_table(header, rows, [False] * len(keys) + [True] * (len(header) - len(keys)))


def empty(message: str) -> str:
    return f'<p class="empty">{esc(message)}</p>'


def img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}"><figcaption>{esc(caption)}</figcaption></figure>'


@dataclass
class Plots:
    """PNG bytes per plot name, or why there is none."""

    png: dict[str, bytes] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, built: tuple[Any | None, str]) -> None:
        fig, reason = built
        if fig is None:
            self.why[name] = reason
        else:
            self.png[name] = png_bytes(fig)

    def html(self, name: str, caption: str) -> str:
        return (
            img(self.png[name], caption)
            if name in self.png
            else empty(f"No plot: {self.why.get(name, 'no data')}.")
        )


def _all_null_notes(t: Tables) -> list[str]:
    """'<METRIC> is null for every video: <reason from the notes>' for visual metrics without any value."""
    visual, notes = t["visual"], t["notes"].filter(pl.col("section") == "visual")
    lines = []
    for metric in VISUAL:
        if not visual.filter((pl.col("metric") == metric) & pl.col("mean").is_not_null()).is_empty():
            continue
        reasons = [
            n for n in notes.get_column("note").to_list()
            if n.startswith((f"{metric} is null:", f"{metric}: null"))
        ]  # fmt: skip
        why = reasons[0] if reasons else "no reason recorded in the notes"
        lines.append(f"{label(metric).split(' ')[0]} is null for every video ({why}).")
    return lines


def _visual_section(t: Tables, plots: Plots) -> str:
    if t["visual"].is_empty():
        return empty(f"No visual metrics: {t.why_empty('visual')}.")
    return (
        "<p>Masked SSIM, PSNR and LPIPS of each generated video against its driving video; mean over videos "
        "and 95 % CI from a bootstrap over identities (driving subjects).</p>"
        + "".join(empty(line) for line in _all_null_notes(t))
        + stats_table(t["visual"], KEYS, VISUAL)
    )


def not_evaluated(probes: pl.DataFrame) -> list[str]:
    """'dataset · model × recogniser: none of N videos evaluated: <most common reason>' for every model and
    recogniser whose probe rows all carry an error (e.g. a skeleton recogniser on silhouette output)."""
    if probes.is_empty():
        return []
    lines = []
    for (dataset, model, recogniser), part in _sorted_groups(probes, ["dataset", "model", "recogniser"]):
        errors = [e for e in part.get_column("error").to_list() if e is not None]
        if part.height and len(errors) == part.height:
            reason = max(set(errors), key=errors.count)
            lines.append(
                f"{dataset} · {model} × {recogniser}: none of {part.height} videos evaluated ({reason})"
            )
    return lines


def _biometric_section(t: Tables, plots: Plots) -> str:
    bio = t["biometric"].filter(pl.col("identity") == "driving")
    if bio.is_empty():
        return empty(f"No biometric results: {t.why_empty('biometric')}.")
    skipped = not_evaluated(t["probes"])
    notes = (
        "<p>Not evaluated (null in the table, with the reason):</p><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in skipped)
        + "</ul>"
        if skipped
        else ""
    )
    return (
        "<p>Generated probes ranked against the real gallery, per recogniser: Rank-1 / Rank-5 / mAP (%) of the "
        "driving identity (whose motion the video carries); a probe whose identity has no gallery sequence counts "
        "as a miss.</p>"
        + stats_table(bio, [*KEYS, "recogniser"], RANK_METRICS, extra=["n_no_gallery"])
        + notes
    )


def _transfer_section(t: Tables, plots: Plots) -> str:
    bio = t["biometric"].filter(pl.col("task") == "transfer")
    if bio.is_empty():
        return empty(f"No identity-transfer results: {t.why_empty('transfer')}.")
    keys = ["dataset", "model", "scenario", "recogniser"]
    shares = {k: v for k, v in _wide(t["transfer"], keys, "metric")}
    header = [
        *keys,
        "Rank-1 driving",
        "Rank-1 reference",
        "mAP driving",
        "mAP reference",
        "reference ranked above driving (%)",
        "n",
    ]
    rows = []
    for key, by_identity in _wide(
        bio.with_columns(pivot=pl.col("identity") + " " + pl.col("metric")), keys, "pivot"
    ):
        share = shares.get(key, {}).get("reference ranked above driving")
        cells = [
            ci_cell(by_identity.get(f"{i} {m}"), PERCENT_DECIMALS)
            for m in ("Rank-1", "mAP")
            for i in ("driving", "reference")
        ]
        rows.append(
            [
                *[esc(k) for k in key],
                *cells,
                ci_cell(share, PERCENT_DECIMALS),
                esc(next(iter(by_identity.values()))["n"]),
            ]
        )
    return (
        "<p>Transfer task: the motion is identity A's (driving), the appearance identity B's (reference). Which identity "
        "does the recogniser find?</p>" + html_table(header, rows, [False] * 4 + [True] * 6)
    )


def _bars_section(t: Tables, plots: Plots) -> str:
    return plots.html(
        "bars",
        "Per-model means with 95 % identity-bootstrap CIs, bars coloured by scenario; dashed: real-probe Rank-1.",
    )


def _scatter_section(t: Tables, plots: Plots) -> str:
    return plots.html(
        "visual_vs_biometric",
        "One point per cell (dataset × model × task × scenario): visual metric vs Rank-1 of the driving identity; "
        "colour = model, marker = scenario, whiskers = 95 % CIs, dashed = real probes; ρ = cell-level Spearman over "
        "the generators (control models left out).",
    )


def _correlations_section(t: Tables, plots: Plots) -> str:
    corr = t["correlations"]
    if corr.is_empty():
        return empty(f"No correlations: {t.why_empty('correlations')}.")
    header = ["dataset", "recogniser", "level", "task", "visual", "biometric", "ρ", "p", "n", "note"]
    rows = [
        [esc(r["dataset"]), esc(r["recogniser"]), esc(r["level"]), esc(r["task"]), esc(label(r["visual_metric"])),
         esc(r["biometric_metric"]), MISSING if r["rho"] is None else f"{r['rho']:+.2f}",
         _p(r["p_value"]), esc(r["n"]), esc(r["note"] or "")]
        for r in corr.iter_rows(named=True)
    ]  # fmt: skip
    return (
        plots.html("correlations", "Spearman ρ (all tasks) between each visual metric and each biometric quantity: "
                   "per cell (cell means) and per video (hit@1, reciprocal rank, AP of the driving identity).")
        + f"<details><summary>All correlations ({len(rows)} rows, per task too)</summary>"
        + html_table(header, rows, [False] * 6 + [True] * 3 + [False]) + "</details>"
    )  # fmt: skip


def _diagnostics_section(t: Tables, plots: Plots) -> str:
    diag = t["diagnostics"]
    table = (
        stats_table(diag, KEYS, DIAGNOSTICS)
        if not diag.is_empty()
        else empty(f"No diagnostics: {t.why_empty('diagnostics')}.")
    )
    return table + plots.html(
        "diagnostics",
        "Per-video diagnostics per model (scenarios pooled): box = quartiles, whiskers = 1.5 IQR.",
    )


def _guidance_section(t: Tables, plots: Plots) -> str:
    gd = t["guidance_density"]
    if gd.is_empty():
        notes = t["notes"].filter(pl.col("section") == "guidance_density").get_column("note").to_list()
        return empty(
            "; ".join(notes) or f"No guidance-density comparison: {t.why_empty('guidance_density')}."
        )
    pooled = gd.filter(pl.col("scenario") == "all")
    header = [
        "dataset",
        "quantity",
        "recogniser",
        "sparse",
        "dense",
        "dense − sparse [95 % CI]",
        "pairs",
        "identities",
    ]
    rows = []
    for r in pooled.iter_rows(named=True):
        digits = PERCENT_DECIMALS if r["quantity"] in RANK_METRICS else decimals(r["quantity"])
        diff = ci_cell({"mean": r["mean_diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}, digits)
        rows.append([esc(r["dataset"]), esc(label(r["quantity"])), esc(r["recogniser"] or ""), fmt(r["mean_sparse"], digits),
                     fmt(r["mean_dense"], digits), diff, esc(r["n_pairs"]), esc(r["n_identities"])])  # fmt: skip
    return (
        plots.html(
            "guidance_density",
            "Paired by job: posewarp-dense minus posewarp-sparse; all scenarios pooled (blue) and per scenario.",
        )
        + "<p>All scenarios pooled (per-scenario rows are in guidance_density.csv):</p>"
        + html_table(header, rows, [False] * 3 + [True] * 5)
    )


def _real_section(t: Tables, plots: Plots) -> str:
    real = t["real_retrieval"]
    if real.is_empty():
        return empty(f"No real-probe baseline: {t.why_empty('real_retrieval')}.")
    keys = ["dataset", "recogniser", "protocol", "condition"]
    metrics = _ordered(real.get_column("metric").to_list(), RANK_METRICS)
    rows = [
        [*[esc(k) for k in key], *[fmt(by.get(m, {}).get("value"), PERCENT_DECIMALS) for m in metrics]]
        for key, by in _wide(real, keys, "metric")
    ]
    return "<p>Real probes against the same gallery, no generation (percent).</p>" + html_table(
        [*keys, *metrics], rows, [False] * 4 + [True] * len(metrics)
    )


# ---------------------------------------------------------------------------------------------
# GaitCrafter (pipeline/gaitcrafter/stage.py writes these tables)

# Below these the samples are called poor in the report: person-like frames relative to the real
# frames' share, and how often a clip is closer (GEI IoU) to its own identity than to the others
# (0.5 = no identity signal).
POOR_PERSON_LIKE = 0.5
POOR_IDENTITY = 0.6
NOVELTY_STATISTICS = {
    "summary.fraction_captured_by_training": "novel samples nearer a training identity than their own identity",
    "summary.fraction_other_novel_closer": "novel samples nearer another novel identity than their own",
    "summary.own_nn.mean": "distance to the nearest sample of the same novel identity (mean)",
    "summary.training_nn.mean": "distance to the nearest training-identity clip (mean)",
    "summary.other_novel_nn.mean": "distance to the nearest sample of another novel identity (mean)",
    "summary.fraction_nearest_is_parent": "nearest training identity is one of the mixed parents",
    "real_baseline.fraction_other_closer": "baseline: real clips nearer another identity than their own",
}


@dataclass
class GaitCrafterTables:
    """One dataset's GaitCrafter results (``model.json`` and the three tables); missing ones say why."""

    dataset: str
    model: dict[str, Any] | None
    frames: dict[str, pl.DataFrame]
    problems: dict[str, str]


def load_gaitcrafter(paths: Mapping[str, Mapping[str, str]]) -> list[GaitCrafterTables]:
    from pipeline.gaitcrafter.stage import AUGMENTATION, NOVELTY, QUALITY

    contracts = {"quality": QUALITY, "novelty": NOVELTY, "augmentation": AUGMENTATION}
    out = []
    for dataset, files in paths.items():
        frames, problems, model = {}, {}, None
        if files.get("model"):
            try:
                model = json.loads(Path(files["model"]).read_text())
            except (OSError, json.JSONDecodeError) as err:
                problems["model"] = f"{files['model']} unreadable: {err}"
        for name, contract in contracts.items():
            if not files.get(name):
                problems[name] = "not configured"
                continue
            try:
                frames[name] = read_frame(files[name], contract)
            except FileNotFoundError:
                problems[name] = f"{files[name]} not found"
            except (ContractError, OSError) as err:
                problems[name] = f"{files[name]} unreadable: {err}"
        out.append(GaitCrafterTables(dataset, model, frames, problems))
    return out


def quality_verdict(quality: pl.DataFrame) -> str | None:
    """One sentence on whether the samples look like walkers of the right identity, with the numbers."""
    rows = {r["metric"]: r for r in quality.iter_rows(named=True)}
    person, identity = rows.get("person_like"), rows.get("fraction_same_beats_other_gei")
    if person is None or identity is None or person["generated"] is None:
        return None
    same, other = (
        rows.get("gei_iou_same", {}).get("generated"),
        rows.get("gei_iou_other", {}).get("generated"),
    )
    real_share = person["real"] or 0.0
    numbers = (
        f"{100 * person['generated']:.1f} % of generated frames are person-like (real frames: {100 * real_share:.1f} %); "
        f"GEI IoU with the own identity {fmt(same, 3)} vs other identities {fmt(other, 3)}, "
        f"own identity closer for {100 * (identity['generated'] or 0.0):.0f} % of clips (50 % = chance)"
    )
    poor_shape = person["generated"] < POOR_PERSON_LIKE * real_share
    poor_identity = (identity["generated"] or 0.0) < POOR_IDENTITY
    if poor_shape or poor_identity:
        what = " and ".join(
            w for w, bad in (("not person-shaped", poor_shape), ("carry no identity", poor_identity)) if bad
        )
        return (
            f"The samples are poor — they are {what}: {numbers}. The GaitCrafter numbers of this run (its sweep rows, "
            "novelty and augmentation) say nothing about GaitCrafter itself; train longer (preset full on a GPU)."
        )
    return f"Sample quality: {numbers}."


def _gaitcrafter_model_html(g: GaitCrafterTables) -> str:
    m = g.model
    if m is None:
        return empty(f"No model summary: {g.problems.get('model', 'model.json missing')}.")
    loss = f"{fmt(m.get('first_loss'), 4)} → {fmt(m.get('final_loss'), 4)}"
    return (
        f"<p>Preset <b>{esc(m.get('preset'))}</b>, {esc(m.get('parameters'))} parameters, trained {esc(m.get('step'))} "
        f"steps ({esc(m.get('seconds'))} s in this job, {esc(m.get('seconds_per_step'))} s/step; loss of the first / last "
        f"10 steps {esc(loss)}) on {esc(m.get('sequences'))} sequences: {len(m.get('train_identities', []))} train-split "
        f"identities and {len(m.get('enrolled_identities', []))} test identities enrolled with their gallery sequences "
        f"(enrol: {esc(m.get('enrol'))}), views {esc(', '.join(m.get('views', [])))}.</p>"
    )


def _gaitcrafter_quality_html(g: GaitCrafterTables) -> str:
    quality = g.frames.get("quality")
    if quality is None or quality.is_empty():
        return empty(f"No sample-quality numbers: {g.problems.get('quality', 'empty table')}.")
    verdict = quality_verdict(quality)
    rows = [
        [esc(r["metric"]), fmt(r["generated"], 3), fmt(r["real"], 3), esc(r["note"] or "")]
        for r in quality.iter_rows(named=True)
    ]
    return (
        (
            empty(verdict)
            if verdict and verdict.startswith("The samples are poor")
            else f"<p>{esc(verdict or '')}</p>"
        )
        + "<h4>Sample quality (every identity × view, normal clothing, no bag)</h4>"
        + html_table(["quantity", "generated", "real", "meaning"], rows, [False, True, True, False])
    )


def _gaitcrafter_novelty_html(g: GaitCrafterTables) -> str:
    novelty = g.frames.get("novelty")
    if novelty is None or novelty.is_empty():
        return empty(f"No novelty numbers: {g.problems.get('novelty', 'empty table')}.")
    values = {(r["comparison"], r["statistic"]): r["value"] for r in novelty.iter_rows(named=True)}
    rows = [
        [
            esc(meaning),
            fmt(values.get(("vs_generated_training", key)), 3),
            fmt(values.get(("vs_real_training", key)), 3),
        ]
        for key, meaning in NOVELTY_STATISTICS.items()
    ]
    run = {k: v for (c, k), v in values.items() if c == "run"}
    readings = novelty_readings(values)
    return (
        f"<h4>Novel identities</h4><p>{int(run.get('novel_identities', 0))} novel identities (convex mixes of "
        f"{int(run.get('parents', 0))} train-split identity tokens), {int(run.get('samples_per_identity', 0))} clips "
        "each, embedded with the dataset's trained DeepGaitV2 and compared with generated clips of the train "
        "identities (same generator) and with their real clips. Distinct identities need the first two shares "
        "near 0 and at most the real baseline.</p>"
        + html_table(
            ["statistic", "vs generated training identities", "vs real training clips"],
            rows,
            [False, True, True],
        )
        + "".join(f'<p class="meta">{esc(line)}</p>' for line in readings)
    )


def novelty_readings(values: Mapping[tuple[str, str], float | None]) -> list[str]:
    """What the novelty numbers say, computed from them (the caveats a reader would otherwise miss)."""
    lines = []
    gen_base = values.get(("vs_generated_training", "real_baseline.fraction_other_closer"))
    if gen_base is not None and gen_base >= 0.5:
        lines.append(
            f"Even the generated clips of the training identities are nearer another identity than their own in "
            f"{100 * gen_base:.0f} % of cases: the generator carries little identity, so a novel identity cannot be "
            "told apart from a training one either."
        )
    far = values.get(("vs_real_training", "summary.training_nn.mean"))
    own = values.get(("vs_real_training", "real_baseline.own_nn.mean"))
    if far is not None and own and far > 2 * own:
        lines.append(
            f"Generated clips lie far from every real clip (nearest real clip {far:.2f} vs {own:.2f} between real "
            "clips of one identity): their distinctness from the real identities is a domain gap, not novelty."
        )
    return lines


def _gaitcrafter_augmentation_html(g: GaitCrafterTables) -> str:
    table = g.frames.get("augmentation")
    if table is None or table.is_empty():
        return empty(f"No augmentation results: {g.problems.get('augmentation', 'empty table')}.")
    overall = table.filter(pl.col("condition").is_in(list(OVERALL_CONDITIONS)))
    conditions = [c for c in _unique(table, "condition") if c not in OVERALL_CONDITIONS]
    metrics = _ordered(overall.get_column("metric").to_list(), RANK_METRICS)
    by_variant = {v: {r["metric"]: r for r in part.iter_rows(named=True)} for (v,), part in
                  _sorted_groups(overall, ["variant"])}  # fmt: skip
    rank1 = {
        (r["variant"], r["condition"]): r["value"]
        for r in table.filter(pl.col("metric") == "Rank-1").iter_rows(named=True)
    }
    order = [v for v in table.get_column("variant").unique(maintain_order=True).to_list()]
    base = by_variant.get("real", {}).get("Rank-1", {}).get("value")
    rows = []
    for variant in order:
        cells = by_variant.get(variant, {})
        any_row = next(iter(cells.values()), None) or table.filter(pl.col("variant") == variant).row(
            0, named=True
        )
        r1 = cells.get("Rank-1", {}).get("value")
        delta = None if base is None or r1 is None or variant == "real" else r1 - base
        rows.append([
            esc(variant), esc(any_row["real_sequences"]), esc(any_row["synthetic_sequences"]), esc(any_row["identities"]),
            *[fmt(cells.get(m, {}).get("value"), PERCENT_DECIMALS) for m in metrics],
            MISSING if delta is None else f"{delta:+.1f}",
            *[fmt(rank1.get((variant, c)), PERCENT_DECIMALS) for c in conditions],
            esc(any_row["iterations"]), fmt(any_row["train_seconds"], 0),
        ])  # fmt: skip
    header = ["variant", "real seqs", "synthetic seqs", "identities", *metrics, "Rank-1 − real",
              *[f"Rank-1 {c.removeprefix('condition=')}" for c in conditions], "iterations", "train s"]  # fmt: skip
    first = table.row(0, named=True)
    notes = sorted({n for n in table.get_column("note").to_list() if n})
    readings = augmentation_readings(by_variant)
    return (
        f"<h4>Augmentation experiment</h4><p>{esc(first['recogniser'])} trained on each training set, scored on the "
        f"real test split ({esc(first['protocol'])} protocol, percent). Variants: real = the real train split; +same = "
        "plus synthetic clips of the same identities; +novel = plus novel identities; novel-only; real-k pct = k % of "
        "the real identities (low-label); untrained = the same recogniser never trained (calibration).</p>"
        + html_table(header, rows, [False] + [True] * (len(header) - 1))
        + "".join(f"<p>{esc(line)}</p>" for line in readings)
        + "".join(f'<p class="meta">{esc(n)}</p>' for n in notes)
    )


def augmentation_readings(by_variant: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """How far apart the variants' overall Rank-1 values are, against the probe resolution and the
    untrained recogniser (what the architecture gives without any training)."""
    rank1 = {v: m["Rank-1"] for v, m in by_variant.items() if m.get("Rank-1", {}).get("value") is not None}
    if "real" not in rank1:
        return []
    lines = []
    probes = int(rank1["real"].get("probes") or 0)
    real = rank1["real"]["value"]
    others = {v: r["value"] - real for v, r in rank1.items() if v not in ("real", "untrained")}
    if probes:
        step = 100.0 / probes
        spread = max((abs(d) for d in others.values()), default=0.0)
        lines.append(
            f"{probes} probes: one probe is {step:.2f} points of Rank-1; the variants differ from real by at most "
            f"{spread:.1f} points ({spread / step:.0f} probes)."
        )
    if "untrained" in rank1:
        untrained = rank1["untrained"]["value"]
        lines.append(
            f"Untrained, the recogniser already reaches {untrained:.1f} % Rank-1 (trained on real: {real:.1f} %): "
            "only the part above that comes from training, so compare variants on that margin."
        )
    return lines


def gaitcrafter_strips(chooser: StripChooser | None, per_dataset: int = 2) -> list[Strip]:
    """Strips of a few sweep videos of silhouette generators (one per scenario, up to ``per_dataset``)."""
    if chooser is None:
        return []
    real = _real_videos(chooser.real_manifests)
    strips, seen = [], {}
    for manifest in chooser.generated_manifests:
        frame = read_frame(manifest, MANIFEST).filter(pl.col("error").is_null())
        for row in frame.iter_rows(named=True):
            attributes = json.loads(row["attributes"] or "{}")
            if (attributes.get("notes") or {}).get("output") != "silhouette":
                continue
            key = (row["dataset"], attributes.get("model"))
            media, driving = _media(row), real.get((row["dataset"], attributes.get("driving_sequence")))
            if seen.get(key, 0) >= per_dataset or not media or not driving:
                continue
            seen[key] = seen.get(key, 0) + 1
            identity = (attributes.get("notes") or {}).get("identity")
            title = f"{key[1]} · {row['dataset']} {row['sequence_id']} · identity token {identity}"
            strips.append(Strip(title, chooser._resolve(driving), chooser._resolve(media)))
            break  # one per manifest (= per scenario)
    return strips


def gaitcrafter_section(results: Sequence[GaitCrafterTables], strips: Sequence[Strip]) -> str:
    if not results:
        return empty("GaitCrafter is not configured (config key gaitcrafter.datasets).")
    parts = []
    for g in results:
        parts.append(
            f"<h3>{esc(g.dataset)}</h3>"
            + _gaitcrafter_model_html(g)
            + _gaitcrafter_quality_html(g)
            + _gaitcrafter_novelty_html(g)
            + _gaitcrafter_augmentation_html(g)
        )
    images = []
    for strip in strips:
        try:
            images.append((strip.title, strip_image(strip)))
        except Exception as err:  # an unreadable video leaves its strip out, with the reason shown
            parts.append(empty(f"{strip.title}: {type(err).__name__}: {err}"))
    if images:
        parts.append(img(png_bytes(strips_figure(images)), "Real driving video (top) and GaitCrafter's silhouette "
                         "clip for the same job (bottom): the clip is conditioned on the identity token and the "
                         "driving covariates only, not on the driving motion."))  # fmt: skip
    return "".join(parts)


INPUT_TABLES = ("visual_metrics", "diagnostics", "probe_results")
NOTE_SECTIONS = ("recognisers", "correlations", "guidance_density", "real_retrieval")  # shown first


def _failures_html(t: Tables) -> str:
    """One row per cell with failures: failed/rows per input table and the most common error."""
    failures = t["failures"]
    if failures.is_empty():
        return empty(f"No failure counts: {t.why_empty('failures')}.")
    failed = failures.filter(pl.col("n_failed") > 0)
    if failed.is_empty():
        return "<p>No failed rows in any input table.</p>"
    cells = {key for key in failed.select(*KEYS).iter_rows()}
    rows = []
    for key, by_table in _wide(failures, KEYS, "table"):
        if key not in cells:
            continue
        counts = [
            f"{by_table[n]['n_failed']} / {by_table[n]['n_rows']}" if n in by_table else MISSING
            for n in INPUT_TABLES
        ]
        worst = max(by_table.values(), key=lambda r: r["n_failed"])
        rows.append([*[esc(k) for k in key], *counts, esc(worst["top_error"])])
    header = [*KEYS, *[f"{n} failed / rows" for n in INPUT_TABLES], "most common error"]
    return "<h3>Failed rows (left out of every mean)</h3>" + html_table(
        header, rows, [False] * 4 + [True] * 3 + [False]
    )


def _notes_section(t: Tables, plots: Plots) -> str:
    parts = [_failures_html(t)]
    notes = t["notes"]
    if not notes.is_empty():
        first = {s: i for i, s in enumerate(NOTE_SECTIONS)}
        notes = notes.with_row_index("__i").sort(
            pl.col("section").replace_strict(first, default=len(first), return_dtype=pl.Int32), "__i"
        )
        rows = [[esc(r["section"]), esc(r["dataset"] or ""), esc(r["model"] or ""), esc(r["note"]), esc(r["count"])]
                for r in notes.iter_rows(named=True)]  # fmt: skip
        parts.append(
            "<h3>Notes</h3>"
            + html_table(["section", "dataset", "model", "note", "count"], rows, [False] * 4 + [True])
        )
    missing = [f"{name}: {why}" for name, why in t.problems.items()]
    if missing:
        parts.append("<h3>Missing tables</h3><ul>" + "".join(f"<li>{esc(m)}</li>" for m in missing) + "</ul>")
    return "".join(parts)


SECTION_BUILDERS: dict[str, Callable[[Tables, Plots], str]] = {
    "visual": _visual_section,
    "biometric": _biometric_section,
    "transfer": _transfer_section,
    "bars": _bars_section,
    "scatter": _scatter_section,
    "correlations": _correlations_section,
    "diagnostics": _diagnostics_section,
    "guidance": _guidance_section,
    "real": _real_section,
    "notes": _notes_section,
}


def _safe(name: str, build: Callable[[], Any], fallback: Callable[[str], Any]) -> Any:
    """Run one section/plot builder; a failure becomes a visible message in the report (and a log line)."""
    try:
        return build()
    except Exception as err:  # the rest of the report is still worth having
        log.exception("report: %s failed", name)
        return fallback(f"{name} could not be built: {type(err).__name__}: {err}")


def _strips_html(strips: Sequence[Strip], plots: Plots, notes: Sequence[str], count: int) -> str:
    images, problems = [], list(notes)
    for strip in strips:
        try:
            images.append((strip.title, strip_image(strip, count)))
        except Exception as err:  # an unreadable video leaves its strip out, with the reason shown
            problems.append(f"{strip.title}: {type(err).__name__}: {err}")
    if images:
        plots.png["strips"] = png_bytes(strips_figure(images))
    else:
        plots.why["strips"] = "no frame strips were requested or readable"
    body = plots.html(
        "strips", "Top row: real driving frames; bottom row: the generated video at the same relative times."
    )
    if problems:
        body += "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>"
    return body


def render_html(
    tables: Tables, plots: Plots, strips_body: str, title: str, gaitcrafter_body: str | None = None
) -> str:
    summary = summary_sentences(tables)
    counts = _counts_sentence(tables)
    sections = {
        "summary": '<div class="summary"><ul>'
        + "".join(f"<li>{esc(s)}</li>" for s in summary)
        + "</ul></div>"
    }
    if counts:
        sections["summary"] += f'<p class="meta">{esc(counts)}</p>'
    for name, builder in SECTION_BUILDERS.items():
        sections[name] = _safe(SECTIONS[name], lambda b=builder: b(tables, plots), empty)
    sections["strips"] = strips_body
    shown = dict(SECTIONS)
    if gaitcrafter_body is not None:
        key, heading = GAITCRAFTER_SECTION
        order = list(SECTIONS)
        order.insert(order.index("real"), key)
        shown = {k: heading if k == key else SECTIONS[k] for k in order}
        sections[key] = gaitcrafter_body
    nav = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in shown.items())
    body = "".join(f'<section id="{k}"><h2>{esc(shown[k])}</h2>{sections[k]}</section>' for k in shown)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><nav>{nav}</nav>{body}</body></html>"
    )


PLOT_BUILDERS: dict[str, Callable[[Tables], tuple[Any | None, str]]] = {
    "visual_vs_biometric": scatter_figure,
    "bars": bars_figure,
    "diagnostics": diagnostics_figure,
    "correlations": correlations_figure,
    "guidance_density": guidance_figure,
}


def build_report(
    tables_dir: str | os.PathLike,
    strips: Sequence[Strip | Sequence[str | os.PathLike]] | StripChooser | Mapping[str, Any] | None,
    out_html: str | os.PathLike,
    *,
    plots_dir: str | os.PathLike | None = None,
    title: str = DEFAULT_TITLE,
    frames_per_strip: int = FRAMES_PER_STRIP,
    gaitcrafter: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write the self-contained HTML report of the tables in ``tables_dir``.

    ``strips``: (title, real video, generated video) triples, :class:`Strip` objects, a
    :class:`StripChooser` (best/worst by a metric, paths from the manifests), a mapping of its keyword
    arguments (what ``gaitfid report --spec`` passes) or None. With
    ``plots_dir``, every plot of :data:`PLOT_NAMES` is also written there as ``{name}.png`` (a
    placeholder saying why when there is nothing to plot). ``gaitcrafter``: dataset → paths of its
    GaitCrafter ``model`` (model.json), ``quality``, ``novelty`` and ``augmentation`` tables; adds the
    GaitCrafter section (left out when None). Returns the HTML path.
    """
    tables = load_tables(tables_dir)
    plots = Plots()
    for name, builder in PLOT_BUILDERS.items():
        plots.add(name, _safe(name, lambda b=builder: b(tables), lambda why: (None, why)))
    notes: list[str] = []
    if isinstance(strips, Mapping):  # from the command line: StripChooser keyword arguments as JSON
        strips = StripChooser(**strips)
    if isinstance(strips, StripChooser):
        chosen = _safe("strip choice", lambda: strips.choose(tables), lambda why: notes.append(why) or [])
        notes += strips.notes
    else:
        chosen = [s if isinstance(s, Strip) else Strip(*s) for s in strips or []]
    strips_body = _strips_html(chosen, plots, notes, frames_per_strip)
    gaitcrafter_body = None
    if gaitcrafter is not None:
        chooser = strips if isinstance(strips, StripChooser) else None
        gaitcrafter_body = _safe(
            GAITCRAFTER_SECTION[1],
            lambda: gaitcrafter_section(
                load_gaitcrafter(gaitcrafter),
                _safe("strips", lambda: gaitcrafter_strips(chooser), lambda why: []),
            ),
            empty,
        )
    document = render_html(tables, plots, strips_body, title, gaitcrafter_body)
    final, tmp = atomic_path(out_html)
    try:
        tmp.write_text(document, encoding="utf-8")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if plots_dir is not None:
        write_plots(plots, plots_dir)
    log.info("report: %s (%d plots, %d strips)", final, len(plots.png), len(chosen))
    return final


def write_plots(plots: Plots, plots_dir: str | os.PathLike) -> list[Path]:
    """Each of :data:`PLOT_NAMES` as ``{name}.png``; a missing plot becomes a PNG saying why."""
    written = []
    for name in PLOT_NAMES:
        data = plots.png.get(name) or png_bytes(placeholder(plots.why.get(name, "no data")))
        final, tmp = atomic_path(Path(plots_dir) / f"{name}.png")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written
