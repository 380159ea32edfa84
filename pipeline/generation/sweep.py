"""Stage "sweep": the generation plan, one row per (scenario, driving sequence) of a dataset.

The plan is model-independent: every model of the sweep runs the same jobs, so adding a model adds
that model's generation jobs and nothing else. A job's shard is ``shard_of(job_id, shards)``, a
stable hash of the job id alone, so adding identities or models never moves an existing job.

Tasks and scenarios (config ``sweep.scenarios``):

- restoration / ``same_sequence`` (baseline): the reference frame comes from the driving sequence itself;
- restoration / ``other_sequence`` (off-pose): the reference comes from another sequence of the same
  subject, preferring another view;
- restoration on harder driving conditions (in-the-wild: the scenario's ``driving`` regex picks them);
- transfer / ``other_identity``: the reference shows identity B, the motion is identity A's (A ≠ B),
  B drawn reproducibly from the seed and the driving sequence.

Driving sequences are test-set *probe* sequences, so a generated video is never compared with the
very gallery sequence it was made from.
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.contracts import (
    MANIFEST,
    PLAN,
    Contract,
    read_table,
    register,
    shard_name,
    shard_of,
    write_table,
)

log = logging.getLogger(__name__)

SWEEP = register(
    Contract(
        name="sweep_sheet",
        schema=pa.schema([pa.field("model", pa.string(), nullable=False), *PLAN.schema]),
        allowed_values={"task": ("restoration", "transfer")},
        unique_key=("model", "dataset", "job_id"),  # job ids repeat across datasets (same subject names)
    )
)


def _hash(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def valid_frames(pose_status: list[dict], pose_valid: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """sequence_id → indices of valid frames for sequences the pose stage accepted."""
    ok = {r["sequence_id"] for r in pose_status if r["error"] is None}
    if pose_valid is None:
        return {sid: np.arange(0) for sid in ok}
    return {sid: np.flatnonzero(pose_valid[sid]) for sid in ok if sid in pose_valid}


def pick_frame(valid: np.ndarray, policy: str) -> int:
    if len(valid) == 0:
        return 0
    return int(valid[0] if policy == "first_valid" else valid[len(valid) // 2])


def plan_dataset(
    manifest: list[dict],
    usable: dict[str, np.ndarray],
    *,
    dataset: str,
    sweep: dict,
    scenario_conditions: dict[str, str] | None = None,
) -> list[dict]:
    """All generation jobs of one dataset (see the module docstring for the rules)."""
    scenario_conditions = scenario_conditions or {}
    rows = [r for r in manifest if r["split"] == "test" and r["error"] is None and r["sequence_id"] in usable]
    subjects = sorted({r["subject"] for r in rows}, key=lambda s: (_hash(sweep["seed"], "subject", s), s))
    subjects = sorted(subjects[: sweep["identities"]])
    by_subject: dict[str, list[dict]] = {s: [] for s in subjects}
    for r in rows:
        if r["subject"] in by_subject:
            by_subject[r["subject"]].append(r)
    jobs = []
    for scenario in sweep["scenarios"]:
        pattern = re.compile(scenario_conditions.get(scenario["name"], scenario["driving"]))
        for subject in subjects:
            probes = [r for r in by_subject[subject] if r["role"] == "probe" and pattern.search(r["condition"])]
            probes.sort(key=lambda r: (_hash(sweep["seed"], scenario["name"], r["sequence_id"]), r["sequence_id"]))
            for driving in probes[: sweep["sequences_per_identity"]]:
                reference = choose_reference(scenario, driving, by_subject, subjects, sweep["seed"])
                if reference is None:
                    log.warning("%s: no reference for %s (%s)", scenario["name"], driving["sequence_id"], scenario["reference"])
                    continue
                job_id = f"{scenario['name']}/{driving['sequence_id']}"
                jobs.append(
                    {
                        "job_id": job_id,
                        "dataset": dataset,
                        "task": scenario["task"],
                        "scenario": scenario["name"],
                        "driving_sequence": driving["sequence_id"],
                        "driving_subject": driving["subject"],
                        "reference_sequence": reference["sequence_id"],
                        "reference_subject": reference["subject"],
                        "reference_frame": pick_frame(usable[reference["sequence_id"]], sweep["reference_frame"]),
                        "seed": _hash(sweep["seed"], job_id) % (2**31),
                        "shard": shard_name(shard_of(job_id, sweep["shards"])),
                    }
                )
    return jobs


def choose_reference(scenario: dict, driving: dict, by_subject: dict[str, list[dict]], subjects: list[str], seed: int):
    mode = scenario["reference"]
    if mode == "same_sequence":
        return driving
    if mode == "other_sequence":
        others = [r for r in by_subject[driving["subject"]] if r["sequence_id"] != driving["sequence_id"]]
        # Prefer another view (a pose the driving motion never shows), then another condition.
        others.sort(key=lambda r: (r["view"] == driving["view"], _hash(seed, driving["sequence_id"], r["sequence_id"])))
        return others[0] if others else None
    candidates = [s for s in subjects if s != driving["subject"]]
    if not candidates:
        return None
    other = candidates[_hash(seed, "pair", driving["sequence_id"]) % len(candidates)]
    sequences = by_subject[other]
    same_condition = [r for r in sequences if r["condition"] == driving["condition"] and r["view"] == driving["view"]]
    pool = same_condition or sequences
    return sorted(pool, key=lambda r: r["sequence_id"])[0] if pool else None


def run_plan(manifest: str, pose_summary: str, *, dataset: str, sweep: dict, scenario_conditions: dict, out: str) -> Path:
    from pipeline.contracts import read_frame_store
    from pipeline.runner import STAGE_SUMMARY

    rows = read_table(manifest, MANIFEST).to_pylist()
    status = read_table(pose_summary, STAGE_SUMMARY).to_pylist()
    valid: dict[str, np.ndarray] = {}
    for path in sorted({r["store"] for r in status}):
        store = read_frame_store(path, fields=["valid"])
        valid.update({sid: store.get(sid, "valid") for sid in store.sequence_ids})
    usable = valid_frames(status, valid)
    jobs = plan_dataset(rows, usable, dataset=dataset, sweep=sweep, scenario_conditions=scenario_conditions)
    log.info("%s: %d generation jobs per model", dataset, len(jobs))
    return write_table(jobs, out, PLAN)


def sweep_sheet(plans: list[str], models: list[str], out: str) -> Path:
    """The full sweep sheet (plan × models) for the report and for users; generation reads the plan."""
    jobs = [r for p in plans for r in read_table(p, PLAN).to_pylist()]
    return write_table([{"model": m, **job} for m in models for job in jobs], out, SWEEP)
