"""Dataset adapters: turn a dataset as it lies on disk into MANIFEST rows (one per sequence).

Each adapter returns plain row dicts; :func:`index_dataset` picks the adapter by kind, sorts the rows
by sequence ID (so the manifest is byte-stable across runs and file systems) and validates the table
against :data:`pipeline.contracts.MANIFEST` before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from pipeline.contracts import MANIFEST, to_arrow
from pipeline.datasets.ccgr_mini import index_ccgr_mini
from pipeline.datasets.custom import index_custom
from pipeline.datasets.opengait import index_opengait
from pipeline.datasets.sustech1k import index_sustech1k

ADAPTERS: dict[str, Callable[..., list[dict]]] = {
    "opengait": index_opengait,
    "sustech1k": index_sustech1k,
    "ccgr_mini": index_ccgr_mini,
    "custom": index_custom,
}


def index_dataset(kind: str, root: str | os.PathLike, *, dataset: str, **options: object) -> pa.Table:
    """Index ``root`` with the adapter ``kind`` and return the validated MANIFEST table.

    ``kind`` is case-insensitive and accepts ``-`` for ``_`` (``CCGR-MINI`` → ``ccgr_mini``);
    ``options`` go to the adapter (e.g. ``partition=...``).
    """
    adapter = ADAPTERS.get(kind.lower().replace("-", "_"))
    if adapter is None:
        raise ValueError(f"unknown dataset kind {kind!r}; known kinds: {sorted(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    rows = sorted(adapter(root, dataset=dataset, **options), key=lambda row: str(row["sequence_id"]))
    return MANIFEST.validate(to_arrow(rows, MANIFEST), where=f"{kind} index of {root}")


__all__ = [
    "ADAPTERS",
    "index_ccgr_mini",
    "index_custom",
    "index_dataset",
    "index_opengait",
    "index_sustech1k",
]
