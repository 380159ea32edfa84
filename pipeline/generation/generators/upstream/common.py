"""Shared machinery of the upstream-animator adapters: config, validation, subprocess, ingestion.

The project never vendors or builds upstream code. Each adapter runs the upstream entry point from a
user-provided checkout with a user-provided Python (an env's ``python`` executable, or ``conda run``
into a named env), with ``cwd`` = the checkout, as upstream's READMEs do. Everything the adapters
share lives here:

* :class:`UpstreamConfig`: the ``models.<name>.*`` config keys, checked at ``load()`` time so that a
  missing checkout, entry file, interpreter or weight file fails with the key and the path *before*
  any job (and any GPU time) starts.
* :func:`run_upstream`: one subprocess per job (all windows of the job in one call, so the weights
  load once per job), logs in the job's work dir, a timeout that kills the whole process group, and
  :class:`UpstreamRunError` carrying the stderr tail when the command fails.
* Geometry: :func:`aspect_padding` / :func:`fit_image` pad tall (or wide) frames to the model's aspect
  ratio instead of squashing them; :class:`GridLayout` crops the generated panel out of upstream's
  comparison grids.
* Time: :class:`Timeline` (which driving frame each generated frame stands for), :func:`plan_windows`
  and :func:`stitch_windows` (fixed-length upstream windows over a longer sequence) and
  :func:`resample_to_driving` (back to the driving frame count).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import yaml

from pipeline.generation.generators.base import (
    GeneratedVideo,
    GenerationError,
    GenerationJob,
    register_generator,
)
from pipeline.generation.generators.builtin import check_driving, check_reference
from pipeline.io.video import VideoError, read_frames
from pipeline.perception.guidance import Padding, unpad


class UpstreamConfigError(ValueError):
    """A ``models.<name>.*`` key is missing, malformed or points to something that does not exist."""


class UpstreamRunError(GenerationError):
    """The upstream command failed or timed out; carries the command and the tail of its stderr."""

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        returncode: int | None = None,
        stderr_tail: str = "",
        stdout_tail: str = "",
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        self.work_dir = None if work_dir is None else str(work_dir)


# ---------------------------------------------------------------------------------------------
# Configuration: models.<name>.*

OPTION_KEYS: tuple[str, ...] = (
    "checkout",  # the upstream repository checkout (cwd of the command)
    "python",  # the env's python executable, or ...
    "conda_env",  # ... a conda env name or prefix path, run through `conda run`
    "conda",  # the conda (or mamba / micromamba) executable; default "conda"
    "weights",  # upstream config key -> path overrides (relative paths are relative to the checkout)
    "extra_args",  # extra command-line arguments appended to the upstream command
    "env",  # extra environment variables (HF_HOME, HF_HUB_OFFLINE, CUDA_VISIBLE_DEVICES, ...)
    "timeout_s",  # wall-clock limit per job
    "work_dir",  # where per-job work dirs are made; default: the system temp dir
    "keep_work",  # keep the per-job work dir after a successful job (it is always kept after a failure)
    "defaults",  # overrides of the adapter's DEFAULTS (steps, guidance_scale, windows, ...)
    "config_key",  # the config path these options come from, for error messages; default models.<name>
)
DEFAULT_TIMEOUT_S = 4 * 3600.0


def _optional_path(value: Any, key: str) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | os.PathLike):
        raise UpstreamConfigError(f"{key} must be a path, got {type(value).__name__} {value!r}")
    # absolute now: the command runs with cwd = the checkout, where a relative path would mean another file
    return Path(value).expanduser().absolute()


def _string_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UpstreamConfigError(f"{key} must be a mapping, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise UpstreamConfigError(f"{key} must be a list of strings (one per argument), got {value!r}")
    return tuple(str(v) for v in value)


def _positive_float(value: Any, key: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise UpstreamConfigError(f"{key} must be a positive number of seconds, got {value!r}")
    return number


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the upstream code and its env are, as given under ``models.<name>`` in the config."""

    model: str
    checkout: Path | None
    python: Path | None = None
    conda_env: str | None = None
    conda: str = "conda"
    weights: Mapping[str, str] | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    work_dir: Path | None = None
    keep_work: bool = False
    defaults: Mapping[str, Any] | None = None
    config_key: str = ""

    @classmethod
    def from_options(cls, model: str, options: Mapping[str, Any]) -> UpstreamConfig:
        """Parse the generator options (the ``models.<name>`` mapping); types only, no file checks."""
        prefix = str(options.get("config_key") or f"models.{model}")
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise UpstreamConfigError(
                f"unknown option(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; "
                f"the keys of {prefix} are: {', '.join(OPTION_KEYS)}"
            )
        defaults = options.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise UpstreamConfigError(f"{prefix}.defaults must be a mapping, got {type(defaults).__name__}")
        conda_env = options.get("conda_env")
        return cls(
            model=model,
            checkout=_optional_path(options.get("checkout"), f"{prefix}.checkout"),
            python=_optional_path(options.get("python"), f"{prefix}.python"),
            conda_env=None if conda_env in (None, "") else str(conda_env),
            conda=str(options.get("conda") or "conda"),
            weights=_string_map(options.get("weights"), f"{prefix}.weights"),
            extra_args=_string_list(options.get("extra_args"), f"{prefix}.extra_args"),
            env=_string_map(options.get("env"), f"{prefix}.env"),
            timeout_s=_positive_float(options.get("timeout_s"), f"{prefix}.timeout_s", DEFAULT_TIMEOUT_S),
            work_dir=_optional_path(options.get("work_dir"), f"{prefix}.work_dir"),
            keep_work=bool(options.get("keep_work", False)),
            defaults=dict(defaults),
            config_key=prefix,
        )

    def key(self, name: str) -> str:
        return f"{self.config_key or 'models.' + self.model}.{name}"

    # -- validation ------------------------------------------------------------------------------

    def validate(self, entry_files: Sequence[str], upstream: str) -> None:
        """Check the checkout (with its entry files) and the interpreter; raise naming key and path."""
        self.check_checkout(entry_files, upstream)
        self.check_interpreter(upstream)

    def check_checkout(self, entry_files: Sequence[str], upstream: str) -> Path:
        key = self.key("checkout")
        if self.checkout is None:
            raise UpstreamConfigError(f"{key} is not set; point it to a checkout of {upstream}")
        checkout = self.checkout.resolve()
        if not checkout.is_dir():
            raise UpstreamConfigError(
                f"{key} = {self.checkout}: no such directory (expected a checkout of {upstream})"
            )
        missing = [name for name in entry_files if not (checkout / name).exists()]
        if missing:
            raise UpstreamConfigError(
                f"{key} = {self.checkout} is not a checkout of {upstream}: missing {', '.join(missing)}"
            )
        return checkout

    def check_interpreter(self, upstream: str) -> None:
        if self.python is not None and self.conda_env is not None:
            raise UpstreamConfigError(f"set only one of {self.key('python')} and {self.key('conda_env')}")
        if self.python is None and self.conda_env is None:
            raise UpstreamConfigError(
                f"{self.key('python')} (the python executable of the env that runs {upstream}) "
                f"or {self.key('conda_env')} must be set"
            )
        if self.python is not None:
            if not self.python.is_file():
                raise UpstreamConfigError(f"{self.key('python')} = {self.python}: no such file")
            if not os.access(self.python, os.X_OK):
                raise UpstreamConfigError(f"{self.key('python')} = {self.python}: not executable")
            return
        self._check_conda_env()

    def _conda_executable(self) -> str:
        found = shutil.which(self.conda)
        if found is None:
            raise UpstreamConfigError(
                f"{self.key('conda')} = {self.conda}: no such executable (needed for conda_env)"
            )
        return found

    def _check_conda_env(self) -> None:
        conda = self._conda_executable()
        env = str(self.conda_env)
        if os.sep in env or env.startswith("."):
            if not Path(env).expanduser().is_dir():
                raise UpstreamConfigError(f"{self.key('conda_env')} = {env}: no such env directory")
            return
        try:
            listing = subprocess.run(
                [conda, "env", "list", "--json"], capture_output=True, text=True, timeout=120, check=True
            )
            prefixes = json.loads(listing.stdout).get("envs", [])
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            raise UpstreamConfigError(
                f"{self.key('conda')} = {self.conda}: cannot list conda envs ({err})"
            ) from err
        names = {Path(p).name for p in prefixes} | {"base"}
        if env not in names:
            raise UpstreamConfigError(
                f"{self.key('conda_env')} = {env}: no such conda env (found: {', '.join(sorted(names))})"
            )

    def interpreter(self) -> list[str]:
        """The command prefix that starts upstream's Python."""
        if self.python is not None:
            return [str(self.python)]
        env = str(self.conda_env)
        flag = "-p" if os.sep in env or env.startswith(".") else "-n"
        return [self.conda, "run", "--no-capture-output", flag, env, "python"]

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from the config or an upstream config file: relative ones are relative to the checkout."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else Path(str(self.checkout)) / path


# ---------------------------------------------------------------------------------------------
# Parameters: DEFAULTS, config overrides, per-job overrides

# Keys with a numeric meaning shared by the adapters, checked wherever they occur.
_POSITIVE_INT = (
    "steps", "window", "frame_interval", "size", "width", "height", "detect_resolution", "save_fps",
)  # fmt: skip
_OPTIONAL_POSITIVE_INT = ("max_frames",)
_POSITIVE_FLOAT = ("guidance_scale",)
_OPTIONAL_POSITIVE_FLOAT = ("fps",)
REFERENCE_PADS = ("edge", "black")


def _check_param(key: str, value: Any, where: str, error: type[Exception]) -> None:
    def bad(kind: str) -> Exception:
        return error(f"{where}.{key} must be {kind}, got {value!r}")

    if value is None and key in _OPTIONAL_POSITIVE_INT + _OPTIONAL_POSITIVE_FLOAT:
        return
    if key in _POSITIVE_INT + _OPTIONAL_POSITIVE_INT:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise bad("a positive integer")
    elif key in _POSITIVE_FLOAT + _OPTIONAL_POSITIVE_FLOAT:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value > 0)
        ):
            raise bad("a positive number")
    elif key == "reference_pad" and value not in REFERENCE_PADS:
        raise bad(f"one of {REFERENCE_PADS}")


def merge_params(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    *,
    where: str,
    fixed: Mapping[str, str] | None = None,
    error: type[Exception] = GenerationError,
) -> dict[str, Any]:
    """``base`` updated with ``overrides``; unknown keys, hard-coded upstream values and bad types raise.

    ``fixed`` maps keys upstream hard-codes (no CLI/config to change them) to the reason; overriding
    those with a different value raises instead of being silently ignored. The seed always comes from
    :attr:`GenerationJob.seed`, so ``seed`` cannot be overridden here.
    """
    overrides = dict(overrides or {})
    fixed = fixed or {}
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise error(
            f"{where}: unknown parameter(s) {unknown}; allowed: {sorted(k for k in base if k != 'seed')}"
        )
    if "seed" in overrides:
        raise error(f"{where}.seed: the seed comes from the job (GenerationJob.seed), not from parameters")
    for key, reason in fixed.items():
        if key in overrides and overrides[key] != base[key]:
            raise error(f"{where}.{key} = {overrides[key]!r} cannot be applied: {reason}")
    merged = {**base, **overrides}
    for key, value in merged.items():
        _check_param(key, value, where, error)
    return merged


# ---------------------------------------------------------------------------------------------
# Geometry: padding to the model's aspect ratio instead of squashing


def aspect_padding(height: int, width: int, target_h: int, target_w: int) -> Padding:
    """Padding that brings a ``height`` x ``width`` frame to the ``target_w : target_h`` aspect.

    Only one axis is padded (columns for a frame taller than the target, rows for a wider one); the
    frame is centred, an odd remainder going to the bottom/right, as :func:`pipeline.perception.guidance.square_padding`.
    """
    if min(height, width, target_h, target_w) < 1:
        raise ValueError(
            f"aspect_padding: sizes must be positive, got {height}x{width} -> {target_h}x{target_w}"
        )
    if width * target_h < height * target_w:  # too narrow: pad left/right
        new_w = max(width, round(height * target_w / target_h))
        left = (new_w - width) // 2
        return Padding(0, 0, left, new_w - width - left, height, width)
    new_h = max(height, round(width * target_h / target_w))
    top = (new_h - height) // 2
    return Padding(top, new_h - height - top, 0, 0, height, width)


def pad_image(image: np.ndarray, padding: Padding, fill: str = "edge") -> np.ndarray:
    """Apply ``padding`` to ``image`` ``[H, W, C]``: ``"edge"`` repeats the border, ``"black"`` fills 0."""
    if image.shape[:2] != (padding.height, padding.width):
        raise ValueError(
            f"pad_image: image is {image.shape[:2]}, padding is for {padding.height}x{padding.width}"
        )
    widths = [(padding.top, padding.bottom), (padding.left, padding.right)] + [(0, 0)] * (image.ndim - 2)
    if fill == "edge":
        return np.pad(image, widths, mode="edge")
    if fill == "black":
        return np.pad(image, widths, mode="constant")
    raise ValueError(f"pad_image: fill must be one of {REFERENCE_PADS}, got {fill!r}")


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``[H, W, C]`` to ``height`` x ``width`` (area when shrinking, bilinear when enlarging)."""
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    shrink = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_image(image: np.ndarray, height: int, width: int, fill: str = "edge") -> tuple[np.ndarray, Padding]:
    """Pad ``image`` to the ``width : height`` aspect, then resize it to exactly ``height`` x ``width``.

    Upstream resizes the reference straight to its canvas, which stretches a tall gait frame; giving
    it an image of exactly its canvas size makes that resize a no-op.
    """
    padding = aspect_padding(image.shape[0], image.shape[1], height, width)
    return resize_image(pad_image(image, padding, fill), height, width), padding


def shift_keypoints(keypoints: np.ndarray, padding: Padding) -> np.ndarray:
    """Pixel keypoints ``[..., 3]`` (x, y, score) of the unpadded frame → coordinates in the padded frame."""
    shifted = np.array(keypoints, dtype=np.float64, copy=True)
    shifted[..., 0] += padding.left
    shifted[..., 1] += padding.top
    return shifted


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (png/jpg by suffix); OpenCV wants BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise GenerationError(f"cannot write {path}")
    return path


@dataclass(frozen=True)
class GridLayout:
    """A comparison grid: ``panels`` equal panels in one row, ``gap`` pixels between them and
    ``border`` pixels around (torchvision's ``make_grid`` pads 2 both ways; MTVCrafter 2 between).

    ``macro_block``: the writer may have scaled the whole grid up to a multiple of this (imageio's
    ffmpeg writer does so with 16 when a side is not divisible), which :meth:`crop` undoes.
    """

    panels: int
    panel_hw: tuple[int, int]
    gap: int = 0
    border: int = 0
    macro_block: int = 1

    @property
    def size_hw(self) -> tuple[int, int]:
        height, width = self.panel_hw
        return height + 2 * self.border, self.panels * width + (self.panels - 1) * self.gap + 2 * self.border

    def _block_size(self) -> tuple[int, int]:
        block = max(1, self.macro_block)
        return tuple(int(math.ceil(s / block) * block) for s in self.size_hw)  # type: ignore[return-value]

    def crop(self, frames: np.ndarray, index: int, *, source: str = "grid") -> np.ndarray:
        """Panel ``index`` (0-based, left to right) of grid frames ``[T, H, W, 3]`` → ``[T, h, w, 3]``."""
        if not 0 <= index < self.panels:
            raise ValueError(f"panel index {index} outside 0..{self.panels - 1}")
        frames = np.asarray(frames)
        have = tuple(frames.shape[1:3])
        if have != self.size_hw:
            if have != self._block_size():
                raise GenerationError(
                    f"{source}: frames are {have[0]}x{have[1]} (HxW); a {self.panels}-panel grid of "
                    f"{self.panel_hw[0]}x{self.panel_hw[1]} panels is {self.size_hw[0]}x{self.size_hw[1]}"
                )
            # the writer scaled the grid up to whole macro blocks: scale it back before cutting
            frames = np.stack([resize_image(f, *self.size_hw) for f in frames])
        height, width = self.panel_hw
        x0 = self.border + index * (width + self.gap)
        return np.ascontiguousarray(frames[:, self.border : self.border + height, x0 : x0 + width])


# ---------------------------------------------------------------------------------------------
# Time: model timeline, windows, resampling back to the driving frames


@dataclass(frozen=True)
class Timeline:
    """The frames a model generates, each tied to a position on the driving sequence.

    ``positions`` ``[n]``: driving-frame coordinate (float) of generated frame j; ``sources`` ``[n]``:
    the driving frame whose guidance drives it (nearest); ``fps``: the model-side frame rate.
    """

    positions: np.ndarray
    sources: np.ndarray
    fps: float

    @property
    def count(self) -> int:
        return len(self.positions)


def resampled_timeline(frame_count: int, driving_fps: float, model_fps: float | None) -> Timeline:
    """The model's frames at ``model_fps`` over the driving duration (``None``: the driving's own rate).

    Frame j sits at driving time ``j / model_fps``; its guidance is the nearest driving frame. The
    last model frame is the last one not past the final driving frame.
    """
    if model_fps is None or math.isclose(model_fps, driving_fps, rel_tol=1e-6):
        positions = np.arange(frame_count, dtype=np.float64)
        return Timeline(positions, np.arange(frame_count), float(driving_fps))
    step = driving_fps / model_fps  # driving frames per model frame
    count = int(math.floor((frame_count - 1) / step + 1e-9)) + 1
    positions = np.arange(count, dtype=np.float64) * step
    sources = np.clip(np.floor(positions + 0.5), 0, frame_count - 1).astype(np.int64)
    return Timeline(positions, sources, float(model_fps))


def strided_timeline(frame_count: int, stride: int, driving_fps: float) -> Timeline:
    """Every ``stride``-th driving frame (UniAnimate's ``frame_interval``)."""
    sources = np.arange(0, frame_count, stride, dtype=np.int64)
    return Timeline(sources.astype(np.float64), sources, float(driving_fps) / stride)


@dataclass(frozen=True)
class Window:
    """``length`` consecutive model frames from ``start``; slots past the end repeat the last frame."""

    start: int
    length: int

    def slots(self, count: int) -> np.ndarray:
        return np.minimum(self.start + np.arange(self.length), count - 1)


def plan_windows(count: int, length: int | None, *, fixed: bool) -> list[Window]:
    """Cover ``count`` model frames with windows of ``length`` (``None``: one window of everything).

    Windows follow each other without overlap; the last one is moved back to end on the last frame
    (so it never holds made-up frames). With ``fixed`` (upstream needs exactly ``length`` frames) a
    sequence shorter than ``length`` gets one window whose extra slots repeat the last frame
    (edge padding, as MagicAnimate pads its control frames); the extra outputs are dropped.
    """
    if count < 1:
        raise ValueError("plan_windows: nothing to cover")
    if length is None or count <= length:
        return [Window(0, length if fixed and length is not None else count)]
    starts = list(range(0, count - length + 1, length))
    if starts[-1] + length < count:
        starts.append(count - length)
    return [Window(s, length) for s in starts]


def stitch_windows(
    outputs: Sequence[np.ndarray], windows: Sequence[Window], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per model frame, the output of the first window covering it → ``[count, H, W, 3]`` and the owner ``[count]``."""
    first = np.asarray(outputs[0])
    stitched = np.empty((count, *first.shape[1:]), dtype=first.dtype)
    owner = np.full(count, -1, dtype=np.int64)
    for w, (window, frames) in enumerate(zip(windows, outputs, strict=True)):
        for offset in range(window.length):
            j = window.start + offset
            if j < count and owner[j] < 0:
                stitched[j] = frames[offset]
                owner[j] = w
    if (owner < 0).any():
        raise GenerationError(
            f"windows leave model frames {np.flatnonzero(owner < 0)[:10].tolist()} uncovered"
        )
    return stitched, owner


def nearest_model_frames(positions: np.ndarray, frame_count: int) -> np.ndarray:
    """For every driving frame 0..T-1 the model frame closest in time (ties go to the earlier frame)."""
    distance = np.abs(np.asarray(positions, dtype=np.float64)[None, :] - np.arange(frame_count)[:, None])
    return distance.argmin(axis=1)  # argmin returns the first minimum, i.e. the earlier frame


def ingest(
    frames: np.ndarray, timeline: Timeline, padding: Padding, frame_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Model-frame video ``[n, h, w, 3]`` → driving-aligned ``[T, H, W, 3]``: undo padding, then resample.

    Returns the frames and, per driving frame, the model frame used (for the notes).
    """
    if len(frames) != timeline.count:
        raise GenerationError(f"got {len(frames)} generated frames for a timeline of {timeline.count}")
    cropped = unpad(frames, padding)
    chosen = nearest_model_frames(timeline.positions, frame_count)
    return np.ascontiguousarray(cropped[chosen]), chosen


# ---------------------------------------------------------------------------------------------
# Running the upstream command

TAIL_LINES = 40
TAIL_CHARS = 4000


def tail(path: Path, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of a log file; "" when there is none."""
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 16 * chars))
        text = handle.read().decode(errors="replace")
    # progress bars rewrite one line with carriage returns; keep only what was shown last
    shown = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(shown[-lines:])[-chars:]


@dataclass(frozen=True)
class RunResult:
    command: list[str]
    seconds: float
    stdout_tail: str
    stderr_tail: str


def _stop_group(process: subprocess.Popen) -> None:
    """Terminate the process group we started (start_new_session), then kill what is left."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_upstream(config: UpstreamConfig, args: Sequence[str], work_dir: Path) -> RunResult:
    """Run ``<interpreter> args... extra_args...`` in the checkout; logs go to ``work_dir/logs``.

    Raises :class:`UpstreamRunError` (command, exit code, stderr tail) on a non-zero exit or timeout.
    PYTHONPATH is set to the checkout (unless ``env`` sets it), so the project's own packages never
    shadow upstream modules.
    """
    command = [*config.interpreter(), *map(str, args), *config.extra_args]
    env = {**os.environ, "PYTHONPATH": str(config.checkout), "PYTHONUNBUFFERED": "1", **(config.env or {})}
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "command.txt").write_text(shlex.join(command) + "\n")
    stdout_path, stderr_path = logs / "stdout.log", logs / "stderr.log"
    started = time.monotonic()
    timed_out = False
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            process = subprocess.Popen(
                command, cwd=config.checkout, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as error:
            raise UpstreamRunError(
                f"{config.model}: cannot start {command[0]} ({error})", command=command, work_dir=work_dir
            ) from error
        try:
            returncode = process.wait(timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(process)
            returncode = process.returncode
        except BaseException:
            _stop_group(process)
            raise
    result = RunResult(command, time.monotonic() - started, tail(stdout_path), tail(stderr_path))
    if timed_out or returncode != 0:
        what = (
            f"timed out after {config.timeout_s:g} s ({config.key('timeout_s')})"
            if timed_out
            else f"exited with code {returncode}"
        )
        raise UpstreamRunError(
            f"{config.model}: upstream command {what}: {shlex.join(command)}\n"
            f"work dir: {work_dir}\n--- stderr tail ---\n{result.stderr_tail or '(empty)'}",
            command=command, returncode=returncode, stderr_tail=result.stderr_tail,
            stdout_tail=result.stdout_tail, work_dir=work_dir,
        )  # fmt: skip
    return result


def find_one(folder: Path, pattern: str, what: str, work_dir: Path) -> Path:
    """The single file matching ``pattern`` under ``folder``, else a :class:`GenerationError` saying what is there."""
    matches = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    present = (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())[:20]
        if folder.is_dir()
        else []
    )
    problem = "no file" if not matches else f"{len(matches)} files"
    raise GenerationError(
        f"{what}: {problem} matching {folder / pattern} in the upstream output layout "
        f"(present: {present or 'nothing'}; work dir {work_dir})"
    )


def read_output(path: Path, expected_frames: int) -> np.ndarray:
    """Decode an upstream output video; its frame count must be what upstream was asked for."""
    try:
        frames = read_frames(path)
    except VideoError as err:
        raise GenerationError(f"cannot read upstream output {path}: {err}") from err
    if len(frames) != expected_frames:
        raise GenerationError(f"upstream output {path} has {len(frames)} frames, expected {expected_frames}")
    return frames


# ---------------------------------------------------------------------------------------------
# Upstream config files (YAML) taken from the checkout and overridden per job


def load_upstream_yaml(config: UpstreamConfig, relative: str) -> dict[str, Any]:
    path = config.resolve(relative)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UpstreamConfigError(
            f"{config.key('checkout')}: cannot read upstream config {path} ({err})"
        ) from err
    if not isinstance(data, dict):
        raise UpstreamConfigError(f"{config.key('checkout')}: upstream config {path} is not a mapping")
    return data


def _dotted_parent(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str] | None:
    *parents, leaf = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node, leaf) if isinstance(node, dict) and leaf in node else None


def apply_weights(config: UpstreamConfig, data: dict[str, Any], source: str) -> dict[str, Any]:
    """Override upstream config keys (dotted for nesting) with ``models.<name>.weights``; keys must exist."""
    for dotted, value in (config.weights or {}).items():
        found = _dotted_parent(data, dotted)
        if found is None:
            raise UpstreamConfigError(
                f"{config.key('weights.' + dotted)}: the upstream config {source} has no key {dotted!r}"
            )
        node, leaf = found
        node[leaf] = str(config.resolve(value))
    return data


def check_weight_paths(
    config: UpstreamConfig, data: dict[str, Any], keys: Sequence[str], source: str
) -> None:
    """Every weight path named by ``keys`` in the (overridden) upstream config must exist."""
    for dotted in keys:
        found = _dotted_parent(data, dotted)
        if found is None:
            continue
        node, leaf = found
        value = node[leaf]
        if value in (None, ""):
            continue  # optional weights upstream leaves empty (e.g. MagicAnimate's pretrained_unet_path)
        path = config.resolve(str(value))
        if not path.exists():
            raise UpstreamConfigError(
                f"not found: {path}, named by {dotted} in the checkout's {source} "
                f"(point {config.key('weights.' + dotted)} to the file, or fix the checkout)"
            )


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None))
    return path


# ---------------------------------------------------------------------------------------------
# The adapter base class


def _safe_name(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "job"


@dataclass(frozen=True)
class UpstreamSpec:
    """What an adapter knows of its upstream, declared once per adapter module.

    ``entry_files``: files a checkout must have; ``defaults``: upstream's own parameter defaults;
    ``fixed``: parameters upstream hard-codes → why they cannot change; ``prompt_config`` and
    ``weight_keys``: the upstream config file whose weight paths are checked before any job;
    ``resources``: the GPU memory and runtime reported for it."""

    name: str  # the generator name it registers under (``models.<name>.generator``)
    needs: tuple[str, ...]  # what it needs of the driving sequence (Driving fields)
    repo: str
    commit: str
    entry_files: tuple[str, ...]
    defaults: Mapping[str, Any]
    resources: Mapping[str, Any]
    fixed: Mapping[str, str] = dataclass_field(default_factory=dict)
    prompt_config: str | None = None
    weight_keys: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``owner/repo @ commit``, for messages and notes."""
        return f"{self.repo} @ {self.commit}"


class UpstreamGenerator:
    """Base of the four adapters: config parsing and validation, per-job work dirs, parameters.

    A subclass is declared as ``class X(UpstreamGenerator, spec=SPEC)`` with an :class:`UpstreamSpec`
    and implements :meth:`_generate`; the class attributes below come from the spec, and the class is
    registered under ``spec.name``.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]
    SPEC: ClassVar[UpstreamSpec]
    UPSTREAM: ClassVar[str]  # "owner/repo @ commit", for messages and notes
    ENTRY_FILES: ClassVar[tuple[str, ...]]  # files a checkout must have
    DEFAULTS: ClassVar[Mapping[str, Any]]
    FIXED: ClassVar[Mapping[str, str]] = {}  # parameters upstream hard-codes → why they cannot change
    # Adapters whose weight paths live in a fixed upstream config file name it in the spec; the base
    # class then checks every path before any job runs.
    PROMPT_CONFIG: ClassVar[str | None] = None
    WEIGHT_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, spec: UpstreamSpec | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if spec is not None:
            cls.SPEC, cls.name, cls.needs = spec, spec.name, spec.needs
            register_generator(spec.name)(cls)
            cls.UPSTREAM, cls.ENTRY_FILES, cls.DEFAULTS = spec.label, spec.entry_files, spec.defaults
            cls.FIXED, cls.PROMPT_CONFIG, cls.WEIGHT_KEYS = spec.fixed, spec.prompt_config, spec.weight_keys

    def __init__(self, **options: Any) -> None:
        self.config = UpstreamConfig.from_options(self.name, options)
        self.defaults = merge_params(
            self.DEFAULTS, self.config.defaults, where=self.config.key("defaults"), fixed=self.FIXED,
            error=UpstreamConfigError,
        )  # fmt: skip
        self._loaded = False

    def load(self) -> None:
        """Check checkout, entry files, interpreter and weights; nothing is started."""
        self.config.validate(self.ENTRY_FILES, self.UPSTREAM)
        self._check_weights()
        self._loaded = True

    def _check_weights(self) -> None:
        """Check the weight paths of ``PROMPT_CONFIG`` (with the user's overrides applied)."""
        if self.PROMPT_CONFIG is None:
            return
        data = apply_weights(
            self.config, load_upstream_yaml(self.config, self.PROMPT_CONFIG), self.PROMPT_CONFIG
        )
        check_weight_paths(self.config, data, self.WEIGHT_KEYS, self.PROMPT_CONFIG)

    def close(self) -> None:
        self._loaded = False

    def params_for(self, job: GenerationJob) -> dict[str, Any]:
        params = merge_params(self.defaults, job.params, where=f"job {job.job_id} params", fixed=self.FIXED)
        params["seed"] = int(self.DEFAULTS["seed"]) if "seed" in self.FIXED else int(job.seed)
        return params

    def _work_dir(self, job: GenerationJob) -> Path:
        base = self.config.work_dir or Path(tempfile.gettempdir()) / "gaitfid-upstream"
        work = base / f"{self.name}-{_safe_name(job.job_id)}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True, exist_ok=False)
        return work

    def generate(self, job: GenerationJob) -> GeneratedVideo:
        if not self._loaded:
            self.load()
        check_reference(job.reference)
        check_driving(job.driving)
        params = self.params_for(job)
        work = self._work_dir(job)
        try:
            video = self._generate(job, params, work)
        except BaseException:
            # keep what upstream left for debugging; a failure before the run leaves nothing useful
            if not self.config.keep_work and not (work / "logs").exists():
                shutil.rmtree(work, ignore_errors=True)
            raise
        video.notes["work_dir"] = str(work) if self.config.keep_work else None
        if not self.config.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        return video

    def _generate(self, job: GenerationJob, params: dict[str, Any], work: Path) -> GeneratedVideo:
        raise NotImplementedError

    def base_notes(self, params: Mapping[str, Any], job: GenerationJob, result: RunResult) -> dict[str, Any]:
        notes: dict[str, Any] = {
            "model": self.name,
            "upstream": self.UPSTREAM,
            "command": shlex.join(result.command),
            "runtime_s": round(result.seconds, 3),
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        }
        if "seed" in self.FIXED and int(job.seed) != int(params["seed"]):
            notes["seed_requested"] = int(job.seed)  # upstream hard-codes its seed; the job's was not applied
        return notes


def timing_notes(
    timeline: Timeline, windows: Sequence[Window], chosen: np.ndarray, driving_fps: float
) -> dict[str, Any]:
    return {
        "model_fps": timeline.fps,
        "generated_frames": timeline.count,
        "windows": [[w.start, w.length] for w in windows],
        "resampling": "nearest generated frame in time (ties to the earlier)",
        "driving_frames": len(chosen),
        "fps": float(driving_fps),
        "model_frame_per_driving_frame": chosen.tolist(),
    }


def padding_notes(**paddings: Padding) -> dict[str, Any]:
    return {name: asdict(p) for name, p in paddings.items()}


__all__ = [
    "OPTION_KEYS",
    "GridLayout",
    "RunResult",
    "Timeline",
    "UpstreamConfig",
    "UpstreamConfigError",
    "UpstreamGenerator",
    "UpstreamRunError",
    "UpstreamSpec",
    "Window",
    "apply_weights",
    "aspect_padding",
    "check_weight_paths",
    "find_one",
    "fit_image",
    "ingest",
    "load_upstream_yaml",
    "merge_params",
    "nearest_model_frames",
    "pad_image",
    "padding_notes",
    "plan_windows",
    "read_output",
    "resampled_timeline",
    "resize_image",
    "run_upstream",
    "shift_keypoints",
    "stitch_windows",
    "strided_timeline",
    "tail",
    "timing_notes",
    "write_image",
    "write_yaml",
]
