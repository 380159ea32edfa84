"""Stage "report": one self-contained HTML file with the study's tables, plots and frame strips.

The stage entry point is :func:`build_report` (:mod:`.page`). The parts, each readable alone:
:mod:`.common` (vocabulary, table loading, ordering), :mod:`.summary` (sentences from the numbers),
:mod:`.figures` (matplotlib plots), :mod:`.strips` (frame strips), :mod:`.sections` (the HTML sections)
and :mod:`.gaitcrafter` (the optional GaitCrafter section).
"""

from pipeline.study.report.common import PLOT_NAMES, SECTIONS, Tables, load_tables
from pipeline.study.report.gaitcrafter import augmentation_readings, novelty_readings, quality_verdict
from pipeline.study.report.page import build_report, render_html, write_plots
from pipeline.study.report.sections import not_evaluated

__all__ = [
    "PLOT_NAMES",
    "SECTIONS",
    "Tables",
    "augmentation_readings",
    "build_report",
    "load_tables",
    "not_evaluated",
    "novelty_readings",
    "quality_verdict",
    "render_html",
    "write_plots",
]
