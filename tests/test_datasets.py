"""Dataset adapters on tiny trees built in the real layouts: counts, splits, roles, paths, frames, errors."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dataset_fixtures import (
    CASIA_B_TYPES,
    CustomFolder,
    Tree,
    ccgr_file_names,
    dump,
    make_casiab_tree,
    make_ccgr_mini_tree,
    make_custom_folder,
    make_sustech1k_tree,
    make_sustech_frames,
    sustech_file_name,
)

from pipeline.contracts import MANIFEST, read_table, write_table
from pipeline.datasets import ADAPTERS, index_dataset
from pipeline.datasets.ccgr_mini import load_ccgr_pose
from pipeline.datasets.custom import index_custom
from pipeline.datasets.opengait import index_opengait, load_partition
from pipeline.io.safe_pickle import PickleLoadError, load_array

Rows = dict[str, dict]


def by_id(table: pa.Table) -> Rows:
    return {row["sequence_id"]: row for row in table.to_pylist()}


def index_quietly(kind: str, root: Path, **options) -> pa.Table:
    """Index, accepting the partition warnings the fixtures provoke on purpose."""
    with pytest.warns(UserWarning):
        return index_dataset(kind, root, **options)


# ---------------------------------------------------------------------------------------------
# Registry and common errors


def test_registry_and_bad_arguments(tmp_path: Path) -> None:
    assert set(ADAPTERS) == {"opengait", "sustech1k", "ccgr_mini", "custom"}
    with pytest.raises(ValueError, match=r"known kinds: \['ccgr_mini', 'custom', 'opengait', 'sustech1k'\]"):
        index_dataset("casia-z", tmp_path, dataset="x")
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        index_dataset("custom", tmp_path / "no_such_root", dataset="x")
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        index_opengait(tmp_path / "no_such_root", dataset="x", partition={})


def test_partition_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_partition(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_partition(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="TEST_SET"):
        load_partition({"TRAIN_SET": ["1"]})
    with pytest.raises(ValueError, match="both"):
        load_partition({"TRAIN_SET": ["1", "2"], "TEST_SET": [2]})  # numbers and strings name the same ID


# ---------------------------------------------------------------------------------------------
# Generic OpenGait / CASIA-B


@pytest.fixture
def casiab(tmp_path: Path) -> Tree:
    return make_casiab_tree(tmp_path)


def test_casiab_counts_splits_roles_paths_frames(casiab: Tree) -> None:
    with pytest.warns(UserWarning) as caught:
        table = index_dataset("opengait", casiab.root, dataset="CASIA-B", partition=casiab.partition, fps=25)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 partition IDs have no folder" in messages  # "999"
    assert "1 subject folders are in no partition set" in messages and "100" in messages

    rows = by_id(table)
    assert table.num_rows == 6 * len(CASIA_B_TYPES) * 2
    assert table.column_names == MANIFEST.schema.names
    assert {r["subject"] for r in rows.values()} == {f"{i:03d}" for i in range(1, 7)}
    assert {s for s, r in rows.items() if r["split"] == "train"} == {
        s for s in casiab.frames if s.split("/")[0] in casiab.train_ids
    }
    assert all(r["role"] == "train" for r in rows.values() if r["split"] == "train")
    assert {s for s, r in rows.items() if r["role"] == "gallery"} == casiab.gallery
    assert sum(r["role"] == "probe" for r in rows.values()) == 3 * 6 * 2
    for sequence_id, row in rows.items():
        assert row["frame_count"] == casiab.frames[sequence_id]
        assert row["path_silhouette"] == str(casiab.root / sequence_id / f"{row['view']}.pkl")
        assert row["error"] is None and row["fps"] == 25
    assert json.loads(rows["004/bg-02/090"]["attributes"]) == {"covariate": "bg", "take": "02"}
    assert table.column("sequence_id").to_pylist() == sorted(rows)


def test_casiab_bad_folders_become_error_rows(casiab: Tree) -> None:
    garbage = casiab.root / "004/nm-05/000/000.pkl"
    garbage.write_bytes(b"\x80\x04 definitely not a pickle")
    dump(casiab.root / "005/cl-01/090/091.pkl", np.zeros((99, 8, 8), dtype=np.uint8))  # a second, longer pkl
    evil = casiab.root / "001/nm-01/000/000.pkl"
    evil.write_bytes(pickle.dumps(shutil.rmtree, protocol=4))  # refers to a global: refused, never called
    (casiab.root / "006/nm-01/000/000.pkl").unlink()  # an empty sequence folder
    rows = by_id(index_quietly("opengait", casiab.root, dataset="CASIA-B", partition=casiab.partition))

    assert "unloadable pkl" in rows["004/nm-05/000"]["error"] and "000.pkl" in rows["004/nm-05/000"]["error"]
    assert (
        "different frame counts" in rows["005/cl-01/090"]["error"]
        and "091.pkl=99" in rows["005/cl-01/090"]["error"]
    )
    assert "shutil.rmtree" in rows["001/nm-01/000"]["error"] and casiab.root.is_dir()
    assert "no .pkl files" in rows["006/nm-01/000"]["error"]
    assert all(r["frame_count"] is None for s, r in rows.items() if r["error"])
    assert sum(r["error"] is not None for r in rows.values()) == 4  # everything else still indexed

    unchecked = by_id(
        index_quietly(
            "opengait", casiab.root, dataset="CASIA-B", partition=casiab.partition, count_frames=False
        )
    )
    assert unchecked["004/nm-05/000"]["error"] is None and unchecked["004/nm-05/000"]["frame_count"] is None


def test_opengait_role_rules_and_modality_indices(casiab: Tree) -> None:
    with pytest.warns(UserWarning) as caught:
        rows = index_opengait(
            casiab.root,
            dataset="d",
            partition=casiab.partition,
            gallery_types=["nm-01", "nm-02"],
            probe_types=["nm-03", "nm-04", "nm-05", "nm-06"],
        )
    assert any("types ['bg-01', 'bg-02', 'cl-01', 'cl-02'] are neither" in str(w.message) for w in caught)
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(test_rows) == 3 * 6 * 2
    assert {r["condition"] for r in test_rows if r["role"] == "gallery"} == {"nm-01", "nm-02"}

    with pytest.warns(UserWarning):
        everything = index_opengait(casiab.root, dataset="d", partition=casiab.partition, probe_types=None)
    assert sum(r["role"] == "probe" for r in everything) == 3 * 6 * 2

    with pytest.warns(UserWarning):
        rows = index_opengait(
            casiab.root,
            dataset="d",
            partition=casiab.partition,
            modalities={"path_silhouette": 0, "path_pose": 1},
        )
    assert all("pkl #1 but" in r["error"] and r["path_silhouette"] for r in rows)
    with pytest.raises(ValueError, match="path_depth"):
        index_opengait(casiab.root, dataset="d", partition=casiab.partition, modalities={"path_depth": 0})


def test_manifest_round_trip_through_parquet(casiab: Tree, tmp_path: Path) -> None:
    table = index_quietly("opengait", casiab.root, dataset="CASIA-B", partition=casiab.partition)
    written = write_table(table, tmp_path / "manifest.parquet", MANIFEST)
    assert read_table(written, MANIFEST).equals(table)


# ---------------------------------------------------------------------------------------------
# SUSTech1K


@pytest.fixture
def sustech(tmp_path: Path) -> Tree:
    return make_sustech1k_tree(tmp_path)


def test_sustech1k_index(sustech: Tree, tmp_path: Path) -> None:
    rgb_root = tmp_path / "sustech_rgb"
    make_sustech_frames(rgb_root, "0003/00-nm/000")
    with pytest.warns(UserWarning, match="47 sequences have no RGB frame folder"):
        table = index_dataset(
            "sustech1k", sustech.root, dataset="SUSTech1K", partition=sustech.partition, rgb_root=rgb_root
        )
    rows = by_id(table)
    assert table.num_rows == 6 * 4 * 2
    assert sum(r["split"] == "train" for r in rows.values()) == 2 * 4 * 2
    assert {s for s, r in rows.items() if r["role"] == "gallery"} == sustech.gallery
    assert sum(r["role"] == "probe" for r in rows.values()) == 4 * 3 * 2
    for sequence_id, row in rows.items():
        view = row["view"]
        folder = sustech.root / sequence_id
        assert row["path_silhouette"] == str(folder / sustech_file_name(6, view))
        assert row["path_pose"] == str(folder / sustech_file_name(3, view))
        assert row["path_rgb"] == str(folder / sustech_file_name(5, view))
        assert row["path_ratios"] == str(folder / sustech_file_name(4, view))
        assert row["frame_count"] == sustech.frames[sequence_id]  # 30 Hz camera count, not the sync copy's
        assert row["fps"] == 30.0 and row["error"] is None
    assert rows["0003/00-nm/000"]["path_frames"] == str(rgb_root / "0003/00-nm/000")
    assert rows["0003/00-nm/090"]["path_frames"] is None
    assert json.loads(rows["0002/02-bg/090"]["attributes"]) == {"covariate": "bg", "seq_no": "02"}
    assert load_array(rows["0004/03-cl/000"]["path_pose"]).shape[1:] == (17, 3)


def test_sustech1k_missing_and_inconsistent_pkls(sustech: Tree) -> None:
    (sustech.root / "0004/01-nm/090" / sustech_file_name(5, "090")).unlink()  # RGB gone
    dump(sustech.root / "0005/02-bg/000" / sustech_file_name(4, "000"), np.zeros((1, 2)))  # ratios too short
    rows = by_id(index_dataset("sustech1k", sustech.root, dataset="SUSTech1K", partition=sustech.partition))
    missing = rows["0004/01-nm/090"]
    assert "missing required pkl 05-*Camera-RGB_raw*" in missing["error"]
    assert missing["path_rgb"] is None and missing["path_silhouette"]  # what exists is still recorded
    assert "different frame counts" in rows["0005/02-bg/000"]["error"]
    assert sum(r["error"] is not None for r in rows.values()) == 2


# ---------------------------------------------------------------------------------------------
# CCGR-MINI


@pytest.fixture
def ccgr(tmp_path: Path) -> Tree:
    return make_ccgr_mini_tree(tmp_path)


def test_ccgr_mini_index(ccgr: Tree, tmp_path: Path) -> None:
    video_root = tmp_path / "ccgr_videos"
    as_folder = video_root / "4/BG1/over.avi"  # organize_ccgr.py layout: the view folder holds the video
    as_folder.mkdir(parents=True)
    (as_folder / "overrgb_f-1.avi").write_bytes(b"RIFF")
    (video_root / "5/NM1").mkdir(parents=True)
    (video_root / "5/NM1/90_3.avi").write_bytes(b"RIFF")  # or the view name is the video file itself

    table = index_dataset(
        "ccgr_mini", ccgr.root, dataset="CCGR-MINI", partition=ccgr.partition, video_root=video_root
    )
    rows = by_id(table)
    assert table.num_rows == 6 * 3
    assert sum(r["split"] == "train" for r in rows.values()) == 3 * 3
    assert {s for s, r in rows.items() if r["role"] == "gallery"} == ccgr.gallery
    assert sum(r["role"] == "probe" for r in rows.values()) == 3
    for sequence_id, row in rows.items():
        names = ccgr_file_names(row["view"])
        folder = ccgr.root / sequence_id
        assert row["view"].endswith(".avi")
        assert row["path_silhouette"] == str(folder / names["sil"])
        assert row["path_rgb"] == str(folder / names["rgb_f"])
        assert row["path_ratios"] == str(folder / names["ratios_HW"])
        assert row["path_pose"] == str(folder / names["pose"])
        assert row["frame_count"] == ccgr.frames[sequence_id] and row["error"] is None
    assert rows["4/BG1/over.avi"]["path_video"] == str(as_folder / "overrgb_f-1.avi")
    assert rows["5/NM1/90_3.avi"]["path_video"] == str(video_root / "5/NM1/90_3.avi")
    assert sum(r["path_video"] is not None for r in rows.values()) == 2
    assert json.loads(rows["1/ASBGCLBXCV1/90_3.avi"]["attributes"]) == {
        "covariates": ["AS", "BG", "CL", "BX", "CV"],
        "take": "1",
    }


def test_ccgr_mini_missing_pkls(ccgr: Tree) -> None:
    sil_gone, rgb_gone = "4/NM1/112_5_2.avi", "1/BG1/over.avi"
    (ccgr.root / sil_gone / ccgr_file_names("112_5_2.avi")["sil"]).unlink()
    (ccgr.root / rgb_gone / ccgr_file_names("over.avi")["rgb_f"]).unlink()
    rows = by_id(index_dataset("ccgr_mini", ccgr.root, dataset="CCGR-MINI", partition=ccgr.partition))
    assert "missing required pkl 002-*sil*" in rows[sil_gone]["error"]
    assert rows[rgb_gone]["error"] is None and rows[rgb_gone]["path_rgb"] is None  # RGB is optional
    assert rows[rgb_gone]["frame_count"] == ccgr.frames[rgb_gone]


def test_ccgr_gallery_entries_without_sequence_warn(ccgr: Tree) -> None:
    partition = json.loads(ccgr.partition.read_text())
    partition["GALLERY_SET"].append("5-NM1-no_such_view.avi")
    with pytest.warns(UserWarning, match="1 GALLERY_SET entries"):
        index_dataset("ccgr_mini", ccgr.root, dataset="CCGR-MINI", partition=partition)


def test_ccgr_pose_layout(tmp_path: Path) -> None:
    rows = np.arange(2 * 56, dtype=np.float32).reshape(2, 56)
    pose = load_ccgr_pose(dump(tmp_path / "pose.pkl", rows))
    assert pose.shape == (2, 17, 3)
    assert pose[0, 0].tolist() == [5.0, 6.0, 7.0]  # the 5 leading columns are not keypoints
    assert pose[1, 16].tolist() == rows[1, 53:56].tolist()
    with pytest.raises(PickleLoadError, match="56"):
        load_ccgr_pose(dump(tmp_path / "bad.pkl", np.zeros((2, 51))))


# ---------------------------------------------------------------------------------------------
# Custom video folders


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> CustomFolder:
    return make_custom_folder(tmp_path_factory.mktemp("custom"))


def test_custom_folder_without_sheet(custom: CustomFolder) -> None:
    rows = by_id(index_dataset("custom", custom.root, dataset="mine"))
    by_file = {json.loads(r["attributes"])["file"]: r for r in rows.values()}
    assert set(by_file) == set(custom.good) | set(custom.broken)  # hidden folder and notes.txt ignored
    assert set(rows) == {
        "alice/walk1/unknown",
        "alice/walk2/unknown",
        "bob/walk1/unknown",
        "bob/day2-run/unknown",
        "carol/default/unknown",
        "dave/broken/unknown",
        "dave/empty/unknown",
        "erin/walk-mp4/unknown",
        "erin/walk-mov/unknown",
    }
    for relative, count in custom.good.items():
        row = by_file[relative]
        assert row["error"] is None, row["error"]
        assert (row["frame_count"], row["fps"], row["width"], row["height"]) == (count, 25.0, 32, 24)
        assert row["path_video"] == str(custom.root / relative)
    for relative in custom.broken:
        row = by_file[relative]
        assert relative.split("/")[-1] in row["error"] and row["frame_count"] is None
    assert "empty" in by_file["dave/empty.avi"]["error"]
    assert all(r["split"] == "test" for r in rows.values())  # train_fraction defaults to 0
    gallery = {s for s, r in rows.items() if r["role"] == "gallery"}
    # one gallery per subject: its first usable sequence; dave has none usable
    assert gallery == {
        "alice/walk1/unknown",
        "bob/day2-run/unknown",
        "carol/default/unknown",
        "erin/walk-mov/unknown",
    }


def test_custom_train_fraction(custom: CustomFolder) -> None:
    rows = index_custom(custom.root, dataset="mine", train_fraction=0.6)
    split_of = {r["subject"]: r["split"] for r in rows}
    assert all(split_of[r["subject"]] == r["split"] for r in rows)  # a subject never straddles splits
    assert sum(s == "train" for s in split_of.values()) == 3  # round(0.6 * 5)
    assert all(r["role"] == "train" for r in rows if r["split"] == "train")
    with pytest.raises(ValueError, match="train_fraction"):
        index_custom(custom.root, dataset="mine", train_fraction=1.5)


def write_sheet(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_custom_sheet(custom: CustomFolder, tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "sheet.csv",
        ["path", "subject", "condition", "view", "split", "role", "lighting"],
        [
            ["alice/walk1.mp4", "A", "nm", "90", "", "gallery", "day"],
            ["alice/walk2.mp4", "A", "bg", "90", "test", "", "night"],
            ["bob/walk1.mp4", "", "", "", "train", "", ""],
            ["ghost/nowhere.mp4", "G", "nm", "0", "test", "", ""],
            ["carol.mp4", "", "", "", "", "", ""],
        ],
    )
    rows = by_id(index_dataset("custom", custom.root, dataset="mine", sheet=sheet))
    assert set(rows) == {"A/nm/90", "A/bg/90", "bob/walk1/unknown", "G/nm/0", "carol/default/unknown"}
    assert (rows["A/nm/90"]["split"], rows["A/nm/90"]["role"]) == ("test", "gallery")
    assert rows["A/bg/90"]["role"] == "probe"  # A already has an explicit gallery sequence
    assert (rows["bob/walk1/unknown"]["split"], rows["bob/walk1/unknown"]["role"]) == ("train", "train")
    assert json.loads(rows["A/bg/90"]["attributes"]) == {"file": "alice/walk2.mp4", "lighting": "night"}
    ghost = rows["G/nm/0"]
    assert "not found" in ghost["error"] and "nowhere.mp4" in ghost["error"] and ghost["role"] == "probe"
    assert (
        rows["carol/default/unknown"]["role"] == "gallery"
        and rows["carol/default/unknown"]["frame_count"] == 5
    )


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["file", "subject"], ["alice/walk1.mp4", "A"], "no 'path' column"),
        (["path", "split"], ["alice/walk1.mp4", "validation"], "unknown split 'validation'"),
        (["path", "role"], ["alice/walk1.mp4", "query"], "unknown role 'query'"),
        (["path", "split", "role"], ["alice/walk1.mp4", "train", "probe"], "contradicts"),
        (["path", "subject"], ["alice/walk1.mp4", "a/b"], "contains '/'"),
        (["path"], [""], "empty 'path'"),
        (["path"], ["/etc/hostname"], "absolute and not inside"),
    ],
)
def test_custom_malformed_sheets(custom: CustomFolder, tmp_path: Path, header, row, message) -> None:
    sheet = write_sheet(tmp_path / "bad.csv", header, [row])
    with pytest.raises(ValueError, match=message) as caught:
        index_custom(custom.root, dataset="mine", sheet=sheet)
    assert "bad.csv" in str(caught.value)


def test_custom_sheet_duplicates_and_missing_sheet(custom: CustomFolder, tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "dup.csv",
        ["path", "subject", "condition"],
        [["alice/walk1.mp4", "A", "x"], ["bob/walk1.mp4", "A", "x"]],
    )
    with pytest.raises(ValueError, match="A/x/unknown"):
        index_custom(custom.root, dataset="mine", sheet=sheet)
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        index_custom(custom.root, dataset="mine", sheet=tmp_path / "absent.csv")
