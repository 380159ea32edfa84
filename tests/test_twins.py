"""The twin analysis: which factor a recogniser follows, from twin pairs with known ground truth."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from pipeline.evaluation.retrieval import twin_rows


def table(embeddings: dict[tuple[str, str], np.ndarray]) -> pl.DataFrame:
    rows = []
    for (subject, role), vector in embeddings.items():
        rows.append(
            {"sequence_id": f"{subject}/{role}", "subject": subject, "condition": "nm", "view": "090", "role": role,
             "embedding": vector.reshape(-1).astype(np.float32).tolist(), "channels": 4, "parts": 2, "error": None}
        )  # fmt: skip
    return pl.DataFrame(rows)


def manifest(pairs: dict[str, tuple[str, str]]) -> list[dict]:
    return [{"subject": t, "attributes": json.dumps({"twin_of": b, "twin_kind": k})} for t, (b, k) in pairs.items()]


def test_recogniser_that_sees_motion_tells_motion_twins_apart():
    rng = np.random.default_rng(0)
    look, motion_a, motion_b = rng.normal(size=(3, 4, 2))
    # An embedding that is all motion: the motion-only twins (same look) are far apart.
    data = {
        ("a", "gallery"): motion_a, ("a", "probe"): motion_a + 0.01,
        ("b", "gallery"): motion_b, ("b", "probe"): motion_b + 0.01,
    }  # fmt: skip
    rows = twin_rows(table(data), manifest({"b": ("a", "motion_only")}), dataset="w", recogniser="r", metric="euc")
    assert rows == [{"dataset": "w", "recogniser": "r", "twin_kind": "motion_only", "probes": 2,
                     "own_identity_pct": 100.0, "follows": "tells motion-only twins apart: uses motion"}]  # fmt: skip
    del look


def test_recogniser_blind_to_appearance_confuses_appearance_twins():
    rng = np.random.default_rng(1)
    motion = rng.normal(size=(4, 2))
    # Appearance-only twins walk identically; a motion-only embedding cannot tell them apart: each
    # probe sits exactly between... here identical, so the nearest is the first gallery row.
    data = {("a", "gallery"): motion, ("a", "probe"): motion, ("b", "gallery"): motion, ("b", "probe"): motion}
    rows = twin_rows(table(data), manifest({"b": ("a", "appearance_only")}), dataset="w", recogniser="r", metric="euc")
    assert rows[0]["own_identity_pct"] == 50.0 and rows[0]["follows"].startswith("confuses")
