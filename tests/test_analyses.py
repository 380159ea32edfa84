"""The analyses stage's metrics, each against an independent plain implementation."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from pipeline.evaluation.motion import ANGLES, dtw_distance, joint_angles, motion_consistency
from pipeline.study import predictors as sp
from pipeline.study.aggregate import _draw_counts
from pipeline.study.analyses import ablation_table, domain_table


def textbook_dtw(x: list[list[float]], y: list[list[float]]) -> float:
    """Memoised recursion over (i, j) returning (cost, path length) of the cheapest warping path."""

    def local(i: int, j: int) -> float:
        return sum(abs(a - b) for a, b in zip(x[i], y[j], strict=True)) / len(x[i])

    @functools.cache
    def best(i: int, j: int) -> tuple[float, int]:
        if i == 0 and j == 0:
            return local(0, 0), 1
        options = []
        if i > 0 and j > 0:
            options.append(best(i - 1, j - 1))
        if i > 0:
            options.append(best(i - 1, j))
        if j > 0:
            options.append(best(i, j - 1))
        cost, length = min(options, key=lambda o: o[0])
        return cost + local(i, j), length + 1

    cost, length = best(len(x) - 1, len(y) - 1)
    return cost / length


def test_dtw_matches_textbook_recursion():
    rng = np.random.default_rng(0)
    for n, m in ((5, 5), (7, 12), (12, 4), (1, 6)):
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
        assert dtw_distance(x, y) == pytest.approx(textbook_dtw(x.tolist(), y.tolist()), rel=1e-12)


def test_dtw_is_zero_for_a_time_warped_copy_and_grows_with_a_change():
    t = np.linspace(0, 2 * np.pi, 30)
    curve = np.stack([np.sin(t), np.cos(t)], 1) * 30
    slowed = np.repeat(curve, 2, axis=0)  # every frame twice: a pure time warp
    assert dtw_distance(curve, slowed) == pytest.approx(0.0, abs=1e-12)
    assert dtw_distance(np.zeros((10, 2)), np.full((7, 2), 5.0)) == pytest.approx(5.0)  # every pair costs 5
    assert dtw_distance(curve, curve + 5.0) > 0
    with pytest.raises(ValueError, match="dimensions"):
        dtw_distance(curve, curve[:, :1])


def test_joint_angles_against_law_of_cosines():
    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 100, size=(4, 17, 3))
    angles = joint_angles(kp)
    from pipeline.skeleton import COCO17_INDEX as K

    for j, (_, a, v, b) in enumerate(ANGLES):
        for t in range(4):
            pa, pv, pb = kp[t, K[a], :2], kp[t, K[v], :2], kp[t, K[b], :2]
            ab, av, bv = math.dist(pa, pb), math.dist(pa, pv), math.dist(pb, pv)
            expected = math.degrees(math.acos((av**2 + bv**2 - ab**2) / (2 * av * bv)))
            assert angles[t, j] == pytest.approx(expected, abs=1e-9)


def test_motion_consistency_needs_confident_frames():
    from pipeline.skeleton import COCO17_INDEX as K

    rng = np.random.default_rng(2)
    kp = rng.uniform(0, 100, size=(10, 17, 3))
    kp[..., 2] = 1.0
    value, note = motion_consistency((kp, np.ones(10, bool)), (kp, np.ones(10, bool)))
    assert value == pytest.approx(0.0) and note is None
    low = kp.copy()
    low[:8, :, 2] = 0.1
    value, note = motion_consistency((low, np.ones(10, bool)), (kp, np.ones(10, bool)))
    assert value is None and "no joint angle" in note
    hidden = kp.copy()  # the far arm hidden (a side view): the other six angles are compared
    hidden[:, [K["left_elbow"], K["left_wrist"]], 2] = 0.05
    moved = kp.copy()
    moved[:, K["left_wrist"], :2] += 40.0  # only the hidden arm differs
    value, note = motion_consistency((hidden, np.ones(10, bool)), (moved, np.ones(10, bool)))
    assert value == pytest.approx(0.0) and note is None
    few = kp.copy()
    few[:7, K["right_knee"], 2] = 0.0  # the right knee angle seen in 3 of 10 frames: dropped, the rest kept
    assert motion_consistency((few, np.ones(10, bool)), (kp, np.ones(10, bool)))[0] == pytest.approx(0.0)
    invalid = np.zeros(10, bool)
    invalid[:3] = True
    value, note = motion_consistency((kp, invalid), (kp, np.ones(10, bool)))
    assert value is None and "no joint angle" in note


def test_weighted_spearman_equals_scipy_on_repeated_data():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=25).astype(float)  # many ties, like hit@1
    y = rng.normal(size=25)
    y[:5] = y[5]  # ties on the other side too
    assert sp.weighted_spearman(x, y, np.ones((1, 25)))[0] == pytest.approx(
        spearmanr(x, y).statistic, abs=1e-12
    )
    weights = rng.integers(0, 4, size=(6, 25)).astype(float)
    got = sp.weighted_spearman(x, y, weights)
    for row, rho in zip(weights, got, strict=True):
        reps = row.astype(int)
        expected = spearmanr(np.repeat(x, reps), np.repeat(y, reps)).statistic
        assert rho == pytest.approx(expected, abs=1e-12)


def test_spearman_rows_skips_absent_cells_like_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    present = rng.random((5, 9)) > 0.3
    for b, rho in enumerate(sp.spearman_rows(x, y, present)):
        keep = present[b]
        assert rho == pytest.approx(spearmanr(x[b, keep], y[b, keep]).statistic, abs=1e-12)


def test_cell_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    n = 60
    ids = rng.integers(0, 6, size=n)
    cells = rng.integers(0, 5, size=n)
    x, y = rng.normal(size=n), rng.normal(size=n) + 0.5 * cells
    codes, counts = sp.identity_counts(ids.astype(str), 50, 0)
    point, boot = sp.cell_rho_boot(x, y, cells, codes, counts)
    means = [(x[cells == c].mean(), y[cells == c].mean()) for c in range(5)]
    assert point == pytest.approx(spearmanr(*zip(*means, strict=True)).statistic)
    for b in range(5):
        reps = counts[b, codes].astype(int)
        xs, ys, cs = np.repeat(x, reps), np.repeat(y, reps), np.repeat(cells, reps)
        present = [c for c in range(5) if (cs == c).any()]
        mx = [xs[cs == c].mean() for c in present]
        my = [ys[cs == c].mean() for c in present]
        assert boot[b] == pytest.approx(spearmanr(mx, my).statistic, abs=1e-12)


def test_paired_bootstrap_of_rho_difference_against_a_loop():
    rng = np.random.default_rng(6)
    n = 40
    ids = rng.integers(0, 8, size=n).astype(str)
    y = rng.normal(size=n)
    good, weak = y + 0.3 * rng.normal(size=n), y + 3 * rng.normal(size=n)
    codes, counts = sp.identity_counts(ids, 200, 0)
    _, boot_good = sp.video_rho_boot(good, y, codes, counts)
    _, boot_weak = sp.video_rho_boot(weak, y, codes, counts)
    diff = np.abs(boot_good) - np.abs(boot_weak)
    labels = np.unique(ids)
    expected = []
    for row in _draw_counts(len(labels), 200, 0):
        reps = row[np.searchsorted(labels, ids)].astype(int)
        rg = spearmanr(np.repeat(good, reps), np.repeat(y, reps)).statistic
        rw = spearmanr(np.repeat(weak, reps), np.repeat(y, reps)).statistic
        expected.append(abs(rg) - abs(rw))
    np.testing.assert_allclose(diff, expected, atol=1e-12)
    low, high = sp.interval(diff)
    assert low > 0  # the good predictor beats the weak one


def _videos(rows):
    base = {"visual_error": None, "diagnostics_error": None, "reference_subject": None, "psnr": None,
            "lpips": None, "thickening_index": None, "foot_sliding": None, "arm_swing_error": None,
            "cadence_error": None, "flow_divergence": None}  # fmt: skip
    return pl.DataFrame([{**base, **r} for r in rows])


def test_ablation_delta_against_plain_pairs():
    rng = np.random.default_rng(7)
    videos, probes = [], []
    for arm in ("groundtruth", "estimated"):
        for k in range(12):
            job = f"job{k}"
            subject = f"s{k % 4}"
            common = {"dataset": "w", "model": f"posewarp-dense@{arm}", "task": "restoration", "scenario": "in_the_wild",
                      "job_id": job, "driving_subject": subject}  # fmt: skip
            videos.append({**common, "ssim": float(rng.uniform(0.5, 0.9))})
            probes.append(
                {
                    **common,
                    "recogniser": "deepgaitv2",
                    "error": None,
                    "hit@1": float(rng.integers(0, 2)),
                    "AP": float(rng.uniform()),
                }
            )
    videos.append({**videos[0], "model": "static", "ssim": 0.1})  # not an arm: left out
    videos, probes = _videos(videos), pl.DataFrame(probes)
    motion = pl.DataFrame(
        schema={
            **dict.fromkeys([*("dataset", "model", "task", "scenario", "job_id")], pl.String),
            "motion_dtw": pl.Float64,
        }
    )
    table = ablation_table(videos, probes, motion, n_boot=100)
    row = table.filter((pl.col("quantity") == "ssim") & (pl.col("scenario") == "in_the_wild")).row(
        0, named=True
    )
    gt = {r["job_id"]: r["ssim"] for r in videos.rows(named=True) if r["model"].endswith("@groundtruth")}
    est = {r["job_id"]: r["ssim"] for r in videos.rows(named=True) if r["model"].endswith("@estimated")}
    diffs = [est[j] - gt[j] for j in gt]
    assert (
        row["mean_diff"] == pytest.approx(sum(diffs) / len(diffs))
        and row["n"] == 12
        and row["n_identities"] == 4
    )
    assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
    rank1 = table.filter((pl.col("quantity") == "Rank-1") & (pl.col("scenario") == "all")).row(0, named=True)
    hits = {(r["model"], r["job_id"]): r["hit@1"] for r in probes.rows(named=True)}
    expected = np.mean(
        [100 * (hits[("posewarp-dense@estimated", j)] - hits[("posewarp-dense@groundtruth", j)]) for j in gt]
    )
    assert rank1["mean_diff"] == pytest.approx(expected) and rank1["recogniser"] == "deepgaitv2"


def test_domain_table_marks_cross_domain_rows():
    real = pl.DataFrame([
        {"dataset": d, "recogniser": "deepgaitv2", "protocol": "generic", "condition": "all", "metric": m, "value": v, "note": None}
        for d, m, v in (("a", "Rank-1", 90.0), ("b", "Rank-1", 40.0), ("b", "Rank-5", 70.0))
    ])  # fmt: skip
    biometric = pl.DataFrame(schema={"dataset": pl.String, "model": pl.String, "task": pl.String, "scenario": pl.String,
                                     "recogniser": pl.String, "identity": pl.String, "metric": pl.String, "mean": pl.Float64,
                                     "ci_low": pl.Float64, "ci_high": pl.Float64, "n": pl.Int64})  # fmt: skip
    table = domain_table(real, biometric, {"b": "a"})
    by = {r["scored"]: r for r in table.rows(named=True)}
    assert table.height == 2
    assert by["b"]["trained_on"] == "a" and by["b"]["domain"] == "cross-domain" and by["b"]["value"] == 40.0
    assert by["a"]["domain"] == "in-domain"


def _study(**changes) -> dict:
    import yaml

    from pipeline.study.config import validate_study

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / ".test" / "config.yaml").read_text())
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = config
        for key in keys:
            node = node[key]
        node[last] = value
    return validate_study(config)


def test_ablation_config_expands_to_two_arms_and_names_bad_keys():
    from pipeline.config import ConfigError
    from pipeline.generation.config import ablation_arm, ablation_models

    config = _study()
    arms = ablation_models(config)
    assert {m: s["guidance"] for m, s in arms.items()} == {
        "posewarp-sparse@groundtruth": "groundtruth",
        "posewarp-sparse@estimated": "estimated",
    }
    assert ablation_arm("posewarp-sparse@estimated") == ("posewarp-sparse", "estimated")
    assert ablation_arm("posewarp-sparse") is None and ablation_arm("x@y") is None
    with pytest.raises(ConfigError, match="'static'.*reads no pose guidance"):
        _study(sweep__guidance_ablation={"models": ["static"]})
    with pytest.raises(ConfigError, match="scenarios: 'nowhere'"):
        _study(sweep__guidance_ablation={"models": ["posewarp-sparse"], "scenarios": ["nowhere"]})
    with pytest.raises(ConfigError, match="datasets.tinyb.sweep_models: 'magic'"):
        _study(datasets__tinyb__sweep_models=["magic"])
    with pytest.raises(ConfigError, match="models.static.scenarios: 'nowhere'"):
        _study(models__static__scenarios=["baseline", "nowhere"])


def test_summary_sentences_quote_the_tables():
    from pipeline.study.analyses import ABLATION_TABLE, DOMAIN_TABLE, PREDICTOR_TESTS, PREDICTORS_TABLE
    from pipeline.study.report.analyses import analyses_sentences

    def frame(rows, contract):
        import pyarrow as pa

        return pl.from_arrow(pa.Table.from_pylist(rows, schema=contract.schema))

    cell = {"dataset": "w", "model": "posewarp-dense", "task": "restoration", "n": 12, "n_identities": 6}
    ablation = frame([
        {**cell, "scenario": "baseline", "recogniser": "deepgaitv2", "quantity": "Rank-1", "mean_groundtruth": 90.0,
         "mean_estimated": 80.0, "mean_diff": -10.0, "ci_low": -20.0, "ci_high": 0.0},
        {**cell, "scenario": "in_the_wild", "recogniser": "deepgaitv2", "quantity": "Rank-1", "mean_groundtruth": 75.0,
         "mean_estimated": 50.0, "mean_diff": -25.0, "ci_low": -41.7, "ci_high": -8.3},
        {**cell, "scenario": "in_the_wild", "recogniser": None, "quantity": "ssim", "mean_groundtruth": 0.8,
         "mean_estimated": 0.7, "mean_diff": -0.1, "ci_low": -0.12, "ci_high": -0.08},
    ], ABLATION_TABLE)  # fmt: skip
    tests = frame([
        {"dataset": "w", "recogniser": "deepgaitv2", "level": "video", "biometric": "AP", "temporal": "motion_dtw",
         "rho_temporal": -0.52, "rho_ssim": 0.21, "diff": 0.31, "ci_low": 0.05, "ci_high": 0.6, "n": 100,
         "n_identities": 8, "beats_ssim": True, "note": None},
    ], PREDICTOR_TESTS)  # fmt: skip
    real = {
        "recogniser": "deepgaitv2",
        "probes": "real",
        "metric": "Rank-1",
        "ci_low": None,
        "ci_high": None,
        "n": None,
    }
    domain = frame([
        {**real, "trained_on": "w", "scored": "w", "domain": "in-domain", "value": 93.1},
        {**real, "trained_on": "w", "scored": "b", "domain": "cross-domain", "value": 61.5},
    ], DOMAIN_TABLE)  # fmt: skip
    empty = pl.from_arrow(PREDICTORS_TABLE.empty())
    frames = {"guidance_ablation": ablation, "predictors": empty, "predictor_tests": tests, "domain": domain}
    ablation_s, predictors_s, domain_s = analyses_sentences(frames)
    assert "Rank-1 (deepgaitv2, in_the_wild) by -25.0 [-41.7, -8.3] points" in ablation_s
    assert "SSIM by -0.100 [-0.120, -0.080]" in ablation_s
    assert "ρ = -0.52 vs SSIM 0.21, Δ|ρ| 0.31 [0.05, 0.60] (beats SSIM)" in predictors_s
    assert "trained on w reach real-probe Rank-1 on b of deepgaitv2 61.5 vs 93.1 in-domain" in domain_s
