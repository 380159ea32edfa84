"""Video and frame-folder I/O: probe, read (all or some frames, or streamed in batches), write mp4.

Reading uses decord (random access through its frame index, batched ``get_batch``) and falls back to
OpenCV for files decord cannot open, when decord is not installed, and for rotated videos: decord 0.6
mis-sizes its output buffers when a stream carries rotation metadata, so those are decoded by OpenCV
with its own auto-rotation switched off and turned upright by :func:`apply_rotation`, which keeps the
rotation convention in one tested place. Every frame array is RGB uint8 ``[T, H, W, 3]``, upright.

Writing prefers H.264 through the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel, and falls back
to OpenCV's ``mp4v`` encoder. The file appears atomically (temp file + ``os.replace``), so an interrupted
job never leaves a truncated video that a later stage would accept.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ReadBackend = Literal["auto", "decord", "opencv"]
WriteBackend = Literal["auto", "ffmpeg", "opencv"]


class VideoError(RuntimeError):
    """A video or image could not be read or written; ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as displayed: width/height are those of the upright frames.

    ``rotation`` is the clockwise angle (0, 90, 180, 270) by which the stored frames are turned to be
    upright; it comes from the container's rotation metadata (display matrix or ``rotate`` tag).
    """

    frame_count: int
    fps: float
    width: int
    height: int
    rotation: int


def apply_rotation(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate ``frames`` ([..., H, W, C]) clockwise by ``rotation`` degrees (a multiple of 90)."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    quarter_turns = (rotation // 90) % 4
    if quarter_turns == 0:
        return frames
    # np.rot90 turns counter-clockwise for positive k, hence the minus sign
    return np.ascontiguousarray(np.rot90(frames, k=-quarter_turns, axes=(-3, -2)))


def _normalise_rotation(value: float) -> int:
    """Snap a metadata angle (possibly negative or 269.99) to 0/90/180/270."""
    if not np.isfinite(value):
        return 0
    return int(round(value / 90.0)) % 4 * 90


def _clean_fps(value: float) -> float:
    """Containers without a frame rate report 0, NaN or inf; all become 0.0 (= unknown)."""
    value = float(value)
    return value if np.isfinite(value) and value > 0 else 0.0


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "file not found")
    if not path.is_file():
        raise VideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    return path


# ---------------------------------------------------------------------------------------------
# Decoding back-ends: each exposes `info` and `read_batch(indices) -> upright RGB [B, H, W, 3]`.


class _OpenCvSource:
    """Sequential decoding through OpenCV; seeks by re-opening and skipping, which is exact for every codec."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._capture = self._open()
        try:
            self.info = self._inspect()
        except BaseException:
            self._capture.release()
            raise

    def _inspect(self) -> VideoInfo:
        auto_disabled = self._capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 0
        rotation = _normalise_rotation(self._capture.get(cv2.CAP_PROP_ORIENTATION_META))
        # if this OpenCV build ignores the switch it has already rotated the frames itself
        self._rotate_by = rotation if auto_disabled else 0
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self._position = 0
        # decoding frame 0 makes a header-only or garbage file fail here, not later in a pipeline stage,
        # and gives the displayed size after rotation
        height, width = self.read_batch([0]).shape[1:3]
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # some containers (raw streams, some mkv/webm) carry no frame count
            count = self._count_by_decoding()
        return VideoInfo(count, _clean_fps(fps), width, height, rotation)

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise VideoError(self.path, "OpenCV cannot open it (unknown container or corrupt file)")
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        return capture

    def recount(self) -> None:
        """Replace the container's frame count by the number of frames that actually decode."""
        count = self._count_by_decoding()
        if count == 0:
            raise VideoError(self.path, "no frame can be decoded")
        self.info = replace(self.info, frame_count=count)

    def _count_by_decoding(self) -> int:
        self._restart()
        count = 0
        while self._capture.grab():
            count += 1
        self._restart()
        return count

    def _restart(self) -> None:
        self._capture.release()
        self._capture = self._open()
        self._position = 0

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        if min(indices) < self._position:
            self._restart()
        wanted = set(indices)
        decoded: dict[int, np.ndarray] = {}
        while self._position <= max(indices):
            if not self._capture.grab():
                raise VideoError(
                    self.path, f"frame {self._position} cannot be decoded (truncated or corrupt)"
                )
            if self._position in wanted:
                ok, frame = self._capture.retrieve()
                if not ok or frame is None:
                    raise VideoError(self.path, f"frame {self._position} cannot be decoded")
                decoded[self._position] = frame
            self._position += 1
        batch = np.stack([decoded[i] for i in indices])
        return apply_rotation(np.ascontiguousarray(batch[..., ::-1]), self._rotate_by)

    def close(self) -> None:
        self._capture.release()


class _DecordSource:
    """Random-access decoding through decord's frame index (no rotation support, see module doc).

    Opening builds decord's index by demuxing the whole file, so ``frame_count`` is exact and a file
    truncated mid-stream fails here rather than while reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import decord  # imported lazily: wheels are missing on some platforms, OpenCV then takes over

            self._reader: Any = decord.VideoReader(str(path), ctx=decord.cpu(0))
            self.frame_count = len(self._reader)
        except Exception as err:  # decord raises bare RuntimeError/DECORDError/ImportError variants
            raise VideoError(path, f"decord cannot open it ({_first_line(err)})") from err
        if self.frame_count == 0:
            raise VideoError(path, "video has no frames")

    def inspect(self) -> VideoInfo:
        """Decode frame 0 (a garbage stream fails here) and describe the video."""
        first = self.read_batch([0])
        fps = _clean_fps(self._reader.get_avg_fps())
        self.info = VideoInfo(self.frame_count, fps, first.shape[2], first.shape[1], 0)
        return self.info

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(list(indices)).asnumpy()
        except Exception as err:  # DECORDError derives from Exception only
            where = f"frames {min(indices)}..{max(indices)}"
            raise VideoError(self.path, f"{where} cannot be decoded ({_first_line(err)})") from err

    def close(self) -> None:
        self._reader = None


_Source = _OpenCvSource | _DecordSource


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _open_decord(path: Path) -> _DecordSource:
    source = _DecordSource(path)
    source.inspect()
    return source


def _open_source(path: str | os.PathLike, backend: ReadBackend) -> _Source:
    """Open ``path`` with the requested back-end ("opencv" trusts the container's frame count).

    "auto": decord when it can open the file and no rotation is set; rotated videos are decoded by
    OpenCV but counted by decord's index; when decord cannot open the file at all, OpenCV decodes it
    and the frames are counted by decoding them, since the header may describe frames that are gone.
    """
    path = _check_file(path)
    if backend == "opencv":
        return _OpenCvSource(path)
    if backend == "decord":
        return _open_decord(path)
    if backend != "auto":
        raise ValueError(f"unknown read backend {backend!r}; use 'auto', 'decord' or 'opencv'")
    try:
        opencv = _OpenCvSource(path)  # cheap, and the only reader of the rotation metadata
    except VideoError as cv_err:
        try:
            return _open_decord(path)
        except VideoError as dec_err:
            raise VideoError(path, f"cannot read video ({cv_err.reason}; {dec_err.reason})") from dec_err
    try:
        indexed = _DecordSource(path)
        if not opencv.info.rotation:
            indexed.inspect()
    except VideoError:
        return _recounted(opencv)
    if opencv.info.rotation:
        opencv.info = replace(opencv.info, frame_count=indexed.frame_count)
        indexed.close()
        return opencv
    opencv.close()
    return indexed


def _recounted(source: _OpenCvSource) -> _OpenCvSource:
    try:
        source.recount()
    except BaseException:
        source.close()
        raise
    return source


# ---------------------------------------------------------------------------------------------
# Public reading API


def probe_video(path: str | os.PathLike, *, backend: ReadBackend = "auto") -> VideoInfo:
    """Frame count, fps, displayed width/height and rotation of a video; decodes its first frame.

    Raises :class:`VideoError` (naming the path) for a missing, empty, corrupt or frameless file.
    """
    source = _open_source(path, backend)
    try:
        return source.info
    finally:
        source.close()


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


def _checked_indices(path: str | os.PathLike, indices: Iterable[int] | None, count: int) -> list[int]:
    if indices is None:
        return list(range(count))
    chosen = [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < count]
    if bad:
        raise IndexError(f"{path}: frame indices {bad[:5]} out of range for {count} frames")
    return chosen


def read_frames(
    path: str | os.PathLike,
    indices: Iterable[int] | None = None,
    batch_size: int = 64,
    *,
    backend: ReadBackend = "auto",
) -> np.ndarray:
    """Decode ``indices`` (default: every frame) as upright RGB uint8 ``[T, H, W, 3]``, in the order given."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    source = _open_source(path, backend)
    try:
        info = source.info
        chosen = _checked_indices(path, indices, info.frame_count)
        frames = np.empty((len(chosen), info.height, info.width, 3), dtype=np.uint8)
        for offset, chunk in zip(range(0, len(chosen), batch_size), _chunks(chosen, batch_size), strict=True):
            frames[offset : offset + len(chunk)] = source.read_batch(chunk)
        return frames
    finally:
        source.close()


def iter_frame_batches(
    path: str | os.PathLike, batch_size: int = 64, *, backend: ReadBackend = "auto"
) -> Iterator[np.ndarray]:
    """Stream every frame as upright RGB batches ``[B, H, W, 3]`` (the last batch may be shorter)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    source = _open_source(path, backend)
    try:
        for chunk in _chunks(range(source.info.frame_count), batch_size):
            yield source.read_batch(chunk)
    finally:
        source.close()


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts frame_2 before frame_10 (digit runs compare as numbers)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as RGB uint8 ``[H, W, 3]`` (grey and alpha images are converted)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "image not found")
    # imdecode on the raw bytes instead of imread: imread silently fails on some non-ASCII paths
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(path, "not a readable image")
    return np.ascontiguousarray(image[..., ::-1])


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, in natural order (1, 2, ..., 10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(folder, "frame folder not found")
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(images, key=lambda p: _natural_key(p.name))


def read_image_folder(folder: str | os.PathLike) -> np.ndarray:
    """All images of a frame folder, naturally sorted, as RGB uint8 ``[T, H, W, 3]``."""
    images = list_images(folder)
    if not images:
        raise VideoError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in frame folder")
    first = read_image(images[0])
    frames = np.empty((len(images), *first.shape), dtype=np.uint8)
    frames[0] = first
    for i, image_path in enumerate(images[1:], start=1):
        image = read_image(image_path)
        if image.shape != first.shape:
            raise VideoError(
                image_path, f"frame size {image.shape[:2]} differs from the first frame's {first.shape[:2]}"
            )
        frames[i] = image
    return frames


# ---------------------------------------------------------------------------------------------
# Writing


@cache
def _ffmpeg_executable() -> str | None:
    """The imageio-ffmpeg wheel's ffmpeg binary if it has libx264, else None (→ OpenCV mp4v).

    Deciding up front, rather than retrying after a failed encode, keeps streamed frame iterators
    single-pass: a failure of a capable ffmpeg is then a real error and is reported as such.
    """
    try:
        import imageio_ffmpeg

        executable = imageio_ffmpeg.get_ffmpeg_exe()
        encoders = subprocess.run(
            [executable, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (ImportError, RuntimeError, OSError, subprocess.TimeoutExpired):
        return None
    return executable if re.search(r"\blibx264\b", encoders) else None


def _frames_iter(frames: np.ndarray | Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Return the first frame and an iterator over all frames, checking shape and dtype of the first."""
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError("write_video: no frames to write")
    first = np.asarray(first)
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"write_video: frames must be uint8 [H, W, 3] RGB, got {first.dtype} {first.shape}")

    def all_frames() -> Iterator[np.ndarray]:
        yield first
        for frame in iterator:
            frame = np.asarray(frame)
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError(f"write_video: frame {frame.dtype} {frame.shape} differs from {first.shape}")
            yield frame

    return first, all_frames()


# x264's frame threads bound its motion search by how far the reference frame is encoded, so the
# bitstream (and the decoded pixels every later stage reads) depends on the thread count, which by default
# follows the machine's cores (1.5 per core): the same world rendered on 2 and on 16 cores gave other
# videos. One fixed thread makes them identical everywhere; it also costs 8 % less CPU on these small
# videos (jobs, not threads, fill the cores).
X264_THREADS = 1


def _write_ffmpeg(
    executable: str, target: Path, first: np.ndarray, frames: Iterator[np.ndarray], fps: float, crf: int
) -> None:
    height, width = first.shape[:2]
    # 4:2:0 (the most widely decodable) needs even sizes; 4:4:4 keeps odd sizes exact instead of padding
    pixel_format = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 → 30000/1001 exactly
    command = [
        executable, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-",
        "-an", "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", pixel_format, "-threads", str(X264_THREADS),
        "-movflags", "+faststart", "-f", "mp4", str(target),
    ]  # fmt: skip
    # stderr goes to a file, not a pipe: a chatty ffmpeg could otherwise block while we feed stdin
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        assert process.stdin is not None
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg exited early; its return code and log below say why
        except BaseException:
            process.kill()
            process.wait()
            raise
        returncode = process.wait()
        if returncode != 0:
            log.seek(0)
            message = log.read().decode(errors="replace").strip()[-500:]
            raise VideoError(target, f"ffmpeg failed with code {returncode}: {message}")


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row/column when a size is odd: OpenCV's mp4v writer would otherwise crop it."""
    pad_rows, pad_cols = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_rows or pad_cols):
        return frame
    return np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")


def _write_opencv(target: Path, first: np.ndarray, frames: Iterator[np.ndarray], fps: float) -> None:
    height, width = _pad_to_even(first).shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise VideoError(target, "OpenCV cannot open an mp4v writer")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(_pad_to_even(frame)[..., ::-1]))
    finally:
        writer.release()
    if not target.is_file() or target.stat().st_size == 0:
        raise VideoError(target, "OpenCV wrote no data")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    backend: WriteBackend = "auto",
) -> Path:
    """Write RGB uint8 frames (``[T, H, W, 3]`` or an iterable of ``[H, W, 3]``) as an ``.mp4``.

    H.264 (libx264, quality ``crf``) via imageio-ffmpeg's binary when available, else OpenCV ``mp4v``
    (which cannot store odd sizes: there the last row/column is repeated to make them even). The target
    only appears once complete. Returns the written path.
    """
    final = Path(path)
    if final.suffix.lower() != ".mp4":
        raise ValueError(f"write_video writes mp4 files; {final} has suffix {final.suffix!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"write_video: fps must be positive, got {fps}")
    if backend not in ("auto", "ffmpeg", "opencv"):
        raise ValueError(f"unknown write backend {backend!r}; use 'auto', 'ffmpeg' or 'opencv'")
    executable = _ffmpeg_executable() if backend != "opencv" else None
    if backend == "ffmpeg" and executable is None:
        raise VideoError(final, "ffmpeg backend requested but imageio-ffmpeg provides no binary")
    final.parent.mkdir(parents=True, exist_ok=True)
    first, all_frames = _frames_iter(frames)
    handle, temp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".tmp.mp4", dir=final.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        if executable is not None:
            _write_ffmpeg(executable, temp, first, all_frames, fps, crf)
        else:
            _write_opencv(temp, first, all_frames, fps)
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return final


__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoInfo",
    "apply_rotation",
    "iter_frame_batches",
    "list_images",
    "probe_video",
    "read_frames",
    "read_image",
    "read_image_folder",
    "write_video",
]
