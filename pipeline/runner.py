"""The shard runner shared by every per-sequence stage.

A stage job gets a manifest and a shard name; it processes the manifest's sequences that hash to the
shard, writes one frame store with the arrays of the sequences that succeeded and one status table
(contract ``stage_status``) with a row for *every* sequence of the shard: why a sequence was skipped
(an error upstream, too few valid frames, a decoding failure) is recorded where the next stage and the
report can read it. One failing sequence never loses the shard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.contracts import (
    MANIFEST,
    Contract,
    read_table,
    register,
    shard_name,
    shard_of,
    write_frame_store,
    write_table,
)

log = logging.getLogger(__name__)

STAGE_STATUS = register(
    Contract(
        name="stage_status",
        schema=pa.schema(
            [
                pa.field("stage", pa.string(), nullable=False),
                pa.field("backend", pa.string(), nullable=False),
                pa.field("sequence_id", pa.string(), nullable=False),
                pa.field("frame_count", pa.int32()),
                pa.field("valid_frames", pa.int32()),
                pa.field("seconds", pa.float32()),
                pa.field("error", pa.string()),  # null = arrays are in the shard's frame store
            ],
            metadata={"doc": "one row per sequence and stage shard"},
        ),
        allowed_values={},
        unique_key=("stage", "sequence_id"),
    )
)


STAGE_SUMMARY = register(
    Contract(
        name="stage_summary",
        schema=pa.schema([*STAGE_STATUS.schema, pa.field("store", pa.string(), nullable=False)]),
        allowed_values={},
        unique_key=("stage", "sequence_id"),
    )
)


def summarise(statuses: Iterable[str | Path], out: str | Path) -> Path:
    """One table for all shards of a stage: every status row plus the frame store that holds it.

    Consumers that need a whole source (the sweep plan, generation) depend on this single file instead
    of on every shard's outputs, which keeps their DAG edges O(1) instead of O(shards).
    """
    rows = []
    for status in statuses:
        store = str(Path(status).with_suffix(".npz"))
        if not Path(store).is_file():
            raise FileNotFoundError(f"{status}: its frame store {store} is missing")
        rows.extend({**row, "store": store} for row in read_table(status, STAGE_STATUS).to_pylist())
    return write_table(rows, out, STAGE_SUMMARY)


def stores_by_sequence(summary: str | Path) -> dict[str, str]:
    """sequence_id → frame store path, for the sequences a stage stored arrays for."""
    table = read_table(summary, STAGE_SUMMARY).to_pylist()
    return {r["sequence_id"]: r["store"] for r in table if r["valid_frames"] is not None}


class SkipSequence(Exception):
    """Raised by a stage's per-sequence function for an expected, explainable skip."""


@dataclass(frozen=True)
class StageOutput:
    """What a stage's per-sequence function returns: frame-store fields and the per-frame validity."""

    arrays: Mapping[str, np.ndarray]
    valid: np.ndarray  # [T] bool
    # A sequence whose arrays are kept (to inspect) but that must not be used: its status row's error.
    error: str | None = None


def shard_rows(manifest: str | Path, shard: str, num_shards: int) -> list[dict]:
    """The manifest rows (as dicts) whose sequence_id hashes to ``shard``, in manifest order."""
    table = read_table(manifest, MANIFEST)
    rows = table.to_pylist()
    return [r for r in rows if shard_name(shard_of(r["sequence_id"], num_shards)) == shard]


def upstream_errors(status_paths: Iterable[str | Path]) -> dict[str, str]:
    """sequence_id → "<stage>: <error>" for every sequence an upstream stage could not process."""
    errors: dict[str, str] = {}
    for path in status_paths:
        for row in read_table(path, STAGE_STATUS).to_pylist():
            error = row["error"]
            if error is not None:
                # A skip recorded upstream already names the stage where it started: pass it on as is.
                inner = error[len("skipped (") : -1] if error.startswith("skipped (") else f"{row['stage']}: {error}"
                errors.setdefault(row["sequence_id"], inner)
    return errors


def run_shard(
    *,
    stage: str,
    backend: str,
    rows: list[dict],
    process: Callable[[dict], StageOutput],
    store_path: str | Path,
    status_path: str | Path,
    min_valid_frames: int = 1,
    skip: Mapping[str, str] | None = None,
    compress: bool = True,
) -> list[dict]:
    """Run ``process`` on every row, write the frame store and the status table; return the status rows."""
    skip = skip or {}
    store: dict[str, dict[str, np.ndarray]] = {}
    status = []
    for row in rows:
        sid = row["sequence_id"]
        record = {"stage": stage, "backend": backend, "sequence_id": sid, "frame_count": row.get("frame_count")}
        start = time.perf_counter()
        reason = row.get("error") and f"manifest: {row['error']}" or skip.get(sid)
        if reason:
            record.update(valid_frames=None, error=f"skipped ({reason})")
        else:
            try:
                output = process(row)
                valid = np.asarray(output.valid, dtype=bool)
                record.update(frame_count=int(len(valid)), valid_frames=int(valid.sum()), error=None)
                if valid.sum() < min_valid_frames:
                    record["error"] = f"only {int(valid.sum())} valid frames of {len(valid)} (< {min_valid_frames} required)"
                if output.error:
                    record["error"] = output.error
                store[sid] = {**output.arrays, "valid": valid}
            except SkipSequence as err:
                record.update(valid_frames=None, error=str(err))
            except Exception as err:  # a broken sequence becomes a status row; the shard goes on
                log.exception("%s failed on %s", stage, sid)
                record.update(valid_frames=None, error=f"{type(err).__name__}: {err}")
        record["seconds"] = time.perf_counter() - start
        status.append(record)
    write_frame_store(store_path, store, compress=compress)
    write_table(status, status_path, STAGE_STATUS)
    failed = [r for r in status if r["error"]]
    log.info("%s: %d sequences, %d with arrays, %d flagged", stage, len(status), len(store), len(failed))
    for r in failed[:20]:
        log.warning("%s %s: %s", stage, r["sequence_id"], r["error"])
    return status
