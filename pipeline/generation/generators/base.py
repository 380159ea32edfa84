"""The generator interface: reference image + driving guidance + params + seed → frames.

A generator is loaded once per shard (``load``), then called for every job of the shard
(``generate``), then closed. Built-in CPU generators and the adapters for the upstream animators
(MagicAnimate, Moore-AnimateAnyone, UniAnimate, MTVCrafter) implement the same protocol and are
found by name in :data:`REGISTRY` (see :mod:`pipeline.generation.generators`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Reference:
    """The appearance source: one RGB frame with what perception found in it."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    mask: np.ndarray | None = None  # [H, W] bool person mask
    keypoints: np.ndarray | None = None  # [17, 3] COCO-17 (x, y, confidence), pixels of `image`
    parts: np.ndarray | None = None  # [H, W, 3] uint8 IUV (DensePose-like), when known
    sequence_id: str = ""
    frame_index: int = 0


@dataclass
class Driving:
    """The motion source: guidance of the driving sequence, frame-aligned, in its own pixel frame."""

    keypoints: np.ndarray  # [T, 17, 3] COCO-17 (x, y, confidence)
    height: int
    width: int
    fps: float
    valid: np.ndarray | None = None  # [T] bool, frames usable as guidance
    parts: np.ndarray | None = None  # [T, H, W, 3] uint8 IUV, when available (world ground truth)
    smpl_mm: np.ndarray | None = None  # [T, 24, 3] SMPL-24 joints, camera space, millimetres
    frames: np.ndarray | None = None  # [T, H, W, 3] the driving RGB itself (only the oracle may use it)
    masks: np.ndarray | None = None  # [T, H, W] bool person masks of the driving video
    sequence_id: str = ""

    @property
    def frame_count(self) -> int:
        return len(self.keypoints)


@dataclass
class GenerationJob:
    job_id: str
    reference: Reference
    driving: Driving
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)
    # The sweep's view of the job, for generators conditioned on labels rather than on images
    # (GaitCrafter): ``plan`` = the sweep_plan row (task, scenario, driving/reference subject, ...),
    # ``driving_row`` = the driving sequence's manifest row (view, condition, attributes).
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedVideo:
    """Frames aligned with the driving sequence: same count, size and fps unless ``notes`` say otherwise."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    fps: float
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. resampling, padding undone, upstream command


class GenerationError(RuntimeError):
    """A job failed in a way the generator can explain (bad input, upstream crash with stderr tail)."""


# What a generator's video shows. "rgb": a rendered person (every perception stage applies);
# "silhouette": a white-on-black person mask (GaitCrafter): the workflow derives masks from the video
# itself, estimates no pose, skips RGB crops and RGB metrics, and says so (see docs/architecture.md).
OUTPUT_KINDS = ("rgb", "silhouette")


def output_of(generator: object) -> str:
    """``generator.output`` (a class or an instance), ``rgb`` when it does not say."""
    kind = getattr(generator, "output", "rgb")
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"generator output must be one of {OUTPUT_KINDS}, got {kind!r}")
    return kind


@runtime_checkable
class Generator(Protocol):
    """Optional class attributes: ``output`` (:data:`OUTPUT_KINDS`, default ``rgb``) and
    ``uses_reference`` (default True; False = the generation stage passes a label-only reference, no
    image, e.g. for GaitCrafter, which is conditioned on an identity label)."""

    name: str
    needs: tuple[str, ...]  # guidance the generator consumes: "keypoints", "parts", "smpl", "frames", "masks"

    def load(self) -> None: ...

    def generate(self, job: GenerationJob) -> GeneratedVideo: ...

    def close(self) -> None: ...


REGISTRY: dict[str, Callable[..., Generator]] = {}


def register_generator(name: str) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    def decorate(factory: Callable[..., Generator]) -> Callable[..., Generator]:
        if name in REGISTRY:
            raise ValueError(f"generator '{name}' is already registered")
        REGISTRY[name] = factory
        return factory

    return decorate


def make_generator(name: str, **options: Any) -> Generator:
    if name not in REGISTRY:
        raise ValueError(f"unknown generator '{name}'; registered: {sorted(REGISTRY)}")
    return REGISTRY[name](**options)
