"""A restricted unpickler for dataset pkls downloaded from the internet.

OpenGait-style datasets ship every modality as a pickled numpy array. ``pickle.load`` on such a file
would run whatever callable the file names, so a tampered download could execute code on the machine
that indexes it. :func:`load_pickle` only resolves the handful of globals that numpy arrays, numpy
scalars, dtypes and plain Python containers need; any other global is refused *before* it is called,
with :class:`UnsafePickleError` naming the file and the refused ``module.name``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# Builtins whose construction cannot reach code: protocol < 4 names these as globals (sets,
# frozensets and complex numbers have no opcode of their own there).
_SAFE_BUILTINS = (
    "list",
    "tuple",
    "dict",
    "set",
    "frozenset",
    "str",
    "bytes",
    "bytearray",
    "int",
    "float",
    "bool",
    "complex",
)
# Python 2 and protocol-2 pickles spell the builtins module "__builtin__".
_BUILTIN_MODULES = ("builtins", "__builtin__")
# numpy moved its internals from numpy.core to numpy._core in 2.0; files written by either version
# name their own spelling, so both are accepted and mapped to whatever this numpy provides.
_NUMPY_CORE_PREFIXES = ("numpy._core", "numpy.core")


class PickleLoadError(ValueError):
    """A pkl could not be read: corrupt, truncated, or of an unexpected content type."""


class UnsafePickleError(PickleLoadError):
    """A pkl names a global outside the allow-list (it could run code if unpickled normally)."""


def _import_first(*names: str) -> ModuleType:
    """Import the first module of ``names`` that exists (numpy 1.x lacks some ``numpy._core`` modules)."""
    last: ImportError | None = None
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as err:
            last = err
    raise ImportError(f"none of {names} can be imported") from last


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to rebuild ``bytes``.

    Only the latin-1 round trip the pickler emits is accepted, so the global cannot be abused to run
    other codecs on attacker-chosen input.
    """
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


@cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The allow-list: (module, name) as written in the pickle → the object to hand back."""
    multiarray = _import_first("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _import_first("numpy._core.numeric", "numpy.core.numeric")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for prefix in _NUMPY_CORE_PREFIXES:
        table[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        # protocol 5 rebuilds arrays from an in-band buffer through numeric._frombuffer
        table[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    import builtins

    for module in _BUILTIN_MODULES:
        for name in _SAFE_BUILTINS:
            table[(module, name)] = getattr(builtins, name)
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose global lookup only returns allow-listed objects."""

    def __init__(self, file: Any, source: str) -> None:
        # latin1 lets Python-2 era pkls (numpy data stored as py2 str) load as bytes, as numpy advises.
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self._source}: refused to unpickle global '{module}.{name}' "
                "(only numpy arrays, numpy scalars and plain containers are allowed)"
            )
        return allowed


def load_pickle(path: str | os.PathLike) -> object:
    """Unpickle ``path`` allowing only numpy arrays/scalars/dtypes and plain containers.

    Raises FileNotFoundError (missing file), :class:`UnsafePickleError` (a refused global) or
    :class:`PickleLoadError` (corrupt or truncated content); every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pkl not found: {path}")
    try:
        with path.open("rb") as handle:
            return _RestrictedUnpickler(handle, str(path)).load()
    except UnsafePickleError as err:
        if str(path) in str(err):
            raise
        raise UnsafePickleError(f"{path}: {err}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        struct.error,
        UnicodeDecodeError,
        MemoryError,
    ) as err:
        # corrupt bytes surface as any of these, depending on which opcode they break
        raise PickleLoadError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from err


def _as_array(obj: object, path: Path) -> np.ndarray:
    """An ndarray, or a list/tuple of ndarrays (one per frame, as SUSTech1K's point clouds)."""
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, list | tuple) and obj and all(isinstance(item, np.ndarray) for item in obj):
        shapes = {item.shape for item in obj}
        if len(shapes) == 1:
            return np.stack(obj)
        # ragged frames (point clouds with a varying point count) cannot be stacked; an object array
        # keeps "first axis = frames" so len() and indexing work like for any other modality
        ragged = np.empty(len(obj), dtype=object)
        ragged[:] = list(obj)
        return ragged
    raise PickleLoadError(f"{path}: expected a numpy array or a list of arrays, found {type(obj).__name__}")


def load_array(path: str | os.PathLike) -> np.ndarray:
    """Load a pkl that must hold an array (first axis = frames) or a non-empty list of arrays.

    A list of equally shaped arrays is stacked; a ragged list becomes a 1-D object array of frames.
    """
    path = Path(path)
    return _as_array(load_pickle(path), path)


def frame_length(path: str | os.PathLike) -> int:
    """Number of frames (length of the first axis) of the array stored in ``path``."""
    array = load_array(path)
    if array.ndim == 0:
        raise PickleLoadError(f"{Path(path)}: holds a 0-d array, which has no frame axis")
    return int(array.shape[0])


__all__: list[str] = ["PickleLoadError", "UnsafePickleError", "frame_length", "load_array", "load_pickle"]
