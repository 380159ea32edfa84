"""Builders of tiny datasets in their real on-disk layouts, for the adapter tests.

Arrays are a few pixels wide so that a whole tree is written in well under a second; frame counts
differ per sequence (derived from a CRC of its ID) so a test can tell whether the right pkl was read.
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.io.video import write_video

CASIA_B_TYPES = ("bg-01", "bg-02", "cl-01", "cl-02", "nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06")
SUSTECH_TYPES = ("00-nm", "01-nm", "02-bg", "03-cl")
SUSTECH_MODALITIES = (
    "LiDAR-PCDs",
    "LiDAR-PCDs_depths",
    "LiDAR-PCDs_sils",
    "Camera-Pose",
    "Camera-Ratios-HW",
    "Camera-RGB_raw",
    "Camera-Sils_aligned",
    "Camera-Sils_raw",
)
CCGR_TYPES = ("ASBGCLBXCV1", "BG1", "NM1")
CCGR_VIEWS = ("112_5_2.avi", "90_3.avi", "over.avi")


@dataclass
class Tree:
    """A built dataset: where it is, its partition file, and what the adapter should find."""

    root: Path
    partition: Path
    frames: dict[str, int] = field(default_factory=dict)  # sequence_id → frame count
    train_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()
    gallery: frozenset[str] = frozenset()  # sequence_ids expected to be gallery


def frames_for(sequence_id: str, low: int = 3, spread: int = 5) -> int:
    """A per-sequence frame count in [low, low + spread), stable across runs."""
    return low + zlib.crc32(sequence_id.encode()) % spread


def dump(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(obj, handle)
    return path


def _write_partition(path: Path, train: tuple[str, ...], test: tuple[str, ...], **extra: list[str]) -> Path:
    path.write_text(json.dumps({"TRAIN_SET": list(train), "TEST_SET": list(test), **extra}))
    return path


def make_casiab_tree(base: Path, n_subjects: int = 6, views: tuple[str, ...] = ("000", "090")) -> Tree:
    """``base/casiab/<id 3 digits>/<type>/<view>/<view>.pkl`` (T, 8, 8) uint8 silhouettes.

    The first half of the IDs are TRAIN_SET, the rest TEST_SET; the partition also lists ``999``
    (absent on disk) and the disk holds ``100``, which is in no set.
    """
    root = base / "casiab"
    ids = tuple(f"{i:03d}" for i in range(1, n_subjects + 1))
    tree = Tree(root, base / "casiab.json", train_ids=ids[: n_subjects // 2], test_ids=ids[n_subjects // 2 :])
    rng = np.random.default_rng(0)
    for subject in (*ids, "100"):
        for condition in CASIA_B_TYPES:
            for view in views:
                sequence_id = f"{subject}/{condition}/{view}"
                count = frames_for(sequence_id)
                dump(root / sequence_id / f"{view}.pkl", rng.integers(0, 256, (count, 8, 8), dtype=np.uint8))
                tree.frames[sequence_id] = count
    gallery_types = {"nm-01", "nm-02", "nm-03", "nm-04"}
    tree.gallery = frozenset(
        s for s in tree.frames if s.split("/")[0] in tree.test_ids and s.split("/")[1] in gallery_types
    )
    _write_partition(tree.partition, tree.train_ids, (*tree.test_ids, "999"))
    return tree


def sustech_file_name(index: int, view: str) -> str:
    """``06-000-Camera-Sils_aligned.pkl``; indices 8..15 are the ``NN-sync-<view>-…`` 10 Hz copies."""
    modality = SUSTECH_MODALITIES[index % 8]
    return f"{index:02d}-{view}-{modality}.pkl" if index < 8 else f"{index:02d}-sync-{view}-{modality}.pkl"


def _sustech_arrays(camera_frames: int, rng: np.random.Generator) -> list[object]:
    """The 8 modalities of one rate: LiDAR ones at a third of the camera frame rate, as in the dataset."""
    lidar = max(1, camera_frames // 3)
    clouds = [rng.normal(size=(int(rng.integers(5, 9)), 3)).astype(np.float32) for _ in range(lidar)]
    return [
        clouds,  # ragged list of (Ni, 3) point clouds
        rng.integers(0, 256, (lidar, 3, 4, 4), dtype=np.uint8),
        rng.integers(0, 256, (lidar, 4, 4), dtype=np.uint8),
        rng.random((camera_frames, 17, 3), dtype=np.float32),
        rng.integers(100, 400, (camera_frames, 2)).astype(np.int64),
        rng.integers(0, 256, (camera_frames, 4, 4, 3), dtype=np.uint8),
        rng.integers(0, 256, (camera_frames, 4, 4), dtype=np.uint8),
        rng.integers(0, 256, (camera_frames, 4, 4), dtype=np.uint8),
    ]


def make_sustech1k_tree(base: Path, n_subjects: int = 6, views: tuple[str, ...] = ("000", "090")) -> Tree:
    """``base/sustech1k/<id 4 digits>/<NN-cov>/<view>/`` with the 16 pkls; 2 train IDs, the rest test.

    The synchronised copies (08..15) hold a third of the frames, so a wrong pkl choice shows up in
    the frame counts.
    """
    root = base / "sustech1k"
    ids = tuple(f"{i:04d}" for i in range(1, n_subjects + 1))
    tree = Tree(root, base / "sustech1k.json", train_ids=ids[:2], test_ids=ids[2:])
    rng = np.random.default_rng(1)
    for subject in ids:
        for condition in SUSTECH_TYPES:
            for view in views:
                sequence_id = f"{subject}/{condition}/{view}"
                camera_frames = frames_for(sequence_id, low=6)
                arrays = _sustech_arrays(camera_frames, rng) + _sustech_arrays(
                    max(1, camera_frames // 3), rng
                )
                for index, array in enumerate(arrays):
                    dump(root / sequence_id / sustech_file_name(index, view), array)
                tree.frames[sequence_id] = camera_frames
                if subject in tree.test_ids and condition == "00-nm":
                    tree.gallery |= {sequence_id}
    _write_partition(tree.partition, tree.train_ids, tree.test_ids)
    return tree


def make_sustech_frames(rgb_root: Path, sequence_id: str, count: int = 2) -> Path:
    """A raw-RGB frame folder ``rgb_root/<sequence_id>/`` of tiny PNGs."""
    import cv2

    folder = rgb_root / sequence_id
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((6, 4, 3), 40 * i, dtype=np.uint8))
    return folder


def ccgr_file_names(view: str) -> dict[str, str]:
    """CCGR-MINI pkl names per modality, as ``organize_ccgr.py`` writes them (``000-90_3ratios_HW-1.pkl``)."""
    stem = view.removesuffix(".avi")
    return {
        name: f"{i:03d}-{stem}{name}-1.pkl"
        for i, name in enumerate(("ratios_HW", "rgb_f", "sil", "par", "pose"))
    }


def make_ccgr_mini_tree(base: Path, n_subjects: int = 6) -> Tree:
    """``base/ccgr/<id>/<type>/<view.avi>/`` with the 5 pkls; one view per (id, type) as in CCGR-MINI.

    IDs 1..3 train, 4..6 test; GALLERY_SET holds each test ID's first two types.
    """
    root = base / "ccgr"
    ids = tuple(str(i) for i in range(1, n_subjects + 1))
    tree = Tree(root, base / "ccgr.json", train_ids=ids[: n_subjects // 2], test_ids=ids[n_subjects // 2 :])
    rng = np.random.default_rng(2)
    gallery_keys = []
    for subject in ids:
        for t, condition in enumerate(CCGR_TYPES):
            view = CCGR_VIEWS[(int(subject) + t) % len(CCGR_VIEWS)]
            sequence_id = f"{subject}/{condition}/{view}"
            count = frames_for(sequence_id)
            names = ccgr_file_names(view)
            folder = root / sequence_id
            dump(folder / names["ratios_HW"], rng.integers(100, 400, (count, 2)))
            dump(folder / names["rgb_f"], rng.integers(0, 256, (count, 3, 4, 4), dtype=np.uint8))
            dump(folder / names["sil"], rng.integers(0, 256, (count, 4, 4), dtype=np.uint8))
            dump(folder / names["par"], rng.integers(0, 12, (count, 4, 4), dtype=np.uint8))
            dump(folder / names["pose"], rng.random((count, 5 + 17 * 3)).astype(np.float32))
            tree.frames[sequence_id] = count
            if subject in tree.test_ids and t < 2:
                gallery_keys.append(f"{subject}-{condition}-{view}")
                tree.gallery |= {sequence_id}
    _write_partition(tree.partition, tree.train_ids, tree.test_ids, GALLERY_SET=gallery_keys)
    return tree


def moving_block_frames(count: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Smooth frames (gradient background, a bright block moving right): compress well, each distinct."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :]
    frames[..., 2] = np.linspace(0, 200, height, dtype=np.uint8)[None, :, None]
    for i in range(count):
        left = (2 * i) % (width - 6)
        frames[i, 4:12, left : left + 6] = 255
    return frames


@dataclass
class CustomFolder:
    root: Path
    good: dict[str, int]  # relative path → frame count of the readable videos
    broken: tuple[str, ...]  # relative paths of the unreadable ones


def make_custom_folder(base: Path) -> CustomFolder:
    """A user's video folder: per-subject folders, a nested one, a video at the top, broken files.

    ``erin`` has ``walk.mp4`` and ``walk.mov`` (same stem), which must not clash; hidden folders and
    non-video files must be ignored.
    """
    root = base / "custom"
    good = {
        "alice/walk1.mp4": 6,
        "alice/walk2.mp4": 7,
        "bob/walk1.mp4": 5,
        "bob/day2/run.mp4": 4,
        "carol.mp4": 5,
    }
    good |= {"erin/walk.mp4": 4, "erin/walk.mov": 6}
    for relative, count in good.items():
        target = root / relative
        written = write_video(
            target.with_name(f"{target.stem}-{target.suffix[1:]}.mp4"), moving_block_frames(count), 25
        )
        written.rename(target)  # an mp4 stream under a .mov name is still a valid QuickTime-family file
    (root / "dave").mkdir()
    (root / "dave/broken.mp4").write_bytes(
        np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    (root / "dave/empty.avi").write_bytes(b"")
    (root / "notes.txt").write_text("not a video")
    write_video(root / ".cache/ignored.mp4", moving_block_frames(2), fps=25)
    return CustomFolder(root, good, ("dave/broken.mp4", "dave/empty.avi"))


# ---------------------------------------------------------------------------------------------
# Walker-like silhouette trees: shipped modalities that a recogniser can learn from


def walker_silhouettes(identity: int, condition: str, count: int, phase: float = 0.0) -> np.ndarray:
    """uint8 [count, 64, 64] 0/255 OpenGait-aligned silhouettes of a stick walker whose build (height,
    width, head) and gait (stride, cadence) depend on ``identity``; ``bg`` adds a bag, ``cl`` a coat."""
    import cv2

    rng = np.random.default_rng(1000 + identity)
    torso_w, leg_w = int(rng.integers(8, 15)), int(rng.integers(3, 6))
    head, stride, cadence = int(rng.integers(4, 8)), float(rng.uniform(0.25, 0.6)), float(rng.uniform(0.25, 0.5))
    hip = int(rng.integers(30, 38))
    if condition.startswith("cl"):
        torso_w += 6
    frames = np.zeros((count, 64, 64), np.uint8)
    for t in range(count):
        image = frames[t]
        swing = np.sin(cadence * t + phase) * stride
        cv2.circle(image, (32, 3 + head), head, 255, -1)
        cv2.rectangle(image, (32 - torso_w // 2, 4 + 2 * head), (32 + torso_w // 2, hip), 255, -1)
        for side in (1, -1):
            foot = (int(32 + side * swing * 28), 63)
            cv2.line(image, (32, hip), foot, 255, leg_w)
            hand = (int(32 - side * swing * 16), hip - 2)
            cv2.line(image, (32, 6 + 2 * head), hand, 255, max(2, leg_w - 1))
        if condition.startswith("bg"):
            cv2.rectangle(image, (32 + torso_w // 2, hip - 14), (32 + torso_w // 2 + 8, hip - 2), 255, -1)
    return frames


def walker_keypoints(silhouettes: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """COCO-17 (x, y, score) [T, 17, 3] read off walker silhouettes (columns of the foreground per
    body height band), in an image ``scale`` times larger: a stand-in for shipped ViTPose keypoints."""
    bands = np.linspace(2, 62, 17).astype(int)
    keypoints = np.zeros((len(silhouettes), 17, 3), np.float32)
    for t, sil in enumerate(silhouettes):
        for j, row in enumerate(bands):
            cols = np.flatnonzero(sil[row])
            side = cols[0] if j % 2 else cols[-1] if len(cols) else 32
            x = float(side) if len(cols) else 32.0
            keypoints[t, j] = (x * scale, row * scale, 0.9 if len(cols) else 0.0)
    return keypoints


def make_walker_opengait_tree(
    base: Path,
    name: str,
    subjects: Sequence[str],
    train: int,
    types: Sequence[str] = ("nm-01", "nm-02", "bg-01", "cl-01"),
    views: Sequence[str] = ("090",),
    frames: int = 14,
) -> Tree:
    """A CASIA-B-layout pkl tree ``base/name/<id>/<type>/<view>/<view>.pkl`` of walker silhouettes
    (silhouettes only, as OpenGait ships CASIA-B); the first ``train`` subjects are TRAIN_SET."""
    root = base / name
    tree = Tree(root, base / f"{name}.json", train_ids=tuple(subjects[:train]), test_ids=tuple(subjects[train:]))
    for i, subject in enumerate(subjects):
        for condition in types:
            for k, view in enumerate(views):
                sequence_id = f"{subject}/{condition}/{view}"
                sils = walker_silhouettes(i, condition, frames, phase=0.7 * k + 0.3 * types.index(condition))
                dump(root / sequence_id / f"{view}.pkl", sils)
                tree.frames[sequence_id] = frames
    _write_partition(tree.partition, tree.train_ids, tree.test_ids)
    return tree


def make_walker_sustech1k_tree(base: Path, n_subjects: int = 7, train: int = 4, frames: int = 14) -> Tree:
    """A SUSTech1K-layout tree shipping walker silhouettes (``06-…-Camera-Sils_aligned``), keypoints
    (``03-…-Camera-Pose``) and ratios, and an RGB pkl that holds no frames (``05-…-Camera-RGB_raw`` of
    shape (T, 4)): every animator fails on it, while the silhouette and skeleton recognisers work."""
    root = base / "sustech_walkers"
    ids = tuple(f"{i:04d}" for i in range(1, n_subjects + 1))
    tree = Tree(root, base / "sustech_walkers.json", train_ids=ids[:train], test_ids=ids[train:])
    for i, subject in enumerate(ids):
        for condition in SUSTECH_TYPES:
            for k, view in enumerate(("000", "090")):
                sequence_id = f"{subject}/{condition}/{view}"
                sils = walker_silhouettes(i, condition.split("-")[1], frames, phase=0.7 * k)
                dump(root / sequence_id / sustech_file_name(6, view), sils)
                dump(root / sequence_id / sustech_file_name(3, view), walker_keypoints(sils))
                dump(root / sequence_id / sustech_file_name(4, view), np.full((frames, 2), (256, 256), np.int64))
                dump(root / sequence_id / sustech_file_name(5, view), np.zeros((frames, 4), np.uint8))
                tree.frames[sequence_id] = frames
    _write_partition(tree.partition, tree.train_ids, tree.test_ids)
    return tree
