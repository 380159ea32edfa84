"""The report's optional GaitCrafter section (tables written by :mod:`pipeline.gaitcrafter.stage`): sample
quality, novel-identity distinctness and the augmentation experiment, with readings of the numbers."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.contracts import MANIFEST, ContractError, read_frame
from pipeline.study.aggregate import (
    OVERALL_CONDITIONS,
    RANK_METRICS,
)
from pipeline.study.report.common import MISSING, PERCENT_DECIMALS, fmt, ordered_names, unique_values
from pipeline.study.report.figures import png_bytes
from pipeline.study.report.sections import empty, esc, html_table, img
from pipeline.study.report.strips import (
    Strip,
    StripChooser,
    media_path,
    real_video_paths,
    sorted_groups,
    strip_image,
    strips_figure,
)

log = logging.getLogger(__name__)

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
    match, chance = (
        rows.get(k, {}).get("generated") for k in ("identity_match_gei", "identity_match_chance")
    )
    if match is not None and chance is not None:
        numbers += (
            f"; nearest identity (GEI IoU, same view) is the own one for {100 * match:.0f} % of clips "
            f"(chance {100 * chance:.0f} %"
        )
        ceiling = rows.get("identity_match_real", {}).get("generated")
        numbers += f"; real clips of the same length: {100 * ceiling:.0f} %)" if ceiling is not None else ")"
    poor_shape = person["generated"] < POOR_PERSON_LIKE * real_share
    poor_identity = (identity["generated"] or 0.0) < POOR_IDENTITY
    if poor_shape or poor_identity:
        what = " and ".join(
            w for w, bad in (("are not person-shaped", poor_shape), ("carry no identity", poor_identity)) if bad
        )
        return (
            f"The samples are poor — they {what}: {numbers}. The GaitCrafter numbers of this run (its sweep rows, "
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
        + f"<p>{esc(model_source(m))}</p>"
    )


def model_source(m: Mapping[str, Any]) -> str:
    """Where the model came from: the shipped checkpoint (and how it was made) or training in this run."""
    source = m.get("source") or {}
    if source.get("kind") == "pretrained":
        cpu = source.get("train_cpu_seconds")
        return (
            f"Model: the shipped checkpoint {source.get('path')} (made by `{source.get('made_by')}`"
            + (f", {cpu:.0f} CPU seconds of training" if isinstance(cpu, (int, float)) else "")
            + f"), used because its fingerprint {source.get('fingerprint')} (world and training config) matches this "
            "run's; nothing was trained in this run."
        )
    why = source.get("not_used_because")
    return "Model: trained in this run" + (
        f" (the shipped checkpoint {source.get('pretrained')} was not used: {why})." if why else "."
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
    conditions = [c for c in unique_values(table, "condition") if c not in OVERALL_CONDITIONS]
    metrics = ordered_names(overall.get_column("metric").to_list(), RANK_METRICS)
    by_variant = {v: {r["metric"]: r for r in part.iter_rows(named=True)} for (v,), part in
                  sorted_groups(overall, ["variant"])}  # fmt: skip
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
            *[_with_ci(cells.get(m, {})) for m in metrics],
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
        "the real identities (low-label); untrained = the same recogniser never trained (calibration). Brackets: "
        "95 % CI of a bootstrap over the test identities (all probes of a drawn identity together).</p>"
        + html_table(header, rows, [False] + [True] * (len(header) - 1))
        + "".join(f"<p>{esc(line)}</p>" for line in readings)
        + "".join(f'<p class="meta">{esc(n)}</p>' for n in notes)
    )


def _with_ci(row: Mapping[str, Any]) -> str:
    """A value with its bootstrap CI where the table has one ("82.6 [75.0, 89.6]")."""
    text = fmt(row.get("value"), PERCENT_DECIMALS)
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return text
    return f"{text} [{row['ci_low']:.{PERCENT_DECIMALS}f}, {row['ci_high']:.{PERCENT_DECIMALS}f}]"


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
    base = rank1["real"]
    for variant in ("real+novel", "real+same"):
        other = rank1.get(variant)
        if other is None or None in (other.get("ci_low"), base.get("ci_low")):
            continue
        if other["ci_low"] > base["ci_high"]:
            verdict = "beats real: the 95 % intervals do not overlap"
        elif other["ci_high"] < base["ci_low"]:
            verdict = "is below real: the 95 % intervals do not overlap"
        else:
            verdict = "is not distinguishable from real: the 95 % identity-bootstrap intervals overlap"
        lines.append(f"{variant} {_with_ci(other)} vs real {_with_ci(base)} Rank-1: {variant} {verdict}.")
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
    real = real_video_paths(chooser.real_manifests)
    strips, seen = [], {}
    for manifest in chooser.generated_manifests:
        frame = read_frame(manifest, MANIFEST).filter(pl.col("error").is_null())
        for row in frame.iter_rows(named=True):
            attributes = json.loads(row["attributes"] or "{}")
            if (attributes.get("notes") or {}).get("output") != "silhouette":
                continue
            key = (row["dataset"], attributes.get("model"))
            media, driving = media_path(row), real.get((row["dataset"], attributes.get("driving_sequence")))
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
