"""Gait retrieval metrics: one implementation, configured per protocol.

Every evaluation here is "rank a gallery by distance for each probe, then count":

* **Distance** (OpenGait ``cuda_dist``): embeddings are [N, C, P] (C channels per part, P parts). The
  distance is computed *per part* and averaged over parts, never on the flattened vector:
  ``euc``: ``d = (1/P) Σ_p sqrt(relu(|x_p|² + |y_p|² − 2 x_p·y_p))``;
  ``cos``: each part L2-normalised over C, ``d = 1 − (1/P) Σ_p <x̂_p, ŷ_p>``.
* **Ranking**: each probe's gallery is sorted by ascending distance with a *stable* sort, so **ties
  are broken by gallery order** (the row order of the gallery table, lower first). A true match tied
  with a false one therefore counts as found at the earlier position only if it comes first in the
  gallery. OpenGait itself uses ``torch.topk``/``np.argsort`` (unspecified order among ties); with
  continuous embeddings exact ties essentially never happen, so the rule matters only for
  degenerate inputs, where it keeps results reproducible.
* **Per-probe numbers**: Rank-k hit (a true match among the first k), AP = (1/R) Σ_{i: match}
  (#matches in top i)/i with R = #true matches in the gallery, INP = R / (1-based position of the
  last true match). Gallery items excluded for a probe (same-view rules) are removed from its
  ranking, not merely pushed back.
* **Probes with no true match** in their gallery: ``no_match="miss"`` counts them (Rank-k 0, AP 0,
  INP 0; SUSTech1K), ``"skip"`` leaves them out of the means (``evaluate_rank``; CCGR-MINI). How
  many there were is reported either way.

Protocols (:data:`PROTOCOLS`) only choose the gallery, the probes, the probe groups and the
exclusion rule:

* ``sustech1k`` — ``single_view_gallery_evaluation``: gallery = conditions containing ``00-nm``, one
  gallery view at a time; probe groups by condition substrings (Normal, Bag, ..., Overall); cell
  accuracy acc(v1, v2) over *all* probes of view v1; same-view cells dropped (``de_diag``):
  ``Rk = mean_{v1} mean_{v2≠v1} acc(v1, v2)`` over the sorted views of the whole test set; Rank-1..5,
  no mAP. A probe view with no probe of a group is left out of that group's mean; a gallery view with
  no gallery sequence counts as all misses. Cell accuracies are not rounded (OpenGait rounds them to
  2 decimals before averaging).
* ``ccgr_mini`` — ``evaluate_CCGR_MINI``: gallery = ``role == "gallery"`` (the indexer sets it from
  ``GALLERY_SET``), every other test sequence is a probe, Rank-1/5/10, mAP, mINP, no-match skipped.
* ``generic`` — gallery/probe roles from the manifest, Rank-1/5, mAP, mINP, also per probe condition;
  optional same-view exclusion.

:func:`evaluate_generated` ranks generated probes against a real gallery with one or more "true
identity" columns (Task 1: the driving subject; Task 2: driving and reference subject), reusing the
same distance and ranking code. All values are percentages (×100) like OpenGait's.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.contracts import TASKS, declare, string_fields
from pipeline.contracts import field as arrow_field

log = logging.getLogger(__name__)

METRICS = ("euc", "cos")
SAME_VIEW_RULES = ("keep", "exclude", "exclude_same_id")
NO_MATCH_RULES = ("miss", "skip")
OVERALL = "Overall"
# F.normalize's default eps: an all-zero part stays zero instead of becoming NaN.
NORM_EPS = 1e-12
# Default size of one [chunk, n_gallery] float64 block: bounds memory for large problems.
CHUNK_BYTES = 128 * 2**20

_JOB = string_fields("dataset", "model", "task", "scenario", "job_id")
_SUBJECTS = string_fields("driving_subject", "reference_subject", nullable=True)

# Output contracts (read by pipeline.study.aggregate)

PROBE_RESULTS = declare(
    "probe_results",
    "one row per generated probe and recogniser: rank and AP of the driving and reference identities",
    [
        *_JOB, arrow_field("recogniser", pa.string(), False), *_SUBJECTS,
        # 1-based rank of the first gallery item of that identity; null: no gallery sequence of it
        arrow_field("driving_rank", pa.int32()), arrow_field("reference_rank", pa.int32()),
        arrow_field("driving_ap", pa.float64()), arrow_field("reference_ap", pa.float64()),
        arrow_field("error", pa.string()),
    ],
    ("dataset", "model", "task", "scenario", "job_id", "recogniser"),
    task=TASKS,
)  # fmt: skip

REAL_RETRIEVAL = declare(
    "real_retrieval",
    "the real-probe baseline: one row per dataset, recogniser, protocol, condition ('all'/'Overall' or a"
    " probe condition) and metric (percent; null when not computable); a recogniser that could not be"
    " scored has one row with value null and the reason in note",
    [
        *string_fields("dataset", "recogniser", "protocol", "condition", "metric"),
        arrow_field("value", pa.float64()),
        arrow_field("note", pa.string()),
    ],
    ("dataset", "recogniser", "protocol", "condition", "metric"),
)



# ---------------------------------------------------------------------------------------------
# Distances


def _check_embeddings(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name}: embeddings must be [N, C, P], got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(1))
        raise ValueError(f"{name}: rows {bad[:10].tolist()} have non-finite values; they must not be ranked")
    return x


def _chunk_rows(n_gallery: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        return chunk_rows
    return max(1, CHUNK_BYTES // (8 * max(n_gallery, 1)))


def _normalise_parts(x: np.ndarray) -> np.ndarray:
    """[N, C, P] → the same with every part scaled to unit L2 norm over C (zero parts stay zero)."""
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x / np.maximum(norm, NORM_EPS)


def _numpy_chunks(
    probe: np.ndarray, gallery: np.ndarray, metric: str, rows: int, dtype: type
) -> Iterator[tuple[int, np.ndarray]]:
    n_parts = probe.shape[2]
    if metric == "cos":
        # The mean over parts of per-part cosines is one dot product of the part-normalised,
        # flattened vectors divided by P.
        g = _normalise_parts(gallery.astype(dtype)).reshape(len(gallery), -1).T.copy()
        for start in range(0, len(probe), rows):
            q = _normalise_parts(probe[start : start + rows].astype(dtype)).reshape(-1, g.shape[0])
            yield start, 1.0 - (q @ g) / n_parts
        return
    # |x|² + |y|² − 2x·y as one product of augmented matrices, [−2x, |x|², 1] · [y; 1; |y|²]: the
    # norms ride along in the matrix product instead of costing three passes over every [n, Ng] block.
    g_parts = gallery.astype(dtype).transpose(2, 1, 0)  # [P, C, Ng]
    g_aug = np.concatenate(
        [g_parts, np.ones((n_parts, 1, len(gallery)), dtype), (g_parts * g_parts).sum(axis=1, keepdims=True)],
        axis=1,
    )  # [P, C + 2, Ng]
    for start in range(0, len(probe), rows):
        q_parts = probe[start : start + rows].astype(dtype).transpose(2, 0, 1)  # [P, n, C]
        q_aug = np.concatenate(
            [
                -2.0 * q_parts,
                (q_parts * q_parts).sum(axis=2, keepdims=True),
                np.ones((*q_parts.shape[:2], 1), dtype),
            ],
            axis=2,
        )  # [P, n, C + 2]
        total = np.zeros((q_aug.shape[1], g_aug.shape[2]), dtype=dtype)
        d2 = np.empty_like(total)
        for p in range(n_parts):
            np.matmul(q_aug[p], g_aug[p], out=d2)
            np.maximum(d2, 0.0, out=d2)
            np.sqrt(d2, out=d2)
            total += d2
        total /= n_parts
        yield start, total


def _torch_chunks(
    probe: np.ndarray, gallery: np.ndarray, metric: str, rows: int, dtype: type, device: str
) -> Iterator[tuple[int, np.ndarray]]:
    import torch

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    g = torch.as_tensor(gallery, dtype=tdtype, device=device)
    n_parts = g.shape[2]
    if metric == "cos":
        g = torch.nn.functional.normalize(g, dim=1, eps=NORM_EPS).flatten(1)
        for start in range(0, len(probe), rows):
            q = torch.as_tensor(probe[start : start + rows], dtype=tdtype, device=device)
            q = torch.nn.functional.normalize(q, dim=1, eps=NORM_EPS).flatten(1)
            yield start, (1.0 - q @ g.T / n_parts).cpu().numpy()
        return
    g_parts = g.permute(2, 1, 0).contiguous()  # [P, C, Ng]
    g_sq = (g_parts * g_parts).sum(1)  # [P, Ng]
    for start in range(0, len(probe), rows):
        q_parts = torch.as_tensor(probe[start : start + rows], dtype=tdtype, device=device).permute(2, 0, 1)
        q_sq = (q_parts * q_parts).sum(2)  # [P, n]
        d2 = q_sq[:, :, None] + g_sq[:, None, :] - 2.0 * torch.bmm(q_parts, g_parts)  # [P, n, Ng]
        yield start, torch.sqrt(torch.relu(d2)).mean(0).cpu().numpy()


def iter_part_distances(
    probe: np.ndarray,
    gallery: np.ndarray,
    *,
    metric: str = "euc",
    backend: str = "numpy",
    device: str = "cpu",
    dtype: type = np.float64,
    chunk_rows: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_probe_row, distances [rows, Ng])`` for consecutive probe chunks.

    ``probe`` [Nq, C, P], ``gallery`` [Ng, C, P]. ``backend="torch"`` computes on ``device`` (e.g.
    ``cuda``) and hands back numpy blocks; chunking keeps one block under :data:`CHUNK_BYTES`.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype}")
    probe = _check_embeddings("probe", probe)
    gallery = _check_embeddings("gallery", gallery)
    if probe.shape[1:] != gallery.shape[1:]:
        raise ValueError(
            f"probe parts {probe.shape[1:]} differ from gallery parts {gallery.shape[1:]} ([C, P])"
        )
    rows = _chunk_rows(len(gallery), chunk_rows)
    if backend == "numpy":
        return _numpy_chunks(probe, gallery, metric, rows, dtype)
    if backend == "torch":
        return _torch_chunks(probe, gallery, metric, rows, dtype, device)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")


def part_distances(probe: np.ndarray, gallery: np.ndarray, **options: object) -> np.ndarray:
    """Full distance matrix [Nq, Ng] (see :func:`iter_part_distances` for the options)."""
    blocks = [block for _, block in iter_part_distances(probe, gallery, **options)]  # type: ignore[arg-type]
    if not blocks:
        return np.zeros((0, len(gallery)))
    return np.concatenate(blocks, axis=0)


# ---------------------------------------------------------------------------------------------
# Ranking


@dataclass(frozen=True)
class RankedProbes:
    """Per-probe retrieval numbers of one ranking (arrays over probes)."""

    first_match: np.ndarray  # [n] int: 1-based rank of the first true match, 0 = none
    n_matches: np.ndarray  # [n] int: true matches among the allowed gallery items
    average_precision: np.ndarray  # [n] float, NaN where n_matches == 0
    inverse_negative_penalty: np.ndarray  # [n] float, NaN where n_matches == 0


def rank_probes(
    distances: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    allowed: np.ndarray | None = None,
) -> RankedProbes:
    """Rank each probe's gallery (stable sort: ties in gallery order) and score its true matches.

    ``distances`` [n, Ng]; labels are integer codes ([n], [Ng]); ``allowed`` [n, Ng] bool removes
    gallery items from a probe's ranking (they are sorted last and never count as matches).
    """
    distances = np.asarray(distances, dtype=np.float64)
    n, n_gallery = distances.shape
    if n_gallery == 0:  # an empty gallery (e.g. a view without gallery sequences): all misses
        nothing = np.zeros(n, dtype=np.int64)
        return RankedProbes(nothing, nothing.copy(), np.full(n, np.nan), np.full(n, np.nan))
    if allowed is not None:
        distances = np.where(allowed, distances, np.inf)
    order = np.argsort(distances, axis=1, kind="stable")
    matches = np.asarray(gallery_labels)[order] == np.asarray(probe_labels)[:, None]
    if allowed is not None:
        matches &= np.take_along_axis(allowed, order, axis=1)
    n_matches = matches.sum(axis=1)
    found = n_matches > 0
    first = np.where(found, matches.argmax(axis=1) + 1, 0)
    positions = np.arange(1, n_gallery + 1, dtype=np.float64)
    precision_at_hits = np.where(matches, np.cumsum(matches, axis=1) / positions, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(found, precision_at_hits.sum(axis=1) / n_matches, np.nan)
        last = n_gallery - matches[:, ::-1].argmax(axis=1)  # 1-based position of the last match
        inp = np.where(found, n_matches / last, np.nan)
    return RankedProbes(first, n_matches, ap, inp)


# ---------------------------------------------------------------------------------------------
# Protocols


@dataclass(frozen=True)
class Protocol:
    """How one benchmark chooses gallery, probes, groups and exclusions (see the module docstring).

    ``gallery``: ``"role"`` (``role == "gallery"``) or ``"condition_contains:<text>"``.
    ``probes``: ``"role"`` (``role == "probe"``) or ``"rest"`` (every non-gallery row).
    ``conditions``: group name → condition substrings (a probe joins every group with a matching
    substring); ``None`` = an ``Overall`` group with every probe, plus one group per value of
    ``group_by`` when set. ``single_view_gallery``: one gallery view at a time (SUSTech1K), where
    ``same_view="exclude"`` drops the v2 = v1 cells (``de_diag``); otherwise ``"exclude"`` removes
    gallery items with the probe's view and ``"exclude_same_id"`` only those that are also its
    identity.
    """

    name: str
    gallery: str = "role"
    probes: str = "role"
    conditions: Mapping[str, tuple[str, ...]] | None = None
    group_by: str | None = None
    single_view_gallery: bool = False
    same_view: str = "keep"
    ranks: tuple[int, ...] = (1, 5)
    no_match: str = "skip"
    with_map: bool = True
    metric: str = "euc"
    label: str = "subject"

    def __post_init__(self) -> None:
        if self.same_view not in SAME_VIEW_RULES:
            raise ValueError(
                f"protocol {self.name}: same_view must be one of {SAME_VIEW_RULES}, got {self.same_view!r}"
            )
        if self.no_match not in NO_MATCH_RULES:
            raise ValueError(
                f"protocol {self.name}: no_match must be one of {NO_MATCH_RULES}, got {self.no_match!r}"
            )
        if self.metric not in METRICS:
            raise ValueError(f"protocol {self.name}: metric must be one of {METRICS}, got {self.metric!r}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"protocol {self.name}: ranks must be positive integers, got {self.ranks}")
        if self.gallery != "role" and not self.gallery.startswith("condition_contains:"):
            raise ValueError(f"protocol {self.name}: gallery must be 'role' or 'condition_contains:<text>'")
        if self.probes not in ("role", "rest"):
            raise ValueError(f"protocol {self.name}: probes must be 'role' or 'rest', got {self.probes!r}")
        if self.single_view_gallery and (
            self.same_view == "exclude_same_id" or self.no_match != "miss" or self.with_map
        ):
            raise ValueError(
                f"protocol {self.name}: a single-view gallery (SUSTech1K) reports Rank-k only, counts probes "
                "without a match as misses and supports same_view 'keep' or 'exclude'"
            )


SUSTECH1K_CONDITIONS: dict[str, tuple[str, ...]] = {
    "Normal": ("01-nm",),
    "Bag": ("bg",),
    "Clothing": ("cl",),
    "Carrying": ("cr",),
    "Umbrella": ("ub",),  # OpenGait logs it as "Umberalla"
    "Uniform": ("uf",),
    "Occlusion": ("oc",),
    "Night": ("nt",),
    OVERALL: ("01", "02", "03", "04"),
}

PROTOCOLS: dict[str, Protocol] = {
    "sustech1k": Protocol(
        name="sustech1k",
        gallery="condition_contains:00-nm",
        probes="rest",
        conditions=SUSTECH1K_CONDITIONS,
        single_view_gallery=True,
        same_view="exclude",
        ranks=(1, 2, 3, 4, 5),
        no_match="miss",
        with_map=False,
    ),
    "ccgr_mini": Protocol(name="ccgr_mini", gallery="role", probes="rest", ranks=(1, 5, 10), no_match="skip"),
    "generic": Protocol(name="generic", gallery="role", probes="role", group_by="condition", ranks=(1, 5)),
}


def get_protocol(name: str, **overrides: object) -> Protocol:
    """A preset from :data:`PROTOCOLS`, optionally with fields replaced (e.g. ``metric="cos"``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown retrieval protocol {name!r}; known: {sorted(PROTOCOLS)}")
    from dataclasses import replace

    return replace(PROTOCOLS[name], **overrides)  # type: ignore[arg-type]


@dataclass
class RetrievalResult:
    """``summary``: protocol, group, metric, value (%), probes, no_match (one row per number).
    ``per_probe``: one row per probe (and gallery view, for single-view galleries).
    ``per_view``: single-view galleries only: group, probe_view, gallery_view, rank, accuracy, probes."""

    summary: pl.DataFrame
    per_probe: pl.DataFrame
    per_view: pl.DataFrame | None = None
    dropped: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Tables → arrays


def embedding_array(table: pl.DataFrame) -> np.ndarray:
    """The ``embedding`` list column of an embeddings table as [N, C, P] float64.

    The stored vector is the row-major flattening of the [C, P] embedding (``channels``, ``parts``
    columns give C and P).
    """
    for column in ("embedding", "parts", "channels"):
        if column not in table.columns:
            raise ValueError(f"embeddings table has no '{column}' column")
    if table.height == 0:
        return np.zeros((0, 0, 0))
    parts = table["parts"].unique().to_list()
    channels = table["channels"].unique().to_list()
    if len(parts) != 1 or len(channels) != 1:
        raise ValueError(f"embeddings mix shapes: parts {parts}, channels {channels}")
    column = table["embedding"]
    if column.null_count():
        raise ValueError("embeddings table: 'embedding' is null in rows without an error")
    # Through the flat values (explode): a Python list per row would cost seconds for large tables; and
    # through polars, not Arrow's to_numpy, which imports pandas (~0.2 s per job).
    flat = np.asarray(column.explode().to_numpy(), dtype=np.float64)
    size = int(channels[0]) * int(parts[0])
    if flat.size != table.height * size:
        raise ValueError(f"embeddings table: 'embedding' lengths differ from channels x parts = {size}")
    return flat.reshape(table.height, int(channels[0]), int(parts[0]))


def usable_rows(table: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows without an error and with a finite embedding, plus sequence_id → why each other row was dropped."""
    dropped: dict[str, str] = {}
    if "error" in table.columns:
        for sid, error in (
            table.filter(pl.col("error").is_not_null()).select("sequence_id", "error").iter_rows()
        ):
            dropped[sid] = error
        table = table.filter(pl.col("error").is_null())
    if table.height:
        emb = embedding_array(table)
        finite = np.isfinite(emb.reshape(table.height, -1)).all(axis=1)
        for sid in table.filter(pl.Series(~finite))["sequence_id"].to_list():
            dropped[sid] = "non-finite embedding"
        table = table.filter(pl.Series(finite))
    return table, dropped


def _encode(labels: Sequence[object], index: Mapping[str, int], missing: int) -> np.ndarray:
    """Integer codes of ``labels`` in ``index``; None gets ``missing`` (probe and gallery use different
    negative values, so a None never matches anything)."""
    return np.array([index[str(v)] if v is not None else missing for v in labels], dtype=np.int64)


def _code_index(*label_lists: Sequence[object]) -> dict[str, int]:
    values = sorted({str(v) for labels in label_lists for v in labels if v is not None})
    return {v: i for i, v in enumerate(values)}


def _codes(probe_labels: Sequence[object], gallery_labels: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Shared integer codes for a probe and a gallery label list."""
    index = _code_index(probe_labels, gallery_labels)
    return _encode(probe_labels, index, -1), _encode(gallery_labels, index, -2)


def _select(table: pl.DataFrame, protocol: Protocol) -> tuple[pl.DataFrame, pl.DataFrame]:
    for column in ("subject", "condition", "view", "role", protocol.label):
        if column not in table.columns:
            raise ValueError(f"protocol {protocol.name}: table has no '{column}' column")
    if protocol.gallery == "role":
        is_gallery = pl.col("role") == "gallery"
    else:
        is_gallery = pl.col("condition").str.contains(protocol.gallery.split(":", 1)[1], literal=True)
    table = table.filter(pl.col("role") != "train")
    gallery = table.filter(is_gallery)
    probes = (
        table.filter(~is_gallery) if protocol.probes == "rest" else table.filter(pl.col("role") == "probe")
    )
    return gallery, probes


def _groups(probes: pl.DataFrame, protocol: Protocol) -> dict[str, np.ndarray]:
    """Group name → bool mask over probes."""
    conditions = probes["condition"].to_list()
    if protocol.conditions is not None:
        return {
            name: np.array([any(s in c for s in subs) for c in conditions], dtype=bool)
            for name, subs in protocol.conditions.items()
        }
    groups = {OVERALL: np.ones(len(conditions), dtype=bool)}
    if protocol.group_by is not None:
        values = probes[protocol.group_by].cast(pl.Utf8).to_list()
        for value in sorted(set(values)):
            groups[f"{protocol.group_by}={value}"] = np.array([v == value for v in values], dtype=bool)
    return groups


def _allowed(
    probe_views: np.ndarray,
    gallery_views: np.ndarray,
    probe_codes: np.ndarray,
    gallery_codes: np.ndarray,
    rule: str,
) -> np.ndarray | None:
    if rule == "keep":
        return None
    same_view = probe_views[:, None] == gallery_views[None, :]
    if rule == "exclude":
        return ~same_view
    return ~(same_view & (probe_codes[:, None] == gallery_codes[None, :]))


# ---------------------------------------------------------------------------------------------
# Summaries


def _summary_rows(
    protocol: str,
    group: str,
    first: np.ndarray,
    ap: np.ndarray,
    inp: np.ndarray,
    ranks: Sequence[int],
    no_match: str,
    with_map: bool,
) -> list[dict]:
    found = first > 0
    keep = found if no_match == "skip" else np.ones(len(first), dtype=bool)
    n_used, n_none = int(keep.sum()), int((~found).sum())

    def mean(values: np.ndarray) -> float:
        return float(100.0 * values[keep].mean()) if n_used else float("nan")

    rows = [{"metric": f"Rank-{k}", "value": mean(found & (first <= k))} for k in ranks]
    if with_map:
        rows.append({"metric": "mAP", "value": mean(np.nan_to_num(ap, nan=0.0))})
        rows.append({"metric": "mINP", "value": mean(np.nan_to_num(inp, nan=0.0))})
    return [{"protocol": protocol, "group": group, **r, "probes": n_used, "no_match": n_none} for r in rows]


SUMMARY_SCHEMA = {
    "protocol": pl.Utf8,
    "group": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,
    "probes": pl.Int64,
    "no_match": pl.Int64,
}


# ---------------------------------------------------------------------------------------------
# Evaluation


def _rank_all(
    probe_emb: np.ndarray,
    gallery_emb: np.ndarray,
    probe_codes: Mapping[str, np.ndarray],
    gallery_codes: np.ndarray,
    probe_views: np.ndarray,
    gallery_views: np.ndarray,
    *,
    metric: str,
    same_view: str,
    column_sets: Mapping[str, np.ndarray | slice] | None = None,
    **distance_options: object,
) -> dict[tuple[str, str], RankedProbes]:
    """Rank every probe once per (target, gallery subset); distances are computed once, in chunks.

    ``probe_codes``: target name → probe label codes; ``column_sets``: gallery subset name → column
    indices (``None`` = the whole gallery as subset ``""``).
    """
    # The whole gallery as a slice: a view of each distance block, not a copy.
    column_sets = column_sets if column_sets is not None else {"": slice(None)}
    pieces: dict[tuple[str, str], list[RankedProbes]] = {}
    for start, dist in iter_part_distances(probe_emb, gallery_emb, metric=metric, **distance_options):  # type: ignore[arg-type]
        stop = start + len(dist)
        for subset, columns in column_sets.items():
            sub = dist[:, columns]
            for target, codes in probe_codes.items():
                allowed = _allowed(
                    probe_views[start:stop],
                    gallery_views[columns],
                    codes[start:stop],
                    gallery_codes[columns],
                    same_view,
                )
                ranked = rank_probes(sub, codes[start:stop], gallery_codes[columns], allowed)
                pieces.setdefault((target, subset), []).append(ranked)
    if not pieces:  # no probes: empty results with the right keys
        empty = RankedProbes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        return {(t, s): empty for t in probe_codes for s in column_sets}
    return {
        key: RankedProbes(
            *(np.concatenate([getattr(r, f) for r in parts]) for f in RankedProbes.__dataclass_fields__)
        )
        for key, parts in pieces.items()
    }


def _per_probe_frame(probes: pl.DataFrame, ranked: RankedProbes, **extra: object) -> pl.DataFrame:
    return probes.select("sequence_id", "subject", "condition", "view").with_columns(
        *(pl.lit(v).alias(k) for k, v in extra.items()),
        pl.Series("first_match", ranked.first_match, dtype=pl.Int64),
        pl.Series("n_matches", ranked.n_matches, dtype=pl.Int64),
        pl.Series("average_precision", ranked.average_precision, dtype=pl.Float64),
        pl.Series("inverse_negative_penalty", ranked.inverse_negative_penalty, dtype=pl.Float64),
    )


def evaluate(
    table: pl.DataFrame,
    protocol: Protocol | str,
    **distance_options: object,
) -> RetrievalResult:
    """Evaluate an embeddings table (one source's test set) under ``protocol``.

    ``table`` has the columns of the ``embeddings`` contract (sequence_id, subject, condition, view,
    role, embedding, parts, channels, error). Rows with an error or a non-finite embedding are never
    ranked (listed in ``dropped``). ``distance_options``: backend, device, dtype, chunk_rows.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    table, dropped = usable_rows(table)
    gallery, probes = _select(table, protocol)
    if gallery.height == 0:
        raise ValueError(f"protocol {protocol.name}: no gallery sequence (gallery rule {protocol.gallery!r})")
    probe_codes, gallery_codes = _codes(probes[protocol.label].to_list(), gallery[protocol.label].to_list())
    probe_views = np.array(probes["view"].cast(pl.Utf8).to_list(), dtype=object)
    gallery_views = np.array(gallery["view"].cast(pl.Utf8).to_list(), dtype=object)
    groups = _groups(probes, protocol)
    if protocol.single_view_gallery:
        return _evaluate_single_view(
            protocol,
            probes,
            gallery,
            probe_codes,
            gallery_codes,
            probe_views,
            gallery_views,
            groups,
            sorted(set(probe_views.tolist()) | set(gallery_views.tolist())),
            dropped,
            distance_options,
        )
    ranked = _rank_all(
        embedding_array(probes) if probes.height else np.zeros((0, *embedding_array(gallery).shape[1:])),
        embedding_array(gallery),
        {"subject": probe_codes},
        gallery_codes,
        probe_views,
        gallery_views,
        metric=protocol.metric,
        same_view=protocol.same_view,
        **distance_options,
    )[("subject", "")]
    rows = []
    for name, mask in groups.items():
        rows += _summary_rows(
            protocol.name,
            name,
            ranked.first_match[mask],
            ranked.average_precision[mask],
            ranked.inverse_negative_penalty[mask],
            protocol.ranks,
            protocol.no_match,
            protocol.with_map,
        )
    return RetrievalResult(
        pl.DataFrame(rows, schema=SUMMARY_SCHEMA), _per_probe_frame(probes, ranked), None, dropped
    )


def _evaluate_single_view(
    protocol: Protocol,
    probes: pl.DataFrame,
    gallery: pl.DataFrame,
    probe_codes: np.ndarray,
    gallery_codes: np.ndarray,
    probe_views: np.ndarray,
    gallery_views: np.ndarray,
    groups: Mapping[str, np.ndarray],
    views: list[str],
    dropped: dict[str, str],
    distance_options: Mapping[str, object],
) -> RetrievalResult:
    """SUSTech1K: acc(v1, v2) with a gallery of view v2 only, then the (optionally de_diag) view means."""
    column_sets = {v: np.flatnonzero(gallery_views == v) for v in views}
    emb_gallery = embedding_array(gallery)
    emb_probe = embedding_array(probes) if probes.height else np.zeros((0, *emb_gallery.shape[1:]))
    ranked = _rank_all(
        emb_probe,
        emb_gallery,
        {"subject": probe_codes},
        gallery_codes,
        probe_views,
        gallery_views,
        metric=protocol.metric,
        same_view="keep",
        column_sets=column_sets,
        **distance_options,
    )
    # Probes whose identity has no gallery sequence in any view (misses everywhere), for the record.
    no_gallery_id = sum(ranked[("subject", v)].n_matches for v in views) == 0
    view_rows, summary, per_probe = [], [], []
    for v2 in views:
        per_probe.append(_per_probe_frame(probes, ranked[("subject", v2)], gallery_view=v2))
    for name, mask in groups.items():
        acc = np.full((len(views), len(views), len(protocol.ranks)), np.nan)
        for i, v1 in enumerate(views):
            in_cell = mask & (probe_views == v1)
            if not in_cell.any():
                continue  # no probe of this group in view v1: left out of the group's mean
            for j, v2 in enumerate(views):
                first = ranked[("subject", v2)].first_match[in_cell]
                for r, k in enumerate(protocol.ranks):
                    acc[i, j, r] = 100.0 * np.mean((first > 0) & (first <= k))
                    view_rows.append(
                        {
                            "group": name,
                            "probe_view": v1,
                            "gallery_view": v2,
                            "rank": k,
                            "accuracy": acc[i, j, r],
                            "probes": int(in_cell.sum()),
                        }
                    )
        summary += _view_means(protocol, name, acc, int(mask.sum()), int((no_gallery_id & mask).sum()))
    per_view = pl.DataFrame(
        view_rows,
        schema={
            "group": pl.Utf8,
            "probe_view": pl.Utf8,
            "gallery_view": pl.Utf8,
            "rank": pl.Int64,
            "accuracy": pl.Float64,
            "probes": pl.Int64,
        },
    )
    return RetrievalResult(
        pl.DataFrame(summary, schema=SUMMARY_SCHEMA), pl.concat(per_probe), per_view, dropped
    )


def _view_means(protocol: Protocol, group: str, acc: np.ndarray, n_probes: int, n_none: int) -> list[dict]:
    """Rk = mean over probe views v1 (with probes) of the mean over gallery views (v2 ≠ v1 with de_diag)."""
    n_views = acc.shape[0]
    rows = []
    for r, k in enumerate(protocol.ranks):
        cell = acc[:, :, r]
        if protocol.same_view == "exclude":
            off_diag = ~np.eye(n_views, dtype=bool)
            per_v1 = np.array(
                [cell[i, off_diag[i]].mean() if n_views > 1 else np.nan for i in range(n_views)]
            )
        else:
            per_v1 = cell.mean(axis=1)
        present = ~np.isnan(per_v1)
        value = float(per_v1[present].mean()) if present.any() else float("nan")
        rows.append(
            {
                "protocol": protocol.name,
                "group": group,
                "metric": f"Rank-{k}",
                "value": value,
                "probes": n_probes,
                "no_match": n_none,
            }
        )
    return rows


def evaluate_generated(
    probes: pl.DataFrame,
    gallery: pl.DataFrame,
    *,
    targets: Mapping[str, str],
    metric: str = "euc",
    ranks: Sequence[int] = (1, 5),
    same_view: str = "keep",
    no_match: str = "miss",
    name: str = "generated",
    **distance_options: object,
) -> RetrievalResult:
    """Generated probes against a real gallery, scored once per "true identity" column.

    ``targets``: result group → probe column holding the identity that counts as correct, e.g.
    ``{"driving": "driving_subject"}`` (Task 1) or ``{"driving": "driving_subject", "reference":
    "reference_subject"}`` (Task 2). The gallery's identity is its ``subject`` column. Every probe row
    of ``probes`` is used (whatever its role); ``gallery`` rows with role ``gallery`` are the gallery.
    """
    if not targets:
        raise ValueError("evaluate_generated: targets must name at least one identity column")
    if same_view not in SAME_VIEW_RULES or no_match not in NO_MATCH_RULES:
        raise ValueError(f"evaluate_generated: same_view in {SAME_VIEW_RULES}, no_match in {NO_MATCH_RULES}")
    for column in targets.values():
        if column not in probes.columns:
            raise ValueError(f"evaluate_generated: probe table has no identity column '{column}'")
    probes, dropped = usable_rows(probes)
    gallery, dropped_gallery = usable_rows(gallery)
    dropped.update(dropped_gallery)
    gallery = gallery.filter(pl.col("role") == "gallery")
    if gallery.height == 0:
        raise ValueError("evaluate_generated: the gallery table has no usable row with role 'gallery'")
    gallery_labels = gallery["subject"].cast(pl.Utf8).to_list()
    probe_labels = {t: probes[c].cast(pl.Utf8).to_list() for t, c in targets.items()}
    index = _code_index(gallery_labels, *probe_labels.values())  # one table: gallery codes are shared
    gallery_codes = _encode(gallery_labels, index, -2)
    target_codes = {t: _encode(labels, index, -1) for t, labels in probe_labels.items()}
    probe_views = np.array(probes["view"].cast(pl.Utf8).to_list(), dtype=object)
    gallery_views = np.array(gallery["view"].cast(pl.Utf8).to_list(), dtype=object)
    emb_gallery = embedding_array(gallery)
    emb_probe = embedding_array(probes) if probes.height else np.zeros((0, *emb_gallery.shape[1:]))
    ranked = _rank_all(
        emb_probe,
        emb_gallery,
        target_codes,
        gallery_codes,
        probe_views,
        gallery_views,
        metric=metric,
        same_view=same_view,
        **distance_options,
    )
    rows, per_probe = [], []
    for target in targets:
        r = ranked[(target, "")]
        rows += _summary_rows(
            name,
            target,
            r.first_match,
            r.average_precision,
            r.inverse_negative_penalty,
            tuple(ranks),
            no_match,
            True,
        )
        per_probe.append(_per_probe_frame(probes, r, target=target))
    return RetrievalResult(pl.DataFrame(rows, schema=SUMMARY_SCHEMA), pl.concat(per_probe), None, dropped)


def attributes_to_columns(table: pl.DataFrame, manifest: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Add columns ``keys`` taken from the manifest's ``attributes`` JSON (joined on sequence_id).

    Used to give generated probes their ``driving_subject`` / ``reference_subject`` columns. A key
    missing from a row's attributes becomes null (such a probe then never matches).
    """
    if "attributes" not in manifest.columns:
        raise ValueError("manifest has no 'attributes' column")
    values: dict[str, list] = {k: [] for k in keys}
    for text in manifest["attributes"].to_list():
        attrs = json.loads(text) if text else {}
        for k in keys:
            value = attrs.get(k)
            values[k].append(None if value is None else str(value))
    extra = pl.DataFrame(
        {"sequence_id": manifest["sequence_id"], **values}, schema_overrides=dict.fromkeys(keys, pl.Utf8)
    )
    return table.join(extra, on="sequence_id", how="left")


# ---------------------------------------------------------------------------------------------
# Stage functions: real-probe protocol evaluation and generated-probe evaluation


def read_embedding_files(paths: Sequence[str]) -> pl.DataFrame:
    """Several ``embeddings`` files (one recogniser) as one polars table."""
    from pipeline.contracts import read_table
    from pipeline.evaluation.embed import EMBEDDINGS

    frames = [pl.from_arrow(read_table(p, EMBEDDINGS)) for p in paths]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def write_embedding_frame(frame: pl.DataFrame, out: str) -> None:
    from pipeline.contracts import write_table
    from pipeline.evaluation.embed import EMBEDDINGS

    write_table(frame.to_arrow(), out, EMBEDDINGS)


def protocol_rows(
    test: pl.DataFrame,
    *,
    protocol: str,
    metric: str,
    dataset: str,
    recogniser: str,
    with_probes: bool = False,
) -> list[dict]:
    """``real_retrieval`` rows (dataset, recogniser, protocol, condition, metric, value in %) of a test
    set's embeddings under ``protocol``; ``generic`` also reports every probe condition. No usable
    gallery sequence: no rows (logged). The real-probe baseline and the GaitCrafter augmentation
    experiment both score their test sets here. ``with_probes`` adds ``probes`` (how many probes a
    value averages)."""
    if test.filter((pl.col("role") == "gallery") & pl.col("error").is_null()).height == 0:
        log.warning("%s/%s: no usable gallery sequence: no retrieval numbers", dataset, recogniser)
        return []
    overrides: dict[str, object] = {"metric": metric}
    if protocol == "generic":
        overrides["group_by"] = "condition"  # Overall plus one group per probe condition
    result = evaluate(test, get_protocol(protocol, **overrides))
    return [
        {
            "dataset": dataset,
            "recogniser": recogniser,
            "protocol": r["protocol"],
            "condition": r["group"],
            "metric": r["metric"],
            "value": None if r["value"] is None else float(r["value"]),
            **({"probes": int(r["probes"])} if with_probes else {}),
        }
        for r in result.summary.to_dicts()
    ]


def run_real_retrieval(
    *,
    embeddings: Mapping[str, Sequence[str]],
    protocol: str,
    metric: str,
    dataset: str,
    out: str,
    gallery_out: Mapping[str, str],
    manifest: str | None = None,
    twins_out: str | None = None,
) -> None:
    """Protocol metrics of the real probes per recogniser (contract ``real_retrieval``), and each
    recogniser's test-set embeddings in one file: the gallery generated probes are ranked against.
    With ``twins_out``, also the twin analysis (contract ``twin_analysis``) of the world's twins."""
    from pipeline.contracts import MANIFEST, read_table, write_table

    manifest_rows = read_table(manifest, MANIFEST).to_pylist() if manifest else []
    twins: list[dict] = []
    rows = []
    for recogniser, paths in embeddings.items():
        table = read_embedding_files(paths)
        test = table.filter(pl.col("role") != "train")
        write_embedding_frame(test, gallery_out[recogniser])
        twins += twin_rows(test, manifest_rows, dataset=dataset, recogniser=recogniser, metric=metric)
        scored = protocol_rows(test, protocol=protocol, metric=metric, dataset=dataset, recogniser=recogniser)
        rows += scored or [unscored_row(test, protocol=protocol, dataset=dataset, recogniser=recogniser)]
    write_table(rows, out, REAL_RETRIEVAL)
    if twins_out:
        write_table(twins, twins_out, twin_contract())


def unscored_row(test: pl.DataFrame, *, protocol: str, dataset: str, recogniser: str) -> dict:
    """The ``real_retrieval`` row of a recogniser with no usable gallery: value null, and why (the most
    common error of its test rows: e.g. the recogniser's modality is missing on this dataset)."""
    errors = [e for e in test.get_column("error").to_list() if e] if test.height else []
    if errors:
        reason, count = Counter(errors).most_common(1)[0]
        if count == test.height:  # one reason for every test sequence (e.g. the recogniser was not trained)
            note = f"not scored: {reason}"
        else:
            note = (
                f"not scored: no usable gallery sequence ({len(errors)} of {test.height} test sequences"
                f" failed; {count} with: {reason})"
            )
    else:
        note = "not scored: the dataset has no test sequence (gallery and probes)"
    return {
        "dataset": dataset,
        "recogniser": recogniser,
        "protocol": protocol,
        "condition": OVERALL,
        "metric": "Rank-1",
        "value": None,
        "note": note,
    }


def probe_result_rows(
    generated: list[dict], embeddings: pl.DataFrame, gallery: pl.DataFrame, *, recogniser: str, metric: str
) -> list[dict]:
    """``probe_results`` rows of one recogniser: the rank and AP of the driving identity (and, for
    identity transfer, of the reference identity) for every generated video."""
    by_id = {row["sequence_id"]: row for row in generated}
    probes = embeddings.with_columns(
        pl.col("sequence_id")
        .replace_strict(
            {sid: json.loads(r["attributes"] or "{}").get("driving_subject") for sid, r in by_id.items()},
            default=None,
        )
        .alias("driving_subject"),
        pl.col("sequence_id")
        .replace_strict(
            {sid: json.loads(r["attributes"] or "{}").get("reference_subject") for sid, r in by_id.items()},
            default=None,
        )
        .alias("reference_subject"),
    )
    results: dict[tuple[str, str], dict] = {}
    usable = probes.filter(pl.col("error").is_null())
    if usable.height:
        ranked = evaluate_generated(
            usable,
            gallery,
            targets={"driving": "driving_subject", "reference": "reference_subject"},
            metric=metric,
        )
        for r in ranked.per_probe.to_dicts():
            results[(r["sequence_id"], r["target"])] = r
    rows = []
    for row in generated:
        attributes = json.loads(row["attributes"] or "{}")
        sid = row["sequence_id"]
        emb = probes.filter(pl.col("sequence_id") == sid)
        error = row.get("error") or (emb["error"][0] if emb.height else "no embedding (not perceived)")
        record = {
            "dataset": row["dataset"],
            "model": attributes.get("model", ""),
            "task": attributes.get("task", ""),
            "scenario": attributes.get("scenario", ""),
            "job_id": sid,
            "recogniser": recogniser,
            "driving_subject": attributes.get("driving_subject"),
            "reference_subject": attributes.get("reference_subject"),
            "driving_rank": None,
            "reference_rank": None,
            "driving_ap": None,
            "reference_ap": None,
            "error": error,
        }
        for target in ("driving", "reference"):
            hit = results.get((sid, target))
            if hit is not None:
                record[f"{target}_rank"] = int(hit["first_match"]) or None
                ap = hit["average_precision"]
                record[f"{target}_ap"] = None if ap is None or not np.isfinite(ap) else float(ap)
        rows.append(record)
    return rows


def run_generated_evaluation(
    *,
    generated_manifest: str,
    stores: Mapping[str, str],
    recognisers: Mapping[str, str],
    galleries: Mapping[str, str],
    metric: str,
    embeddings_dir: str,
    out: str,
    threads: int | None = None,
) -> None:
    """Embed one generation shard's videos with every recogniser and rank them against the real
    gallery (contract ``probe_results``); the probes' embeddings are kept next to the results."""
    from pathlib import Path

    from pipeline.contracts import MANIFEST, read_table, write_table
    from pipeline.evaluation.embed import run_embed_stage

    generated = read_table(generated_manifest, MANIFEST).to_pylist()
    usable = [r for r in generated if not r.get("error")]
    rows: list[dict] = []
    for recogniser, checkpoint in recognisers.items():
        path = str(Path(embeddings_dir) / f"{recogniser.replace('+', 'p')}.parquet")
        run_embed_stage(
            usable, out=path, recogniser=recogniser, checkpoint=checkpoint, stores=stores, threads=threads
        )
        rows += probe_result_rows(
            generated,
            read_embedding_files([path]),
            read_embedding_files([galleries[recogniser]]),
            recogniser=recogniser,
            metric=metric,
        )
    write_table(rows, out, PROBE_RESULTS)


# ---------------------------------------------------------------------------------------------
# The world's twins: does a recogniser follow motion or appearance? (ground truth for Task 2)


def twin_contract():
    import pyarrow as pa

    from pipeline.contracts import CONTRACTS, Contract, register

    if "twin_analysis" in CONTRACTS:
        return CONTRACTS["twin_analysis"]
    return register(
        Contract(
            name="twin_analysis",
            schema=pa.schema(
                [
                    pa.field("dataset", pa.string(), nullable=False),
                    pa.field("recogniser", pa.string(), nullable=False),
                    pa.field("twin_kind", pa.string(), nullable=False),
                    pa.field("probes", pa.int32(), nullable=False),
                    pa.field("own_identity_pct", pa.float64()),
                    pa.field("follows", pa.string()),
                ],
                metadata={
                    "doc": "twin pairs: how often a probe's nearest gallery identity of the pair is its own"
                },
            ),
            allowed_values={"twin_kind": ("motion_only", "appearance_only")},
            unique_key=("dataset", "recogniser", "twin_kind"),
        )
    )


def twin_rows(
    test: pl.DataFrame, manifest_rows: Sequence[Mapping], *, dataset: str, recogniser: str, metric: str
) -> list[dict]:
    """For every probe of a twin pair (A, A′ sharing all factors but one), is its nearest gallery
    sequence among A ∪ A′ its own identity? Motion-only twins look identical, so a recogniser that
    tells them apart follows motion; appearance-only twins walk identically, so one that tells them
    apart follows appearance. 50 % is chance."""
    pairs: dict[str, tuple[str, str]] = {}
    for row in manifest_rows:
        attributes = json.loads(row.get("attributes") or "{}")
        if attributes.get("twin_of"):
            pairs[row["subject"]] = (attributes["twin_of"], attributes["twin_kind"])
    usable, _ = usable_rows(test)
    gallery = usable.filter(pl.col("role") == "gallery")
    probes = usable.filter(pl.col("role") == "probe")
    hits: dict[str, list[bool]] = {"motion_only": [], "appearance_only": []}
    for twin, (base, kind) in pairs.items():
        pair_gallery = gallery.filter(pl.col("subject").is_in([twin, base]))
        pair_probes = probes.filter(pl.col("subject").is_in([twin, base]))
        if pair_gallery.height == 0 or pair_probes.height == 0 or pair_gallery["subject"].n_unique() < 2:
            continue
        distances = part_distances(embedding_array(pair_probes), embedding_array(pair_gallery), metric=metric)
        nearest = np.argmin(distances, axis=1)
        labels = np.array(pair_gallery["subject"].to_list())
        hits[kind] += list(labels[nearest] == np.array(pair_probes["subject"].to_list()))
    rows = []
    for kind, values in hits.items():
        if not values:
            continue
        pct = 100.0 * float(np.mean(values))
        trait = "motion" if kind == "motion_only" else "appearance"
        follows = (
            f"tells {kind.replace('_only', '')}-only twins apart: uses {trait}"
            if pct >= 75
            else (
                f"confuses {kind.replace('_only', '')}-only twins: ignores {trait}" if pct <= 60 else "partly"
            )
        )
        rows.append({"dataset": dataset, "recogniser": recogniser, "twin_kind": kind, "probes": len(values),
                     "own_identity_pct": pct, "follows": follows})  # fmt: skip
    return rows
