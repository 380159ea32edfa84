"""Orientation correction and identity-switch detection on the world's hard cases, against its ground truth.

Renders a small world whose conditions are the hard cases (sideways frames, sequential walkers,
crossing walkers behind and in front of the main walker) next to ordinary sequences, runs the pose
stage's checked perception (mediapipe pose + masks, :func:`pipeline.perception.person.perceive_checked`)
on every sequence and prints:

- orientation: on sideways sequences the correction rate (decided rotation == the world's ``rotate``),
  unsure flags and wrong turns; on upright sequences the false rotations and unsure flags;
- identity switches: which person the track actually follows per frame (the tracked mediapipe mask
  against the ground-truth masks of both walkers), the actual switches, and the detected ones
  (``perception.mediapipe.identity_switch``): recall (an actual switch with a detected switch within
  ``--tolerance`` frames), false alarms (detected switches near no actual one, and sequences without an
  actual switch that get flagged), the switch-frame error on sequential walkers, and whether
  ``keep_longest`` leaves one person.

    PYTHONPATH=. python benchmarks/hard_cases.py [--identities 6] [--views 54 90 126] [--tolerance 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np

CONDITIONS = [
    {"name": "nm-01"},
    {"name": "wild-01", "background": "wild"},
    {"name": "rot-90", "rotate": 90},
    {"name": "rot-270", "rotate": 270},
    {"name": "seq-01", "walkers": "sequential", "frames": 40},
    {"name": "cross-behind", "walkers": "crossing", "crossing_depth_m": -1.5},
    {"name": "cross-front", "walkers": "crossing", "crossing_depth_m": 1.5},
]


def tracked_identity(masks: np.ndarray, detected: np.ndarray, gt: dict) -> list[int | None]:
    """Per frame: 0 / 1 = which walker the tracked mask covers most (ground truth), None = nobody."""
    from pipeline.contracts import unpack_masks

    width = masks.shape[2]
    mine = unpack_masks(gt["mask"], width)
    other = unpack_masks(gt["mask_other"], width) if "mask_other" in gt else np.zeros_like(mine)
    walker = gt["walker"] if "walker" in gt else np.zeros(len(mine), np.int8)
    out: list[int | None] = []
    for t in range(len(masks)):
        if not detected[t]:
            out.append(None)
            continue
        a, b = int((masks[t] & mine[t]).sum()), int((masks[t] & other[t]).sum())
        if max(a, b) == 0:
            out.append(None)
        elif a >= b:
            out.append(int(walker[t]) if walker[t] >= 0 else None)
        else:
            out.append(1 - int(walker[t]) if walker[t] >= 0 else 1)
    return out


def actual_switches(identity: list[int | None]) -> list[int]:
    seen = [(t, i) for t, i in enumerate(identity) if i is not None]
    return [t for (t0, a), (t, b) in zip(seen, seen[1:], strict=False) if a != b]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--views", type=float, nargs="+", default=[54, 90, 126])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--tolerance", type=int, default=3)
    parser.add_argument("--json", help="also write the per-sequence rows here")
    parser.add_argument("--conditions", nargs="+", help="only these conditions (names below; a subset renders other sequences, since a sequence seed depends on its condition's position)")
    args = parser.parse_args()

    from pipeline.config import validate_config
    from pipeline.perception.person import make_perception, perceive_checked
    from pipeline.world.generate import render_sequence_plan, walker_attributes
    from pipeline.world.plan import plan_identities, plan_sequences

    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": args.identities, "train_identities": args.identities // 2, "seed": 11,
                         "conditions": [c for c in CONDITIONS if not args.conditions or c["name"] in args.conditions] or CONDITIONS, "views": args.views, "frames": args.frames,
                         "motion_source": "procedural"}},
    })  # fmt: skip
    world = config["worlds"]["x"]
    identities = plan_identities(world, [])
    by = {p.subject: p for p in identities}
    pose_backend, mask_backend = make_perception("mediapipe", "mediapipe")
    rows = []
    start = time.time()
    for plan in plan_sequences(world, identities):
        rendered = render_sequence_plan(world, by[plan.subject], plan, identities)
        checked = perceive_checked(rendered.rgb, pose_backend, mask_backend, identity_switch="flag")
        res = checked.result
        from pipeline.perception.orientation import to_upright

        masks_up = to_upright(res.masks.masks, checked.rotation) if checked.rotation else res.masks.masks
        identity = tracked_identity(masks_up, res.pose.detected, rendered.groundtruth)
        attrs = walker_attributes(world, by[plan.subject], plan, identities)
        rows.append({
            "sequence": plan.sequence_id, "condition": plan.condition,
            "rotate": int(plan.condition_spec.get("rotate", 0)),
            "decided": None if checked.orientation.rotation is None else checked.orientation.rotation,
            "orientation_method": checked.orientation.method,
            "actual": actual_switches(identity), "detected": checked.continuity.switch_frames,
            "reasons": checked.continuity.describe(), "switch_frame": attrs.get("switch_frame"),
            "tracklet": checked.continuity.tracklet.tolist(), "identity": identity,
            "detected_frames": int(res.pose.detected.sum()),
        })  # fmt: skip
    pose_backend.close()
    seconds = time.time() - start
    report(rows, args.tolerance)
    print(f"\n{len(rows)} sequences in {seconds:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)


def report(rows: list[dict], tol: int) -> None:
    print("== orientation ==")
    rotated = [r for r in rows if r["rotate"]]
    upright = [r for r in rows if not r["rotate"]]
    correct = sum(r["decided"] == r["rotate"] for r in rotated)
    unsure = sum(r["decided"] is None for r in rotated)
    print(f"sideways sequences: {len(rotated)}; corrected {correct} ({100 * correct / max(len(rotated), 1):.1f} %), "
          f"unsure (flagged) {unsure}, wrong turn {len(rotated) - correct - unsure}")  # fmt: skip
    false_rot = sum(r["decided"] not in (0, None) for r in upright)
    flagged = sum(r["decided"] is None for r in upright)
    print(f"upright sequences: {len(upright)}; false rotations {false_rot}, unsure (flagged) {flagged}")

    print("\n== identity switches ==")
    per = defaultdict(lambda: {"seqs": 0, "actual": 0, "hit": 0, "detected": 0, "false": 0, "flag_no_switch": 0,
                               "no_switch": 0, "frame_err": [], "kept_pure": 0})  # fmt: skip
    for r in rows:
        c = per[r["condition"]]
        c["seqs"] += 1
        c["actual"] += len(r["actual"])
        c["detected"] += len(r["detected"])
        c["hit"] += sum(any(abs(a - d) <= tol for d in r["detected"]) for a in r["actual"])
        c["false"] += sum(not any(abs(a - d) <= tol for a in r["actual"]) for d in r["detected"])
        if not r["actual"]:
            c["no_switch"] += 1
            c["flag_no_switch"] += bool(r["detected"])
        if r["switch_frame"] is not None and r["actual"] and r["detected"]:
            c["frame_err"].append(min(abs(d - r["switch_frame"]) for d in r["detected"]))
        # keep_longest: does the longest tracklet hold one person?
        tr = np.array(r["tracklet"])
        if (tr >= 0).any():
            ids, counts = np.unique(tr[tr >= 0], return_counts=True)
            kept = ids[np.argmax(counts)]
            who = {r["identity"][t] for t in np.flatnonzero(tr == kept)} - {None}
            c["kept_pure"] += len(who) <= 1
    print(f"{'condition':14s} {'seqs':>4s} {'actual':>6s} {'recall':>8s} {'detected':>8s} {'false':>5s} "
          f"{'flagged w/o switch':>18s} {'|frame err|':>11s} {'kept 1 person':>13s}")  # fmt: skip
    total = defaultdict(int)
    for cond, c in per.items():
        recall = f"{c['hit']}/{c['actual']}" if c["actual"] else "-"
        err = f"{np.mean(c['frame_err']):.1f}" if c["frame_err"] else "-"
        print(f"{cond:14s} {c['seqs']:4d} {c['actual']:6d} {recall:>8s} {c['detected']:8d} {c['false']:5d} "
              f"{c['flag_no_switch']:>8d} of {c['no_switch']:<7d} {err:>11s} {c['kept_pure']:>6d} of {c['seqs']}")  # fmt: skip
        for k in ("actual", "hit", "detected", "false", "flag_no_switch", "no_switch"):
            total[k] += c[k]
    print(f"all: recall {total['hit']}/{total['actual']}"
          f" ({100 * total['hit'] / max(total['actual'], 1):.1f} %), false alarms {total['false']} of "
          f"{total['detected']} detected, sequences without a switch flagged {total['flag_no_switch']} of "
          f"{total['no_switch']}")  # fmt: skip


if __name__ == "__main__":
    main()
