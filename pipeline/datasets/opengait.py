"""Index a generic OpenGait pkl tree (CASIA-B style) into MANIFEST rows.

Layout (OpenGait ``opengait/data/dataset.py``): ``root/<id>/<type>/<view>/*.pkl``, each pkl an array
whose first axis is frames, every pkl of one folder of the same length; a partition JSON lists the
``TRAIN_SET`` and ``TEST_SET`` IDs. The helpers here (partition, tree walk, frame counting, row
building) are shared by the SUSTech1K and CCGR-MINI adapters, which use the same tree.

Failures that concern one sequence (an unloadable pkl, pkls of different lengths, an empty folder)
become rows with ``error`` set, so one bad download never aborts indexing a 25,000-sequence dataset.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts import MODALITY_COLUMNS
from pipeline.io.safe_pickle import PickleLoadError, frame_length

CASIA_B_GALLERY_TYPES = ("nm-01", "nm-02", "nm-03", "nm-04")
CASIA_B_PROBE_TYPES = ("nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")
# OpenGait's data_in_use for CASIA-B: the folder's single pkl is the silhouette sequence.
DEFAULT_MODALITIES: Mapping[str, int] = {"path_silhouette": 0}


@dataclass(frozen=True)
class Partition:
    """Subject IDs per split, as strings (JSON files hold them as strings or numbers)."""

    train: frozenset[str]
    test: frozenset[str]
    extra: Mapping[str, tuple[str, ...]]  # other lists, e.g. CCGR-MINI's GALLERY_SET

    def split_of(self, subject: str) -> str | None:
        if subject in self.train:
            return "train"
        if subject in self.test:
            return "test"
        return None


def require_dir(root: str | os.PathLike, what: str = "dataset root") -> Path:
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_partition(partition: str | os.PathLike | Mapping[str, Sequence[object]]) -> Partition:
    """Read a partition (a JSON file path or an already-loaded mapping) with TRAIN_SET and TEST_SET."""
    source = "partition"
    if not isinstance(partition, Mapping):
        path = Path(partition)
        if not path.is_file():
            raise FileNotFoundError(f"partition file not found: {path}")
        source = str(path)
        try:
            partition = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a valid JSON partition ({err})") from err
        if not isinstance(partition, Mapping):
            raise ValueError(f"{path}: partition JSON must be an object with TRAIN_SET and TEST_SET")
    lists: dict[str, tuple[str, ...]] = {}
    for key, value in partition.items():
        if not isinstance(value, list | tuple):
            raise ValueError(f"{source}: '{key}' must be a list, got {type(value).__name__}")
        lists[str(key)] = tuple(str(item) for item in value)
    missing = [key for key in ("TRAIN_SET", "TEST_SET") if key not in lists]
    if missing:
        raise ValueError(f"{source}: partition lacks {missing}")
    train, test = frozenset(lists.pop("TRAIN_SET")), frozenset(lists.pop("TEST_SET"))
    both = sorted(train & test)
    if both:
        raise ValueError(f"{source}: IDs {both[:5]} are in both TRAIN_SET and TEST_SET")
    return Partition(train, test, lists)


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders in sorted order, hidden ones (.git, .DS_Store folders) left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def subjects_in_partition(root: Path, partition: Partition) -> list[tuple[str, str]]:
    """(subject, split) for every subject folder that the partition assigns, sorted by subject.

    Like OpenGait, IDs listed but absent on disk are dropped; unlike it, both drops and subject folders
    in no set are reported in a warning with their count, since either usually means a wrong root.
    """
    on_disk = {p.name for p in _subdirs(root)}
    listed = partition.train | partition.test
    absent, unassigned = listed - on_disk, on_disk - listed
    if absent:
        warnings.warn(f"{root}: {len(absent)} partition IDs have no folder and are dropped", stacklevel=3)
    if unassigned:
        example = sorted(unassigned)[:3]
        warnings.warn(
            f"{root}: {len(unassigned)} subject folders are in no partition set and are skipped (e.g. {example})",
            stacklevel=3,
        )
    return [(s, split) for s in sorted(on_disk & listed) if (split := partition.split_of(s)) is not None]


def iter_sequences(root: Path, subject: str) -> Iterator[tuple[str, str, Path]]:
    """(type, view, folder) for every ``<subject>/<type>/<view>/`` folder, sorted."""
    for type_dir in _subdirs(root / subject):
        for view_dir in _subdirs(type_dir):
            yield type_dir.name, view_dir.name, view_dir


def sorted_pkls(folder: Path) -> list[Path]:
    """The folder's pkls in the sorted order that OpenGait's ``data_in_use`` indexes into."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".pkl")


def pkl_frame_count(paths: Mapping[str, Path]) -> tuple[int | None, str | None]:
    """(frame count, None) if every pkl loads and all have one length, else (None, the reason).

    ``paths`` maps a label for messages (usually the file name) to the pkl.
    """
    lengths: dict[str, int] = {}
    for label, path in paths.items():
        try:
            lengths[label] = frame_length(path)
        except (PickleLoadError, OSError) as err:
            return None, f"unloadable pkl: {err}"
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{label}={n}" for label, n in lengths.items())
        return None, f"pkls have different frame counts ({detail})"
    count = next(iter(lengths.values()), None)
    if count == 0:
        return 0, "sequence has no frames"
    return count, None


@dataclass(frozen=True)
class PklSpec:
    """How to recognise one modality's pkl in a folder: its sort prefix and the name's ending."""

    prefix: str  # e.g. "06-" (SUSTech1K) or "002-" (CCGR-MINI)
    keyword: str  # e.g. "Camera-Sils_aligned" or "sil"

    def matches(self, name: str) -> bool:
        return name.startswith(self.prefix) and self.keyword in name[len(self.prefix) :]


def locate_modalities(
    folder: Path, specs: Mapping[str, PklSpec], required: Sequence[str], count: bool
) -> tuple[dict[str, str], int | None, str | None]:
    """Find each modality's pkl by name; return ({column: path}, frame count, error or None).

    Matching by prefix *and* keyword instead of by position keeps a folder with a missing file from
    silently shifting every later modality onto the wrong pkl.
    """
    pkls = sorted_pkls(folder)
    found: dict[str, Path] = {}
    problems: list[str] = []
    for column, spec in specs.items():
        hits = [p for p in pkls if spec.matches(p.name)]
        if len(hits) > 1:
            problems.append(
                f"{column}: several pkls match {spec.prefix}*{spec.keyword}* ({[p.name for p in hits]})"
            )
        elif hits:
            found[column] = hits[0]
    missing = [f"{specs[c].prefix}*{specs[c].keyword}*.pkl ({c})" for c in required if c not in found]
    if missing:
        problems.insert(0, f"missing required pkl {', '.join(missing)} in {folder}")
    paths = {column: str(path) for column, path in found.items()}
    if problems:
        return paths, None, "; ".join(problems)
    if not count:
        return paths, None, None
    frame_count, error = pkl_frame_count({path.name: path for path in found.values()})
    return paths, frame_count, error


def base_row(
    dataset: str, subject: str, condition: str, view: str, split: str, role: str
) -> dict[str, object]:
    """A MANIFEST row with identifiers set and everything else empty."""
    row: dict[str, object] = {
        "dataset": dataset,
        "subject": subject,
        "condition": condition,
        "view": view,
        "sequence_id": f"{subject}/{condition}/{view}",
        "split": split,
        "role": role,
        "frame_count": None,
        "fps": None,
        "width": None,
        "height": None,
        "attributes": None,
        "error": None,
    }
    row.update(dict.fromkeys(MODALITY_COLUMNS))
    return row


def attributes_json(values: Mapping[str, object]) -> str | None:
    return json.dumps(dict(values), sort_keys=True) if values else None


def casia_style_attributes(condition: str) -> dict[str, str]:
    """``nm-01`` → {"covariate": "nm", "take": "01"}; other type names carry no parseable attribute."""
    match = re.fullmatch(r"([A-Za-z]+)-(\d+)", condition)
    return {"covariate": match.group(1), "take": match.group(2)} if match else {}


def _check_modalities(modalities: Mapping[str, int]) -> None:
    unknown = sorted(set(modalities) - set(MODALITY_COLUMNS))
    if unknown:
        raise ValueError(f"unknown modality columns {unknown}; known: {list(MODALITY_COLUMNS)}")
    negative = {k: v for k, v in modalities.items() if v < 0}
    if negative:
        raise ValueError(f"modality indices must be >= 0, got {negative}")


def _test_role(condition: str, gallery: frozenset[str], probe: frozenset[str] | None) -> str | None:
    if condition in gallery:
        return "gallery"
    if probe is None or condition in probe:
        return "probe"
    return None


def _sequence_row(
    dataset: str,
    key: tuple[str, str, str, str, str],
    folder: Path,
    modalities: Mapping[str, int],
    count: bool,
) -> dict[str, object]:
    subject, condition, view, split, role = key
    row = base_row(dataset, subject, condition, view, split, role)
    row["attributes"] = attributes_json(casia_style_attributes(condition))
    pkls = sorted_pkls(folder)
    if not pkls:
        row["error"] = f"no .pkl files in {folder}"
        return row
    for column, index in modalities.items():
        if index >= len(pkls):
            row["error"] = f"{column} wants pkl #{index} but {folder} holds {len(pkls)}"
            return row
        row[column] = str(pkls[index])
    if count:
        # every pkl of the folder, not only the referenced ones: OpenGait checks all it loads
        row["frame_count"], row["error"] = pkl_frame_count({p.name: p for p in pkls})
    return row


def index_opengait(
    root: str | os.PathLike,
    *,
    dataset: str,
    partition: str | os.PathLike | Mapping[str, Sequence[object]],
    gallery_types: Sequence[str] = CASIA_B_GALLERY_TYPES,
    probe_types: Sequence[str] | None = CASIA_B_PROBE_TYPES,
    modalities: Mapping[str, int] | None = None,
    fps: float | None = None,
    count_frames: bool = True,
) -> list[dict[str, object]]:
    """MANIFEST rows for ``root/<id>/<type>/<view>/*.pkl`` with a TRAIN_SET/TEST_SET partition.

    Test-set roles: ``type`` in ``gallery_types`` → gallery, in ``probe_types`` → probe (``None`` =
    every other test type is a probe); test types in neither are skipped with a warning.
    ``modalities`` maps MANIFEST path columns to indices into the folder's sorted pkl list (OpenGait's
    ``data_in_use``); default: the first pkl is the silhouette. ``fps`` is stored as given (pkls carry
    none). With ``count_frames`` every pkl is loaded through the safe unpickler.
    """
    root = require_dir(root)
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    _check_modalities(modalities)
    gallery, probe = frozenset(gallery_types), None if probe_types is None else frozenset(probe_types)
    rows: list[dict[str, object]] = []
    unassigned_types: set[str] = set()
    for subject, split in subjects_in_partition(root, load_partition(partition)):
        for condition, view, folder in iter_sequences(root, subject):
            role = "train" if split == "train" else _test_role(condition, gallery, probe)
            if role is None:
                unassigned_types.add(condition)
                continue
            row = _sequence_row(
                dataset, (subject, condition, view, split, role), folder, modalities, count_frames
            )
            row["fps"] = fps
            rows.append(row)
    if unassigned_types:
        warnings.warn(
            f"{root}: test sequences of types {sorted(unassigned_types)} are neither gallery nor probe; skipped",
            stacklevel=2,
        )
    return rows
