"""OpenGait's two training losses, computed per part (``opengait/modeling/losses/{triplet,ce}.py``).

* :func:`triplet_loss` — batch-all triplet loss on ``embed_1`` [n, c, p] with margin 0.2. For every
  part: the Euclidean distance matrix; every (anchor, positive, negative) triple with
  ``label[a] == label[pos]`` and ``label[a] != label[neg]`` — the anchor itself counts as one of its
  positives (d_ap = 0), as in OpenGait; term = relu(d_ap − d_an + margin); the part's loss is the mean
  over its **non-zero** terms (``AvgNonZeroReducer``; 0 when every term is 0); the loss is the mean over
  parts. OpenGait reshapes the positive/negative masks into fixed-size blocks, which needs the same
  number of positives per anchor (a P×K batch); here the triples are masked instead, which gives the
  same value for P×K batches and stays defined for any batch.
* :func:`cross_entropy_loss` — on the BNNeck cosine logits [n, C, p] × scale 16, label smoothing 0.1,
  the label repeated per part, averaged over the n·p (sequence, part) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

TRIPLET_MARGIN = 0.2
CE_SCALE = 16.0
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class LossValue:
    """A loss and what the training log records about it (plain floats, detached)."""

    loss: Tensor  # scalar, differentiable
    info: dict[str, float]


def _part_distances(x: Tensor) -> Tensor:
    """[p, n, c] → Euclidean distances [p, n, n] from |x|² + |y|² − 2x·y, clamped at 0 (OpenGait's formula).

    The square root of an exact 0 (the anchor with itself) gets gradient 0 instead of inf·0 = NaN.
    """
    sq = (x * x).sum(-1)
    d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * x @ x.transpose(1, 2)).clamp_min(0.0)
    positive = d2 > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, d2, torch.ones_like(d2))), torch.zeros_like(d2)
    )


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = TRIPLET_MARGIN) -> LossValue:
    """Batch-all triplet loss of ``embeddings`` [n, c, p] with integer ``labels`` [n] (see module docstring).

    ``info``: ``triplet`` (the loss), ``triplet_nonzero`` (mean over parts of the fraction of non-zero
    terms, OpenGait's ``loss_num`` as a fraction), ``triplet_ap`` / ``triplet_an`` (mean positive /
    negative distance).
    """
    if embeddings.dim() != 3:
        raise ValueError(f"triplet_loss expects embeddings [n, c, p], got {tuple(embeddings.shape)}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"triplet_loss: labels {tuple(labels.shape)} do not match {embeddings.shape[0]} embeddings"
        )
    x = embeddings.float().permute(2, 0, 1)  # [p, n, c]
    dist = _part_distances(x)  # [p, n, n]
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # [n, n]; the diagonal is a positive pair
    valid = same.unsqueeze(2) & ~same.unsqueeze(1)  # [a, pos, neg]
    terms = F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin)  # [p, a, pos, neg]
    terms = terms * valid  # invalid triples contribute exact zeros, which the reducer ignores
    flat = terms.flatten(1)
    nonzero = (flat != 0).sum(1)  # [p]
    per_part = torch.where(nonzero > 0, flat.sum(1) / nonzero.clamp_min(1), torch.zeros_like(flat[:, 0]))
    loss = per_part.mean()
    n_triples = int(valid.sum())
    with torch.no_grad():
        info = {
            "triplet": float(loss.detach()),
            "triplet_nonzero": float((nonzero.float() / max(n_triples, 1)).mean()),
            "triplet_ap": float(dist[:, same].mean()) if same.any() else float("nan"),
            "triplet_an": float(dist[:, ~same].mean()) if (~same).any() else float("nan"),
        }
    return LossValue(loss, info)


def cross_entropy_loss(
    logits: Tensor, labels: Tensor, scale: float = CE_SCALE, label_smoothing: float = LABEL_SMOOTHING
) -> LossValue:
    """Per-part cross-entropy of ``logits`` [n, C, p] (cosine logits) × ``scale`` against ``labels`` [n].

    ``info``: ``ce`` (the loss) and ``ce_accuracy`` (fraction of (sequence, part) pairs whose arg-max
    logit is the label).
    """
    if logits.dim() != 3:
        raise ValueError(f"cross_entropy_loss expects logits [n, C, p], got {tuple(logits.shape)}")
    n, num_classes, parts = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"cross_entropy_loss: labels {tuple(labels.shape)} do not match {n} logits")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"cross_entropy_loss: labels must lie in [0, {num_classes}), got {labels.tolist()}")
    target = labels.unsqueeze(1).expand(n, parts)  # [n, p]
    loss = F.cross_entropy(logits.float() * scale, target, label_smoothing=label_smoothing)
    with torch.no_grad():
        accuracy = float((logits.argmax(1) == target).float().mean())
    return LossValue(loss, {"ce": float(loss.detach()), "ce_accuracy": accuracy})
