"""Are novel (interpolated) identities consistent within themselves and distinct from the training ones?

Given an embedding function (frames → vector; :func:`recogniser_embedder` wraps a trained silhouette
recogniser such as DeepGaitV2) and clips of novel and training identities, :func:`distinctness`
measures, with Euclidean distances between embeddings (OpenGait's test metric):

* ``own_nn`` — for each novel sample, the distance to the nearest *other* sample of the same novel
  identity (its within-identity spread, as a retrieval would see it);
* ``own_mean`` — the mean distance to the other samples of the same novel identity;
* ``training_nn`` — the distance to the nearest clip of any training identity (and which identity);
* ``other_novel_nn`` — the distance to the nearest sample of another novel identity.

A novel sample is *captured* by a training identity when ``training_nn < own_nn``: a nearest-neighbour
retrieval would return a real person before the novel identity's own other samples. The summary
reports the captured fraction, percentiles of every distance and, for calibration, the same statistic
for the training identities themselves (``real_baseline``: for each real clip, is another identity's
clip nearer than the nearest clip of its own identity? — one minus leave-one-out rank-1), because
"distinct" only means something relative to how well the recogniser separates real people.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Embedder = Callable[[np.ndarray], np.ndarray]
PERCENTILES = (5, 25, 50, 75, 95)


def recogniser_embedder(model, *, device: str = "cpu", feature: str = "embed_1") -> Embedder:
    """frames [T, 64, 44] (uint8 0..255 or float in [0, 1]) → flattened recogniser feature (float64).

    ``model`` is a silhouette recogniser of :mod:`pipeline.recognisers.models` (input [n, s, 1, 64, 44]
    in [0, 1]); ``feature`` is ``embed_1`` (OpenGait's default test feature) or ``embed_2``.
    """
    import torch

    if feature not in ("embed_1", "embed_2"):
        raise ValueError(f"feature must be 'embed_1' or 'embed_2', got {feature!r}")
    if getattr(model, "modality", "silhouette") != "silhouette":
        raise ValueError(f"the novelty check needs a silhouette recogniser, got modality {model.modality!r}")
    model = model.to(device).eval()

    def embed(frames: np.ndarray) -> np.ndarray:
        clip = np.asarray(frames)
        if clip.ndim != 3:
            raise ValueError(f"expected frames [T, 64, 44], got shape {clip.shape}")
        values = clip.astype(np.float32) / 255.0 if clip.dtype == np.uint8 else clip.astype(np.float32)
        inputs = torch.from_numpy(values)[None, :, None]  # [1, T, 1, 64, 44]
        with torch.no_grad():
            output = model(inputs.to(device))
        return getattr(output, feature).reshape(-1).double().cpu().numpy()

    return embed


def _stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"n": 0}
    out = {
        "n": int(array.size),
        "mean": float(array.mean()),
        "min": float(array.min()),
        "max": float(array.max()),
    }
    out.update({f"p{p}": float(np.percentile(array, p)) for p in PERCENTILES})
    return out


def _embed_all(
    embed: Embedder, groups: Mapping[str, Sequence[np.ndarray]], what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [m, d], group label per row [m])."""
    vectors, labels = [], []
    for label, clips in groups.items():
        for clip in clips:
            vector = np.asarray(embed(clip), dtype=np.float64).reshape(-1)
            if not np.isfinite(vector).all():
                raise ValueError(f"{what} identity {label!r}: the embedding function returned NaN/inf")
            vectors.append(vector)
            labels.append(str(label))
    if not vectors:
        raise ValueError(f"no {what} clips given")
    sizes = {v.size for v in vectors}
    if len(sizes) > 1:
        raise ValueError(f"the embedding function returned vectors of different sizes {sorted(sizes)}")
    return np.stack(vectors), np.asarray(labels)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)]."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


@dataclass
class NoveltyReport:
    per_sample: list[dict[str, object]]  # one row per novel sample
    summary: dict[str, object]
    real_baseline: dict[str, object]


def real_baseline(train_vectors: np.ndarray, train_labels: np.ndarray) -> dict[str, object]:
    """For every real clip whose identity has another clip: is another identity's clip nearer?"""
    d = pairwise(train_vectors, train_vectors)
    np.fill_diagonal(d, np.inf)
    own, other = [], []
    for i, label in enumerate(train_labels):
        same = train_labels == label
        same[i] = False
        if not same.any() or same.all():
            continue
        own.append(d[i, same].min())
        other.append(d[i, train_labels != label].min())
    if not own:
        return {"n": 0, "note": "no training identity has two clips; no baseline"}
    own_a, other_a = np.asarray(own), np.asarray(other)
    return {
        "n": int(own_a.size),
        "own_nn": _stats(own_a),
        "other_nn": _stats(other_a),
        "fraction_other_closer": float((other_a < own_a).mean()),
    }


def distinctness(
    embed: Embedder,
    novel: Mapping[str, Sequence[np.ndarray]],
    training: Mapping[str, Sequence[np.ndarray]],
    *,
    parents: Mapping[str, Sequence[str]] | None = None,
) -> NoveltyReport:
    """Distinctness statistics of ``novel`` identities (≥ 2 clips each) against ``training`` identities.

    ``parents`` (novel label → the training identities it mixes) adds whether the nearest training
    identity is one of the parents.
    """
    short = [k for k, clips in novel.items() if len(clips) < 2]
    if short:
        raise ValueError(
            f"novel identities need >= 2 samples each to measure their spread; {short} have fewer"
        )
    if len(novel) < 1:
        raise ValueError("no novel identities given")
    nv, nl = _embed_all(embed, novel, "novel")
    tv, tl = _embed_all(embed, training, "training")
    if nv.shape[1] != tv.shape[1]:
        raise ValueError(f"novel and training embeddings differ in size ({nv.shape[1]} vs {tv.shape[1]})")
    within = pairwise(nv, nv)
    to_training = pairwise(nv, tv)
    rows: list[dict[str, object]] = []
    for i, label in enumerate(nl):
        same = nl == label
        same[i] = False
        others = nl != label
        nearest = int(np.argmin(to_training[i]))
        row: dict[str, object] = {
            "novel_identity": str(label),
            "sample": int(i),
            "own_nn": float(within[i, same].min()),
            "own_mean": float(within[i, same].mean()),
            "training_nn": float(to_training[i, nearest]),
            "nearest_training_identity": str(tl[nearest]),
            "other_novel_nn": float(within[i, others].min()) if others.any() else None,
        }
        row["captured"] = bool(row["training_nn"] < row["own_nn"])  # type: ignore[operator]
        if parents is not None:
            row["nearest_is_parent"] = str(tl[nearest]) in set(parents.get(str(label), ()))
        rows.append(row)
    pairs = [within[i, j] for i in range(len(nl)) for j in range(i + 1, len(nl)) if nl[i] == nl[j]]
    other_novel = [r["other_novel_nn"] for r in rows if r["other_novel_nn"] is not None]
    summary: dict[str, object] = {
        "novel_identities": len(novel),
        "novel_samples": len(rows),
        "training_identities": len(training),
        "training_clips": int(len(tl)),
        "within_pairs": _stats(pairs),
        "own_nn": _stats([r["own_nn"] for r in rows]),
        "training_nn": _stats([r["training_nn"] for r in rows]),
        "other_novel_nn": _stats(other_novel),
        "fraction_captured_by_training": float(np.mean([r["captured"] for r in rows])),
        "fraction_other_novel_closer": float(
            np.mean([r["other_novel_nn"] < r["own_nn"] for r in rows if r["other_novel_nn"] is not None])
        )
        if other_novel
        else None,
    }
    if parents is not None:
        summary["fraction_nearest_is_parent"] = float(np.mean([r["nearest_is_parent"] for r in rows]))
    return NoveltyReport(rows, summary, real_baseline(tv, tl))


def evaluate_novelty(
    checkpoint,
    embed: Embedder,
    *,
    novel_count: int = 6,
    samples: int = 3,
    parents: int = 2,
    view: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float | None = None,
    real: Mapping[str, Sequence[np.ndarray]] | None = None,
    identities: Sequence[str] | None = None,
    sampler: str | None = None,
    guidance_on: str | None = None,
) -> dict[str, object]:
    """Generate ``novel_count`` novel identities and every training identity, ``samples`` clips each
    (same view, normal clothing, no bag, different seeds), and measure :func:`distinctness` against
    the *generated* training identities (same generator, so a generator-vs-real domain gap cannot
    make novel identities look distinct) and, when ``real`` clips are given, against those too.

    ``identities`` restricts the training identities (generated for comparison, and the parents of
    the mixes), e.g. to the train split when the model also enrolled test identities."""
    from pipeline.gaitcrafter.sample import random_novel_identities, sample
    from pipeline.gaitcrafter.train import load_gaitcrafter

    model, info = load_gaitcrafter(checkpoint)
    vocabulary = model.vocabulary
    pool = list(vocabulary.identities) if identities is None else list(dict.fromkeys(identities))
    view = view if view is not None else vocabulary.views[len(vocabulary.views) // 2]
    mixes = random_novel_identities(model, novel_count, parents, seed, pool=pool)
    labels = [f"novel-{k:03d}" for k in range(novel_count)]
    conditioned: list[object] = [m for m in mixes for _ in range(samples)]
    conditioned += [i for i in pool for _ in range(samples)]
    n = len(conditioned)
    cond = model.conditions(conditioned, [view] * n, ["normal"] * n, ["none"] * n)  # type: ignore[arg-type]
    out = sample(
        model, cond, steps=steps, guidance_scale=guidance_scale, seed=seed, sampler=sampler, guidance_on=guidance_on
    )
    clips = list(out.silhouettes)
    novel = {label: clips[k * samples : (k + 1) * samples] for k, label in enumerate(labels)}
    offset = novel_count * samples
    generated_training = {
        identity: clips[offset + k * samples : offset + (k + 1) * samples] for k, identity in enumerate(pool)
    }
    parent_map = {label: list(mix) for label, mix in zip(labels, mixes, strict=True)}
    against_generated = distinctness(embed, novel, generated_training, parents=parent_map)
    result: dict[str, object] = {
        "checkpoint": str(info.path),
        "view": view,
        "mixes": dict(zip(labels, mixes, strict=True)),
        "sampling_seconds": out.seconds,
        "vs_generated_training": {
            "summary": against_generated.summary,
            "real_baseline": against_generated.real_baseline,
        },
    }
    if real is not None:
        against_real = distinctness(embed, novel, real, parents=parent_map)
        result["vs_real_training"] = {
            "summary": against_real.summary,
            "real_baseline": against_real.real_baseline,
        }
    return result


__all__ = [
    "Embedder",
    "NoveltyReport",
    "distinctness",
    "evaluate_novelty",
    "pairwise",
    "real_baseline",
    "recogniser_embedder",
]
