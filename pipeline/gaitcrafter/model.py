"""The GaitCrafter denoiser: a diffusers ``UNet3DConditionModel`` on silhouette clips, conditioned on
identity and covariates through four condition tokens.

Conditioning path (the paper says only "identity embeddings" and "controllable covariates"; the
details below are our design):

* :class:`ConditionEncoder` holds a learned identity table (one row per training identity), a view
  table (the dataset's view labels), clothing (normal/coat) and bag (none/bag) tables, a learned
  *null* token per slot and a slot embedding. A sample's condition is four tokens
  ``[identity, view, clothing, bag]`` → LayerNorm → ``[n, 4, cond_dim]``.
* The tokens enter the UNet twice: as the cross-attention context (``encoder_hidden_states``) of the
  cross-attention levels, and flattened (``[n, 4·cond_dim]``) through the time embedding's
  ``cond_proj`` (diffusers' ``time_cond_proj_dim``), which scales/shifts every ResNet block — so the
  condition also reaches levels that have no attention.
* ``any`` (unknown covariate, unconditioned identity) *is* the slot's null token; classifier-free
  guidance drops slots to it during training, so ``any`` means "marginalise over this covariate".
* Identities are given as weight vectors over the identity table (``[n, n_identities]``): a one-hot
  row is a training identity, a convex row a *novel* identity (:func:`novel_identity`), a zero row the
  null token. The LayerNorm after the mix keeps a blended token at the scale of a real one.

Pixel space: a clip ``[n, 1, T, 64, 44]`` in [-1, 1] is pixel-unshuffled per frame by ``patch``
(lossless space-to-depth) to ``[n, patch², T, 64/patch, 44/patch]`` so a CPU-sized UNet never works at
full resolution, and the prediction is shuffled back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.gaitcrafter.config import ANY, BAG, CLOTHING, HEIGHT, WIDTH, GaitCrafterConfig, check_value

SLOTS = ("identity", "view", "clothing", "bag")
# Identity weights count as convex when they are >= 0 and sum to 1 within this tolerance.
CONVEX_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Vocabulary:
    """The values each condition slot can take (``any`` is always allowed and means the null token)."""

    identities: tuple[str, ...]
    views: tuple[str, ...]
    clothing: tuple[str, ...] = CLOTHING
    bag: tuple[str, ...] = BAG

    def __post_init__(self) -> None:
        for slot in SLOTS:
            values = self.values(slot)
            if ANY in values:
                raise ValueError(f"gaitcrafter: '{ANY}' cannot be a {slot} label (it means 'unconditioned')")
            if len(set(values)) != len(values):
                raise ValueError(f"gaitcrafter: duplicate {slot} labels in {list(values)}")
        if not self.identities:
            raise ValueError("gaitcrafter: the vocabulary needs at least one identity")
        if not self.views:
            raise ValueError("gaitcrafter: the vocabulary needs at least one view")

    def values(self, slot: str) -> tuple[str, ...]:
        """The labels of ``slot`` (one of :data:`SLOTS`)."""
        table = {"identity": self.identities, "view": self.views, "clothing": self.clothing, "bag": self.bag}
        if slot not in table:
            raise ValueError(f"gaitcrafter: unknown condition slot {slot!r}; slots are {list(SLOTS)}")
        return table[slot]

    def index(self, slot: str, value: str) -> int:
        """Table row of ``value`` in ``slot`` (-1 = ``any``); unknown values are an error naming them."""
        allowed = self.values(slot)
        text = check_value(slot, value, allowed)
        return -1 if text == ANY else allowed.index(text)

    def as_plain(self) -> dict[str, list[str]]:
        return {
            "identities": list(self.identities),
            "views": list(self.views),
            "clothing": list(self.clothing),
            "bag": list(self.bag),
        }

    @classmethod
    def from_plain(cls, values: Mapping[str, Sequence[str]]) -> Vocabulary:
        return cls(
            identities=tuple(values["identities"]),
            views=tuple(values["views"]),
            clothing=tuple(values.get("clothing", CLOTHING)),
            bag=tuple(values.get("bag", BAG)),
        )


@dataclass
class ConditionBatch:
    """Conditions of n samples: identity weights [n, n_identities] (zero row = any), view/clothing/bag [n]
    table indices (-1 = any)."""

    identity: Tensor  # [n, n_identities] float
    view: Tensor  # [n] int64
    clothing: Tensor  # [n] int64
    bag: Tensor  # [n] int64

    def __len__(self) -> int:
        return int(self.identity.shape[0])

    def to(self, device: str | torch.device) -> ConditionBatch:
        return ConditionBatch(*(t.to(device) for t in (self.identity, self.view, self.clothing, self.bag)))

    def select(self, rows: Tensor | Sequence[int]) -> ConditionBatch:
        index = torch.as_tensor(rows, dtype=torch.long)
        return ConditionBatch(*(t[index] for t in (self.identity, self.view, self.clothing, self.bag)))


def identity_weights(weights: Mapping[int | str, float] | str, vocabulary: Vocabulary) -> Tensor:
    """A weight vector [n_identities] from ``{identity index or label: weight}`` (or one label, or ``any``).

    Weights must be finite, >= 0 and sum to 1 (a convex combination); ``any`` gives the zero vector
    (the null token). Errors name the offending key or the sum.
    """
    n = len(vocabulary.identities)
    out = torch.zeros(n, dtype=torch.float32)
    if isinstance(weights, str):
        if weights == ANY:
            return out
        weights = {weights: 1.0}
    if not weights:
        raise ValueError("gaitcrafter: identity weights are empty (use 'any' for an unconditioned identity)")
    for key, value in weights.items():
        if isinstance(key, str):
            if key not in vocabulary.identities:
                raise ValueError(
                    f"gaitcrafter: unknown identity {key!r}; the model knows {len(vocabulary.identities)} "
                    f"training identities ({list(vocabulary.identities[:10])}...)"
                )
            index = vocabulary.identities.index(key)
        else:
            index = int(key)
            if not 0 <= index < n:
                raise ValueError(f"gaitcrafter: identity index {index} is out of range [0, {n})")
        weight = float(value)
        if not (weight >= 0.0 and weight != float("inf")):
            raise ValueError(f"gaitcrafter: identity weight for {key!r} must be finite and >= 0, got {value}")
        out[index] += weight
    total = float(out.sum())
    if abs(total - 1.0) > CONVEX_TOLERANCE:
        raise ValueError(f"gaitcrafter: identity weights must sum to 1 (a convex combination), got {total}")
    return out


def check_identity_rows(identity: Tensor) -> None:
    """Every row is either all zero (``any``) or convex; otherwise an error naming the row."""
    if identity.dim() != 2:
        raise ValueError(
            f"gaitcrafter: identity weights must be [n, n_identities], got {tuple(identity.shape)}"
        )
    if not torch.isfinite(identity).all():
        raise ValueError("gaitcrafter: identity weights contain NaN or inf")
    sums = identity.sum(dim=1)
    for row in range(identity.shape[0]):
        if (identity[row] < 0).any():
            raise ValueError(f"gaitcrafter: identity weights of row {row} have negative entries")
        total = float(sums[row])
        if total != 0.0 and abs(total - 1.0) > CONVEX_TOLERANCE:
            raise ValueError(f"gaitcrafter: identity weights of row {row} sum to {total}, not 0 (any) or 1")


class ConditionEncoder(nn.Module):
    """Identity + covariate tables, one null token per slot → condition tokens [n, 4, dim]."""

    def __init__(self, vocabulary: Vocabulary, dim: int) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.dim = int(dim)
        self.identity = nn.Embedding(len(vocabulary.identities), dim)
        self.view = nn.Embedding(len(vocabulary.views), dim)
        self.clothing = nn.Embedding(len(vocabulary.clothing), dim)
        self.bag = nn.Embedding(len(vocabulary.bag), dim)
        # Null tokens start at the scale of the tables (N(0, 1)) so dropping a slot is a real change.
        self.null = nn.Parameter(torch.randn(len(SLOTS), dim))
        self.slot = nn.Parameter(torch.randn(len(SLOTS), dim) * 0.1)
        self.norm = nn.LayerNorm(dim)

    def identity_vector(self, weights: Tensor) -> Tensor:
        """Convex mix of identity rows: weights [n, n_identities] → [n, dim] (before the null/norm step)."""
        return weights.to(self.identity.weight.dtype) @ self.identity.weight

    def raw_tokens(self, cond: ConditionBatch) -> tuple[Tensor, Tensor]:
        """(values [n, 4, dim] with zeros where a slot is ``any``, is_any [n, 4] bool)."""
        check_identity_rows(cond.identity)
        n = len(cond)
        is_any = torch.stack(
            [cond.identity.sum(dim=1) == 0, cond.view < 0, cond.clothing < 0, cond.bag < 0], dim=1
        )
        values = [self.identity_vector(cond.identity)]
        for slot, index in (("view", cond.view), ("clothing", cond.clothing), ("bag", cond.bag)):
            table: nn.Embedding = getattr(self, slot)
            if (index >= table.num_embeddings).any():
                raise ValueError(
                    f"gaitcrafter: {slot} index {int(index.max())} is out of range (table has {table.num_embeddings})"
                )
            values.append(table(index.clamp(min=0)))
        stacked = torch.stack(values, dim=1)
        if stacked.shape != (n, len(SLOTS), self.dim):
            raise AssertionError(f"condition tokens have shape {tuple(stacked.shape)}")
        return stacked, is_any

    def forward(self, cond: ConditionBatch, drop: Tensor | None = None) -> Tensor:
        """Tokens [n, 4, dim]; slots that are ``any`` or where ``drop`` [n, 4] is True take the null token."""
        values, use_null = self.raw_tokens(cond)
        if drop is not None:
            if drop.shape != use_null.shape:
                raise ValueError(f"drop mask must be {tuple(use_null.shape)}, got {tuple(drop.shape)}")
            use_null = use_null | drop.to(use_null.device, torch.bool)
        null = self.null.unsqueeze(0).expand_as(values)
        tokens = torch.where(use_null.unsqueeze(-1), null, values)
        return self.norm(tokens + self.slot)

    def null_tokens(self, n: int) -> Tensor:
        """The fully unconditioned tokens [n, 4, dim] (classifier-free guidance's other branch)."""
        return self.norm(self.null + self.slot).unsqueeze(0).expand(n, -1, -1)


def novel_identity(encoder: ConditionEncoder, weights: Mapping[int | str, float]) -> Tensor:
    """The identity embedding [dim] of a novel identity: a validated convex mix of identity rows.

    A single weight of 1 returns exactly that identity's row (one-hot matrix product adds exact zeros).
    """
    vector = identity_weights(dict(weights), encoder.vocabulary).to(encoder.identity.weight.device)
    return encoder.identity_vector(vector.unsqueeze(0))[0]


def patchify(x: Tensor, patch: int) -> Tensor:
    """[n, c, T, H, W] → [n, c·patch², T, H/patch, W/patch] (per-frame pixel unshuffle)."""
    if patch == 1:
        return x
    n, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    frames = F.pixel_unshuffle(frames, patch)
    return frames.reshape(n, t, c * patch * patch, h // patch, w // patch).permute(0, 2, 1, 3, 4)


def unpatchify(x: Tensor, patch: int) -> Tensor:
    """Inverse of :func:`patchify`."""
    if patch == 1:
        return x
    n, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    frames = F.pixel_shuffle(frames, patch)
    return frames.reshape(n, t, c // (patch * patch), h * patch, w * patch).permute(0, 2, 1, 3, 4)


class TemporalConv3d(nn.Conv3d):
    """A Conv3d whose kernel spans time only, (k, 1, 1), computed as a conv2d over [n, c, T, h·w].

    Same parameters and result (to float rounding, ~1e-6): PyTorch's CPU conv3d takes its slow
    im2col path for batches under 16 (sampling runs 1–4 clips), 2–3.5× slower than oneDNN's conv2d
    on UNet3D's temporal layers (docs/architecture.md, "The demo's budget").
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        n, c, t, h, w = input.shape
        out = F.conv2d(
            input.reshape(n, c, t, h * w),
            weight.squeeze(-1),  # [o, i, k, 1, 1] → [o, i, k, 1]
            bias,
            (self.stride[0], 1),
            (self.padding[0], 0),
            (self.dilation[0], 1),
            self.groups,
        )
        return out.reshape(n, out.shape[1], out.shape[2], h, w)


def is_temporal_conv(module: nn.Module) -> bool:
    """A plain zero-padded Conv3d with a (k, 1, 1) kernel, stride and dilation 1 across space."""
    return (
        type(module) is nn.Conv3d
        and tuple(module.kernel_size[1:]) == (1, 1)
        and tuple(module.stride[1:]) == (1, 1)
        and tuple(module.dilation[1:]) == (1, 1)
        and tuple(module.padding[1:]) == (0, 0)
        and module.padding_mode == "zeros"
    )


def use_temporal_conv2d(model: nn.Module) -> int:
    """Compute every time-only Conv3d of ``model`` as :class:`TemporalConv3d` (in place, same
    state dict); returns how many were switched."""
    switched = 0
    for module in model.modules():
        if is_temporal_conv(module):
            module.__class__ = TemporalConv3d
            switched += 1
    return switched


class GaitCrafter(nn.Module):
    """Condition encoder + UNet3D; ``forward(noisy [n, 1, T, 64, 44], t [n], tokens [n, 4, d]) → ε``."""

    def __init__(self, config: GaitCrafterConfig, vocabulary: Vocabulary) -> None:
        super().__init__()
        from diffusers import UNet3DConditionModel

        self.config = config
        self.vocabulary = vocabulary
        self.encoder = ConditionEncoder(vocabulary, config.cond_dim)
        channels = config.patch * config.patch
        down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in config.attention)
        up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(config.attention))
        self.unet = UNet3DConditionModel(
            sample_size=None,
            in_channels=channels,
            out_channels=channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            cross_attention_dim=config.cond_dim,
            attention_head_dim=config.attention_heads,
            time_cond_proj_dim=len(SLOTS) * config.cond_dim,
        )
        use_temporal_conv2d(self.unet)

    def forward(self, noisy: Tensor, timesteps: Tensor, tokens: Tensor) -> Tensor:
        n, c, _, h, w = noisy.shape
        height, width = self.config.diffusion_size
        if c != 1 or (h, w) != (height, width):
            raise ValueError(
                f"GaitCrafter expects clips [n, 1, T, {height}, {width}], got {tuple(noisy.shape)}"
            )
        if tokens.shape != (n, len(SLOTS), self.config.cond_dim):
            raise ValueError(
                f"GaitCrafter expects condition tokens [{n}, {len(SLOTS)}, {self.config.cond_dim}], "
                f"got {tuple(tokens.shape)}"
            )
        x = patchify(noisy, self.config.patch)
        out = self.unet(
            x,
            timesteps,
            encoder_hidden_states=tokens,
            timestep_cond=tokens.reshape(n, -1),
            return_dict=False,
        )[0]
        return unpatchify(out, self.config.patch)

    def conditions(
        self,
        identities: Sequence[str | Mapping[int | str, float]],
        views: Sequence[str],
        clothing: Sequence[str],
        bags: Sequence[str],
    ) -> ConditionBatch:
        """A validated :class:`ConditionBatch` from labels (``any`` allowed; mixes as ``{label: weight}``)."""
        return make_conditions(self.vocabulary, identities, views, clothing, bags)


def make_conditions(
    vocabulary: Vocabulary,
    identities: Sequence[str | Mapping[int | str, float]],
    views: Sequence[str],
    clothing: Sequence[str],
    bags: Sequence[str],
) -> ConditionBatch:
    """Labels → :class:`ConditionBatch`; unknown values are errors naming the slot and the value."""
    n = len(identities)
    lengths = {"views": len(views), "clothing": len(clothing), "bags": len(bags)}
    if any(length != n for length in lengths.values()):
        raise ValueError(f"gaitcrafter: {n} identities but {lengths}")
    return ConditionBatch(
        identity=torch.stack([identity_weights(i, vocabulary) for i in identities])
        if n
        else torch.zeros(0, len(vocabulary.identities)),
        view=torch.tensor([vocabulary.index("view", v) for v in views], dtype=torch.long),
        clothing=torch.tensor([vocabulary.index("clothing", v) for v in clothing], dtype=torch.long),
        bag=torch.tensor([vocabulary.index("bag", v) for v in bags], dtype=torch.long),
    )


def to_diffusion_space(clips: Tensor, downsample: int) -> Tensor:
    """Clips [n, 1, T, 64, 44] in [-1, 1] → [n, 1, T, 64/d, 44/d] (per-frame average pooling)."""
    if downsample == 1:
        return clips
    return F.avg_pool3d(clips, kernel_size=(1, downsample, downsample))


def to_pixel_space(clips: Tensor) -> Tensor:
    """Diffusion-space clips [n, 1, T, h, w] → [n, 1, T, 64, 44] (per-frame bilinear upsampling)."""
    if clips.shape[-2:] == (HEIGHT, WIDTH):
        return clips
    return F.interpolate(clips, size=(clips.shape[2], HEIGHT, WIDTH), mode="trilinear", align_corners=False)


def build_model(config: GaitCrafterConfig, vocabulary: Vocabulary) -> GaitCrafter:
    return GaitCrafter(config, vocabulary)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "SLOTS",
    "ConditionBatch",
    "TemporalConv3d",
    "ConditionEncoder",
    "GaitCrafter",
    "Vocabulary",
    "build_model",
    "check_identity_rows",
    "count_parameters",
    "identity_weights",
    "make_conditions",
    "novel_identity",
    "patchify",
    "to_diffusion_space",
    "to_pixel_space",
    "unpatchify",
    "use_temporal_conv2d",
]
