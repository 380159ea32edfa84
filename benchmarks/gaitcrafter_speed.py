"""GaitCrafter training steps/s and sampling seconds per clip (tiny config by default) on one core.

Run pinned to one core for numbers that mean something:
    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/gaitcrafter_speed.py

Training: ``--steps`` optimisation steps of the preset (batch, clip length and UNet as configured) on
synthetic silhouette clips held in memory (the step cost does not depend on the pixel content), after
``--warmup`` untimed steps; reported as the median seconds per step, steps/s and clips/s. Sampling:
``--clips`` clips with the preset's sampler, step count and classifier-free guidance (two UNet passes
per step when the guidance scale is not 1), best of ``--repeats``. ``--device cuda`` times a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.gaitcrafter.config import GaitCrafterConfig  # noqa: E402
from pipeline.gaitcrafter.model import Vocabulary, build_model, count_parameters  # noqa: E402
from pipeline.gaitcrafter.sample import sample  # noqa: E402
from pipeline.gaitcrafter.train import EMA, TrainingData, noise_scheduler, train_step  # noqa: E402


def synthetic_data(config: GaitCrafterConfig, identities: int = 8, frames: int = 40) -> TrainingData:
    """Walker-like clips (a torso and two swinging legs whose width depends on the identity)."""
    views = ("054", "090", "126")
    clips, labels = [], []
    for k in range(identities):
        for v in range(len(views)):
            out = np.zeros((frames, 64, 64), dtype=np.uint8)
            for t in range(frames):
                out[t, 4:40, 30 - k : 34 + k] = 255
                swing = int(round(6 * np.sin(t * np.pi / 8 + v)))
                out[t, 40:62, 29 + swing : 35 + swing] = 255
                out[t, 40:62, 29 - swing : 35 - swing] = 255
            clips.append(out)
            labels.append((k, v))
    vocabulary = Vocabulary(identities=tuple(f"b{k:02d}" for k in range(identities)), views=views)
    n = len(clips)
    return TrainingData(
        frames=clips,
        identity=np.array([k for k, _ in labels], dtype=np.int64),
        view=np.array([v for _, v in labels], dtype=np.int64),
        clothing=np.zeros(n, dtype=np.int64),
        bag=np.zeros(n, dtype=np.int64),
        sequence_ids=[f"b{k:02d}/nm/{views[v]}" for k, v in labels],
        vocabulary=vocabulary,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clips", type=int, default=1, help="clips per sampling call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = GaitCrafterConfig.from_mapping({"preset": args.preset, "device": args.device, "progress": False})
    config = replace(config, threads=args.threads)
    data = synthetic_data(config)
    torch.manual_seed(0)
    model = build_model(config, data.vocabulary).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    scheduler = noise_scheduler(config)
    print(
        f"GaitCrafter {args.preset}: {count_parameters(model) / 1e6:.2f} M parameters, clips "
        f"{config.frames}×64×44, batch {config.batch_size}, patch {config.patch}, device {args.device}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    model.train()
    seconds = []
    for step in range(1, args.warmup + args.steps + 1):
        start = time.perf_counter()
        train_step(model, data, config, optimizer, scheduler, step, args.device)
        ema.update(model, step)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if step > args.warmup:
            seconds.append(time.perf_counter() - start)
    per_step = statistics.median(seconds)
    print(
        f"training: {per_step:.3f} s/step (median of {len(seconds)}), {1 / per_step:.3f} steps/s, "
        f"{config.batch_size / per_step:.2f} clips/s; {config.steps} steps of the preset ≈ "
        f"{config.steps * per_step / 60:.1f} min"
    )
    model.eval()
    cond = model.conditions(
        [data.vocabulary.identities[0]] * args.clips,
        ["090"] * args.clips,
        ["normal"] * args.clips,
        ["none"] * args.clips,
    )
    best = min(sample(model, cond, seed=r).seconds for r in range(args.repeats))
    passes = 2 if config.guidance_scale != 1.0 else 1
    print(
        f"sampling: {best / args.clips:.2f} s/clip ({config.sampler}, {config.sample_steps} steps, guidance "
        f"{config.guidance_scale} → {passes} UNet passes/step, {args.clips} clip(s) per call, best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
