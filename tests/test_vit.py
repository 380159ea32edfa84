"""Our plain-PyTorch DINOv2 ViT (pipeline/recognisers/vit.py) against Hugging Face's Dinov2Model."""

from __future__ import annotations

import pytest
import torch

from pipeline.recognisers.modules import DINOv2Backbone
from pipeline.recognisers.vit import ViTConfig, ViTModel

FIELDS = {"hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 3, "image_size": 56, "mlp_ratio": 4}


def pair(seed: int = 0):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    hf = Dinov2Model(Dinov2Config(**FIELDS, layer_norm_eps=1e-6)).eval()
    ours = ViTModel(ViTConfig.from_fields({**FIELDS, "layer_norm_eps": 1e-6})).eval()
    # Random layer scales and biases, so that a swapped or skipped term cannot hide behind 1s and 0s.
    state = {k: torch.randn_like(v) * 0.2 + (1.0 if "norm" in k and k.endswith("weight") else 0.0)
             for k, v in hf.state_dict().items()}  # fmt: skip
    hf.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    return hf, ours


def test_same_keys_and_shapes_as_dinov2model():
    hf, ours = pair()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in hf.state_dict().items()
    }


@pytest.mark.parametrize("size", [(56, 56), (112, 56), (70, 42)])
def test_same_outputs_as_dinov2model(size):
    hf, ours = pair(seed=1)
    pixels = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, output_hidden_states=True)
        out = ours(pixel_values=pixels, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == FIELDS["num_hidden_layers"] + 1
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-4)


def test_backbone_wrapper_gives_the_same_features_and_opengait_keys():
    hf, ours = pair(seed=2)
    a, b = DINOv2Backbone(hf, pretrained=False), DINOv2Backbone(ours, pretrained=False)
    assert list(a.state_dict()) == list(b.state_dict())  # OpenGait names, qkv fused, same order
    pixels = torch.randn(1, 3, 112, 56)  # 2:1, the OpenGait position-embedding resize
    with torch.no_grad():
        for x, y in zip(a(pixels), b(pixels), strict=True):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown field"):
        ViTConfig.from_fields({"hidden_sise": 48})
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig.from_fields({"hidden_size": 50, "num_attention_heads": 3})
    with pytest.raises(ValueError, match="MLP FFN"):
        ViTConfig.from_fields({"use_swiglu_ffn": True})
