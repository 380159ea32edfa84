"""UniAnimate-specific part of the CPU shim (CPU ONLY; see ``sitecustomize.py`` beside this file).

UniAnimate's short-clip entrance needs, beyond the generic CUDA->CPU / fp16->fp32 mapping:

* ``pynvml``: it calls ``nvmlInit`` and reads GPU 0's memory inside the sampling loop (the numbers
  are never used); without an NVIDIA driver that raises, so the three calls get harmless stand-ins;
* ``xformers.ops``: its UNet passes ``op=`` and, in the temporal attention, ``attn_bias=
  xformers.ops.LowerTriangularMask()``; the generic fake attention gets both (plain softmax attention,
  causal where the mask says so);
* ``Tensor.to(gpu)`` with the integer rank (``gpu = 0``): the generic mode maps integer devices
  given as ``device=``; the entrance passes the rank positionally, so a small mode on top maps a
  positional integer of ``Tensor.to`` to the CPU as well;
* ``open_clip``: the tiny weights built by ``benchmarks/upstream_tiny/unianimate.py`` use a tiny
  OpenCLIP architecture that OpenCLIP does not ship; an ``arch`` that is the path of a ``.json``
  model config is registered with OpenCLIP under the file's stem before the model is made. The real
  ``ViT-H-14`` and every other name pass through unchanged.

Nothing here applies unless an upstream imports these modules; the ``Tensor.to`` mode is installed
only when UniAnimate's short-clip entrance module is imported.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from sitecustomize import when_imported


def _patch_pynvml(pynvml: types.ModuleType) -> None:
    memory = types.SimpleNamespace(total=0, free=0, used=0)
    pynvml.nvmlInit = lambda *args, **kwargs: None
    pynvml.nvmlDeviceGetHandleByIndex = lambda index: index
    pynvml.nvmlDeviceGetMemoryInfo = lambda handle: memory


class _LowerTriangularMask:
    """Stands for ``xformers.ops.LowerTriangularMask``: causal attention over the key axis."""


def _patch_fake_xformers() -> None:
    ops = sys.modules.get("xformers.ops")
    if ops is None or not str(getattr(sys.modules["xformers"], "__version__", "")).endswith("cpushim"):
        return  # a real xformers is installed: leave it alone
    import torch

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None, op=None):  # noqa: ANN001, ANN202
        scale = query.shape[-1] ** -0.5 if scale is None else scale
        weights = (query * scale) @ key.transpose(-2, -1)
        if isinstance(attn_bias, _LowerTriangularMask):
            rows, cols = weights.shape[-2:]
            causal = torch.ones(rows, cols, dtype=torch.bool, device=weights.device).tril()
            weights = weights.masked_fill(~causal, float("-inf"))
        elif attn_bias is not None:
            weights = weights + attn_bias
        return torch.softmax(weights, dim=-1) @ value

    ops.memory_efficient_attention = memory_efficient_attention
    ops.LowerTriangularMask = _LowerTriangularMask
    ops.MemoryEfficientAttentionFlashAttentionOp = None


def _patch_open_clip(open_clip: types.ModuleType) -> None:
    original = open_clip.create_model_and_transforms

    def create_model_and_transforms(model_name, *args, **kwargs):  # noqa: ANN001, ANN202
        path = Path(str(model_name))
        if path.suffix == ".json" and path.is_file():
            open_clip.add_model_config(path)
            model_name = path.stem
        return original(model_name, *args, **kwargs)

    open_clip.create_model_and_transforms = create_model_and_transforms


def _map_positional_rank() -> None:
    import torch
    from torch.overrides import TorchFunctionMode

    class PositionalRankToCpu(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func is torch.Tensor.to:
                is_rank = [isinstance(a, int) and not isinstance(a, bool) for a in args[1:]]
                args = (args[0], *["cpu" if r else a for r, a in zip(is_rank, args[1:], strict=True)])
            return func(*args, **(kwargs or {}))

    mode = PositionalRankToCpu()
    mode.__enter__()  # for the life of the process, on top of the generic mode
    torch._upstream_rank_shim_mode = mode


when_imported("pynvml", _patch_pynvml)
# only once UniAnimate's entrance is imported: other upstreams keep the generic mode alone
when_imported("tools.inferences.inference_unianimate_entrance", lambda module: _map_positional_rank())
when_imported("open_clip", _patch_open_clip)
_patch_fake_xformers()
