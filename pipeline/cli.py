r"""Command-line entry points, one sub-command per stage, so a stage can run outside Snakemake.

    python -m pipeline.cli world-spec   --spec JSON --out results/world/W/world.json
    python -m pipeline.cli world-render --spec world.json --shard shard-0000 --sheet ... --groundtruth ... --videos ...
    python -m pipeline.cli index-world  --spec world.json --sheets a.csv b.csv --groundtruth a.npz b.npz --out m.parquet
    python -m pipeline.cli index        --spec '{"name": "casiab", "kind": "opengait", "root": ..., "partition": ...}' --out m.parquet

Per-sequence stages (pose, masks, silhouettes, skeleton_maps, crops, guidance) run on one shard of a
manifest, or on one video file outside Snakemake:

    python -m pipeline.cli stage pose --video walk.mp4 --store pose.npz --status pose.parquet \
        --options '{"backend": "mediapipe", "keep_masks": true, "min_valid_frames": 10}'
    python -m pipeline.cli stage masks --video walk.mp4 --store masks.npz --status masks.parquet \
        --options '{"backend": "from_pose", "pose_store": "pose.npz", "pose_status": "pose.parquet", "min_valid_frames": 10}'
    python -m pipeline.cli stage silhouettes --video walk.mp4 --store sils.npz --status sils.parquet \
        --options '{"masks_store": "masks.npz", "masks_status": "masks.parquet", "min_valid_frames": 10}'
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable


def _spec(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--spec is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--spec must be a JSON object")
    return value


def _world_spec(args: argparse.Namespace) -> None:
    from pipeline.world.generate import write_world_spec

    write_world_spec(args.spec, args.out)


def _world_render(args: argparse.Namespace) -> None:
    from pipeline.world.generate import render_shard

    render_shard(args.spec, args.shard, sheet=args.sheet, groundtruth=args.groundtruth, videos=args.videos)


def _index_world(args: argparse.Namespace) -> None:
    from pipeline.datasets.index import index_world

    index_world(args.spec, args.sheets, args.groundtruth, args.out)


def _sweep_plan(args: argparse.Namespace) -> None:
    from pipeline.generation.sweep import run_plan

    run_plan(
        args.manifest,
        args.pose_summary,
        dataset=args.dataset,
        sweep=args.spec["sweep"],
        scenario_conditions=args.spec.get("scenario_conditions", {}),
        out=args.out,
    )


def _sweep_sheet(args: argparse.Namespace) -> None:
    from pipeline.generation.sweep import sweep_sheet

    sweep_sheet(args.plans, args.models, args.out)


def _generate(args: argparse.Namespace) -> None:
    from pipeline.generation.generate import run_generation_shard

    run_generation_shard(
        plan=args.plan,
        scenario=args.scenario,
        shard=args.shard,
        model=args.model,
        spec=args.spec,
        manifest=args.manifest,
        pose_summary=args.pose,
        masks_summary=args.masks,
        videos=args.videos,
        out=args.out,
    )


def _summarise(args: argparse.Namespace) -> None:
    from pipeline.runner import summarise

    summarise(args.statuses, args.out)


def _index(args: argparse.Namespace) -> None:
    from pipeline.datasets.index import index_external

    index_external(args.spec, args.out)


STAGES = {
    "pose": ("pipeline.perception.pose", "run_pose_stage"),
    "masks": ("pipeline.perception.masks", "run_masks_stage"),
    "silhouettes": ("pipeline.perception.silhouettes", "run_silhouettes_stage"),
    "skeleton_maps": ("pipeline.perception.skeleton_maps", "run_skeleton_maps_stage"),
    "crops": ("pipeline.perception.crops", "run_crops_stage"),
    "guidance": ("pipeline.perception.guidance", "run_guidance_stage"),
}


def single_video_rows(path: str) -> list[dict]:
    """A one-row manifest for a video given on the command line."""
    from pathlib import Path

    from pipeline.io.video import probe_video

    info = probe_video(path)
    stem = Path(path).stem
    return [
        {
            "dataset": "cli",
            "subject": stem,
            "condition": "cli",
            "view": "cli",
            "sequence_id": stem,
            "split": "test",
            "role": "probe",
            "path_video": str(path),
            "frame_count": info.frame_count,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "error": None,
        }
    ]


def _stage(args: argparse.Namespace) -> None:
    from pipeline.runner import shard_rows

    if args.video:
        rows = single_video_rows(args.video)
    elif args.manifest and args.shard and args.shards:
        rows = shard_rows(args.manifest, args.shard, args.shards)
    else:
        raise SystemExit("stage: give --video, or --manifest with --shard and --shards")
    _run_stage(args.name, rows, args.store, args.status, args.options)


def _run_stage(name: str, rows: list[dict], store: str, status: str, options: dict) -> None:
    import importlib

    module, function = STAGES[name]
    run = getattr(importlib.import_module(module), function)
    table = run(rows, store=store, status=status, **options)
    failed = sum(1 for r in table if r["error"])
    logging.getLogger("pipeline.cli").info("%s: %d sequences, %d flagged", name, len(table), failed)


def _chain(args: argparse.Namespace) -> None:
    """Several per-sequence stages on one shard in one process, in the order given (each reads the
    previous stages' outputs through its options): one interpreter start and one manifest read instead
    of one per stage, for the many small shards of generated videos."""
    from pipeline.runner import shard_rows

    rows = shard_rows(args.manifest, args.shard, args.shards)
    for name, store, status, options in args.step:
        if name not in STAGES:
            raise SystemExit(f"chain: unknown stage {name!r}; expected one of {sorted(STAGES)}")
        _run_stage(name, rows, store, status, _spec(options))


def train_recogniser(*, manifest: str, perception_root: str, out_dir: str, config: dict, model: str) -> None:
    """Train on the manifest's train split; the final checkpoint is copied to ``model`` (the rule's output)."""
    import os
    import shutil

    from pipeline.contracts import atomic_path
    from pipeline.recognisers.checkpoints import RecogniserUnavailable, save_unavailable
    from pipeline.recognisers.train import run_train_stage

    try:
        result = run_train_stage(manifest=manifest, perception_root=perception_root, out=out_dir, config=config)
    except RecogniserUnavailable as err:
        # Not a crash: the model file records why, and embeddings, tables and the report show it.
        reason = f"{config['recogniser']} not trained on this dataset: {err}"
        print(f"WARNING: {reason}", file=sys.stderr)
        save_unavailable(model, str(config["recogniser"]), reason)
        return
    final, tmp = atomic_path(model)
    shutil.copyfile(result.checkpoint, tmp)
    os.replace(tmp, final)


def embed_shard(
    *,
    manifest: str,
    shard: str,
    shards: int,
    source_root: str,
    recognisers: dict[str, str],
    out: dict[str, str],
    threads: int | None = None,
) -> None:
    """Embeddings of one perception shard's test split (gallery and probe rows) with every recogniser
    (one output file per recogniser). Train-split rows are left out: retrieval never ranks them (it drops
    ``role == "train"``), and on the demo world they were 40 % of this stage's work."""
    from pipeline.evaluation.embed import run_embed_stage
    from pipeline.runner import shard_rows

    rows = [row for row in shard_rows(manifest, shard, shards) if row["role"] != "train"]
    stores = {
        stage: f"{source_root}/{stage}/{shard}.npz" for stage in ("silhouettes", "skeleton_maps", "crops")
    }
    for name, checkpoint in recognisers.items():
        run_embed_stage(
            rows, out=out[name], recogniser=name, checkpoint=checkpoint, stores=stores, threads=threads
        )


# Whole-source stages whose inputs are many files: one JSON object of keyword arguments each.
SPEC_COMMANDS = {
    "train-recogniser": ("pipeline.cli", "train_recogniser", "train a recogniser on a dataset's train split"),
    "embed": ("pipeline.cli", "embed_shard", "embed one perception shard with every recogniser"),
    "real-retrieval": ("pipeline.evaluation.retrieval", "run_real_retrieval", "protocol metrics of the real probes"),
    "evaluate-generated": ("pipeline.evaluation.retrieval", "run_generated_evaluation", "rank generated probes"),
    "metrics": (
        "pipeline.evaluation.metrics",
        "run_metrics_stage",
        "visual metrics and diagnostics of a generation shard",
    ),
    "train-gaitcrafter": (
        "pipeline.gaitcrafter.stage",
        "train_stage",
        "train (or resume) a dataset's GaitCrafter",
    ),
    "gaitcrafter-quality": ("pipeline.gaitcrafter.stage", "quality_stage", "sample quality of a GaitCrafter"),
    "gaitcrafter-novelty": (
        "pipeline.gaitcrafter.stage",
        "novelty_stage",
        "distinctness of novel identities",
    ),
    "gaitcrafter-synthesize": ("pipeline.gaitcrafter.stage", "synthesize_stage", "a synthetic training set"),
    "gaitcrafter-augment": (
        "pipeline.gaitcrafter.stage",
        "augment_variant_stage",
        "one augmentation variant",
    ),
    "gaitcrafter-augmentation": (
        "pipeline.gaitcrafter.stage",
        "augmentation_table_stage",
        "the augmentation table",
    ),
    "aggregate": ("pipeline.study.aggregate", "run_aggregate", "the study's tables"),
    "analyses": (
        "pipeline.study.analyses",
        "run_analyses",
        "guidance ablation, predictors of biometric fidelity, cross-domain table",
    ),
    "report": ("pipeline.study.report", "build_report", "the HTML report"),
}


def _spec_command(args: argparse.Namespace) -> None:
    import importlib

    module, function, _ = SPEC_COMMANDS[args.command]
    getattr(importlib.import_module(module), function)(**args.spec)


def _unlock_stale(args: argparse.Namespace) -> None:
    from pipeline.runs import RunStillAlive, clear_stale_locks

    try:
        removed = clear_stale_locks(args.directory)
    except RunStillAlive as err:
        raise SystemExit(f"error: {err}") from None
    if removed:
        print(
            f"A previous run in {args.directory} stopped without cleaning up (killed?): removed its "
            f"{len(removed)} lock(s); the interrupted jobs run again (--rerun-incomplete)."
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaitfid", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], None], help_text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("world-spec", _world_spec, "resolve a world's identities into world.json")
    p.add_argument(
        "--spec", type=_spec, required=True, help="the world's config entry as JSON (plus 'dataset')"
    )
    p.add_argument("--out", required=True)

    p = command("world-render", _world_render, "render one shard of a world")
    p.add_argument("--spec", required=True, help="world.json written by world-spec")
    p.add_argument("--shard", required=True)
    p.add_argument("--sheet", required=True)
    p.add_argument("--groundtruth", required=True)
    p.add_argument("--videos", required=True)

    p = command("index-world", _index_world, "index a rendered world into the manifest")
    p.add_argument("--spec", required=True)
    p.add_argument("--sheets", nargs="+", required=True)
    p.add_argument("--groundtruth", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = command("stage", _stage, "run one per-sequence stage on a manifest shard or one video")
    p.add_argument("name", choices=sorted(STAGES))
    p.add_argument("--manifest")
    p.add_argument("--shard")
    p.add_argument("--shards", type=int)
    p.add_argument("--video", help="run on this one video instead of a manifest shard")
    p.add_argument("--store", required=True, help="output frame store (.npz)")
    p.add_argument("--status", required=True, help="output status table (.parquet)")
    p.add_argument("--options", type=_spec, default={}, help="stage options as JSON (backend, inputs, ...)")

    p = command("chain", _chain, "run several per-sequence stages on one manifest shard in one process")
    p.add_argument("--manifest", required=True)
    p.add_argument("--shard", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--step", nargs=4, action="append", required=True, metavar=("STAGE", "STORE", "STATUS", "OPTIONS"),
                   help="one stage: its name, output store (.npz), status (.parquet) and options (JSON); repeat in order")  # fmt: skip

    p = command("sweep-plan", _sweep_plan, "plan the generation jobs of a dataset (model-independent)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--pose-summary", required=True, help="the pose stage's summary table of the dataset")
    p.add_argument("--dataset", required=True)
    p.add_argument("--spec", type=_spec, required=True, help='{"sweep": ..., "scenario_conditions": ...}')
    p.add_argument("--out", required=True)

    p = command("sweep-sheet", _sweep_sheet, "the full sweep sheet: every plan row for every model")
    p.add_argument("--plans", nargs="+", required=True)
    p.add_argument("--models", nargs="*", default=[])
    p.add_argument("--out", required=True)

    p = command("generate", _generate, "run one model on one shard of a scenario's jobs")
    p.add_argument("--plan", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--shard", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--spec", type=_spec, required=True, help="the model's config entry as JSON")
    p.add_argument("--manifest", required=True, help="the real dataset's manifest")
    p.add_argument("--pose", required=True, help="the real dataset's pose stage summary")
    p.add_argument("--masks", required=True, help="the real dataset's masks stage summary")
    p.add_argument("--videos", required=True)
    p.add_argument("--out", required=True)

    p = command("summarise", _summarise, "one summary table over all shards of a stage")
    p.add_argument("--statuses", nargs="+", required=True)
    p.add_argument("--out", required=True)

    for name, (_, _, help_text) in SPEC_COMMANDS.items():
        p = command(name, _spec_command, help_text)
        p.add_argument("--spec", type=_spec, required=True, help="keyword arguments as a JSON object")

    p = command("unlock-stale", _unlock_stale, "remove a killed run's Snakemake locks (none if a run is alive)")
    p.add_argument("--directory", default=".", help="the workflow's working directory")

    p = command("index", _index, "index a dataset on disk into the manifest")
    p.add_argument(
        "--spec", type=_spec, required=True, help="the dataset's config entry as JSON (plus 'name')"
    )
    p.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
