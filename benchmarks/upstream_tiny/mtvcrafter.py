"""MTVCrafter (DINGYANB/MTVCrafter ``infer_7b.py``) at the argument-, config- and output-contract level.

MTVCrafter-7B generates with a CogVideoX-5B-based DiT that ``infer_7b.py`` loads by hub name with
hard-coded sizes, so it cannot be made tiny here. ``prepare`` runs everything else for real:

1. a build step under the upstream's python (``python mtvcrafter.py --out DIR``, cwd = the checkout)
   makes a random-weight motion VQ-VAE checkpoint with upstream's own ``Encoder`` /
   ``VectorQuantizer`` / ``Decoder`` / ``SMPL_VQVAE`` at the sizes ``infer_7b.py`` builds them with,
   saved as ``{"module": state_dict}`` where ``infer_7b.py`` looks for it
   (``<snapshot>/4DMoT/mp_rank_00_model_states.pt``);
2. the project's adapter runs on the smoke script's two world sequences against the unmodified
   ``infer_7b.py`` with ``cpu_shim`` on its PYTHONPATH and ``GAITFID_MTVCRAFTER_STUB`` set, so that
   ``cpu_shim/shim_mtvcrafter.py`` serves the checkpoint folder for ``snapshot_download`` and replaces
   only ``MTVCrafterPipeline7B`` by a stand-in that returns the colour-inverted reference;
3. the ingested videos are checked: driving frame count and size, and the cropped panel must be the
   inverted reference (a wrong panel would be the reference itself or a pose drawing).

It returns ``{"contract_level": {...}}`` with what ran, the stand-in's recorded arguments, and CPU
seconds (upstream child process vs the adapter's preparation + ingestion in this process); seconds
per generated frame are those of upstream's non-DiT code only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

SHIM = Path(__file__).resolve().parent / "cpu_shim"
STUB_ENV = "GAITFID_MTVCRAFTER_STUB"
CHECKPOINT = "4DMoT/mp_rank_00_model_states.pt"
SMOKE_FRAMES = 16
# The grid panel must be the inverted reference: mean absolute difference (0..255) below this.
MAX_PANEL_MAE = 40.0


def build(out: Path) -> None:
    """Runs under the upstream's python, cwd = the checkout: the random motion VQ-VAE checkpoint."""
    import torch

    sys.path.insert(0, os.getcwd())
    from models import SMPL_VQVAE, Decoder, Encoder, VectorQuantizer

    torch.manual_seed(0)
    # the sizes infer_7b.py builds its motion tokenizer with (its checkpoint is loaded strictly)
    encoder = Encoder(
        in_channels=3, mid_channels=[128, 512], out_channels=3072, downsample_time=[2, 2],
        downsample_joint=[1, 1],
    )  # fmt: skip
    quant = VectorQuantizer(nb_code=8192, code_dim=3072, is_train=False)
    decoder = Decoder(
        in_channels=3072, mid_channels=[512, 128], out_channels=3, upsample_rate=2.0,
        frame_upsample_rate=[2.0, 2.0], joint_upsample_rate=[1.0, 1.0],
    )  # fmt: skip
    vqvae = SMPL_VQVAE(encoder, decoder, quant)
    path = out / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": vqvae.state_dict()}, path)
    print(json.dumps({"vqvae_parameters": sum(p.numel() for p in vqvae.parameters())}))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _panel_error(video: Any, job: Any) -> float:
    """Mean absolute difference between the generated frames and the inverted reference."""
    import numpy as np

    inverted = 255.0 - np.asarray(job.reference.image, dtype=np.float32)
    return float(np.abs(video.frames.astype(np.float32) - inverted[None]).mean())


def _run_adapter(checkout: Path, python: Path, work: Path, stub: Path) -> dict[str, Any]:
    from upstream_smoke import make_jobs, render_world

    from pipeline.generation.generators import make_generator

    env = {
        "PYTHONPATH": f"{SHIM}:{checkout}", STUB_ENV: str(stub), "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1", "UPSTREAM_SHIM_QUIET": "1",
    }  # fmt: skip
    generator = make_generator(
        "mtvcrafter", checkout=str(checkout), python=str(python), env=env, work_dir=str(work / "jobs"),
        timeout_s=3600, keep_work=True,  # under the smoke script's work dir: the grids stay to look at
    )  # fmt: skip
    generator.load()
    jobs, cpu = make_jobs(render_world(SMOKE_FRAMES)), {"adapter": 0.0, "upstream": 0.0}
    per_job = []
    for job in jobs:
        self0, child0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        video = generator.generate(job)
        adapter, upstream = _cpu(resource.RUSAGE_SELF) - self0, _cpu(resource.RUSAGE_CHILDREN) - child0
        expected = (job.driving.frame_count, job.driving.height, job.driving.width, 3)
        if video.frames.shape != expected:
            raise RuntimeError(f"mtvcrafter: video {video.frames.shape}, expected {expected}")
        error = _panel_error(video, job)
        if error > MAX_PANEL_MAE:
            raise RuntimeError(f"mtvcrafter: cropped panel is not the generated one (MAE {error:.1f})")
        cpu["adapter"] += adapter
        cpu["upstream"] += upstream
        per_job.append({
            "job": job.job_id, "generated_frames": video.notes["timing"]["generated_frames"],
            "driving_frames": len(video.frames), "panel_mae_vs_inverted_reference": round(error, 2),
            "upstream_cpu_s": round(upstream, 2), "adapter_cpu_s": round(adapter, 2),
            "guidance": video.notes["guidance"],
            "camera": video.notes["camera"],
        })  # fmt: skip
    generator.close()
    generated = sum(j["generated_frames"] for j in per_job)
    return {
        "jobs": per_job,
        "generated_frames": generated,
        "upstream_cpu_s_per_generated_frame_without_dit": round(cpu["upstream"] / max(generated, 1), 3),
        "adapter_overhead_share_cpu": round(cpu["adapter"] / max(sum(cpu.values()), 1e-9), 4),
    }


def prepare(checkout: Path, python: Path, work: Path, device: str) -> dict[str, Any]:
    """Run the contract check; returns ``{"contract_level": {...}}`` (the adapter ran inside)."""
    work = Path(work).absolute()
    stub = work / "mtvcrafter_stub"
    env = {
        **os.environ,
        "PYTHONPATH": f"{SHIM}:{checkout}",
        "OMP_NUM_THREADS": "1",
        "UPSTREAM_SHIM_QUIET": "1",
    }
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--out", str(stub)],
        cwd=checkout, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"mtvcrafter VQ-VAE checkpoint: the build step failed:\n{done.stderr[-4000:]}")
    result = _run_adapter(Path(checkout), Path(python), work, stub)
    calls = [json.loads(line) for line in (stub / "calls.jsonl").read_text().splitlines()]
    ran = (
        "infer_7b.py unmodified (CLI, pickle, mean/std, sampling, decord, reference, pose drawing, "
        "real motion VQ-VAE with random weights, 5-panel grid, imageio.mimsave); "
        "MTVCrafterPipeline7B (CogVideoX-5B DiT) replaced by a stand-in"
    )
    if device != "cpu":
        ran += f"; device {device} requested, but the contract check always runs through the CPU shim"
    return {"contract_level": {"ran": ran, "pipeline_calls": calls, **result}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="build MTVCrafter's random motion VQ-VAE (upstream env)")
    parser.add_argument("--out", required=True, type=Path)
    build(parser.parse_args().out.absolute())
