"""Index a plain folder of videos (the user's own recordings) into MANIFEST rows.

Without a sheet every video under ``root`` (recursive; .mp4 .avi .mov .mkv .webm; hidden files and
folders skipped) is one sequence: the subject is the top-level folder under ``root`` (for the usual
``root/<subject>/<video>`` layout, the parent folder) or, for a video directly in ``root``, its file
stem; the condition is the rest of the path below the subject folder without extension, ``/`` → ``-``
(``default`` for videos directly in ``root``); the view is ``unknown``. Two videos that would get the
same ID (``walk.mp4`` and ``walk.avi``) get the extension appended to the condition (``walk-mp4``).

A CSV sheet (UTF-8, header row) selects and describes the videos instead: ``path`` (relative to
``root``) is required, ``subject``, ``condition``, ``view``, ``split``, ``role`` are optional (blank
cells fall back to the rules above) and any further columns go into ``attributes``.

Splits: a row's own split, else the one its role implies, else subjects are ordered by the CRC-32 of
their name (stable, independent of how folders are named) and the first ``round(train_fraction × n)``
go to train. Roles: train split → train; in the test split a subject without an explicit gallery
sequence gets its first usable sequence (sorted by condition, view, path) as gallery, the rest probes.

Every video is probed; a missing, empty or corrupt one becomes a row whose ``error`` says why.
"""

from __future__ import annotations

import csv
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.contracts import ROLES, SPLITS
from pipeline.datasets.opengait import attributes_json, base_row, require_dir
from pipeline.io.video import VIDEO_SUFFIXES, VideoInfo, probe_video

SHEET_COLUMNS = ("path", "subject", "condition", "view", "split", "role")
UNKNOWN_VIEW = "unknown"
ROOT_CONDITION = "default"


@dataclass
class _Entry:
    """One video on its way to a MANIFEST row."""

    relative: str  # as written in the sheet or found under root (POSIX separators)
    file: Path
    subject: str
    condition: str
    view: str
    split: str | None = None
    role: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    derived_condition: bool = True  # may be renamed to resolve a clash
    where: str = ""  # "line N of sheet.csv", for messages
    info: VideoInfo | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.subject, self.condition, self.view


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Video files under ``root`` (recursive), sorted by relative path; hidden entries are skipped."""
    root = Path(root)
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def derive_ids(relative: str) -> tuple[str, str]:
    """(subject, condition) from a path relative to root, following the module's rules."""
    parts = PurePosixPath(relative).parts
    if len(parts) == 1:
        return PurePosixPath(relative).stem, ROOT_CONDITION
    below = PurePosixPath(*parts[1:])
    return parts[0], "-".join(below.with_suffix("").parts)


def _entries_from_folder(root: Path) -> list[_Entry]:
    entries = []
    for path in find_videos(root):
        relative = path.relative_to(root).as_posix()
        subject, condition = derive_ids(relative)
        entries.append(_Entry(relative, path, subject, condition, UNKNOWN_VIEW, where=relative))
    return entries


def _resolve_sheet(root: Path, sheet: str | os.PathLike) -> Path:
    path = Path(sheet)
    if not path.is_file() and not path.is_absolute() and (root / path).is_file():
        path = root / path  # a sheet kept inside the dataset folder may be named relative to it
    if not path.is_file():
        raise FileNotFoundError(f"custom dataset sheet not found: {sheet}")
    return path


def _read_sheet(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped cell}) for every data row; checks the header."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets prepend a BOM
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if "path" not in header:
            raise ValueError(f"{path}: sheet has no 'path' column (columns: {header})")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if None in row:
                raise ValueError(f"{path}: line {reader.line_num} has more cells than the header")
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    return rows


def _checked_value(cells: dict[str, str], column: str, allowed: Iterable[str], where: str) -> str | None:
    value = cells.get(column, "")
    if not value:
        return None
    if value not in allowed:
        raise ValueError(f"{where}: unknown {column} {value!r}; allowed: {list(allowed)}")
    return value


def _entry_from_cells(root: Path, cells: dict[str, str], where: str) -> _Entry:
    relative = cells["path"]
    if not relative:
        raise ValueError(f"{where}: empty 'path'")
    if Path(relative).is_absolute():
        # IDs are derived from the path below root, so an absolute path must point inside root
        try:
            relative = Path(relative).relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"{where}: path {relative!r} is absolute and not inside {root}") from None
    subject, condition = derive_ids(relative)
    split = _checked_value(cells, "split", SPLITS, where)
    role = _checked_value(cells, "role", ROLES, where)
    if split and role and (split == "train") != (role == "train"):
        raise ValueError(f"{where}: split {split!r} contradicts role {role!r}")
    entry = _Entry(
        relative,
        root / relative,
        cells.get("subject") or subject,
        cells.get("condition") or condition,
        cells.get("view") or UNKNOWN_VIEW,
        split,
        role,
        {k: v for k, v in cells.items() if k not in SHEET_COLUMNS and v},
        derived_condition=not cells.get("condition"),
        where=where,
    )
    for column, value in zip(("subject", "condition", "view"), entry.key, strict=True):
        if "/" in value:
            raise ValueError(f"{where}: {column} {value!r} contains '/', which sequence IDs reserve")
    return entry


def _entries_from_sheet(root: Path, sheet: Path) -> list[_Entry]:
    return [_entry_from_cells(root, cells, f"{sheet}: line {line}") for line, cells in _read_sheet(sheet)]


def _clashing(entries: list[_Entry]) -> list[list[_Entry]]:
    groups: dict[tuple[str, str, str], list[_Entry]] = defaultdict(list)
    for entry in entries:
        groups[entry.key].append(entry)
    return [group for group in groups.values() if len(group) > 1]


def _resolve_clashes(entries: list[_Entry]) -> None:
    """Make (subject, condition, view) unique: derived conditions get the extension appended.

    Conditions that a sheet spells out are never renamed: two rows naming one sequence is a mistake
    in the sheet and is reported with both places.
    """
    for group in _clashing(entries):
        if all(e.derived_condition for e in group):
            for entry in group:
                extension = PurePosixPath(entry.relative).suffix.lstrip(".").lower()
                entry.condition = f"{entry.condition}-{extension}"
    for group in _clashing(entries):
        raise ValueError(
            f"sequence {'/'.join(group[0].key)} is named by several entries: {[e.where for e in group]}"
        )


def _probe(entries: list[_Entry]) -> None:
    for entry in entries:
        if not entry.file.is_file():
            entry.error = f"video file not found: {entry.file}"
            continue
        try:
            entry.info = probe_video(entry.file)
        except Exception as err:  # any failure of one file (cv2.error included) must become its error row
            entry.error = str(err) or type(err).__name__


def _assign_splits(entries: list[_Entry], train_fraction: float) -> None:
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be within [0, 1], got {train_fraction}")
    for entry in entries:
        if entry.split is None and entry.role is not None:
            entry.split = "train" if entry.role == "train" else "test"
    undecided = sorted(
        {e.subject for e in entries if e.split is None}, key=lambda s: (zlib.crc32(s.encode()), s)
    )
    train_subjects = set(undecided[: round(train_fraction * len(undecided))])
    for entry in entries:
        if entry.split is None:
            entry.split = "train" if entry.subject in train_subjects else "test"


def _assign_roles(entries: list[_Entry]) -> None:
    has_gallery = {e.subject for e in entries if e.role == "gallery"}
    open_test: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        if entry.role is None and entry.split == "train":
            entry.role = "train"
        elif entry.role is None:
            open_test[entry.subject].append(entry)
    for subject, group in open_test.items():
        group.sort(key=lambda e: (e.condition, e.view, e.relative))
        usable = [e for e in group if e.error is None]
        gallery = usable[0] if usable and subject not in has_gallery else None
        for entry in group:
            entry.role = "gallery" if entry is gallery else "probe"


def _row(dataset: str, entry: _Entry) -> dict[str, object]:
    assert entry.split is not None and entry.role is not None
    row = base_row(dataset, entry.subject, entry.condition, entry.view, entry.split, entry.role)
    row["path_video"] = str(entry.file)
    row["attributes"] = attributes_json({"file": entry.relative, **entry.extra})
    row["error"] = entry.error
    if entry.info is not None:
        row["frame_count"] = entry.info.frame_count
        row["fps"] = entry.info.fps or None
        row["width"], row["height"] = entry.info.width, entry.info.height
    return row


def index_custom(
    root: str | os.PathLike,
    *,
    dataset: str,
    sheet: str | os.PathLike | None = None,
    train_fraction: float = 0.0,
) -> list[dict[str, object]]:
    """MANIFEST rows for a folder of videos, optionally described by a CSV ``sheet`` (see module doc).

    A malformed sheet (no ``path`` column, unknown split/role, contradicting split and role, two rows
    naming one sequence) raises ValueError naming the sheet line; per-video problems become error rows.
    """
    root = require_dir(root, "custom dataset root")
    if sheet is None:
        entries = _entries_from_folder(root)
    else:
        entries = _entries_from_sheet(root, _resolve_sheet(root, sheet))
    _resolve_clashes(entries)
    _probe(entries)
    _assign_splits(entries, train_fraction)
    _assign_roles(entries)
    return [_row(dataset, entry) for entry in entries]
