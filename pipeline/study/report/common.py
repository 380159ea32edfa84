"""The report's vocabulary: section titles, labels and number formats, the aggregated tables it reads
(:func:`load_tables`), and the display order of models and scenarios."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.contracts import ContractError, read_frame
from pipeline.study.aggregate import (
    MODEL_ORDER,
    OUTPUTS,
    RANK_METRICS,
    SCENARIO_ORDER,
)

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
    "motion_dtw": "joint-angle DTW (°)",
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
    """Read every table of :data:`pipeline.study.aggregate.OUTPUTS` from ``tables_dir`` (validated)."""
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


def ordered_names(values: Iterable[str | None], known: Sequence[str] = ()) -> list[str]:
    present = {v for v in values if v is not None}
    first = [v for v in known if v in present]
    return first + sorted(present - set(first))


def model_order(*frames: pl.DataFrame) -> list[str]:
    return ordered_names(
        (m for f in frames if "model" in f.columns for m in f.get_column("model").to_list()), MODEL_ORDER
    )


def scenario_order(*frames: pl.DataFrame) -> list[str]:
    return ordered_names(
        (s for f in frames if "scenario" in f.columns for s in f.get_column("scenario").to_list()),
        SCENARIO_ORDER,
    )


def unique_values(df: pl.DataFrame, column: str) -> list[str]:
    return ordered_names(df.get_column(column).to_list()) if column in df.columns else []


def model_colours(models: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def scenario_styles(scenarios: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]]:
    from matplotlib import colormaps

    cmap = colormaps["Set2"]
    return (
        {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(scenarios)},
        {s: cmap(i % 8) for i, s in enumerate(scenarios)},
    )
