"""Data contracts: validation on write and read, atomic writes, frame stores and shard stability."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import (
    MANIFEST,
    ContractError,
    pack_masks,
    read_frame_store,
    read_table,
    shard_name,
    shard_of,
    unpack_masks,
    write_frame_store,
    write_table,
)


def manifest_row(**overrides) -> dict:
    row = {
        "dataset": "d",
        "subject": "001",
        "condition": "nm-01",
        "view": "090",
        "sequence_id": "001/nm-01/090",
        "split": "test",
        "role": "gallery",
        "frame_count": 30,
    }
    row.update(overrides)
    return row


def test_round_trip(tmp_path):
    path = write_table([manifest_row(), manifest_row(sequence_id="001/nm-02/090", role="probe")], tmp_path / "m.parquet", MANIFEST)
    table = read_table(path, MANIFEST)
    assert table.num_rows == 2 and table.schema.equals(MANIFEST.schema)
    assert table.column("path_video").null_count == 2
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_bad_role_is_refused(tmp_path):
    with pytest.raises(ContractError, match="role.*'query'"):
        write_table([manifest_row(role="query")], tmp_path / "m.parquet", MANIFEST)
    assert not (tmp_path / "m.parquet").exists()


def test_duplicate_key_is_refused(tmp_path):
    with pytest.raises(ContractError, match="duplicate key"):
        write_table([manifest_row(), manifest_row()], tmp_path / "m.parquet", MANIFEST)


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ContractError, match="colour"):
        write_table([manifest_row(colour="red")], tmp_path / "m.parquet", MANIFEST)


def test_required_null_is_refused(tmp_path):
    with pytest.raises(ContractError, match="subject"):
        write_table([manifest_row(subject=None)], tmp_path / "m.parquet", MANIFEST)


def test_read_checks_foreign_file(tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"dataset": ["d"], "subject": ["x"]}), path)
    with pytest.raises(ContractError, match="missing columns"):
        read_table(path, MANIFEST)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ContractError, match="not a readable Parquet"):
        read_table(tmp_path / "junk.parquet", MANIFEST)


def test_frame_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks_a = rng.random((5, 7, 13)) > 0.5
    masks_b = rng.random((3, 7, 13)) > 0.5
    data = {
        "a": {"mask": pack_masks(masks_a), "kp": rng.random((5, 17, 3)), "seq:camera": np.eye(3, 4)},
        "b": {"mask": pack_masks(masks_b), "kp": rng.random((3, 17, 3)), "seq:camera": 2 * np.eye(3, 4)},
    }
    store = read_frame_store(write_frame_store(tmp_path / "s.npz", data))
    assert store.sequence_ids == ["a", "b"] and store.frame_count("b") == 3
    np.testing.assert_array_equal(unpack_masks(store.get("b", "mask"), 13), masks_b)
    np.testing.assert_array_equal(store.get("a", "kp"), data["a"]["kp"])
    np.testing.assert_array_equal(store.get("b", "seq:camera"), 2 * np.eye(3, 4))
    with pytest.raises(KeyError, match="'c'"):
        store.get("c", "kp")


def test_frame_store_rejects_ragged_sequence(tmp_path):
    with pytest.raises(ContractError, match="different lengths"):
        write_frame_store(tmp_path / "s.npz", {"a": {"x": np.zeros((3, 2)), "y": np.zeros((4, 2))}})


def test_frame_store_rejects_corrupt_file(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ContractError):
        read_frame_store(tmp_path / "c.npz")


def test_shards_are_stable_and_spread():
    keys = [f"w{i:03d}/nm-01/090" for i in range(2000)]
    first = [shard_of(k, 16) for k in keys]
    # Adding keys never moves existing ones, and the same key maps identically on every call.
    more = keys + [f"x{i:03d}/nm-01/090" for i in range(500)]
    assert [shard_of(k, 16) for k in more[:2000]] == first
    counts = np.bincount(first, minlength=16)
    assert counts.min() > 2000 / 16 * 0.7
    assert shard_of("w001/nm-01/090", 16) == 13  # crc32 is fixed by the zlib spec: a regression anchor
    assert shard_name(3) == "shard-0003"


def test_reading_a_table_imports_neither_pyarrow_dataset_nor_pandas(tmp_path):
    """Every job reads tables: pq.read_table's pyarrow.dataset import (and pandas with it) cost ~0.2 s each."""
    import subprocess
    import sys
    from pathlib import Path

    path = write_table([manifest_row()], tmp_path / "m.parquet", MANIFEST)
    (tmp_path / "empty.parquet").write_bytes(b"")
    code = (
        "import sys\n"
        "from pipeline.contracts import MANIFEST, ContractError, read_table\n"
        f"assert read_table({str(path)!r}, MANIFEST).num_rows == 1\n"
        "try:\n"
        f"    read_table({str(tmp_path / 'empty.parquet')!r}, MANIFEST)\n"
        "except ContractError as err:\n"
        "    assert 'not a readable Parquet' in str(err)\n"
        "else:\n"
        "    raise AssertionError('an empty file was read')\n"
        "print(sorted(m for m in ('pyarrow.dataset', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_writing_rows_imports_no_pandas_and_matches_from_pylist(tmp_path):
    """Row dicts → Arrow without pa.array (which imports pandas, ~0.2 s per job), yet the same table —
    and the same Parquet bytes — as pa.Table.from_pylist, including the values polars refuses."""
    import io
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.contracts import rows_to_arrow

    schema = pa.schema([("a", pa.int64()), ("b", pa.float64()), ("c", pa.string()), ("d", pa.bool_()),
                        ("e", pa.float32()), ("f", pa.int32())])  # fmt: skip
    rows = [
        {"a": 1, "b": None, "c": "x", "d": True, "e": 1.1, "f": np.int64(3)},
        {"a": None, "b": float("nan"), "c": None, "d": None, "e": np.float64(2.2)},  # "f" missing: null
        {"a": np.int64(5), "b": 3, "c": "y", "d": np.bool_(False), "e": None, "f": 7, "extra": 1},
        {"a": 2.0, "b": np.float32(0.5), "c": "z", "d": False, "e": 4, "f": np.int32(1)},  # float in int64
    ]

    def parquet_bytes(table: pa.Table) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()

    assert parquet_bytes(rows_to_arrow(rows, schema)) == parquet_bytes(pa.Table.from_pylist(rows, schema=schema))
    assert rows_to_arrow([], schema).equals(pa.Table.from_pylist([], schema=schema))
    with pytest.raises(pa.ArrowInvalid, match="'q'"):  # a value neither can convert: pyarrow's error
        rows_to_arrow([{"a": "q"}], schema)

    code = (
        "import sys\n"
        "from pipeline.contracts import MANIFEST, read_table, write_table\n"
        "from tests.test_contracts import manifest_row\n"
        f"write_table([manifest_row()], {str(tmp_path / 'm.parquet')!r}, MANIFEST)\n"
        f"assert read_table({str(tmp_path / 'm.parquet')!r}, MANIFEST).num_rows == 1\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.stdout.strip() == "False"
