"""posewarp-dense with approximate part maps (``approx_from_pose``) against the world's ground-truth parts.

Renders world sequences, and for each identity and view animates the reference (frame 0 of its ``nm-01``
sequence) with the motion of its ``nm-02`` sequence through ``posewarp-dense`` three times: driven (and
textured) by the ground-truth part maps, by the approximation built from mediapipe's keypoints and
masks (what a real video gets), and by the approximation built from the ground-truth keypoints and
masks (the approximation's own error, without perception's). Prints, per variant, the silhouette IoU of
the generated person (posewarp's coverage > 0.5) against the driving sequence's ground-truth mask (the
approximation paints every pixel of the mask it is given, so its IoU is that mask's IoU; the ground-truth
part maps leave out the bag), the colour error inside the ground-truth mask (mean absolute RGB
difference, 0..255: reference and driving show the same identity, so the driving frames are the true
appearance; this is where wrong U, V or labels show), and the part-label accuracy of the approximate maps on the ground-truth body pixels (exact DensePose label,
and the coarse part with front/back and left/right merged).

    PYTHONPATH=. python benchmarks/approx_parts.py [--identities 6] [--views 54 90 126]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COARSE = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4, 9: 4, 10: 4, 11: 5, 12: 5, 13: 5, 14: 5,
          15: 6, 16: 6, 17: 6, 18: 6, 19: 7, 20: 7, 21: 7, 22: 7, 23: 8, 24: 8}  # fmt: skip


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--views", type=float, nargs="+", default=[54, 90, 126])
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()

    from pipeline.config import validate_config
    from pipeline.contracts import unpack_masks
    from pipeline.generation.generators.base import Driving, Reference
    from pipeline.generation.generators.posewarp import animate_dense
    from pipeline.perception.parts import approx_parts
    from pipeline.perception.person import make_perception, perceive
    from pipeline.world.generate import render_sequence_plan
    from pipeline.world.plan import plan_identities, plan_sequences

    config = validate_config({
        "datasets": {"w": {"kind": "world", "world": "x"}},
        "worlds": {"x": {"identities": args.identities, "train_identities": 1, "seed": 5, "views": args.views,
                         "conditions": [{"name": "nm-01"}, {"name": "nm-02"}], "frames": args.frames,
                         "motion_source": "procedural"}},
    })  # fmt: skip
    world = config["worlds"]["x"]
    identities = plan_identities(world, [])
    by = {p.subject: p for p in identities}
    plans = {p.sequence_id: p for p in plan_sequences(world, identities)}
    pose_backend, mask_backend = make_perception("mediapipe", "mediapipe")
    scores: dict[str, list[float]] = {"groundtruth": [], "approx (mediapipe)": [], "approx (gt pose+mask)": []}
    label: dict[str, list[float]] = {"approx (mediapipe)": [], "approx (gt pose+mask)": []}
    coarse: dict[str, list[float]] = {"approx (mediapipe)": [], "approx (gt pose+mask)": []}
    colour: dict[str, list[float]] = {k: [] for k in scores}
    start, n = time.time(), 0
    for sid, plan in plans.items():
        if plan.condition != "nm-02":
            continue
        ref_plan = plans[sid.replace("nm-02", "nm-01")]
        ref = render_sequence_plan(world, by[plan.subject], ref_plan, identities)
        drv = render_sequence_plan(world, by[plan.subject], plan, identities)
        width = drv.rgb.shape[2]
        gt_masks = unpack_masks(drv.groundtruth["mask"], width)
        ref_mask = unpack_masks(ref.groundtruth["mask"], width)
        gt_kp = drv.groundtruth["keypoints2d"].copy()
        gt_kp[..., 2] = (gt_kp[..., 2] > 0).astype(np.float32)
        ref_kp = ref.groundtruth["keypoints2d"].copy()
        ref_kp[..., 2] = (ref_kp[..., 2] > 0).astype(np.float32)
        seen = perceive(drv.rgb, pose_backend, mask_backend)
        seen_ref = perceive(ref.rgb[:1], pose_backend, mask_backend)
        variants = {
            "groundtruth": (ref.groundtruth["parts"][0], drv.groundtruth["parts"], gt_kp),
            "approx (mediapipe)": (approx_parts(seen_ref.pose.keypoints, seen_ref.masks.masks)[0],
                                   approx_parts(seen.pose.keypoints, seen.masks.masks), seen.pose.keypoints),
            "approx (gt pose+mask)": (approx_parts(ref_kp[:1], ref_mask[:1])[0], approx_parts(gt_kp, gt_masks), gt_kp),
        }  # fmt: skip
        gt_parts = drv.groundtruth["parts"][..., 0]
        body = gt_parts > 0
        for name, (ref_parts, drv_parts, keypoints) in variants.items():
            reference = Reference(image=ref.rgb[0], mask=ref_mask[0], keypoints=ref_kp[0], parts=ref_parts)
            driving = Driving(keypoints=keypoints, height=drv.rgb.shape[1], width=width, fps=25.0, parts=drv_parts)
            animation = animate_dense(reference, driving)
            scores[name].append(np.nanmean([iou(c > 0.5, m) for c, m in zip(animation.cover, gt_masks, strict=True)]))
            # Same identity in reference and driving: the driving frames are the true appearance.
            diff = np.abs(animation.frames.astype(np.int16) - drv.rgb.astype(np.int16)).mean(-1)
            colour[name].append(float(diff[gt_masks].mean()))
            if name in label:
                got = drv_parts[..., 0][body]
                want = gt_parts[body]
                label[name].append(float((got == want).mean()))
                coarse[name].append(float((np.vectorize(COARSE.get)(got) == np.vectorize(COARSE.get)(want)).mean()))
        n += 1
    pose_backend.close()
    print(f"posewarp-dense on {n} world sequences ({args.identities} identities x {len(args.views)} views), "
          f"reference nm-01 frame 0, driving nm-02, {time.time() - start:.0f} s")  # fmt: skip
    print(f"{'part maps':24s} {'silhouette IoU':>15s} {'colour MAE':>11s} {'label acc.':>11s} {'coarse acc.':>12s}")
    for name, values in scores.items():
        lab = f"{100 * np.mean(label[name]):.1f} %" if name in label else "-"
        coa = f"{100 * np.mean(coarse[name]):.1f} %" if name in coarse else "-"
        print(f"{name:24s} {np.mean(values):8.3f} ± {np.std(values):.3f} {np.mean(colour[name]):11.1f} {lab:>11s} {coa:>12s}")


if __name__ == "__main__":
    main()
