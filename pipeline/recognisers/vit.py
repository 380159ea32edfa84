"""A plain-PyTorch DINOv2 ViT with Hugging Face ``Dinov2Model``'s parameter names and outputs.

Why it exists: importing ``transformers`` costs ~3 s of CPU per process, and every evaluation job builds
BigGait. A *random* BigGait backbone (the CPU world's, or the ViT-S/14 skeleton an official BigGait
checkpoint is loaded into) needs no Hugging Face code, so :func:`pipeline.recognisers.models.random_dinov2`
builds this one. Pretrained Hugging Face folders still load through ``Dinov2Model.from_pretrained``
(:mod:`pipeline.recognisers.checkpoints`).

It is the same network as ``Dinov2Model`` (MLP FFN, no register tokens): its ``state_dict`` keys are the
transformers ≥ 5 names (``encoder.layer.N.attention.q_proj`` …), so :class:`~pipeline.recognisers.modules.
DINOv2Backbone` maps them to OpenGait's names unchanged, and ``tests/test_vit.py`` checks that both give the
same outputs for the same weights. Shapes: pixels ``[n, 3, h, w]`` → tokens ``[n, 1 + (h/p)(w/p), c]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ViTConfig:
    """The ``Dinov2Config`` fields BigGait's ViT uses (same names and defaults as transformers')."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: int = 4
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    qkv_bias: bool = True
    layerscale_value: float = 1.0
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    initializer_range: float = 0.02
    use_swiglu_ffn: bool = False
    hidden_act: str = "gelu"

    @classmethod
    def from_fields(cls, values: dict[str, object]) -> ViTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"ViT config: unknown field(s) {unknown}; known {sorted(known)}")
        config = cls(**values)  # type: ignore[arg-type]
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"ViT config: hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}"
            )
        if config.use_swiglu_ffn or config.hidden_act != "gelu":
            raise ValueError("ViT config: only DINOv2's MLP FFN with GELU is supported (as in BigGait)")
        if config.drop_path_rate:
            raise ValueError("ViT config: drop_path_rate > 0 is not supported (BigGait trains without it)")
        return config


class ViTOutput(NamedTuple):
    last_hidden_state: Tensor  # [n, t, c] after the final LayerNorm
    hidden_states: tuple[Tensor, ...]  # (embeddings, block 0, …, block L-1), each [n, t, c]


class PatchEmbeddings(nn.Module):
    """[n, 3, h, w] → [n, (h/p)(w/p), c] (a stride-p convolution)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.patch_size = (config.patch_size, config.patch_size)
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixels: Tensor) -> Tensor:
        return self.projection(pixels).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    """Patch tokens with a CLS token in front and position embeddings added: [n, 1 + T, c]."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        grid = config.image_size // config.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, config.hidden_size))  # unused; kept for the key set
        self.patch_embeddings = PatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, config.hidden_size))

    def interpolate_pos_encoding(self, embeddings: Tensor, height: int, width: int) -> Tensor:
        """Resize the position grid to the input's patch grid (DINOv2Backbone rebinds this to OpenGait's)."""
        count = embeddings.shape[1] - 1
        stored = self.position_embeddings.shape[1] - 1
        if count == stored and height == width:
            return self.position_embeddings
        side = int(math.sqrt(stored))
        patch = self.patch_embeddings.patch_size[0]
        dim = embeddings.shape[-1]
        grid = self.position_embeddings[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid.float(), size=(height // patch, width // patch), mode="bicubic", align_corners=False
        ).to(embeddings.dtype)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((self.position_embeddings[:, :1], grid), dim=1)

    def forward(self, pixels: Tensor) -> Tensor:
        n, _, height, width = pixels.shape
        tokens = self.patch_embeddings(pixels.to(self.patch_embeddings.projection.weight.dtype))
        tokens = torch.cat((self.cls_token.expand(n, -1, -1), tokens), dim=1)
        return tokens + self.interpolate_pos_encoding(tokens, height, width)


class Attention(nn.Module):
    """Multi-head self-attention, [n, t, c] → [n, t, c]."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = config.hidden_size
        self.heads = config.num_attention_heads
        self.q_proj = nn.Linear(c, c, bias=config.qkv_bias)
        self.k_proj = nn.Linear(c, c, bias=config.qkv_bias)
        self.v_proj = nn.Linear(c, c, bias=config.qkv_bias)
        self.o_proj = nn.Linear(c, c)

    def forward(self, x: Tensor) -> Tensor:
        n, t, c = x.shape

        def split(y: Tensor) -> Tensor:  # [n, t, c] → [n, heads, t, c / heads]
            return y.view(n, t, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.o_proj(out.transpose(1, 2).reshape(n, t, c))


class LayerScale(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(config.layerscale_value * torch.ones(config.hidden_size))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.lambda1


class MLP(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.fc2 = nn.Linear(hidden, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Layer(nn.Module):
    """One pre-norm transformer block with layer scale, [n, t, c] → [n, t, c]."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = Attention(config)
        self.layer_scale1 = LayerScale(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.layer_scale2 = LayerScale(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x)))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class ViTModel(nn.Module):
    """``Dinov2Model``'s network: ``forward(pixel_values=[n, 3, h, w])`` → :class:`ViTOutput`."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self._initialise()

    def _initialise(self) -> None:
        """Transformers' Dinov2 initialisation: truncated normals (std ``initializer_range``) for the linear
        and convolution weights and for the CLS and position embeddings; zero biases and mask token."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.embeddings.position_embeddings, std=std)
        nn.init.trunc_normal_(self.embeddings.cls_token, std=std)

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = True) -> ViTOutput:
        x = self.embeddings(pixel_values)
        hidden = [x]
        for layer in self.encoder.layer:
            x = layer(x)
            hidden.append(x)
        return ViTOutput(self.layernorm(x), tuple(hidden) if output_hidden_states else ())


__all__ = ["ViTConfig", "ViTModel", "ViTOutput"]
