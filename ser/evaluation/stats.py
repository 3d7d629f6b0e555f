"""Bootstrap intervals of WA/UA/F1, the paired bootstrap of two models (WA/UA/F1 or CCC), McNemar.

Resampling is by speaker where speakers are known (a cluster bootstrap): utterances of one speaker
are not independent, so resampling them one by one gives intervals that are too narrow. Every
replicate is a weight per utterance (how often it was drawn), so one confusion matrix per
replicate is a single matrix product. The metrics follow ``EmotionMetrics``: UA is the mean
recall over the classes the labels hold; a class absent from both labels and predictions is left
out of the F1 mean. The CCC of a
replicate is that of its resampled utterances, with the moments ``ConcordanceCorrCoef``
(torchmetrics, ``test/CCC/<dim>``) uses: sample variances (n - 1) and the squared mean difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRICS: tuple[str, ...] = ("WA", "UA", "F1")
# Below this many speakers a cluster bootstrap has few distinct replicates: said with the result.
FEW_CLUSTERS = 10
REPLICATES = 2000
SEED = 0


def scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """WA, UA and macro-F1 of confusion matrices ``(..., C, C)`` (rows true): arrays ``(...)``."""
    confusion = np.asarray(confusion, dtype=np.float64)  # float32 replicates, float64 ratios
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)  # (..., C)
    support = confusion.sum(axis=-1)  # (..., C) true counts
    predicted = confusion.sum(axis=-2)  # (..., C)
    present = (support + predicted) > 0  # torchmetrics leaves tp + fp + fn == 0 classes out
    recall = np.divide(tp, support, out=np.zeros(tp.shape), where=support > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(tp.shape), where=present)
    classes = np.maximum(present.sum(axis=-1), 1)
    labelled = np.maximum((support > 0).sum(axis=-1), 1)  # balanced accuracy: labelled classes
    return {
        "WA": tp.sum(axis=-1) / np.maximum(support.sum(axis=-1), 1),
        "UA": recall.sum(axis=-1) / labelled,
        "F1": (f1 * present).sum(axis=-1) / classes,
    }


def _cells(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C*C) one-hot of each utterance's confusion cell."""
    cells = np.zeros((len(labels), num_classes * num_classes), dtype=np.float32)
    cells[np.arange(len(labels)), labels * num_classes + preds] = 1.0
    return cells


def confusion_of(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows true."""
    return _cells(labels, preds, num_classes).sum(axis=0).reshape(num_classes, num_classes)


def resample_weights(
    groups: Sequence[str] | None, n: int, replicates: int = REPLICATES, seed: int = SEED
) -> np.ndarray:
    """(R, N) draw counts: utterances drawn with replacement, or whole groups (speakers).

    Args:
        groups: each utterance's speaker (cluster), or None to draw utterances one by one.
        n: number of utterances.
        replicates: number of bootstrap replicates.
        seed: the generator's seed (a result is reproducible from its files).
    """
    rng = np.random.default_rng(seed)
    if groups is None or len(set(groups)) < 2:
        draws = rng.integers(0, n, size=(replicates, n))  # (R, N) indices
        return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float32)
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    draws = rng.integers(0, len(names), size=(replicates, len(names)))  # (R, G) cluster indices
    per_group = np.stack([np.bincount(row, minlength=len(names)) for row in draws])  # (R, G)
    # (R, N): an utterance counts as often as its group was drawn
    return per_group[:, index].astype(np.float32)


def replicate_scores(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Each metric over the ``weights`` (R, N) replicates: arrays (R,)."""
    confusion = weights @ _cells(labels, preds, num_classes)  # (R, C*C)
    return scores(confusion.reshape(-1, num_classes, num_classes))


def intervals(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, groups: Sequence[str] | None
) -> dict[str, tuple[float, float]]:
    """95 % percentile bootstrap interval of WA, UA and F1 (by ``groups`` where given)."""
    weights = resample_weights(groups, len(labels))
    values = replicate_scores(labels, preds, num_classes, weights)
    return {name: _percentile_interval(values[name]) for name in METRICS}


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_bootstrap(
    labels: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    num_classes: int,
    groups: Sequence[str] | None,
) -> dict[str, dict[str, float]]:
    """B minus A per metric: the difference, its 95 % interval and a two-sided p-value.

    Both models are scored on the same replicates, so what varies is the test set, not the
    pairing. The p-value is twice the smaller share of replicates on either side of zero (with
    one added to count and total, so it is never 0); identical predictions give p = 1.
    """
    weights = resample_weights(groups, len(labels))
    a = replicate_scores(labels, preds_a, num_classes, weights)
    b = replicate_scores(labels, preds_b, num_classes, weights)
    full_a = scores(confusion_of(labels, preds_a, num_classes))
    full_b = scores(confusion_of(labels, preds_b, num_classes))
    return {name: _difference(full_a[name], full_b[name], b[name] - a[name]) for name in METRICS}


def replicate_concordance(
    targets: np.ndarray, values: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """CCC of each of K dimensions over each of R replicates: (R, K).

    Args:
        targets: true values (N, K).
        values: predicted values (N, K).
        weights: (R, N) draw counts (``resample_weights``; ones for the whole test).
    """
    # Centred on the true means first: CCC ignores a shift of both, the sums lose less precision.
    centre = targets.mean(axis=0)  # (K,)
    x, y = values.astype(np.float64) - centre, targets.astype(np.float64) - centre  # (N, K)
    w = weights.astype(np.float64)  # (R, N)
    count = w.sum(axis=1, keepdims=True)  # (R, 1)
    mean_x, mean_y = (w @ x) / count, (w @ y) / count  # (R, K)
    dof = np.maximum(count - 1, 1)  # (R, 1): sample moments, as torchmetrics
    var_x = (w @ (x * x) - count * mean_x**2) / dof  # (R, K)
    var_y = (w @ (y * y) - count * mean_y**2) / dof  # (R, K)
    covariance = (w @ (x * y) - count * mean_x * mean_y) / dof  # (R, K)
    spread = var_x + var_y + (mean_x - mean_y) ** 2  # (R, K)
    return 2 * covariance / np.maximum(spread, 1e-12)  # (R, K)


def paired_concordance(
    targets: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    dimensions: Sequence[str],
    groups: Sequence[str] | None,
) -> dict[str, dict[str, float]]:
    """B minus A in ``CCC/<dimension>`` and in ``CCC`` (their mean), as ``paired_bootstrap``.

    Args:
        targets: true values (N, K), one column per dimension.
        values_a: model A's predictions (N, K).
        values_b: model B's predictions (N, K).
        dimensions: the name of each column.
        groups: each utterance's speaker, or None to resample utterances one by one.
    """
    weights = resample_weights(groups, len(targets))
    whole = np.ones((1, len(targets)))  # (1, N): the test itself
    a = replicate_concordance(targets, values_a, weights)  # (R, K)
    b = replicate_concordance(targets, values_b, weights)  # (R, K)
    full_a = replicate_concordance(targets, values_a, whole)[0]  # (K,)
    full_b = replicate_concordance(targets, values_b, whole)[0]  # (K,)
    result = {
        f"CCC/{name}": _difference(full_a[k], full_b[k], b[:, k] - a[:, k])
        for k, name in enumerate(dimensions)
    }
    mean_diff = b.mean(axis=1) - a.mean(axis=1)  # (R,)
    result["CCC"] = _difference(full_a.mean(), full_b.mean(), mean_diff)
    return result


def _difference(full_a: float, full_b: float, diff: np.ndarray) -> dict[str, float]:
    """A's and B's figure on the whole test, B - A, its interval and p from replicates ``diff``."""
    below, above = (np.sum(diff <= 0) + 1), (np.sum(diff >= 0) + 1)
    low, high = _percentile_interval(diff)
    return {
        "a": float(full_a),
        "b": float(full_b),
        "diff": float(full_b - full_a),
        "ci95": [low, high],
        "p": float(min(1.0, 2 * min(below, above) / (len(diff) + 1))),
    }


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test: the utterances only A gets right against those only B gets right.

    Under no difference each discordant utterance is a fair coin, so the two-sided p-value is the
    binomial tail of the smaller count, doubled (capped at 1).
    """
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": min(1.0, 2 * tail)}


def fold_interval(values: Sequence[float]) -> tuple[float, float]:
    """95 % t interval of the mean over folds (needs two folds; one gives the value twice)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean
    half = _t975(len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean - half, mean + half


# Student's t, 97.5 % quantile, by degrees of freedom (cv has few folds); 1.96 beyond.
_T975 = dict(
    zip(
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 60),
        (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.179, 2.131,
         2.086, 2.060, 2.042, 2.021, 2.000),
        strict=True,
    )
)  # fmt: skip


def _t975(dof: int) -> float:
    """The largest tabulated dof not above ``dof`` (conservative: a wider interval)."""
    return _T975[max(d for d in _T975 if d <= dof)] if dof <= 60 else 1.96
