"""UniAnimate adapter: what running it against the real upstream code (ali-vilab/UniAnimate @ 643c963)
showed, kept as stand-in cases so it stays fixed without the upstream code.

The real run (``benchmarks/upstream_smoke.py --model unianimate``, tiny random weights on CPU) found:

* upstream's ``utils/video_op.py`` catches every error while writing its output video, prints
  ``save video to <path> failed, error: ...`` and exits 0 (it did so in an env whose setuptools had
  no ``pkg_resources``, which imageio-ffmpeg 0.4.9 imports); the adapter now raises with that message
  instead of a bare "no file matching";
* the conda env therefore pins ``setuptools<81``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.generation.generators import GenerationError, make_generator
from tests.test_upstream_adapters import ROOT, make_checkout, make_job, options

# upstream's print after a failed save (utils/video_op.py), then a normal exit
SAVE_FAILS = (
    "import sys, yaml\n"
    "cfg = yaml.safe_load(open(sys.argv[sys.argv.index('--cfg') + 1]))\n"
    "print('sampling done', flush=True)\n"
    "for idx in range(len(cfg['test_list_path'])):\n"
    "    print(f\"save video to {cfg['log_dir']}/rank_01_00_{idx:02d}.mp4 failed, error: Could not find a \"\n"
    "          'backend to open it with iomode `w?`', flush=True)\n"
)


def test_a_failed_save_upstream_exits_0_on_is_reported_with_its_message(tmp_path: Path) -> None:
    make_checkout(tmp_path, "unianimate", entry_source=SAVE_FAILS)
    generator = make_generator("unianimate", **options(tmp_path, "unianimate", defaults={"window": 8}))
    with pytest.raises(
        GenerationError, match=r"exited 0 but could not write 3 video\(s\).*Could not find a backend"
    ):
        generator.generate(make_job(frames=36))  # three 8-frame windows at frame_interval 2


def test_the_standin_still_generates_when_nothing_failed(tmp_path: Path) -> None:
    video = make_generator("unianimate", **options(tmp_path, "unianimate", defaults={"window": 8})).generate(
        make_job(frames=16)
    )
    assert video.frames.shape[0] == 16


def test_env_pins_setuptools_with_pkg_resources_for_imageio_ffmpeg() -> None:
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "unianimate.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "imageio-ffmpeg==0.4.9" in pip and "setuptools<81" in pip


SHIM = ROOT / "benchmarks" / "upstream_tiny" / "cpu_shim"
SHIM_CHECK = """
import torch, xformers.ops as ops
q, k, v = (torch.randn(3, 5, 4) for _ in range(3))
causal = ops.memory_efficient_attention(q, k, v, attn_bias=ops.LowerTriangularMask(), op=None)
want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
assert torch.allclose(causal, want, atol=1e-5), "causal attention"
assert torch.allclose(ops.memory_efficient_attention(q, k, v, op=None),
                      torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-5)
import tools.inferences.inference_unianimate_entrance  # UniAnimate's entrance: the rank mode comes on
assert torch.ones(2).to(0).device.type == "cpu"  # the entrance's .to(gpu) with gpu = 0
print("shim ok")
"""


def test_cpu_shim_unianimate_part(tmp_path: Path) -> None:
    """The fake xformers takes ``op=`` and the causal mask; ``.to(0)`` stays on the CPU (subprocess: the
    shim changes torch for the whole process)."""
    if not (SHIM / "sitecustomize.py").is_file():
        pytest.skip("the generic CPU shim (sitecustomize.py) comes with the smoke script's branch")
    entrance = tmp_path / "tools" / "inferences" / "inference_unianimate_entrance.py"
    entrance.parent.mkdir(parents=True)
    for package in (tmp_path / "tools", entrance.parent):
        (package / "__init__.py").write_text("")
    entrance.write_text("")
    env = {**os.environ, "PYTHONPATH": f"{SHIM}:{tmp_path}", "UPSTREAM_SHIM_QUIET": "1"}
    done = subprocess.run([sys.executable, "-c", SHIM_CHECK], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "shim ok" in done.stdout, done.stderr[-2000:]
