"""Visual fidelity of a generated video against its driving (real) video: masked SSIM, PSNR and LPIPS.

Masking (``policy``), per frame, with ``M`` the mask the policy picks:

``union`` (default)
    ``M`` = real person mask OR generated person mask.
``real`` / ``generated``
    ``M`` = that video's person mask only.
``none``
    No mask and no crop: whole frames.

Both frames are multiplied by ``M`` (background zeroed) and cut to a box (``crop``):

``frame`` (default)
    the bounding box of ``M`` in that frame, grown by ``margin`` pixels on every side and clipped to
    the frame;
``video``
    one box size per video (the largest ``frame`` box), centred on each frame's ``frame`` box and
    shifted inside the frame. A fixed size keeps the background share comparable across frames and
    lets LPIPS run the whole video as one batch.

Zeroed background inside the box counts, as it does for skimage on the same crop: two zero pixels
are identical, so a looser box raises SSIM and PSNR. Keep ``margin`` and ``crop`` fixed across a study.

Metrics on the (masked, cropped) pair, per frame, then averaged over the frames that have a value:

SSIM
    exactly ``skimage.metrics.structural_similarity(real, gen, gaussian_weights=True, sigma=1.5,
    data_range=255, channel_axis=-1)``: 11-tap Gaussian window (σ = 1.5, truncated at 3.5 σ, radius
    ``int(3.5 * 1.5 + 0.5) = 5``), K1 = 0.01, K2 = 0.03, C = (K·255)², covariances scaled by
    ``NP / (NP - 1)`` with NP = 11² (skimage's default ``use_sample_covariance=True``; pass
    ``sample_covariance=False`` for Wang et al.'s population covariance), the SSIM map averaged over
    the box minus a 5-pixel strip on each side, then over the three channels. A box narrower than 11
    pixels has no SSIM (skimage refuses it too).
PSNR
    ``10 log10(255² / MSE)`` over the box and channels, as ``peak_signal_noise_ratio(data_range=255)``;
    identical crops give ``inf`` per frame, and the video mean skips them with a note.
LPIPS
    AlexNet + lpips v0.1 linear layers on the crop scaled to [-1, 1] (background zero becomes -1).
    Crops under 31 pixels have no LPIPS (AlexNet's last layer would be empty).

Implementation (:func:`masked_ssim_psnr`): frames go in chunks; each frame's box is copied into a
window of the chunk's largest box size, and the four Gaussian-filtered moments SSIM needs (x, y,
x² + y², xy; vx + vy is all the formula uses) of the whole chunk come from one in-place OpenCV
separable filter call, in float32 on values centred on 127.5. Per-frame means are box-indicator
sums in float64. Only pixels 5 or more pixels inside a frame's box are averaged, and their 11×11
filter support lies inside that box, so neither the window edges nor the neighbouring window in the
stack reach them: the result is skimage's on the crop, to ~1e-6 (float32) for SSIM and exactly for
PSNR (OpenCV's integer sum of squared differences). Measured 5-10x skimage's frames/s on one core
(``benchmarks/visual_metrics_speed.py``).

Frames are aligned by index (:func:`align_frames`; the longer video is resampled to the shorter's
count by nearest time index, with a note) and a generated video of another size is resized to the
real one (:func:`match_size`, with a note). Empty masks give null metrics with a reason.

LPIPS weights: the lpips package's ``weights/v0.1/alex.pth`` (linear layers) found with
``importlib.util.find_spec`` without importing lpips (it imports torchvision, which is not installed
here), and torchvision's ImageNet AlexNet ``alexnet-owt-7be5be79.pth`` from the config key
``metrics.lpips.alexnet_weights`` or the torch hub cache (``$TORCH_HOME/hub/checkpoints``). If a file
is missing, :func:`load_lpips` warns with the expected path and returns None, and LPIPS is null.
torch is imported only when an LPIPS model is built (the classes resolve lazily on first use).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.evaluation.alignment import align_frames, match_size

log = logging.getLogger(__name__)

POLICIES = ("union", "real", "generated", "none")
POLICY_MASKS = {"union": ("real", "generated"), "real": ("real",), "generated": ("generated",), "none": ()}
CROPS = ("frame", "video")

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's value with gaussian_weights=True: an 11-tap window at σ = 1.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # = 5, scipy.ndimage's radius rule
SSIM_WIN = 2 * SSIM_RADIUS + 1
SSIM_K1, SSIM_K2 = 0.01, 0.03
LPIPS_MIN_SIDE = 31  # smallest input whose AlexNet conv5 map is not empty
DEFAULT_MARGIN = 8
# Values (frames x box pixels x channels) per chunk: each float32 scratch array then stays near the
# size of a core's L2 cache (1 MiB per float32 array measured fastest here: 2^16..2^20 tried).
CHUNK_VALUES = 1 << 18

ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"
CONFIG_KEY_ALEXNET = "metrics.lpips.alexnet_weights"
CONFIG_KEY_LINEAR = "metrics.lpips.linear_weights"
# torchvision AlexNet "features" layers: (index, in, out, kernel, stride, padding); ReLUs follow each
# conv and max-pools (3, 2) sit at indices 2, 5 and 12.
ALEXNET_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1),
                 (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1))  # fmt: skip
ALEXNET_POOLS = (2, 5, 12)
LPIPS_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # lpips' relu1..relu5 cut points
LPIPS_CHANNELS = (64, 192, 384, 256, 256)
# lpips' ScalingLayer: ImageNet mean/std expressed for inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


# ----------------------------------------------------------------------------------------------------
# masks and boxes (frame alignment and resizing: pipeline.evaluation.alignment)
# ----------------------------------------------------------------------------------------------------


def policy_mask(
    real_masks: np.ndarray | None, gen_masks: np.ndarray | None, policy: str
) -> np.ndarray | None:
    """The mask [T, H, W] bool the policy compares inside, or None for ``none``."""
    _check_policy(policy, real_masks, gen_masks)
    if policy == "none":
        return None
    if policy == "union":
        return np.logical_or(real_masks, gen_masks)
    return np.asarray(real_masks if policy == "real" else gen_masks, dtype=bool)


def _check_policy(policy: str, real_masks: np.ndarray | None, gen_masks: np.ndarray | None) -> None:
    """Raise unless ``policy`` is known and the masks it uses were given."""
    if policy not in POLICIES:
        raise ValueError(f"unknown masking policy {policy!r}; expected one of {POLICIES}")
    need = POLICY_MASKS[policy]
    given = {"real": real_masks, "generated": gen_masks}
    for name in need:
        if given[name] is None:
            raise ValueError(f"masking policy {policy!r} needs the {name} masks, got None")


def _first_last(any_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First index and one past the last True along axis 1 of [T, n]."""
    n = any_.shape[1]
    return np.argmax(any_, axis=1), n - np.argmax(any_[:, ::-1], axis=1)


def crop_boxes(
    mask: np.ndarray | None, shape: tuple[int, int, int], *, crop: str = "frame", margin: int = DEFAULT_MARGIN
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [T, 4] int64 (y0, y1, x0, x1) per frame and ``valid`` [T] bool (False: empty mask).

    ``shape`` = (T, H, W). Without a mask every box is the whole frame.
    """
    n, height, width = shape
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; expected one of {CROPS}")
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    if mask is None:
        return np.tile(np.array([0, height, 0, width], np.int64), (n, 1)), np.ones(n, bool)
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    valid = rows.any(axis=1)
    y0, y1 = _first_last(rows)
    x0, x1 = _first_last(cols)
    boxes = np.stack([np.maximum(y0 - margin, 0), np.minimum(y1 + margin, height),
                      np.maximum(x0 - margin, 0), np.minimum(x1 + margin, width)], axis=1)  # fmt: skip
    if crop == "video" and valid.any():
        boxes = _fixed_size_boxes(boxes, valid, height, width)
    boxes[~valid] = 0
    return boxes.astype(np.int64), valid


def _fixed_size_boxes(boxes: np.ndarray, valid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Same-size boxes (the largest box's size) centred on each box and shifted inside the frame."""
    size_h = int((boxes[valid, 1] - boxes[valid, 0]).max())
    size_w = int((boxes[valid, 3] - boxes[valid, 2]).max())
    top = np.clip(np.round((boxes[:, 0] + boxes[:, 1] - size_h) / 2), 0, height - size_h).astype(np.int64)
    left = np.clip(np.round((boxes[:, 2] + boxes[:, 3] - size_w) / 2), 0, width - size_w).astype(np.int64)
    return np.stack([top, top + size_h, left, left + size_w], axis=1)


# ----------------------------------------------------------------------------------------------------
# SSIM and PSNR on masked boxes, batched
# ----------------------------------------------------------------------------------------------------


@cache
def _gaussian_taps() -> np.ndarray:
    """scipy.ndimage's Gaussian kernel at σ = 1.5, radius 5, as an OpenCV column [11, 1] float32."""
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).astype(np.float32)[:, None]


class _Scratch:
    """Named scratch arrays reused across chunks.

    Fresh multi-megabyte arrays page-fault on first touch, which costs more than the arithmetic done
    in them; reusing a few buffers (and small chunks, so that they stay in cache) is what makes the
    batched path several times faster than skimage rather than merely on par.
    """

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        size = math.prod(shape)
        buf = self._flat.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._flat[name] = np.empty(size, dtype)
        return buf[:size].reshape(shape)


def _windows(stack: np.ndarray, origin: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy one window per frame of ``stack`` [T, H, W, ...] at ``origin`` [T, 2] (y, x) into ``out``."""
    h, w = out.shape[1:3]
    for i, (top, left) in enumerate(origin):  # slice copies beat fancy indexing by ~5x here
        out[i] = stack[i, top : top + h, left : left + w]
    return out


def _box_sum(
    values: np.ndarray, start: np.ndarray, stop: np.ndarray, axis_len: tuple[int, int]
) -> np.ndarray:
    """Sum [T] float64 of ``values`` [T, h, w] over rows start[:,0]..stop[:,0], cols start[:,1]..stop[:,1]."""
    r = np.arange(axis_len[0])
    c = np.arange(axis_len[1])
    row_in = ((r >= start[:, :1]) & (r < stop[:, :1])).astype(np.float64)
    col_in = ((c >= start[:, 1:]) & (c < stop[:, 1:])).astype(np.float64)
    return np.einsum("thw,th,tw->t", values, row_in, col_in)


def _ssim_psnr_chunk(
    real: np.ndarray,
    gen: np.ndarray,
    mask: np.ndarray | None,
    boxes: np.ndarray,
    sample_covariance: bool,
    scratch: _Scratch,
) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and PSNR [n] of frames [n, H, W, C] uint8 inside ``boxes`` [n, 4], background zeroed by ``mask``.

    Each frame's box is copied, with whatever surrounds it, into a window of the chunk's largest box
    size, so that the chunk becomes one [n, h, w, C] stack.
    """
    n, height, width, chans = real.shape
    extent = np.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], axis=1)
    win = (int(extent[:, 0].max()), int(extent[:, 1].max()))
    origin = np.stack(
        [np.minimum(boxes[:, 0], height - win[0]), np.minimum(boxes[:, 2], width - win[1])], axis=1
    )
    offset = np.stack([boxes[:, 0], boxes[:, 2]], axis=1) - origin  # box corner inside its window
    shape = (n, *win, chans)
    x_u8 = _windows(real, origin, scratch.get("x_u8", shape, np.uint8))
    y_u8 = _windows(gen, origin, scratch.get("y_u8", shape, np.uint8))
    if mask is not None:
        keep = _windows(mask.view(np.uint8), origin, scratch.get("keep", shape[:3], np.uint8))
        # numpy broadcasting over a length-3 channel axis is ~10x slower than interleaving the mask
        flat = (n * win[0], win[1])
        keep3 = cv2.merge([keep.reshape(flat)] * chans, dst=scratch.get("keep3", (*flat, chans), np.uint8))
        np.multiply(x_u8, keep3.reshape(shape), out=x_u8)
        np.multiply(y_u8, keep3.reshape(shape), out=y_u8)

    # PSNR: OpenCV's exact integer sum of squared differences over each box
    sse = np.empty(n)
    for i, ((top, left), (bh, bw)) in enumerate(zip(offset, extent, strict=True)):
        sse[i] = cv2.norm(x_u8[i, top : top + bh, left : left + bw], y_u8[i, top : top + bh, left : left + bw],
                          cv2.NORM_L2SQR)  # fmt: skip
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(DATA_RANGE**2 * (extent[:, 0] * extent[:, 1] * chans) / sse)

    ssim = np.full(n, np.nan)
    ok = (extent >= SSIM_WIN).all(axis=1)
    if ok.any():
        ssim[ok] = _ssim_windows(x_u8, y_u8, offset, extent, sample_covariance, scratch)[ok]
    return ssim, psnr


def _ssim_windows(
    x_u8: np.ndarray,
    y_u8: np.ndarray,
    offset: np.ndarray,
    extent: np.ndarray,
    sample_covariance: bool,
    scratch: _Scratch,
) -> np.ndarray:
    """Mean SSIM [n] of windows [n, h, w, C] uint8 over the interiors of boxes at ``offset`` [n, 2] of
    ``extent`` [n, 2] (values for boxes with a side under 11 px are meaningless; the caller drops them).

    SSIM needs only vx + vy, so four moments are filtered (x, y, x² + y², xy) instead of five, in one
    in-place OpenCV call on the moments stacked vertically ([4 n h, w, C]): rows that mix two windows
    lie within 5 px of a window edge, outside every box interior, so they are never averaged, and
    neither is any pixel the border mode touches. Values are centred on 127.5 first: variances do not change and
    float32 cancellation in E[x²] - E[x]² shrinks 4x. Arithmetic is in place, in six scratch arrays, on
    whole windows (contiguous arrays run twice as fast as rim-less views); only interiors are summed.
    """
    n, h, w, chans = x_u8.shape
    centre = np.float32(DATA_RANGE / 2)
    moments = scratch.get("moments", (4, n, h, w, chans), np.float32)
    x, y, sq, xy = moments
    np.subtract(x_u8, centre, out=x, dtype=np.float32)
    np.subtract(y_u8, centre, out=y, dtype=np.float32)
    np.multiply(x, x, out=sq)
    np.multiply(y, y, out=xy)  # the xy slot as scratch for y²
    sq += xy
    np.multiply(x, y, out=xy)
    taps = _gaussian_taps()
    flat = moments.reshape(4 * n * h, w, chans)
    cv2.sepFilter2D(flat, cv2.CV_32F, taps, taps, dst=flat, borderType=cv2.BORDER_REFLECT)  # in place
    ux, uy, b2, a2 = moments  # filtered; b2, a2 start as E[x² + y²], E[xy] and are overwritten
    t1, t2 = (scratch.get(f"t{i}", ux.shape, np.float32) for i in range(2))

    # The NP/(NP-1) sample-covariance factor scales both contrast terms; dividing C2 by it instead
    # leaves their ratio, and SSIM, unchanged.
    norm = SSIM_WIN**2 / (SSIM_WIN**2 - 1) if sample_covariance else 1.0
    c1 = np.float32((SSIM_K1 * DATA_RANGE) ** 2)
    c2 = np.float32((SSIM_K2 * DATA_RANGE) ** 2 / norm)
    np.multiply(ux, ux, out=t1)
    np.multiply(uy, uy, out=t2)
    t1 += t2  # ux² + uy² of the centred means
    b2 -= t1
    b2 += c2  # vx + vy + C2
    np.multiply(ux, uy, out=t2)
    a2 -= t2
    a2 *= 2
    a2 += c2  # 2 vxy + C2
    # luminance with the uncentred means mx = ux + c, my = uy + c:
    # 2 mx my + C1 = 2 ux uy + q and mx² + my² + C1 = ux² + uy² + q, q = 2c (ux + uy) + 2c² + C1
    q = ux  # ux is not needed any more: q takes its place
    q += uy
    q *= 2 * centre
    q += np.float32(2 * centre * centre) + c1
    t2 *= 2
    t2 += q
    t1 += q
    t2 *= a2
    t1 *= b2
    t2 /= t1  # the SSIM map
    s_sum = _channel_sum(t2, scratch.get("plane", (n, h, w), np.float32))

    start = offset + SSIM_RADIUS  # box interiors
    stop = offset + extent - SSIM_RADIUS
    area = np.prod(np.maximum(stop - start, 1), axis=1)
    return _box_sum(s_sum, start, stop, (h, w)) / (area * chans)


def _channel_sum(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sum over the last axis by slices (numpy's reduce over a length-3 axis is ~30x slower)."""
    np.copyto(out, values[..., 0])
    for c in range(1, values.shape[-1]):
        out += values[..., c]
    return out


def masked_ssim_psnr(
    real: np.ndarray,
    gen: np.ndarray,
    mask: np.ndarray | None,
    boxes: np.ndarray,
    *,
    sample_covariance: bool = True,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and PSNR [T] float64 of aligned frames [T, H, W, 3] uint8 inside ``boxes`` [T, 4].

    ``mask`` [T, H, W] bool zeroes the background of both frames first (None: no masking). Every box
    must be non-empty; a box with a side under 11 pixels gets SSIM NaN.
    """
    _check_frames(real, "real frames")
    _check_frames(gen, "generated frames")
    if real.shape != gen.shape:
        raise ValueError(f"real and generated frames differ in shape: {real.shape} vs {gen.shape}")
    if mask is not None and mask.shape != real.shape[:3]:
        raise ValueError(f"mask must be [T, H, W] = {real.shape[:3]}, got {mask.shape}")
    boxes = np.asarray(boxes, np.int64)
    if boxes.shape != (len(real), 4) or ((boxes[:, 1] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 2])).any():
        raise ValueError(f"boxes must be [T, 4] non-empty (y0, y1, x0, x1) for T={len(real)}")
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    if chunk is None:
        largest = int(((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).max()) * real.shape[-1]
        chunk = max(1, CHUNK_VALUES // largest)
    scratch = _Scratch()
    ssim = np.empty(len(real))
    psnr = np.empty(len(real))
    for start in range(0, len(real), chunk):
        part = slice(start, start + chunk)
        m = None if mask is None else mask[part]
        ssim[part], psnr[part] = _ssim_psnr_chunk(
            real[part], gen[part], m, boxes[part], sample_covariance, scratch
        )
    return ssim, psnr


def _check_frames(frames: np.ndarray, what: str) -> None:
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        got = getattr(frames, "dtype", type(frames).__name__), getattr(frames, "shape", None)
        raise ValueError(f"{what} must be uint8 [T, H, W, 3] RGB, got {got[0]} {got[1]}")


def _check_masks(masks: np.ndarray | None, frames: np.ndarray, what: str) -> np.ndarray | None:
    if masks is None:
        return None
    masks = np.asarray(masks)
    if masks.shape != frames.shape[:3]:
        raise ValueError(
            f"{what} must be [T, H, W] = {frames.shape[:3]} like their frames, got {masks.shape}"
        )
    return masks.astype(bool, copy=False)


# ----------------------------------------------------------------------------------------------------
# LPIPS (AlexNet, v0.1) without torchvision
# ----------------------------------------------------------------------------------------------------


class LpipsModel(Protocol):
    """What :func:`video_metrics` needs: ``distance(a, b)`` for uint8 [n, h, w, 3] pairs -> [n] float."""

    def distance(self, real: np.ndarray, gen: np.ndarray) -> np.ndarray: ...


@cache
def _torch_classes() -> dict[str, type]:
    """Build the torch modules on first use, so importing this module does not import torch."""
    import torch
    from torch import nn

    class AlexNetFeatures(nn.Module):
        """torchvision's AlexNet ``features`` (same layer indices, so its state_dict keys load as is);
        ``forward`` returns lpips' five ReLU outputs [n, 64|192|384|256|256, h_k, w_k]."""

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            convs = {c[0]: c[1:] for c in ALEXNET_CONVS}
            for index in range(13):
                if index in convs:
                    cin, cout, k, s, p = convs[index]
                    layers.append(nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p))
                elif index in ALEXNET_POOLS:
                    layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
                else:
                    layers.append(nn.ReLU(inplace=False))
            self.features = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            outs = []
            for start, stop in LPIPS_SLICES:
                for index in range(start, stop):
                    x = self.features[index](x)
                outs.append(x)
            return outs

    class LpipsAlex(nn.Module):
        """LPIPS v0.1 with an AlexNet trunk: scaling layer, unit-normalised features, 1×1 linear heads."""

        def __init__(self) -> None:
            super().__init__()
            self.net = AlexNetFeatures()
            self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
            self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS)
            self.eval()

        def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
            """Distances [n] of images [n, 3, h, w] in [-1, 1]."""
            feats0 = self.net((in0 - self.shift) / self.scale)
            feats1 = self.net((in1 - self.shift) / self.scale)
            total = torch.zeros(in0.shape[0], dtype=in0.dtype, device=in0.device)
            for lin, f0, f1 in zip(self.lins, feats0, feats1, strict=True):
                diff = (_unit(f0) - _unit(f1)) ** 2
                total = total + lin(diff).mean(dim=(1, 2, 3))
            return total

        @torch.no_grad()
        def distance(self, real: np.ndarray, gen: np.ndarray) -> np.ndarray:
            """LPIPS [n] float64 of uint8 RGB pairs [n, h, w, 3] (lpips' ``im2tensor`` scaling)."""
            device = self.shift.device
            a = torch.from_numpy(np.ascontiguousarray(real)).to(device).permute(0, 3, 1, 2).float()
            b = torch.from_numpy(np.ascontiguousarray(gen)).to(device).permute(0, 3, 1, 2).float()
            return self(a / 127.5 - 1.0, b / 127.5 - 1.0).double().cpu().numpy()

    def _unit(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        # lpips.normalize_tensor: divide by the channel L2 norm (+eps, outside the sqrt)
        return feat / (torch.sqrt((feat * feat).sum(dim=1, keepdim=True)) + eps)

    return {"AlexNetFeatures": AlexNetFeatures, "LpipsAlex": LpipsAlex}


def __getattr__(name: str) -> Any:
    # PEP 562: ``from pipeline.evaluation.visual_metrics import LpipsAlex`` builds the torch classes on demand.
    if name in ("AlexNetFeatures", "LpipsAlex"):
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch (1 s a job) when torch is not loaded yet:
    ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``."""
    if "torch" in sys.modules:  # honours torch.hub.set_dir in this process
        import torch.hub

        return Path(torch.hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def default_alexnet_weights() -> Path:
    """Where torchvision would cache the ImageNet AlexNet: ``<torch hub dir>/checkpoints/alexnet-owt-….pth``."""
    return torch_hub_dir() / "checkpoints" / ALEXNET_CHECKPOINT


def lpips_linear_weights() -> Path | None:
    """The installed lpips package's ``weights/v0.1/alex.pth``, located without importing lpips."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


def _load_state(path: Path, what: str) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{what} {path}: not a readable torch state_dict ({err})") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} {path}: expected a state_dict mapping, got {type(state).__name__}")
    return dict(state)


def _load_into(module: Any, state: Mapping, path: Path, what: str) -> None:
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"{what} {path}: missing keys {missing[:6]}")
    try:
        module.load_state_dict({k: state[k] for k in expected}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{what} {path}: {err}") from err


def _missing(path: Path | None, what: str, how: str) -> None:
    msg = f"LPIPS is null: {what} not found at {path} ({how})"
    log.warning(msg)
    warnings.warn(msg, stacklevel=3)


def load_lpips(
    alexnet_weights: str | Path | None = None,
    *,
    linear_weights: str | Path | None = None,
    device: str = "cpu",
) -> LpipsModel | None:
    """The LPIPS (AlexNet, v0.1) model, or None with a warning naming the missing file.

    ``alexnet_weights``: torchvision's ImageNet AlexNet state_dict (only ``features.*`` is used);
    default :func:`default_alexnet_weights`. ``linear_weights``: lpips' ``alex.pth``; default the
    installed package's. A file that exists but does not fit the network raises ``ValueError``.
    """
    backbone = Path(alexnet_weights) if alexnet_weights is not None else default_alexnet_weights()
    if not backbone.is_file():
        _missing(backbone, "the AlexNet backbone weights",
                 f"set {CONFIG_KEY_ALEXNET} or put {ALEXNET_CHECKPOINT} in the torch hub checkpoints folder")  # fmt: skip
        return None
    linear = Path(linear_weights) if linear_weights is not None else lpips_linear_weights()
    if linear is None or not linear.is_file():
        _missing(linear, "the lpips v0.1 linear weights",
                 f"install the lpips package (pip install --no-deps lpips) or set {CONFIG_KEY_LINEAR}")  # fmt: skip
        return None
    model = _torch_classes()["LpipsAlex"]()
    state = _load_state(backbone, "AlexNet weights")
    _load_into(
        model.net, {k: v for k, v in state.items() if k.startswith("features.")}, backbone, "AlexNet weights"
    )
    lin_state = _load_state(linear, "lpips linear weights")
    # lpips names the heads lin{k}.model.1.weight (a Dropout sits at model.0)
    renamed = {f"{k}.weight": lin_state.get(f"lin{k}.model.1.weight") for k in range(len(LPIPS_CHANNELS))}
    _load_into(
        model.lins, {k: v for k, v in renamed.items() if v is not None}, linear, "lpips linear weights"
    )
    return model.to(device)


def lpips_from_config(config: Mapping[str, Any]) -> LpipsModel | None:
    """:func:`load_lpips` with paths from ``metrics.lpips.alexnet_weights`` / ``linear_weights`` if set."""
    section = (config.get("metrics") or {}).get("lpips") or {}
    return load_lpips(section.get("alexnet_weights"), linear_weights=section.get("linear_weights"),
                      device=section.get("device", "cpu"))  # fmt: skip


def masked_lpips(
    model: LpipsModel, real: np.ndarray, gen: np.ndarray, mask: np.ndarray | None, boxes: np.ndarray,
    *, batch: int = 16,
) -> np.ndarray:  # fmt: skip
    """LPIPS [T] of masked crops (frames [T, H, W, 3] uint8, boxes [T, 4]); NaN where a side < 31 px.

    Crops of equal size go through the network together (``batch`` at a time).
    """
    out = np.full(len(real), np.nan)
    sizes = np.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], axis=1)
    usable = (sizes >= LPIPS_MIN_SIDE).all(axis=1)
    groups: dict[tuple[int, int], list[int]] = {}
    for t in np.flatnonzero(usable):
        groups.setdefault((int(sizes[t, 0]), int(sizes[t, 1])), []).append(int(t))
    for members in groups.values():
        for start in range(0, len(members), batch):
            idx = np.array(members[start : start + batch])
            a = np.stack([_crop(real[t], None if mask is None else mask[t], boxes[t]) for t in idx])
            b = np.stack([_crop(gen[t], None if mask is None else mask[t], boxes[t]) for t in idx])
            out[idx] = model.distance(a, b)
    return out


def _crop(frame: np.ndarray, mask: np.ndarray | None, box: np.ndarray) -> np.ndarray:
    y0, y1, x0, x1 = (int(v) for v in box)
    part = frame[y0:y1, x0:x1]
    return part if mask is None else part * mask[y0:y1, x0:x1, None]


# ----------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------


METRICS = ("ssim", "psnr", "lpips")
MIN_SIDE = {"ssim": SSIM_WIN, "psnr": 1, "lpips": LPIPS_MIN_SIDE}


def _summarise(
    values: np.ndarray, valid: np.ndarray, name: str, policy: str
) -> tuple[float | None, str | None, list[str]]:
    """Video mean of one metric over the frames that have a finite value, or (None, reason); plus notes."""
    notes = []
    short = int((valid & np.isnan(values)).sum())
    if short:
        notes.append(f"{name}: {short} frame(s) with a box side under {MIN_SIDE[name]} px have no value")
    n_inf = int(np.isinf(values).sum())
    if n_inf:
        notes.append(f"{name}: {n_inf} frame(s) identical inside the box (inf) left out of the mean")
    finite = np.isfinite(values)
    if finite.any():
        return float(values[finite].mean()), None, notes
    if not valid.any():
        return None, f"every frame has an empty {policy} mask", notes
    if n_inf:
        return None, "every frame is identical inside its box (PSNR infinite)", notes
    return None, f"every box has a side under {MIN_SIDE[name]} px", notes


def video_metrics(
    real_frames: np.ndarray,
    gen_frames: np.ndarray,
    real_masks: np.ndarray | None,
    gen_masks: np.ndarray | None,
    *,
    policy: str = "union",
    crop: str = "frame",
    margin: int = DEFAULT_MARGIN,
    lpips_model: LpipsModel | None = None,
    sample_covariance: bool = True,
) -> dict[str, Any]:
    """Masked SSIM / PSNR / LPIPS of a generated video against its driving video.

    Inputs: frames [T, H, W, 3] uint8 RGB and person masks [T, H, W] bool (None allowed where the policy
    does not use them). Returns ``ssim``, ``psnr``, ``lpips`` (video means over frames that have a
    value, or None), ``per_frame`` ({metric: [n] float64, NaN where null}), ``real_index`` /
    ``generated_index`` [n] (the aligned frames), ``frames`` (n), ``valid_frames``, ``reasons``
    ({metric: why it is None}), ``notes`` (resampling, resizing, skipped frames) and the settings.
    """
    _check_frames(real_frames, "real frames")
    _check_frames(gen_frames, "generated frames")
    real_masks = _check_masks(real_masks, real_frames, "real masks")
    gen_masks = _check_masks(gen_masks, gen_frames, "generated masks")
    _check_policy(policy, real_masks, gen_masks)
    notes: list[str] = []

    gen_frames, gen_masks, note = match_size(gen_frames, gen_masks, real_frames.shape[1:3])
    if note:
        notes.append(note)
    align = align_frames(len(real_frames), len(gen_frames))
    if align.note:  # resampled: gather the compared frames (no copy when the counts agree)
        notes.append(align.note)
        real_frames, gen_frames = real_frames[align.real_index], gen_frames[align.generated_index]
        real_masks = None if real_masks is None else real_masks[align.real_index]
        gen_masks = None if gen_masks is None else gen_masks[align.generated_index]
    real, gen = real_frames, gen_frames
    mask = policy_mask(real_masks, gen_masks, policy)
    boxes, valid = crop_boxes(mask, real.shape[:3], crop=crop, margin=margin)
    n = len(real)

    per_frame = {name: np.full(n, np.nan) for name in METRICS}
    if (~valid).any():
        notes.append(f"{int((~valid).sum())} of {n} frame(s) have an empty {policy} mask: metrics null there")
    idx = np.flatnonzero(valid) if not valid.all() else slice(None)  # a slice avoids copying the video
    if valid.any():
        m = None if mask is None else mask[idx]
        per_frame["ssim"][idx], per_frame["psnr"][idx] = masked_ssim_psnr(
            real[idx], gen[idx], m, boxes[idx], sample_covariance=sample_covariance
        )
        if lpips_model is not None:
            per_frame["lpips"][idx] = masked_lpips(lpips_model, real[idx], gen[idx], m, boxes[idx])

    result: dict[str, Any] = {"reasons": {}}
    for name in METRICS:
        if name == "lpips" and lpips_model is None:
            result[name] = None
            result["reasons"][name] = "no LPIPS model (backbone weights missing or LPIPS not requested)"
            continue
        result[name], reason, metric_notes = _summarise(per_frame[name], valid, name, policy)
        notes.extend(metric_notes)
        if reason:
            result["reasons"][name] = reason
    result.update(
        per_frame=per_frame, real_index=align.real_index, generated_index=align.generated_index,
        frames=n, valid_frames=int(valid.sum()), notes=notes,
        policy=policy, crop=crop, margin=margin, sample_covariance=sample_covariance,
    )  # fmt: skip
    return result


def summary_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """The per-video columns of the ``visual_metrics`` table from a :func:`video_metrics` result:
    ``ssim``, ``psnr``, ``lpips`` (None where null), ``frames`` and ``notes`` (JSON with the notes and
    the reasons for nulls)."""
    row = {name: result[name] for name in METRICS}
    row["frames"] = int(result["frames"])
    row["notes"] = json.dumps({"notes": list(result["notes"]), "reasons": dict(result["reasons"])})
    return row
