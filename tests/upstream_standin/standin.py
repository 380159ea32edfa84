"""Test stand-in for the four upstream animators' entry points (never a selectable model).

``python standin.py <model> <upstream CLI args...>`` parses the arguments and config files exactly as
the upstream entry point would, checks that every input is in the format upstream expects (and that the
adapter kept its own promises: references at the canvas size, frames padded rather than squashed,
window lengths, fps, pickle structure), exits non-zero with a message on stderr when something is
off, and otherwise writes its outputs in the upstream layout:

* magicanimate:  ``samples/<savename>/videos/<src>_<vid>.mp4`` and ``.../<src>_<vid>/grid.mp4``
  [source | control | generated] (2-pixel padding, scaled up to 16-pixel blocks as imageio does);
* animateanyone: ``output/<date>/<HHMM>--seed_<s>-<W>x<H>/<ref>_<pose>_<H>x<W>_<cfg>_<HHMM>.mp4``
  [reference | pose | generated] (2-pixel padding);
* unianimate:    ``<log_dir>/<cfg stem>/rank_01_00_<idx>_seed_<s>_<keys>_<ref>_<H>x<W>.mp4``
  [reference | pose | generated] (no gaps);
* mtvcrafter:    ``<output_dir>/<i>_<ref>_<video>_guidance_3.0.mp4`` with five panels, 2 pixels
  between, scaled up to 16-pixel blocks.

The generated panel is the reference image as received with a frame code drawn in: a 2x5 grid of
black/white cells in the middle of the frame holding ``case * CASE_STRIDE + frame`` in binary, so a
test can check which upstream frame ended up at which driving frame after cropping, un-padding and
resampling (:func:`decode_code`). The upstream files in a fake checkout are tiny scripts that run this
file with their model name.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipeline.io.video import probe_video, read_frames, read_image, write_video  # noqa: E402

CODE_BITS = 10
CODE_ROWS, CODE_COLS = 2, 5
CODE_BOX = (0.38, 0.62, 0.3, 0.7)  # y0, y1, x0, x1 as fractions of the generated frame
CASE_STRIDE = 100  # code = case index * CASE_STRIDE + frame index within the case
VIRIDIS0_RGB = (68, 1, 84)  # vid2densepose's background colour


class StandinError(Exception):
    pass


def fail(message: str) -> None:
    raise StandinError(message)


# ---------------------------------------------------------------------------------------------
# frame code


def code_cells(height: float, width: float) -> list[tuple[float, float, float, float]]:
    """(y0, y1, x0, x1) of every code cell in a frame of ``height`` x ``width``, bit 0 first."""
    y0, y1, x0, x1 = CODE_BOX
    cell_h, cell_w = (y1 - y0) / CODE_ROWS, (x1 - x0) / CODE_COLS
    cells = []
    for bit in range(CODE_BITS):
        row, col = divmod(bit, CODE_COLS)
        top, left = (y0 + row * cell_h) * height, (x0 + col * cell_w) * width
        cells.append((top, top + cell_h * height, left, left + cell_w * width))
    return cells


def draw_code(frame: np.ndarray, code: int) -> np.ndarray:
    if not 0 <= code < 2**CODE_BITS:
        fail(f"frame code {code} does not fit in {CODE_BITS} bits")
    out = frame.copy()
    for bit, (top, bottom, left, right) in enumerate(code_cells(*frame.shape[:2])):
        out[round(top) : round(bottom), round(left) : round(right)] = 255 if (code >> bit) & 1 else 0
    return out


def decode_code(frame: np.ndarray, padded_hw: tuple[int, int], offset_yx: tuple[int, int]) -> int:
    """Read the code back from a frame that was padded (to ``padded_hw``) and then cropped at ``offset_yx``."""
    code = 0
    for bit, (top, bottom, left, right) in enumerate(code_cells(*padded_hw)):
        cy, cx = (top + bottom) / 2 - offset_yx[0], (left + right) / 2 - offset_yx[1]
        patch = frame[int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2]
        if patch.size == 0:
            raise ValueError(
                f"code cell {bit} at ({cy:.0f}, {cx:.0f}) lies outside the frame {frame.shape[:2]}"
            )
        code |= int(patch.mean() > 127) << bit
    return code


def code_mask(
    shape_hw: tuple[int, int], padded_hw: tuple[int, int], offset_yx: tuple[int, int], margin: int = 3
) -> np.ndarray:
    """True where a (padded, then cropped) frame shows the code box, widened by ``margin`` pixels."""
    y0, y1, x0, x1 = CODE_BOX
    mask = np.zeros(shape_hw, dtype=bool)
    top = max(0, int(y0 * padded_hw[0] - offset_yx[0]) - margin)
    left = max(0, int(x0 * padded_hw[1] - offset_yx[1]) - margin)
    mask[
        top : int(y1 * padded_hw[0] - offset_yx[0]) + margin + 1,
        left : int(x1 * padded_hw[1] - offset_yx[1]) + margin + 1,
    ] = True
    return mask


def counter_frames(image: np.ndarray, count: int, base: int) -> np.ndarray:
    return np.stack([draw_code(image, base + i) for i in range(count)])


# ---------------------------------------------------------------------------------------------
# grids and checks


def resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def make_grid(panels: Sequence[np.ndarray], gap: int, border: int, macro_block: int = 1) -> np.ndarray:
    """Panels ``[T, h, w, 3]`` side by side with black gaps/border; optionally scaled up to whole blocks."""
    count, height, width = panels[0].shape[:3]
    grid_h = height + 2 * border
    grid_w = len(panels) * width + (len(panels) - 1) * gap + 2 * border
    grid = np.zeros((count, grid_h, grid_w, 3), dtype=np.uint8)
    for k, panel in enumerate(panels):
        x0 = border + k * (width + gap)
        grid[:, border : border + height, x0 : x0 + width] = panel
    block_h, block_w = (-(-grid_h // macro_block) * macro_block, -(-grid_w // macro_block) * macro_block)
    return grid if (block_h, block_w) == (grid_h, grid_w) else resize_up(grid, block_h, block_w)


def resize_up(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames])


def load_yaml(path: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        fail(f"cannot read config {path}: {err}")
    if not isinstance(data, dict):
        fail(f"config {path} is not a mapping")
    return data


def require(cfg: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        fail(f"config lacks keys {missing}")


def require_files(*paths: object) -> None:
    for path in paths:
        if path in (None, ""):
            continue
        if not Path(str(path)).exists():
            fail(
                f"{path} not found (relative paths resolve against the cwd {os.getcwd()}, which must be the checkout)"
            )


def image_of_size(path: str, height: int, width: int) -> np.ndarray:
    image = read_image(path)
    if image.shape[:2] != (height, width):
        fail(
            f"reference {path} is {image.shape[0]}x{image.shape[1]}, the adapter must hand over exactly {height}x{width}"
        )
    return image


def not_blank(frames: np.ndarray, what: str) -> None:
    if int(frames.max()) < 60:
        fail(f"{what} is blank: nothing was drawn")


# ---------------------------------------------------------------------------------------------
# MagicAnimate: python -m magicanimate.pipelines.animation --config X


def magicanimate(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--dist", action="store_true")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world_size", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = load_yaml(args.config)
    weights = (
        "pretrained_model_path",
        "pretrained_vae_path",
        "pretrained_controlnet_path",
        "pretrained_appearance_encoder_path",
        "motion_module",
    )
    require(
        cfg,
        *weights,
        "inference_config",
        "savename",
        "fusion_blocks",
        "seed",
        "steps",
        "guidance_scale",
        "source_image",
        "video_path",
        "size",
        "L",
        "S",
        "offset",
        "max_length",
    )
    require_files(*(cfg[k] for k in weights), cfg["inference_config"], cfg.get("pretrained_unet_path"))
    if not isinstance(cfg["seed"], list) or len(cfg["seed"]) != 1 or not isinstance(cfg["seed"][0], int):
        fail(f"seed must be a one-element list of int (broadcast to every pair), got {cfg['seed']!r}")
    if not (isinstance(cfg["steps"], int) and isinstance(cfg["guidance_scale"], int | float)):
        fail("steps must be int and guidance_scale a number")
    if not isinstance(cfg["savename"], str) or not cfg["savename"]:
        fail("savename must be set (null gives a timestamped dir the adapter cannot find)")
    if cfg["guidance_scale"] <= 1:  # upstream always splits its text embeddings in two (CFG on)
        fail(f"guidance_scale {cfg['guidance_scale']} <= 1: IndexError in pipeline_animation (as upstream)")
    if int(cfg["size"]) % 8:
        fail(f"size {cfg['size']}: height and width have to be divisible by 8 (as upstream's check_inputs)")
    sources, videos, size = cfg["source_image"], cfg["video_path"], int(cfg["size"])
    if len(sources) != len(videos) or not videos:
        fail("source_image and video_path must be parallel, non-empty lists")
    savedir = Path("samples") / cfg["savename"] / "videos"
    for idx, (source, video) in enumerate(zip(sources, videos, strict=True)):
        if not video.endswith(".mp4"):
            fail(f"video_path {video} must be an .mp4 (upstream only reads those)")
        info = probe_video(video)
        if (info.height, info.width) != (size, size):
            fail(f"control video {video} is {info.height}x{info.width}; MagicAnimate expects {size}x{size}")
        if abs(info.fps - 25.0) > 0.01:
            fail(f"control video {video} is at {info.fps} fps; MagicAnimate drivers are 25 fps")
        control = read_frames(video)
        if np.abs(control[0, 2, 2].astype(int) - VIRIDIS0_RGB).max() > 20:
            fail(
                f"control video {video} corner is {control[0, 2, 2].tolist()}, not vid2densepose's background {VIRIDIS0_RGB}"
            )
        reference = image_of_size(source, size, size)
        generated = counter_frames(reference, len(control), idx * CASE_STRIDE)
        stem = f"{os.path.basename(source).split('.')[0]}_{os.path.basename(video)[:-4]}"
        if not os.environ.get("STANDIN_GRID_ONLY"):
            # one video: make_grid returns it unpadded, but imageio still scales it to 16-pixel blocks
            write_video(savedir / f"{stem}.mp4", make_grid([generated], gap=0, border=0, macro_block=16), 25)
        grid = make_grid(
            [np.repeat(reference[None], len(control), 0), control, generated], gap=2, border=2, macro_block=16
        )
        write_video(savedir / stem / "grid.mp4", grid, 25)


# ---------------------------------------------------------------------------------------------
# Moore-AnimateAnyone: python -m scripts.pose2vid --config X -W -H -L --seed --cfg --steps --fps


def animateanyone(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("-W", type=int, default=512)
    parser.add_argument("-H", type=int, default=784)
    parser.add_argument("-L", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fps", type=int)
    args = parser.parse_args(argv)
    if args.W % 8 or args.H % 8:  # the real pipeline rounds its latents down to x8; the final torch.cat fails
        fail(f"Sizes of tensors must match: -W {args.W} -H {args.H} are not multiples of 8")
    cfg = load_yaml(args.config)
    weights = (
        "pretrained_base_model_path",
        "pretrained_vae_path",
        "image_encoder_path",
        "denoising_unet_path",
        "reference_unet_path",
        "pose_guider_path",
        "motion_module_path",
    )
    require(cfg, *weights, "inference_config", "weight_dtype", "test_cases")
    require_files(*(cfg[k] for k in weights), cfg["inference_config"])
    now = datetime.datetime.now()
    save_dir = Path(f"output/{now:%Y%m%d}/{now:%H%M}--seed_{args.seed}-{args.W}x{args.H}")
    case = 0
    for ref_path, pose_paths in cfg["test_cases"].items():
        reference = image_of_size(ref_path, args.H, args.W)
        for pose_path in pose_paths:
            if not pose_path.endswith("_kps.mp4"):
                fail(f"pose video {pose_path} must be a *_kps.mp4 as tools/vid2pose.py writes")
            info = probe_video(pose_path)
            if info.height % 64 or info.width % 64 or min(info.height, info.width) != 512:
                fail(
                    f"pose video {pose_path} is {info.height}x{info.width}: not a DWPose canvas (short side 512, multiples of 64)"
                )
            if abs(info.width / info.height - args.W / args.H) > 0.04:  # DWPose's 64-rounding moves it less
                fail(
                    f"pose canvas {info.height}x{info.width} has another aspect than -W {args.W} -H {args.H}: upstream would stretch it"
                )
            fps = info.fps if args.fps is None else args.fps
            if abs(fps - info.fps) > 0.5:
                fail(f"--fps {args.fps} differs from the pose video's {info.fps}")
            poses = read_frames(pose_path)
            if len(poses) < args.L:
                fail(f"pose video {pose_path} has {len(poses)} frames, fewer than -L {args.L}")
            not_blank(poses, f"pose video {pose_path}")
            generated = counter_frames(reference, args.L, case * CASE_STRIDE)
            panels = [
                np.repeat(reference[None], args.L, 0),
                resize(poses[: args.L], args.H, args.W),
                generated,
            ]
            name = f"{Path(ref_path).stem}_{Path(pose_path).stem.replace('_kps', '')}_{args.H}x{args.W}_{int(args.cfg)}_{now:%H%M}.mp4"
            write_video(save_dir / name, make_grid(panels, gap=2, border=2), fps)
            case += 1


# ---------------------------------------------------------------------------------------------
# UniAnimate: python inference.py --cfg X [opts]


def unianimate(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg", dest="cfg_file", default="configs/UniAnimate_infer.yaml")
    parser.add_argument("--init_method", default="tcp://localhost:9999")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = load_yaml(args.cfg_file)
    require(
        cfg,
        "TASK_TYPE",
        "max_frames",
        "resolution",
        "round",
        "ddim_timesteps",
        "seed",
        "test_list_path",
        "guide_scale",
        "test_model",
        "embedder",
        "auto_encoder",
    )
    if cfg["TASK_TYPE"] != "inference_unianimate_entrance":
        fail(f"TASK_TYPE {cfg['TASK_TYPE']!r} is not the short-clip entrance")
    require_files(cfg["test_model"], cfg["embedder"]["pretrained"], cfg["auto_encoder"]["pretrained"])
    width, height = cfg["resolution"]
    max_frames, seed = int(cfg["max_frames"]), int(cfg["seed"])
    out_dir = Path(cfg.get("log_dir", "outputs/")) / os.path.basename(args.cfg_file).split(".")[0]
    partial_keys = cfg.get("partial_keys") or [["image", "randomref", "dwpose"]]
    for idx, (interval, ref_path, pose_dir) in enumerate(cfg["test_list_path"]):
        reference = image_of_size(ref_path, height, width)
        ref_pose_path = Path(pose_dir) / "ref_pose.jpg"
        if not ref_pose_path.is_file():
            fail(f"{pose_dir} has no ref_pose.jpg")
        ref_pose = read_image(ref_pose_path)
        if ref_pose.shape[:2] != (768, 512):
            fail(f"{ref_pose_path} is {ref_pose.shape[:2]}, run_align_pose.py writes 768x512 (HxW)")
        not_blank(ref_pose, str(ref_pose_path))
        names = sorted(n for n in os.listdir(pose_dir) if n != "ref_pose.jpg")
        if any(not re.fullmatch(r"\d{4}\.jpg", n) for n in names):
            fail(f"{pose_dir} holds files other than NNNN.jpg: {names[:5]}")
        cover = int(interval) * (max_frames - 1) + 1
        if len(names) < cover:
            fail(
                f"{pose_dir}: {len(names)} pose frames < frame_interval * (max_frames - 1) + 1 = {cover}; upstream's fall-back branch crashes"
            )
        poses = np.stack([read_image(Path(pose_dir) / n) for n in names[: cover : int(interval)]])
        if poses.shape[1:3] != (768, 512):
            fail(f"pose frames in {pose_dir} are {poses.shape[1:3]}, not 768x512")
        not_blank(poses, f"pose frames in {pose_dir}")
        cap = re.sub(r"[^\w\s]", "", os.path.basename(ref_path).split(".")[0])
        for keys in partial_keys:
            generated = counter_frames(reference, max_frames, idx * CASE_STRIDE)
            panels = [np.repeat(reference[None], max_frames, 0), resize(poses, height, width), generated]
            name = f"rank_01_00_{idx:02d}_seed_{seed}_{'_'.join(keys)}_{cap}_{height}x{width}.mp4"
            write_video(out_dir / name, make_grid(panels, gap=0, border=0), int(cfg.get("save_fps", 8)))


# ---------------------------------------------------------------------------------------------
# MTVCrafter-7B: python infer_7b.py --ref_image_path R --motion_data_path P --output_dir O


def mtvcrafter(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref_image_path", default="")
    parser.add_argument("--motion_data_path", default="data/sampled_data.pkl")
    parser.add_argument("--output_dir", default="inference_output")
    args = parser.parse_args(argv)
    require_files("data/mean.npy", "data/std.npy")
    with open(args.motion_data_path, "rb") as handle:
        data_list = pickle.load(handle)  # the adapter's own file in a test
    data_list = data_list if isinstance(data_list, list) else [data_list]
    if not args.ref_image_path.endswith(".png"):
        fail("the reference must be a .png (upstream names outputs by splitting at '.png')")
    reference = image_of_size(args.ref_image_path, 512, 512)
    os.makedirs(args.output_dir, exist_ok=True)
    for index, data in enumerate(data_list):
        require(data, "video_path", "video_length", "video_width", "video_height", "pose")
        if data["video_length"] < 49:
            fail(
                f"AssertionError: num_frames * stride <= video_length (video_length {data['video_length']} < 49)"
            )
        start = random.randint(0, data["video_length"] - 49)  # upstream's unseeded clip start
        # every pose frame, as infer_7b.py at 91d5132 (no first-98-frames cut since upstream 20b2c1f)
        joints = np.array([pose[0][0].cpu().numpy() for pose in data["pose"]["joints3d_nonparam"]])
        if joints.shape[1:] != (24, 3) or len(joints) < start + 49:
            fail(f"joints3d_nonparam gives {joints.shape}, need >= {start + 49} frames of [24, 3]")
        if np.median(joints[..., 2]) < 100:
            fail("joints are not in millimetres (median depth < 100)")
        if len(read_frames(data["video_path"])) < start + 49:
            fail(f"{data['video_path']} has fewer than {start + 49} frames")
        h, w = data["video_height"], data["video_width"]
        scale = max(512 / h, 512 / w)
        if (round(h * scale), round(w * scale)) != (512, 512):
            fail(f"a {h}x{w} video is centre-cropped to 512x512 upstream, cutting off part of the frame")
        generated = counter_frames(reference, 49, index * CASE_STRIDE)
        black = np.zeros_like(generated)
        panels = [np.repeat(reference[None], 49, 0), black, black, black, generated]
        ref_name = os.path.basename(args.ref_image_path).split(".png")[0]
        video_name = os.path.basename(data["video_path"]).replace(".mp4", "")
        write_video(
            Path(args.output_dir) / f"{index}_{ref_name}_{video_name}_guidance_3.0.mp4",
            make_grid(panels, gap=2, border=0, macro_block=16),
            20,
        )


MODELS: dict[str, Callable[[list[str]], None]] = {
    "magicanimate": magicanimate,
    "animateanyone": animateanyone,
    "unianimate": unianimate,
    "mtvcrafter": mtvcrafter,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MODELS:
        print(f"usage: standin.py {{{','.join(MODELS)}}} <upstream args>", file=sys.stderr)
        return 2
    try:
        MODELS[argv[0]](argv[1:])
    except StandinError as err:
        print(f"standin {argv[0]}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
