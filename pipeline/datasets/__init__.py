"""Dataset adapters: turn a dataset as it lies on disk into MANIFEST rows (one per sequence).

Each adapter returns plain row dicts; :func:`index_dataset` picks the adapter by kind, sorts the rows
by sequence ID (so the manifest is byte-stable across runs and file systems) and validates the table
against :data:`pipeline.contracts.MANIFEST` before anything is written.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa

from pipeline.config import ConfigError
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

# Keys of a `datasets.<name>` entry that the workflow reads and that never reach an adapter.
WORKFLOW_KEYS = frozenset(
    {
        "name", "kind", "perception_shards", "protocol", "scenario_conditions", "pose_backend", "mask_backend",
        "sweep_models", "sweep_scenarios",
    }
)
# Keys with a schema default on every dataset: passed to the adapters that take them, dropped for the others
# (the custom adapter always probes its videos, so it has no `count_frames`).
SHARED_DEFAULT_KEYS = frozenset({"count_frames"})


def _adapter(kind: str) -> Callable[..., list[dict]]:
    adapter = ADAPTERS.get(kind.lower().replace("-", "_"))
    if adapter is None:
        raise ValueError(f"unknown dataset kind {kind!r}; known kinds: {sorted(ADAPTERS)}")
    return adapter


def adapter_keys(kind: str) -> frozenset[str]:
    """The options the adapter of ``kind`` takes: its keyword-only parameters except ``dataset``."""
    parameters = inspect.signature(_adapter(kind)).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "dataset")


def foreign_keys(kind: str, spec: Mapping[str, object]) -> list[str]:
    """Keys of a dataset entry that neither the adapter of ``kind`` nor the workflow reads."""
    own = frozenset({"world"}) if kind == "world" else frozenset({"root"}) | adapter_keys(kind)
    known = WORKFLOW_KEYS | SHARED_DEFAULT_KEYS | own
    return sorted(set(spec) - known)


def adapter_options(kind: str, spec: Mapping[str, object]) -> dict[str, object]:
    """The adapter's own options out of a dataset's config entry (workflow-only keys left out).

    A key that nothing reads (``sheet`` on an ``opengait`` dataset) raises ValueError naming it."""
    foreign = foreign_keys(kind, spec)
    if foreign:
        raise ValueError(
            f"dataset kind {kind!r} does not take {foreign}; its adapter takes {sorted(adapter_keys(kind))}"
        )
    accepted = adapter_keys(kind)
    return {key: value for key, value in spec.items() if key in accepted}


def check_datasets(config: dict) -> None:
    """Config check of the `datasets` section: every key of a dataset is one its kind (adapter) or the
    workflow reads, so a misplaced key fails before any job, naming the dataset and the key."""
    for name, spec in config["datasets"].items():
        foreign = foreign_keys(spec["kind"], spec)
        if foreign:
            takes = "" if spec["kind"] == "world" else f"; its adapter takes {sorted(adapter_keys(spec['kind']))}"
            raise ConfigError(f"datasets/{name}: kind '{spec['kind']}' does not take {foreign}{takes}")


def index_dataset(kind: str, root: str | os.PathLike, *, dataset: str, **options: object) -> pa.Table:
    """Index ``root`` with the adapter ``kind`` and return the validated MANIFEST table.

    ``kind`` is case-insensitive and accepts ``-`` for ``_`` (``CCGR-MINI`` → ``ccgr_mini``);
    ``options`` go to the adapter (e.g. ``partition=...``).
    """
    adapter = _adapter(kind)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    rows = sorted(adapter(root, dataset=dataset, **options), key=lambda row: str(row["sequence_id"]))
    return MANIFEST.validate(to_arrow(rows, MANIFEST), where=f"{kind} index of {root}")


__all__ = [
    "ADAPTERS",
    "SHARED_DEFAULT_KEYS",
    "WORKFLOW_KEYS",
    "adapter_keys",
    "adapter_options",
    "check_datasets",
    "index_ccgr_mini",
    "index_custom",
    "index_dataset",
    "index_opengait",
    "index_sustech1k",
]
