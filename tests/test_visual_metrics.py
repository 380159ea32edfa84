"""Masked SSIM / PSNR / LPIPS against skimage and the lpips package, masking policies and bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.evaluation.alignment import align_frames, match_size
from pipeline.evaluation.visual_metrics import (
    ALEXNET_CHECKPOINT,
    crop_boxes,
    default_alexnet_weights,
    load_lpips,
    lpips_from_config,
    masked_ssim_psnr,
    policy_mask,
    summary_row,
    video_metrics,
)

skmetrics = pytest.importorskip("skimage.metrics")
TOL = 1e-4


# ----------------------------------------------------------------------------------------------------
# scenes and the reference computation
# ----------------------------------------------------------------------------------------------------


def person_masks(n: int, height: int, width: int, *, x0: float = 0.3, widen: float = 1.0, step: float = 2.0):
    """[n, H, W] bool: a head, a torso and two swinging legs drifting right by ``step`` px per frame."""
    masks = np.zeros((n, height, width), np.uint8)
    for t in range(n):
        cx = x0 * width + step * t
        top, tall = 0.1 * height, 0.8 * height
        cv2.circle(masks[t], (round(cx), round(top + 0.08 * tall)), max(2, round(0.07 * tall)), 1, -1)
        axes = (max(2, round(0.1 * tall * widen)), round(0.2 * tall))
        cv2.ellipse(masks[t], (round(cx), round(top + 0.35 * tall)), axes, 0, 0, 360, 1, -1)
        for sign in (1, -1):
            foot = (round(cx + sign * 0.15 * tall * np.sin(t / 3)), round(top + tall))
            cv2.line(
                masks[t], (round(cx), round(top + 0.55 * tall)), foot, 1, max(1, round(0.06 * tall * widen))
            )
    return masks.astype(bool)


def smooth_frames(masks: np.ndarray, seed: int, *, tint: float = 0.0, noise: float = 3.0) -> np.ndarray:
    """[n, H, W, 3] uint8: smooth background, striped person, saturated flat patches, mild noise."""
    n, height, width = masks.shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    back = np.stack([100 + 50 * np.sin(xx / 11 + c) * np.cos(yy / 17) for c in range(3)], -1)
    person = np.stack([140 + 70 * np.sin(yy / 4 + c) + tint for c in range(3)], -1)
    frames = np.where(masks[..., None], person, back)
    frames[:, : height // 3, : width // 4] = 255.0  # flat saturated patch: worst case for float32 moments
    frames[:, height // 2 : height // 2 + 6, :] = 2.0
    frames = frames + rng.normal(0, noise, frames.shape)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def reference(real, gen, mask, boxes, *, sample_covariance=True):
    """skimage per frame on the masked crop: the numbers ours must reproduce."""
    ssim, psnr = [], []
    for t in range(len(real)):
        y0, y1, x0, x1 = boxes[t]
        keep = np.ones(real.shape[1:3], bool) if mask is None else mask[t]
        a = (real[t] * keep[..., None])[y0:y1, x0:x1]
        b = (gen[t] * keep[..., None])[y0:y1, x0:x1]
        ssim.append(
            skmetrics.structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, data_range=255, channel_axis=-1,
                use_sample_covariance=sample_covariance,
            )
        )  # fmt: skip
        with np.errstate(divide="ignore"):
            psnr.append(skmetrics.peak_signal_noise_ratio(a, b, data_range=255))
    return np.array(ssim), np.array(psnr)


def tight_boxes(mask: np.ndarray, margin: int) -> np.ndarray:
    """Bounding box + margin per frame, computed independently of the module."""
    height, width = mask.shape[1:]
    out = []
    for m in mask:
        ys, xs = np.nonzero(m)
        out.append([max(ys.min() - margin, 0), min(ys.max() + 1 + margin, height),
                    max(xs.min() - margin, 0), min(xs.max() + 1 + margin, width)])  # fmt: skip
    return np.array(out)


@pytest.fixture(scope="module")
def pair():
    real_masks = person_masks(7, 72, 56)
    gen_masks = person_masks(7, 72, 56, widen=1.3, x0=0.34)
    real = smooth_frames(real_masks, 1)
    gen = smooth_frames(gen_masks, 2, tint=15, noise=6)
    return real, gen, real_masks, gen_masks


# ----------------------------------------------------------------------------------------------------
# SSIM and PSNR vs skimage
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_covariance", [True, False])
def test_random_frames_match_skimage(sample_covariance):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (6, 40, 33, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (6, 40, 33, 3), dtype=np.uint8)
    mask = rng.random((6, 40, 33)) < 0.9
    mask[:, :3] = mask[:, -2:] = False  # boxes smaller than the frame, some touching its sides
    boxes = np.array(
        [[2, 40, 0, 33], [5, 30, 4, 20], [0, 11, 0, 11], [10, 39, 7, 33], [3, 38, 1, 31], [0, 40, 0, 33]]
    )
    ssim, psnr = masked_ssim_psnr(real, gen, mask, boxes, sample_covariance=sample_covariance)
    ref_ssim, ref_psnr = reference(real, gen, mask, boxes, sample_covariance=sample_covariance)
    assert np.abs(ssim - ref_ssim).max() < TOL
    assert np.abs(psnr - ref_psnr).max() < TOL


@pytest.mark.parametrize("policy", ["union", "real", "generated", "none"])
def test_policies_match_skimage_on_real_looking_frames(pair, policy):
    real, gen, real_masks, gen_masks = pair
    result = video_metrics(real, gen, real_masks, gen_masks, policy=policy, margin=5)
    chosen = {"union": real_masks | gen_masks, "real": real_masks, "generated": gen_masks, "none": None}[
        policy
    ]
    if chosen is None:
        boxes = np.tile([0, real.shape[1], 0, real.shape[2]], (len(real), 1))
    else:
        boxes = tight_boxes(chosen, 5)
    ref_ssim, ref_psnr = reference(real, gen, chosen, boxes)
    assert np.abs(result["per_frame"]["ssim"] - ref_ssim).max() < TOL
    assert np.abs(result["per_frame"]["psnr"] - ref_psnr).max() < TOL
    assert result["ssim"] == pytest.approx(ref_ssim.mean(), abs=TOL)
    assert result["psnr"] == pytest.approx(ref_psnr.mean(), abs=TOL)
    assert result["policy"] == policy and result["notes"] == []


def test_nearly_identical_saturated_frames_match_skimage(pair):
    """SSIM near 1 on flat 255 patches is where float32 cancellation would show first."""
    real, _, real_masks, _ = pair
    rng = np.random.default_rng(3)
    gen = np.clip(real.astype(int) + rng.integers(-1, 2, real.shape), 0, 255).astype(np.uint8)
    mask = np.ones(real.shape[:3], bool)
    boxes = np.tile([0, real.shape[1], 0, real.shape[2]], (len(real), 1))
    ssim, psnr = masked_ssim_psnr(real, gen, mask, boxes)
    ref_ssim, ref_psnr = reference(real, gen, mask, boxes)
    assert ref_ssim.min() > 0.95
    assert np.abs(ssim - ref_ssim).max() < TOL
    assert np.abs(psnr - ref_psnr).max() < TOL


def test_video_crop_is_one_size_around_each_frame(pair):
    real, gen, real_masks, gen_masks = pair
    union = real_masks | gen_masks
    boxes, valid = crop_boxes(union, union.shape, crop="video", margin=4)
    tight = tight_boxes(union, 4)
    sizes = {(b[1] - b[0], b[3] - b[2]) for b in boxes}
    assert valid.all() and len(sizes) == 1
    assert (boxes[:, 0] <= tight[:, 0]).all() and (boxes[:, 1] >= tight[:, 1]).all()
    assert (boxes[:, 2] <= tight[:, 2]).all() and (boxes[:, 3] >= tight[:, 3]).all()
    assert (
        (boxes >= 0).all() and (boxes[:, 1] <= union.shape[1]).all() and (boxes[:, 3] <= union.shape[2]).all()
    )
    result = video_metrics(real, gen, real_masks, gen_masks, crop="video", margin=4)
    ref_ssim, ref_psnr = reference(real, gen, union, boxes)
    assert np.abs(result["per_frame"]["ssim"] - ref_ssim).max() < TOL
    assert np.abs(result["per_frame"]["psnr"] - ref_psnr).max() < TOL


def test_background_is_zeroed_outside_the_mask(pair):
    real, gen, real_masks, gen_masks = pair
    union = real_masks | gen_masks
    other_background = gen.copy()
    other_background[~union] = 255 - gen[~union]  # changes only pixels the policy zeroes
    a = video_metrics(real, gen, real_masks, gen_masks)
    b = video_metrics(real, other_background, real_masks, gen_masks)
    np.testing.assert_array_equal(a["per_frame"]["ssim"], b["per_frame"]["ssim"])
    c = video_metrics(real, other_background, real_masks, gen_masks, policy="none")
    assert c["ssim"] < a["ssim"] - 0.05


# ----------------------------------------------------------------------------------------------------
# nulls, notes, resampling
# ----------------------------------------------------------------------------------------------------


def test_empty_masks_give_null_with_reason(pair):
    real, gen, real_masks, gen_masks = pair
    rm, gm = real_masks.copy(), gen_masks.copy()
    rm[2] = gm[2] = False
    result = video_metrics(real, gen, rm, gm)
    assert np.isnan(result["per_frame"]["ssim"][2]) and np.isnan(result["per_frame"]["psnr"][2])
    assert np.isfinite(np.delete(result["per_frame"]["ssim"], 2)).all()
    assert result["valid_frames"] == len(real) - 1
    assert any("empty union mask" in note for note in result["notes"])

    empty = video_metrics(real, gen, np.zeros_like(rm), np.zeros_like(gm))
    for name in ("ssim", "psnr", "lpips"):
        assert empty[name] is None and empty["reasons"][name]
    assert "empty union mask" in empty["reasons"]["ssim"]


def test_identical_frames_psnr_is_infinite_and_reported(pair):
    real, _, real_masks, _ = pair
    result = video_metrics(real, real.copy(), real_masks, real_masks)
    assert np.isinf(result["per_frame"]["psnr"]).all()
    assert result["psnr"] is None and "identical" in result["reasons"]["psnr"]
    assert result["ssim"] == pytest.approx(1.0, abs=1e-6)
    row = summary_row(result)
    assert row["psnr"] is None and row["frames"] == len(real) and row["ssim"] == result["ssim"]
    assert "identical" in json.loads(row["notes"])["reasons"]["psnr"]


def test_boxes_smaller_than_the_ssim_window(pair):
    real, gen, _, _ = pair
    tiny = np.zeros(real.shape[:3], bool)
    tiny[:, 30:33, 20:24] = True
    result = video_metrics(real, gen, tiny, tiny, margin=2)  # 7 x 8 boxes
    assert result["ssim"] is None and "11 px" in result["reasons"]["ssim"]
    psnr = []
    for t, (y0, y1, x0, x1) in enumerate(tight_boxes(tiny, 2)):
        a = (real[t] * tiny[t][..., None])[y0:y1, x0:x1]
        b = (gen[t] * tiny[t][..., None])[y0:y1, x0:x1]
        psnr.append(skmetrics.peak_signal_noise_ratio(a, b, data_range=255))
    assert np.abs(result["per_frame"]["psnr"] - psnr).max() < TOL


def test_size_mismatch_resizes_generated_with_a_note(pair):
    real, gen, real_masks, gen_masks = pair
    big = np.stack([cv2.resize(f, (112, 144), interpolation=cv2.INTER_LINEAR) for f in gen])
    big_masks = np.stack(
        [cv2.resize(m.astype(np.uint8), (112, 144), interpolation=cv2.INTER_NEAREST) for m in gen_masks]
    )
    result = video_metrics(real, big, real_masks, big_masks.astype(bool))
    assert any("144x112 resized to the real 72x56" in note for note in result["notes"])
    back, back_masks, _ = match_size(big, big_masks.astype(bool), real.shape[1:3])
    assert back.shape == real.shape and back_masks.shape == real_masks.shape
    union = real_masks | back_masks
    ref_ssim, _ = reference(real, back, union, tight_boxes(union, 8))
    assert np.abs(result["per_frame"]["ssim"] - ref_ssim).max() < TOL


def test_aspect_change_is_named_in_the_note(pair):
    _, gen, _, gen_masks = pair
    _, _, note = match_size(gen, gen_masks, (72, 72))
    assert "aspect ratio changed" in note


def test_align_frames_nearest_time_index():
    same = align_frames(5, 5)
    assert same.note is None and same.real_index.tolist() == same.generated_index.tolist() == [0, 1, 2, 3, 4]
    longer = align_frames(4, 8)
    assert longer.real_index.tolist() == [0, 1, 2, 3] and longer.generated_index.tolist() == [1, 3, 5, 7]
    assert "generated video was resampled to 4 frames" in longer.note
    shorter = align_frames(6, 3)
    assert shorter.real_index.tolist() == [1, 3, 5] and shorter.generated_index.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no frames"):
        align_frames(0, 3)


def test_frame_count_mismatch_is_resampled_and_recorded(pair):
    real, gen, real_masks, gen_masks = pair
    doubled, doubled_masks = np.repeat(gen, 2, axis=0), np.repeat(gen_masks, 2, axis=0)
    result = video_metrics(real, doubled, real_masks, doubled_masks)
    assert result["generated_index"].tolist() == [2 * i + 1 for i in range(len(real))]
    assert any("frame counts differ (real 7, generated 14)" in note for note in result["notes"])
    plain = video_metrics(real, gen, real_masks, gen_masks)
    np.testing.assert_allclose(result["per_frame"]["ssim"], plain["per_frame"]["ssim"])


def test_bad_input_names_the_problem(pair):
    real, gen, real_masks, gen_masks = pair
    with pytest.raises(ValueError, match="generated frames must be uint8"):
        video_metrics(real, gen.astype(np.float32), real_masks, gen_masks)
    with pytest.raises(ValueError, match="unknown masking policy 'both'"):
        video_metrics(real, gen, real_masks, gen_masks, policy="both")
    with pytest.raises(ValueError, match="needs the generated masks"):
        video_metrics(real, gen, real_masks, None)
    with pytest.raises(ValueError, match="real masks must be"):
        video_metrics(real, gen, real_masks[:, :10], gen_masks)
    with pytest.raises(ValueError, match="unknown crop"):
        crop_boxes(real_masks, real_masks.shape, crop="tight")
    assert policy_mask(None, None, "none") is None


# ----------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------


def alexnet_features():
    """torchvision's AlexNet ``features`` layout, written out here independently of the module."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )  # fmt: skip


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory):
    """A randomly initialised AlexNet saved as torchvision's checkpoint (classifier entries included)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    features = alexnet_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9)  # torchvision files carry a classifier: ignored
    state["classifier.1.bias"] = torch.zeros(4)
    path = tmp_path_factory.mktemp("hub") / ALEXNET_CHECKPOINT
    torch.save(state, path)
    return path, state


@pytest.fixture
def lpips_reference(random_alexnet, monkeypatch):
    """The lpips package's LPIPS(alex, v0.1) on the same random AlexNet, through a stand-in torchvision."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package is not installed")
    from torch import nn

    _, state = random_alexnet

    class AlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = alexnet_features()
            self.features.load_state_dict(
                {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            )

    models = types.ModuleType("torchvision.models")
    models.AlexNet = AlexNet
    models.alexnet = lambda pretrained=False, **_: AlexNet()
    torchvision = types.ModuleType("torchvision")
    torchvision.models = models
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", verbose=False)
    yield lpips, model
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        sys.modules.pop(name)  # forget lpips, which was imported against the stand-in


def test_lpips_matches_the_lpips_package(random_alexnet, lpips_reference):
    import torch

    lpips, reference_model = lpips_reference
    ours = load_lpips(random_alexnet[0])
    rng = np.random.default_rng(1)
    for size in ((64, 64), (47, 33), (96, 71)):
        a = rng.integers(0, 256, (3, *size, 3), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
        with torch.no_grad():
            expected = [
                float(reference_model(lpips.im2tensor(x), lpips.im2tensor(y)))
                for x, y in zip(a, b, strict=True)
            ]
        got = ours.distance(a, b)
        assert np.abs(got - np.array(expected)).max() < 1e-5
        np.testing.assert_allclose(got, expected, rtol=1e-4)  # random weights give small values
        assert min(expected) > 0


def test_video_lpips_on_masked_crops_matches_the_lpips_package(pair, random_alexnet, lpips_reference):
    import torch

    lpips, reference_model = lpips_reference
    real, gen, real_masks, gen_masks = pair
    result = video_metrics(
        real, gen, real_masks, gen_masks, lpips_model=load_lpips(random_alexnet[0]), margin=6
    )
    union = real_masks | gen_masks
    expected = []
    for t, (y0, y1, x0, x1) in enumerate(tight_boxes(union, 6)):
        a = (real[t] * union[t][..., None])[y0:y1, x0:x1]
        b = (gen[t] * union[t][..., None])[y0:y1, x0:x1]
        if min(a.shape[:2]) < 31:  # too small for AlexNet: null in ours, an error in lpips
            expected.append(np.nan)
            continue
        with torch.no_grad():
            expected.append(float(reference_model(lpips.im2tensor(a), lpips.im2tensor(b))))
    expected = np.array(expected)
    assert np.isfinite(expected).sum() >= 3  # the comparison is not vacuous
    np.testing.assert_array_equal(np.isnan(result["per_frame"]["lpips"]), np.isnan(expected))
    assert np.nanmax(np.abs(result["per_frame"]["lpips"] - expected)) < 1e-5
    np.testing.assert_allclose(result["per_frame"]["lpips"], expected, rtol=1e-4)
    assert result["lpips"] == pytest.approx(np.nanmean(expected), abs=1e-5)
    assert "lpips" not in result["reasons"]


def test_lpips_crops_under_31_px_are_null(pair, random_alexnet):
    real, gen, _, _ = pair
    small = np.zeros(real.shape[:3], bool)
    small[:, 20:40, 10:30] = True  # 20 x 20 + 2 * 4 margin = 28 px
    result = video_metrics(real, gen, small, small, margin=4, lpips_model=load_lpips(random_alexnet[0]))
    assert result["lpips"] is None and "31 px" in result["reasons"]["lpips"]
    assert result["ssim"] is not None


def test_missing_backbone_gives_null_lpips_with_a_warning(pair, tmp_path):
    real, gen, real_masks, gen_masks = pair
    missing = tmp_path / "nowhere" / ALEXNET_CHECKPOINT
    with pytest.warns(UserWarning, match=str(missing)):
        assert load_lpips(missing) is None
    with pytest.warns(UserWarning, match="metrics.lpips.alexnet_weights"):
        model = lpips_from_config({"metrics": {"lpips": {"alexnet_weights": str(missing)}}})
    result = video_metrics(real, gen, real_masks, gen_masks, lpips_model=model)
    assert result["lpips"] is None and "no LPIPS model" in result["reasons"]["lpips"]
    assert result["ssim"] is not None and result["psnr"] is not None


@pytest.mark.parametrize(
    "env", [{}, {"XDG_CACHE_HOME": "xdg"}, {"TORCH_HOME": "th", "XDG_CACHE_HOME": "xdg"}]
)
def test_hub_dir_without_torch_equals_torch_hub(env, tmp_path, monkeypatch):
    """The metrics job finds the hub dir without importing torch; it must be torch's own answer."""
    import torch.hub

    from pipeline.evaluation import visual_metrics

    for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(tmp_path / value))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = Path(torch.hub.get_dir())
    monkeypatch.delitem(sys.modules, "torch")  # the path a fresh metrics process takes
    assert visual_metrics.torch_hub_dir() == expected


def test_backbone_found_in_the_torch_hub_cache(random_alexnet, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / ALEXNET_CHECKPOINT
    assert default_alexnet_weights() == expected
    with pytest.warns(UserWarning, match=str(expected)):
        assert load_lpips() is None
    expected.parent.mkdir(parents=True)
    expected.write_bytes(random_alexnet[0].read_bytes())
    model = load_lpips()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    assert np.allclose(model.distance(a, a), 0.0, atol=1e-7)
    assert (model.distance(a, a[::-1]) > 0).all()


def test_unusable_backbone_file_is_an_error(tmp_path):
    torch = pytest.importorskip("torch")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, wrong)
    with pytest.raises(ValueError, match=r"wrong\.pth: missing keys"):
        load_lpips(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: not a readable torch state_dict"):
        load_lpips(garbage)


def test_importing_the_module_does_not_import_torch():
    code = "import sys, pipeline.evaluation.visual_metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.stdout.strip() == "False"
