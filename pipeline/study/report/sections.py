"""The report's HTML sections: one function per section, each from the tables and the rendered plots;
a missing or empty table makes its section say so."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.evaluation.metrics import DIAGNOSTICS, VISUAL
from pipeline.study.aggregate import (
    KEYS,
    RANK_METRICS,
)
from pipeline.study.report.common import (
    MISSING,
    PERCENT_DECIMALS,
    Tables,
    decimals,
    fmt,
    label,
    ordered_names,
)
from pipeline.study.report.figures import png_bytes
from pipeline.study.report.strips import sorted_groups
from pipeline.study.report.summary import p_value

log = logging.getLogger(__name__)

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


def wide_rows(
    df: pl.DataFrame, keys: Sequence[str], pivot: str
) -> list[tuple[tuple, dict[str, dict[str, Any]]]]:
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
    for key, by_metric in wide_rows(df, keys, "metric"):
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


def visual_section(t: Tables, plots: Plots) -> str:
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
    for (dataset, model, recogniser), part in sorted_groups(probes, ["dataset", "model", "recogniser"]):
        errors = [e for e in part.get_column("error").to_list() if e is not None]
        if part.height and len(errors) == part.height:
            reason = max(set(errors), key=errors.count)
            lines.append(
                f"{dataset} · {model} × {recogniser}: none of {part.height} videos evaluated ({reason})"
            )
    return lines


def biometric_section(t: Tables, plots: Plots) -> str:
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


def transfer_section(t: Tables, plots: Plots) -> str:
    bio = t["biometric"].filter(pl.col("task") == "transfer")
    if bio.is_empty():
        return empty(f"No identity-transfer results: {t.why_empty('transfer')}.")
    keys = ["dataset", "model", "scenario", "recogniser"]
    shares = {k: v for k, v in wide_rows(t["transfer"], keys, "metric")}
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
    for key, by_identity in wide_rows(
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


def bars_section(t: Tables, plots: Plots) -> str:
    return plots.html(
        "bars",
        "Per-model means with 95 % identity-bootstrap CIs, bars coloured by scenario; dashed: real-probe Rank-1.",
    )


def scatter_section(t: Tables, plots: Plots) -> str:
    return plots.html(
        "visual_vs_biometric",
        "One point per cell (dataset × model × task × scenario): visual metric vs Rank-1 of the driving identity; "
        "colour = model, marker = scenario, whiskers = 95 % CIs, dashed = real probes; ρ = cell-level Spearman over "
        "the generators (control models left out).",
    )


def correlations_section(t: Tables, plots: Plots) -> str:
    corr = t["correlations"]
    if corr.is_empty():
        return empty(f"No correlations: {t.why_empty('correlations')}.")
    header = ["dataset", "recogniser", "level", "task", "visual", "biometric", "ρ", "p", "n", "note"]
    rows = [
        [esc(r["dataset"]), esc(r["recogniser"]), esc(r["level"]), esc(r["task"]), esc(label(r["visual_metric"])),
         esc(r["biometric_metric"]), MISSING if r["rho"] is None else f"{r['rho']:+.2f}",
         p_value(r["p_value"]), esc(r["n"]), esc(r["note"] or "")]
        for r in corr.iter_rows(named=True)
    ]  # fmt: skip
    return (
        plots.html("correlations", "Spearman ρ (all tasks) between each visual metric and each biometric quantity: "
                   "per cell (cell means) and per video (hit@1, reciprocal rank, AP of the driving identity).")
        + f"<details><summary>All correlations ({len(rows)} rows, per task too)</summary>"
        + html_table(header, rows, [False] * 6 + [True] * 3 + [False]) + "</details>"
    )  # fmt: skip


# What each diagnostic reads on a perfect generator and its unit (pipeline.evaluation.diagnostics).
DIAGNOSTIC_ZERO = {
    "flow_divergence": "0 px/frame", "thickening_index": "1 (ratio)", "foot_sliding": "0 body heights/s",
    "arm_swing_error": "0 (relative)", "cadence_error": "0 steps/min",
}  # fmt: skip
NOISE_FLOOR_MODEL = "oracle"


def noise_floor_lines(diag: pl.DataFrame, model: str = NOISE_FLOOR_MODEL) -> list[str]:
    """One line per diagnostic: the oracle's mean [95 % CI] in every cell of the diagnostics table
    (dataset · scenario), the noise floor of re-perceiving the driving video; nothing without oracle rows."""
    oracle = diag.filter(pl.col("model") == model) if not diag.is_empty() else diag
    lines = []
    for metric in DIAGNOSTICS:
        cells = [
            f"{_text_ci(r, decimals(metric))} ({r['dataset']} · {r['scenario']})"
            for r in oracle.filter(pl.col("metric") == metric).iter_rows(named=True)
            if r["mean"] is not None
        ]
        if cells:
            lines.append(
                f"{model} (noise floor): {label(metric)} {', '.join(cells)}; perfect = {DIAGNOSTIC_ZERO[metric]}"
            )
    return lines


def _text_ci(row: Mapping[str, Any], digits: int) -> str:
    ci = (
        "" if row.get("ci_low") is None else f" [{fmt(row['ci_low'], digits)}, {fmt(row['ci_high'], digits)}]"
    )
    return fmt(row["mean"], digits) + ci


def diagnostics_section(t: Tables, plots: Plots) -> str:
    diag = t["diagnostics"]
    table = (
        stats_table(diag, KEYS, DIAGNOSTICS)
        if not diag.is_empty()
        else empty(f"No diagnostics: {t.why_empty('diagnostics')}.")
    )
    floor = noise_floor_lines(diag)
    if floor:
        table = (
            "<p>The oracle (the driving video itself, re-perceived) is each diagnostic's noise floor: a "
            "generator's value inside the oracle's interval is not distinguishable from a perfect one.</p>"
            '<ul class="noise-floor">' + "".join(f"<li>{esc(line)}</li>" for line in floor) + "</ul>" + table
        )
    return table + plots.html(
        "diagnostics",
        "Per-video diagnostics per model (scenarios pooled): box = quartiles, whiskers = 1.5 IQR.",
    )


def guidance_section(t: Tables, plots: Plots) -> str:
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


def real_section(t: Tables, plots: Plots) -> str:
    real = t["real_retrieval"]
    if real.is_empty():
        return empty(f"No real-probe baseline: {t.why_empty('real_retrieval')}.")
    keys = ["dataset", "recogniser", "protocol", "condition"]
    metrics = ordered_names(real.get_column("metric").to_list(), RANK_METRICS)
    # a recogniser that could not be scored on a dataset (its modality is missing, ...) says why
    with_notes = "note" in real.columns and real.get_column("note").null_count() < real.height
    rows = [
        [
            *[esc(k) for k in key],
            *[fmt(by.get(m, {}).get("value"), PERCENT_DECIMALS) for m in metrics],
            *(
                [esc("; ".join(sorted({r["note"] for r in by.values() if r.get("note")})))]
                if with_notes
                else []
            ),
        ]
        for key, by in wide_rows(real, keys, "metric")
    ]
    notes = t["notes"]
    borrowed = (
        notes.filter((pl.col("section") == "recognisers") & pl.col("dataset").is_not_null())
        if not notes.is_empty()
        else notes
    )
    across = "".join(
        f"<li>{esc(r['dataset'])}: {esc(r['note'])}</li>" for r in borrowed.iter_rows(named=True)
    )
    note_column = ["note"] if with_notes else []
    return (
        "<p>Real probes against the same gallery, no generation (percent).</p>"
        + html_table(
            [*keys, *metrics, *note_column],
            rows,
            [False] * 4 + [True] * len(metrics) + [False] * len(note_column),
        )
        + (f"<p>Datasets scored with another dataset's recognisers:</p><ul>{across}</ul>" if across else "")
    )
