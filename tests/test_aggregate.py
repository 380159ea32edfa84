"""Aggregation: identity bootstrap, Rank-k/mAP from ranks, transfer, failures, Spearman, guidance density."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from pipeline.contracts import CONTRACTS, ContractError, read_table, write_table
from pipeline.evaluation.metrics import DIAGNOSTICS, DIAGNOSTICS_INPUT, VISUAL_METRICS
from pipeline.evaluation.retrieval import PROBE_RESULTS, REAL_RETRIEVAL
from pipeline.study.aggregate import (
    OUTPUTS,
    biometric_table,
    bootstrap_ci,
    correlations,
    guidance_density,
    load_inputs,
    parse_notes,
    run_aggregate,
    transfer_table,
    visual_table,
)

# ---------------------------------------------------------------------------------------------
# Synthetic study (also used by test_report.py)

MODELS = {  # model: (ssim, psnr, lpips, probability of a Rank-1 hit)
    "oracle": (0.99, 45.0, 0.01, 0.9),
    "static": (0.55, 14.0, 0.45, 0.05),
    "posewarp-sparse": (0.70, 18.0, 0.30, 0.25),
    "posewarp-dense": (0.78, 20.0, 0.22, 0.40),
    "magicanimate": (0.88, 24.0, 0.12, 0.10),
}
SCENARIOS = {
    "baseline": "restoration",
    "off_pose": "restoration",
    "in_the_wild": "restoration",
    "transfer": "transfer",
}
RECOGNISERS = {"gaitbase": 1.0, "deepgaitv2": 0.8}


def _job(
    dataset: str, model: str, scenario: str, job_id: str, driving: str, reference: str, error: str | None
) -> dict:
    return {
        "dataset": dataset, "model": model, "task": SCENARIOS.get(scenario, "restoration"), "scenario": scenario,
        "job_id": job_id, "driving_subject": driving, "reference_subject": reference, "error": error,
    }  # fmt: skip


def synthetic_inputs(n_identities: int = 8, seed: int = 0, dataset: str = "world") -> dict[str, pl.DataFrame]:
    """Plausible visual metrics, diagnostics, probe results and real baseline; odd identities have two videos."""
    rng = np.random.default_rng(seed)
    visual, diagnostics, probes = [], [], []
    ids = [f"s{i:02d}" for i in range(n_identities)]
    for model, (ssim, psnr, lpips, p_hit) in MODELS.items():
        for scenario, task in SCENARIOS.items():
            hard = 0.85 if scenario == "in_the_wild" else 1.0
            for i, subject in enumerate(ids):
                for k in range(1 + i % 2):
                    reference = ids[(i + 1) % n_identities] if task == "transfer" else subject
                    error = "generation failed: CUDA out of memory" if rng.random() < 0.04 else None
                    base = _job(
                        dataset,
                        model,
                        scenario,
                        f"{scenario}/{subject}/nm-0{k}/090",
                        subject,
                        reference,
                        error,
                    )
                    ok = error is None
                    visual.append({
                        **base, "frames": 48,
                        "ssim": float(np.clip(ssim * hard + rng.normal(0, 0.03), -1, 1)) if ok else None,
                        "psnr": float(psnr * hard + rng.normal(0, 1.5)) if ok else None,
                        "lpips": float(max(0.0, lpips / hard + rng.normal(0, 0.03))) if ok and model != "static" else None,
                        "notes": json.dumps({"notes": ["resampled 60 -> 48 frames"], "reasons": {"lpips": "no LPIPS model"}})
                        if model == "static" else json.dumps([]),
                    })  # fmt: skip
                    means = (1 - ssim, 2 * lpips, 0.1 + lpips, lpips, 0.05)
                    diagnostics.append(
                        {**base, "notes": None, **{m: float(abs(rng.normal(v, 0.1))) if ok else None for m, v in zip(DIAGNOSTICS, means, strict=True)}}
                    )  # fmt: skip
                    for recogniser, factor in RECOGNISERS.items():
                        p = p_hit * factor * hard
                        rank = int(1 if rng.random() < p else rng.integers(2, 40)) if ok else None
                        ref_rank = rank
                        if task == "transfer" and ok:
                            ref_rank = int(1 if rng.random() < (1 - p) / 2 else rng.integers(2, 40))
                        probes.append({
                            **base, "recogniser": recogniser, "driving_rank": rank, "reference_rank": ref_rank,
                            "driving_ap": None if rank is None else 1.0 / rank,
                            "reference_ap": None if ref_rank is None else 1.0 / ref_rank,
                        })  # fmt: skip
    real = [
        {
            "dataset": dataset,
            "recogniser": r,
            "protocol": "generic",
            "condition": condition,
            "metric": m,
            "value": v * f,
        }
        # pipeline.evaluation.retrieval names the all-probes group "Overall"; the contract also allows "all"
        for (r, f), condition in zip(RECOGNISERS.items(), ("Overall", "all"), strict=True)
        for m, v in (("Rank-1", 92.0), ("Rank-5", 98.0), ("mAP", 80.0))
    ]
    return {
        "visual": _typed(visual, VISUAL_METRICS),
        "diagnostics": _typed(diagnostics, DIAGNOSTICS_INPUT),
        "probes": _typed(probes, PROBE_RESULTS),
        "real": _typed(real, REAL_RETRIEVAL),
    }


def _typed(rows: list[dict], contract) -> pl.DataFrame:
    """Rows → a DataFrame with the contract's columns and types (missing columns null)."""
    import pyarrow as pa

    filled = [{name: row.get(name) for name in contract.schema.names} for row in rows]
    return pl.from_arrow(contract.validate(pa.Table.from_pylist(filled, schema=contract.schema)))


def write_inputs(folder: Path, inputs: dict[str, pl.DataFrame]) -> dict[str, Path]:
    contracts = {
        "visual": VISUAL_METRICS,
        "diagnostics": DIAGNOSTICS_INPUT,
        "probes": PROBE_RESULTS,
        "real": REAL_RETRIEVAL,
    }
    return {
        name: write_table(df.to_arrow(), folder / f"{name}.parquet", contracts[name])
        for name, df in inputs.items()
    }


def _probe(job: str, subject: str, rank: int | None, ap: float | None, **extra) -> dict:
    row = _job(
        "d",
        extra.pop("model", "m"),
        extra.pop("scenario", "baseline"),
        job,
        subject,
        extra.pop("reference", subject),
        extra.pop("error", None),
    )
    return {
        **row,
        "recogniser": "r",
        "driving_rank": rank,
        "reference_rank": rank,
        "driving_ap": ap,
        "reference_ap": ap,
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Bootstrap


def test_contracts_are_registered():
    for name in (
        "visual_metrics",
        "diagnostics",
        "probe_results",
        "real_retrieval",
        *[c.name for c in OUTPUTS.values()],
    ):
        assert name in CONTRACTS


def test_bootstrap_of_constant_values_has_zero_width():
    ci = bootstrap_ci([0.7] * 12, [f"id{i % 4}" for i in range(12)])
    assert ci.estimate == pytest.approx(0.7)
    assert ci.low == pytest.approx(0.7) and ci.high == pytest.approx(0.7)
    assert (ci.n_values, ci.n_groups) == (12, 4)


def test_bootstrap_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"id{i}" for i in range(20)], 3)
    values = rng.normal(0, 1, 20)[np.repeat(np.arange(20), 3)] + rng.normal(0, 0.2, 60)
    ci = bootstrap_ci(values, groups, seed=3)
    assert ci.low < values.mean() < ci.high
    assert ci.estimate == pytest.approx(values.mean())
    assert bootstrap_ci(values, groups, seed=3) == ci
    assert bootstrap_ci(values, groups, seed=4) != ci


def test_bootstrap_resamples_identities_not_videos():
    # identity A has 40 videos at 0, five identities have one video at 1: whether A is drawn moves the
    # mean a lot, which per-video resampling (40 of 45 draws are A's videos) cannot see
    values = np.r_[np.zeros(40), np.ones(5)]
    groups = ["A"] * 40 + [f"B{i}" for i in range(5)]
    by_identity = bootstrap_ci(values, groups)
    by_video = bootstrap_ci(values, np.arange(45))  # every video its own group = ordinary bootstrap
    assert by_identity.estimate == by_video.estimate == pytest.approx(5 / 45)
    assert by_identity.high - by_identity.low > 3 * (by_video.high - by_video.low)
    assert by_identity.high == pytest.approx(1.0)  # resamples without A contain only ones


def test_bootstrap_mean_fast_path_equals_explicit_resampling():
    rng = np.random.default_rng(2)
    values = rng.random(30)
    groups = [f"g{i % 7}" for i in range(30)]
    fast = bootstrap_ci(values, groups, n=500, seed=5)
    explicit = bootstrap_ci(values, groups, stat=lambda x: float(np.mean(x)), n=500, seed=5)
    assert fast.low == pytest.approx(explicit.low) and fast.high == pytest.approx(explicit.high)
    median = bootstrap_ci(values, groups, stat=np.median, n=500, seed=5)
    assert median.estimate == pytest.approx(np.median(values)) and median.low <= median.high


def test_bootstrap_edge_cases():
    single = bootstrap_ci([1.0, 2.0], ["a", "a"])
    assert single.low is None and single.high is None and single.estimate == pytest.approx(1.5)
    assert bootstrap_ci([], []).n_values == 0
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_ci([1.0, 2.0], ["a"])


# ---------------------------------------------------------------------------------------------
# Tables


def test_rank_k_and_map_from_ranks():
    probes = _typed(
        [
            _probe("j1", "a", 1, 1.0),
            _probe("j2", "b", 3, 0.4),
            _probe("j3", "c", 7, 0.1),
            _probe("j4", "d", None, None),
        ],
        PROBE_RESULTS,
    )
    table = biometric_table(probes, n_boot=200).table
    row = {r["metric"]: r for r in table.iter_rows(named=True)}
    assert set(table.get_column("identity")) == {"driving"}  # reference identity only for transfer
    assert row["Rank-1"]["mean"] == pytest.approx(25.0)
    assert row["Rank-5"]["mean"] == pytest.approx(50.0)  # null rank is a miss
    assert row["mAP"]["mean"] == pytest.approx((1.0 + 0.4 + 0.1 + 0.0) / 4 * 100)
    assert (
        row["Rank-1"]["n"] == 4 and row["Rank-1"]["n_no_gallery"] == 1 and row["Rank-1"]["n_identities"] == 4
    )
    assert row["Rank-1"]["ci_low"] <= 25.0 <= row["Rank-1"]["ci_high"]


def test_transfer_reports_driving_and_reference_identity():
    rows = [
        {
            **_probe("t1", "a", 4, 0.25, scenario="transfer", reference="b"),
            "reference_rank": 1,
            "reference_ap": 1.0,
        },
        {
            **_probe("t2", "b", 1, 1.0, scenario="transfer", reference="c"),
            "reference_rank": 2,
            "reference_ap": 0.5,
        },
        {
            **_probe("t3", "c", None, None, scenario="transfer", reference="a"),
            "reference_rank": 1,
            "reference_ap": 1.0,
        },
        _probe("r1", "a", 1, 1.0),
    ]
    probes = _typed(rows, PROBE_RESULTS)
    table = biometric_table(probes, n_boot=200).table
    transfer = table.filter(pl.col("task") == "transfer")
    value = {(r["identity"], r["metric"]): r["mean"] for r in transfer.iter_rows(named=True)}
    assert value["driving", "Rank-1"] == pytest.approx(100 / 3)
    assert value["reference", "Rank-1"] == pytest.approx(200 / 3)
    assert value["reference", "mAP"] == pytest.approx((1.0 + 0.5 + 1.0) / 3 * 100)
    assert set(table.filter(pl.col("task") == "restoration").get_column("identity")) == {"driving"}
    shares = {r["metric"]: r["mean"] for r in transfer_table(probes, n_boot=200).table.iter_rows(named=True)}
    # t1: reference 1 < driving 4; t2: driving first; t3: driving absent (null) → reference above
    assert shares["reference ranked above driving"] == pytest.approx(200 / 3)
    assert shares["driving ranked above reference"] == pytest.approx(100 / 3)


def test_error_rows_are_excluded_and_counted():
    rows = [
        _probe("j1", "a", 5, 0.2),
        _probe("j2", "b", 9, 0.1),
        _probe("j3", "c", 1, 1.0, error="generation failed: boom"),  # would make Rank-1 33 %
        {**_probe("j4", "x", 1, 1.0), "driving_subject": None},  # cannot be resampled by identity
    ]
    table = biometric_table(_typed(rows, PROBE_RESULTS), n_boot=100).table
    rank1 = table.filter(pl.col("metric") == "Rank-1").row(0, named=True)
    assert rank1["mean"] == 0.0
    assert (rank1["n"], rank1["n_rows"], rank1["n_failed"]) == (2, 4, 2)


def test_visual_table_ignores_nulls_and_rejects_nan():
    rows = [
        {
            **_job("d", "m", "baseline", f"j{i}", f"s{i}", f"s{i}", None),
            "ssim": 0.5 + 0.1 * i,
            "psnr": 20.0,
            "lpips": None,
        }
        for i in range(3)
    ]
    visual = _typed(rows, VISUAL_METRICS)
    table = {r["metric"]: r for r in visual_table(visual, n_boot=100).table.iter_rows(named=True)}
    assert table["ssim"]["mean"] == pytest.approx(0.6) and table["ssim"]["n"] == 3
    assert table["lpips"]["mean"] is None and table["lpips"]["n"] == 0
    bad = visual.with_columns(ssim=pl.lit(float("nan")))
    with pytest.raises(ContractError, match="ssim"):
        visual_table(bad)
    with pytest.raises(ContractError, match="driving_rank"):
        biometric_table(_typed([_probe("j", "a", 0, 0.5)], PROBE_RESULTS))


def test_spearman_matches_scipy_at_video_and_cell_level():
    inputs = synthetic_inputs(n_identities=6, seed=4)
    result = correlations(inputs["visual"], inputs["probes"], n_boot=100)
    table = result.table
    assert any("oracle" in note for note in result.notes)
    # video level, by hand: generator videos without error joined with the same video's probe row
    v = inputs["visual"].filter(pl.col("error").is_null() & ~pl.col("model").is_in(["oracle", "static"]))
    p = inputs["probes"].filter(pl.col("error").is_null() & (pl.col("recogniser") == "gaitbase"))
    joined = v.join(p, on=["dataset", "model", "task", "scenario", "job_id"]).drop_nulls("psnr")
    rr = (1.0 / joined.get_column("driving_rank").cast(pl.Float64)).to_numpy()
    expected = spearmanr(joined.get_column("psnr").to_numpy(), rr)
    row = table.filter(
        (pl.col("level") == "video") & (pl.col("task") == "all") & (pl.col("recogniser") == "gaitbase")
        & (pl.col("visual_metric") == "psnr") & (pl.col("biometric_metric") == "RR")
    ).row(0, named=True)  # fmt: skip
    assert row["rho"] == pytest.approx(expected.statistic) and row["p_value"] == pytest.approx(
        expected.pvalue
    )
    assert row["n"] == joined.height
    # cell level: cell means of the two tables
    vt = visual_table(inputs["visual"], n_boot=50).table.filter(pl.col("metric") == "ssim")
    bt = biometric_table(inputs["probes"], n_boot=50).table.filter(
        (pl.col("metric") == "Rank-1")
        & (pl.col("identity") == "driving")
        & (pl.col("recogniser") == "gaitbase")
    )
    cells = vt.join(bt, on=["dataset", "model", "task", "scenario"]).filter(
        ~pl.col("model").is_in(["oracle", "static"])
    )
    expected = spearmanr(cells.get_column("mean").to_numpy(), cells.get_column("mean_right").to_numpy())
    row = table.filter(
        (pl.col("level") == "cell") & (pl.col("task") == "all") & (pl.col("recogniser") == "gaitbase")
        & (pl.col("visual_metric") == "ssim") & (pl.col("biometric_metric") == "Rank-1")
    ).row(0, named=True)  # fmt: skip
    assert row["rho"] == pytest.approx(expected.statistic) and row["n"] == cells.height


def test_spearman_reports_why_rho_is_null():
    rows = [
        {**_job("d", "m", "baseline", f"j{i}", f"s{i}", f"s{i}", None), "ssim": 0.5, "psnr": 20.0 + i}
        for i in range(4)
    ]
    probes = [_probe(f"j{i}", f"s{i}", 1 + i, 1 / (1 + i)) for i in range(4)]
    table = correlations(
        _typed(rows, VISUAL_METRICS), _typed(probes, PROBE_RESULTS), controls=(), n_boot=20
    ).table
    video = table.filter((pl.col("level") == "video") & (pl.col("task") == "all"))
    ssim = video.filter(pl.col("visual_metric") == "ssim").row(0, named=True)
    assert ssim["rho"] is None and "constant" in ssim["note"]
    psnr_rr = video.filter((pl.col("visual_metric") == "psnr") & (pl.col("biometric_metric") == "RR")).row(
        0, named=True
    )
    assert psnr_rr["rho"] == pytest.approx(-1.0)
    cell = table.filter(pl.col("level") == "cell").row(0, named=True)
    assert cell["rho"] is None and "only 1 pair" in cell["note"]


def test_guidance_density_pairs_by_job():
    def video(model, job, subject, ssim, error=None):
        return {
            **_job("d", model, "baseline", job, subject, subject, error),
            "ssim": ssim,
            "psnr": 20.0,
            "lpips": 0.2,
        }

    rows = [
        video("posewarp-sparse", "j1", "a", 0.50), video("posewarp-dense", "j1", "a", 0.60),
        video("posewarp-sparse", "j2", "a", 0.40), video("posewarp-dense", "j2", "a", 0.70),
        video("posewarp-sparse", "j3", "b", 0.55), video("posewarp-dense", "j3", "b", 0.50),
        video("posewarp-sparse", "j4", "c", 0.10, error="failed"), video("posewarp-dense", "j4", "c", 0.90),
        video("posewarp-dense", "j5", "c", 0.99),  # no sparse partner
    ]  # fmt: skip
    probes = [
        {**_probe("j1", "a", 1, 1.0, model="posewarp-dense")}, {**_probe("j1", "a", 2, 0.5, model="posewarp-sparse")},
    ]  # fmt: skip
    empty_diag = pl.from_arrow(DIAGNOSTICS_INPUT.empty())
    table = guidance_density(
        _typed(rows, VISUAL_METRICS), empty_diag, _typed(probes, PROBE_RESULTS), n_boot=200
    ).table
    ssim = table.filter((pl.col("quantity") == "ssim") & (pl.col("scenario") == "baseline")).row(
        0, named=True
    )
    assert ssim["n_pairs"] == 3 and ssim["n_identities"] == 2
    assert ssim["mean_diff"] == pytest.approx(((0.6 - 0.5) + (0.7 - 0.4) + (0.5 - 0.55)) / 3)
    assert ssim["mean_sparse"] == pytest.approx((0.5 + 0.4 + 0.55) / 3)
    assert ssim["ci_low"] <= ssim["mean_diff"] <= ssim["ci_high"]
    rank1 = table.filter((pl.col("quantity") == "Rank-1") & (pl.col("scenario") == "baseline")).row(
        0, named=True
    )
    assert rank1["recogniser"] == "r" and rank1["mean_diff"] == pytest.approx(100.0) and rank1["n_pairs"] == 1
    assert not table.filter(pl.col("scenario") == "all").is_empty()


def test_guidance_density_without_one_model_is_empty_with_a_note():
    inputs = synthetic_inputs(n_identities=3)
    visual = inputs["visual"].filter(pl.col("model") != "posewarp-dense")
    result = guidance_density(visual, inputs["diagnostics"].clear(), inputs["probes"].clear(), n_boot=10)
    assert result.table.is_empty() and "posewarp-dense" in result.notes[0]


def test_load_inputs_concatenates_and_checks_the_key_across_files(tmp_path):
    inputs = synthetic_inputs(n_identities=3)
    visual = inputs["visual"]
    half = visual.height // 2
    a = write_table(visual[:half].to_arrow(), tmp_path / "a.parquet", VISUAL_METRICS)
    b = write_table(visual[half:].to_arrow(), tmp_path / "b.parquet", VISUAL_METRICS)
    assert load_inputs([a, b], VISUAL_METRICS).height == visual.height
    assert load_inputs(None, VISUAL_METRICS).is_empty()
    with pytest.raises(ContractError, match="duplicate key"):
        load_inputs([a, a], VISUAL_METRICS)
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        load_inputs(tmp_path / "missing.parquet", VISUAL_METRICS)


def test_run_aggregate_writes_every_table_as_parquet_and_csv(tmp_path):
    inputs = synthetic_inputs(n_identities=5, seed=2)
    paths = write_inputs(tmp_path / "in", inputs)
    written = run_aggregate(
        tmp_path / "out", visual=paths["visual"], diagnostics=[paths["diagnostics"]], probes=paths["probes"],
        real=paths["real"], n_boot=100, recogniser_notes={"deepgaitv2": "randomly initialised small backbone"},
    )  # fmt: skip
    assert len(written) == 2 * len(OUTPUTS)
    for name, contract in OUTPUTS.items():
        table = read_table(tmp_path / "out" / f"{name}.parquet", contract)
        assert pl.read_csv(tmp_path / "out" / f"{name}.csv").height == table.num_rows
    failures = pl.read_parquet(tmp_path / "out" / "failures.parquet")
    errors = inputs["visual"].get_column("error").is_not_null().sum()
    assert failures.filter(pl.col("table") == "visual_metrics").get_column("n_failed").sum() == errors
    notes = pl.read_parquet(tmp_path / "out" / "notes.parquet")
    assert any("randomly initialised" in n for n in notes.get_column("note"))
    assert any(n == "lpips is null: no LPIPS model" for n in notes.get_column("note"))
    visual = pl.read_parquet(tmp_path / "out" / "visual.parquet")
    assert visual.get_column("model").unique(maintain_order=True).to_list()[:2] == ["oracle", "static"]


def test_notes_are_parsed_into_readable_lines():
    metrics_style = {
        "alignment": ["resampled 60 -> 48 frames"], "null_reasons": {"lpips": "no LPIPS model"}, "policy": "real mask",
        "lpips": "null: AlexNet backbone weights not found", "empty": [],
    }  # fmt: skip
    assert parse_notes(json.dumps(metrics_style)) == [
        "alignment: resampled 60 -> 48 frames",
        "lpips is null: no LPIPS model",
        "policy: real mask",
        "lpips: null: AlexNet backbone weights not found",
    ]
    assert parse_notes(json.dumps({"notes": ["a", "b"], "reasons": {"ssim": "empty mask"}})) == [
        "a",
        "b",
        "ssim is null: empty mask",
    ]
    assert (
        parse_notes('["x"]') == ["x"] and parse_notes("not json") == ["not json"] and parse_notes(None) == []
    )


def test_run_aggregate_with_no_inputs_writes_empty_tables(tmp_path):
    run_aggregate(tmp_path, n_boot=10)
    assert pl.read_parquet(tmp_path / "visual.parquet").is_empty()
    notes = pl.read_parquet(tmp_path / "notes.parquet").get_column("note").to_list()
    assert any("visual table is empty" in n for n in notes) and any("real-probe baseline" in n for n in notes)
