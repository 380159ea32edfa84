"""Realism check: does a real pose estimator (mediapipe BlazePose) see the world's walkers?

For every condition (view × background × coat) it renders a few walking sequences at 256×192 and runs
mediapipe's legacy ``solutions.pose`` in video mode (tracking between frames, as on a real video). It
prints, per condition:

* ``detected``: fraction of frames with a pose in video mode;
* ``IoU``: mean IoU between mediapipe's segmentation (> 0.5) and the renderer's person mask;
* ``PCK``: fraction of the 12 limb keypoints (shoulders … ankles) that mediapipe places within 10 % of
  the person's height of the renderer's ground truth (a left/right swap counts as a miss);
* ``static``: detection rate with ``static_image_mode=True`` — every frame detected from scratch, no
  tracking to lean on, so a stricter test of whether each picture looks like a person.

mediapipe 0.10.21 needs protobuf < 5. If the project environment has a newer protobuf, install an old
one into a side folder and point this script at it (nothing else in the environment changes):
    .venv/bin/pip install --target .cache/protobuf4 "protobuf>=4.25.3,<5"
    .venv/bin/python benchmarks/mediapipe_detection.py --protobuf-dir .cache/protobuf4
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_speed import toy_walk  # noqa: E402

from pipeline.world.appearance import Appearance  # noqa: E402
from pipeline.world.body import BodyShape  # noqa: E402
from pipeline.world.camera import Camera  # noqa: E402
from pipeline.world.render import Rendered, render_sequence  # noqa: E402

VIEWS = (0.0, 45.0, 90.0, 135.0, 180.0)


def _import_mediapipe(protobuf_dir: str | None):
    if protobuf_dir:
        sys.path.insert(0, str(Path(protobuf_dir).resolve()))
    os.environ.setdefault("GLOG_minloglevel", "2")
    import mediapipe as mp

    return mp


def _procedural_walk(body: BodyShape, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The project's own gait synthesis and kinematics, centred on the camera target like the workflow."""
    from pipeline.world.kinematics import place, pose
    from pipeline.world.motion import GaitStyle, synthesize

    rng = np.random.default_rng(seed)
    posed = pose(body, synthesize(GaitStyle.sample(rng), frames, 25.0, phase=float(rng.uniform())))
    mid = posed.joints[len(posed.joints) // 2, 0]
    posed = place(posed, 0.0, (-mid[0], 0.0, -mid[2]))
    return posed.joints, posed.orientations


def _render(view: float, background: str, coat: bool, seed: int, frames: int, args) -> Rendered:
    rng = np.random.default_rng(seed)
    body, app = BodyShape.sample(rng), Appearance.sample(rng)
    if args.motion == "procedural":
        joints, rot = _procedural_walk(body, frames, seed)
    else:
        joints, rot = toy_walk(body, frames, start_x=-1.6, seed=seed)
    camera = Camera.for_view(view, args.width, args.height, distance_m=args.distance, height_m=1.1, fov_deg=45.0)
    return render_sequence(joints, rot, body, app, coat=coat, bag=False, camera=camera, background=background,
                           rng=np.random.default_rng(seed + 1000))  # fmt: skip


# COCO-17 limb keypoints 5..16 and the BlazePose landmarks with the same meaning.
COCO_LIMBS = list(range(5, 17))
BLAZEPOSE_OF_COCO = [11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]


def _pck(landmarks, rendered: Rendered, t: int) -> tuple[int, int]:
    """(hits, count) of limb keypoints within 10 % of the person's height (mask extent) of the truth."""
    h, w = rendered.mask.shape[1:]
    rows = np.nonzero(rendered.mask[t].any(1))[0]
    if len(rows) == 0:
        return 0, 0
    tol = 0.1 * (rows[-1] - rows[0] + 1)
    est = np.array([[landmarks.landmark[i].x * w, landmarks.landmark[i].y * h] for i in BLAZEPOSE_OF_COCO])
    truth = rendered.keypoints2d[t, COCO_LIMBS]
    inside = truth[:, 2] > 0
    err = np.linalg.norm(est - truth[:, :2], axis=1)
    return int(np.sum((err < tol) & inside)), int(inside.sum())


def _evaluate(mp, rendered: Rendered) -> dict[str, float]:
    """Video-mode detections, IoU of each detected frame's mask, PCK, and the static-mode detections."""
    detected, ious, hits, count = 0, [], 0, 0
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=True) as pose:
        for t, (rgb, mask) in enumerate(zip(rendered.rgb, rendered.mask, strict=True)):
            result = pose.process(rgb)
            if result.pose_landmarks is None:
                continue
            detected += 1
            h, c = _pck(result.pose_landmarks, rendered, t)
            hits, count = hits + h, count + c
            if result.segmentation_mask is not None:
                seg = result.segmentation_mask > 0.5
                union = np.logical_or(seg, mask).sum()
                ious.append(float(np.logical_and(seg, mask).sum() / union) if union else 0.0)
    static = 0
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        static = sum(pose.process(rgb).pose_landmarks is not None for rgb in rendered.rgb)
    return {"detected": detected, "ious": ious, "hits": hits, "count": count, "static": static}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protobuf-dir", default=os.environ.get("MEDIAPIPE_PROTOBUF_DIR"))
    parser.add_argument("--identities", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--distance", type=float, default=6.0, help="camera distance (m), config default 6")
    parser.add_argument("--views", type=float, nargs="*", default=list(VIEWS))
    parser.add_argument("--motion", choices=("toy", "procedural"), default="toy",
                        help="toy: the benchmark's analytic walk; procedural: pipeline.world.motion + kinematics")
    args = parser.parse_args()
    mp = _import_mediapipe(args.protobuf_dir)
    print(f"{'view':>5} {'background':>10} {'coat':>5} {'detected':>9} {'IoU':>6} {'PCK':>6} {'static':>7}")
    totals: dict[str, list[float]] = {"detected": [], "iou": [], "pck": [], "static": []}
    for background in ("studio", "wild"):
        for coat in (False, True):
            for view in args.views:
                runs = [
                    _evaluate(mp, _render(view, background, coat, 100 + k, args.frames, args))
                    for k in range(args.identities)
                ]
                n = args.frames * len(runs)
                row = {
                    "detected": sum(r["detected"] for r in runs) / n,
                    "iou": float(np.mean([i for r in runs for i in r["ious"]] or [np.nan])),
                    "pck": sum(r["hits"] for r in runs) / max(sum(r["count"] for r in runs), 1),
                    "static": sum(r["static"] for r in runs) / n,
                }
                for key, value in row.items():
                    totals[key].append(value)
                print(f"{view:5.0f} {background:>10} {str(coat):>5} {row['detected']:9.3f} {row['iou']:6.3f} "
                      f"{row['pck']:6.3f} {row['static']:7.3f}", flush=True)
    means = {k: float(np.nanmean(v)) for k, v in totals.items()}
    print(f"mean: detected {means['detected']:.3f}, IoU {means['iou']:.3f}, PCK {means['pck']:.3f}, "
          f"static {means['static']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
