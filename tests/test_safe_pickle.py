"""The restricted unpickler: numpy arrays and plain containers load, anything that could run code does not."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.io.safe_pickle import PickleLoadError, UnsafePickleError, frame_length, load_array, load_pickle


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


class RunsShell:
    """Unpickling this with plain pickle would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpensProcess:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class CallsNumpyLoad:
    """A numpy function outside the allow-list: being in numpy is not enough."""

    def __reduce__(self):
        return (np.load, ("/nonexistent.npy",))


ARRAYS = [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::2],  # non-contiguous view
    np.array([[1.5, 2.5]], dtype=">f8"),  # big-endian
    np.array(["a", "bc"]),
    np.zeros((0, 17, 3), dtype=np.float32),
    np.array([True, False]),
    np.array([1 + 2j], dtype=np.complex64),
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_numpy_arrays_round_trip_in_every_protocol(tmp_path: Path, protocol: int, array: np.ndarray) -> None:
    path = write(tmp_path / "a.pkl", pickle.dumps(array, protocol=protocol))
    loaded = load_array(path)
    reference = pickle.loads(
        path.read_bytes()
    )  # numpy itself turns '>f8' into native order before protocol 5
    assert loaded.dtype == reference.dtype
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_containers_scalars_and_dtypes_load(tmp_path: Path, protocol: int) -> None:
    obj = {
        "list": [1, 2.5, None, True],
        "tuple": (b"\x00\xff", "text", -3),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "complex": 1 - 2j,
        "bytearray": bytearray(b"ab"),
        "np_scalar": np.float64(2.25),
        "np_int": np.int16(-7),
        "dtype": np.dtype("<u2"),
        "object_array": np.array([1, "x", None], dtype=object),
    }
    loaded = load_pickle(write(tmp_path / "c.pkl", pickle.dumps(obj, protocol=protocol)))
    assert isinstance(loaded, dict)
    for key in ("list", "tuple", "set", "frozenset", "complex", "bytearray", "np_scalar", "np_int", "dtype"):
        assert loaded[key] == obj[key], key
    assert type(loaded["np_int"]) is np.int16
    assert loaded["object_array"].tolist() == [1, "x", None]


def test_numpy_1_module_paths_are_accepted(tmp_path: Path) -> None:
    """Pkls written by numpy < 2 name ``numpy.core.multiarray``; numpy >= 2 names ``numpy._core``."""
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    payload = pickle.dumps([array, np.float32(1.5)], protocol=2)  # GLOBAL opcodes: plain text module names
    assert b"numpy._core.multiarray" in payload
    old_style = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    loaded = load_pickle(write(tmp_path / "old.pkl", old_style))
    np.testing.assert_array_equal(loaded[0], array)
    assert loaded[1] == np.float32(1.5)


class FromBuffer:
    """Reduces like a protocol-5 ndarray (numeric._frombuffer) but through a text GLOBAL opcode."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self):
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (self.array.tobytes(), self.array.dtype, self.array.shape, "C"))


@pytest.mark.parametrize("module", [b"numpy._core.numeric", b"numpy.core.numeric"])
def test_frombuffer_under_both_module_names(tmp_path: Path, module: bytes) -> None:
    array = np.arange(8, dtype=np.float64).reshape(2, 4)
    payload = pickle.dumps(FromBuffer(array), protocol=2).replace(b"numpy._core.numeric", module)
    np.testing.assert_array_equal(load_pickle(write(tmp_path / "fb.pkl", payload)), array)


def test_os_system_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path / "evil.pkl", pickle.dumps(RunsShell(marker)))
    with pytest.raises(UnsafePickleError) as caught:
        load_pickle(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{os.system.__module__}.system" in message  # posix.system on Linux
    assert not marker.exists()
    # the control: plain pickle really would have run it, so the test above can fail
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    ("payload_factory", "refused"),
    [
        (lambda m: OpensProcess(m), r"'(subprocess|commands)\.call'"),
        (lambda m: CallsEval(), r"'(builtins|__builtin__)\.eval'"),
        (lambda m: CallsNumpyLoad(), r"'numpy\.load'"),
        (lambda m: np.array([OpensProcess(m)], dtype=object), r"\.call'"),  # hidden in an object array
        (lambda m: {"frames": [1, 2], "meta": OpensProcess(m)}, r"\.call'"),  # nested in a container
    ],
)
def test_other_globals_are_refused(tmp_path: Path, payload_factory, refused: str) -> None:
    marker = tmp_path / "pwned"
    # protocol 2 writes Python-2 module names (commands.call, __builtin__.eval): both spellings are refused
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = write(
            tmp_path / f"evil{protocol}.pkl", pickle.dumps(payload_factory(marker), protocol=protocol)
        )
        with pytest.raises(UnsafePickleError, match=refused):
            load_array(path)
        assert not marker.exists()


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    """Protocol 2 rebuilds bytes via _codecs.encode(text, 'latin1'); other codecs are refused."""
    assert (
        load_pickle(write(tmp_path / "b.pkl", pickle.dumps(b"\x00\x80\xff", protocol=2))) == b"\x00\x80\xff"
    )
    crafted = b"\x80\x02c_codecs\nencode\nX\x04\x00\x00\x00abcdX\x05\x00\x00\x00rot13\x86R."
    assert pickle.loads(crafted) == "nopq"  # the crafted payload is valid: plain pickle runs rot13
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_pickle(write(tmp_path / "rot.pkl", crafted))


def test_missing_corrupt_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_pickle(tmp_path / "nope.pkl")
    garbage = write(tmp_path / "garbage.pkl", b"this is not a pickle at all")
    with pytest.raises(PickleLoadError, match="garbage.pkl"):
        load_pickle(garbage)
    full = pickle.dumps(np.arange(100), protocol=4)
    truncated = write(tmp_path / "truncated.pkl", full[: len(full) // 2])
    with pytest.raises(PickleLoadError, match="truncated.pkl"):
        load_pickle(truncated)
    with pytest.raises(PickleLoadError, match="empty.pkl"):
        load_pickle(write(tmp_path / "empty.pkl", b""))


def test_load_array_shapes(tmp_path: Path) -> None:
    same = [np.full((2, 3), i, dtype=np.float32) for i in range(4)]
    stacked = load_array(write(tmp_path / "same.pkl", pickle.dumps(same)))
    assert stacked.shape == (4, 2, 3)
    np.testing.assert_array_equal(stacked[2], same[2])

    clouds = [np.zeros((n, 3), dtype=np.float32) for n in (5, 7, 6)]  # SUSTech1K point clouds: ragged
    ragged = load_array(write(tmp_path / "clouds.pkl", pickle.dumps(clouds)))
    assert ragged.dtype == object and ragged.shape == (3,)
    assert [c.shape[0] for c in ragged] == [5, 7, 6]
    assert frame_length(tmp_path / "clouds.pkl") == 3

    for name, obj in {
        "dict": {"a": np.zeros(2)},
        "empty_list": [],
        "mixed": [np.zeros(2), 3],
        "int": 5,
    }.items():
        with pytest.raises(PickleLoadError, match=f"{name}.pkl"):
            load_array(write(tmp_path / f"{name}.pkl", pickle.dumps(obj)))
    with pytest.raises(PickleLoadError, match="0-d"):
        frame_length(write(tmp_path / "scalar.pkl", pickle.dumps(np.array(3.0))))
