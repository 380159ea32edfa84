"""Stage "report": one self-contained HTML file with the study's tables, plots and frame strips.

:func:`build_report` reads the tables that :func:`pipeline.study.aggregate.run_aggregate` wrote (each
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

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.contracts import atomic_path
from pipeline.study.aggregate import (
    KEYS,
)
from pipeline.study.report.analyses import PLOT as ANALYSES_PLOT
from pipeline.study.report.analyses import SECTION as ANALYSES_SECTION
from pipeline.study.report.analyses import (
    ablation_figure,
    analyses_section,
    analyses_sentences,
    load_analyses,
)
from pipeline.study.report.common import (
    DEFAULT_TITLE,
    FRAMES_PER_STRIP,
    GAITCRAFTER_SECTION,
    MISSING,
    PLOT_NAMES,
    SECTIONS,
    Tables,
    load_tables,
)
from pipeline.study.report.figures import (
    bars_figure,
    correlations_figure,
    diagnostics_figure,
    guidance_figure,
    placeholder,
    png_bytes,
    scatter_figure,
)
from pipeline.study.report.gaitcrafter import gaitcrafter_section, gaitcrafter_strips, load_gaitcrafter
from pipeline.study.report.sections import (
    CSS,
    Plots,
    bars_section,
    biometric_section,
    correlations_section,
    diagnostics_section,
    empty,
    esc,
    guidance_section,
    html_table,
    real_section,
    scatter_section,
    transfer_section,
    visual_section,
    wide_rows,
)
from pipeline.study.report.strips import Strip, StripChooser, strip_image, strips_figure
from pipeline.study.report.summary import counts_sentence, summary_sentences

log = logging.getLogger(__name__)

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
    for key, by_table in wide_rows(failures, KEYS, "table"):
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
    "visual": visual_section,
    "biometric": biometric_section,
    "transfer": transfer_section,
    "bars": bars_section,
    "scatter": scatter_section,
    "correlations": correlations_section,
    "diagnostics": diagnostics_section,
    "guidance": guidance_section,
    "real": real_section,
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
    tables: Tables,
    plots: Plots,
    strips_body: str,
    title: str,
    gaitcrafter_body: str | None = None,
    analyses: tuple[str, list[str]] | None = None,
) -> str:
    """``analyses``: the "beyond the paper" section's HTML and its summary sentences (None: no section)."""
    summary = summary_sentences(tables) + (analyses[1] if analyses is not None else [])
    counts = counts_sentence(tables)
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
    if analyses is not None:
        key, heading = ANALYSES_SECTION
        order = list(shown)
        order.insert(order.index("strips"), key)
        shown = {k: heading if k == key else shown[k] for k in order}
        sections[key] = analyses[0]
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
    analyses_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the self-contained HTML report of the tables in ``tables_dir``.

    ``strips``: (title, real video, generated video) triples, :class:`Strip` objects, a
    :class:`StripChooser` (best/worst by a metric, paths from the manifests), a mapping of its keyword
    arguments (what ``gaitfid report --spec`` passes) or None. With
    ``plots_dir``, every plot of :data:`PLOT_NAMES` is also written there as ``{name}.png`` (a
    placeholder saying why when there is nothing to plot). ``gaitcrafter``: dataset → paths of its
    GaitCrafter ``model`` (model.json), ``quality``, ``novelty`` and ``augmentation`` tables; adds the
    GaitCrafter section (left out when None). ``analyses_dir``: the tables of
    :mod:`pipeline.study.analyses`; adds the "beyond the paper" section and its summary sentences
    (left out when None). Returns the HTML path.
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
    analyses = None
    if analyses_dir is not None:
        analyses = _safe(
            ANALYSES_SECTION[1], lambda: _analyses(analyses_dir, plots), lambda why: (empty(why), [why])
        )
    document = render_html(tables, plots, strips_body, title, gaitcrafter_body, analyses)
    final, tmp = atomic_path(out_html)
    try:
        tmp.write_text(document, encoding="utf-8")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if plots_dir is not None:
        write_plots(
            plots, plots_dir, (*PLOT_NAMES, ANALYSES_PLOT) if analyses_dir is not None else PLOT_NAMES
        )
    log.info("report: %s (%d plots, %d strips)", final, len(plots.png), len(chosen))
    return final


def _analyses(analyses_dir: str | os.PathLike, plots: Plots) -> tuple[str, list[str]]:
    frames, problems = load_analyses(analyses_dir)
    plots.add(
        ANALYSES_PLOT,
        _safe(ANALYSES_PLOT, lambda: ablation_figure(frames["guidance_ablation"]), lambda why: (None, why)),
    )
    plot_html = plots.html(
        ANALYSES_PLOT, "Δ estimated − ground-truth guidance, mean and 95 % identity-bootstrap CI"
    )
    return analyses_section(frames, problems, plot_html), analyses_sentences(frames)


def write_plots(plots: Plots, plots_dir: str | os.PathLike, names: Sequence[str] = PLOT_NAMES) -> list[Path]:
    """Each of ``names`` (default :data:`PLOT_NAMES`) as ``{name}.png``; a missing plot becomes a PNG saying why."""
    written = []
    for name in names:
        data = plots.png.get(name) or png_bytes(placeholder(plots.why.get(name, "no data")))
        final, tmp = atomic_path(Path(plots_dir) / f"{name}.png")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written
