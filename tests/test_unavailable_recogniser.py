"""A recogniser whose modality a dataset lacks: its model file records why, and the reason reaches the
embeddings and the real-probe table instead of a crash."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.evaluation.embed import run_embed_stage
from pipeline.evaluation.retrieval import read_embedding_files, run_real_retrieval
from pipeline.recognisers.checkpoints import RecogniserUnavailable, save_unavailable, unavailable_reason
from pipeline.recognisers.data import GaitDataset
from pipeline.recognisers.train import TrainConfig, train

ROWS = [
    {"sequence_id": f"s{i}/nm-01/090", "subject": f"s{i}", "condition": "nm-01", "view": "090", "role": role}
    for i, role in enumerate(["gallery", "gallery", "probe"])
]


def test_unavailable_model_file_round_trip(tmp_path):
    path = save_unavailable(tmp_path / "model.pt", "skeletongait", "the dataset ships no pose")
    assert unavailable_reason(path) == "the dataset ships no pose"


def test_embed_and_real_retrieval_carry_the_reason(tmp_path):
    model = save_unavailable(tmp_path / "model.pt", "skeletongait", "skeletongait not trained: no pose")
    out = tmp_path / "emb.parquet"
    rows = run_embed_stage(ROWS, out=out, recogniser="skeletongait", checkpoint=model, stores={})
    assert [r["error"] for r in rows] == ["skeletongait not trained: no pose"] * 3
    assert read_embedding_files([str(out)]).get_column("embedding").null_count() == 3
    run_real_retrieval(
        embeddings={"skeletongait": [str(out)]},
        protocol="generic",
        metric="euc",
        dataset="d",
        out=str(tmp_path / "real.parquet"),
        gallery_out={"skeletongait": str(tmp_path / "test.parquet")},
    )
    real = pl.read_parquet(tmp_path / "real.parquet")
    assert real.height == 1 and real["value"].to_list() == [None]
    assert real["note"].to_list() == ["not scored: skeletongait not trained: no pose"]


def test_training_without_usable_sequences_is_unavailable_with_the_reason(tmp_path):
    dataset = GaitDataset([], skipped={"a": "skipped (pose: the dataset ships no pose)"}, modality="skeleton_map")
    config = TrainConfig.from_mapping({"recogniser": "skeletongait", "iterations": 1})
    with pytest.raises(RecogniserUnavailable, match="no usable 'skeleton_map' training sequence .*ships no pose"):
        train(config, dataset, tmp_path)
