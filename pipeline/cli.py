"""Command-line entry points, one sub-command per stage, so a stage can run outside Snakemake.

    python -m pipeline.cli world-spec   --spec JSON --out results/world/W/world.json
    python -m pipeline.cli world-render --spec world.json --shard shard-0000 --sheet ... --groundtruth ... --videos ...
    python -m pipeline.cli index-world  --spec world.json --sheets a.csv b.csv --groundtruth a.npz b.npz --out m.parquet
    python -m pipeline.cli index        --spec '{"name": "casiab", "kind": "opengait", "root": ..., "partition": ...}' --out m.parquet
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
    from pipeline.index import index_world

    index_world(args.spec, args.sheets, args.groundtruth, args.out)


def _index(args: argparse.Namespace) -> None:
    from pipeline.index import index_external

    index_external(args.spec, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaitfid", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("world-spec", _world_spec, "resolve a world's identities into world.json")
    p.add_argument("--spec", type=_spec, required=True, help="the world's config entry as JSON (plus 'dataset')")
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

    p = command("index", _index, "index a dataset on disk into the manifest")
    p.add_argument("--spec", type=_spec, required=True, help="the dataset's config entry as JSON (plus 'name')")
    p.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
