"""Data contracts between stages: pyarrow schemas, checked on every write and every read.

Every table that crosses a rule boundary is a Parquet file whose schema is declared here. Writers call
:func:`write_table`, which validates (names, types, nullability, allowed values) and writes atomically
(temp file + rename), so a crashed job never leaves a half-written artifact that Snakemake would treat
as done. Readers call :func:`read_table`, which validates again, so a file from an older or foreign
version fails loudly with the offending column named instead of producing silently wrong numbers.

Frame-level arrays (masks, keypoints, part maps, silhouettes, ...) are never stored one file per
frame. They live in per-shard *frame stores* (see :class:`FrameStore`): one ``.npz`` per shard in
which every field is the concatenation of all the shard's sequences along the frame axis, plus an
``offsets`` index. Shards are named ``shard-{k:04d}``; :func:`shard_of` assigns a key to a shard by
a stable hash, so adding sequences, identities or models never moves an existing key to another
shard.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "test")
# The study's two tasks (sweep plan and every per-video table).
TASKS = ("restoration", "transfer")
ROLES = ("train", "gallery", "probe")
MODALITY_COLUMNS = (
    "path_video",  # an RGB video file (mp4, avi, ...)
    "path_frames",  # a folder of RGB image frames
    "path_rgb",  # a pkl with an RGB array (SUSTech1K 05-Camera-RGB_raw, CCGR-MINI rgb_f)
    "path_silhouette",  # a pkl with silhouettes (aligned 64x64 where the dataset ships them)
    "path_pose",  # a pkl with COCO-17 keypoints (T, 17, 3) = x, y, score
    "path_ratios",  # a pkl with (T, 2) original H, W of the cropped frames
    "path_groundtruth",  # a frame store (.npz) with the synthetic world's ground truth
)


class ContractError(ValueError):
    """A table or frame store does not follow its declared contract."""


@dataclass(frozen=True)
class Contract:
    """A named pyarrow schema plus value-level rules that a schema alone cannot express."""

    name: str
    schema: pa.Schema
    allowed_values: Mapping[str, tuple[str, ...]]
    unique_key: tuple[str, ...] = ()

    def validate(self, table: pa.Table, *, where: str = "table") -> pa.Table:
        """Return ``table`` cast to the schema (column order fixed) or raise :class:`ContractError`."""
        have = set(table.column_names)
        missing = [f.name for f in self.schema if f.name not in have]
        extra = sorted(have - set(self.schema.names))
        if missing or extra:
            raise ContractError(
                f"{where}: does not match contract '{self.name}': missing columns {missing}, unexpected columns {extra}"
            )
        columns = []
        for field in self.schema:
            column = table.column(field.name)
            if not column.type.equals(field.type):
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    raise ContractError(
                        f"{where}: column '{field.name}' has type {column.type}, contract '{self.name}' needs {field.type}"
                    ) from err
            if not field.nullable and column.null_count:
                raise ContractError(
                    f"{where}: column '{field.name}' has {column.null_count} nulls but is required by '{self.name}'"
                )
            columns.append(column)
        table = pa.Table.from_arrays(columns, schema=self.schema)
        for name, allowed in self.allowed_values.items():
            values = set(v for v in table.column(name).to_pylist() if v is not None)
            bad = sorted(values - set(allowed))
            if bad:
                raise ContractError(f"{where}: column '{name}' has values {bad}; allowed: {list(allowed)}")
        if self.unique_key and table.num_rows:
            keys = list(zip(*(table.column(k).to_pylist() for k in self.unique_key), strict=True))
            if len(set(keys)) != len(keys):
                seen: set[tuple] = set()
                dup = next(k for k in keys if k in seen or seen.add(k))
                raise ContractError(f"{where}: duplicate key {self.unique_key}={dup} in '{self.name}'")
        return table

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


def _schema(*fields: tuple[str, pa.DataType, bool], doc: str) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in fields], metadata={"doc": doc})


# One row per sequence of a dataset (real or synthetic). Written by the index stage.
MANIFEST = Contract(
    name="manifest",
    schema=_schema(
        ("dataset", pa.string(), False),
        ("subject", pa.string(), False),
        ("condition", pa.string(), False),  # OpenGait "type", e.g. 00-nm, NM1, bg-01
        ("view", pa.string(), False),
        ("sequence_id", pa.string(), False),  # "{subject}/{condition}/{view}", unique within a dataset
        ("split", pa.string(), False),  # train | test
        ("role", pa.string(), False),  # train | gallery | probe
        *[(c, pa.string(), True) for c in MODALITY_COLUMNS],
        ("frame_count", pa.int32(), True),
        ("fps", pa.float32(), True),
        ("width", pa.int32(), True),
        ("height", pa.int32(), True),
        ("attributes", pa.string(), True),  # JSON object: covariates and world factor ids
        ("error", pa.string(), True),  # null = usable; otherwise why the sequence cannot be used
        doc="one row per sequence",
    ),
    allowed_values={"split": SPLITS, "role": ROLES},
    unique_key=("dataset", "sequence_id"),
)

CONTRACTS: dict[str, Contract] = {MANIFEST.name: MANIFEST}


def register(contract: Contract) -> Contract:
    """Add a contract defined by a later stage so it is listed and checked like the others."""
    if contract.name in CONTRACTS and CONTRACTS[contract.name] is not contract:
        raise ContractError(f"contract '{contract.name}' is already registered")
    CONTRACTS[contract.name] = contract
    return contract


# The sweep plan: written by the sweep stage, read by generation and GaitCrafter's sweep sampling.
PLAN = register(
    Contract(
        name="sweep_plan",
        schema=pa.schema(
            [
                pa.field("job_id", pa.string(), nullable=False),  # "{scenario}/{driving_sequence}"
                pa.field("dataset", pa.string(), nullable=False),
                pa.field("task", pa.string(), nullable=False),
                pa.field("scenario", pa.string(), nullable=False),
                pa.field("driving_sequence", pa.string(), nullable=False),
                pa.field("driving_subject", pa.string(), nullable=False),
                pa.field("reference_sequence", pa.string(), nullable=False),
                pa.field("reference_subject", pa.string(), nullable=False),
                pa.field("reference_frame", pa.int32(), nullable=False),
                pa.field("seed", pa.int64(), nullable=False),
                pa.field("shard", pa.string(), nullable=False),
            ],
            metadata={"doc": "one row per generation job of a dataset, shared by all models"},
        ),
        allowed_values={"task": TASKS},
        unique_key=("job_id",),
    )
)


# ---------------------------------------------------------------------------------------------
# Atomic, validated Parquet I/O


def field(name: str, dtype: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, dtype, nullable=nullable)


def string_fields(*names: str, nullable: bool = False) -> list[pa.Field]:
    return [field(n, pa.string(), nullable) for n in names]


def declare(
    name: str, doc: str, fields: list[pa.Field], unique: tuple[str, ...], **allowed: tuple[str, ...]
) -> Contract:
    """Build and :func:`register` a contract from its fields (``allowed``: column → permitted values)."""
    return register(Contract(name, pa.schema(fields, metadata={"doc": doc}), allowed, unique))


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """Return (final, temporary) paths in the same folder, so the final rename is atomic."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    # mkstemp creates 0600 files; outputs should get the usual permissions (group-readable on clusters).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return final, Path(tmp)


def write_table(table: pa.Table | object, path: str | os.PathLike, contract: Contract) -> Path:
    """Validate ``table`` (a pyarrow Table, a polars DataFrame or a list of row dicts) and write it."""
    arrow = to_arrow(table, contract)
    arrow = contract.validate(arrow, where=str(path))
    final, tmp = atomic_path(path)
    try:
        pq.write_table(arrow, tmp, compression="zstd")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def read_table(path: str | os.PathLike, contract: Contract) -> pa.Table:
    """Read a Parquet file and validate it against ``contract``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{contract.name} table not found: {path}")
    try:
        # ParquetFile, not pq.read_table: the latter imports pyarrow.dataset and with it pandas
        # (~0.2 s in every job); for one file both return the same table.
        table = pq.ParquetFile(path).read()
    except (pa.ArrowInvalid, OSError) as err:
        raise ContractError(f"{path}: not a readable Parquet file ({err})") from err
    return contract.validate(table, where=str(path))


def read_frame(path: str | os.PathLike, contract: Contract):
    """Read a validated table as a polars DataFrame."""
    import polars as pl

    return pl.from_arrow(read_table(path, contract))


def to_arrow(table: object, contract: Contract) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, list):
        rows = [{name: row.get(name) for name in contract.schema.names} for row in table]
        for original in table:
            unknown = set(original) - set(contract.schema.names)
            if unknown:
                raise ContractError(f"row has columns {sorted(unknown)} not in contract '{contract.name}'")
        return rows_to_arrow(rows, contract.schema)
    to_arrow_method = getattr(table, "to_arrow", None)
    if to_arrow_method is not None:  # polars DataFrame
        return to_arrow_method()
    raise TypeError(f"cannot convert {type(table).__name__} to an Arrow table")


def rows_to_arrow(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Row dicts → a table of ``schema``, column by column through polars where the type allows.

    Why not ``pa.Table.from_pylist`` alone: every ``pa.array`` call imports pandas (pyarrow asks it
    whether the values are a pandas object), ~0.2 s in each job, and no job here uses pandas. A column
    polars cannot convert exactly (another type, or a value such as a float in an integer column, which
    polars refuses and pyarrow truncates) goes through ``pa.array`` as before, so the table is the one
    ``from_pylist`` gives.
    """
    import polars as pl

    simple = {
        pa.bool_(): pl.Boolean, pa.float64(): pl.Float64, pa.float32(): pl.Float32,
        pa.int32(): pl.Int32, pa.int64(): pl.Int64, pa.string(): pl.String,
    }  # fmt: skip
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]  # a missing key is null, as in from_pylist
        dtype = simple.get(field.type)
        column = None
        if dtype is not None:
            try:
                column = pl.Series(field.name, values, dtype=dtype, strict=True).to_arrow().cast(field.type)
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                column = None  # pyarrow below converts it, or raises its own error naming the value
        if column is None:
            column = pa.array(values, type=field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


# ---------------------------------------------------------------------------------------------
# Sharding


def shard_of(key: str, num_shards: int) -> int:
    """Stable shard index of ``key``: crc32 of its UTF-8 bytes modulo ``num_shards``.

    crc32 is fixed by the zlib spec (unlike Python's salted ``hash``), so the assignment is the same on
    every machine and run, and depends only on the key itself: adding keys never moves existing ones.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1")
    return zlib.crc32(key.encode("utf-8")) % num_shards


def shard_name(index: int) -> str:
    return f"shard-{index:04d}"


def shard_names(num_shards: int) -> list[str]:
    return [shard_name(i) for i in range(num_shards)]


# ---------------------------------------------------------------------------------------------
# Frame stores: per-shard arrays for many sequences


class FrameStore:
    """Frame-level arrays of many sequences in one ``.npz`` (a shard).

    Layout: for every field ``f``, the array ``f`` is the concatenation over sequences along axis 0
    (frames), and ``offsets`` ([n_seq + 1] int64) gives each sequence's frame range in the order of
    ``sequence_ids``. Per-sequence scalars or fixed-size arrays that are not per frame go in fields
    named ``seq:<name>`` with one leading entry per sequence. Boolean masks should be bit-packed by the
    writer (:func:`pack_masks`) to keep shards small.

    A shard may hold sequences of different frame sizes (a portrait and a landscape video): a field
    whose per-frame shape differs between sequences is *ragged* and stored flat (the concatenation of
    each sequence's raveled array) with ``shape:<field>`` ([n_seq, ndim] int64, frames first) beside
    it; :meth:`get` returns every sequence in its own shape either way.
    """

    def __init__(
        self,
        sequence_ids: list[str],
        offsets: np.ndarray,
        arrays: dict[str, np.ndarray],
        shapes: Mapping[str, np.ndarray] | None = None,
    ):
        self.sequence_ids = list(sequence_ids)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.arrays = arrays
        # ragged fields: field → int64 [n_seq, ndim], each sequence's full shape (frames first)
        self.shapes = {f: np.asarray(v, dtype=np.int64) for f, v in (shapes or {}).items()}
        self._elements: dict[str, np.ndarray] = {}
        self._position = {sid: i for i, sid in enumerate(self.sequence_ids)}

    @property
    def fields(self) -> list[str]:
        return sorted(self.arrays)

    def __contains__(self, sequence_id: str) -> bool:
        return sequence_id in self._position

    def get(self, sequence_id: str, field: str) -> np.ndarray:
        if sequence_id not in self._position:
            raise KeyError(f"sequence '{sequence_id}' is not in this frame store")
        if field not in self.arrays:
            raise KeyError(f"field '{field}' not in frame store (has {self.fields})")
        i = self._position[sequence_id]
        if field.startswith("seq:"):
            return self.arrays[field][i]
        shapes = self.shapes.get(field)
        if shapes is not None:  # ragged: the field is the flat concatenation of each sequence's array
            starts = self._element_offsets(field)
            return self.arrays[field][starts[i] : starts[i + 1]].reshape(tuple(int(n) for n in shapes[i]))
        return self.arrays[field][self.offsets[i] : self.offsets[i + 1]]

    def shape(self, sequence_id: str, field: str) -> tuple[int, ...]:
        """The shape of one sequence's array of ``field`` (per-frame fields: frames first)."""
        if sequence_id not in self._position:
            raise KeyError(f"sequence '{sequence_id}' is not in this frame store")
        i = self._position[sequence_id]
        shapes = self.shapes.get(field)
        if shapes is not None:
            return tuple(int(n) for n in shapes[i])
        if field not in self.arrays:
            raise KeyError(f"field '{field}' not in frame store (has {self.fields})")
        if field.startswith("seq:"):
            return tuple(self.arrays[field].shape[1:])
        return (self.frame_count(sequence_id), *self.arrays[field].shape[1:])

    def _element_offsets(self, field: str) -> np.ndarray:
        cached = self._elements.get(field)
        if cached is None:
            sizes = np.prod(self.shapes[field], axis=1, dtype=np.int64) if len(self.shapes[field]) else np.zeros(0)
            cached = self._elements[field] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cached

    def frame_count(self, sequence_id: str) -> int:
        i = self._position[sequence_id]
        return int(self.offsets[i + 1] - self.offsets[i])


def write_frame_store(
    path: str | os.PathLike,
    per_sequence: Mapping[str, Mapping[str, np.ndarray]],
    *,
    compress: bool = True,
) -> Path:
    """Write ``{sequence_id: {field: array}}`` as one shard. All sequences must have the same fields."""
    sequence_ids = list(per_sequence)
    fields = sorted({f for arrays in per_sequence.values() for f in arrays})
    lengths = []
    for sid in sequence_ids:
        arrays = per_sequence[sid]
        if sorted(arrays) != fields:
            raise ContractError(f"frame store: sequence '{sid}' has fields {sorted(arrays)}, expected {fields}")
        frame_fields = [f for f in fields if not f.startswith("seq:")]
        counts = {f: len(arrays[f]) for f in frame_fields}
        if len(set(counts.values())) > 1:
            raise ContractError(f"frame store: sequence '{sid}' has fields of different lengths {counts}")
        lengths.append(next(iter(counts.values()), 0))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    payload: dict[str, np.ndarray] = {"offsets": offsets, "sequence_ids": np.array(sequence_ids, dtype=np.str_)}
    for f in fields:
        parts = [np.asarray(per_sequence[sid][f]) for sid in sequence_ids]
        if f.startswith("seq:"):
            if len({p.shape for p in parts}) > 1:
                raise ContractError(f"frame store: per-sequence field '{f}' has different shapes {sorted({p.shape for p in parts})}")
            payload[f] = np.stack(parts) if parts else np.zeros((0,))
        elif len({p.shape[1:] for p in parts}) > 1 or len({p.ndim for p in parts}) > 1:
            # ragged: sequences of different frame sizes in one shard (one file per shard still)
            if len({p.ndim for p in parts}) > 1:
                raise ContractError(f"frame store: field '{f}' has arrays of different ranks {[p.ndim for p in parts]}")
            payload[f] = np.concatenate([p.ravel() for p in parts])
            payload[f"shape:{f}"] = np.array([p.shape for p in parts], dtype=np.int64)
        else:
            payload[f] = np.concatenate(parts) if parts else np.zeros((0,))
    final, tmp = atomic_path(path)
    try:
        buffer = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buffer, **payload)
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def read_frame_store(path: str | os.PathLike, fields: Iterable[str] | None = None) -> FrameStore:
    """Load a shard written by :func:`write_frame_store` (optionally only some fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame store not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if not {"offsets", "sequence_ids"} <= names:
                raise ContractError(f"{path}: not a frame store (no offsets/sequence_ids)")
            stored = {n for n in names - {"offsets", "sequence_ids"} if not n.startswith("shape:")}
            wanted = sorted(stored) if fields is None else list(fields)
            missing = [f for f in wanted if f not in names]
            if missing and len(data["sequence_ids"]):
                raise ContractError(f"{path}: frame store lacks fields {missing}")
            # A store of no sequence (an empty shard, or every sequence failed) has no fields: any
            # field asked for is empty, so readers need no special case.
            store = FrameStore(
                [str(s) for s in data["sequence_ids"]],
                data["offsets"],
                {f: data[f] if f in names else np.zeros((0,)) for f in wanted},
                {f: data[f"shape:{f}"] for f in wanted if f"shape:{f}" in names},
            )
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, ContractError):
            raise
        raise ContractError(f"{path}: unreadable frame store ({err})") from err
    total = int(store.offsets[-1]) if len(store.offsets) else 0
    frames = np.diff(store.offsets)
    for f, array in store.arrays.items():
        shapes = store.shapes.get(f)
        if shapes is not None:
            if shapes.ndim != 2 or len(shapes) != len(store.sequence_ids) or not np.array_equal(shapes[:, 0], frames):
                raise ContractError(f"{path}: ragged field '{f}': its shapes do not match the offsets")
            if array.ndim != 1 or len(array) != int(np.prod(shapes, axis=1).sum()):
                raise ContractError(f"{path}: ragged field '{f}' has {array.size} values, its shapes say {int(np.prod(shapes, axis=1).sum())}")
            continue
        expected = len(store.sequence_ids) if f.startswith("seq:") else total
        if len(array) != expected:
            raise ContractError(f"{path}: field '{f}' has {len(array)} rows, offsets say {expected}")
    return store


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack boolean masks [T, H, W] along W → uint8 [T, H, ceil(W/8)]."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=-1)


def unpack_masks(packed: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    return np.unpackbits(packed, axis=-1, count=width).astype(bool)
