"""CPU-only shim for running upstream animator code unmodified on a machine without CUDA.

CPU ONLY. Never put this directory on PYTHONPATH on a GPU node: it turns every CUDA request into a
CPU one and every float16 tensor into float32, so a GPU run through it would silently run on the CPU.
``benchmarks/upstream_smoke.py`` puts it first on the upstream's PYTHONPATH unless ``--no-shim``;
Python imports ``sitecustomize`` at start-up, before the upstream entry point runs. The upstream
files stay unmodified.

What it does (generic part, any upstream):

* a global ``TorchFunctionMode`` rewrites ``device=cuda*`` to ``cpu`` and ``dtype=float16/bfloat16``
  to ``float32`` in every torch call (factories, ``Tensor.to``, ``Module.to`` through it), and turns
  ``Tensor.cuda()`` into a no-op and ``Tensor.half()`` into ``.float()``;
* ``torch.Generator(device="cuda")`` makes a CPU generator; ``torch.cuda.is_available()`` stays False
  (only the calls that would fail without CUDA are neutralised: ``set_device``, ``empty_cache``,
  ``synchronize``, ``manual_seed(_all)``);
* xformers: a fake ``xformers`` / ``xformers.ops`` module whose ``memory_efficient_attention`` is
  plain softmax attention, and diffusers' ``enable_xformers_memory_efficient_attention`` is a no-op;
* then every ``shim_*.py`` module beside this file is imported (model-specific patches), in name
  order. They can use :func:`when_imported` to patch a module once the upstream imports it.

Set ``UPSTREAM_SHIM_QUIET=1`` to silence the one-line notice on stderr.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

_HOOKS: dict[str, list[Callable[[types.ModuleType], None]]] = {}


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Runs the hooks registered for a module right after the module body has executed."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname not in _HOOKS:
            return None
        sys.meta_path.remove(self)  # find the real spec with the other finders
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            original(module)
            for hook in _HOOKS.pop(fullname, []):
                hook(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def when_imported(name: str, hook: Callable[[types.ModuleType], None]) -> None:
    """Call ``hook(module)`` once ``name`` is imported (at once if it already is)."""
    if name in sys.modules:
        hook(sys.modules[name])
        return
    _HOOKS.setdefault(name, []).append(hook)


# ---------------------------------------------------------------------------------------------
# torch: CUDA -> CPU, float16 -> float32


def _patch_torch(torch: types.ModuleType) -> None:
    from torch.overrides import TorchFunctionMode

    half_types = (torch.float16, torch.bfloat16)

    def cpu_device(value):  # noqa: ANN001, ANN202
        if isinstance(value, str) and value.startswith("cuda"):
            return "cpu"
        if isinstance(value, int) and not isinstance(value, bool):
            return "cpu"  # .to(0) / device=0 means cuda:0
        if isinstance(value, torch.device) and value.type == "cuda":
            return torch.device("cpu")
        return value

    def fix(value):  # noqa: ANN001, ANN202
        if isinstance(value, torch.dtype):
            return torch.float32 if value in half_types else value
        if isinstance(value, str | torch.device):
            return cpu_device(value)
        return value

    class CpuFloatMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            kwargs = dict(kwargs or {})
            if func is torch.Tensor.cuda:
                return args[0]
            if func is torch.Tensor.half or func is torch.Tensor.bfloat16:
                return args[0].float()
            if "device" in kwargs:
                kwargs["device"] = cpu_device(kwargs["device"])
            if "dtype" in kwargs:
                kwargs["dtype"] = fix(kwargs["dtype"])
            if func is torch.Tensor.to:  # positional device / dtype: .to("cuda"), .to(torch.float16)
                args = (args[0], *[fix(a) for a in args[1:]])
            return func(*args, **kwargs)

    mode = CpuFloatMode()
    mode.__enter__()  # for the life of the process
    torch._upstream_cpu_shim_mode = mode  # keep a reference

    real_generator = torch.Generator

    class _GeneratorMeta(type):
        def __instancecheck__(cls, obj):  # noqa: ANN001, ANN204
            return isinstance(obj, real_generator)

        def __call__(cls, device="cpu"):  # noqa: ANN001, ANN204
            return real_generator(device=cpu_device(device))

    torch.Generator = _GeneratorMeta("Generator", (), {})
    for name in ("set_device", "empty_cache", "synchronize", "manual_seed", "manual_seed_all", "init"):
        setattr(torch.cuda, name, lambda *args, **kwargs: None)


# ---------------------------------------------------------------------------------------------
# xformers: a fake module with plain attention; diffusers' switch is a no-op


def _fake_xformers() -> None:
    if importlib.util.find_spec("xformers") is not None:
        return  # a real xformers is installed; diffusers' switch below still keeps it unused

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):  # noqa: ANN001, ANN202
        import torch

        scale = query.shape[-1] ** -0.5 if scale is None else scale
        weights = (query * scale) @ key.transpose(-2, -1)
        if attn_bias is not None and not hasattr(attn_bias, "materialize"):
            weights = weights + attn_bias
        return torch.softmax(weights, dim=-1) @ value

    package = types.ModuleType("xformers")
    package.__version__ = "0.0.0+cpushim"
    package.__path__ = []  # a package, so that `import xformers.ops` works
    # find_spec() of a module in sys.modules returns its __spec__; no distribution metadata, so
    # diffusers' is_xformers_available() stays False and upstream takes its plain-attention path
    package.__spec__ = importlib.machinery.ModuleSpec("xformers", None, is_package=True)
    ops = types.ModuleType("xformers.ops")
    ops.__spec__ = importlib.machinery.ModuleSpec("xformers.ops", None)
    ops.memory_efficient_attention = memory_efficient_attention
    package.ops = ops
    sys.modules["xformers"], sys.modules["xformers.ops"] = package, ops


def _patch_diffusers(modeling_utils: types.ModuleType) -> None:
    def no_xformers(self, *args, **kwargs):  # noqa: ANN001, ANN202
        return None

    modeling_utils.ModelMixin.enable_xformers_memory_efficient_attention = no_xformers


def _load_model_shims() -> list[str]:
    loaded = []
    for path in sorted(Path(__file__).resolve().parent.glob("shim_*.py")):
        importlib.import_module(path.stem)
        loaded.append(path.stem)
    return loaded


def _install() -> None:
    if importlib.util.find_spec("torch") is None:
        return  # not an upstream env (pip, a build tool...): nothing to shim
    sys.meta_path.insert(0, _PostImportFinder())
    import torch

    _patch_torch(torch)
    _fake_xformers()
    when_imported("diffusers.models.modeling_utils", _patch_diffusers)
    loaded = _load_model_shims()
    if not os.environ.get("UPSTREAM_SHIM_QUIET"):
        print(
            f"[upstream cpu shim] cuda->cpu, fp16->fp32, xformers no-op; model shims: {loaded}",
            file=sys.stderr,
        )


_install()
