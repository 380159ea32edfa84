"""Perception accuracy on the synthetic world: mediapipe vs the world's ground truth.

Reads the workflow's own outputs (run `make demo` first, or pass --results): the manifest, the pose
and masks stage stores of a world dataset, and the world's ground-truth stores. Prints, per condition
and view and overall:

- detection rate: frames where the pose backend found a person;
- PCK@0.1 (and @0.2): share of ground-truth-visible COCO-17 keypoints within 0.1 × torso size of the truth
  (torso size = distance between the left shoulder and the right hip, on the ground truth);
- mask IoU: mediapipe mask vs the rendered person mask, over frames where either is non-empty.

    python benchmarks/perception_accuracy.py [--results results] [--dataset world]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.contracts import MANIFEST, read_frame_store, read_table, unpack_masks
from pipeline.io.sequences import groundtruth
from pipeline.skeleton import COCO17_INDEX


def torso_size(gt: np.ndarray) -> np.ndarray:
    return np.linalg.norm(gt[:, COCO17_INDEX["left_shoulder"], :2] - gt[:, COCO17_INDEX["right_hip"], :2], axis=1)


def sequence_scores(row: dict, poses, masks) -> dict[str, float]:
    sid = row["sequence_id"]
    gt_kp = groundtruth(row, "keypoints2d")
    gt_mask = unpack_masks(groundtruth(row, "mask"), row["width"])
    detected = poses.get(sid, "pose_detected")
    kp = poses.get(sid, "pose_keypoints")
    visible = gt_kp[..., 2] == 2
    dist = np.linalg.norm(kp[..., :2] - gt_kp[..., :2], axis=-1)
    torso = torso_size(gt_kp)[:, None]
    within = (dist <= 0.1 * torso) & detected[:, None]
    within2 = (dist <= 0.2 * torso) & detected[:, None]
    mp_mask = unpack_masks(masks.get(sid, "mask"), row["width"])
    inter = (mp_mask & gt_mask).reshape(len(gt_mask), -1).sum(1)
    union = (mp_mask | gt_mask).reshape(len(gt_mask), -1).sum(1)
    return {
        "frames": float(len(detected)),
        "detected": float(detected.sum()),
        "pck_hits": float(within[visible].sum()),
        "pck2_hits": float(within2[visible].sum()),
        "pck_total": float(visible.sum()),
        "iou_sum": float((inter[union > 0] / union[union > 0]).sum()),
        "iou_n": float((union > 0).sum()),
    }


def report(name: str, totals: dict[str, float]) -> str:
    det = totals["detected"] / max(totals["frames"], 1)
    pck = totals["pck_hits"] / max(totals["pck_total"], 1)
    pck2 = totals["pck2_hits"] / max(totals["pck_total"], 1)
    iou = totals["iou_sum"] / max(totals["iou_n"], 1)
    return f"{name:<24} frames {int(totals['frames']):>6}  detection {100 * det:6.2f} %  PCK@0.1 {100 * pck:6.2f} %  PCK@0.2 {100 * pck2:6.2f} %  mask IoU {iou:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--dataset", default="world")
    args = parser.parse_args()
    results = Path(args.results)
    manifest = read_table(results / "manifests" / f"{args.dataset}.parquet", MANIFEST).to_pylist()
    base = results / "perception" / args.dataset
    stores = {}
    for path in sorted((base / "pose").glob("shard-*.npz")):
        stores.update(dict.fromkeys(read_frame_store(path).sequence_ids, path.name))
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cache: dict[str, tuple] = {}
    for row in manifest:
        shard = stores.get(row["sequence_id"])
        if shard is None or row["path_groundtruth"] is None:
            continue
        if shard not in cache:
            cache[shard] = (read_frame_store(base / "pose" / shard), read_frame_store(base / "masks" / shard))
        scores = sequence_scores(row, *cache[shard])
        for key in ("overall", f"condition {row['condition']}", f"view {row['view']}"):
            for k, v in scores.items():
                groups[key][k] += v
    if not groups:
        raise SystemExit(f"no perception outputs with ground truth under {base}: run the workflow first")
    for key in sorted(groups, key=lambda k: (k != "overall", k)):
        print(report(key, groups[key]))


if __name__ == "__main__":
    main()
