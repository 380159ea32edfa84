"""GaitCrafter sample quality against training CPU time, for one configuration on a dataset's silhouettes.

Trains the configuration (``--preset`` plus ``--set key=JSON`` overrides) on the sequences the workflow
trains on (``enrol: gallery``: the train split and the test split's gallery), stopping at each
``--evals`` step; at each stop it measures the checkpoint with
:func:`pipeline.gaitcrafter.quality.evaluate_checkpoint` (every identity × view, normal clothing, no
bag): person-like frames, the own-identity GEI IoU margin, own-identity matching (nearest identity by
GEI IoU) beside its chance level, and consecutive-frame IoU. Times are **process CPU seconds**
(``time.process_time``; on a shared machine wall time says little), training and sampling apart.
One JSON line per stop goes to ``--out``.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/gaitcrafter_cpu_curve.py --results results \\
        --name lowres --set downsample=2 --set patch=2 --evals 200,400 --out curve.jsonl

Needs the dataset's manifest and silhouettes (``snakemake ... results/perception/world/silhouettes/summary.parquet``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.gaitcrafter.config import GaitCrafterConfig  # noqa: E402
from pipeline.gaitcrafter.model import count_parameters  # noqa: E402
from pipeline.gaitcrafter.quality import evaluate_checkpoint  # noqa: E402
from pipeline.gaitcrafter.stage import enrol_selection  # noqa: E402
from pipeline.gaitcrafter.train import load_training_data, train  # noqa: E402


def parse_overrides(items: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=JSON, got {item!r}")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def recogniser_rank1(checkpoint: str, generated, real) -> tuple[float, float]:
    """(Rank-1, chance) of the generated clips against the real clips with a trained silhouette
    recogniser: a clip's identity is the one whose nearest real clip (any view, Euclidean distance of
    the embeddings) is nearest; chance = 1 / identities."""
    import numpy as np

    from pipeline.evaluation.embed import load_recogniser
    from pipeline.gaitcrafter.novelty import recogniser_embedder

    embed = recogniser_embedder(load_recogniser("deepgaitv2", checkpoint))
    real_vectors = np.stack([embed(r.clip) for r in real])
    real_ids = np.array([r.identity for r in real])
    identities = sorted(set(real_ids))
    hits = []
    for g in generated:
        distances = np.linalg.norm(real_vectors - embed(g.clip)[None], axis=1)
        nearest = min(identities, key=lambda i: distances[real_ids == i].min())
        hits.append(nearest == g.identity)
    return float(np.mean(hits)), 1.0 / len(identities)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", default="results", help="the workflow's results folder")
    parser.add_argument("--dataset", default="world")
    parser.add_argument("--name", required=True, help="label of this configuration in the output")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--evals", default="100,200,400", help="training steps at which to measure")
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--guidance-on", choices=("all", "identity"), default="all")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument(
        "--work", default=None, help="run folder (default: <results>/gaitcrafter_curve/<name>)"
    )
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument(
        "--recogniser", help="a trained DeepGaitV2 checkpoint: also its Rank-1 on the samples"
    )
    parser.add_argument(
        "--no-train", action="store_true", help="measure the run folder's existing checkpoints only"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    results = Path(args.results)
    manifest = results / "manifests" / f"{args.dataset}.parquet"
    stores = sorted((results / "perception" / args.dataset / "silhouettes").glob("shard-*.npz"))
    if not stores:
        raise SystemExit(f"no silhouette stores under {results}/perception/{args.dataset}/silhouettes")
    overrides = {**parse_overrides(args.set), "threads": 1, "progress": False, "keep_last": None}
    base = GaitCrafterConfig.from_mapping(overrides, preset=args.preset)
    splits, roles = enrol_selection("gallery")
    data = load_training_data(stores, manifest, base, splits=splits, roles=roles)
    work = Path(args.work or results / "gaitcrafter_curve" / args.name)
    cpu_train = 0.0
    for stop in sorted(int(s) for s in args.evals.split(",")):
        config = replace(base, steps=stop, save_every=stop)
        start = time.process_time()
        if args.no_train:
            checkpoint = work / "checkpoints" / f"step-{stop:06d}"
            parameters = None
        else:
            result = train(config, data, work)
            checkpoint, parameters = result.checkpoint, count_parameters(result.model)
        cpu_train += time.process_time() - start
        start = time.process_time()
        summary, generated = evaluate_checkpoint(
            checkpoint, stores, manifest, steps=args.sample_steps, guidance_scale=args.guidance,
            sampler=args.sampler, splits=splits, roles=roles, guidance_on=args.guidance_on,
        )  # fmt: skip
        cpu_sample = time.process_time() - start
        if args.recogniser:
            from pipeline.gaitcrafter.quality import real_clips

            summary["deepgaitv2_rank1"], summary["deepgaitv2_chance"] = recogniser_rank1(
                args.recogniser, generated, real_clips(data)
            )
        row = {
            "name": args.name,
            "overrides": parse_overrides(args.set),
            "parameters": parameters,
            "step": stop,
            "train_cpu_s": None if args.no_train else round(cpu_train, 1),
            "eval_cpu_s": round(cpu_sample, 1),
            "eval_clips": len(generated),
            "sample_steps": args.sample_steps,
            "guidance": args.guidance,
            "guidance_on": args.guidance_on,
            **{k: v for k, v in summary.items() if k != "checkpoint"},
            "gei_margin": (summary["gei_iou_same"] or 0.0) - (summary["gei_iou_other"] or 0.0),
        }
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row, default=float) + "\n")
        print(
            f"{args.name} step {stop}: train {cpu_train:.0f} CPU s; DeepGaitV2 Rank-1 {summary.get('deepgaitv2_rank1')}; person-like {row['person_like_generated']:.2f}"
            f" (real {row['person_like_real']:.2f}), GEI margin {row['gei_margin']:+.3f}, match"
            f" {row['identity_match_gei']:.2f} (chance {row['identity_match_chance']:.2f}, real"
            f" {row['identity_match_real']:.2f}), temporal IoU"
            f" {row['consecutive_iou_generated']:.2f} (real {row['consecutive_iou_real']:.2f}); eval {cpu_sample:.0f} CPU s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
