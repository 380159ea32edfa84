"""Seconds for a 5,000-probe × 5,000-gallery retrieval with 256×16 embeddings (OpenGait's size).

Run pinned to one core for numbers that mean something:
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/retrieval_speed.py

Wall time and process CPU time (the latter is less sensitive to other jobs sharing the core).
Times (a) the per-part distance matrix alone and (b) the whole ``generic`` protocol (distances, stable
ranking, Rank-1/5, mAP, mINP) through :func:`pipeline.evaluation.retrieval.evaluate`, for float64 (the default)
and float32 distances.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pipeline.evaluation.retrieval import evaluate, get_protocol, part_distances  # noqa: E402


def problem(
    n_probe: int, n_gallery: int, channels: int, parts: int, subjects: int, seed: int
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_probe + n_gallery
    emb = rng.normal(size=(n, channels * parts)).astype(np.float32)
    return pl.DataFrame(
        {
            "sequence_id": [f"q{i}" for i in range(n)],
            "subject": [f"s{i % subjects}" for i in range(n)],
            "condition": ["nm"] * n,
            "view": [f"{i % 11:03d}" for i in range(n)],
            "role": ["probe"] * n_probe + ["gallery"] * n_gallery,
            "embedding": emb,
            "parts": [parts] * n,
            "channels": [channels] * n,
            "error": [None] * n,
        },
        schema_overrides={"error": pl.Utf8},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=5000)
    parser.add_argument("--gallery", type=int, default=5000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (BLAS threads: set OMP_NUM_THREADS)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    table = problem(args.probes, args.gallery, args.channels, args.parts, subjects=500, seed=0)
    emb = np.asarray(table["embedding"].to_list(), dtype=np.float32).reshape(-1, args.channels, args.parts)
    probe, gallery = emb[: args.probes], emb[args.probes :]
    print(f"{args.probes} x {args.gallery} problem, embeddings {args.channels} x {args.parts}")
    for dtype in (np.float64, np.float32):
        for metric in ("euc", "cos"):
            start, cpu = time.perf_counter(), time.process_time()
            part_distances(probe, gallery, metric=metric, dtype=dtype)
            print(
                f"distances only   {metric} {dtype.__name__:8s} {time.perf_counter() - start:7.2f} s wall"
                f" {time.process_time() - cpu:7.2f} s cpu"
            )
    for dtype in (np.float64, np.float32):
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluate(table, get_protocol("generic", group_by=None), dtype=dtype)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        rank1 = result.summary.filter(pl.col("metric") == "Rank-1")["value"].item()
        print(
            f"generic protocol euc {dtype.__name__:8s} {seconds:7.2f} s wall {cpu:7.2f} s cpu"
            f"  (Rank-1/5, mAP, mINP; Rank-1 {rank1:.2f}% on random data)"
        )


if __name__ == "__main__":
    main()
