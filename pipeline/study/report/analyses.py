"""The report's "beyond the paper" section: the tables of :mod:`pipeline.study.analyses`.

Three parts, each with one sentence for the summary computed from its table (:func:`analyses_sentences`):
the guidance-source ablation (paired Δ table and plot), the predictors of biometric fidelity ranked by
|ρ| per recogniser with the best-temporal-vs-SSIM test, and the cross-domain table.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.contracts import ContractError, read_frame
from pipeline.study.analyses import OUTPUTS
from pipeline.study.report.common import MISSING, fmt, label, scenario_order
from pipeline.study.report.figures import figure
from pipeline.study.report.sections import empty, esc, html_table

SECTION = ("analyses", "Beyond the paper: guidance source, temporal predictors, cross-domain")
PLOT = "guidance_ablation"
TOP_PREDICTORS = 5  # per recogniser in the summary's ranking


def load_analyses(analyses_dir: str | os.PathLike) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    """The analyses tables (validated); a missing or unreadable one is empty with its reason."""
    frames, problems = {}, {}
    for name, contract in OUTPUTS.items():
        path = Path(analyses_dir) / f"{name}.parquet"
        try:
            frames[name] = read_frame(path, contract)
        except (FileNotFoundError, ContractError, OSError) as err:
            problems[name] = f"{path}: {type(err).__name__}: {err}"
            frames[name] = pl.from_arrow(contract.empty())
    return frames, problems


def _ci(value: float | None, low: float | None, high: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if low is None or high is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def _digits(quantity: str) -> int:
    return 1 if quantity in ("Rank-1", "mAP", "motion_dtw") else 3


# ---------------------------------------------------------------------------------------------
# Summary sentences


def ablation_sentence(t: pl.DataFrame) -> str:
    if t.is_empty():
        return "Guidance-source ablation: not run (sweep.guidance_ablation names no model)."
    rank1 = t.filter((pl.col("quantity") == "Rank-1") & (pl.col("task") != "all"))
    if rank1.is_empty():
        return "Guidance-source ablation: no paired Rank-1 (no recogniser scored both arms)."
    wild = rank1.filter(pl.col("scenario") == "in_the_wild")
    rows = (wild if not wild.is_empty() else rank1).sort("mean_diff").rows(named=True)
    worst = rows[0]
    ssim = t.filter((pl.col("quantity") == "ssim") & (pl.col("model") == worst["model"])
                    & (pl.col("scenario") == worst["scenario"]))  # fmt: skip
    ssim_text = ""
    if not ssim.is_empty():
        s = ssim.row(0, named=True)
        ssim_text = f", SSIM by {_ci(s['mean_diff'], s['ci_low'], s['ci_high'], 3)}"
    return (
        f"Guidance-source ablation: estimated instead of ground-truth guidance changes {worst['model']}'s Rank-1 "
        f"({worst['recogniser']}, {worst['scenario']}) by {_ci(worst['mean_diff'], worst['ci_low'], worst['ci_high'], 1)} "
        f"points (n = {worst['n']} pairs, {worst['n_identities']} identities){ssim_text}."
    )


def predictors_sentence(p: pl.DataFrame, tests: pl.DataFrame) -> str:
    video = tests.filter(
        (pl.col("level") == "video") & (pl.col("biometric") == "AP") & pl.col("diff").is_not_null()
    )
    if video.is_empty():
        return "Temporal predictors: no recogniser has defined Spearman ρ for both a temporal predictor and SSIM."
    parts = []
    for r in video.rows(named=True):
        verdict = "beats" if r["beats_ssim"] else "does not beat"
        parts.append(
            f"{r['dataset']} {r['recogniser']} (n = {r['n']}): {label(r['temporal'])} ρ = {fmt(r['rho_temporal'], 2)} vs SSIM {fmt(r['rho_ssim'], 2)}, "
            f"Δ|ρ| {_ci(r['diff'], r['ci_low'], r['ci_high'], 2)} ({verdict} SSIM)"
        )
    return (
        "Temporal predictors of the driving identity's AP (per video, identity-bootstrap CIs): "
        + "; ".join(parts)
        + "."
    )


def domain_sentence(d: pl.DataFrame) -> str:
    cross = d.filter(
        (pl.col("domain") == "cross-domain") & (pl.col("metric") == "Rank-1") & (pl.col("probes") == "real")
    )
    if cross.is_empty():
        return "Cross-domain: no dataset is scored with another dataset's recognisers (recognisers.train_on)."
    parts = []
    for r in cross.rows(named=True):
        own = d.filter((pl.col("scored") == r["trained_on"]) & (pl.col("recogniser") == r["recogniser"])
                       & (pl.col("metric") == "Rank-1") & (pl.col("probes") == "real"))  # fmt: skip
        own_text = f" vs {fmt(own.row(0, named=True)['value'], 1)} in-domain" if not own.is_empty() else ""
        parts.append(f"{r['recogniser']} {fmt(r['value'], 1)}{own_text}")
    first = cross.row(0, named=True)
    return (
        f"Cross-domain: recognisers trained on {first['trained_on']} reach real-probe Rank-1 on "
        f"{first['scored']} of " + ", ".join(parts) + "."
    )


def analyses_sentences(frames: dict[str, pl.DataFrame]) -> list[str]:
    return [
        ablation_sentence(frames["guidance_ablation"]),
        predictors_sentence(frames["predictors"], frames["predictor_tests"]),
        domain_sentence(frames["domain"]),
    ]


# ---------------------------------------------------------------------------------------------
# Section


def _ablation_html(t: pl.DataFrame, plot_html: str) -> str:
    if t.is_empty():
        return empty("No guidance-source ablation (sweep.guidance_ablation names no model).")
    keep = t.filter(pl.col("recogniser").is_null() | pl.col("quantity").is_in(["Rank-1", "mAP"]))
    order = {s: i for i, s in enumerate(["all", *scenario_order(keep)])}
    keep = keep.sort(
        pl.col("scenario").replace_strict(order, default=99), "quantity", "recogniser", nulls_last=False
    )
    rows = [
        [esc(r["dataset"]), esc(r["model"]), esc(r["scenario"]), esc(r["recogniser"] or ""), esc(label(r["quantity"])),
         fmt(r["mean_groundtruth"], _digits(r["quantity"])), fmt(r["mean_estimated"], _digits(r["quantity"])),
         _ci(r["mean_diff"], r["ci_low"], r["ci_high"], _digits(r["quantity"])), esc(r["n"]), esc(r["n_identities"])]
        for r in keep.rows(named=True)
    ]  # fmt: skip
    header = ["dataset", "model", "scenario", "recogniser", "quantity", "ground truth", "estimated",
              "Δ estimated − ground truth [95 % CI]", "pairs", "identities"]  # fmt: skip
    return (
        "<h3>Guidance source: ground-truth vs estimated guidance, same generator, same jobs</h3>"
        "<p>Each job generated twice: driven by the world's keypoints and part maps, and by the pose stage's "
        "keypoints with the <code>approx_from_pose</code> part maps. Δ per job, identity-bootstrap CI.</p>"
        + plot_html
        + html_table(header, rows, [False] * 5 + [True] * 5)
    )


def _predictors_html(p: pl.DataFrame, tests: pl.DataFrame) -> str:
    if p.is_empty():
        return empty("No predictor correlations (no generated video has both predictors and probe results).")
    parts = ["<h3>Predictors of biometric fidelity, ranked by |Spearman ρ| per recogniser</h3>",
             "<p>Per video against the driving identity's AP and per cell against mAP; CIs from the identity "
             "bootstrap. Kinds: visual (frame-wise), temporal (flow divergence, DTW of joint-angle curves), "
             "diagnostic.</p>"]  # fmt: skip
    for (level, bio), metric_label in ((("video", "AP"), "AP per video"), (("cell", "mAP"), "mAP per cell")):
        part = p.filter((pl.col("level") == level) & (pl.col("biometric") == bio))
        for recogniser in sorted(part["recogniser"].unique().to_list()):
            ranked = part.filter(pl.col("recogniser") == recogniser).with_columns(a=pl.col("rho").abs())
            ranked = ranked.sort("a", descending=True, nulls_last=True)
            rows = [[esc(i + 1), esc(label(r["predictor"])), esc(r["kind"]), _ci(r["rho"], r["ci_low"], r["ci_high"], 2),
                     esc(r["n"]), esc(r["n_identities"]), esc(r["note"] or "")]
                    for i, r in enumerate(ranked.rows(named=True))]  # fmt: skip
            parts.append(f"<h4>{esc(recogniser)} · {esc(metric_label)}</h4>")
            parts.append(html_table(["rank", "predictor", "kind", "ρ [95 % CI]", "n", "identities", "note"], rows,
                                    [True, False, False, True, True, True, False]))  # fmt: skip
    if not tests.is_empty():
        rows = [[esc(r["dataset"]), esc(r["recogniser"]), esc(r["level"]), esc(r["biometric"]), esc(label(r["temporal"] or "")),
                 fmt(r["rho_temporal"], 2), fmt(r["rho_ssim"], 2), _ci(r["diff"], r["ci_low"], r["ci_high"], 2),
                 esc({True: "yes", False: "no"}.get(r["beats_ssim"], MISSING)), esc(r["note"] or "")]
                for r in tests.rows(named=True)]  # fmt: skip
        parts.append(
            "<h4>Does the best temporal predictor beat SSIM? (paired bootstrap of |ρ_temporal| − |ρ_SSIM|)</h4>"
        )
        parts.append(html_table(["dataset", "recogniser", "level", "biometric", "best temporal", "ρ temporal", "ρ SSIM",
                                 "Δ|ρ| [95 % CI]", "beats SSIM", "note"], rows, [False] * 5 + [True] * 3 + [False] * 2))  # fmt: skip
    return "".join(parts)


def _domain_html(d: pl.DataFrame) -> str:
    if d.is_empty():
        return empty("No domain table (no real retrieval or biometric rows).")
    rows = [[esc(r["trained_on"]), esc(r["scored"]), esc(r["domain"]), esc(r["recogniser"]), esc(r["probes"]),
             esc(r["metric"]), _ci(r["value"], r["ci_low"], r["ci_high"], 1), esc(r["n"] if r["n"] is not None else "")]
            for r in d.rows(named=True)]  # fmt: skip
    return "<h3>Cross-domain: recognisers trained on one dataset, scored on another</h3>" + html_table(
        ["trained on", "scored", "domain", "recogniser", "probes", "metric", "value [95 % CI]", "n"], rows,
        [False] * 6 + [True] * 2,
    )  # fmt: skip


def ablation_figure(t: pl.DataFrame) -> tuple[Any | None, str]:
    """Δ estimated − ground truth with 95 % CI: SSIM and Rank-1 per recogniser, one row per scenario."""
    if t.is_empty():
        return None, "no guidance-source ablation in this study"
    panels = t.filter((pl.col("quantity") == "ssim") | (pl.col("quantity") == "Rank-1")).select(
        "model", "quantity", "recogniser").unique(maintain_order=True).rows()  # fmt: skip
    if not panels:
        return None, "no SSIM or Rank-1 pairs in the ablation"
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(3.2 * n_cols, 2.2 * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (model, quantity, recogniser) in zip(axes, panels, strict=False):
        rows = t.filter((pl.col("model") == model) & (pl.col("quantity") == quantity))
        rows = rows.filter(
            pl.col("recogniser").is_null() if recogniser is None else pl.col("recogniser") == recogniser
        )
        for y, r in enumerate(rows.rows(named=True)):
            low = r["mean_diff"] - (r["ci_low"] if r["ci_low"] is not None else r["mean_diff"])
            high = (r["ci_high"] if r["ci_high"] is not None else r["mean_diff"]) - r["mean_diff"]
            ax.errorbar(r["mean_diff"], y, xerr=np.array([[low], [high]]), fmt="o", capsize=2, markersize=4,
                        color="C0" if r["scenario"] == "all" else "C7")  # fmt: skip
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_yticks(range(rows.height), rows["scenario"].to_list(), fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(
            f"{model} · Δ {label(quantity)}" + (f" · {recogniser}" if recogniser else ""), fontsize=8
        )
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig, ""


def analyses_section(frames: dict[str, pl.DataFrame], problems: dict[str, str], plot_html: str) -> str:
    parts = [
        _ablation_html(frames["guidance_ablation"], plot_html),
        _predictors_html(frames["predictors"], frames["predictor_tests"]),
        _domain_html(frames["domain"]),
    ]
    if problems:
        parts.append("<ul>" + "".join(f"<li>{esc(m)}</li>" for m in problems.values()) + "</ul>")
    return "".join(parts)
