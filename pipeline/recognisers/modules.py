"""Building blocks of the OpenGait recognisers, with OpenGait's parameter names.

Every block keeps the attribute names (and ``nn.Sequential`` indices) of its counterpart in
``opengait/modeling/modules.py`` (and ``BigGait_utils``), because an official checkpoint is a flat
``state_dict`` whose keys spell out that module tree: ``SetBlockWrapper`` must own its 2-D module as
``forward_block``, a P3D block must own ``conv1``/``conv2``/``shortcut3d``/``sbn``/``downsample``, etc.
Modules that OpenGait keeps without parameters (temporal pooling, the pooling pyramid) stay
parameter-free here too, so they add no keys.

Notation: n = sequences, s = frames, c = channels, h×w = spatial, p = parts (horizontal strips).

The DINOv2 wrapper at the end (:class:`DINOv2Backbone`) runs Hugging Face's ``Dinov2Model`` but reads
and writes its weights under the original DINOv2 names that BigGait checkpoints use
(``backbone.blocks.N.attn.qkv.weight`` …); see its docstring for the mapping.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------------
# Convolutions and initialisation


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias (OpenGait ``conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (OpenGait ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def init_opengait_parameters(module: nn.Module) -> None:
    """OpenGait's ``BaseModel.init_parameters``: Xavier-uniform convs and linears (bias 0), affine BN
    weight ~ N(1, 0.02), bias 0. ``SeparateFCs``/``SeparateBNNecks`` keep their own Xavier init."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------
# Set (sequence) wrappers and pooling


class SetBlockWrapper(nn.Module):
    """Apply a 2-D module to every frame: [n, c, s, h, w] → [n, c', s, h', w'].

    Key layout: everything below gets a ``forward_block.`` level, as in OpenGait.
    """

    def __init__(self, forward_block: nn.Module) -> None:
        super().__init__()
        self.forward_block = forward_block

    def forward(self, x: Tensor) -> Tensor:
        n, c, s, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * s, c, h, w)  # [n·s, c, h, w]
        out = self.forward_block(frames)
        return out.reshape(n, s, *out.shape[1:]).transpose(1, 2).contiguous()


def check_seq_lengths(seq_lengths: Sequence[int], n: int, s: int) -> Literal["packed", "padded"]:
    """Tell how ``seq_lengths`` relate to a batch of ``n`` sequences of ``s`` frames (or raise).

    * ``packed`` (OpenGait's ``seqL``): ``n == 1`` and the sequences are concatenated along the frame
      axis, ``sum(seq_lengths) == s``.
    * ``padded``: one length per batch row, ``1 <= L_i <= s``; frames past ``L_i`` are padding.
    """
    lengths = [int(v) for v in seq_lengths]
    if any(v < 1 for v in lengths):
        raise ValueError(f"seq_lengths must be positive frame counts, got {lengths}")
    if len(lengths) == n:
        if max(lengths) > s:
            raise ValueError(f"seq_lengths {lengths} exceed the {s} frames of the input")
        return "padded"
    if n == 1 and sum(lengths) == s:
        return "packed"
    raise ValueError(
        f"seq_lengths {lengths} fit neither a padded batch (one length per row, n={n}) nor OpenGait's "
        f"packed layout (n=1 and the lengths summing to the {s} frames)"
    )


def temporal_max(x: Tensor, dim: int) -> Tensor:
    """Max over the frame axis ``dim`` (OpenGait's ``torch.max`` pooling, values only)."""
    return x.max(dim=dim).values


class PackSequenceWrapper(nn.Module):
    """Temporal pooling ("TP"), OpenGait's ``PackSequenceWrapper(torch.max)``.

    ``forward(seqs [n, c, s, ...], seq_lengths)`` → [n', c, ...]: the max over the frame axis, per
    sequence. With ``seq_lengths=None`` every row is one sequence (n' = n). With OpenGait's packed
    layout (n = 1, lengths summing to s) n' = len(seq_lengths); with a padded batch (one length per
    row) the frames past each length are ignored (n' = n). No parameters.
    """

    def __init__(self, pooling: Callable[[Tensor, int], Tensor] | None = None) -> None:
        super().__init__()
        self.pooling = pooling or temporal_max

    def forward(self, seqs: Tensor, seq_lengths: Sequence[int] | None = None, dim: int = 2) -> Tensor:
        if seq_lengths is None:
            return self.pooling(seqs, dim)
        n, s = seqs.shape[0], seqs.shape[dim]
        mode = check_seq_lengths(seq_lengths, n, s)
        if mode == "packed":
            chunks = torch.split(seqs, [int(v) for v in seq_lengths], dim=dim)
            return torch.cat([self.pooling(chunk, dim) for chunk in chunks])
        rows = [self.pooling(seqs[i : i + 1].narrow(dim, 0, int(v)), dim) for i, v in enumerate(seq_lengths)]
        return torch.cat(rows)


class HorizontalPoolingPyramid(nn.Module):
    """HPP: [n, c, h, w] → [n, c, p] with p = sum(bin_num); each strip is mean + max. No parameters."""

    def __init__(self, bin_num: Sequence[int] = (16,)) -> None:
        super().__init__()
        self.bin_num = tuple(int(b) for b in bin_num)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, _ = x.shape
        features = []
        for b in self.bin_num:
            if h % b:
                # OpenGait views the flattened h·w as b strips; that is only a horizontal split when
                # b divides h, so anything else would silently mix rows between parts.
                raise ValueError(f"feature map height {h} is not divisible into {b} parts")
            z = x.reshape(n, c, b, -1)
            features.append(z.mean(-1) + z.max(-1).values)
        return torch.cat(features, -1)


# --------------------------------------------------------------------------------------------------
# Part-wise heads


class SeparateFCs(nn.Module):
    """One bias-free linear map per part: [n, c_in, p] → [n, c_out, p]. Key: ``fc_bin`` [p, c_in, c_out]."""

    def __init__(self, parts_num: int, in_channels: int, out_channels: int, norm: bool = False) -> None:
        super().__init__()
        self.p = parts_num
        self.norm = norm
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, out_channels)))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.p:
            raise ValueError(f"SeparateFCs expects {self.p} parts, got {x.shape[-1]}")
        weight = F.normalize(self.fc_bin, dim=1) if self.norm else self.fc_bin
        out = x.permute(2, 0, 1).matmul(weight)  # [p, n, c_out]
        return out.permute(1, 2, 0).contiguous()


class SeparateBNNecks(nn.Module):
    """BNNeck with cosine classifier: [n, c, p] → (embed_2 [n, c, p], logits [n, class_num, p]).

    ``bn1d`` is one BatchNorm1d over the flattened [n, c·p] (OpenGait's parallel BN); then each part
    vector is L2-normalised over c and multiplied with the L2-normalised ``fc_bin`` [p, c, class_num],
    so the logits are cosines (the CE loss scales them by 16).
    """

    def __init__(self, parts_num: int, in_channels: int, class_num: int, norm: bool = True) -> None:
        super().__init__()
        self.p = parts_num
        self.class_num = class_num
        self.norm = norm
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, class_num)))
        self.bn1d = nn.BatchNorm1d(in_channels * parts_num)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, p = x.shape
        x = self.bn1d(x.reshape(n, c * p)).reshape(n, c, p)
        feature = x.permute(2, 0, 1)  # [p, n, c]
        if self.norm:
            feature = F.normalize(feature, dim=-1)
            logits = feature.matmul(F.normalize(self.fc_bin, dim=1))  # [p, n, class_num]
        else:
            logits = feature.matmul(self.fc_bin)
        return feature.permute(1, 2, 0).contiguous(), logits.permute(1, 2, 0).contiguous()


# --------------------------------------------------------------------------------------------------
# Residual blocks


class BasicBlock2D(nn.Module):
    """ResNet basic block on frames: [N, c_in, h, w] → [N, planes, h/stride, w/stride].

    Keys ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.{0,1}`` (the names of both OpenGait's
    ``BasicBlock2D`` and torchvision's ``BasicBlock``, which GaitBase uses).
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class BasicBlockP3D(nn.Module):
    """Pseudo-3D residual block: [n, c_in, s, h, w] → [n, planes, s, h/stride, w/stride].

    A per-frame 3×3 conv (``conv1``, SetBlock) gets a temporal residual (``shortcut3d``: Conv3d
    (3,1,1) + ``sbn``), then a per-frame 3×3 conv (``conv2``), plus the block's identity or
    ``downsample`` (Conv3d 1×1×1 with stride (1, s, s) + BN3d).
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = SetBlockWrapper(
            nn.Sequential(conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes), nn.ReLU(inplace=True))
        )
        self.conv2 = SetBlockWrapper(nn.Sequential(conv3x3(planes, planes), nn.BatchNorm2d(planes)))
        self.shortcut3d = nn.Conv3d(planes, planes, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False)
        self.sbn = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(x)
        out = self.relu(out + self.sbn(self.shortcut3d(out)))
        out = self.conv2(out)
        return self.relu(out + identity)


def make_basic_layer(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` × :class:`BasicBlock2D`; the first gets a conv1×1+BN downsample when the shape changes."""
    if blocks < 1:
        raise ValueError(f"a residual stage needs at least one block, got {blocks}")
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock2D(inplanes, planes, stride, downsample)]
    layers += [BasicBlock2D(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def make_p3d_layer(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` × :class:`BasicBlockP3D`; the first gets a Conv3d-1×1×1+BN3d downsample when needed."""
    if blocks < 1:
        raise ValueError(f"a residual stage needs at least one block, got {blocks}")
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=1, stride=(1, stride, stride), bias=False),
            nn.BatchNorm3d(planes),
        )
    layers = [BasicBlockP3D(inplanes, planes, stride, downsample)]
    layers += [BasicBlockP3D(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class BasicConv2d(nn.Module):
    """A bias-free convolution kept under the attribute ``conv`` (key ``conv.weight``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class PreResNet9(nn.Module):
    """GaitBase stem on frames: [N, c_in, h, w] → [N, channels, h, w] (conv3×3, BN, ReLU, layer1).

    Keys ``conv1.conv.weight``, ``bn1.*``, ``layer1.K.*`` (BigGait's ``Pre_ResNet9``, no max-pool).
    """

    def __init__(self, in_channels: int, channels: int, blocks: int = 1) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, channels, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_basic_layer(channels, channels, blocks, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer1(self.relu(self.bn1(self.conv1(x))))


class PostResNet9(nn.Module):
    """GaitBase stages 2–4 on frames: [N, c0, h, w] → [N, c3, h/4, w/4] (strides 2, 2, 1).

    Keys ``layer{2,3,4}.K.*`` with ``downsample.{0,1}`` on each first block (BigGait's ``Post_ResNet9``).
    """

    def __init__(self, channels: Sequence[int], blocks: Sequence[int] = (1, 1, 1, 1)) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.layer2 = make_basic_layer(c0, c1, blocks[1], stride=2)
        self.layer3 = make_basic_layer(c1, c2, blocks[2], stride=2)
        self.layer4 = make_basic_layer(c2, c3, blocks[3], stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(x)))


# --------------------------------------------------------------------------------------------------
# Fusion and BigGait's distillation branches


class AttentionFusion(nn.Module):
    """Softmax-weighted fusion of ``feat_len`` feature maps: feat_len × [n, c, s, h, w] → [n, c, s, h, w].

    ``conv`` (SetBlock; Sequential keys 0, 1, 3, 4, 6) = conv1×1(c·L → c/squeeze) + BN + ReLU,
    conv3×3 + BN + ReLU, conv1×1(→ c·L); the c·L scores are split into L per-source weights and
    softmax-normalised over the sources. How the c·L channels are split differs between the two
    OpenGait copies, and a checkpoint only works with its own split:

    * ``layout="grouped"`` (SkeletonGait++): channel ``d·c + k`` scores source d, channel k;
    * ``layout="interleaved"`` (BigGait's GaitBase): channel ``k·L + d`` scores source d, channel k.
    """

    def __init__(
        self,
        in_channels: int,
        squeeze_ratio: int = 16,
        feat_len: int = 2,
        layout: Literal["grouped", "interleaved"] = "grouped",
    ) -> None:
        super().__init__()
        hidden = int(in_channels / squeeze_ratio)
        if hidden < 1:
            raise ValueError(
                f"AttentionFusion with {in_channels} channels and squeeze ratio {squeeze_ratio} has no hidden "
                f"channel; use at least {squeeze_ratio} channels in the first stage (a larger width)"
            )
        if layout not in ("grouped", "interleaved"):
            raise ValueError(f"unknown AttentionFusion layout {layout!r}")
        self.feat_len = feat_len
        self.layout = layout
        self.conv = SetBlockWrapper(
            nn.Sequential(
                conv1x1(in_channels * feat_len, hidden),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                conv3x3(hidden, hidden),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                conv1x1(hidden, in_channels * feat_len),
            )
        )

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != self.feat_len:
            raise ValueError(f"AttentionFusion expects {self.feat_len} inputs, got {len(feats)}")
        n, c, s, h, w = feats[0].shape
        score = self.conv(torch.cat(list(feats), dim=1))  # [n, L·c, s, h, w]
        if self.layout == "grouped":
            score = score.reshape(n, self.feat_len, c, s, h, w)
        else:
            score = score.reshape(n, c, self.feat_len, s, h, w).transpose(1, 2)
        score = F.softmax(score, dim=1)  # [n, L, c, s, h, w]
        return sum(f * score[:, d] for d, f in enumerate(feats))


class InfoDistillation(nn.Module):
    """BigGait's per-pixel branch: tokens [K, source_dim] → (maps [K, target_dim], reconstruction MSE | None).

    Dropout → ``bn_s`` (BN1d, no affine) → ``down_sampling`` (a Linear, or Linear → BN1d → GELU →
    Linear with ``relu=True``) → softmax, or → ``bn_t`` (BN1d, no affine) → sigmoid. With ``up=True``
    ``up_sampling`` maps back to source_dim and the MSE to the input is returned.
    """

    def __init__(
        self, source_dim: int, target_dim: int, p: float, softmax: bool, relu: bool, up: bool = True
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=p)
        self.bn_s = nn.BatchNorm1d(source_dim, affine=False)
        self.bn_t = nn.BatchNorm1d(target_dim, affine=False)
        if relu:
            self.down_sampling: nn.Module = nn.Sequential(
                nn.Linear(source_dim, source_dim // 2),
                nn.BatchNorm1d(source_dim // 2, affine=False),
                nn.GELU(),
                nn.Linear(source_dim // 2, target_dim),
            )
            if up:
                self.up_sampling: nn.Module = nn.Sequential(
                    nn.Linear(target_dim, source_dim // 2),
                    nn.BatchNorm1d(source_dim // 2, affine=False),
                    nn.GELU(),
                    nn.Linear(source_dim // 2, source_dim),
                )
        else:
            self.down_sampling = nn.Linear(source_dim, target_dim)
            if up:
                self.up_sampling = nn.Linear(target_dim, source_dim)
        self.softmax = softmax
        self.up = up

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        d_x = self.down_sampling(self.bn_s(self.dropout(x)))
        out = F.softmax(d_x, dim=1) if self.softmax else torch.sigmoid(self.bn_t(d_x))
        if not self.up:
            return out, None
        # OpenGait reconstructs from the softmax output, but from the *pre-BN* logits otherwise.
        u_x = self.up_sampling(out if self.softmax else d_x)
        return out, F.mse_loss(u_x, x)


# --------------------------------------------------------------------------------------------------
# DINOv2 (Hugging Face Dinov2Model) under the original DINOv2 / OpenGait key names

# Hugging Face key (transformers ≥ 5 names, then the 4.x names) → (OpenGait key, q/k/v slot or None).
_HF_TO_OPENGAIT: tuple[tuple[str, str, int | None], ...] = (
    (r"embeddings\.cls_token", "cls_token", None),
    (r"embeddings\.mask_token", "mask_token", None),
    (r"embeddings\.position_embeddings", "pos_embed", None),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1", None),
    (r"encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3", None),
    (
        r"encoder\.layer\.(\d+)\.attention\.(?:q_proj|attention\.query)\.(weight|bias)",
        r"blocks.\1.attn.qkv.\2",
        0,
    ),
    (
        r"encoder\.layer\.(\d+)\.attention\.(?:k_proj|attention\.key)\.(weight|bias)",
        r"blocks.\1.attn.qkv.\2",
        1,
    ),
    (
        r"encoder\.layer\.(\d+)\.attention\.(?:v_proj|attention\.value)\.(weight|bias)",
        r"blocks.\1.attn.qkv.\2",
        2,
    ),
    (
        r"encoder\.layer\.(\d+)\.attention\.(?:o_proj|output\.dense)\.(weight|bias)",
        r"blocks.\1.attn.proj.\2",
        None,
    ),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma", None),
    (r"encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp.\2.\3", None),
    (r"layernorm\.(weight|bias)", r"norm.\1", None),
)


def opengait_dinov2_names(hf_keys: Iterable[str]) -> dict[str, list[tuple[str, int | None]]]:
    """Map a Hugging Face ``Dinov2Model`` state-dict key set to OpenGait's DINOv2 names.

    Returns ``{opengait_key: [(hf_key, slot), ...]}``; the fused ``attn.qkv`` key lists its three HF
    keys with slots 0, 1, 2 (query, key, value: the order DINOv2's ``qkv`` reshape uses). A key that
    fits no rule (register tokens, SwiGLU FFN, ...) raises: BigGait only uses the plain ViT.
    """
    table: dict[str, list[tuple[str, int | None]]] = {}
    for key in hf_keys:
        for pattern, target, slot in _HF_TO_OPENGAIT:
            match = re.fullmatch(pattern, key)
            if match:
                table.setdefault(match.expand(target), []).append((key, slot))
                break
        else:
            raise ValueError(
                f"Dinov2Model key {key!r} has no OpenGait DINOv2 counterpart (unsupported variant)"
            )
    for og_key, entries in table.items():
        entries.sort(key=lambda e: -1 if e[1] is None else e[1])
        slots = [slot for _, slot in entries]
        if slots not in ([None], [0, 1, 2]):
            raise ValueError(f"inconsistent Dinov2Model keys for {og_key}: {entries}")
    return table


def mid_block_indices(depth: int, count: int = 4) -> list[int]:
    """Blocks whose outputs BigGait concatenates: evenly spaced, ending at the last ([2, 5, 8, 11] of 12)."""
    if depth < count:
        raise ValueError(f"BigGait concatenates {count} intermediate blocks; the ViT has only {depth}")
    return [int(i * depth / count + depth / count - 1) for i in range(count)]


def _opengait_interpolate_pos_encoding(
    self: nn.Module, embeddings: Tensor, height: int, width: int
) -> Tensor:
    """DINOv2's own position-embedding resize (bound onto HF's ``Dinov2Embeddings``).

    Hugging Face resizes the grid to an exact size; DINOv2 (and so every BigGait checkpoint) uses
    scale factors ``(grid + 0.1) / sqrt(N)``, which makes bicubic sample at slightly different
    positions. We keep the original so that official heads see the features they were trained on.
    """
    pos_embed = self.position_embeddings
    npatch = embeddings.shape[1] - 1
    num = pos_embed.shape[1] - 1
    if npatch == num and height == width:
        return pos_embed
    dtype = pos_embed.dtype
    pos = pos_embed.float()
    dim = embeddings.shape[-1]
    side = math.sqrt(num)
    patch = self.patch_embeddings.patch_size
    h0, w0 = height // patch[0] + 0.1, width // patch[1] + 0.1
    grid = pos[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(h0 / side, w0 / side), mode="bicubic")
    if (grid.shape[-2], grid.shape[-1]) != (int(h0), int(w0)):
        raise RuntimeError(
            f"position-embedding resize gave {tuple(grid.shape[-2:])}, wanted {(int(h0), int(w0))}"
        )
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos[:, :1], grid), dim=1).to(dtype)


class DINOv2Backbone(nn.Module):
    """A Hugging Face ``Dinov2Model`` that reads and writes OpenGait's DINOv2 key names.

    ``forward(pixels [N, 3, H, W])`` → (``last`` [N, T, C]: the final block after the final LayerNorm,
    ``mid`` [N, T, 4C]: the outputs of the four :func:`mid_block_indices` blocks concatenated and passed
    through a fresh non-affine LayerNorm (eps 1e-6)); patch tokens only (the CLS token is dropped),
    T = (H/14)·(W/14).

    Key layout: the HF model lives in ``self.model`` (so ``named_parameters()`` shows HF names), but
    ``state_dict()`` emits, and ``load_state_dict()`` accepts, the original DINOv2 names that BigGait
    checkpoints store under ``backbone.``: ``cls_token``, ``pos_embed``, ``mask_token``,
    ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
    ls2.gamma}.*``, ``norm.*``. The fused ``qkv`` [3C, C] is split into HF's query/key/value [C, C]
    (rows 0:C, C:2C, 2C:3C) on load and concatenated back on save.

    ``pretrained`` and ``source`` record where the weights came from, for the report.
    """

    def __init__(self, model: nn.Module, *, pretrained: bool, source: str | None = None) -> None:
        super().__init__()
        self.model = model
        config = model.config
        if getattr(config, "use_swiglu_ffn", False):
            raise ValueError("BigGait's DINOv2 uses an MLP FFN; a SwiGLU Dinov2 config is not supported")
        self.hidden_size = int(config.hidden_size)
        self.depth = int(config.num_hidden_layers)
        patch = config.patch_size
        self.patch_size = int(patch if isinstance(patch, int) else patch[0])
        self.mid_indices = mid_block_indices(self.depth)
        self.pretrained = pretrained
        self.source = source
        embeddings = model.embeddings
        embeddings.interpolate_pos_encoding = types.MethodType(_opengait_interpolate_pos_encoding, embeddings)
        self._names = opengait_dinov2_names(model.state_dict().keys())
        self.register_state_dict_post_hook(_dinov2_state_dict_to_opengait)
        self.register_load_state_dict_pre_hook(_dinov2_state_dict_from_opengait)

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        hidden = out.hidden_states  # (embeddings, block 0, ..., block L-1)
        if len(hidden) != self.depth + 1:
            raise RuntimeError(f"Dinov2Model returned {len(hidden)} hidden states for {self.depth} blocks")
        mid = torch.cat([hidden[i + 1] for i in self.mid_indices], dim=-1)
        mid = F.layer_norm(mid, (mid.shape[-1],), eps=1e-6)
        return out.last_hidden_state[:, 1:], mid[:, 1:]

    def describe(self) -> dict[str, object]:
        """Plain-data description for reports: architecture, whether pretrained, where from."""
        return {
            "pretrained": self.pretrained,
            "source": self.source,
            "hidden_size": self.hidden_size,
            "layers": self.depth,
            "heads": int(self.model.config.num_attention_heads),
            "patch_size": self.patch_size,
            "mid_blocks": list(self.mid_indices),
            "trainable": any(p.requires_grad for p in self.parameters()),
        }


def _dinov2_state_dict_to_opengait(
    module: DINOv2Backbone, state_dict: MutableMapping[str, Tensor], prefix: str, local_metadata: object
) -> None:
    """state_dict post-hook: rename ``{prefix}model.<HF key>`` to ``{prefix}<OpenGait key>``, fusing qkv."""
    inner = prefix + "model."
    for og_key, entries in module._names.items():
        tensors = [state_dict.pop(inner + hf_key) for hf_key, _ in entries]
        state_dict[prefix + og_key] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
    metadata = getattr(state_dict, "_metadata", None)
    if isinstance(metadata, dict):
        for key in [k for k in metadata if k == inner[:-1] or k.startswith(inner)]:
            del metadata[key]


def _dinov2_state_dict_from_opengait(
    module: DINOv2Backbone,
    state_dict: MutableMapping[str, Tensor],
    prefix: str,
    local_metadata: object,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """load_state_dict pre-hook: rename OpenGait DINOv2 keys under ``prefix`` to the HF keys, splitting
    ``qkv``. Keys already in HF layout pass through; anything else is left for the strict check."""
    inner = prefix + "model."
    for og_key, entries in module._names.items():
        value = state_dict.pop(prefix + og_key, None)
        if value is None:
            continue
        if len(entries) == 1:
            state_dict[inner + entries[0][0]] = value
            continue
        if value.shape[0] % 3:
            error_msgs.append(f"{prefix + og_key}: fused qkv of shape {tuple(value.shape)} is not 3 × C rows")
            continue
        for (hf_key, _), part in zip(entries, value.chunk(3, dim=0), strict=True):
            state_dict[inner + hf_key] = part


def dinov2_config_from_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, object]:
    """Infer ``Dinov2Config`` arguments from an original-layout DINOv2 state dict (``dinov2_vits14_pretrain.pth``).

    Width from ``cls_token``, depth from the ``blocks.N`` indices, patch size from the projection,
    the pretraining image size from the ``pos_embed`` grid, the MLP ratio from ``fc1``; DINOv2 uses
    64-dimensional heads for every size, so heads = width / 64.
    """
    try:
        hidden = int(state_dict["cls_token"].shape[-1])
        patch = int(state_dict["patch_embed.proj.weight"].shape[-1])
        positions = int(state_dict["pos_embed"].shape[1]) - 1
        mlp_hidden = int(state_dict["blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as exc:
        raise ValueError(f"not an original-layout DINOv2 state dict: key {exc} is missing") from exc
    if any(".w12." in k or ".w3." in k for k in state_dict):
        raise ValueError("this DINOv2 state dict uses a SwiGLU FFN (ViT-g); BigGait uses the MLP variants")
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f"pos_embed holds {positions} patch positions, not a square grid")
    if hidden % 64:
        raise ValueError(f"DINOv2 width {hidden} is not a multiple of its 64-dimensional heads")
    if mlp_hidden % hidden:
        raise ValueError(f"MLP width {mlp_hidden} is not a whole multiple of the ViT width {hidden}")
    return {
        "hidden_size": hidden,
        "num_hidden_layers": depth,
        "num_attention_heads": hidden // 64,
        "patch_size": patch,
        "image_size": side * patch,
        "mlp_ratio": mlp_hidden // hidden,
        "layerscale_value": 1.0,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "use_swiglu_ffn": False,
    }
