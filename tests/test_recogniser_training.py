"""Recogniser training pieces: losses by hand, P×K sampling, clip sampling, the dataset over frame
stores, deterministic resuming, and the embed stage on a tiny frame store.

The stand-in model below follows the recogniser interface (``modality``, ``forward`` →
``RecogniserOutput``, ``embedding``) with a few hundred parameters, so training runs take well under a
second on one CPU core; one test trains the real DeepGaitV2 (narrow) end to end and embeds with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.contracts import ContractError, read_table, write_frame_store, write_table
from pipeline.evaluation.embed import EMBEDDINGS, embed_dataset, embeddings_table, run_embed_stage
from pipeline.evaluation.retrieval import evaluate
from pipeline.recognisers.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    ClipSampling,
    GaitDataset,
    TripletSampler,
    sample_clip,
)
from pipeline.recognisers.losses import cross_entropy_loss, triplet_loss
from pipeline.recognisers.models import RecogniserOutput
from pipeline.recognisers.train import TRAINING_LOG, TrainConfig, latest_checkpoint, train
from pipeline.runner import STAGE_STATUS

torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------
# Losses


def test_triplet_loss_by_hand() -> None:
    """1-D embeddings 0, 0.3, 0.4 with labels 0, 0, 1 and margin 0.2.

    Triples (anchor, positive, negative) with their relu(d_ap - d_an + 0.2):
    (0,0,2): 0 - 0.4 + 0.2 → 0;    (0,1,2): 0.3 - 0.4 + 0.2 = 0.1;
    (1,0,2): 0.3 - 0.1 + 0.2 = 0.4; (1,1,2): 0 - 0.1 + 0.2 = 0.1;
    (2,2,0): 0 - 0.4 + 0.2 → 0;    (2,2,1): 0 - 0.1 + 0.2 = 0.1.
    The anchor is its own positive; the mean is over the 4 non-zero terms: 0.7 / 4 = 0.175.
    """
    x = torch.tensor([[[0.0]], [[0.3]], [[0.4]]], requires_grad=True)  # [n=3, c=1, p=1]
    value = triplet_loss(x, torch.tensor([0, 0, 1]))
    assert value.loss.item() == pytest.approx(0.175, abs=1e-6)
    assert value.info["triplet_nonzero"] == pytest.approx(4 / 6)
    value.loss.backward()
    assert torch.isfinite(x.grad).all()  # sqrt(0) of the anchor with itself must not give NaN


def reference_triplet(x: np.ndarray, labels: list[int], margin: float) -> float:
    """Plain loops: per part all triples, mean of non-zero terms, then mean over parts."""
    n, c, parts = x.shape
    total = 0.0
    for p in range(parts):
        terms = []
        for a in range(n):
            for pos in range(n):
                for neg in range(n):
                    if labels[a] != labels[pos] or labels[a] == labels[neg]:
                        continue
                    d_ap = math.sqrt(sum((x[a, k, p] - x[pos, k, p]) ** 2 for k in range(c)))
                    d_an = math.sqrt(sum((x[a, k, p] - x[neg, k, p]) ** 2 for k in range(c)))
                    terms.append(max(d_ap - d_an + margin, 0.0))
        nonzero = [t for t in terms if t != 0.0]
        total += sum(nonzero) / len(nonzero) if nonzero else 0.0
    return total / parts


def test_triplet_loss_matches_loops_on_a_pk_batch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.2, size=(6, 3, 4))
    labels = [0, 0, 1, 1, 2, 2]
    got = float(triplet_loss(torch.tensor(x), torch.tensor(labels)).loss)
    assert got == pytest.approx(reference_triplet(x, labels, 0.2), abs=1e-6)
    # Well separated identities: every term is zero and the loss is exactly 0, not NaN.
    far = np.repeat(np.arange(3)[:, None, None] * 10.0, 2, axis=0) * np.ones((6, 3, 4))
    assert float(triplet_loss(torch.tensor(far), torch.tensor(labels)).loss) == 0.0


def test_cross_entropy_by_hand() -> None:
    """Per (sequence, part): -(1-ε) log p_y - (ε/C) Σ_c log p_c with p = softmax(16 · logits)."""
    logits = torch.tensor(
        [[[0.1, -0.2], [0.5, 0.0], [-0.3, 0.2]], [[0.0, 0.3], [0.2, 0.1], [0.4, -0.1]]]
    )  # [n=2, C=3, p=2]
    labels = [1, 2]
    expected = 0.0
    for i in range(2):
        for p in range(2):
            z = [16.0 * float(logits[i, c, p]) for c in range(3)]
            log_norm = math.log(sum(math.exp(v) for v in z))
            log_p = [v - log_norm for v in z]
            expected += -(0.9) * log_p[labels[i]] - 0.1 / 3 * sum(log_p)
    expected /= 4
    value = cross_entropy_loss(logits, torch.tensor(labels))
    assert float(value.loss) == pytest.approx(expected, rel=1e-6)
    # All-zero logits: the loss is log C whatever the smoothing.
    assert float(cross_entropy_loss(torch.zeros(3, 5, 2), torch.tensor([0, 1, 4])).loss) == pytest.approx(
        math.log(5)
    )
    assert value.info["ce_accuracy"] == pytest.approx(
        sum(int(int(logits[i, :, p].argmax()) == labels[i]) for i in range(2) for p in range(2)) / 4
    )
    with pytest.raises(ValueError, match="labels must lie"):
        cross_entropy_loss(logits, torch.tensor([0, 3]))


# ---------------------------------------------------------------------------------------------
# Sampling


def test_sampler_draws_p_identities_times_k() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4, 4]  # identity 2 has a single sequence
    sampler = TripletSampler(labels, p=3, k=3)
    seen_ids = set()
    for it in range(40):
        batch = sampler.batch(np.random.default_rng([5, it]))
        assert len(batch) == 9
        blocks = [batch[i * 3 : (i + 1) * 3] for i in range(3)]
        ids = [labels[b[0]] for b in blocks]
        assert len(set(ids)) == 3  # P distinct identities when the dataset has at least P
        for block, ident in zip(blocks, ids, strict=True):
            assert all(labels[j] == ident for j in block)
            if ident != 2:
                assert len(set(block.tolist())) == 3  # no replacement with >= K sequences
        seen_ids.update(ids)
    assert seen_ids == {0, 1, 2, 3, 4}
    again = sampler.batch(np.random.default_rng([5, 7]))
    assert np.array_equal(again, sampler.batch(np.random.default_rng([5, 7])))
    # Fewer identities than P: identities repeat.
    assert len(TripletSampler([0, 1], p=4, k=1).batch(np.random.default_rng(0))) == 4


def test_clip_sampling_rules() -> None:
    rng = np.random.default_rng(1)
    unordered = ClipSampling("fixed_unordered", frames=10)
    for _ in range(20):
        idx = sample_clip(50, unordered, rng)
        assert len(idx) == 10 and len(set(idx.tolist())) == 10 and idx.max() < 50
    short = sample_clip(4, unordered, rng)
    assert len(short) == 10 and set(short.tolist()) <= {0, 1, 2, 3}

    ordered = ClipSampling("fixed_ordered", frames=10, frames_skip_num=4)
    for _ in range(20):
        idx = sample_clip(60, ordered, rng)
        assert len(idx) == 10 and np.all(np.diff(idx) > 0)
        assert idx[-1] - idx[0] <= 13  # inside one window of k + skip = 14 frames
    tiled = sample_clip(3, ordered, rng)  # tiled to 15 frames, window of 14
    assert len(tiled) == 10 and set(tiled.tolist()) <= {0, 1, 2}

    everything = ClipSampling("all_ordered", frames_all_limit=8)
    assert sample_clip(5, everything, rng).tolist() == [0, 1, 2, 3, 4]
    capped = sample_clip(30, everything, rng)
    assert len(capped) == 8 and np.all(np.diff(capped) > 0)

    unfixed = ClipSampling("unfixed_unordered", frames_range=(3, 6))
    assert {unfixed.batch_frames(rng) for _ in range(60)} == {3, 4, 5, 6}
    with pytest.raises(ValueError, match="sample_type"):
        ClipSampling("random")


# ---------------------------------------------------------------------------------------------
# A tiny source: frame stores + status tables + manifest


def manifest_row(subject: str, take: int, *, split: str = "train", role: str = "train", error=None) -> dict:
    condition, view = f"nm-{take:02d}", "090"
    return {
        "dataset": "tiny",
        "subject": subject,
        "condition": condition,
        "view": view,
        "sequence_id": f"{subject}/{condition}/{view}",
        "split": split,
        "role": role,
        "attributes": json.dumps({"take": take}),
        "error": error,
    }


def silhouette_frames(rng: np.random.Generator, subject_index: int, t: int) -> np.ndarray:
    """[t, 64, 64] uint8 0/255: a box whose width depends on the subject, jittered per frame."""
    sils = np.zeros((t, 64, 64), np.uint8)
    for i in range(t):
        half = 4 + 3 * subject_index + int(rng.integers(0, 2))
        sils[i, 8:60, 32 - half : 32 + half] = 255
    return sils


def write_source(root: Path, rows: list[dict], *, frames: int = 12, rgb: bool = False) -> None:
    """Silhouette and skeleton-map stores (+ crops when ``rgb``) in one shard, with status tables.

    Per subject index s: frames 0 and 1 are invalid (so "only valid frames" is checkable); the
    sequence of take 3 has only 2 valid frames (too short); ``x9`` is absent from the stores; ``x8``
    has an error row in the silhouettes status table.
    """
    rng = np.random.default_rng(0)
    sil_store, map_store, crop_store, status = {}, {}, {}, []
    for row in rows:
        sid = row["sequence_id"]
        if row["subject"] == "x9":
            continue
        s = int(row["subject"][1:]) if row["subject"][1:].isdigit() else 0
        valid = np.ones(frames, bool)
        valid[:2] = False
        if row["condition"] == "nm-03":
            valid[4:] = False
        sils = silhouette_frames(rng, s, frames)
        sils[~valid] = 7  # marker values that must never reach the model
        maps = rng.integers(0, 256, size=(frames, 2, 64, 64), dtype=np.uint8)
        sil_store[sid] = {"sil": sils, "valid": valid}
        map_store[sid] = {"skeleton_map": maps, "valid": valid}
        if rgb:
            crop_store[sid] = {
                "rgb": rng.integers(0, 256, size=(frames, 8, 4, 3), dtype=np.uint8),
                "ratio": np.full(frames, 0.5, np.float32),
                "valid": valid,
            }
        error = "masks: no person" if row["subject"] == "x8" else None
        status.append(
            {
                "stage": "silhouettes",
                "backend": "test",
                "sequence_id": sid,
                "frame_count": frames,
                "valid_frames": int(valid.sum()),
                "seconds": 0.0,
                "error": error,
            }
        )
    write_frame_store(root / "silhouettes" / "shard-0000.npz", sil_store)
    write_table(status, root / "silhouettes" / "shard-0000.parquet", STAGE_STATUS)
    write_frame_store(root / "skeleton_maps" / "shard-0000.npz", map_store)
    if rgb:
        write_frame_store(root / "crops" / "shard-0000.npz", crop_store)


def train_rows(subjects: int = 3, takes: int = 3) -> list[dict]:
    return [manifest_row(f"s{i}", t) for i in range(subjects) for t in (1, 2, 4, 5)[:takes]]


@pytest.fixture()
def source(tmp_path: Path) -> tuple[Path, list[dict]]:
    rows = train_rows() + [
        manifest_row("s0", 3),  # too short
        manifest_row("x9", 1),  # not stored
        manifest_row("x8", 1),  # upstream error
        manifest_row("s1", 6, error="video unreadable"),  # manifest error
        manifest_row("s2", 7, split="test", role="probe"),
    ]
    root = tmp_path / "perception" / "tiny"
    write_source(root, rows, rgb=True)
    return root, rows


def test_dataset_keeps_valid_frames_and_records_skips(source: tuple[Path, list[dict]]) -> None:
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "silhouette", split="train")
    assert data.skipped == {
        "s0/nm-03/090": "too short: 2 valid frames (< 5)",
        "x9/nm-01/090": "silhouettes: no frames stored for this sequence",
        "x8/nm-01/090": "silhouettes: masks: no person",
        "s1/nm-06/090": "manifest: video unreadable",
    }
    assert len(data) == 9 and data.labels == ["s0", "s1", "s2"]
    frames, ratios = data.frames(0)
    assert frames.shape == (10, 1, 64, 64) and ratios is None
    assert not (frames == 7).any()  # the invalid frames' marker never appears
    clip, _ = data.clip(0, np.arange(3))
    assert clip.shape == (3, 1, 64, 44) and clip.dtype == np.float32
    assert np.array_equal(clip, frames[:3, :, :, 10:54] / np.float32(255.0))
    lazy = GaitDataset.from_perception(rows, root, "silhouette", split="train", preload=False, cache_shards=1)
    assert np.array_equal(lazy.frames(4)[0], data.frames(4)[0])


def test_skeletongait_pp_concatenates_limb_joint_sil(source: tuple[Path, list[dict]]) -> None:
    root, rows = source
    both = GaitDataset.from_perception(rows, root, "silhouette+skeleton_map", split="train")
    maps = GaitDataset.from_perception(rows, root, "skeleton_map", split="train")
    sils = GaitDataset.from_perception(rows, root, "silhouette", split="train")
    frames = both.frames(2)[0]
    assert frames.shape == (10, 3, 64, 64)
    assert np.array_equal(frames[:, :2], maps.frames(2)[0]) and np.array_equal(
        frames[:, 2:], sils.frames(2)[0]
    )
    assert both.clip(2, np.arange(4))[0].shape == (4, 3, 64, 44)


def test_rgb_is_imagenet_normalised(source: tuple[Path, list[dict]]) -> None:
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "rgb", split="train")
    frames, ratios = data.frames(0)
    clip, clip_ratios = data.clip(0, np.array([1, 0]))
    assert clip.shape == (2, 3, 8, 4) and clip_ratios.tolist() == [0.5, 0.5]
    pixel = frames[1, :, 3, 2].astype(np.float64)
    assert np.allclose(clip[0, :, 3, 2], (pixel / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)
    batch = data.batch([0, 1], ClipSampling("fixed_unordered", frames=3), np.random.default_rng(0))
    assert tuple(batch.ratios.shape) == (2, 3)


def test_augmentation_flip_and_warps(source: tuple[Path, list[dict]]) -> None:
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "silhouette", split="train")
    plain, _ = data.clip(0, np.arange(4))
    flipped, _ = data.clip(0, np.arange(4), augment=Augmentation(0.0, 1.0, 0.0), rng=np.random.default_rng(0))
    assert np.array_equal(flipped, plain[..., ::-1])
    warp = Augmentation(perspective=1.0, flip=0.0, rotate=1.0)
    a, _ = data.clip(0, np.arange(4), augment=warp, rng=np.random.default_rng(3))
    b, _ = data.clip(0, np.arange(4), augment=warp, rng=np.random.default_rng(3))
    assert a.shape == plain.shape and np.array_equal(a, b) and not np.array_equal(a, plain)
    assert a.min() >= 0.0 and a.max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Training with a stand-in model


class StandIn(nn.Module):
    """Recogniser interface, tiny: strip means per part → per-part linear map; cosine classifier."""

    name = "standin"
    modality = "silhouette"

    def __init__(
        self, *, class_num: int, embed_dim: int = 8, parts: int = 4, dropout: float = 0.2, nan_for=None
    ):
        super().__init__()
        self.embed_dim, self.parts, self.class_num = embed_dim, parts, class_num
        self.fc_bin = nn.Parameter(torch.randn(parts, 44, embed_dim) * 0.3)
        self.classifier = nn.Parameter(torch.randn(parts, embed_dim, class_num))
        self.drop = nn.Dropout(dropout)
        self.nan_for = nan_for  # a frame count that makes the output NaN (for the embed test)

    def forward(self, inputs: torch.Tensor, seq_lengths=None) -> RecogniserOutput:
        n, s, _, h, w = inputs.shape
        x = inputs.mean(dim=(1, 2)).reshape(n, self.parts, h // self.parts, w).mean(2)  # [n, p, w]
        e1 = torch.einsum("npw,pwe->nep", self.drop(x), self.fc_bin)
        if self.nan_for == s:
            e1 = e1 * float("nan")
        e2 = F.normalize(e1, dim=1)
        logits = torch.einsum("nep,pec->ncp", e2, F.normalize(self.classifier, dim=1))
        return RecogniserOutput(e1, e2, logits, {})

    def embedding(self, output: RecogniserOutput) -> torch.Tensor:
        return output.embed_1


def build_standin(name: str, *, class_num: int, **options) -> StandIn:
    assert name == "standin"
    return StandIn(class_num=class_num, **options)


def standin_config(**overrides) -> TrainConfig:
    values = dict(
        recogniser="standin",
        p=2,
        k=2,
        frames=4,
        frames_skip_num=2,
        iterations=6,
        save_every=3,
        milestones=(2, 4),
        lr=0.05,
        seed=3,
        progress=False,
        threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_resume_continues_exactly(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "silhouette", split="train")
    full = train(standin_config(), data, tmp_path / "full", build=build_standin)
    train(standin_config(iterations=3), data, tmp_path / "split", build=build_standin)
    assert latest_checkpoint(tmp_path / "split", "standin")[0] == 3
    resumed = train(standin_config(), data, tmp_path / "split", build=build_standin)
    assert resumed.resumed_from == 3 and resumed.iteration == 6
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    log_full = pl.from_arrow(read_table(full.log, TRAINING_LOG))
    log_split = pl.from_arrow(read_table(resumed.log, TRAINING_LOG))
    assert log_full["iteration"].to_list() == list(range(1, 7))
    assert log_full["loss"].to_list() == log_split["loss"].to_list()
    assert log_full["lr"].to_list() == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])
    assert (log_full["sequences_per_s"] > 0).all()
    # A different learning rate on resume is refused, naming the key.
    with pytest.raises(ValueError, match="lr"):
        train(standin_config(lr=0.1, iterations=9), data, tmp_path / "split", build=build_standin)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="recognisers.train.optimizer"):
        TrainConfig(recogniser="deepgaitv2", optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        TrainConfig.from_mapping({"recogniser": "deepgaitv2", "learning_rate": 0.1})


# ---------------------------------------------------------------------------------------------
# Embeddings


def test_nan_embeddings_become_errors(source: tuple[Path, list[dict]]) -> None:
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "silhouette", split="train", labels=[])
    model = StandIn(class_num=2, nan_for=10).eval()  # every sequence has 10 valid frames → NaN
    results = embed_dataset(model, data)
    assert all(r[0] is None and r[3] == "non-finite embedding (NaN/inf)" for r in results)


def test_embeddings_contract_checks_sizes() -> None:
    row = {
        "sequence_id": "a",
        "subject": "a",
        "condition": "c",
        "view": "v",
        "role": "probe",
        "recogniser": "x",
        "checkpoint": None,
        "embedding": np.zeros(6),
        "channels": 3,
        "parts": 2,
        "frames": 5,
        "seconds": 0.1,
        "error": None,
    }
    table = embeddings_table([row, {**row, "sequence_id": "b", "embedding": None, "error": "too short"}], 6)
    assert EMBEDDINGS.validate(table).num_rows == 2
    with pytest.raises(ContractError, match="channels × parts"):
        EMBEDDINGS.validate(embeddings_table([{**row, "parts": 3}], 6))
    with pytest.raises(ContractError, match="must carry an embedding"):
        EMBEDDINGS.validate(embeddings_table([{**row, "embedding": None}], 6))


def test_real_deepgaitv2_trains_and_embeds(source: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """A narrow DeepGaitV2 (width 1/8): two iterations, then the embed stage on every row of the shard."""
    root, rows = source
    data = GaitDataset.from_perception(rows, root, "silhouette", split="train")
    config = TrainConfig(
        recogniser="deepgaitv2",
        model_options={"width": 0.125},
        p=2,
        k=2,
        frames=4,
        frames_skip_num=0,
        iterations=2,
        save_every=2,
        progress=False,
        threads=1,
    )
    result = train(config, data, tmp_path / "run")
    log = pl.from_arrow(read_table(result.log, TRAINING_LOG))
    assert log.height == 2 and log["loss"].is_finite().all()
    out = tmp_path / "embeddings" / "shard-0000.parquet"
    run_embed_stage(
        rows,
        out=out,
        recogniser="deepgaitv2",
        checkpoint=result.checkpoint,
        stores={"silhouettes": root / "silhouettes" / "shard-0000.npz"},
        threads=1,
    )
    table = pl.from_arrow(read_table(out, EMBEDDINGS))
    assert table.height == len(rows)
    ok = table.filter(pl.col("error").is_null())
    assert ok.height == 10 and set(ok["parts"].to_list()) == {16} and set(ok["channels"].to_list()) == {256}
    assert set(ok["frames"].to_list()) == {10}
    errors = dict(table.filter(pl.col("error").is_not_null()).select("sequence_id", "error").iter_rows())
    assert errors == {
        "s0/nm-03/090": "too short: 2 valid frames (< 5)",
        "x9/nm-01/090": "silhouettes: no frames stored for this sequence",
        "x8/nm-01/090": "silhouettes: masks: no person",
        "s1/nm-06/090": "manifest: video unreadable",
    }
    # The stored embedding is the model's embed_1 of all valid frames, flattened row-major from [C, P].
    model = result.model.eval()
    frames = data.frames(0)[0][:, :, :, 10:54] / np.float32(255.0)
    with torch.no_grad():
        expected = model(torch.from_numpy(frames[None])).embed_1[0].numpy().reshape(-1)
    stored = np.asarray(
        ok.filter(pl.col("sequence_id") == data.items[0].sequence_id)["embedding"].to_list()[0]
    )
    assert np.allclose(stored, expected, atol=1e-5)
    # Usable in retrieval: the test probe against train rows turned gallery (a smoke check of the join).
    gallery = ok.with_columns(
        pl.when(pl.col("role") == "train").then(pl.lit("gallery")).otherwise(pl.col("role")).alias("role")
    )
    summary = evaluate(gallery, "generic").summary
    assert summary.filter(pl.col("group") == "Overall")["probes"].to_list()[0] == 1


def test_embed_defaults_match_the_data_module() -> None:
    """pipeline.evaluation.embed keeps its own copies (so reading the contract does not import torch)."""
    import pipeline.evaluation.embed as embed
    import pipeline.recognisers.data as data

    assert (embed.FRAMES_ALL_LIMIT, embed.MIN_FRAMES) == (data.FRAMES_ALL_LIMIT, data.MIN_FRAMES)


@pytest.mark.parametrize(
    ("name", "options", "stage", "embedded"),
    [
        ("skeletongait++", {"width": 0.25}, "skeleton_maps", 10),
        # BigGait reads only the crops: x8's silhouettes error does not concern it.
        ("biggait", {"width": 0.25, "dinov2_config": "tiny"}, "crops", 11),
    ],
)
def test_fused_and_rgb_recognisers_train_and_embed(
    source: tuple[Path, list[dict]], tmp_path: Path, name: str, options: dict, stage: str, embedded: int
) -> None:
    """One iteration and an embedding pass for SkeletonGait++ ([limb, joint, sil]) and BigGait (RGB + ratios)."""
    root, rows = source
    from pipeline.recognisers.train import recogniser_modality

    data = GaitDataset.from_perception(rows, root, recogniser_modality(name), split="train")
    config = TrainConfig(
        recogniser=name,
        model_options=options,
        p=2,
        k=2,
        frames=2,
        frames_skip_num=0,
        iterations=1,
        save_every=1,
        progress=False,
        threads=1,
    )
    result = train(config, data, tmp_path / "run")
    row = pl.from_arrow(read_table(result.log, TRAINING_LOG)).row(0, named=True)
    assert math.isfinite(row["loss"])
    if name == "biggait":  # its own losses are logged next to triplet and CE
        assert set(json.loads(row["aux"])) >= {"shape_connect", "shape_mse"}
    stores = {"silhouettes": root / "silhouettes" / "shard-0000.npz", stage: root / stage / "shard-0000.npz"}
    out = tmp_path / "embeddings.parquet"
    run_embed_stage(
        rows, out=out, recogniser=name, checkpoint=result.checkpoint, stores=stores, frames_all_limit=3
    )
    table = pl.from_arrow(read_table(out, EMBEDDINGS))
    ok = table.filter(pl.col("error").is_null())
    assert ok.height == embedded and set(ok["frames"].to_list()) == {3}  # capped at frames_all_limit
