"""GaitCrafter training: the DDPM objective on silhouette clips of a dataset's train split; resumable.

Data: the manifest rows of the chosen splits (default ``train``) whose silhouettes the perception stage
stored (``results/perception/{source}/silhouettes/shard-XXXX.npz``, field ``sil`` [T, 64, 64]), read
through :class:`pipeline.recognisers.data.GaitDataset`, so sequences with upstream errors or fewer
valid frames than one clip are skipped with the reason recorded (``TrainingData.skipped``). A clip is
``frames`` consecutive *valid* frames (dropped frames are skipped over, not filled), cut to 64×44 with
OpenGait's cut and mapped to [-1, 1].

Covariates of a sequence (:func:`covariates_of`): the view label as is; clothing and bag from the
world's ``attributes`` (``coat``, ``bag`` booleans) where present, otherwise from the condition's
OpenGait code (:data:`CONDITION_CODES`: ``nm`` → normal/none, ``bg`` → normal/bag, ``cl`` →
coat/none, SUSTech1K ``cr`` (carrying) → any/bag); any other condition gives ``any`` for both slots.

One step ``i`` (all randomness from ``(seed, i)``, so a resumed run repeats an uninterrupted one):
identities are drawn uniformly (then a sequence of the identity, then a window), noise and timesteps
come from a CPU generator seeded by ``(seed, i)``, each condition slot is dropped to its null token
with ``drop_slot`` and all slots with ``drop_all`` (classifier-free guidance), the loss is
``MSE(ε̂(x_t, t, c), ε)`` (or the v-target ``√ᾱ·ε − √(1−ᾱ)·x₀`` with ``prediction_type: v_prediction``)
under diffusers' ``DDPMScheduler.add_noise``, AdamW with linear warm-up and
gradient clipping, then an EMA update (decay ``min(ema_decay, (1+i)/(10+i))``).

Checkpoints: ``{out}/checkpoints/step-{i:06d}/`` holds ``model.safetensors`` (denoiser + condition
encoder), ``ema.safetensors`` (the EMA weights, the ones used for sampling), ``optimizer.pt`` (AdamW
state; loaded with ``weights_only=True``) and ``state.json`` (format, step, config, vocabulary,
sha256 of every file). A checkpoint is written to a temporary folder and renamed, so an interrupted
save never looks complete; training resumes from the newest complete one. A file that does not match
its recorded sha256 or cannot be parsed is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from pipeline.contracts import MANIFEST, Contract, read_table, register, write_table
from pipeline.gaitcrafter.config import (
    ANY,
    CONFIG_KEY,
    PRESETS,
    RESUMABLE_CHANGES,
    GaitCrafterConfig,
)
from pipeline.gaitcrafter.model import (
    SLOTS,
    ConditionBatch,
    GaitCrafter,
    Vocabulary,
    build_model,
    to_diffusion_space,
)
from pipeline.perception.silhouettes import cut_to_44

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "gaitcrafter-checkpoint/1"
MODEL_FILE, EMA_FILE, OPTIMIZER_FILE, STATE_FILE = (
    "model.safetensors",
    "ema.safetensors",
    "optimizer.pt",
    "state.json",
)
STEP_DIR = re.compile(r"^step-(\d{6,})$")
# OpenGait condition codes → (clothing, bag). CASIA-B nm/bg/cl; SUSTech1K adds "cr" (carrying).
CONDITION_CODES: dict[str, tuple[str, str]] = {
    "nm": ("normal", "none"),
    "bg": ("normal", "bag"),
    "cl": ("coat", "none"),
    "cr": (ANY, "bag"),
}

TRAINING_LOG = register(
    Contract(
        name="gaitcrafter_training_log",
        schema=pa.schema(
            [
                pa.field("step", pa.int64(), nullable=False),
                pa.field("loss", pa.float64(), nullable=False),
                pa.field("lr", pa.float64(), nullable=False),
                pa.field("seconds", pa.float64(), nullable=False),
                pa.field("clips_per_s", pa.float64(), nullable=False),
            ],
            metadata={"doc": "one row per GaitCrafter training step"},
        ),
        allowed_values={},
        unique_key=("step",),
    )
)


class CheckpointError(ValueError):
    """A GaitCrafter checkpoint is missing, corrupt or incompatible; the message names the file."""


# ---------------------------------------------------------------------------------------------
# Covariates and data


def _attributes(row: Mapping[str, object]) -> dict[str, object]:
    text = row.get("attributes")
    if isinstance(text, Mapping):
        return dict(text)
    if isinstance(text, str) and text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{row.get('sequence_id')}: manifest attributes are not JSON ({err})") from err
        return value if isinstance(value, dict) else {}
    return {}


def covariates_of(row: Mapping[str, object]) -> tuple[str, str, str]:
    """(view, clothing, bag) of a manifest row (see the module docstring for the rules)."""
    view = str(row["view"])
    attributes = _attributes(row)
    code_clothing, code_bag = ANY, ANY
    for token in re.findall(r"[a-z]+", str(row.get("condition", "")).lower()):
        if token in CONDITION_CODES:
            code_clothing, code_bag = CONDITION_CODES[token]
            break
    coat, bag = attributes.get("coat"), attributes.get("bag")
    clothing = ("coat" if coat else "normal") if isinstance(coat, bool) else code_clothing
    carried = ("bag" if bag else "none") if isinstance(bag, bool) else code_bag
    return view, clothing, carried


@dataclass
class TrainingData:
    """Valid silhouette frames of the training sequences and their condition indices."""

    frames: list[np.ndarray]  # per sequence: uint8 [T_i, 64, 64] (valid frames only)
    identity: np.ndarray  # [n_seq] int64 index into vocabulary.identities
    view: np.ndarray  # [n_seq] int64 (-1 = any)
    clothing: np.ndarray  # [n_seq] int64 (-1 = any)
    bag: np.ndarray  # [n_seq] int64 (-1 = any)
    sequence_ids: list[str]
    vocabulary: Vocabulary
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def _store_paths(silhouette_stores: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(silhouette_stores, (str, os.PathLike)):
        path = Path(silhouette_stores)
        if path.is_dir():
            found = sorted(path.glob("shard-*.npz"))
            if not found:
                raise FileNotFoundError(f"no silhouette frame stores {path}/shard-*.npz")
            return found
        return [path]
    paths = [Path(p) for p in silhouette_stores]
    if not paths:
        raise ValueError("gaitcrafter: no silhouette frame stores given")
    return paths


def load_training_data(
    silhouette_stores: str | os.PathLike | Sequence[str | os.PathLike],
    manifest: str | os.PathLike | Sequence[Mapping[str, object]],
    config: GaitCrafterConfig,
    *,
    splits: Sequence[str] = ("train",),
    roles: Sequence[str] | None = None,
) -> TrainingData:
    """The usable sequences of ``splits`` (and ``roles``) with at least ``config.frames`` valid frames."""
    from pipeline.recognisers.data import GaitDataset

    rows = (
        read_table(manifest, MANIFEST).to_pylist()
        if isinstance(manifest, (str, os.PathLike))
        else list(manifest)
    )
    rows = [r for r in rows if r["split"] in splits and (roles is None or r["role"] in roles)]
    if not rows:
        raise ValueError(f"gaitcrafter: the manifest has no rows in splits {list(splits)} (roles {roles})")
    dataset = GaitDataset.from_stores(
        rows, {"silhouettes": _store_paths(silhouette_stores)}, "silhouette", min_frames=config.frames
    )
    if len(dataset) == 0:
        reasons = sorted(set(dataset.skipped.values()))[:5]
        raise ValueError(
            f"gaitcrafter: no usable training sequence ({len(dataset.skipped)} skipped: {reasons})"
        )
    by_id = {str(r["sequence_id"]): r for r in rows}
    covariates = [covariates_of(by_id[item.sequence_id]) for item in dataset.items]
    data_views = sorted({v for v, _, _ in covariates})
    if config.views is not None:
        unknown = [v for v in data_views if v not in config.views]
        if unknown:
            raise ValueError(
                f"{CONFIG_KEY}.views: the training data has view(s) {unknown} that are not in the configured "
                f"vocabulary {list(config.views)}"
            )
    vocabulary = Vocabulary(identities=tuple(dataset.labels), views=tuple(config.views or data_views))
    return TrainingData(
        frames=[dataset.frames(i)[0][:, 0] for i in range(len(dataset))],
        identity=dataset.label_of.copy(),
        view=np.array([vocabulary.index("view", v) for v, _, _ in covariates], dtype=np.int64),
        clothing=np.array([vocabulary.index("clothing", c) for _, c, _ in covariates], dtype=np.int64),
        bag=np.array([vocabulary.index("bag", b) for _, _, b in covariates], dtype=np.int64),
        sequence_ids=[item.sequence_id for item in dataset.items],
        vocabulary=vocabulary,
        skipped=dict(dataset.skipped),
    )


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def torch_seed(seed: int, step: int, stream: int = 0) -> int:
    return int(np.random.SeedSequence([seed, step, 1 + stream]).generate_state(1, np.uint64)[0] % (2**63))


def clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, 64, 64] → float32 [1, T, 64, 44] in [-1, 1] (OpenGait cut, then 2x − 1)."""
    return torch.from_numpy(cut_to_44(frames) * 2.0 - 1.0).unsqueeze(0)


def draw_batch(
    data: TrainingData, config: GaitCrafterConfig, step: int
) -> tuple[torch.Tensor, ConditionBatch]:
    """Clips [B, 1, T, 64, 44] and their conditions for ``step`` (identities drawn uniformly)."""
    rng = step_rng(config.seed, step)
    subjects = np.unique(data.identity)
    clips, rows = [], []
    for subject in rng.choice(subjects, size=config.batch_size):
        row = int(rng.choice(np.flatnonzero(data.identity == subject)))
        frames = data.frames[row]
        start = int(rng.integers(0, len(frames) - config.frames + 1))
        clips.append(clip_tensor(frames[start : start + config.frames]))
        rows.append(row)
    index = np.asarray(rows)
    identity = torch.zeros(len(rows), len(data.vocabulary.identities))
    identity[torch.arange(len(rows)), torch.from_numpy(data.identity[index])] = 1.0
    cond = ConditionBatch(
        identity=identity,
        view=torch.from_numpy(data.view[index]),
        clothing=torch.from_numpy(data.clothing[index]),
        bag=torch.from_numpy(data.bag[index]),
    )
    return torch.stack(clips), cond


# ---------------------------------------------------------------------------------------------
# Diffusion pieces


def noise_scheduler(config: GaitCrafterConfig):
    """The training scheduler (diffusers ``DDPMScheduler``; ε- or v-prediction; samples clipped to [-1, 1])."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
    )


class EMA:
    """Exponential moving average of every floating-point entry of a model's state dict."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        # Warm-up: early steps follow the weights closely so a short run's EMA is not its initialisation.
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                shadow.copy_(value)

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"EMA state lacks {missing[:5]}")
        for key, value in state.items():
            self.shadow[key].copy_(value)


def lr_at(config: GaitCrafterConfig, step: int) -> float:
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, step / config.warmup_steps)


def condition_drop(config: GaitCrafterConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 4] bool: slot dropped (per slot with ``drop_slot``, all four with ``drop_all``)."""
    per_slot = torch.rand(n, len(SLOTS), generator=generator) < config.drop_slot
    all_slots = torch.rand(n, 1, generator=generator) < config.drop_all
    return per_slot | all_slots


def train_step(
    model: GaitCrafter,
    data: TrainingData,
    config: GaitCrafterConfig,
    optimizer: torch.optim.Optimizer,
    scheduler,
    step: int,
    device: str,
) -> dict[str, float]:
    """One optimisation step; returns its log row."""
    start = time.perf_counter()
    clips, cond = draw_batch(data, config, step)
    clips = to_diffusion_space(clips, config.downsample)
    generator = torch.Generator().manual_seed(torch_seed(config.seed, step))
    noise = torch.randn(clips.shape, generator=generator)
    timesteps = torch.randint(0, config.train_timesteps, (len(clips),), generator=generator)
    drop = condition_drop(config, len(clips), generator)
    torch.manual_seed(torch_seed(config.seed, step, stream=1))  # the UNet's own dropout layers
    clips, noise, timesteps = clips.to(device), noise.to(device), timesteps.to(device)
    noisy = scheduler.add_noise(clips, noise, timesteps)
    lr = lr_at(config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    use_bf16 = config.precision == "bf16" and device.startswith("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
        tokens = model.encoder(cond.to(device), drop.to(device))
        predicted = model(noisy, timesteps, tokens)
    target = noise if config.prediction_type == "epsilon" else scheduler.get_velocity(clips, noise, timesteps)
    loss = F.mse_loss(predicted.float(), target)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"gaitcrafter: training loss is {float(loss.detach())} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    seconds = time.perf_counter() - start
    return {
        "step": step,
        "loss": float(loss.detach()),
        "lr": lr,
        "seconds": seconds,
        "clips_per_s": len(clips) / seconds if seconds > 0 else float("inf"),
    }


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoints_root(out: str | os.PathLike) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints of a run, oldest first (temporary folders ignored)."""
    root = checkpoints_root(out)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage; independent contiguous CPU copies never do.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    out: str | os.PathLike,
    step: int,
    model: GaitCrafter,
    ema: EMA,
    optimizer: torch.optim.Optimizer | None,
    config: GaitCrafterConfig,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Write ``{out}/checkpoints/step-{step:06d}/`` atomically (temporary folder, then rename)."""
    from safetensors.torch import save_file

    root = checkpoints_root(out)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        metadata = {"format": CHECKPOINT_FORMAT, "step": str(step)}
        save_file(_plain_tensors(model.state_dict()), tmp / MODEL_FILE, metadata=metadata)
        save_file(_plain_tensors(ema.shadow), tmp / EMA_FILE, metadata=metadata)
        files = [MODEL_FILE, EMA_FILE]
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
            files.append(OPTIMIZER_FILE)
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "config": config.as_plain(),
            "vocabulary": model.vocabulary.as_plain(),
            "files": {name: _sha256(tmp / name) for name in files},
            "extra": dict(extra or {}),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    """A verified checkpoint folder: its state and the readers of its files."""

    path: Path
    step: int
    config: GaitCrafterConfig
    vocabulary: Vocabulary
    state: dict[str, object]

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path / name
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file ({err})") from err

    def optimizer_state(self) -> dict[str, object]:
        path = self.path / OPTIMIZER_FILE
        if OPTIMIZER_FILE not in self.state["files"]:  # type: ignore[operator]
            raise CheckpointError(
                f"{path}: this checkpoint has no optimizer state; it cannot be resumed from"
            )
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several unrelated types for damaged pickles
            raise CheckpointError(
                f"{path}: unreadable optimizer state ({type(err).__name__}: {err})"
            ) from err


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder from either itself or a run folder (its newest checkpoint)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path}: no GaitCrafter checkpoint here (no {STATE_FILE}, no checkpoints/step-*)"
        )
    return latest


def open_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> Checkpoint:
    """Read and verify ``state.json`` and the sha256 of every file it lists (errors name the file)."""
    folder = resolve_checkpoint(path)
    state_path = folder / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{state_path}: unreadable checkpoint state ({err})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{state_path}: not a {CHECKPOINT_FORMAT} checkpoint (format {found!r})")
    files = state.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files or EMA_FILE not in files:
        raise CheckpointError(f"{state_path}: lists no {MODEL_FILE}/{EMA_FILE}")
    if verify:
        for name, expected in files.items():
            file = folder / name
            if not file.is_file():
                raise CheckpointError(f"{file}: checkpoint file is missing")
            if _sha256(file) != expected:
                raise CheckpointError(
                    f"{file}: checkpoint file is corrupt (sha256 differs from the one recorded when it was "
                    f"written); delete {folder} to resume from the previous checkpoint"
                )
    try:
        config = GaitCrafterConfig.from_mapping(state["config"])
        vocabulary = Vocabulary.from_plain(state["vocabulary"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{state_path}: invalid config or vocabulary ({err})") from err
    return Checkpoint(folder, int(state["step"]), config, vocabulary, state)


def load_gaitcrafter(
    path: str | os.PathLike, *, weights: str = "ema", device: str | None = None
) -> tuple[GaitCrafter, Checkpoint]:
    """(model in eval mode with the ``ema`` or ``model`` weights, its checkpoint) from a run or checkpoint folder."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    checkpoint = open_checkpoint(path)
    model = build_model(checkpoint.config, checkpoint.vocabulary)
    state = checkpoint.tensors(EMA_FILE if weights == "ema" else MODEL_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the recorded config ({err})") from err
    model.to(device or checkpoint.config.resolved_device()).eval()
    return model, checkpoint


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    model: GaitCrafter  # the trained weights (not the EMA)
    ema: EMA
    step: int
    checkpoint: Path
    log: Path
    resumed_from: int
    data: TrainingData


def _check_resume(config: GaitCrafterConfig, checkpoint: Checkpoint, vocabulary: Vocabulary) -> None:
    saved = checkpoint.config.as_plain()
    now = config.as_plain()
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in changed)
        raise CheckpointError(
            f"{checkpoint.path}: cannot resume with a different {CONFIG_KEY} config ({detail}); use a new folder"
        )
    if checkpoint.vocabulary != vocabulary:
        raise CheckpointError(
            f"{checkpoint.path}: the checkpoint was trained on another vocabulary (identities/views) than this data's"
        )


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    return [row for row in read_table(path, TRAINING_LOG).to_pylist() if row["step"] <= upto]


def _prune(out: Path, keep_last: int | None) -> None:
    if keep_last is None:
        return
    for _, old in list_checkpoints(out)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def train(
    config: GaitCrafterConfig, data: TrainingData, out: str | os.PathLike, *, resume: bool = True
) -> TrainResult:
    """Train into ``out`` (resuming from its newest checkpoint when ``resume``)."""
    from tqdm import tqdm

    out = Path(out)
    device = config.resolved_device()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    latest = latest_checkpoint(out)
    if latest is not None and not resume:
        raise ValueError(f"{out}: already holds checkpoints ({latest.name}); resume or use a new folder")
    torch.manual_seed(config.seed)
    model = build_model(config, data.vocabulary).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    start, rows, checkpoint_path = 0, [], None
    if latest is not None:
        checkpoint = open_checkpoint(latest)
        _check_resume(config, checkpoint, data.vocabulary)
        model.load_state_dict(checkpoint.tensors(MODEL_FILE), strict=True)
        ema.load_state_dict(checkpoint.tensors(EMA_FILE))
        optimizer.load_state_dict(checkpoint.optimizer_state())
        start, checkpoint_path = checkpoint.step, checkpoint.path
        rows = _read_log(out / "train_log.parquet", start)
        log.info("gaitcrafter: resuming from %s (step %d)", checkpoint.path, start)
    scheduler = noise_scheduler(config)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(device)
    model.train()
    extra = {"sequences": len(data), "skipped": len(data.skipped), "trainer": "pipeline.gaitcrafter.train"}
    bar = tqdm(
        total=config.steps, initial=min(start, config.steps), disable=not config.progress, desc="gaitcrafter"
    )
    try:
        for step in range(start + 1, config.steps + 1):
            row = train_step(model, data, config, optimizer, scheduler, step, device)
            ema.update(model, step)
            rows.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.2f}")
            if step % config.save_every == 0 or step == config.steps:
                checkpoint_path = save_checkpoint(out, step, model, ema, optimizer, config, extra)
                write_table(rows, out / "train_log.parquet", TRAINING_LOG)
                _prune(out, config.keep_last)
    finally:
        bar.close()
    if checkpoint_path is None:  # zero steps requested and nothing saved yet: keep the initial state
        checkpoint_path = save_checkpoint(out, start, model, ema, optimizer, config, extra)
        write_table(rows, out / "train_log.parquet", TRAINING_LOG)
    return TrainResult(
        model, ema, max(start, config.steps), checkpoint_path, out / "train_log.parquet", start, data
    )


def resolve_config(
    config: GaitCrafterConfig | Mapping[str, object] | str | None, seed: int | None
) -> GaitCrafterConfig:
    """A config from a preset name, a mapping (with optional ``preset``) or a config; ``seed`` overrides."""
    from dataclasses import replace

    if config is None:
        config = "tiny"
    if isinstance(config, str):
        config = GaitCrafterConfig.from_mapping({}, preset=config)
    elif not isinstance(config, GaitCrafterConfig):
        config = GaitCrafterConfig.from_mapping(config)
    return config if seed is None else replace(config, seed=int(seed))


def train_gaitcrafter(
    silhouette_stores: str | os.PathLike | Sequence[str | os.PathLike],
    manifest: str | os.PathLike | Sequence[Mapping[str, object]],
    out_dir: str | os.PathLike,
    config: GaitCrafterConfig | Mapping[str, object] | str | None = None,
    seed: int | None = None,
    resume: bool = True,
    *,
    splits: Sequence[str] = ("train",),
    roles: Sequence[str] | None = None,
) -> TrainResult:
    """The training job: silhouettes of ``splits`` (a folder of ``shard-*.npz`` or a list of stores)."""
    resolved = resolve_config(config, seed)
    data = load_training_data(silhouette_stores, manifest, resolved, splits=splits, roles=roles)
    for sid, reason in list(data.skipped.items())[:20]:
        log.warning("gaitcrafter training set: skipped %s: %s", sid, reason)
    log.info(
        "gaitcrafter training set: %d sequences, %d identities, views %s, %d skipped",
        len(data),
        len(data.vocabulary.identities),
        list(data.vocabulary.views),
        len(data.skipped),
    )
    return train(resolved, data, out_dir, resume=resume)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.gaitcrafter.train --stores DIR --manifest M --out DIR [--preset tiny] [--set k=v ...]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Train GaitCrafter on a dataset's train-split silhouettes.")
    parser.add_argument("--stores", required=True, help="folder of silhouette shard-*.npz (or one .npz)")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON", help="override a config key"
    )
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {"preset": args.preset}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train_gaitcrafter(args.stores, args.manifest, args.out, overrides, args.seed, not args.no_resume)
    print(f"trained to step {result.step}: {result.checkpoint}")
    return 0


__all__ = [
    "CONDITION_CODES",
    "EMA",
    "TRAINING_LOG",
    "Checkpoint",
    "CheckpointError",
    "TrainResult",
    "TrainingData",
    "covariates_of",
    "draw_batch",
    "latest_checkpoint",
    "list_checkpoints",
    "load_gaitcrafter",
    "load_training_data",
    "noise_scheduler",
    "open_checkpoint",
    "resolve_config",
    "save_checkpoint",
    "train",
    "train_gaitcrafter",
]


if __name__ == "__main__":
    raise SystemExit(main())
