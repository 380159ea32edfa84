"""Retrieval metrics against an independent, plain-loop implementation written here.

The reference below shares no code with ``pipeline.evaluation.retrieval``: distances are Python loops over
pairs, parts and channels; each probe's gallery is ordered with ``sorted`` on the key
``(distance, gallery position)`` — the documented tie rule (ties in gallery order); Rank-k, AP and INP
are counted by walking that list. Random problems use three kinds of embeddings: continuous ones,
small integers (Euclidean distances then tie exactly, since every squared distance is an exact
integer) and ±1 entries with 4 channels (cosine distances tie exactly, as every normalised entry is
±0.5).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from pipeline.evaluation.retrieval import (
    PROTOCOLS,
    Protocol,
    evaluate,
    evaluate_generated,
    get_protocol,
    part_distances,
    rank_probes,
)

TOL = 1e-12
N_PROBLEMS = 12

# ---------------------------------------------------------------------------------------------
# The independent reference


def ref_distance(x: np.ndarray, y: np.ndarray, metric: str) -> float:
    """x, y: [C, P]. Euclidean per part then averaged, or 1 - mean per-part cosine."""
    channels, parts = x.shape
    total = 0.0
    for p in range(parts):
        if metric == "euc":
            s = 0.0
            for c in range(channels):
                s += (float(x[c, p]) - float(y[c, p])) ** 2
            total += math.sqrt(s)
        else:
            nx = math.sqrt(sum(float(x[c, p]) ** 2 for c in range(channels)))
            ny = math.sqrt(sum(float(y[c, p]) ** 2 for c in range(channels)))
            nx, ny = max(nx, 1e-12), max(ny, 1e-12)
            total += sum(float(x[c, p]) / nx * float(y[c, p]) / ny for c in range(channels))
    return total / parts if metric == "euc" else 1.0 - total / parts


def ref_ranking(probe: np.ndarray, gallery: list[np.ndarray], metric: str, allowed: list[int]) -> list[int]:
    """Gallery positions (only ``allowed`` ones) by ascending distance, ties by position."""
    return sorted(allowed, key=lambda j: (ref_distance(probe, gallery[j], metric), j))


def ref_scores(order: list[int], labels: list[str], label: str) -> tuple[int, int, float, float]:
    """(first match rank or 0, #matches, AP, INP) of one ranked list."""
    first, hits, precision_sum, last = 0, 0, 0.0, 0
    for i, j in enumerate(order, start=1):
        if labels[j] == label:
            hits += 1
            precision_sum += hits / i
            last = i
            if not first:
                first = i
    if not hits:
        return 0, 0, 0.0, 0.0
    return first, hits, precision_sum / hits, hits / last


def ref_ranked_protocol(
    rows: list[dict],
    gallery_rows: list[dict],
    metric: str,
    ranks: tuple[int, ...],
    no_match: str,
    same_view: str,
    target: str = "subject",
) -> dict[str, float]:
    """Rank-k / mAP / mINP over ``rows`` (probes) against ``gallery_rows`` (CCGR-MINI / generic)."""
    gallery = [g["emb"] for g in gallery_rows]
    labels = [g["subject"] for g in gallery_rows]
    results = []
    for q in rows:
        allowed = []
        for j, g in enumerate(gallery_rows):
            same = g["view"] == q["view"]
            if same_view == "exclude" and same:
                continue
            if same_view == "exclude_same_id" and same and g["subject"] == q[target]:
                continue
            allowed.append(j)
        order = ref_ranking(q["emb"], gallery, metric, allowed)
        results.append(ref_scores(order, labels, q[target]))
    used = [r for r in results if r[1] > 0] if no_match == "skip" else results
    out: dict[str, float] = {}
    for k in ranks:
        out[f"Rank-{k}"] = 100.0 * sum(1 for r in used if 0 < r[0] <= k) / len(used) if used else math.nan
    out["mAP"] = 100.0 * sum(r[2] for r in used) / len(used) if used else math.nan
    out["mINP"] = 100.0 * sum(r[3] for r in used) / len(used) if used else math.nan
    out["probes"] = len(used)
    out["no_match"] = sum(1 for r in results if r[1] == 0)
    return out


SUSTECH_GROUPS = {
    "Normal": ["01-nm"],
    "Bag": ["bg"],
    "Clothing": ["cl"],
    "Carrying": ["cr"],
    "Umbrella": ["ub"],
    "Uniform": ["uf"],
    "Occlusion": ["oc"],
    "Night": ["nt"],
    "Overall": ["01", "02", "03", "04"],
}


def ref_sustech(rows: list[dict], metric: str) -> dict[tuple[str, int], float]:
    """single_view_gallery_evaluation with de_diag, written as the formula in the reference notes."""
    test = [r for r in rows if r["role"] != "train"]
    views = sorted({r["view"] for r in test})
    gallery_all = [r for r in test if "00-nm" in r["condition"]]
    out = {}
    for group, subs in SUSTECH_GROUPS.items():
        probes = [r for r in test if "00-nm" not in r["condition"] and any(s in r["condition"] for s in subs)]
        for k in range(1, 6):
            per_v1 = []
            for v1 in views:
                cell_probes = [q for q in probes if q["view"] == v1]
                if not cell_probes:
                    continue
                accs = []
                for v2 in views:
                    if v2 == v1:
                        continue
                    gallery = [g for g in gallery_all if g["view"] == v2]
                    hits = 0
                    for q in cell_probes:
                        order = ref_ranking(
                            q["emb"], [g["emb"] for g in gallery], metric, list(range(len(gallery)))
                        )
                        if any(gallery[j]["subject"] == q["subject"] for j in order[:k]):
                            hits += 1
                    accs.append(100.0 * hits / len(cell_probes))
                per_v1.append(sum(accs) / (len(views) - 1))
            out[(group, k)] = sum(per_v1) / len(per_v1) if per_v1 else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# Random problems


def random_embeddings(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=(n, 5, 3))
    if kind == "int":  # exact Euclidean ties
        return rng.integers(-1, 2, size=(n, 2, 2)).astype(float)
    return rng.choice([-1.0, 1.0], size=(n, 4, 2))  # "sign": exact cosine ties


CONDITIONS = ["00-nm", "00-nm", "01-nm", "02-bg", "03-cl", "01-cr", "02-ub", "03-nt", "04-oc", "01-uf"]


def random_rows(rng: np.random.Generator, kind: str, *, roles: str) -> list[dict]:
    """A random test set; some subjects only ever appear as probes (no gallery match)."""
    n = int(rng.integers(25, 45))
    emb = random_embeddings(rng, n, kind)
    rows = []
    for i in range(n):
        condition = str(rng.choice(CONDITIONS))
        if roles == "sustech":
            role = "gallery" if "00-nm" in condition else "probe"
        else:
            role = "gallery" if rng.random() < 0.35 else "probe"
        subject = f"s{int(rng.integers(0, 9))}"
        if subject == "s8" and role == "gallery":  # s8 never has a gallery sequence
            role = "probe"
            condition = "01-nm" if roles == "sustech" else condition
        rows.append(
            {
                "sequence_id": f"seq{i:03d}",
                "subject": subject,
                "condition": condition,
                "view": f"{int(rng.integers(0, 4)) * 30:03d}",
                "role": role,
                "emb": emb[i],
            }
        )
    rows.append({**rows[0], "sequence_id": "train0", "role": "train"})  # never evaluated
    return rows


def frame(rows: list[dict], **extra_columns: list) -> pl.DataFrame:
    c, p = rows[0]["emb"].shape
    return pl.DataFrame(
        {
            "sequence_id": [r["sequence_id"] for r in rows],
            "subject": [r["subject"] for r in rows],
            "condition": [r["condition"] for r in rows],
            "view": [r["view"] for r in rows],
            "role": [r["role"] for r in rows],
            "embedding": [r["emb"].reshape(-1).tolist() for r in rows],
            "parts": [p] * len(rows),
            "channels": [c] * len(rows),
            "error": [None] * len(rows),
            **extra_columns,
        },
        schema_overrides={"error": pl.Utf8},
    )


def value(summary: pl.DataFrame, group: str, metric: str) -> float:
    return summary.filter((pl.col("group") == group) & (pl.col("metric") == metric))["value"].item()


def assert_close(a: float, b: float) -> None:
    if math.isnan(b):
        assert math.isnan(a)
    else:
        assert abs(a - b) <= TOL, (a, b)


CASES = [
    (seed, kind, metric)
    for seed in range(N_PROBLEMS)
    for kind, metric in (("normal", "euc"), ("normal", "cos"), ("int", "euc"), ("sign", "cos"))
]


# ---------------------------------------------------------------------------------------------
# Distances


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_distances_match_loops_and_chunking_and_torch(metric: str) -> None:
    rng = np.random.default_rng(7)
    q, g = rng.normal(size=(9, 6, 3)), rng.normal(size=(11, 6, 3))
    q[0, :, 1] = 0.0  # an all-zero part: cos keeps it at zero instead of NaN
    ref = np.array([[ref_distance(a, b, metric) for b in g] for a in q])
    full = part_distances(q, g, metric=metric)
    assert np.abs(full - ref).max() < TOL
    # BLAS may block a 2-row product differently: equal up to rounding, not bit for bit.
    assert np.abs(part_distances(q, g, metric=metric, chunk_rows=2) - full).max() < TOL
    assert np.abs(part_distances(q, g, metric=metric, backend="torch") - ref).max() < TOL
    assert np.abs(part_distances(q, g, metric=metric, dtype=np.float32) - ref).max() < 1e-4


def test_distance_is_per_part_not_flattened() -> None:
    """Two parts at distances 3 and 4: per-part mean 3.5, flattened Euclidean would be 5."""
    x = np.zeros((1, 1, 2))
    y = np.array([[[3.0, 4.0]]])
    assert part_distances(x, y)[0, 0] == pytest.approx(3.5, abs=1e-15)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="metric"):
        part_distances(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), metric="l1")
    with pytest.raises(ValueError, match=r"\[N, C, P\]"):
        part_distances(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        part_distances(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="same_view"):
        Protocol(name="x", same_view="drop")
    with pytest.raises(ValueError, match="unknown retrieval protocol"):
        get_protocol("casia")


# ---------------------------------------------------------------------------------------------
# Ranking and the tie rule


def test_ties_are_broken_by_gallery_order() -> None:
    """Three gallery items at the same distance: the one listed first ranks first."""
    dist = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    gallery = np.array([5, 7, 7])
    ranked = rank_probes(dist, np.array([7, 5]), gallery)
    assert ranked.first_match.tolist() == [2, 1]
    assert ranked.average_precision[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ranked.inverse_negative_penalty[0] == pytest.approx(2 / 3)
    assert ranked.average_precision[1] == 1.0


def test_excluded_items_are_removed_not_demoted() -> None:
    dist = np.array([[0.1, 0.2, 0.3]])
    allowed = np.array([[False, True, True]])
    ranked = rank_probes(dist, np.array([1]), np.array([1, 0, 1]), allowed)
    # Without item 0 the list is [0, 1]: the only remaining match is at rank 2.
    assert ranked.first_match.tolist() == [2]
    assert ranked.n_matches.tolist() == [1]
    assert ranked.average_precision[0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# Protocols against the reference


@pytest.mark.parametrize(("seed", "kind", "metric"), CASES)
def test_ccgr_mini_matches_reference(seed: int, kind: str, metric: str) -> None:
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, kind, roles="random")
    test = [r for r in rows if r["role"] != "train"]
    gallery = [r for r in test if r["role"] == "gallery"]
    probes = [r for r in test if r["role"] != "gallery"]
    ref = ref_ranked_protocol(probes, gallery, metric, (1, 5, 10), "skip", "keep")
    summary = evaluate(frame(rows), get_protocol("ccgr_mini", metric=metric)).summary
    for name in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
        assert_close(value(summary, "Overall", name), ref[name])
    overall = summary.filter(pl.col("group") == "Overall")
    assert overall["probes"].unique().to_list() == [ref["probes"]]
    assert overall["no_match"].unique().to_list() == [ref["no_match"]]
    assert ref["no_match"] > 0  # the case "probe without gallery match" is exercised


@pytest.mark.parametrize(("seed", "kind", "metric"), CASES)
@pytest.mark.parametrize("same_view", ["keep", "exclude", "exclude_same_id"])
def test_generic_matches_reference(seed: int, kind: str, metric: str, same_view: str) -> None:
    rng = np.random.default_rng(100 + seed)
    rows = random_rows(rng, kind, roles="random")
    test = [r for r in rows if r["role"] != "train"]
    gallery = [r for r in test if r["role"] == "gallery"]
    probes = [r for r in test if r["role"] == "probe"]
    protocol = get_protocol("generic", metric=metric, same_view=same_view)
    summary = evaluate(frame(rows), protocol).summary
    for group, subset in [("Overall", probes)] + [
        (f"condition={c}", [q for q in probes if q["condition"] == c])
        for c in sorted({q["condition"] for q in probes})
    ]:
        ref = ref_ranked_protocol(subset, gallery, metric, (1, 5), "skip", same_view)
        for name in ("Rank-1", "Rank-5", "mAP", "mINP"):
            assert_close(value(summary, group, name), ref[name])


@pytest.mark.parametrize(("seed", "kind", "metric"), CASES)
def test_sustech1k_matches_reference(seed: int, kind: str, metric: str) -> None:
    rng = np.random.default_rng(200 + seed)
    rows = random_rows(rng, kind, roles="sustech")
    ref = ref_sustech(rows, metric)
    result = evaluate(frame(rows), get_protocol("sustech1k", metric=metric))
    for (group, k), expected in ref.items():
        assert_close(value(result.summary, group, f"Rank-{k}"), expected)
    assert "mAP" not in result.summary["metric"].to_list()


def test_sustech1k_counts_probes_without_gallery_as_misses() -> None:
    """Two views; subject b has no gallery sequence: its probe is a miss, not skipped (50%, not 100%)."""
    e = lambda v: np.array([[v], [0.0]])  # noqa: E731  [C=2, P=1]
    rows = [
        {
            "sequence_id": "a0",
            "subject": "a",
            "condition": "00-nm",
            "view": "000",
            "role": "gallery",
            "emb": e(0),
        },
        {
            "sequence_id": "a9",
            "subject": "a",
            "condition": "00-nm",
            "view": "090",
            "role": "gallery",
            "emb": e(0),
        },
        {
            "sequence_id": "qa",
            "subject": "a",
            "condition": "01-nm",
            "view": "000",
            "role": "probe",
            "emb": e(0.1),
        },
        {
            "sequence_id": "qb",
            "subject": "b",
            "condition": "01-nm",
            "view": "000",
            "role": "probe",
            "emb": e(0.2),
        },
    ]
    result = evaluate(frame(rows), "sustech1k")
    assert value(result.summary, "Normal", "Rank-1") == 50.0
    normal = result.summary.filter((pl.col("group") == "Normal") & (pl.col("metric") == "Rank-1"))
    assert normal["no_match"].item() == 1
    # de_diag: only the 000 → 090 cell enters; the same-view cell (000 → 000) does not.
    cells = result.per_view.filter((pl.col("group") == "Normal") & (pl.col("rank") == 1))
    assert cells.height == 2


def test_rows_with_errors_or_nan_are_never_ranked() -> None:
    rng = np.random.default_rng(3)
    rows = random_rows(rng, "normal", roles="random")
    table = frame(rows)
    broken = table.with_columns(
        pl.when(pl.col("sequence_id") == "seq001")
        .then(pl.lit("pose: no person"))
        .otherwise(pl.col("error"))
        .alias("error")
    )
    nan_embedding = [float("nan")] * len(table["embedding"][0])
    broken = broken.with_columns(
        pl.when(pl.col("sequence_id") == "seq002")
        .then(pl.lit(nan_embedding))
        .otherwise(pl.col("embedding"))
        .alias("embedding")
    )
    result = evaluate(broken, "ccgr_mini")
    assert result.dropped == {"seq001": "pose: no person", "seq002": "non-finite embedding"}
    kept = [r for r in rows if r["sequence_id"] not in ("seq001", "seq002")]
    assert result.summary.equals(evaluate(frame(kept), "ccgr_mini").summary)


def test_generated_task2_scores_both_identities() -> None:
    rng = np.random.default_rng(11)
    for metric in ("euc", "cos"):
        gallery_rows = [
            {
                "sequence_id": f"g{i}",
                "subject": f"s{i % 5}",
                "condition": "nm",
                "view": f"{i % 3}",
                "role": "gallery",
                "emb": rng.normal(size=(4, 2)),
            }
            for i in range(15)
        ]
        probe_rows = [
            {
                "sequence_id": f"gen{i}",
                "subject": f"gen{i}",
                "condition": "gen",
                "view": f"{i % 3}",
                "role": "probe",
                "emb": rng.normal(size=(4, 2)),
                "driving": f"s{i % 6}",
                "reference": f"s{(i + 2) % 5}",
            }
            for i in range(20)
        ]  # s5 drives but has no gallery sequence
        probes = frame(
            probe_rows,
            driving_subject=[r["driving"] for r in probe_rows],
            reference_subject=[r["reference"] for r in probe_rows],
        )
        result = evaluate_generated(
            probes,
            frame(gallery_rows),
            targets={"driving": "driving_subject", "reference": "reference_subject"},
            metric=metric,
        )
        for target in ("driving", "reference"):
            ref = ref_ranked_protocol(probe_rows, gallery_rows, metric, (1, 5), "miss", "keep", target=target)
            for name in ("Rank-1", "Rank-5", "mAP", "mINP"):
                assert_close(value(result.summary, target, name), ref[name])
        driving = result.summary.filter(pl.col("group") == "driving")
        assert driving["no_match"].unique().to_list() == [sum(1 for r in probe_rows if r["driving"] == "s5")]
        assert driving["probes"].unique().to_list() == [20]  # "miss": counted, not skipped


def test_presets_follow_the_reference_notes() -> None:
    assert PROTOCOLS["sustech1k"].ranks == (1, 2, 3, 4, 5) and PROTOCOLS["sustech1k"].no_match == "miss"
    assert PROTOCOLS["ccgr_mini"].ranks == (1, 5, 10) and PROTOCOLS["ccgr_mini"].no_match == "skip"
    assert PROTOCOLS["ccgr_mini"].same_view == "keep" and PROTOCOLS["ccgr_mini"].probes == "rest"
    assert all(p.metric == "euc" for p in PROTOCOLS.values())


def test_attributes_become_identity_columns() -> None:
    from pipeline.evaluation.retrieval import attributes_to_columns

    table = pl.DataFrame({"sequence_id": ["g1", "g2", "g3"]})
    manifest = pl.DataFrame(
        {
            "sequence_id": ["g1", "g2", "g3"],
            "attributes": [
                '{"driving_subject": "s1", "reference_subject": 7}',
                '{"driving_subject": "s2"}',
                None,
            ],
        }
    )
    out = attributes_to_columns(table, manifest, ["driving_subject", "reference_subject"])
    assert out["driving_subject"].to_list() == ["s1", "s2", None]
    assert out["reference_subject"].to_list() == ["7", None, None]
