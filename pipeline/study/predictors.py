"""Spearman ρ with identity-bootstrap CIs, and the paired bootstrap of a difference of two |ρ|.

The unit of resampling is the identity (the driving subject), as everywhere in the study
(:func:`pipeline.study.aggregate.bootstrap_ci`): one resample draws as many identities as there are,
with replacement, and keeps every video of each drawn identity as often as it was drawn. Such a
resample is the original videos with integer *multiplicities*, so the statistics here take a weight
matrix ``W`` [B, N] (B resamples × N videos) and compute all resamples at once:

* :func:`weighted_spearman` — videos with fixed values and multiplicities: the mid-ranks of a value
  in the multiset (ties get the mean of the ranks they span), then the weighted Pearson correlation of
  the ranks. With W = 1 this is ``scipy.stats.spearmanr``; with integer W it is ``spearmanr`` of the
  data with every video repeated W times (the tests check both).
* :func:`spearman_rows` — cells whose *values* change per resample (cell means over the drawn
  identities) and cells missing from a resample (weight 0).

Intervals are 95 % percentile intervals over the resamples in which ρ is defined.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pearson(rx: np.ndarray, ry: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise weighted Pearson correlation of [B, N] arrays (NaN where a row has no variance)."""
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * rx).sum(axis=1, keepdims=True) / total
        my = (w * ry).sum(axis=1, keepdims=True) / total
        dx, dy = rx - mx, ry - my
        cov = (w * dx * dy).sum(axis=1)
        var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
        rho = cov / np.sqrt(var)
    # a variance of ~0 from rounding (all ranks equal) is no correlation at all
    return np.where(var > 1e-12 * np.maximum(total[:, 0], 1.0) ** 6, rho, np.nan)


def midranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, N] mid-ranks of fixed ``values`` [N] in the multisets given by integer ``weights`` [B, N]."""
    uniq, inverse = np.unique(np.asarray(values, float), return_inverse=True)
    onehot = np.zeros((len(values), len(uniq)))
    onehot[np.arange(len(values)), inverse.reshape(-1)] = 1.0
    per_value = weights @ onehot  # [B, U] how many copies of each distinct value
    before = np.cumsum(per_value, axis=1) - per_value
    return (before + (per_value + 1.0) / 2.0)[:, inverse.reshape(-1)]


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B] Spearman ρ of fixed (x, y) [N] pairs under each row of multiplicities ``weights`` [B, N]."""
    w = np.atleast_2d(np.asarray(weights, float))
    return _pearson(midranks(x, w), midranks(y, w), w)


def spearman_rows(x: np.ndarray, y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[B] Spearman ρ per row of [B, C] values, over the entries where ``present`` [B, C] is true.

    Absent entries are moved above every present one before ranking, so the present ones keep the
    ranks they have among themselves, and get weight 0 in the correlation."""
    present = np.asarray(present, bool)
    rx = rankdata(np.where(present, x, np.inf), axis=1)
    ry = rankdata(np.where(present, y, np.inf), axis=1)
    return _pearson(rx, ry, present.astype(float))


def identity_counts(identities: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes [N], counts [B, G]): each video's identity index and how often each identity is drawn."""
    from pipeline.study.aggregate import _draw_counts

    labels, codes = np.unique(np.asarray(identities).astype(str), return_inverse=True)
    return codes.reshape(-1), _draw_counts(len(labels), n_boot, seed)


def interval(boot: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of the finite resampled values (None when fewer than half are finite)."""
    finite = boot[np.isfinite(boot)]
    if len(finite) < max(2, len(boot) // 2):
        return None, None
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def video_rho_boot(
    x: np.ndarray, y: np.ndarray, codes: np.ndarray, counts: np.ndarray
) -> tuple[float, np.ndarray]:
    """(ρ on all videos, [B] ρ per identity resample) of per-video (x, y)."""
    point = weighted_spearman(x, y, np.ones((1, len(x))))[0]
    return float(point), weighted_spearman(x, y, counts[:, codes])


def cell_rho_boot(
    x: np.ndarray, y: np.ndarray, cells: np.ndarray, codes: np.ndarray, counts: np.ndarray
) -> tuple[float, np.ndarray]:
    """(ρ of the cell means, [B] ρ of the cell means recomputed per identity resample).

    ``cells`` [N] the cell index of each video; a cell none of whose identities was drawn is absent."""
    n_cells, n_ids = int(cells.max()) + 1, counts.shape[1]
    sums_x, sums_y, sizes = (np.zeros((n_cells, n_ids)) for _ in range(3))
    np.add.at(sums_x, (cells, codes), x)
    np.add.at(sums_y, (cells, codes), y)
    np.add.at(sizes, (cells, codes), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_boot = counts @ sizes.T  # [B, C] videos of each cell in each resample
        mean_x, mean_y = (counts @ sums_x.T) / n_boot, (counts @ sums_y.T) / n_boot
        all_x, all_y = sums_x.sum(1) / sizes.sum(1), sums_y.sum(1) / sizes.sum(1)
    point = spearman_rows(all_x[None], all_y[None], np.ones((1, n_cells), bool))[0]
    return float(point), spearman_rows(mean_x, mean_y, n_boot > 0)
