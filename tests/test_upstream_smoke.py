"""The upstream smoke script's pieces that run without an upstream: the CPU shim, options, models.

The shim is exercised in a child Python (it patches torch for the whole process) with the project's
own torch: CUDA requests land on the CPU, float16 becomes float32, xformers imports and diffusers'
xformers switch is a no-op, and model shims beside it are loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import upstream_smoke  # noqa: E402

from tests.test_upstream_adapters import make_checkout  # noqa: E402

SHIM = ROOT / "benchmarks" / "upstream_tiny" / "cpu_shim"

PROBE = """
import json, torch
out = {}
x = torch.zeros(3, device="cuda:0")
out["factory"] = x.device.type
out["to"] = torch.ones(2).to("cuda").device.type
out["cuda"] = torch.ones(2).cuda().device.type
out["half"] = str(torch.ones(2).half().dtype)
m = torch.nn.Linear(2, 2).to(torch.device("cuda", 0), torch.float16)
out["module"] = [m.weight.device.type, str(m.weight.dtype)]
out["randn"] = str(torch.randn(2, dtype=torch.float16, device="cuda", generator=torch.Generator(device="cuda")).dtype)
out["generator_isinstance"] = isinstance(torch.Generator(), torch.Generator)
out["cuda_available"] = torch.cuda.is_available()
import xformers.ops
q = torch.randn(1, 4, 8)
out["xformers"] = bool(torch.allclose(xformers.ops.memory_efficient_attention(q, q, q),
                                      torch.softmax(q @ q.transpose(-2, -1) / 8 ** 0.5, -1) @ q, atol=1e-5))
from diffusers.utils.import_utils import is_xformers_available
out["diffusers_sees_xformers"] = is_xformers_available()
from diffusers.models.modeling_utils import ModelMixin
out["enable_xformers"] = ModelMixin.enable_xformers_memory_efficient_attention(None)
import shim_probe_test
out["model_shim"] = shim_probe_test.LOADED
print(json.dumps(out))
"""


def test_cpu_shim_maps_cuda_and_fp16_and_fakes_xformers(tmp_path: Path) -> None:
    # a model shim beside a copy of the generic one, as shim_<model>.py files are
    shim = tmp_path / "cpu_shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text((SHIM / "sitecustomize.py").read_text())
    (shim / "shim_probe_test.py").write_text("LOADED = True\n")
    env = {**os.environ, "PYTHONPATH": str(shim), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "factory": "cpu", "to": "cpu", "cuda": "cpu", "half": "torch.float32",
        "module": ["cpu", "torch.float32"], "randn": "torch.float32", "generator_isinstance": True,
        "cuda_available": False, "xformers": True, "diffusers_sees_xformers": False,
        "enable_xformers": None, "model_shim": True,
    }  # fmt: skip
    assert "[upstream cpu shim]" in done.stderr


def test_without_the_shim_cuda_fails_on_this_machine() -> None:
    """The probe's first line really needs the shim here (no CUDA), so the test above can fail."""
    done = subprocess.run(
        [sys.executable, "-c", "import torch; torch.zeros(1, device='cuda')"], capture_output=True, text=True
    )
    assert done.returncode != 0


def test_models_come_from_the_tiny_modules_and_options_put_the_shim_first(tmp_path: Path) -> None:
    assert "magicanimate" in upstream_smoke.tiny_models()
    assert not [m for m in upstream_smoke.tiny_models() if m.startswith("_")]
    args = argparse.Namespace(
        checkout=tmp_path, python=Path(sys.executable), no_shim=False, work=tmp_path, keep=False
    )
    overrides = {"weights": {"motion_module": "x.ckpt"}, "env": {"EXTRA": "1"}}
    options = upstream_smoke.adapter_options(args, dict(overrides))
    assert options["env"]["PYTHONPATH"] == f"{SHIM}:{tmp_path.resolve()}"
    assert options["env"]["EXTRA"] == "1" and options["weights"] == {"motion_module": "x.ckpt"}
    args.no_shim = True
    assert upstream_smoke.adapter_options(args, dict(overrides))["env"]["PYTHONPATH"] == str(
        tmp_path.resolve()
    )


def test_cuda_device_needs_no_shim(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--no-shim"):
        upstream_smoke.main(
            [
                "--model",
                "magicanimate",
                "--checkout",
                str(tmp_path),
                "--python",
                sys.executable,
                "--device",
                "cuda",
            ]
        )


def test_world_jobs_carry_every_guidance(tmp_path: Path) -> None:
    jobs = upstream_smoke.make_jobs(upstream_smoke.render_world(8))
    assert len(jobs) == 2
    for job in jobs:
        driving = job.driving
        assert driving.frame_count == 8 and driving.parts.shape == (8, driving.height, driving.width, 3)
        assert driving.smpl_mm.shape == (8, 24, 3)
        assert driving.masks.shape == (8, driving.height, driving.width)
        assert job.reference.sequence_id != driving.sequence_id  # the other sequence's first frame


def _fake_tiny(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object]) -> None:
    """``upstream_tiny.magicanimate`` whose prepare() returns ``overrides`` (no upstream env needed)."""
    module = types.ModuleType("upstream_tiny.magicanimate")
    module.prepare = lambda checkout, python, work, device: dict(overrides)
    monkeypatch.setitem(sys.modules, "upstream_tiny.magicanimate", module)


def test_smoke_runs_the_adapter_end_to_end_on_two_world_sequences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the stand-in checkout, through the shim: the JSON line the table is built from."""
    checkout = make_checkout(tmp_path, "magicanimate")
    _fake_tiny(monkeypatch, {"defaults": {"steps": 2}})
    argv = [
        "--model",
        "magicanimate",
        "--checkout",
        str(checkout),
        "--python",
        sys.executable,
        "--frames",
        "8",
    ]
    report = upstream_smoke.main([*argv, "--work", str(tmp_path / "work")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    assert report["reached"] == "end to end" and report["sequences"] == 2 and report["shim"] is True
    assert report["generated_frames"] == 16 and [j["driving_frames"] for j in report["jobs"]] == [8, 8]
    assert report["upstream_cpu_s"] > 0 and 0 < report["adapter_overhead_share_cpu"] < 1
    assert report["pinned_commit"] == "d2bc3bc"


def test_smoke_reports_a_refused_config_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = make_checkout(tmp_path, "magicanimate")
    _fake_tiny(monkeypatch, {"defaults": {"guidance_scale": 1.0}})
    argv = [
        "--model",
        "magicanimate",
        "--checkout",
        str(checkout),
        "--python",
        sys.executable,
        "--frames",
        "8",
    ]
    with pytest.raises(SystemExit) as stopped:
        upstream_smoke.main([*argv, "--work", str(tmp_path / "work")])
    assert stopped.value.code == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["reached"] == "failed" and "guidance_scale" in report["error"]


def test_contract_level_upstreams_are_reported_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tiny(monkeypatch, {upstream_smoke.CONTRACT_KEY: {"cli": "parsed"}})
    argv = ["--model", "magicanimate", "--checkout", str(tmp_path), "--python", sys.executable]
    report = upstream_smoke.main([*argv, "--work", str(tmp_path / "work")])
    assert report["reached"] == "contract level" and report["details"] == {"cli": "parsed"}
    assert "jobs" not in report
