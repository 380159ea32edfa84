"""Runs of the workflow in a directory: what a hard kill leaves behind, and clearing it safely.

Snakemake locks its working directory while it runs (``.snakemake/locks``). After ``kill -9``, an OOM
kill or a power loss the locks stay, and the next run stops with ``LockException``; the outputs of the
jobs that were running are marked incomplete. :func:`clear_stale_locks` removes the locks only when no
process of a run is still alive in that directory (neither Snakemake nor one of its jobs, which enter
through ``pipeline.cli``); the run that follows passes ``--rerun-incomplete`` so exactly the
interrupted jobs run again. ``make demo`` does both, so after a crash the same command finishes the
study.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_MARKERS = ("snakemake", "pipeline.cli")


class RunStillAlive(RuntimeError):
    """A process of a run is still working in the directory: its locks are not stale."""


def live_run_processes(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """(pid, command line) of every other process whose working directory is ``directory`` and whose
    command line names Snakemake or a pipeline job (Linux /proc; elsewhere nothing is found)."""
    target = Path(directory).resolve()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours to read
            continue
        if cwd == target and any(marker in command for marker in RUN_MARKERS):
            found.append((pid, command))
    return found


def clear_stale_locks(directory: str | os.PathLike = ".") -> list[Path]:
    """Remove Snakemake's locks in ``directory`` if no process of a run is alive there; return them.

    Raises :class:`RunStillAlive` (naming the processes) when a run is still working there."""
    locks = sorted((Path(directory) / ".snakemake" / "locks").glob("*.lock"))
    if not locks:
        return []
    alive = live_run_processes(directory)
    if alive:
        listed = "; ".join(f"pid {pid}: {command[:120]}" for pid, command in alive)
        raise RunStillAlive(
            f"{Path(directory).resolve()} is locked by a run that is still working ({listed}); "
            "wait for it to finish or stop it, then run again"
        )
    for lock in locks:
        lock.unlink(missing_ok=True)
    return locks
