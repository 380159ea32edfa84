"""Video and frame-folder I/O: round trips through both writers and both readers, rotation, bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_fixtures import moving_block_frames

from pipeline.io.video import (
    VideoError,
    apply_rotation,
    iter_frame_batches,
    probe_video,
    read_frames,
    read_image,
    read_image_folder,
    write_video,
)

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TOLERANCE = 6.0  # mean absolute error (0..255) allowed for lossy codecs on smooth test frames


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return moving_block_frames(20, height=48, width=64)


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory, source: np.ndarray) -> Path:
    return write_video(tmp_path_factory.mktemp("h264") / "clip.mp4", source, fps=25)


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_close_and_in_order(decoded: np.ndarray, source: np.ndarray) -> None:
    """Within tolerance, and every decoded frame is nearest to its own source frame (order kept)."""
    assert decoded.shape == source.shape and decoded.dtype == np.uint8
    assert mean_error(decoded, source) < TOLERANCE
    distances = np.abs(decoded[:, None].astype(np.int16) - source[None].astype(np.int16)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(len(source)))


@pytest.mark.parametrize("backend", ["auto", "decord", "opencv"])
def test_h264_round_trip(h264: Path, source: np.ndarray, backend: str) -> None:
    info = probe_video(h264, backend=backend)
    assert (info.frame_count, info.fps, info.width, info.height, info.rotation) == (20, 25.0, 64, 48, 0)
    assert_close_and_in_order(read_frames(h264, backend=backend), source)


def test_written_file_is_h264_in_mp4(h264: Path) -> None:
    capture = cv2.VideoCapture(str(h264))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    capture.release()
    assert fourcc in ("avc1", "h264")
    assert h264.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("backend", ["decord", "opencv"])
def test_opencv_mp4v_writer_is_readable_by_both(tmp_path: Path, source: np.ndarray, backend: str) -> None:
    path = write_video(tmp_path / "mp4v.mp4", source, fps=12.5, backend="opencv")
    info = probe_video(path, backend=backend)
    assert (info.frame_count, info.width, info.height) == (20, 64, 48)
    assert info.fps == pytest.approx(12.5)
    assert_close_and_in_order(read_frames(path, backend=backend), source)


@pytest.mark.parametrize("backend", ["ffmpeg", "opencv"])
def test_odd_frame_sizes(tmp_path: Path, source: np.ndarray, backend: str) -> None:
    odd = np.ascontiguousarray(source[:5, :47, :63])
    info = probe_video(write_video(tmp_path / "odd.mp4", odd, fps=30000 / 1001, backend=backend))
    assert info.fps == pytest.approx(29.97, abs=0.01)
    # H.264 keeps odd sizes (4:4:4); mp4v cannot, and grows by the repeated edge instead of cropping
    assert (info.width, info.height) == ((63, 47) if backend == "ffmpeg" else (64, 48))


@pytest.mark.parametrize("backend", ["decord", "opencv"])
def test_selected_indices_and_batches_match_full_read(h264: Path, backend: str) -> None:
    full = read_frames(h264, backend=backend)
    wanted = [7, 2, 19, 2, 0, 11]  # unordered, repeated
    np.testing.assert_array_equal(read_frames(h264, wanted, batch_size=4, backend=backend), full[wanted])
    batches = list(iter_frame_batches(h264, batch_size=6, backend=backend))
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    np.testing.assert_array_equal(np.concatenate(batches), full)
    assert read_frames(h264, [], backend=backend).shape == (0, 48, 64, 3)
    with pytest.raises(IndexError, match="clip.mp4"):
        read_frames(h264, [3, 20], backend=backend)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, source: np.ndarray) -> None:
    target = write_video(tmp_path / "keep.mp4", source[:3], fps=25)
    before = target.read_bytes()

    def failing_frames():
        yield source[0]
        yield source[1]
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        write_video(target, failing_frames(), fps=25)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]  # no temp file left behind
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", source.astype(np.float32), fps=25)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], fps=25)
    with pytest.raises(ValueError, match="mp4"):
        write_video(tmp_path / "clip.avi", source, fps=25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_apply_rotation_is_clockwise() -> None:
    frame = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)  # [[0 1 2], [3 4 5]]
    assert apply_rotation(frame, 90)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]
    assert apply_rotation(frame, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert apply_rotation(frame, 270)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert apply_rotation(frame[None].repeat(2, 0), 90).shape == (2, 3, 2, 1)
    with pytest.raises(ValueError):
        apply_rotation(frame, 45)


def ffmpeg_upright_decode(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """ffmpeg's own decode, which applies the display matrix by default: the independent reference."""
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, *shape)


@pytest.mark.parametrize(("display_rotation", "clockwise"), [(90, 270), (180, 180), (270, 90), (-90, 90)])
def test_rotation_metadata_is_applied(
    tmp_path: Path, h264: Path, display_rotation: int, clockwise: int
) -> None:
    """``-display_rotation`` (counter-clockwise degrees) writes a display matrix without re-encoding."""
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-display_rotation",
            str(display_rotation),
            "-i",
            str(h264),
            "-c",
            "copy",
            str(rotated),
        ],
        check=True,
    )
    info = probe_video(rotated)
    upright_shape = (64, 48, 3) if clockwise in (90, 270) else (48, 64, 3)
    assert info.rotation == clockwise
    assert (info.height, info.width, 3) == upright_shape
    frames = read_frames(rotated, batch_size=8)
    assert frames.shape == (20, *upright_shape)
    assert mean_error(frames, ffmpeg_upright_decode(rotated, upright_shape)) < 1.0
    np.testing.assert_array_equal(frames, apply_rotation(read_frames(h264), clockwise))
    np.testing.assert_array_equal(np.concatenate(list(iter_frame_batches(rotated, 7))), frames)


@pytest.mark.parametrize("reader", [probe_video, read_frames, lambda p: list(iter_frame_batches(p))])
def test_bad_files_raise_video_error_naming_the_path(tmp_path: Path, reader) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, reason in [(corrupt, "cannot"), (empty, "empty"), (tmp_path / "missing.mp4", "not found")]:
        with pytest.raises(VideoError, match=reason) as caught:
            reader(path)
        assert caught.value.path == path and str(path) in str(caught.value)


def test_truncated_video_is_an_error_or_a_shorter_readable_video(tmp_path: Path) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)  # incompressible
    data = write_video(tmp_path / "full.mp4", noisy, fps=25).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    try:
        info = probe_video(truncated)
    except VideoError as err:
        assert err.path == truncated
        return
    assert 0 < info.frame_count < 30  # never the header's 30: those frames are gone
    assert len(read_frames(truncated)) == info.frame_count


def test_images_and_frame_folders(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):  # natural order must be 1, 2, 10
        rgb = np.zeros((4, 5, 3), dtype=np.uint8)
        rgb[..., 0] = i  # red channel carries the frame number
        cv2.imwrite(str(folder / f"frame_{i}.png"), rgb[..., ::-1])
    cv2.imwrite(str(folder / "frame_3.jpg"), np.full((4, 5), 7, dtype=np.uint8))  # grey image
    (folder / "readme.txt").write_text("ignored")
    frames = read_image_folder(folder)
    assert frames.shape == (4, 4, 5, 3)
    assert frames[:, 0, 0, 0].tolist()[:2] == [1, 2] and frames[3, 0, 0, 0] == 10
    assert frames[2, 0, 0].tolist() == [7, 7, 7]
    assert read_image(folder / "frame_2.png")[0, 0].tolist() == [2, 0, 0]

    cv2.imwrite(str(folder / "frame_11.png"), np.zeros((6, 5, 3), dtype=np.uint8))
    with pytest.raises(VideoError, match="frame_11.png"):
        read_image_folder(folder)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(VideoError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoError, match="no image files"):
        read_image_folder(tmp_path / "none")
    with pytest.raises(VideoError, match="not found"):
        read_image_folder(tmp_path / "missing")


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to compare"
)
def test_h264_bytes_do_not_depend_on_the_number_of_cores(tmp_path: Path) -> None:
    """x264's default thread count follows the cores, and its bitstream the thread count (before the
    fixed thread count, 1 and 2 CPUs gave different files for this clip): a world rendered on another
    machine must give the same videos."""
    script = (
        "import os, sys, cv2, numpy as np\n"
        "from pipeline.io.video import write_video\n"
        "os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[1])]))\n"
        "base = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8), (7, 7), 2)\n"
        "frames = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1))[:96, :128] for t in range(24)])\n"
        "write_video(sys.argv[2], frames, fps=25)\n"
    )
    files = []
    for cpus in (1, 2):
        files.append(tmp_path / f"cpus{cpus}.mp4")
        subprocess.run([sys.executable, "-c", script, str(cpus), str(files[-1])], check=True,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert files[0].read_bytes() == files[1].read_bytes()
