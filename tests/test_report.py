"""The HTML report: self-contained, every section, a summary computed from the data, numbers = tables."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from test_aggregate import synthetic_inputs, write_inputs

from pipeline.contracts import MANIFEST, write_table
from pipeline.io.video import write_video
from pipeline.study.aggregate import KEYS, aggregate, run_aggregate
from pipeline.study.report.common import (
    PLOT_NAMES,
    SECTIONS,
    STRIP_HEIGHT,
    Tables,
    decimals,
    fmt,
    label,
    load_tables,
)
from pipeline.study.report.page import build_report
from pipeline.study.report.sections import diagnostics_section, noise_floor_lines
from pipeline.study.report.strips import Strip, StripChooser, strip_image
from pipeline.study.report.summary import summary_sentences

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _video(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), n: int = 8) -> Path:
    """A tiny walking-block video: a coloured block moving right on grey, [n, h, w, 3]."""
    h, w = size
    frames = np.full((n, h, w, 3), 90, np.uint8)
    for t in range(n):
        x = 2 + t * (w - 12) // n
        frames[t, h // 4 : 3 * h // 4, x : x + 10] = colour
    return write_video(path, frames, fps=10)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    paths = write_inputs(root / "in", synthetic_inputs(n_identities=6, seed=1))
    run_aggregate(
        root / "tables", visual=paths["visual"], diagnostics=paths["diagnostics"], probes=paths["probes"],
        real=paths["real"], n_boot=200, recogniser_notes={"deepgaitv2": "randomly initialised small backbone"},
    )  # fmt: skip
    real, generated = (
        _video(root / "real.mp4", (200, 30, 30)),
        _video(root / "gen.mp4", (30, 30, 200), (96, 72), 6),
    )
    out = build_report(
        root / "tables",
        [("posewarp-dense · best SSIM · demo", real, generated)],
        root / "report.html",
        plots_dir=root / "plots",
    )
    return {"root": root, "tables": root / "tables", "html": out, "plots": root / "plots"}


def _text(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def _section(document: str, section: str) -> str:
    match = re.search(rf'<section id="{section}">(.*?)</section>', document, re.S)
    assert match, f"section {section} missing"
    return match.group(1)


def _rows(fragment: str) -> list[list[str]]:
    """Cells (tags stripped) of every body row of the tables in an HTML fragment."""
    return [
        [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S)
    ]


def test_report_is_self_contained_with_every_section(study):
    document = study["html"].read_text(encoding="utf-8")
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", document)
    assert links and all(link.startswith(("data:", "#")) for link in links), [
        x[:40] for x in links if not x.startswith(("data:", "#"))
    ]
    assert "<script" not in document and "<link" not in document and "url(" not in document
    for heading in SECTIONS.values():
        assert f"<h2>{html.escape(heading)}</h2>" in document
    assert "could not be built" not in document
    assert document.count('<img alt="') == len(PLOT_NAMES)  # five plots + the strips
    assert "randomly initialised small backbone" in document
    for name in PLOT_NAMES:
        assert (study["plots"] / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_summary_sentence_is_computed_from_the_tables(study):
    document = study["html"].read_text(encoding="utf-8")
    tables = load_tables(study["tables"])
    sentences = summary_sentences(tables)
    for sentence in sentences:
        assert html.escape(sentence) in document
    # the headline, recomputed here: the generator with the best SSIM in restoration/baseline
    visual = pl.read_parquet(study["tables"] / "visual.parquet").filter(
        (pl.col("task") == "restoration") & (pl.col("scenario") == "baseline") & (pl.col("metric") == "ssim")
        & ~pl.col("model").is_in(["oracle", "static"])
    ).sort("mean", descending=True)  # fmt: skip
    best, ssim = visual.row(0, named=True)["model"], visual.row(0, named=True)["mean"]
    headline = next(s for s in sentences if "best SSIM" in s)
    assert f"{best} has the best SSIM" in headline and f"SSIM {fmt(ssim, 3)}" in headline
    bio = pl.read_parquet(study["tables"] / "biometric.parquet").filter(
        (pl.col("model") == best)
        & (pl.col("scenario") == "baseline")
        & (pl.col("identity") == "driving")
        & (pl.col("metric") == "Rank-1")
    )
    for row in bio.iter_rows(named=True):
        assert f"{fmt(row['mean'], 1)} % with {row['recogniser']}" in headline
    real = pl.read_parquet(study["tables"] / "real_retrieval.parquet").filter(pl.col("metric") == "Rank-1")
    for row in real.iter_rows(named=True):
        assert f"{fmt(row['value'], 1)} % with {row['recogniser']}" in headline


def test_numbers_in_the_html_match_the_tables(study):
    document = study["html"].read_text(encoding="utf-8")
    visual_rows = {tuple(r[:4]): r for r in _rows(_section(document, "visual"))}
    visual = pl.read_parquet(study["tables"] / "visual.parquet")
    column = {"ssim": 4, "psnr": 5, "lpips": 6}
    for r in visual.iter_rows(named=True):
        cell = visual_rows[tuple(r[k] for k in KEYS)][column[r["metric"]]]
        digits = decimals(r["metric"])
        expected = fmt(r["mean"], digits)
        if r["ci_low"] is not None:
            expected += f" [{fmt(r['ci_low'], digits)}, {fmt(r['ci_high'], digits)}]"
        assert cell == expected
    bio_rows = {tuple(r[:5]): r for r in _rows(_section(document, "biometric"))}
    bio = pl.read_parquet(study["tables"] / "biometric.parquet").filter(pl.col("identity") == "driving")
    for r in bio.iter_rows(named=True):
        cell = bio_rows[(*[r[k] for k in KEYS], r["recogniser"])][
            {"Rank-1": 5, "Rank-5": 6, "mAP": 7}[r["metric"]]
        ]
        assert cell.split(" [")[0] == fmt(r["mean"], 1)
    transfer_rows = {tuple(r[:4]): r for r in _rows(_section(document, "transfer"))}
    reference = pl.read_parquet(study["tables"] / "biometric.parquet").filter(
        (pl.col("identity") == "reference") & (pl.col("metric") == "Rank-1")
    )
    for r in reference.iter_rows(named=True):
        assert transfer_rows[(r["dataset"], r["model"], r["scenario"], r["recogniser"])][5].split(" [")[
            0
        ] == fmt(r["mean"], 1)
    real_rows = _rows(_section(document, "real"))
    real = pl.read_parquet(study["tables"] / "real_retrieval.parquet")
    for r in real.filter(pl.col("metric") == "Rank-1").iter_rows(named=True):
        assert [r["dataset"], r["recogniser"], r["protocol"], r["condition"], fmt(r["value"], 1)] in [
            row[:5] for row in real_rows
        ]


def test_summary_follows_the_data():
    inputs = synthetic_inputs(n_identities=4, seed=3)
    tables = aggregate(inputs["visual"], inputs["diagnostics"], inputs["probes"], inputs["real"], n_boot=20)
    assert "magicanimate has the best SSIM" in summary_sentences(Tables(tables, {}))[0]
    worse = inputs["visual"].with_columns(
        ssim=pl.when(pl.col("model") == "magicanimate").then(pl.col("ssim") - 0.5).otherwise(pl.col("ssim"))
    )
    tables = aggregate(worse, inputs["diagnostics"], inputs["probes"], inputs["real"], n_boot=20)
    assert "posewarp-dense has the best SSIM" in summary_sentences(Tables(tables, {}))[0]


def test_report_without_tables_says_so_and_does_not_crash(tmp_path):
    out = build_report(tmp_path / "nothing", None, tmp_path / "r.html", plots_dir=tmp_path / "plots")
    document = out.read_text(encoding="utf-8")
    for heading in SECTIONS.values():
        assert f"<h2>{html.escape(heading)}</h2>" in document
    assert "No results yet" in document and "visual.parquet not found" in document
    assert "could not be built" not in document
    for name in PLOT_NAMES:
        assert (tmp_path / "plots" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_with_only_visual_metrics(tmp_path):
    visual = synthetic_inputs(n_identities=3)["visual"]
    paths = write_inputs(tmp_path / "in", {"visual": visual})
    run_aggregate(tmp_path / "tables", visual=paths["visual"], n_boot=20)
    strips = [Strip("unreadable", tmp_path / "missing.mp4", tmp_path / "missing.mp4")]
    document = build_report(tmp_path / "tables", strips, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "there are no biometric results for it yet" in document
    assert "LPIPS is null for every video" not in document  # only static lacks it in the synthetic data
    assert "No biometric results" in _section(document, "biometric")
    # LPIPS null everywhere, with the reason written the way pipeline.evaluation.metrics writes it
    why = {"lpips": "null: AlexNet backbone weights not found at /weights/alexnet-owt-7be5be79.pth"}
    no_lpips = visual.with_columns(lpips=pl.lit(None, pl.Float64), notes=pl.lit(json.dumps(why)))
    paths = write_inputs(tmp_path / "in2", {"visual": no_lpips})
    run_aggregate(tmp_path / "tables2", visual=paths["visual"], n_boot=20)
    section = _section(build_report(tmp_path / "tables2", None, tmp_path / "r2.html").read_text(), "visual")
    assert html.escape(f"LPIPS is null for every video (lpips: {why['lpips']}).") in section
    assert "unreadable: VideoError" in _section(document, "strips")  # the strip is left out, with the reason
    assert "could not be built" not in document


def test_strip_image_puts_real_frames_above_generated_ones(tmp_path):
    real, generated = (
        _video(tmp_path / "r.mp4", (220, 20, 20)),
        _video(tmp_path / "g.mp4", (20, 20, 220), (80, 60), 5),
    )
    image = strip_image(Strip("t", real, generated), count=4)
    assert image.shape[0] == 2 * STRIP_HEIGHT + 4 and image.shape[2] == 3
    top, bottom = (
        image[:STRIP_HEIGHT].reshape(-1, 3).astype(int),
        image[-STRIP_HEIGHT:].reshape(-1, 3).astype(int),
    )
    assert ((top[:, 0] - top[:, 2]) > 100).sum() > 0 and ((top[:, 2] - top[:, 0]) > 100).sum() == 0
    assert ((bottom[:, 2] - bottom[:, 0]) > 100).sum() > 0 and (
        (bottom[:, 0] - bottom[:, 2]) > 100
    ).sum() == 0


def _manifest_row(
    dataset: str, sequence_id: str, path: str | None, attributes: dict | None = None, **extra
) -> dict:
    subject, condition, view = (sequence_id.split("/") + ["x", "x", "x"])[-3:]
    row = {name: None for name in MANIFEST.schema.names}
    row.update(dataset=dataset, subject=subject, condition=condition, view=view, sequence_id=sequence_id,
               split="test", role="probe", path_video=path, attributes=json.dumps(attributes or {}), **extra)  # fmt: skip
    return row


def test_strip_chooser_finds_best_and_worst_videos_through_the_manifests(tmp_path):
    _video(tmp_path / "videos" / "real.mp4", (200, 30, 30))
    for job in ("good", "bad"):
        _video(tmp_path / "videos" / f"{job}.mp4", (30, 30, 200))
    real = write_table(
        [_manifest_row("d", "s1/nm-01/090", "videos/real.mp4")], tmp_path / "real.parquet", MANIFEST
    )
    attributes = {"model": "m", "driving_sequence": "s1/nm-01/090"}
    generated = write_table(
        [_manifest_row("d", f"baseline/{j}", f"videos/{j}.mp4", attributes) for j in ("good", "bad", "lost")],
        tmp_path / "gen.parquet", MANIFEST,
    )  # fmt: skip
    videos = pl.DataFrame(
        [
            {
                "dataset": "d",
                "model": "m",
                "task": "restoration",
                "scenario": "baseline",
                "job_id": f"baseline/{j}",
                "ssim": s,
                "visual_error": None,
            }
            for j, s in (("good", 0.9), ("bad", 0.3), ("other", None))
        ]  # fmt: skip
    )
    chooser = StripChooser([generated], [real], metric="ssim", root=tmp_path)
    strips = chooser.choose(Tables({"videos": videos, "probes": pl.DataFrame()}, {}))
    assert [s.title.split(" · ")[1] for s in strips] == ["best SSIM = 0.900", "worst SSIM = 0.300"]
    assert (
        strips[0].generated == tmp_path / "videos" / "good.mp4"
        and strips[0].real == tmp_path / "videos" / "real.mp4"
    )
    lost = videos.with_columns(job_id=pl.lit("baseline/nowhere"))
    assert chooser.choose(Tables({"videos": lost[:1], "probes": pl.DataFrame()}, {})) == []
    assert "1 of 1 video(s) with a ssim value have no generated or real video" in chooser.notes[-1]


def test_snakemake_captions_render_as_rst():
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    folder = REPO / "workflow" / "report"
    names = {p.stem for p in folder.glob("*.rst")}
    assert {
        "workflow",
        "visual",
        "biometric",
        "transfer",
        "correlations",
        "guidance_density",
        "diagnostics",
        "report",
    } <= names
    snakemake = SimpleNamespace(
        config={"sweep": {"models": ["oracle", "posewarp-dense"]}}, wildcards={}, params={}
    )
    for path in folder.glob("*.rst"):
        text = (
            Environment(undefined=StrictUndefined).from_string(path.read_text()).render(snakemake=snakemake)
        )
        body = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})[
            "body"
        ]
        assert len(body) > 100, path
    assert "oracle, posewarp-dense" in Environment().from_string(
        (folder / "workflow.rst").read_text()
    ).render(snakemake=snakemake)


def test_diagnostics_section_shows_the_oracle_as_the_noise_floor(study):
    """One line per diagnostic, its numbers the oracle rows of the diagnostics table; none without them."""
    section = _section(study["html"].read_text(encoding="utf-8"), "diagnostics")
    lines = [_text(li) for li in re.findall(r"<li>(.*?)</li>", section, re.S)]
    diag = pl.read_parquet(study["tables"] / "diagnostics.parquet")
    oracle = diag.filter(pl.col("model") == "oracle")
    metrics = oracle.get_column("metric").unique(maintain_order=True).to_list()
    assert len(lines) == len(metrics) == 5
    for metric in metrics:
        line = next(x for x in lines if x.startswith(f"oracle (noise floor): {label(metric)} "))
        for r in oracle.filter(pl.col("metric") == metric).iter_rows(named=True):
            digits = decimals(metric)
            cell = f"{fmt(r['mean'], digits)} [{fmt(r['ci_low'], digits)}, {fmt(r['ci_high'], digits)}]"
            assert f"{cell} ({r['dataset']} · {r['scenario']})" in line
    without = Tables({"diagnostics": diag.filter(pl.col("model") != "oracle")}, {})
    assert noise_floor_lines(without["diagnostics"]) == []
    assert "noise floor" not in diagnostics_section(without, SimpleNamespace(html=lambda *a: ""))
