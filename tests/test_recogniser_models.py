"""OpenGait-compatible recognisers: key layout, parameter counts, shapes, pooling, checkpoints, DINOv2.

The expected state_dict keys are written out here from the "[verified]" key patterns of the OpenGait
reference notes (shared/reference/opengait.md §3), not read off our modules, so a renamed attribute
fails the strict-load tests. Full-size models are built once each (BigGait on the meta device: only
its parameter shapes matter there).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.recognisers import (
    CheckpointError,
    build_recogniser,
    load_dinov2,
    load_opengait_checkpoint,
    save_checkpoint,
)
from pipeline.recognisers.models import (
    close_mask,
    padding_resize,
    part_diversity_loss,
    select_body,
    sobel_connectivity,
)
from pipeline.recognisers.modules import (
    AttentionFusion,
    HorizontalPoolingPyramid,
    PackSequenceWrapper,
    mid_block_indices,
)

torch.set_num_threads(1)
TINY = {"class_num": 7, "width": 0.25}
BIGGAIT_TINY = {**TINY, "image_size": 56, "dinov2_config": {"hidden_size": 64, "num_attention_heads": 2}}

# --------------------------------------------------------------------------------------------------
# Expected key layouts, from the reference's [verified] patterns


def bn(prefix: str, affine: bool = True) -> list[str]:
    stats = [f"{prefix}.running_mean", f"{prefix}.running_var", f"{prefix}.num_batches_tracked"]
    return ([f"{prefix}.weight", f"{prefix}.bias"] if affine else []) + stats


def basic_block(prefix: str, downsample: bool) -> list[str]:
    keys = [f"{prefix}.conv1.weight", *bn(f"{prefix}.bn1"), f"{prefix}.conv2.weight", *bn(f"{prefix}.bn2")]
    return keys + ([f"{prefix}.downsample.0.weight", *bn(f"{prefix}.downsample.1")] if downsample else [])


def p3d_block(prefix: str, downsample: bool) -> list[str]:
    keys = [f"{prefix}.conv1.forward_block.0.weight", *bn(f"{prefix}.conv1.forward_block.1")]
    keys += [f"{prefix}.conv2.forward_block.0.weight", *bn(f"{prefix}.conv2.forward_block.1")]
    keys += [f"{prefix}.shortcut3d.weight", *bn(f"{prefix}.sbn")]
    return keys + ([f"{prefix}.downsample.0.weight", *bn(f"{prefix}.downsample.1")] if downsample else [])


def heads(prefix: str = "") -> list[str]:
    return [f"{prefix}FCs.fc_bin", f"{prefix}BNNecks.fc_bin", *bn(f"{prefix}BNNecks.bn1d")]


def p3d_stages(blocks: tuple[int, ...]) -> list[str]:
    keys = []
    for stage, count in zip((2, 3, 4), blocks[1:], strict=True):
        keys += [k for j in range(count) for k in p3d_block(f"layer{stage}.{j}", downsample=j == 0)]
    return keys


def deepgaitv2_keys(blocks: tuple[int, ...] = (1, 1, 1, 1)) -> list[str]:
    keys = ["layer0.forward_block.0.weight", *bn("layer0.forward_block.1")]
    keys += [k for j in range(blocks[0]) for k in basic_block(f"layer1.forward_block.{j}", downsample=False)]
    return keys + p3d_stages(blocks) + heads()


def fusion_keys(prefix: str) -> list[str]:
    conv = f"{prefix}conv.forward_block"
    return [f"{conv}.0.weight", *bn(f"{conv}.1"), f"{conv}.3.weight", *bn(f"{conv}.4"), f"{conv}.6.weight"]


def skeletongait_pp_keys(blocks: tuple[int, ...] = (1, 1, 1, 1)) -> list[str]:
    keys = []
    for stem in ("sil", "map"):
        keys += [f"{stem}_layer0.forward_block.0.weight", *bn(f"{stem}_layer0.forward_block.1")]
        keys += [k for j in range(blocks[0]) for k in basic_block(f"{stem}_layer1.forward_block.{j}", False)]
    return keys + fusion_keys("fusion.") + p3d_stages(blocks) + heads()


def dinov2_keys(depth: int, prefix: str = "") -> list[str]:
    keys = [
        f"{prefix}{k}"
        for k in ("cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias")
    ]
    for i in range(depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"{prefix}blocks.{i}.{part}.weight", f"{prefix}blocks.{i}.{part}.bias"]
        keys += [f"{prefix}blocks.{i}.ls1.gamma", f"{prefix}blocks.{i}.ls2.gamma"]
    return keys + [f"{prefix}norm.weight", f"{prefix}norm.bias"]


def biggait_keys(depth: int) -> list[str]:
    keys = dinov2_keys(depth, "backbone.")
    keys += [*bn("Denoising_Branch.bn_s", False), *bn("Denoising_Branch.bn_t", False)]
    keys += ["Denoising_Branch.down_sampling.0.weight", "Denoising_Branch.down_sampling.0.bias"]
    keys += [*bn("Denoising_Branch.down_sampling.1", False)]
    keys += ["Denoising_Branch.down_sampling.3.weight", "Denoising_Branch.down_sampling.3.bias"]
    keys += [*bn("Appearance_Branch.bn_s", False), *bn("Appearance_Branch.bn_t", False)]
    keys += ["Appearance_Branch.down_sampling.weight", "Appearance_Branch.down_sampling.bias"]
    keys += [*bn("Mask_Branch.bn_s", False), *bn("Mask_Branch.bn_t", False)]
    keys += [f"Mask_Branch.{m}.{p}" for m in ("down_sampling", "up_sampling") for p in ("weight", "bias")]
    for stem in ("pre_part", "pre_rgb"):
        base = f"gait_net.{stem}.forward_block"
        keys += [f"{base}.conv1.conv.weight", *bn(f"{base}.bn1"), *basic_block(f"{base}.layer1.0", False)]
    for stage in (2, 3, 4):
        keys += basic_block(f"gait_net.post_backbone.forward_block.layer{stage}.0", downsample=True)
    return keys + fusion_keys("gait_net.fusion.") + heads("gait_net.")


# --------------------------------------------------------------------------------------------------
# Full-size models: parameter counts and key shapes against the reference


@pytest.fixture(scope="module")
def full_deepgaitv2():
    return build_recogniser("deepgaitv2", class_num=250)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_deepgaitv2_full_size_matches_reference(full_deepgaitv2):
    model = full_deepgaitv2
    assert round(n_params(model) / 1e6, 2) == 9.06
    state = model.state_dict()
    assert len(state) == 97
    assert list(state) == deepgaitv2_keys()
    shapes = {
        "layer0.forward_block.0.weight": (64, 1, 3, 3),
        "layer2.0.conv1.forward_block.0.weight": (128, 64, 3, 3),
        "layer2.0.shortcut3d.weight": (128, 128, 3, 1, 1),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "layer4.0.downsample.0.weight": (512, 256, 1, 1, 1),
        "FCs.fc_bin": (16, 512, 256),
        "BNNecks.fc_bin": (16, 256, 250),
        "BNNecks.bn1d.weight": (4096,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_deepgaitv2_full_size_stage_shapes(full_deepgaitv2):
    """The [verified] shapes for [2, 1, s, 64, 44]: 64×44 → 32×22 → 16×11 → 16×11, 512 channels."""
    model = full_deepgaitv2.eval()
    seen = {}
    hooks = [
        getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o, k=i: seen.__setitem__(k, o.shape))
        for i in range(5)
    ]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 1, 64, 44))
    for h in hooks:
        h.remove()
    assert seen == {
        0: (2, 64, 3, 64, 44), 1: (2, 64, 3, 64, 44), 2: (2, 128, 3, 32, 22),
        3: (2, 256, 3, 16, 11), 4: (2, 512, 3, 16, 11),
    }  # fmt: skip
    assert out.embed_1.shape == out.embed_2.shape == (2, 256, 16)
    assert out.logits.shape == (2, 250, 16)


def test_skeletongait_full_size_is_deepgaitv2_with_two_input_channels(full_deepgaitv2):
    model = build_recogniser("skeletongait", class_num=250)
    assert model.modality == "skeleton_map"
    assert list(model.state_dict()) == deepgaitv2_keys()
    assert tuple(model.state_dict()["layer0.forward_block.0.weight"].shape) == (64, 2, 3, 3)
    assert n_params(model) == n_params(full_deepgaitv2) + 64 * 3 * 3  # one more input channel in layer0


def test_skeletongait_pp_full_size_matches_reference():
    model = build_recogniser("skeletongait++", class_num=250)
    assert round(n_params(model) / 1e6, 2) == 9.14
    state = model.state_dict()
    assert sorted(state) == sorted(skeletongait_pp_keys())
    shapes = {
        "sil_layer0.forward_block.0.weight": (64, 1, 3, 3),
        "map_layer0.forward_block.0.weight": (64, 2, 3, 3),
        "fusion.conv.forward_block.0.weight": (4, 128, 1, 1),
        "fusion.conv.forward_block.1.weight": (4,),
        "fusion.conv.forward_block.3.weight": (4, 4, 3, 3),
        "fusion.conv.forward_block.4.weight": (4,),
        "fusion.conv.forward_block.6.weight": (128, 4, 1, 1),
        "FCs.fc_bin": (16, 512, 256),
        "BNNecks.fc_bin": (16, 256, 250),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_biggait_full_size_matches_reference():
    with torch.device("meta"):
        model = build_recogniser("biggait", class_num=571, dinov2_config="vits14")
    backbone = sum(p.numel() for name, p in model.named_parameters() if name.startswith("backbone."))
    assert round(backbone / 1e6, 2) == 22.06
    assert round(model.describe()["parameters_outside_dinov2"] / 1e6, 2) == 10.65
    assert round(n_params(model) / 1e6, 1) == 32.7
    state = model.state_dict()
    assert sorted(state) == sorted(biggait_keys(depth=12))
    assert tuple(state["backbone.pos_embed"].shape) == (1, 1370, 384)
    assert tuple(state["backbone.blocks.11.attn.qkv.weight"].shape) == (1152, 384)
    assert tuple(state["gait_net.pre_part.forward_block.conv1.conv.weight"].shape) == (64, 16, 3, 3)
    assert tuple(state["gait_net.BNNecks.fc_bin"].shape) == (16, 256, 571)
    assert model.backbone.mid_indices == [2, 5, 8, 11]


# --------------------------------------------------------------------------------------------------
# Tiny models: shapes, pooling, the embedding switch, input checks


@pytest.mark.parametrize(
    ("name", "channels", "modality"),
    [
        ("deepgaitv2", 1, "silhouette"),
        ("skeletongait", 2, "skeleton_map"),
        ("skeletongait++", 3, "silhouette+skeleton_map"),
    ],
)
def test_tiny_models_shapes_and_training_step(name, channels, modality):
    torch.manual_seed(0)
    model = build_recogniser(name, **TINY)
    assert model.modality == modality
    out = model(torch.rand(3, 5, channels, 64, 44))
    assert out.embed_1.shape == out.embed_2.shape == (3, 256, 16)
    assert out.logits.shape == (3, 7, 16)
    assert out.aux_losses == {}
    (out.embed_1.square().mean() + out.logits.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_width_and_head_options():
    model = build_recogniser(
        "deepgaitv2", class_num=5, width=0.25, embed_dim=32, parts=8, blocks=(1, 2, 1, 1)
    )
    assert model.channels == (16, 32, 64, 128)
    assert "layer2.1.conv1.forward_block.0.weight" in model.state_dict()
    assert "layer2.1.downsample.0.weight" not in model.state_dict()
    assert list(model.state_dict()) == deepgaitv2_keys((1, 2, 1, 1))
    out = model.eval()(torch.rand(1, 4, 1, 64, 44))
    assert out.embed_1.shape == (1, 32, 8)
    assert out.logits.shape == (1, 5, 8)


def test_embedding_switch_use_emb2():
    torch.manual_seed(1)
    plain = build_recogniser("deepgaitv2", **TINY).eval()
    emb2 = build_recogniser("deepgaitv2", **TINY, use_emb2=True).eval()
    emb2.load_state_dict(plain.state_dict())
    x = torch.rand(2, 4, 1, 64, 44)
    with torch.no_grad():
        out_plain, out_emb2 = plain(x), emb2(x)
    assert torch.equal(plain.embedding(out_plain), out_plain.embed_1)
    assert torch.equal(emb2.embedding(out_emb2), out_emb2.embed_2)
    assert torch.allclose(out_plain.embed_1, out_emb2.embed_1)
    # embed_2 is the BNNeck feature, L2-normalised per part; embed_1 is not.
    assert torch.allclose(out_emb2.embed_2.norm(dim=1), torch.ones(2, 16), atol=1e-5)
    assert not torch.allclose(out_plain.embed_1.norm(dim=1), torch.ones(2, 16), atol=1e-2)


def test_pack_sequence_wrapper_packed_and_padded():
    tp = PackSequenceWrapper()
    a, b = torch.randn(1, 3, 4, 2, 2), torch.randn(1, 3, 2, 2, 2)
    packed = tp(torch.cat([a, b], dim=2), [4, 2])  # OpenGait's seqL layout: n = 1, frames concatenated
    assert torch.equal(packed, torch.cat([a.amax(2), b.amax(2)]))
    padded_b = torch.cat([b, torch.full((1, 3, 2, 2, 2), 99.0)], dim=2)  # padding that must be ignored
    padded = tp(torch.cat([a, padded_b]), [4, 2])
    assert torch.equal(padded, packed)
    assert torch.equal(tp(a, None), a.amax(2))
    with pytest.raises(ValueError, match="seq_lengths"):
        tp(torch.cat([a, padded_b]), [4, 5])
    with pytest.raises(ValueError, match="seq_lengths"):
        tp(torch.cat([a, b], dim=2), [3, 2])


def test_model_seq_lengths_packed_gives_one_embedding_per_sequence():
    torch.manual_seed(2)
    model = build_recogniser("deepgaitv2", **TINY).eval()
    frames = torch.rand(1, 9, 1, 64, 44)
    with torch.no_grad():
        packed = model(frames, seq_lengths=[4, 5])
        padded = model(torch.cat([frames[:, :5], frames[:, 4:]]), seq_lengths=[4, 5])
    assert packed.embed_1.shape == (2, 256, 16)
    assert packed.logits.shape == (2, 7, 16)
    assert padded.embed_1.shape == (2, 256, 16)
    with pytest.raises(ValueError, match="seq_lengths"):
        model(frames, seq_lengths=[4, 4])


def test_hpp_rejects_heights_that_do_not_split():
    assert HorizontalPoolingPyramid((4,))(torch.ones(1, 2, 8, 3)).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="not divisible"):
        HorizontalPoolingPyramid((16,))(torch.ones(1, 2, 12, 3))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.rand(2, 4, 2, 64, 44), "1 input channel"),
        (torch.rand(2, 4, 64, 44), r"\[n, s, c, h, w\]"),
        (torch.rand(2, 4, 1, 64, 44) * 255, "values in"),
        (torch.full((1, 2, 1, 64, 44), float("nan")), "values in"),
        (torch.rand(1, 2, 1, 60, 44), "parts"),
    ],
)
def test_bad_inputs_are_named(inputs, message):
    model = build_recogniser("deepgaitv2", **TINY)
    with pytest.raises(ValueError, match=message):
        model(inputs)


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown recogniser"):
        build_recogniser("gaitset", class_num=3)
    with pytest.raises(ValueError, match="unknown option"):
        build_recogniser("deepgaitv2", class_num=3, dinov2_path="x")
    with pytest.raises(ValueError, match="squeeze"):
        build_recogniser("skeletongait++", class_num=3, width=0.2)
    with pytest.raises(ValueError, match="unknown field"):
        build_recogniser("biggait", class_num=3, dinov2_config={"hidden": 64})
    with pytest.raises(ValueError, match="unknown option"):
        build_recogniser("deepgaitv2", class_num=3, fusion_squeeze=4)


@pytest.mark.parametrize("name", ["skeletongait++", "biggait"])
def test_fusion_squeeze_sizes_the_attention_fusion(name):
    """OpenGait's squeeze of 16 needs >= 16 first-stage channels; a smaller squeeze makes width 0.125 work."""
    extra = {"image_size": 28, "dinov2_config": {"hidden_size": 24, "num_hidden_layers": 4}} if name == "biggait" else {}
    with pytest.raises(ValueError, match="squeeze"):
        build_recogniser(name, class_num=3, width=0.125, **extra)
    model = build_recogniser(name, class_num=3, width=0.125, fusion_squeeze=4, **extra)
    fusion = model.fusion if name == "skeletongait++" else model.gait_net.fusion
    first_conv = fusion.conv.forward_block[0]
    assert (first_conv.in_channels, first_conv.out_channels) == (16, 2)  # 2 sources x 8 channels -> 8 / 4
    default = build_recogniser(name, class_num=3, width=0.25, **extra)
    default_fusion = default.fusion if name == "skeletongait++" else default.gait_net.fusion
    assert default_fusion.conv.forward_block[0].out_channels == 1  # 16 / 16, OpenGait's ratio


class FixedScores(torch.nn.Module):
    """Stands in for AttentionFusion's conv: returns given scores [1, L·c, 1, 1, 1] whatever the input."""

    def __init__(self, scores: Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: Tensor) -> Tensor:
        return self.scores.expand(x.shape[0], -1, *x.shape[2:])


@pytest.mark.parametrize(("layout", "hot_channel"), [("grouped", 1 * 16 + 2), ("interleaved", 2 * 2 + 1)])
def test_attention_fusion_score_layouts(layout, hot_channel):
    """Source 1 (the second input) wins channel 2 only: its score sits at d·c+k (grouped) or k·L+d (interleaved)."""
    fusion = AttentionFusion(16, squeeze_ratio=4, feat_len=2, layout=layout)
    scores = torch.zeros(1, 32, 1, 1, 1)
    scores[:, hot_channel] = 50.0
    fusion.conv = FixedScores(scores)
    a, b = torch.full((1, 16, 1, 1, 1), 1.0), torch.full((1, 16, 1, 1, 1), 3.0)
    out = fusion([a, b])[0, :, 0, 0, 0]
    expected = torch.full((16,), 2.0)  # equal scores: the mean of 1 and 3
    expected[2] = 3.0
    assert torch.allclose(out, expected, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Checkpoints


def opengait_state(model: torch.nn.Module, keys: list[str], seed: int) -> dict[str, Tensor]:
    """A state dict with the reference key list, random values, shapes taken from the model."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    state = {}
    for key in keys:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shapes[key], generator=gen) + 0.5
        else:
            state[key] = torch.randn(shapes[key], generator=gen) * 0.1
    return state


@pytest.mark.parametrize(
    ("name", "keys", "channels"),
    [
        ("deepgaitv2", deepgaitv2_keys(), 1),
        ("skeletongait", deepgaitv2_keys(), 2),
        ("skeletongait++", skeletongait_pp_keys(), 3),
    ],
)
def test_strict_load_of_opengait_layout_checkpoint(tmp_path, name, keys, channels):
    model = build_recogniser(name, **TINY)
    state = opengait_state(model, keys, seed=3)
    path = tmp_path / f"{name}-50000.pt"
    torch.save(
        {"model": state, "optimizer": {"state": {}, "param_groups": []}, "scheduler": {}, "iteration": 50000},
        path,
    )
    fresh = build_recogniser(name, **TINY)
    info = load_opengait_checkpoint(fresh, path)
    assert info.iteration == 50000
    assert fresh.checkpoint_path == str(path)
    loaded = fresh.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # A second copy built from the same file computes the same embeddings.
    twin = build_recogniser(name, **TINY)
    load_opengait_checkpoint(twin, path)
    x = torch.rand(1, 4, channels, 64, 44)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x).embed_1, twin.eval()(x).embed_1)


def test_bare_state_dict_and_save_round_trip(tmp_path):
    torch.manual_seed(4)
    model = build_recogniser("deepgaitv2", **TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10, 20], 0.1)
    model(torch.rand(2, 3, 1, 64, 44)).embed_1.mean().backward()
    optimizer.step()
    scheduler.step()
    path = save_checkpoint(
        tmp_path / "ckpt" / "DeepGaitV2-00001.pt", model, optimizer, scheduler, 1, {"seed": 4}
    )
    assert [p.name for p in path.parent.iterdir()] == ["DeepGaitV2-00001.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "optimizer", "scheduler", "iteration", "recogniser", "extra"}
    assert list(raw["model"]) == deepgaitv2_keys()
    fresh = build_recogniser("deepgaitv2", **TINY)
    info = load_opengait_checkpoint(fresh, path)
    assert info.iteration == 1 and info.extra == {"seed": 4}
    assert info.scheduler["last_epoch"] == 1
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_opt.load_state_dict(info.optimizer)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    other = build_recogniser("deepgaitv2", **TINY)
    load_opengait_checkpoint(other, bare)
    assert all(
        torch.equal(a, b)
        for a, b in zip(other.state_dict().values(), model.state_dict().values(), strict=True)
    )
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(tmp_path / "bad.pt", model, extra={"when": object()})


def test_checkpoint_errors_name_path_and_config_key(tmp_path):
    model = build_recogniser("deepgaitv2", **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*recognisers\.deepgaitv2\.checkpoint"):
        load_opengait_checkpoint(model, missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*recognisers\.deepgaitv2\.checkpoint"):
        load_opengait_checkpoint(model, garbage)
    good = save_checkpoint(tmp_path / "good.pt", model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="could not read"):
        load_opengait_checkpoint(model, truncated, config_key="recognisers.custom.checkpoint")
    state = dict(model.state_dict())
    state.pop("FCs.fc_bin")
    state["layer9.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "mismatch.pt")
    with pytest.raises(
        CheckpointError, match=r"missing key\(s\): FCs\.fc_bin.*unexpected key\(s\): layer9\.weight"
    ):
        load_opengait_checkpoint(model, tmp_path / "mismatch.pt")
    wide = build_recogniser("deepgaitv2", class_num=7, width=0.5)
    torch.save({"model": wide.state_dict()}, tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_opengait_checkpoint(model, tmp_path / "wide.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="neither"):
        load_opengait_checkpoint(model, tmp_path / "odd.pt")
    # None of the failed loads changed the model.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    info = load_opengait_checkpoint(model, tmp_path / "mismatch.pt", strict=False)
    assert info.missing_keys == ["FCs.fc_bin"] and info.unexpected_keys == ["layer9.weight"]


# --------------------------------------------------------------------------------------------------
# BigGait and DINOv2


def test_mid_block_indices():
    assert mid_block_indices(12) == [2, 5, 8, 11]
    assert mid_block_indices(4) == [0, 1, 2, 3]
    assert mid_block_indices(8) == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="only 3"):
        mid_block_indices(3)


def test_biggait_tiny_random_forward_and_provenance():
    torch.manual_seed(5)
    model = build_recogniser("biggait", **BIGGAIT_TINY)
    info = model.describe()
    assert info["dinov2"]["pretrained"] is False
    assert info["dinov2"]["frozen"] is False and info["dinov2"]["trainable"] is True
    assert info["dinov2"]["mid_blocks"] == [0, 1, 2, 3]
    assert model.modality == "rgb"
    rgb = torch.randn(2, 3, 3, 112, 56).clamp(-2, 2)  # already 2:1 (pad-resized crops)
    out = model(rgb, ratios=torch.full((2, 3), 0.4))
    assert out.embed_1.shape == out.embed_2.shape == (2, 256, 16)
    assert out.logits.shape == (2, 7, 16)
    assert set(out.aux_losses) == {"shape_connect", "shape_mse", "part_connect", "part_diversity"}
    loss = out.embed_1.square().mean() + sum(out.aux_losses.values())
    loss.backward()
    assert model.backbone.model.embeddings.patch_embeddings.projection.weight.grad is not None
    model.eval()
    with torch.no_grad():
        # SUSTech1K-style 64×64 frames: aspect restored from the ratios first.
        square = model(torch.randn(1, 4, 3, 64, 64).clamp(-2, 2), ratios=torch.full((1, 4), 0.5))
    assert square.embed_1.shape == (1, 256, 16) and square.aux_losses == {}
    with pytest.raises(ValueError, match="ratios"):
        model(rgb)
    with pytest.raises(ValueError, match="values in"):
        model(rgb * 100, ratios=torch.full((2, 3), 0.4))


def test_biggait_checkpoint_in_opengait_layout_loads_strictly(tmp_path):
    model = build_recogniser("biggait", **BIGGAIT_TINY)
    assert sorted(model.state_dict()) == sorted(biggait_keys(depth=4))
    state = opengait_state(model, biggait_keys(depth=4), seed=6)
    path = tmp_path / "BigGait-40000.pt"
    torch.save({"model": state, "iteration": 40000}, path)
    fresh = build_recogniser("biggait", **BIGGAIT_TINY)
    load_opengait_checkpoint(fresh, path)
    loaded = fresh.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # The fused qkv really is split into query / key / value in that order.
    attention = fresh.backbone.model.encoder.layer[0].attention
    qkv = state["backbone.blocks.0.attn.qkv.weight"]
    assert torch.equal(attention.q_proj.weight, qkv[:64]) and torch.equal(attention.v_proj.weight, qkv[128:])
    # An official checkpoint carries its (pretrained) ViT; our own checkpoints keep their provenance.
    assert fresh.describe()["dinov2"]["pretrained"] is True
    own = save_checkpoint(tmp_path / "own.pt", model)
    again = build_recogniser("biggait", **BIGGAIT_TINY)
    load_opengait_checkpoint(again, own)
    assert again.describe()["dinov2"]["pretrained"] is False


def reference_dinov2(
    state: dict[str, Tensor], pixels: Tensor, heads: int, depth: int
) -> tuple[Tensor, Tensor]:
    """Original DINOv2 forward written from its layer formulae, on original-layout weights."""
    patch = state["patch_embed.proj.weight"].shape[-1]
    tokens = F.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(pixels.shape[0], -1, -1), tokens], dim=1)
    pos = state["pos_embed"]
    if pos.shape[1] != x.shape[1] or pixels.shape[-2] != pixels.shape[-1]:
        side = math.sqrt(pos.shape[1] - 1)
        h0, w0 = pixels.shape[-2] // patch + 0.1, pixels.shape[-1] // patch + 0.1
        grid = pos[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(h0 / side, w0 / side), mode="bicubic")
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)
    x = x + pos
    n, t, c = x.shape
    outputs = []
    for i in range(depth):
        b = f"blocks.{i}."
        y = F.layer_norm(x, (c,), state[b + "norm1.weight"], state[b + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, state[b + "attn.qkv.weight"], state[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(n, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        attn = F.linear(
            attn.transpose(1, 2).reshape(n, t, c), state[b + "attn.proj.weight"], state[b + "attn.proj.bias"]
        )
        x = x + state[b + "ls1.gamma"] * attn
        y = F.layer_norm(x, (c,), state[b + "norm2.weight"], state[b + "norm2.bias"], eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, state[b + "mlp.fc1.weight"], state[b + "mlp.fc1.bias"])),
            state[b + "mlp.fc2.weight"],
            state[b + "mlp.fc2.bias"],
        )
        x = x + state[b + "ls2.gamma"] * y
        outputs.append(x)
    last = F.layer_norm(x, (c,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    mid = torch.cat([outputs[i] for i in mid_block_indices(depth)], dim=-1)
    return last[:, 1:], F.layer_norm(mid, (4 * c,), eps=1e-6)[:, 1:]


def original_dinov2_state(seed: int, hidden: int = 128, depth: int = 4, grid: int = 4) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05) -> Tensor:
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "cls_token": rand(1, 1, hidden),
        "pos_embed": rand(1, grid * grid + 1, hidden),
        "mask_token": rand(1, hidden),
        "patch_embed.proj.weight": rand(hidden, 3, 14, 14),
        "patch_embed.proj.bias": rand(hidden),
        "norm.weight": 1 + rand(hidden),
        "norm.bias": rand(hidden),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        state.update({
            b + "norm1.weight": 1 + rand(hidden), b + "norm1.bias": rand(hidden),
            b + "attn.qkv.weight": rand(3 * hidden, hidden, scale=0.2), b + "attn.qkv.bias": rand(3 * hidden),
            b + "attn.proj.weight": rand(hidden, hidden, scale=0.2), b + "attn.proj.bias": rand(hidden),
            b + "ls1.gamma": 1 + rand(hidden), b + "ls2.gamma": 1 + rand(hidden),
            b + "norm2.weight": 1 + rand(hidden), b + "norm2.bias": rand(hidden),
            b + "mlp.fc1.weight": rand(4 * hidden, hidden, scale=0.2), b + "mlp.fc1.bias": rand(4 * hidden),
            b + "mlp.fc2.weight": rand(hidden, 4 * hidden, scale=0.2), b + "mlp.fc2.bias": rand(hidden),
        })  # fmt: skip
    return state


def test_load_dinov2_original_state_dict_matches_reference_forward(tmp_path):
    state = original_dinov2_state(seed=7)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    backbone = load_dinov2(path).eval()
    assert backbone.pretrained is True and backbone.source == str(path)
    assert backbone.describe()["heads"] == 2 and backbone.describe()["layers"] == 4
    round_trip = backbone.state_dict()
    assert sorted(round_trip) == sorted(dinov2_keys(4)) and all(
        torch.equal(round_trip[k], v) for k, v in state.items()
    )
    torch.manual_seed(8)
    for size in ((56, 56), (112, 56)):  # the pretraining grid, then a 2:1 frame (interpolated positions)
        pixels = torch.randn(2, 3, *size)
        with torch.no_grad():
            last, mid = backbone(pixels)
            ref_last, ref_mid = reference_dinov2(state, pixels, heads=2, depth=4)
        assert last.shape == (2, size[0] // 14 * size[1] // 14, 128) and mid.shape[-1] == 512
        assert torch.allclose(last, ref_last, atol=1e-4), size
        assert torch.allclose(mid, ref_mid, atol=1e-4), size


def test_load_dinov2_from_hf_folder_and_biggait_freezes_it(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(9)
    hf = Dinov2Model(
        Dinov2Config(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, image_size=56, mlp_ratio=2)
    )
    hf.save_pretrained(tmp_path / "dinov2-tiny")
    backbone = load_dinov2(tmp_path / "dinov2-tiny")
    assert backbone.pretrained is True
    assert all(
        torch.equal(a, b)
        for a, b in zip(backbone.model.state_dict().values(), hf.state_dict().values(), strict=True)
    )
    model = build_recogniser(
        "biggait", class_num=4, width=0.25, image_size=56, dinov2_path=tmp_path / "dinov2-tiny"
    )
    dinov2 = model.describe()["dinov2"]
    assert (dinov2["pretrained"], dinov2["frozen"], dinov2["trainable"]) == (True, True, False)
    assert dinov2["source"] == str(tmp_path / "dinov2-tiny")
    model.train()
    assert not model.backbone.training and model.Mask_Branch.training
    out = model(torch.randn(2, 2, 3, 112, 56).clamp(-2, 2), ratios=torch.full((2, 2), 0.5))
    (out.embed_1.mean() + sum(out.aux_losses.values())).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.Mask_Branch.down_sampling.weight.grad is not None


def test_load_dinov2_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"nowhere\.pth \(config key recognisers\.biggait\.dinov2_path\)"
    ):
        load_dinov2(tmp_path / "nowhere.pth")
    with pytest.raises(
        FileNotFoundError, match=r"nowhere\.pth \(config key recognisers\.biggait\.dinov2_path\)"
    ):
        build_recogniser("biggait", class_num=3, dinov2_path=tmp_path / "nowhere.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_dinov2(tmp_path / "empty")
    state = original_dinov2_state(seed=10)
    state.pop("blocks.3.mlp.fc2.bias")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing key\(s\): blocks\.3\.mlp\.fc2\.bias"):
        load_dinov2(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="not both"):
        build_recogniser("biggait", class_num=3, dinov2_path=tmp_path / "broken.pth", dinov2_config="tiny")


# --------------------------------------------------------------------------------------------------
# BigGait's helper arithmetic, on hand-computed cases


def test_padding_resize_pads_or_crops_around_the_centre():
    frames = torch.ones(2, 1, 64, 64)
    out = padding_resize(frames, torch.tensor([0.25, 0.75]), 256, 128)
    assert out.shape == (2, 1, 256, 128)
    # ratio 0.25 → int(256 · 0.25) = 64 columns, padded (128 - 64) // 2 = 32 each side.
    columns = out[0, 0].sum(0) > 0
    assert columns[32:96].all() and not columns[:32].any() and not columns[96:].any()
    assert out[1].eq(1).all()  # ratio 0.75 → 192 columns, centre-cropped to 128
    with pytest.raises(ValueError, match="zero-width"):
        padding_resize(frames, torch.tensor([0.001, 0.5]), 256, 128)


def test_close_mask_and_select_body():
    soft = torch.zeros(1, 1, 20, 10)
    soft[..., 4:16, 2:8] = 0.9
    closed = close_mask(soft)[0, 0]
    # round → dilate 3×3 → rows 3..16, cols 1..8; erode 5×5 → rows 5..14, cols 3..6 = 1;
    # the rest of the dilation band keeps the soft value (0.9 inside the blob, 0 outside).
    expected = torch.zeros(20, 10)
    expected[4:16, 2:8] = 0.9
    expected[5:15, 3:7] = 1.0
    assert torch.equal(closed, expected)
    assert close_mask(torch.ones(1, 1, 8, 6)).eq(1).all()  # geodesic borders: no erosion from the frame edge
    two = torch.zeros(2, 20, 10, 2)
    two[0, 5:15, :, 0] = 1.0  # a body in the middle: channel 0 kept
    two[1, :, :, 0] = 1.0  # channel 0 fills the top and bottom rows: the channels are swapped
    two[1, 5:15, :, 1] = 1.0
    body = select_body(two)
    assert torch.equal(body[0], two[0, ..., 0]) and torch.equal(body[1], two[1, ..., 1])


def test_biggait_losses_on_hand_cases():
    point = torch.zeros(1, 1, 3, 3)
    point[0, 0, 1, 1] = 1.0
    assert math.isclose(float(sobel_connectivity(point)), 16 / 9, rel_tol=1e-6)  # Σ|kx| = Σ|ky| = 8
    uniform = torch.full((2, 10, 16), 1 / 16)
    assert float(part_diversity_loss(uniform)) < 1e-4
    one_part = torch.zeros(2, 10, 16)
    one_part[..., 3] = 1.0
    assert math.isclose(float(part_diversity_loss(one_part)), 4.0, abs_tol=1e-4)
