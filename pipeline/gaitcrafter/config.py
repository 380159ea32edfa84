"""GaitCrafter configurations: one frozen dataclass for model, diffusion, training and sampling settings.

Three presets (:data:`PRESETS`):

* ``tiny`` — the default CPU run. 16-frame clips of full 64×44 silhouettes, pixel-unshuffled by 4
  (16 channels at 16×11, so the UNet never convolves at full resolution), a two-level UNet
  (32, 64 channels, cross-attention only at the coarse level; 1.7 M parameters), v-prediction,
  batch 4, 150 steps: 7–9 minutes on one shared core (~3 s/step). It demonstrates the whole path
  (train → checkpoint → resume → sample → evaluate); its samples are noisy walking blobs without
  identity (the docs give the numbers), not a model to draw conclusions from.
* ``walker`` — the CPU preset whose samples are walkers of their identity (82 % person-like frames, own
  identity nearest for 40 % of clips at chance 5 %, see the docs): tiny's UNet on 32×22 clips (``downsample:
  2``, ``patch: 2``), upsampled to 64×44 when sampled, 1,500 steps, guidance 2 on the identity alone; the
  demo ships a checkpoint of it
  (:mod:`pipeline.gaitcrafter.pretrained`). Its steps and sampling steps come from the quality-vs-CPU
  measurements in docs/architecture.md.
* ``full`` — a GPU configuration: 30-frame clips at 64×44 without unshuffling, a four-level UNet
  (64, 128, 256, 256; 70 M parameters), cross-attention on the three coarser levels, ε-prediction,
  batch 16, 100k steps, bf16 autocast, 50 DDIM steps. Untested at that length here (no GPU was lent).

Every key can be overridden from a mapping (:meth:`GaitCrafterConfig.from_mapping`); an unknown key
or an invalid value is an error naming it (``gaitcrafter.<key>: ...``).

Covariate vocabularies are fixed here: clothing ∈ ``normal``/``coat``, bag ∈ ``none``/``bag``, plus
``any`` for "unknown / do not condition" in every slot (identity included). Views are the dataset's
view labels (strings), taken from the training data unless ``views`` lists them explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from pipeline.config import ConfigError

CONFIG_KEY = "gaitcrafter"
ANY = "any"
CLOTHING = ("normal", "coat")
BAG = ("none", "bag")
# Silhouettes are OpenGait-aligned 64×64 cut to 64×44 (pipeline.perception.silhouettes.cut_to_44).
HEIGHT, WIDTH = 64, 44
SAMPLERS = ("ddim", "dpm")
# What the UNet predicts (diffusers' ``prediction_type``): the DDPM noise ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀.
PREDICTION_TYPES = ("epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PRECISIONS = ("fp32", "bf16")
GUIDANCE_TARGETS = ("all", "identity")
# Keys that may differ between a run and its resumption (run length, I/O cadence, hardware, sampling).
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "save_every",
        "keep_last",
        "threads",
        "device",
        "progress",
        "sample_steps",
        "sampler",
        "guidance_scale",
        "guidance_on",
        "precision",
    }
)


@dataclass(frozen=True)
class GaitCrafterConfig:
    """All GaitCrafter settings (defaults = the ``tiny`` preset)."""

    # -- data ---------------------------------------------------------------------------------
    frames: int = 16  # frames per training clip (consecutive valid frames)
    views: tuple[str, ...] | None = None  # view vocabulary; None = the training data's view labels
    # -- model --------------------------------------------------------------------------------
    # Resolution divisor: the diffusion runs on clips average-pooled to (64/downsample)×(44/downsample);
    # samples are upsampled (bilinear) back to 64×44 before binarisation. 2 halves what the model must
    # get right per frame (smooth outlines instead of 4×4-pixel speckle) at the same UNet cost.
    downsample: int = 1
    patch: int = (
        4  # pixel-unshuffle factor: the UNet runs at (64/(downsample·patch))×(44/…) with patch² channels
    )
    block_out_channels: tuple[int, ...] = (32, 64)
    attention: tuple[bool, ...] = (False, True)  # cross-attention (and spatial self-attention) per level
    layers_per_block: int = 1
    attention_heads: int = 4  # diffusers' UNet3D ``attention_head_dim`` (it is used as the head count)
    norm_num_groups: int = 8
    cond_dim: int = 64  # width of every condition token (= the UNet's cross_attention_dim)
    # -- diffusion ----------------------------------------------------------------------------
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # tiny: v-prediction. With ~150 CPU steps an ε-model's samples are binarised noise (an ε error at
    # high noise blows up in x₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ); a v-model degrades to blurred mean shapes instead
    # (GEI IoU with real clips 0.58 vs 0.29 on the world, see the docs). full keeps the classic ε.
    prediction_type: str = "v_prediction"
    # -- training -----------------------------------------------------------------------------
    steps: int = 150
    batch_size: int = 4
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    drop_slot: float = 0.1  # probability that one condition slot is replaced by its null token
    drop_all: float = 0.1  # probability that all four slots are (classifier-free guidance)
    save_every: int = 50
    keep_last: int | None = 2
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: leave torch's default)
    device: str = "auto"  # auto = cuda when available, else cpu
    precision: str = "fp32"  # bf16 = autocast on CUDA (ignored on CPU, where it is slow)
    progress: bool = True
    # -- sampling -----------------------------------------------------------------------------
    sampler: str = "ddim"
    sample_steps: int = 25
    guidance_scale: float = 2.0
    # What classifier-free guidance pushes towards: "all" (the fully unconditioned branch, the usual CFG) or
    # "identity" (the branch with only the identity slot dropped: guidance amplifies identity, the view and
    # covariates stay conditioned in both branches).
    guidance_on: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "attention", tuple(bool(a) for a in self.attention))
        if self.views is not None:
            object.__setattr__(self, "views", tuple(str(v) for v in self.views))
        self._validate()

    def _validate(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"{CONFIG_KEY}.{key}: {why}")

        for key in ("frames", "steps", "batch_size", "save_every", "train_timesteps", "sample_steps"):
            if int(getattr(self, key)) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("layers_per_block", "attention_heads", "norm_num_groups", "cond_dim"):
            if int(getattr(self, key)) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.downsample not in (1, 2):
            raise bad("downsample", f"must be 1 (64×44) or 2 (32×22), got {self.downsample}")
        height, width = self.diffusion_size
        if self.patch not in (1, 2, 4) or height % self.patch or width % self.patch:
            raise bad(
                "patch", f"must divide both {height} and {width} (the diffusion size), got {self.patch}"
            )
        if not self.block_out_channels:
            raise bad("block_out_channels", "needs at least one level")
        if len(self.attention) != len(self.block_out_channels):
            raise bad(
                "attention",
                f"needs one flag per level of block_out_channels ({len(self.block_out_channels)}), "
                f"got {len(self.attention)}",
            )
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise bad(
                    "block_out_channels",
                    f"{channels} is not divisible by norm_num_groups {self.norm_num_groups}",
                )
            if channels % self.attention_heads:
                raise bad(
                    "block_out_channels",
                    f"{channels} is not divisible by attention_heads {self.attention_heads}",
                )
        if (8 * self.attention_heads) % self.norm_num_groups:
            # diffusers' input temporal transformer has 8 heads of width ``attention_heads``.
            raise bad("attention_heads", f"8 × {self.attention_heads} must be divisible by norm_num_groups")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise bad("beta_schedule", f"must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise bad("prediction_type", f"must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise bad("device", f"must be 'auto', 'cpu' or 'cuda[:k]', got {self.device!r}")
        if self.sample_steps > self.train_timesteps:
            raise bad("sample_steps", f"must be <= train_timesteps ({self.train_timesteps})")
        if not (self.lr > 0 and self.warmup_steps >= 0 and self.weight_decay >= 0 and self.grad_clip > 0):
            raise bad("lr", "lr and grad_clip must be > 0, warmup_steps and weight_decay >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise bad("ema_decay", f"must lie in [0, 1), got {self.ema_decay}")
        for key in ("drop_slot", "drop_all"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise bad(key, f"must lie in [0, 1), got {getattr(self, key)}")
        if self.guidance_on not in GUIDANCE_TARGETS:
            raise bad("guidance_on", f"must be one of {GUIDANCE_TARGETS}, got {self.guidance_on!r}")
        if self.guidance_scale < 0:
            raise bad("guidance_scale", f"must be >= 0, got {self.guidance_scale}")
        if self.keep_last is not None and self.keep_last < 1:
            raise bad("keep_last", f"must be >= 1 or null, got {self.keep_last}")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", f"must be >= 1 or null, got {self.threads}")
        if self.views is not None:
            if not self.views or len(set(self.views)) != len(self.views):
                raise bad("views", f"must be a non-empty list of distinct labels, got {list(self.views)}")
            if ANY in self.views:
                raise bad("views", f"'{ANY}' is reserved for 'unconditioned' and cannot be a view label")

    # -- construction / serialisation -----------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], *, preset: str | None = None) -> GaitCrafterConfig:
        """A config from ``values`` on top of ``preset`` (or ``values['preset']``, default ``tiny``)."""
        values = dict(values)
        name = str(values.pop("preset", preset or "tiny"))
        if name not in PRESETS:
            raise ValueError(f"{CONFIG_KEY}.preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{CONFIG_KEY}: unknown key(s) {unknown}; known: {sorted(known)}")
        for key in ("block_out_channels", "attention", "views"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        return replace(PRESETS[name], **values)  # type: ignore[arg-type]

    def as_plain(self) -> dict[str, object]:
        """JSON-able dict (stored in every checkpoint's ``state.json``)."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def diffusion_size(self) -> tuple[int, int]:
        """(height, width) of the clips the diffusion runs on (64×44 divided by ``downsample``)."""
        return HEIGHT // self.downsample, WIDTH // self.downsample

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def check_value(slot: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is ``any`` or in ``allowed``; otherwise an error naming the slot and the value."""
    text = str(value)
    if text != ANY and text not in allowed:
        raise ValueError(f"{CONFIG_KEY}: unknown {slot} value {text!r}; allowed: {[*allowed, ANY]}")
    return text


TINY = GaitCrafterConfig()
FULL = GaitCrafterConfig(
    frames=30,
    patch=1,
    block_out_channels=(64, 128, 256, 256),
    attention=(False, True, True, True),
    layers_per_block=2,
    attention_heads=8,
    norm_num_groups=32,
    cond_dim=256,
    steps=100_000,
    batch_size=16,
    lr=1e-4,
    warmup_steps=1000,
    weight_decay=1e-2,
    ema_decay=0.9999,
    save_every=2000,
    keep_last=3,
    precision="bf16",
    prediction_type="epsilon",
    sample_steps=50,
    guidance_scale=2.0,
)
# The best CPU configuration measured so far (docs/architecture.md, "GaitCrafter on a CPU"): after 1,500
# steps (~24 CPU minutes) 82 % of its sampled frames are person-like and its clips' nearest identity is
# their own for 40 % of them (chance 5 %, real clips 79 %), sampled with 10 DDIM steps and guidance 2 on
# the identity alone (unguided: 87 % and 22 %). Tiny's UNet on clips average-pooled to 32×22 and
# pixel-unshuffled by 2 (16×11 × 4 channels: the same UNet cost as tiny).
WALKER = replace(
    TINY, downsample=2, patch=2, steps=1500, save_every=300, sample_steps=10, guidance_scale=2.0,
    guidance_on="identity",
)  # fmt: skip
PRESETS: dict[str, GaitCrafterConfig] = {"tiny": TINY, "walker": WALKER, "full": FULL}

__all__ = [
    "ANY",
    "BAG",
    "CLOTHING",
    "CONFIG_KEY",
    "GUIDANCE_TARGETS",
    "FULL",
    "HEIGHT",
    "PREDICTION_TYPES",
    "PRESETS",
    "RESUMABLE_CHANGES",
    "TINY",
    "WALKER",
    "WIDTH",
    "GaitCrafterConfig",
    "check_value",
]


def resolve_pretrained(path: str | Path) -> Path:
    """A checkpoint folder as given, or, when relative and not found from the working directory,
    relative to the repository (where the shipped ones live), so ``snakemake --directory`` finds it."""
    given = Path(path)
    if given.is_absolute() or given.is_dir():
        return given.resolve()
    return Path(__file__).resolve().parents[2] / given


def check_gaitcrafter(config: dict) -> None:
    """The GaitCrafter section: known datasets, the preset's overrides (unknown keys and invalid values
    name the key), view labels the world datasets really have, and the novelty check's recogniser.

    Clothing and bag values are enums in the schema; the augmentation's recogniser ``train`` keys are
    checked when its job starts (that check needs torch, too slow for parsing the workflow)."""
    from pipeline.world.plan import world_view_labels

    section = config.get("gaitcrafter") or {}
    if not section:
        return
    datasets = section.get("datasets")
    unknown = sorted(set(datasets or []) - set(config["datasets"]))
    if unknown:
        raise ConfigError(f"gaitcrafter/datasets: unknown datasets {unknown}")
    try:
        settings = GaitCrafterConfig.from_mapping(
            {**section.get("settings", {}), "preset": section.get("preset", "tiny")}
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"gaitcrafter/settings: {err}") from err
    pretrained = section.get("pretrained")
    if pretrained:
        folder = resolve_pretrained(pretrained)
        if not folder.is_dir():
            raise ConfigError(
                f"gaitcrafter/pretrained: {pretrained} is not a folder (a shipped checkpoint; null = always train)"
            )
        section["pretrained"] = str(folder)  # jobs run in the working directory, wherever that is
    augmentation = section.get("augmentation", {})
    novelty = section.get("evaluation", {}).get("novelty", {})
    used = {
        "gaitcrafter/augmentation/covariates/views": (augmentation.get("covariates") or {}).get("views")
        or [],
        "gaitcrafter/evaluation/novelty/view": [novelty["view"]] if novelty.get("view") else [],
    }
    for name in datasets if datasets is not None else sorted(config["datasets"]):
        labels = world_view_labels(config, name)
        if labels is None:
            continue  # real datasets: views are checked against the trained model when it is used
        if settings.views is not None and set(labels) - set(settings.views):
            missing = sorted(set(labels) - set(settings.views))
            raise ConfigError(
                f"gaitcrafter/settings/views: dataset {name} has views {missing} the vocabulary lacks"
            )
        for key, values in used.items():
            bad = sorted(set(values) - set(labels))
            if bad:
                raise ConfigError(
                    f"{key}: unknown view value(s) {bad} for dataset {name}; its views are {labels}"
                )
    recognisers = config.get("recognisers", {})
    if novelty.get("enabled", True):
        name = novelty.get("recogniser", "deepgaitv2")
        checkpoint = (recognisers.get("settings", {}).get(name) or {}).get("checkpoint")
        if name not in recognisers.get("names", []) and not checkpoint:
            raise ConfigError(
                f"gaitcrafter/evaluation/novelty/recogniser: {name} is not in recognisers/names and has no "
                "checkpoint; the novelty check embeds with the dataset's trained recogniser"
            )
