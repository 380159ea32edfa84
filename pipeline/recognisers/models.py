"""The four OpenGait recognisers behind one interface: DeepGaitV2, SkeletonGait, SkeletonGait++, BigGait.

Each model keeps OpenGait's module tree, so ``state_dict()`` has exactly the keys of an official
checkpoint (``layer0.forward_block.0.weight``, ``FCs.fc_bin``, ``BNNecks.bn1d.*``, BigGait's
``backbone.*``/``gait_net.*`` …) and :func:`pipeline.recognisers.checkpoints.load_opengait_checkpoint`
loads one with ``strict=True``. What differs from OpenGait is the calling convention:

``forward(inputs [n, s, c, h, w], seq_lengths=None)`` → :class:`RecogniserOutput`
(``embed_1`` [n, embed_dim, p], ``embed_2`` [n, embed_dim, p], ``logits`` [n, class_num, p] and, for
BigGait in training mode, its extra losses in ``aux_losses``). Silhouettes and skeleton maps arrive
cut to 64×44 with values in [0, 1] (OpenGait's ``BaseSilCuttingTransform``); BigGait takes
ImageNet-normalised RGB plus the per-frame width/height ``ratios`` [n, s].

Widths: ``channels`` (or ``width`` in :func:`build_recogniser`) scales the four residual stages;
``width=1`` gives OpenGait's [64, 128, 256, 512], ``width=0.25`` [16, 32, 64, 128] for CPU training.
The embedding size (256) and part count (16) stay independent of the width.

Only DeepGaitV2's P3D mode is built (the SUSTech1K configuration, and the one SkeletonGait(++) use);
OpenGait's "2d"/"3d" DeepGaitV2 variants and the stand-alone GaitBase are not.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.recognisers.modules import (
    AttentionFusion,
    DINOv2Backbone,
    HorizontalPoolingPyramid,
    InfoDistillation,
    PackSequenceWrapper,
    PostResNet9,
    PreResNet9,
    SeparateBNNecks,
    SeparateFCs,
    SetBlockWrapper,
    check_seq_lengths,
    conv3x3,
    init_opengait_parameters,
    make_basic_layer,
    make_p3d_layer,
)

BASE_CHANNELS: tuple[int, int, int, int] = (64, 128, 256, 512)
MODALITIES = ("silhouette", "skeleton_map", "silhouette+skeleton_map", "rgb")
RECOGNISERS = ("deepgaitv2", "skeletongait", "skeletongait++", "biggait")
# Silhouettes and skeleton maps are uint8 / 255.
UNIT_RANGE = (0.0, 1.0)
# ImageNet-normalised RGB lies in [(0 - 0.485) / 0.229, (1 - 0.406) / 0.225] = [-2.118, 2.640].
NORMALISED_RGB_RANGE = (-2.2, 2.7)
RANGE_TOLERANCE = 1e-3

# The Dinov2Config fields a BigGait backbone may set (Dinov2Config silently accepts any keyword,
# so a typo would otherwise build a different ViT without a word).
DINOV2_CONFIG_KEYS = frozenset(
    {"hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size", "mlp_ratio",
     "layerscale_value", "layer_norm_eps", "qkv_bias", "drop_path_rate"}
)  # fmt: skip
# DINOv2 ViT-S/14 as in BigGait (``dinov2_vits14_pretrain.pth``: pos_embed for 518 px = 37×37 + 1).
DINOV2_VITS14: dict[str, object] = {
    "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "patch_size": 14,
    "image_size": 518, "mlp_ratio": 4, "layerscale_value": 1.0, "layer_norm_eps": 1e-6,
}  # fmt: skip
# The small randomly initialised ViT that the CPU world trains together with the rest of BigGait.
DINOV2_TINY: dict[str, object] = {**DINOV2_VITS14, "hidden_size": 96, "num_hidden_layers": 4,
                                  "num_attention_heads": 3, "image_size": 224}  # fmt: skip


@dataclass
class RecogniserOutput:
    """What every recogniser returns (n sequences, p parts)."""

    embed_1: Tensor  # [n, embed_dim, p]: SeparateFCs output; OpenGait's triplet loss and default feature
    embed_2: Tensor  # [n, embed_dim, p]: BNNeck feature, L2-normalised per part
    logits: Tensor  # [n, class_num, p]: cosine logits (scale them by 16 for the CE loss)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # BigGait, training only; already weighted


def scaled_channels(width: float, base: Sequence[int] = BASE_CHANNELS) -> tuple[int, ...]:
    """Stage widths for a width multiplier: ``round(c · width)`` per stage (0.25 → 16, 32, 64, 128)."""
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    channels = tuple(int(round(c * width)) for c in base)
    if min(channels) < 1:
        raise ValueError(f"width {width} leaves a stage without channels: {channels}")
    return channels


def _check_architecture(channels: Sequence[int], blocks: Sequence[int], embed_dim: int, parts: int) -> None:
    if len(channels) != 4 or min(channels) < 1:
        raise ValueError(f"channels must be four positive stage widths, got {tuple(channels)}")
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"blocks must be four positive block counts, got {tuple(blocks)}")
    if embed_dim < 1 or parts < 1:
        raise ValueError(f"embed_dim and parts must be positive, got {embed_dim} and {parts}")


def _strided_height(height: int, strides: int) -> int:
    """Height after ``strides`` 3×3 stride-2 convs with padding 1."""
    for _ in range(strides):
        height = (height - 1) // 2 + 1
    return height


def check_frames(
    inputs: Tensor, *, model: str, channels: int, value_range: tuple[float, float]
) -> tuple[int, int, int, int, int]:
    """Validate a frame batch [n, s, c, h, w] (shape, channels, finite values in range); return its shape."""
    if not isinstance(inputs, Tensor) or inputs.dim() != 5:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"{model} expects inputs [n, s, c, h, w], got {shape}")
    n, s, c, h, w = inputs.shape
    if c != channels:
        raise ValueError(f"{model} expects {channels} input channel(s) in dim 2 of [n, s, c, h, w], got {c}")
    if min(n, s, h, w) < 1:
        raise ValueError(f"{model} got an empty input of shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise ValueError(f"{model} expects floating-point inputs, got {inputs.dtype}")
    lo, hi = value_range
    low, high = float(inputs.min()), float(inputs.max())  # NaN propagates and fails the test below
    if not (low >= lo - RANGE_TOLERANCE and high <= hi + RANGE_TOLERANCE):
        raise ValueError(
            f"{model} expects values in [{lo}, {hi}] (silhouettes/maps: uint8 / 255; RGB: ImageNet-normalised), "
            f"got min {low} and max {high}"
        )
    return n, s, c, h, w


def part_embeddings(
    feature: Tensor,
    seq_lengths: Sequence[int] | None,
    tp: PackSequenceWrapper,
    hpp: HorizontalPoolingPyramid,
    fcs: SeparateFCs,
    bnnecks: SeparateBNNecks,
) -> tuple[Tensor, Tensor, Tensor]:
    """OpenGait's shared tail: [n, c, s, h, w] → TP max → HPP → FCs → BNNecks = (embed_1, embed_2, logits)."""
    pooled = tp(feature, seq_lengths, dim=2)  # [n', c, h, w]
    embed_1 = fcs(hpp(pooled))  # [n', embed_dim, p]
    embed_2, logits = bnnecks(embed_1)
    return embed_1, embed_2, logits


class Recogniser(nn.Module):
    """Base of the four recognisers: the shared interface, no parameters of its own.

    ``modality`` names the inputs: ``"silhouette"`` [n, s, 1, 64, 44], ``"skeleton_map"``
    [n, s, 2, 64, 44] (limb, joint), ``"silhouette+skeleton_map"`` [n, s, 3, 64, 44] (limb, joint,
    silhouette: OpenGait's concatenation order) or ``"rgb"`` (BigGait, [n, s, 3, H, W] plus ``ratios``).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    input_channels: ClassVar[int] = 1

    def __init__(self, *, class_num: int, embed_dim: int, parts: int, use_emb2: bool) -> None:
        super().__init__()
        if int(class_num) < 1:
            raise ValueError(f"class_num must be at least 1, got {class_num}")
        self.class_num = int(class_num)
        self.embed_dim = int(embed_dim)
        self.parts = int(parts)
        self.use_emb2 = bool(use_emb2)
        self.checkpoint_path: str | None = None

    def embedding(self, output: RecogniserOutput) -> Tensor:
        """The inference feature [n, embed_dim, p]: ``embed_1`` unless ``use_emb2``.

        OpenGait evaluates ``embed_1`` (the SeparateFCs output, before the BNNeck) by default, and its
        triplet loss trains that feature. For some official Hugging Face checkpoints this gives far
        lower accuracy than published (≈10 % on CCPG for SkeletonGait, 52 % on Gait3D for
        DeepGaitV2); the maintainers' answer in ShiqiYu/OpenGait issue #237 is ``model_cfg.use_emb2:
        true``, i.e. evaluate ``embed_2`` (the BN'd, per-part L2-normalised BNNeck feature). Both are
        returned by ``forward``; ``use_emb2`` only chooses which one this method hands out.
        """
        return output.embed_2 if self.use_emb2 else output.embed_1

    def describe(self) -> dict[str, object]:
        """Plain-data description for reports and for :func:`save_checkpoint`."""
        return {
            "name": self.name,
            "modality": self.modality,
            "class_num": self.class_num,
            "embed_dim": self.embed_dim,
            "parts": self.parts,
            "use_emb2": self.use_emb2,
            "parameters": sum(p.numel() for p in self.parameters()),
            "checkpoint": self.checkpoint_path,
        }

    def note_checkpoint(self, path: str | Path, saved: Mapping[str, object] | None) -> None:
        """Record that weights came from ``path`` (``saved``: the checkpoint's ``recogniser`` entry, if any)."""
        self.checkpoint_path = str(path)

    def _add_p3d_stages_and_head(self, *, class_num: int, embed_dim: int, parts: int) -> None:
        """DeepGaitV2's P3D ``layer2/3/4`` (spatial strides 2, 2, 1) and the GaitBase head (FCs, BNNecks,
        TP, HPP) under OpenGait's names, from ``self.channels`` and ``self.blocks``."""
        c0, c1, c2, c3 = self.channels
        self.layer2 = make_p3d_layer(c0, c1, self.blocks[1], stride=2)
        self.layer3 = make_p3d_layer(c1, c2, self.blocks[2], stride=2)
        self.layer4 = make_p3d_layer(c2, c3, self.blocks[3], stride=1)
        self.FCs = SeparateFCs(parts, c3, embed_dim)
        self.BNNecks = SeparateBNNecks(parts, embed_dim, class_num)
        self.TP = PackSequenceWrapper()
        self.HPP = HorizontalPoolingPyramid((parts,))

    def _check_spatial(self, h: int, strides: int) -> None:
        feature_h = _strided_height(h, strides)
        if feature_h % self.parts:
            raise ValueError(
                f"{self.name}: input height {h} gives a {feature_h}-row feature map, which does not split "
                f"into {self.parts} parts"
            )


class DeepGaitV2(Recogniser):
    """DeepGaitV2, P3D mode (OpenGait ``deepgaitv2.py``, SUSTech1K config).

    [n, s, c, 64, 44] → layer0 (conv3×3+BN+ReLU) → layer1 (2-D basic blocks) → layer2/3/4 (P3D
    blocks, spatial strides 2, 2, 1) [n, c3, s, 16, 11] → TP max → HPP → FCs → BNNecks.
    Keys: ``layer0.forward_block.{0,1}.*``, ``layer1.forward_block.K.*``, ``layer{2,3,4}.K.*``,
    ``FCs.fc_bin``, ``BNNecks.{fc_bin,bn1d.*}``.
    """

    name = "deepgaitv2"
    modality = "silhouette"
    input_channels = 1

    def __init__(
        self,
        *,
        class_num: int,
        channels: Sequence[int] = BASE_CHANNELS,
        blocks: Sequence[int] = (1, 1, 1, 1),
        embed_dim: int = 256,
        parts: int = 16,
        use_emb2: bool = False,
    ) -> None:
        super().__init__(class_num=class_num, embed_dim=embed_dim, parts=parts, use_emb2=use_emb2)
        _check_architecture(channels, blocks, embed_dim, parts)
        self.channels = tuple(int(c) for c in channels)
        c0 = self.channels[0]
        self.blocks = tuple(int(b) for b in blocks)
        self.layer0 = SetBlockWrapper(
            nn.Sequential(conv3x3(self.input_channels, c0), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        )
        self.layer1 = SetBlockWrapper(make_basic_layer(c0, c0, self.blocks[0], stride=1))
        self._add_p3d_stages_and_head(class_num=class_num, embed_dim=embed_dim, parts=parts)
        init_opengait_parameters(self)

    def forward(self, inputs: Tensor, seq_lengths: Sequence[int] | None = None) -> RecogniserOutput:
        n, s, _, h, _ = check_frames(
            inputs, model=self.name, channels=self.input_channels, value_range=UNIT_RANGE
        )
        self._check_spatial(h, strides=2)
        if seq_lengths is not None:
            check_seq_lengths(seq_lengths, n, s)
        x = inputs.transpose(1, 2)  # [n, c, s, h, w]
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))  # [n, c3, s, h/4, w/4]
        return RecogniserOutput(*part_embeddings(x, seq_lengths, self.TP, self.HPP, self.FCs, self.BNNecks))

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "channels": list(self.channels),
            "blocks": list(self.blocks),
            "mode": "p3d",
        }


class SkeletonGait(DeepGaitV2):
    """SkeletonGait = DeepGaitV2 on the 2-channel skeleton map [n, s, 2, 64, 44] (limb, joint)."""

    name = "skeletongait"
    modality = "skeleton_map"
    input_channels = 2


class SkeletonGaitPP(Recogniser):
    """SkeletonGait++ (OpenGait ``skeletongait++.py``): skeleton map and silhouette fused after stage 1.

    Input [n, s, 3, 64, 44] = limb map, joint map, silhouette. ``map_layer0/1`` and ``sil_layer0/1``
    (conv3×3+BN+ReLU, then 2-D basic blocks) → ``fusion`` (AttentionFusion, grouped layout, over
    [sil, map]) → DeepGaitV2-P3D ``layer2/3/4`` → TP → HPP → FCs → BNNecks.
    """

    name = "skeletongait++"
    modality = "silhouette+skeleton_map"
    input_channels = 3

    def __init__(
        self,
        *,
        class_num: int,
        channels: Sequence[int] = BASE_CHANNELS,
        blocks: Sequence[int] = (1, 1, 1, 1),
        embed_dim: int = 256,
        parts: int = 16,
        use_emb2: bool = False,
        fusion_squeeze: int = 16,
    ) -> None:
        super().__init__(class_num=class_num, embed_dim=embed_dim, parts=parts, use_emb2=use_emb2)
        _check_architecture(channels, blocks, embed_dim, parts)
        self.channels = tuple(int(c) for c in channels)
        c0 = self.channels[0]
        self.blocks = tuple(int(b) for b in blocks)
        self.fusion_squeeze = int(fusion_squeeze)
        self.sil_layer0 = SetBlockWrapper(
            nn.Sequential(conv3x3(1, c0), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        )
        self.map_layer0 = SetBlockWrapper(
            nn.Sequential(conv3x3(2, c0), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        )
        self.sil_layer1 = SetBlockWrapper(make_basic_layer(c0, c0, self.blocks[0], stride=1))
        self.map_layer1 = SetBlockWrapper(make_basic_layer(c0, c0, self.blocks[0], stride=1))
        self.fusion = AttentionFusion(c0, squeeze_ratio=self.fusion_squeeze, feat_len=2, layout="grouped")
        self._add_p3d_stages_and_head(class_num=class_num, embed_dim=embed_dim, parts=parts)
        init_opengait_parameters(self)

    def forward(self, inputs: Tensor, seq_lengths: Sequence[int] | None = None) -> RecogniserOutput:
        n, s, _, h, _ = check_frames(inputs, model=self.name, channels=3, value_range=UNIT_RANGE)
        self._check_spatial(h, strides=2)
        if seq_lengths is not None:
            check_seq_lengths(seq_lengths, n, s)
        x = inputs.transpose(1, 2)  # [n, 3, s, h, w]
        maps, sils = x[:, :2], x[:, 2:3]
        map1 = self.map_layer1(self.map_layer0(maps))
        sil1 = self.sil_layer1(self.sil_layer0(sils))
        x = self.fusion([sil1, map1])  # [n, c0, s, h, w]
        x = self.layer4(self.layer3(self.layer2(x)))
        return RecogniserOutput(*part_embeddings(x, seq_lengths, self.TP, self.HPP, self.FCs, self.BNNecks))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "channels": list(self.channels), "blocks": list(self.blocks)}


# --------------------------------------------------------------------------------------------------
# BigGait


class GaitBaseFusionHead(nn.Module):
    """BigGait's ``gait_net`` (``BigGait_GaitBase.Baseline``): two GaitBase stems fused, then stages 2–4.

    (part maps [n, c_p, s, h, w], appearance maps [n, c_a, s, h, w]) → ``pre_part``/``pre_rgb``
    (PreResNet9 each) → ``fusion`` (AttentionFusion, interleaved layout) → ``post_backbone``
    (PostResNet9) → TP → HPP → FCs → BNNecks = (embed_1, embed_2, logits).
    """

    def __init__(
        self,
        *,
        part_channels: int,
        appearance_channels: int,
        channels: Sequence[int],
        blocks: Sequence[int],
        embed_dim: int,
        parts: int,
        class_num: int,
        fusion_squeeze: int = 16,
    ) -> None:
        super().__init__()
        c0, c3 = int(channels[0]), int(channels[3])
        self.pre_part = SetBlockWrapper(PreResNet9(part_channels, c0, blocks[0]))
        self.pre_rgb = SetBlockWrapper(PreResNet9(appearance_channels, c0, blocks[0]))
        self.post_backbone = SetBlockWrapper(PostResNet9(channels, blocks))
        self.FCs = SeparateFCs(parts, c3, embed_dim)
        self.BNNecks = SeparateBNNecks(parts, embed_dim, class_num)
        self.TP = PackSequenceWrapper()
        self.HPP = HorizontalPoolingPyramid((parts,))
        self.fusion = AttentionFusion(c0, squeeze_ratio=fusion_squeeze, feat_len=2, layout="interleaved")

    def forward(
        self, part_maps: Tensor, appearance: Tensor, seq_lengths: Sequence[int] | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        fused = self.fusion([self.pre_part(part_maps), self.pre_rgb(appearance)])
        x = self.post_backbone(fused)  # [n, c3, s, h/4, w/4]
        return part_embeddings(x, seq_lengths, self.TP, self.HPP, self.FCs, self.BNNecks)


def padding_resize(x: Tensor, ratios: Tensor, height: int, width: int) -> Tensor:
    """BigGait's aspect restore: [N, c, h, w] → [N, c, height, width].

    Each frame is resized bilinearly to (height, int(height · ratio)), ratio = W/H of the original
    crop, then centred: zero-padded to ``width`` when narrower, centre-cropped when wider (the crop
    offset uses floor division of a negative number, as OpenGait's tensor arithmetic does).
    """
    need = (height * ratios.reshape(-1).float()).int().tolist()  # truncation, as OpenGait's .int()
    if min(need) < 1:
        raise ValueError(
            f"BigGait ratios give a zero-width frame at height {height}: min ratio {float(ratios.min())}"
        )
    out = x.new_zeros(x.shape[0], x.shape[1], height, width)
    for w_need in sorted(set(need)):
        idx = torch.tensor([i for i, v in enumerate(need) if v == w_need], device=x.device)
        resized = F.interpolate(x[idx], (height, w_need), mode="bilinear", align_corners=False)
        if w_need < width:
            left = (width - w_need) // 2
            out[idx, :, :, left : left + w_need] = resized
        else:
            left = abs((width - w_need) // 2)
            out[idx] = resized[..., left : left + width]
    return out


def sobel_connectivity(images: Tensor) -> Tensor:
    """BigGait's ``connect_loss`` on [N, c, h, w]: Σ|Sobel_x| + Σ|Sobel_y| of the channel-summed response / numel."""
    c = images.shape[1]
    kx = images.new_tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    gx = F.conv2d(images, kx[None, None].repeat(1, c, 1, 1), padding=1)
    gy = F.conv2d(images, kx.t()[None, None].repeat(1, c, 1, 1), padding=1)
    return (gx.abs().sum() + gy.abs().sum()) / images.numel()


def part_diversity_loss(maps: Tensor) -> Tensor:
    """BigGait's ``diversity_loss`` on [N, hw, c]: log2(c) minus the entropy of each frame's part usage."""
    c = maps.shape[-1]
    usage = maps.sum(dim=1) / (maps.sum(dim=(1, 2)) + 1e-6)[:, None]  # [N, c]
    entropy = -(usage * torch.log2(usage + 1e-6)).sum(dim=1)
    return (math.log2(c) - entropy).mean()


def select_body(mask: Tensor, edge: int = 5) -> Tensor:
    """BigGait's ``get_body``: [N, h, w, 2] → [N, h, w]. Channel 0 is the person unless its rounded
    mask fills more than half of the top and bottom ``edge`` rows (> w·edge of their 2·edge·w pixels):
    then channel 1 is, since a walking person does not cover the frame's top and bottom."""
    fg = mask[..., 0]
    rounded = torch.round(fg)
    border = rounded[:, :edge].sum(dim=(1, 2)) + rounded[:, -edge:].sum(dim=(1, 2))
    swap = border > mask.shape[2] * edge
    return torch.where(swap[:, None, None], mask[..., 1], fg)


def close_mask(sils: Tensor) -> Tensor:
    """BigGait's ``get_edge`` on [N, 1, h, w]: binarise, dilate 3×3, erode 5×5 (kornia's geodesic
    borders = max-pooling with -inf padding); inside = 1, the dilation/erosion band keeps the soft value."""
    binary = torch.round(sils)
    dilated = F.max_pool2d(binary, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-dilated, 5, stride=1, padding=2)
    band = (dilated > 0.5) ^ (eroded > 0.5)
    return band * sils + (eroded > 0.5).to(sils.dtype)


class BigGait(Recogniser):
    """BigGait (OpenGait ``BigGait.py``, ``BigGait__Dinov2_Gaitbase``).

    RGB [n, s, 3, H, W] (ImageNet-normalised) and ``ratios`` [n, s] (W/H of each original crop) →
    448×224 (``image_size`` 224; frames not already 2:1 are first aspect-restored to 256×128 by
    :func:`padding_resize`) → DINOv2 → last-block tokens (``C``) and four mid-block tokens (``4C``),
    resized to 64×32 (``sils_size`` 32) → ``Mask_Branch`` (2-way softmax; foreground by
    :func:`select_body` + :func:`close_mask`) → on the foreground, ``Denoising_Branch`` (16 softmax part
    maps) and ``Appearance_Branch`` (16 sigmoid maps) → ``gait_net`` (:class:`GaitBaseFusionHead`).

    Training mode adds OpenGait's extra losses to ``aux_losses``, already weighted as OpenGait weights
    them (``shape_connect`` ×0.02, ``shape_mse``, ``part_connect`` ×0.01, ``part_diversity`` ×5; add them
    to triplet + CE), and applies "black DA": for ``round(0.2 n)`` random sequences either the part or the
    appearance maps are zeroed.

    The backbone is frozen (no gradients, kept in eval mode) when ``freeze_backbone`` is true, the
    default for pretrained weights; a randomly initialised small ViT is trained by default.
    ``freeze_mask_branch()`` reproduces OpenGait freezing the mask branch from iteration 500 on.
    """

    name = "biggait"
    modality = "rgb"
    input_channels = 3

    def __init__(
        self,
        *,
        class_num: int,
        backbone: DINOv2Backbone,
        channels: Sequence[int] = BASE_CHANNELS,
        blocks: Sequence[int] = (1, 1, 1, 1),
        embed_dim: int = 256,
        parts: int = 16,
        use_emb2: bool = False,
        freeze_backbone: bool | None = None,
        image_size: int = 224,
        sils_size: int = 32,
        part_dim: int = 16,
        appearance_dim: int = 16,
        black_da: float = 0.2,
        fusion_squeeze: int = 16,
    ) -> None:
        super().__init__(class_num=class_num, embed_dim=embed_dim, parts=parts, use_emb2=use_emb2)
        _check_architecture(channels, blocks, embed_dim, parts)
        if image_size % backbone.patch_size:
            raise ValueError(
                f"BigGait image_size {image_size} is not a multiple of the patch size {backbone.patch_size}"
            )
        if (2 * sils_size) % 4 or ((2 * sils_size) // 4) % parts:
            raise ValueError(
                f"BigGait sils_size {sils_size} gives feature maps that do not split into {parts} parts"
            )
        if not 0.0 <= black_da <= 1.0:
            raise ValueError(f"black_da must be a fraction in [0, 1], got {black_da}")
        self.channels = tuple(int(c) for c in channels)
        self.blocks = tuple(int(b) for b in blocks)
        self.image_size = int(image_size)
        self.sils_size = int(sils_size)
        self.black_da = float(black_da)
        hidden = backbone.hidden_size
        self.Denoising_Branch = InfoDistillation(
            4 * hidden, part_dim, p=0.0, softmax=True, relu=True, up=False
        )
        self.Appearance_Branch = InfoDistillation(
            4 * hidden, appearance_dim, p=0.0, softmax=False, relu=False, up=False
        )
        self.Mask_Branch = InfoDistillation(hidden, 2, p=0.5, softmax=True, relu=False, up=True)
        self.gait_net = GaitBaseFusionHead(
            part_channels=part_dim,
            appearance_channels=appearance_dim,
            channels=self.channels,
            blocks=self.blocks,
            embed_dim=embed_dim,
            parts=parts,
            class_num=class_num,
            fusion_squeeze=fusion_squeeze,
        )
        # OpenGait initialises everything but the ViT, whose weights are loaded (or HF-initialised).
        init_opengait_parameters(self)
        self.backbone = backbone
        self.backbone_frozen = backbone.pretrained if freeze_backbone is None else bool(freeze_backbone)
        self.mask_branch_frozen = False
        if self.backbone_frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    # -- mode handling ---------------------------------------------------------------------------

    def train(self, mode: bool = True) -> BigGait:
        super().train(mode)
        # A frozen part stays in eval mode (its dropout/BN must not change) whatever the caller asks.
        if self.backbone_frozen:
            self.backbone.eval()
        if self.mask_branch_frozen:
            self.Mask_Branch.eval()
        return self

    def freeze_mask_branch(self) -> None:
        """Stop training the mask branch (OpenGait does this from iteration 500 on)."""
        self.mask_branch_frozen = True
        self.Mask_Branch.requires_grad_(False)
        self.Mask_Branch.eval()

    # -- forward ---------------------------------------------------------------------------------

    def forward(
        self, inputs: Tensor, seq_lengths: Sequence[int] | None = None, *, ratios: Tensor | None = None
    ) -> RecogniserOutput:
        n, s, c, h, w = check_frames(inputs, model=self.name, channels=3, value_range=NORMALISED_RGB_RANGE)
        if seq_lengths is not None:
            check_seq_lengths(seq_lengths, n, s)
        ratios = self._check_ratios(ratios, n, s)
        frames = inputs.reshape(n * s, c, h, w)
        with torch.no_grad() if self.backbone_frozen else contextlib.nullcontext():
            last, mid = self._backbone_maps(frames, ratios, h, w)  # [ns, hw, C], [ns, hw, 4C]
        fg_size = (2 * self.sils_size, self.sils_size)
        hw = fg_size[0] * fg_size[1]
        aux: dict[str, Tensor] = {}

        # Foreground: the mask branch on every token inside the (un-padded) image area.
        valid = padding_resize(frames.new_ones(n * s, 1, *fg_size), ratios, *fg_size).reshape(-1) != 0
        mask, mse = self._branch(self.Mask_Branch, last.reshape(-1, last.shape[-1]), valid, 2)
        if self.training:
            # OpenGait reinterprets the pixel-major [ns·hw, 2] buffer as [ns, 2, h, w] (a view, not a
            # permute) for this loss; kept as is so the training objective matches.
            aux["shape_connect"] = sobel_connectivity(mask.reshape(n * s, 2, *fg_size)) * 0.02
            aux["shape_mse"] = mse
        body = select_body(mask.detach().reshape(n * s, *fg_size, 2))
        body = close_mask(body.reshape(n * s, 1, *fg_size)).reshape(-1)  # [ns·hw]

        keep = body != 0
        tokens = mid.reshape(-1, mid.shape[-1])
        part_maps, _ = self._branch(
            self.Denoising_Branch, tokens, keep, self.Denoising_Branch.bn_t.num_features
        )
        appearance, _ = self._branch(
            self.Appearance_Branch, tokens, keep, self.Appearance_Branch.bn_t.num_features
        )
        part_maps = part_maps.reshape(n * s, hw, -1)
        appearance = appearance.reshape(n * s, hw, -1)
        if self.training:
            # The last part channel is left out of the smoothness term, as in OpenGait.
            parts_first = part_maps[..., :-1].transpose(1, 2).reshape(n * s, -1, *fg_size)
            aux["part_connect"] = sobel_connectivity(parts_first) * 0.01
            aux["part_diversity"] = part_diversity_loss(part_maps) * 5
            if self.black_da > 0:
                part_maps, appearance = self._black_da(
                    part_maps.reshape(n, s, hw, -1), appearance.reshape(n, s, hw, -1)
                )
        embed_1, embed_2, logits = self.gait_net(
            self._to_maps(part_maps, n, s), self._to_maps(appearance, n, s), seq_lengths
        )
        return RecogniserOutput(embed_1, embed_2, logits, aux)

    def _check_ratios(self, ratios: Tensor | None, n: int, s: int) -> Tensor:
        if ratios is None:
            raise ValueError("BigGait needs ratios=[n, s] (W/H of each original crop, OpenGait's RatioHW)")
        ratios = torch.as_tensor(ratios)
        if ratios.numel() != n * s:
            raise ValueError(
                f"BigGait ratios must hold one W/H value per frame ([n, s] = [{n}, {s}]), got {tuple(ratios.shape)}"
            )
        ratios = ratios.reshape(n * s).float()
        if not bool(torch.isfinite(ratios).all()) or float(ratios.min()) <= 0:
            raise ValueError(f"BigGait ratios must be positive and finite, got min {float(ratios.min())}")
        return ratios

    def _backbone_maps(self, frames: Tensor, ratios: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """[ns, 3, h, w] → patch tokens resized to the 64×32 map: ([ns, hw, C], [ns, hw, 4C])."""
        size = (2 * self.image_size, self.image_size)
        if h != 2 * w:
            frames = padding_resize(frames, ratios, 256, 128)
        pixels = F.interpolate(frames, size, mode="bilinear", align_corners=False)
        last, mid = self.backbone(pixels)
        grid = (size[0] // self.backbone.patch_size, size[1] // self.backbone.patch_size)
        return self._token_maps(last, grid), self._token_maps(mid, grid)

    def _token_maps(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """[N, gh·gw, C] → bilinear to (2·sils_size, sils_size) → [N, h·w, C]."""
        num, _, dim = tokens.shape
        maps = tokens.reshape(num, grid[0], grid[1], dim).permute(0, 3, 1, 2)
        maps = F.interpolate(maps, (2 * self.sils_size, self.sils_size), mode="bilinear", align_corners=False)
        return maps.permute(0, 2, 3, 1).reshape(num, -1, dim)

    def _branch(
        self, branch: InfoDistillation, tokens: Tensor, keep: Tensor, dim: int
    ) -> tuple[Tensor, Tensor]:
        """Run ``branch`` on the kept tokens; zeros elsewhere. [M, C] → ([M, dim], reconstruction MSE)."""
        out = tokens.new_zeros(tokens.shape[0], dim)
        selected = tokens[keep]
        # BatchNorm cannot normalise fewer than two rows in training; no foreground means empty maps.
        if selected.shape[0] < (2 if branch.training else 1):
            return out, tokens.new_zeros(())
        values, mse = branch(selected)
        out = out.index_put((keep.nonzero(as_tuple=True)[0],), values)
        return out, mse if mse is not None else tokens.new_zeros(())

    def _black_da(self, part_maps: Tensor, appearance: Tensor) -> tuple[Tensor, Tensor]:
        """Zero the part or the appearance maps of ``round(black_da · n)`` random sequences ([n, s, hw, c])."""
        n = part_maps.shape[0]
        count = round(n * self.black_da)
        keep = part_maps.new_ones(2, n)
        if count:
            chosen = torch.randperm(n, device=part_maps.device)[:count]
            which = torch.randint(0, 2, (count,), device=part_maps.device)
            keep[which, chosen] = 0.0
        return part_maps * keep[0].view(n, 1, 1, 1), appearance * keep[1].view(n, 1, 1, 1)

    def _to_maps(self, values: Tensor, n: int, s: int) -> Tensor:
        """[n·s, hw, c] (or [n, s, hw, c]) → [n, c, s, 2·sils_size, sils_size]."""
        return (
            values.reshape(n, s, 2 * self.sils_size, self.sils_size, -1).permute(0, 4, 1, 2, 3).contiguous()
        )

    # -- provenance ------------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        outside = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("backbone."))
        return {
            **super().describe(),
            "channels": list(self.channels),
            "blocks": list(self.blocks),
            "image_size": self.image_size,
            "sils_size": self.sils_size,
            "parameters_outside_dinov2": outside,
            "dinov2": {**self.backbone.describe(), "frozen": self.backbone_frozen},
        }

    def note_checkpoint(self, path: str | Path, saved: Mapping[str, object] | None) -> None:
        super().note_checkpoint(path, saved)
        dinov2 = saved.get("dinov2") if isinstance(saved, Mapping) else None
        if isinstance(dinov2, Mapping):
            # Our own checkpoint: it says where its ViT weights originally came from.
            self.backbone.pretrained = bool(dinov2.get("pretrained", False))
            self.backbone.source = dinov2.get("source")  # type: ignore[assignment]
        else:
            # An official OpenGait checkpoint stores the (pretrained, frozen) DINOv2 it was trained with.
            self.backbone.pretrained = True
            self.backbone.source = f"checkpoint {path}"


# --------------------------------------------------------------------------------------------------
# Factory


def random_dinov2(spec: str | Mapping[str, object] | None = None) -> DINOv2Backbone:
    """A randomly initialised (``pretrained=False``) DINOv2 backbone.

    ``spec``: None or ``"tiny"`` → :data:`DINOV2_TINY` (hidden 96, 4 layers, 3 heads, patch 14);
    ``"vits14"`` → the ViT-S/14 architecture (for loading a full official BigGait checkpoint, which
    carries the ViT weights itself); a mapping → :data:`DINOV2_TINY` updated with those Dinov2Config fields.
    """
    from pipeline.recognisers.vit import ViTConfig, ViTModel

    if spec is None or spec == "tiny":
        fields = dict(DINOV2_TINY)
    elif spec == "vits14":
        fields = dict(DINOV2_VITS14)
    elif isinstance(spec, Mapping):
        unknown = sorted(set(spec) - DINOV2_CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"recognisers.biggait.dinov2_config: unknown field(s) {unknown}; allowed {sorted(DINOV2_CONFIG_KEYS)}"
            )
        fields = {**DINOV2_TINY, **spec}
    else:
        raise ValueError(
            f"recognisers.biggait.dinov2_config must be 'tiny', 'vits14' or a mapping, got {spec!r}"
        )
    # Our own copy of Dinov2Model's network: the same keys and outputs, without transformers' ~3 s import.
    return DINOv2Backbone(ViTModel(ViTConfig.from_fields(fields)), pretrained=False, source=None)


def build_biggait(
    *,
    class_num: int,
    channels: Sequence[int],
    blocks: Sequence[int],
    embed_dim: int,
    parts: int,
    use_emb2: bool,
    dinov2_path: str | Path | None = None,
    dinov2_config: str | Mapping[str, object] | None = None,
    freeze_backbone: bool | None = None,
    image_size: int = 224,
    sils_size: int = 32,
    black_da: float = 0.2,
    fusion_squeeze: int = 16,
) -> BigGait:
    """BigGait with pretrained DINOv2 weights from ``dinov2_path`` or a random ViT from ``dinov2_config``."""
    if dinov2_path is not None:
        if dinov2_config is not None:
            raise ValueError(
                "recognisers.biggait: give dinov2_path (pretrained) or dinov2_config (random), not both"
            )
        from pipeline.recognisers.checkpoints import load_dinov2

        backbone = load_dinov2(dinov2_path)
    else:
        backbone = random_dinov2(dinov2_config)
    return BigGait(
        class_num=class_num,
        backbone=backbone,
        channels=channels,
        blocks=blocks,
        embed_dim=embed_dim,
        parts=parts,
        use_emb2=use_emb2,
        freeze_backbone=freeze_backbone,
        image_size=image_size,
        sils_size=sils_size,
        black_da=black_da,
        fusion_squeeze=fusion_squeeze,
    )


def build_recogniser(
    name: str,
    *,
    class_num: int,
    width: float = 1.0,
    blocks: Sequence[int] = (1, 1, 1, 1),
    embed_dim: int = 256,
    parts: int = 16,
    use_emb2: bool = False,
    **model_options: object,
) -> Recogniser:
    """Build one of :data:`RECOGNISERS`.

    ``width`` scales OpenGait's stage widths [64, 128, 256, 512] (``channels=`` overrides them).
    BigGait options: ``dinov2_path`` (HF folder or ``dinov2_vits14_pretrain.pth``; pretrained, frozen by
    default), ``dinov2_config`` (``"tiny"`` (default), ``"vits14"`` or Dinov2Config fields; random,
    trained by default), ``freeze_backbone``, ``image_size`` (224 → 448×224), ``sils_size`` (32 → 64×32),
    ``black_da`` (0.2). BigGait and SkeletonGait++: ``fusion_squeeze`` (16, OpenGait's; the attention
    fusion's hidden width is the first stage's channels / this). Any other option is an error.
    """
    key = name.lower()
    if key not in RECOGNISERS:
        raise ValueError(f"unknown recogniser {name!r}; choose one of {list(RECOGNISERS)}")
    options = dict(model_options)
    channels = options.pop("channels", None)
    channels = tuple(int(c) for c in channels) if channels is not None else scaled_channels(width)  # type: ignore[union-attr]
    common: dict[str, object] = {
        "class_num": class_num,
        "channels": channels,
        "blocks": tuple(int(b) for b in blocks),
        "embed_dim": int(embed_dim),
        "parts": int(parts),
        "use_emb2": bool(use_emb2),
    }
    if key == "biggait":
        allowed = {"dinov2_path", "dinov2_config", "freeze_backbone", "image_size", "sils_size", "black_da",
                   "fusion_squeeze"}  # fmt: skip
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"recognisers.biggait: unknown option(s) {unknown}; allowed {sorted(allowed)}")
        return build_biggait(**common, **options)  # type: ignore[arg-type]
    if key == "skeletongait++" and "fusion_squeeze" in options:
        # A CPU-sized first stage (e.g. 8 channels) needs a smaller squeeze than OpenGait's 16.
        common["fusion_squeeze"] = int(options.pop("fusion_squeeze"))  # type: ignore[call-overload]
    if options:
        accepted = "'channels' and 'fusion_squeeze'" if key == "skeletongait++" else "'channels'"
        raise ValueError(
            f"recognisers.{key}: unknown option(s) {sorted(options)}; only {accepted} is accepted"
        )
    cls = {"deepgaitv2": DeepGaitV2, "skeletongait": SkeletonGait, "skeletongait++": SkeletonGaitPP}[key]
    return cls(**common)  # type: ignore[arg-type]
