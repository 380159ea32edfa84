"""Where the demo's minutes go: per-rule job counts and job-seconds from a Snakemake log.

Run the demo with Snakemake's normal (not ``-q``) output, as ``make demo`` does, then

    python benchmarks/demo_budget.py [LOG]      # default: the newest .snakemake/log/*.log

Job-seconds add up the wall time of every job of a rule (two jobs run at once on 2 cores, so they
sum to about twice the elapsed time); second resolution, from Snakemake's own timestamps.
The ratio printed last is elapsed / 15 minutes (the demo's budget on 2 cores).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\S+)\)$")
BUDGET_S = 15 * 60


def parse(lines: list[str]) -> tuple[dict[str, list[float]], float]:
    """{rule: [seconds per job]} and the elapsed seconds from the first job start to the last finish."""
    started: dict[str, tuple[str, datetime]] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    stamp: datetime | None = None
    pending_rule: str | None = None
    first: datetime | None = None
    last: datetime | None = None
    for line in lines:
        line = line.rstrip("\n")
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        if stamp is None:
            continue
        if match := START.match(line):
            pending_rule = match.group(1)
        elif (match := JOBID.match(line)) and pending_rule is not None:
            started[match.group(1)] = (pending_rule, stamp)
            first = first or stamp
            pending_rule = None
        elif match := FINISHED.match(line):
            rule, begun = started.pop(match.group(1), (match.group(2), stamp))
            durations[rule].append((stamp - begun).total_seconds())
            last = stamp
    elapsed = (last - first).total_seconds() if first and last else 0.0
    return dict(durations), elapsed


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            print("no .snakemake/log/*.snakemake.log here: run `make demo` first")
            return
        path = logs[-1]
    durations, elapsed = parse(path.read_text().splitlines())
    if not durations:
        raise SystemExit(f"{path}: no finished jobs found (was Snakemake run with -q?)")
    print(f"{path}")
    print(f"{'rule':<28}{'jobs':>6}{'job-seconds':>14}{'longest':>10}")
    for rule, seconds in sorted(durations.items(), key=lambda item: -sum(item[1])):
        print(f"{rule:<28}{len(seconds):>6}{sum(seconds):>14.0f}{max(seconds):>10.0f}")
    total = sum(sum(s) for s in durations.values())
    print(f"{'all jobs':<28}{sum(len(s) for s in durations.values()):>6}{total:>14.0f}")
    print(
        f"elapsed {elapsed:.0f} s ({elapsed / 60:.1f} min); ratio to the 15-minute budget: {elapsed / BUDGET_S:.2f}"
    )


if __name__ == "__main__":
    main()
