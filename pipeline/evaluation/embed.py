"""The "embed" stage: one gait embedding per usable sequence of a source shard, with a trained recogniser.

For every manifest row of the shard the stage writes one row of the ``embeddings`` table: the
recogniser's inference feature (``embed_1``, or ``embed_2`` with ``use_emb2``) of *all* the
sequence's valid frames in order (OpenGait's test-time ``all_ordered``, capped at
``frames_all_limit`` = 720 frames by a sorted seeded subset), flattened row-major from [C, P] into a
fixed-size float32 list with ``channels`` = C and ``parts`` = P beside it. A sequence that cannot be
embedded keeps its row with ``error`` set and a null embedding: an upstream error, too few valid
frames, a failure in the model, or a non-finite embedding (NaN/inf), which is never ranked.

The model is rebuilt from the checkpoint: the class count from ``BNNecks.fc_bin`` (or
``gait_net.BNNecks.fc_bin``) and, for checkpoints written by :mod:`pipeline.recognisers.train`, the
saved ``model_options`` (width, blocks, ...) unless given explicitly.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contracts import Contract, ContractError, register, rows_to_arrow, write_table

if TYPE_CHECKING:  # torch and the models load only when embedding, not for reading the contract
    import torch

    from pipeline.recognisers.data import GaitDataset

log = logging.getLogger(__name__)

CONFIG_KEY = "recognisers.embed"
# OpenGait's test-time cap on frames per sequence, and the shortest sequence embedded (as in
# pipeline.recognisers.data).
FRAMES_ALL_LIMIT = 720
MIN_FRAMES = 5
# The usual OpenGait embedding: 256 channels × 16 parts. The contract accepts any fixed size.
DEFAULT_EMBEDDING_SIZE = 256 * 16


def _embeddings_schema(size: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sequence_id", pa.string(), nullable=False),
            pa.field("subject", pa.string(), nullable=False),
            pa.field("condition", pa.string(), nullable=False),
            pa.field("view", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),
            pa.field("recogniser", pa.string(), nullable=False),
            pa.field("checkpoint", pa.string(), nullable=True),
            pa.field("embedding", pa.list_(pa.float32(), size), nullable=True),  # row-major [C, P]
            pa.field("channels", pa.int32(), nullable=False),
            pa.field("parts", pa.int32(), nullable=False),
            pa.field("frames", pa.int32(), nullable=True),  # frames the embedding was computed from
            pa.field("seconds", pa.float32(), nullable=True),
            pa.field("error", pa.string(), nullable=True),  # null = embedding is usable
        ],
        metadata={"doc": "one row per sequence: a recogniser's embedding or why there is none"},
    )


@dataclass(frozen=True)
class EmbeddingsContract(Contract):
    """The ``embeddings`` contract. The list size is per file (C·P of the recogniser): a table is
    checked against the schema with its own size, every row's ``channels · parts`` must equal it,
    rows without an error need an embedding and rows with one must not have one."""

    def validate(self, table: pa.Table, *, where: str = "table") -> pa.Table:
        size = _list_size(table, where)
        concrete = Contract(self.name, _embeddings_schema(size), self.allowed_values, self.unique_key)
        table = concrete.validate(table, where=where)
        shapes = {
            c * p for c, p in zip(table["channels"].to_pylist(), table["parts"].to_pylist(), strict=True)
        }
        if table.num_rows and shapes != {size}:
            raise ContractError(
                f"{where}: channels × parts {sorted(shapes)} differ from the embedding size {size}"
            )
        # Plain lists, not ChunkedArray.to_numpy (which imports pandas, ~0.2 s per job).
        pairs = list(zip(table["error"].is_null().to_pylist(), table["embedding"].is_valid().to_pylist(), strict=True))
        if any(ok and not present for ok, present in pairs):
            raise ContractError(f"{where}: rows without an error must carry an embedding")
        if any(present and not ok for ok, present in pairs):
            raise ContractError(f"{where}: rows with an error must not carry an embedding")
        return table


def _list_size(table: pa.Table, where: str) -> int:
    if "embedding" not in table.column_names:
        raise ContractError(f"{where}: does not match contract 'embeddings': missing column 'embedding'")
    kind = table.schema.field("embedding").type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = {n for n in pc.list_value_length(table["embedding"]).to_pylist() if n is not None}
        if len(lengths) > 1:
            raise ContractError(f"{where}: 'embedding' lists have different lengths {sorted(lengths)}")
        return lengths.pop() if lengths else DEFAULT_EMBEDDING_SIZE
    raise ContractError(
        f"{where}: column 'embedding' has type {kind}, contract 'embeddings' needs a float32 list"
    )


EMBEDDINGS = register(
    EmbeddingsContract(
        name="embeddings",
        schema=_embeddings_schema(DEFAULT_EMBEDDING_SIZE),
        allowed_values={"role": ("train", "gallery", "probe")},
        unique_key=("sequence_id",),
    )
)


# ---------------------------------------------------------------------------------------------
# Model from checkpoint


def _class_num(state: Mapping[str, torch.Tensor], path: Path) -> int:
    for key in ("BNNecks.fc_bin", "gait_net.BNNecks.fc_bin"):
        if key in state:
            return int(state[key].shape[-1])
    raise ValueError(f"{path}: no BNNecks.fc_bin in the checkpoint; give {CONFIG_KEY}.class_num")


def load_recogniser(
    name: str,
    checkpoint: str | Path,
    *,
    model_options: Mapping[str, object] | None = None,
    class_num: int | None = None,
    use_emb2: bool | None = None,
    device: str = "cpu",
    saved: object | None = None,
) -> torch.nn.Module:
    """A recogniser with the weights of ``checkpoint`` (strict), in eval mode on ``device``.

    ``model_options`` default to the ones saved by our trainer (OpenGait's defaults otherwise);
    ``use_emb2`` overrides which feature :meth:`embedding` returns. ``saved``: the checkpoint's contents
    when the caller has already read them (:func:`pipeline.recognisers.checkpoints.read_checkpoint`).
    """
    from pipeline.recognisers.checkpoints import load_opengait_checkpoint, read_checkpoint
    from pipeline.recognisers.models import build_recogniser

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (config key {CONFIG_KEY}.checkpoint)")
    if saved is None:
        saved = read_checkpoint(path, f"{CONFIG_KEY}.checkpoint")
    state = saved.get("model", saved) if isinstance(saved, Mapping) else {}
    extra = saved.get("extra") if isinstance(saved, Mapping) else None
    if model_options is None:
        config = extra.get("config", {}) if isinstance(extra, Mapping) else {}
        model_options = dict(config.get("model_options", {})) if isinstance(config, Mapping) else {}
    if class_num is None:
        class_num = _class_num(state, path)
    options = dict(model_options)
    if use_emb2 is not None:
        options["use_emb2"] = bool(use_emb2)
    model = build_recogniser(name, class_num=class_num, **options)
    load_opengait_checkpoint(model, path, strict=True, saved=saved)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Embedding


def embed_dataset(
    model: torch.nn.Module,
    dataset: GaitDataset,
    *,
    frames_all_limit: int = FRAMES_ALL_LIMIT,
    seed: int = 0,
    device: str = "cpu",
) -> list[tuple[np.ndarray | None, int, float, str | None]]:
    """(embedding [C, P] or None, frames used, seconds, error) for every item, one sequence at a time.

    One sequence per forward pass: every sequence keeps all its frames (no padding, no packing), and
    BatchNorm in eval mode makes the result independent of the batch.
    """
    import torch

    from pipeline.recognisers.data import ClipSampling
    from pipeline.recognisers.train import forward

    sampling = ClipSampling("all_ordered", frames_all_limit=frames_all_limit)
    model.eval()
    results = []
    for item_index, item in enumerate(dataset.items):
        start = time.perf_counter()
        # The frame cap's subset depends only on the sequence, not on its position in the shard.
        rng = np.random.default_rng([seed, zlib.crc32(item.sequence_id.encode("utf-8"))])
        try:
            batch = dataset.batch([item_index], sampling, rng)
            with torch.no_grad():
                embedding = model.embedding(forward(model, batch, device))[0].float().cpu().numpy()
            error = None if np.isfinite(embedding).all() else "non-finite embedding (NaN/inf)"
            results.append(
                (None if error else embedding, int(batch.inputs.shape[1]), time.perf_counter() - start, error)
            )
        except Exception as err:  # one broken sequence becomes an error row; the shard goes on
            log.exception("embedding failed for %s", item.sequence_id)
            results.append((None, 0, time.perf_counter() - start, f"{type(err).__name__}: {err}"))
    return results


def embeddings_table(rows: list[dict], size: int) -> pa.Table:
    """Rows (with ``embedding`` as a float32 array or None) → an Arrow table with a fixed-size list column."""
    import polars as pl

    flat = np.zeros((len(rows), size), dtype=np.float32)
    missing = np.ones(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        if row["embedding"] is not None:
            flat[i] = np.asarray(row["embedding"], dtype=np.float32).reshape(-1)
            missing[i] = False
    schema = _embeddings_schema(size)
    # From buffers, not pa.array: pa.array imports pandas (see pipeline.contracts.rows_to_arrow).
    values = pa.Array.from_buffers(pa.float32(), flat.size, [None, pa.py_buffer(flat.reshape(-1))])
    embedding = pa.FixedSizeListArray.from_arrays(values, size, mask=pl.Series(missing).to_arrow())
    others = rows_to_arrow(rows, pa.schema([f for f in schema if f.name != "embedding"]))
    arrays = [embedding if name == "embedding" else others[name] for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema)


def run_embed_stage(
    rows: Sequence[Mapping[str, object]],
    *,
    out: str | Path,
    recogniser: str,
    checkpoint: str | Path,
    stores: Mapping[str, str | Path],
    model_options: Mapping[str, object] | None = None,
    class_num: int | None = None,
    use_emb2: bool | None = None,
    min_frames: int = MIN_FRAMES,
    frames_all_limit: int = FRAMES_ALL_LIMIT,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Embed every row of one shard; write ``out`` (contract ``embeddings``) and return its rows.

    ``stores``: stage name → this shard's frame store (``results/perception/{source}/{stage}/{shard}.npz``)
    for each stage the recogniser's modality reads (``silhouettes``, ``skeleton_maps``, ``crops``); the
    status table beside each store (``.parquet``) supplies upstream errors.
    """
    import torch

    from pipeline.recognisers.data import GaitDataset

    if threads is not None:
        torch.set_num_threads(int(threads))
    from pipeline.recognisers.checkpoints import read_checkpoint, unavailable_note

    # Read once: the unavailability note and the weights come from the same file.
    saved = read_checkpoint(checkpoint, f"{CONFIG_KEY}.checkpoint") if Path(checkpoint).is_file() else None
    if (reason := unavailable_note(saved)) is not None:
        # The recogniser could not be trained on this dataset: every row says why (never ranked).
        return _write_rows(rows, out, recogniser, checkpoint, channels=1, parts=1, results={}, skipped={}, common_error=reason)
    model = load_recogniser(
        recogniser,
        checkpoint,
        model_options=model_options,
        class_num=class_num,
        use_emb2=use_emb2,
        device=device,
        saved=saved,
    )
    dataset = GaitDataset.from_stores(
        rows,
        {stage: [path] for stage, path in stores.items()},
        model.modality,
        min_frames=min_frames,
        labels=[],
    )
    results = dict(
        zip(
            (it.sequence_id for it in dataset.items),
            embed_dataset(model, dataset, frames_all_limit=frames_all_limit, seed=seed, device=device),
            strict=True,
        )
    )
    channels, parts = int(model.embed_dim), int(model.parts)
    return _write_rows(
        rows, out, recogniser, checkpoint, channels=channels, parts=parts, results=results, skipped=dataset.skipped
    )


def _write_rows(
    rows: Sequence[Mapping[str, object]],
    out: str | Path,
    recogniser: str,
    checkpoint: str | Path,
    *,
    channels: int,
    parts: int,
    results: Mapping[str, tuple],
    skipped: Mapping[str, str],
    common_error: str | None = None,
) -> list[dict]:
    """One embeddings row per manifest row (``common_error``: the same reason for every row)."""
    table_rows = []
    for row in rows:
        sid = str(row["sequence_id"])
        embedding, frames, seconds, error = results.get(sid, (None, None, None, common_error or skipped.get(sid)))
        if embedding is None and error is None:
            error = "not embedded (no frames found)"
        table_rows.append(
            {
                "sequence_id": sid,
                "subject": str(row["subject"]),
                "condition": str(row["condition"]),
                "view": str(row["view"]),
                "role": str(row["role"]),
                "recogniser": recogniser,
                "checkpoint": str(checkpoint),
                "embedding": embedding,
                "channels": channels,
                "parts": parts,
                "frames": frames,
                "seconds": seconds,
                "error": error,
            }
        )
    write_table(embeddings_table(table_rows, channels * parts), out, EMBEDDINGS)
    failed = [r for r in table_rows if r["error"]]
    log.info(
        "embed %s: %d sequences, %d embedded, %d flagged",
        recogniser,
        len(table_rows),
        len(table_rows) - len(failed),
        len(failed),
    )
    for r in failed[:20]:
        log.warning("embed %s: %s", r["sequence_id"], r["error"])
    return table_rows
