"""Moore-AnimateAnyone mismatches found running the real ``scripts/pose2vid.py`` with tiny weights.

``benchmarks/upstream_smoke.py --model animateanyone`` ran the adapter end to end against the real
checkout (commit a914ef3) on CPU; each case below is what that run (or installing the env) showed,
kept fixed here with the stand-in checkout of ``tests/test_upstream_adapters.py``:

* ``width``/``height`` not multiples of 8: upstream rounds its latents down to the x8 grid and its final
  ``torch.cat`` of [reference, pose, generated] fails after the whole denoising run;
* ``motion_module_path`` pointing to a folder (or a file of another kind): upstream's
  ``from_pretrained_2d`` silently keeps a random motion module instead of failing;
* a weight folder without the config and plainly named weights ``from_pretrained`` reads (e.g. an
  fp16-only download): upstream fails when it loads the models, on the GPU node;
* the env file: diffusers 0.24.0 needs a huggingface_hub that still has ``cached_download`` (< 0.26),
  and av 11.0.0 has no binary wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline.generation.generators import make_generator
from pipeline.generation.generators.base import GenerationError
from pipeline.generation.generators.upstream.animateanyone import WEIGHT_KEYS, check_frame_size
from pipeline.generation.generators.upstream.common import UpstreamConfigError, UpstreamRunError
from tests.test_upstream_adapters import make_job, options

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("key", "value"), [("width", 500), ("height", 780), ("height", 4)])
def test_frame_size_off_the_latent_grid_is_refused_when_the_model_is_made(
    tmp_path: Path, key: str, value: object
) -> None:
    with pytest.raises(UpstreamConfigError, match=rf"models\.animateanyone\.defaults\.{key} = "):
        make_generator("animateanyone", **options(tmp_path, "animateanyone", defaults={key: value}))


def test_frame_size_from_job_params_is_refused_before_upstream_runs(tmp_path: Path) -> None:
    generator = make_generator("animateanyone", **options(tmp_path, "animateanyone", keep_work=True))
    job = make_job(frames=6)
    job.params = {"height": 90}
    with pytest.raises(GenerationError, match=r"params\.height = 90: .*multiple of 8"):
        generator.generate(job)
    assert not list((tmp_path / "work").rglob("command.txt")), "upstream was started"


def test_the_standin_fails_like_upstream_on_such_a_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the adapter's check the job would reach upstream and fail there (after the GPU work)."""
    from pipeline.generation.generators.upstream import animateanyone

    monkeypatch.setattr(animateanyone, "check_frame_size", lambda *args: None)
    generator = make_generator("animateanyone", **options(tmp_path, "animateanyone", defaults={"width": 508}))
    with pytest.raises(UpstreamRunError, match="not multiples of 8"):
        generator.generate(make_job(frames=6))


def test_multiples_of_8_pass_the_size_check() -> None:
    check_frame_size({"width": 64, "height": 96}, "x", ValueError)
    check_frame_size({"width": 512, "height": 784}, "x", ValueError)  # upstream's default


def _point_motion_module(tmp_path: Path, target: Path) -> dict[str, object]:
    return options(tmp_path, "animateanyone", weights={"motion_module_path": str(target)})


def test_motion_module_folder_is_refused_at_load(tmp_path: Path) -> None:
    folder = tmp_path / "motion_module"
    folder.mkdir()
    generator = make_generator("animateanyone", **_point_motion_module(tmp_path, folder))
    with pytest.raises(
        UpstreamConfigError, match=r"weights\.motion_module_path: .* not a motion-module file"
    ):
        generator.load()


def test_motion_module_of_another_kind_is_refused_at_load(tmp_path: Path) -> None:
    wrong = tmp_path / "motion_module.json"
    wrong.write_text("{}")
    generator = make_generator("animateanyone", **_point_motion_module(tmp_path, wrong))
    with pytest.raises(UpstreamConfigError, match="silently run without its motion module"):
        generator.load()


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors", ".PT"])
def test_motion_module_files_upstream_reads_are_accepted(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"mm{suffix}"
    good.write_bytes(b"stand-in")
    make_generator("animateanyone", **_point_motion_module(tmp_path, good)).load()


# what the tiny module writes into each folder (its build() does so through save_pretrained)
FOLDER_FILES = {
    "stable-diffusion-v1-5": ("unet/config.json", "unet/diffusion_pytorch_model.bin"),
    "sd-vae-ft-mse": ("config.json", "diffusion_pytorch_model.safetensors"),
    "image_encoder": ("config.json", "pytorch_model.bin"),
}


@pytest.mark.parametrize(
    ("key", "files", "missing"),
    [
        ("pretrained_base_model_path", ("unet/diffusion_pytorch_model.bin",), "unet/config.json"),
        ("pretrained_base_model_path", ("config.json", "diffusion_pytorch_model.bin"), "unet/config.json"),
        (
            "pretrained_vae_path",
            ("config.json", "diffusion_pytorch_model.fp16.safetensors"),
            "config.json or",
        ),
        ("image_encoder_path", ("config.json",), "config.json or"),
    ],
)
def test_weight_folders_pose2vid_cannot_load_are_refused_at_load(
    tmp_path: Path, key: str, files: tuple[str, ...], missing: str
) -> None:
    """e.g. the UNet folder itself instead of the SD folder, or an fp16-only download (from_pretrained
    without ``variant`` reads neither)."""
    folder = tmp_path / "weights" / key
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"stand-in")
    opts = options(tmp_path, "animateanyone", weights={key: str(folder)})
    with pytest.raises(UpstreamConfigError, match=rf"weights\.{key}: .* lacks {missing}"):
        make_generator("animateanyone", **opts).load()


def _pip_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "workflow/envs/animateanyone.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(p.split("==", 1) for p in pip if "==" in p)


def test_env_pins_a_huggingface_hub_that_diffusers_0_24_can_import() -> None:
    pins = _pip_pins()
    assert pins["diffusers"] == "0.24.0"
    major, minor = (int(x) for x in pins["huggingface_hub"].split(".")[:2])
    assert (major, minor) < (0, 26), (
        "huggingface_hub 0.26 removed cached_download, which diffusers 0.24 imports"
    )
    assert (major, minor) >= (0, 19), "diffusers 0.24.0 requires huggingface_hub >= 0.19.4"


def test_env_pins_an_av_with_a_binary_wheel() -> None:
    major = int(_pip_pins()["av"].split(".")[0])
    assert major >= 12, "av 11.0.0 has only an sdist, which builds only against system FFmpeg headers"


def test_tiny_weights_overrides_fit_the_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/upstream_tiny/animateanyone.py``'s overrides (weights already built, so no upstream
    env is needed): they name every weight key, and the adapter runs with their size and steps."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from upstream_tiny import animateanyone as tiny

    root = tmp_path / "tiny" / "pretrained_weights"
    for relative in tiny.LAYOUT.values():
        path = root / relative
        if path.suffix:  # a .pth file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"stand-in")
        else:  # a diffusers / transformers folder: the files the adapter checks for
            for name in FOLDER_FILES[relative]:
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(b"stand-in")
    (root / tiny.DONE).write_text("built\n")
    overrides = tiny.prepare(tmp_path / "unused-checkout", Path(sys.executable), tmp_path / "tiny", "cpu")
    assert set(overrides["weights"]) == set(WEIGHT_KEYS) - {"inference_config"}  # the checkout's own
    generator = make_generator("animateanyone", **options(tmp_path, "animateanyone", **overrides))
    video = generator.generate(make_job(frames=6))
    assert video.frames.shape == (6, 160, 120, 3)
    command = video.notes["command"]
    assert f"-W {tiny.WIDTH} -H {tiny.HEIGHT}" in command and f"--steps {tiny.STEPS}" in command
