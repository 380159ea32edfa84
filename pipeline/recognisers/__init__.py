"""OpenGait-compatible gait recognisers (DeepGaitV2, SkeletonGait, SkeletonGait++, BigGait).

Use :func:`build_recogniser` for a model, :func:`load_opengait_checkpoint` / :func:`save_checkpoint` for
weights in OpenGait's checkpoint format, :func:`load_dinov2` for BigGait's pretrained ViT.
"""

from pipeline.recognisers.checkpoints import (
    CheckpointError,
    CheckpointInfo,
    load_dinov2,
    load_opengait_checkpoint,
    save_checkpoint,
)
from pipeline.recognisers.models import (
    MODALITIES,
    RECOGNISERS,
    BigGait,
    DeepGaitV2,
    Recogniser,
    RecogniserOutput,
    SkeletonGait,
    SkeletonGaitPP,
    build_recogniser,
    random_dinov2,
    scaled_channels,
)

__all__ = [
    "MODALITIES",
    "RECOGNISERS",
    "BigGait",
    "CheckpointError",
    "CheckpointInfo",
    "DeepGaitV2",
    "Recogniser",
    "RecogniserOutput",
    "SkeletonGait",
    "SkeletonGaitPP",
    "build_recogniser",
    "load_dinov2",
    "load_opengait_checkpoint",
    "random_dinov2",
    "save_checkpoint",
    "scaled_channels",
]
