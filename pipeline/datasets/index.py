"""Stage "index": a dataset on disk → the sequence manifest (contract ``manifest``).

Real datasets go through their adapter (pipeline/datasets). The synthetic world is written to disk as
a plain video dataset with a CSV sheet, and is indexed by the same ``custom`` adapter as user data,
so the world exercises the code path real videos take; the world's extra columns (ground-truth frame
store and factor attributes) are then attached from its sheets.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.contracts import MANIFEST, rows_to_arrow, write_table

log = logging.getLogger(__name__)

WORLD_SHEET_COLUMNS = ("path", "subject", "condition", "view", "split", "role", "groundtruth", "attributes", "error")


def index_external(spec: dict, out: str | Path) -> Path:
    """Index a real dataset described by its config entry (``kind``, ``root``, ...).

    The entry is the whole ``datasets.<name>`` mapping with schema defaults; the adapter gets only the keys
    of its own signature (:func:`pipeline.datasets.adapter_options`)."""
    from pipeline.datasets import adapter_options, index_dataset

    options = adapter_options(spec["kind"], spec)  # only the adapter's own keys (no workflow keys)
    table = index_dataset(spec["kind"], spec["root"], dataset=spec["name"], **options)
    _log_summary(table)
    return write_table(table, out, MANIFEST)


def read_world_sheets(sheets: Sequence[str | Path]) -> list[dict]:
    rows: list[dict] = []
    for sheet in sheets:
        with open(sheet, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or list(reader.fieldnames) != list(WORLD_SHEET_COLUMNS):
                raise ValueError(f"{sheet}: world sheet columns {reader.fieldnames}, expected {WORLD_SHEET_COLUMNS}")
            rows.extend(reader)
    return rows


def index_world(spec: str | Path, sheets: Sequence[str | Path], groundtruth: Sequence[str | Path], out: str | Path) -> Path:
    """Merge a world's shard sheets, index its videos with the custom adapter, attach ground truth."""
    from pipeline.datasets.custom import index_custom

    root = Path(spec).parent
    world = json.loads(Path(spec).read_text())
    rows = read_world_sheets(sheets)
    merged = root / "sheet.csv"
    with open(merged, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "subject", "condition", "view", "split", "role"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    indexed = index_custom(root, dataset=world["dataset"], sheet=merged)
    by_path = {row["path"]: row for row in rows}
    stores = {str(Path(g).resolve()) for g in groundtruth}
    for record in indexed:
        sheet_row = by_path[str(Path(record["path_video"]).resolve().relative_to(root.resolve()))]
        gt = (root / sheet_row["groundtruth"]).resolve()
        if str(gt) not in stores:
            raise ValueError(f"{sheet_row['path']}: ground truth {gt} is not one of the rule's inputs")
        record["path_groundtruth"] = str(gt)
        record["attributes"] = sheet_row["attributes"]
        if sheet_row["error"]:
            record["error"] = sheet_row["error"] if not record.get("error") else f"{sheet_row['error']}; {record['error']}"
    table = rows_to_arrow(indexed, MANIFEST.schema)
    _log_summary(table)
    return write_table(table, out, MANIFEST)


def _log_summary(table: pa.Table) -> None:
    import polars as pl

    frame = pl.from_arrow(table)
    errors = frame.filter(pl.col("error").is_not_null())
    log.info(
        "%d sequences (%s), %d with errors",
        frame.height,
        ", ".join(f"{r['role']}={r['len']}" for r in frame.group_by("role").len().sort("role").to_dicts()),
        errors.height,
    )
    for row in errors.head(20).iter_rows(named=True):
        log.warning("%s: %s", row["sequence_id"], row["error"])
