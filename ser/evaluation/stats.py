"""Bootstrap intervals of WA/UA/F1, the paired comparison of two models (WA/UA/F1 or CCC),
McNemar.

Resampling is by speaker where speakers are known (a cluster bootstrap): utterances of one speaker
are not independent, so resampling them one by one gives intervals that are too narrow. Every
replicate is a count per unit (speaker, or utterance: how often it was drawn), so what a
replicate sums (its confusion matrix, CCC's moments) is one matrix product with the sums per
unit; the replicates are drawn ``CHUNK`` at a time, never all R x N counts at once (2000 x
100 000 utterances resampled one by one: 1.6 GB). The metrics follow ``EmotionMetrics``: UA is
the mean recall over the classes the labels hold; a class absent from both labels and predictions
is left out of the F1 mean. CCC is Lin's, with population moments (``ser.evaluation.dimensional``).

Two models' difference has its interval from the paired bootstrap and its p-value from a paired
randomization test: under "A and B are equally good" each speaker's predictions could have come
from either model, so the difference is recomputed with A's and B's predictions swapped on every
subset of speakers (all 2^G subsets for up to ``EXACT_GROUPS`` speakers, else ``REPLICATES``
random ones). With few speakers the bootstrap's percentile p-value rejects far too often (3
speakers, two equally good models: 20 % at 0.05); the randomization test cannot: with G
speakers its smallest p is 2 / 2^G (2 speakers: 0.5), so a test of few speakers says it cannot
tell.
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
# Up to this many speakers the randomization test takes every subset (2^12 = 4096 of them).
EXACT_GROUPS = 12
# Replicates drawn and summed at a time (the generator's stream is the same as drawn at once).
CHUNK = 100


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


def confusion_cells(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C*C) one-hot of each utterance's confusion cell."""
    cells = np.zeros((len(labels), num_classes * num_classes), dtype=np.float32)
    cells[np.arange(len(labels)), labels * num_classes + preds] = 1.0
    return cells


def confusion_of(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows true."""
    return confusion_cells(labels, preds, num_classes).sum(axis=0).reshape(num_classes, num_classes)


def replicate_sums(
    values: np.ndarray,
    groups: Sequence[str] | None,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> np.ndarray:
    """Each bootstrap replicate's sum of ``values`` (N, D) over the utterances it drew: (R, D).

    Args:
        values: per utterance (a confusion cell's one-hot, CCC's moments).
        groups: each utterance's speaker (cluster), or None to draw utterances one by one (as
            where all are one speaker's: ``resampling_unit`` says which).
        replicates: number of bootstrap replicates.
        seed: the generator's seed (a result is reproducible from its files).
    """
    index, count = _units(groups, len(values))
    totals = _unit_totals(values, index, count)  # (G, D)
    rng = np.random.default_rng(seed)
    sums = []
    for size in _chunk_sizes(replicates):
        draws = rng.integers(0, count, size=(size, count))  # (r, G)
        # an utterance counts as often as its unit (speaker, or itself) was drawn
        drawn = np.stack([np.bincount(row, minlength=count) for row in draws])  # (r, G)
        sums.append(drawn @ totals)
    return np.concatenate(sums)


def _chunk_sizes(replicates: int) -> list[int]:
    """How many of ``replicates`` are drawn at a time: ``CHUNK``, the rest last."""
    return [min(CHUNK, replicates - start) for start in range(0, replicates, CHUNK)]


def _unit_totals(values: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """(G, D): ``values`` (N, D) summed over each of ``count`` units (``index``: each
    utterance's)."""
    totals = np.zeros((count, values.shape[1]))
    np.add.at(totals, index, values)
    return totals


def resampling_unit(groups: Sequence[str] | None) -> str:
    """What ``replicate_sums`` and ``swapped_sums`` draw for ``groups``, in words."""
    count = 0 if groups is None else len(set(groups))
    if count < 2:
        return "by utterance" + (" (one speaker)" if count == 1 else "")
    rough = f", fewer than {FEW_CLUSTERS}: a rough interval" if count < FEW_CLUSTERS else ""
    return f"by speaker ({count}{rough})"


def intervals(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, groups: Sequence[str] | None
) -> dict[str, tuple[float, float]]:
    """95 % percentile bootstrap interval of WA, UA and F1 (by ``groups`` where given)."""
    confusion = replicate_sums(confusion_cells(labels, preds, num_classes), groups)  # (R, C*C)
    values = scores(confusion.reshape(-1, num_classes, num_classes))
    return {name: _percentile_interval(values[name]) for name in METRICS}


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def swapped_sums(
    values_a: np.ndarray,
    values_b: np.ndarray,
    groups: Sequence[str] | None,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The sums (R, D) of what "A" and "B" give per utterance (``values_a``, ``values_b``: (N, D))
    when A's and B's predictions trade places on a subset of the units (speakers, whole), one
    subset per row; and whether the rows are every subset of the units (an exact test).

    Args:
        values_a, values_b: each model's per-utterance values.
        groups: each utterance's speaker, or None for each utterance on its own (also where
            all are one speaker's).
        replicates: random subsets drawn where there are more than ``EXACT_GROUPS`` units.
        seed: the generator's seed.
    """
    index, count = _units(groups, len(values_a))
    moved = _unit_totals(values_b - values_a, index, count)  # (G, D): what a swap adds to "A"
    exact = count <= EXACT_GROUPS
    if exact:
        subsets = [(np.arange(2**count)[:, None] >> np.arange(count)) & 1]  # (2^G, G)
    else:
        rng = np.random.default_rng(seed)
        sizes = _chunk_sizes(replicates)
        subsets = (rng.integers(0, 2, size=(size, count)) for size in sizes)  # (r, G) each
    added = np.concatenate([subset @ moved for subset in subsets])  # (R, D)
    return values_a.sum(axis=0) + added, values_b.sum(axis=0) - added, exact


def _units(groups: Sequence[str] | None, n: int) -> tuple[np.ndarray, int]:
    """Each utterance's resampling and swapping unit (its speaker; itself without speakers or
    with one speaker) as indices (N,), and how many units there are."""
    if groups is None or len(set(groups)) < 2:
        return np.arange(n), n
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    return index, len(names)


def smallest_p(groups: Sequence[str] | None, n: int) -> float:
    """The smallest p the randomization test can give for ``groups`` (or ``n`` utterances):
    2 / 2^G over every subset of G groups, else 1 / (``REPLICATES`` + 1)."""
    count = _units(groups, n)[1]
    return 2 / 2**count if count <= EXACT_GROUPS else 1 / (REPLICATES + 1)


def _randomization_p(observed: float, swapped: np.ndarray, exact: bool) -> float:
    """Two-sided p: the share of swapped differences at least as far from 0 as ``observed``
    (every subset: the observed one is among them; drawn ones: it is added)."""
    extreme = np.sum(np.abs(swapped) >= abs(observed) - 1e-12)
    if exact:
        return float(extreme / len(swapped))
    return float((extreme + 1) / (len(swapped) + 1))


def paired_comparison(
    labels: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    num_classes: int,
    groups: Sequence[str] | None,
) -> dict[str, dict[str, float]]:
    """B minus A per metric: the difference, its 95 % bootstrap interval and the two-sided p of
    the paired randomization test (by ``groups``: see the module's docstring).

    Both models are scored on the same bootstrap replicates, so what varies is the test set, not
    the pairing. Identical predictions give p = 1.
    """
    cells_a = confusion_cells(labels, preds_a, num_classes)  # (N, C*C)
    cells_b = confusion_cells(labels, preds_b, num_classes)
    shape = (-1, num_classes, num_classes)
    # Both on the same replicates: one draw of the two side by side.
    both = replicate_sums(np.concatenate([cells_a, cells_b], axis=1), groups)  # (R, 2 C*C)
    a, b = (scores(half.reshape(shape)) for half in np.split(both, 2, axis=1))
    full_a = scores(confusion_of(labels, preds_a, num_classes))
    full_b = scores(confusion_of(labels, preds_b, num_classes))
    swapped_a, swapped_b, exact = swapped_sums(cells_a, cells_b, groups)
    as_a, as_b = scores(swapped_a.reshape(shape)), scores(swapped_b.reshape(shape))  # (R,) each
    result = {}
    for name in METRICS:
        result[name] = _difference(full_a[name], full_b[name], b[name] - a[name])
        observed = float(full_b[name] - full_a[name])
        result[name]["p"] = _randomization_p(observed, as_b[name] - as_a[name], exact)
    return result


def _concordance(
    count: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    sxx: np.ndarray,
    syy: np.ndarray,
    sxy: np.ndarray,
) -> np.ndarray:
    """Lin's CCC from the sums of x, y, x^2, y^2 and xy over ``count`` items (population
    moments)."""  # fmt: skip
    mean_x, mean_y = sx / count, sy / count
    var_x, var_y = sxx / count - mean_x**2, syy / count - mean_y**2
    covariance = sxy / count - mean_x * mean_y
    spread = var_x + var_y + (mean_x - mean_y) ** 2
    return 2 * covariance / np.maximum(spread, 1e-12)


def _centred(targets: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Targets and values as float64, centred on the targets' means (CCC ignores a shift of
    both; the sums lose less precision)."""
    centre = targets.mean(axis=0)  # (K,)
    return tuple(v.astype(np.float64) - centre for v in (targets, *values))


def _moments(targets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, 1 + 5K): what CCC sums per utterance: 1, x, y, x^2, y^2 and xy of each dimension."""
    y, x = targets, values
    return np.concatenate([np.ones((len(y), 1)), x, y, x * x, y * y, x * y], axis=1)


def _concordance_of(sums: np.ndarray) -> np.ndarray:
    """CCC (R, K) from rows of summed ``_moments`` (R, 1 + 5K)."""
    return _concordance(sums[:, :1], *np.split(sums[:, 1:], 5, axis=1))


def replicate_concordance(
    targets: np.ndarray,
    values: np.ndarray,
    groups: Sequence[str] | None,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> np.ndarray:
    """CCC of each of K dimensions over each of R bootstrap replicates (``replicate_sums``):
    (R, K).

    Args:
        targets: true values (N, K).
        values: predicted values (N, K).
        groups: each utterance's speaker, or None to resample utterances one by one.
        replicates, seed: as ``replicate_sums``.
    """
    y, x = _centred(targets, values)  # (N, K) each
    return _concordance_of(replicate_sums(_moments(y, x), groups, replicates, seed))


def paired_concordance(
    targets: np.ndarray,
    values_a: np.ndarray,
    values_b: np.ndarray,
    dimensions: Sequence[str],
    groups: Sequence[str] | None,
) -> dict[str, dict[str, float]]:
    """B minus A in ``CCC/<dimension>`` and in ``CCC`` (their mean), as ``paired_comparison``.

    Args:
        targets: true values (N, K), one column per dimension.
        values_a: model A's predictions (N, K).
        values_b: model B's predictions (N, K).
        dimensions: the name of each column.
        groups: each utterance's speaker, or None to resample utterances one by one.
    """
    y, xa, xb = _centred(targets, values_a, values_b)  # (N, K) each
    moments_a, moments_b = _moments(y, xa), _moments(y, xb)  # (N, 1 + 5K) each
    # Both on the same replicates: one draw of the two side by side.
    both = replicate_sums(np.concatenate([moments_a, moments_b], axis=1), groups)
    a, b = (_concordance_of(half) for half in np.split(both, 2, axis=1))  # (R, K) each
    full_a = _concordance_of(moments_a.sum(axis=0, keepdims=True))[0]  # (K,): the test itself
    full_b = _concordance_of(moments_b.sum(axis=0, keepdims=True))[0]
    swapped_a, swapped_b, exact = swapped_sums(moments_a, moments_b, groups)
    as_a, as_b = _concordance_of(swapped_a), _concordance_of(swapped_b)  # (R, K) each
    columns = {f"CCC/{name}": k for k, name in enumerate(dimensions)}
    result = {}
    for name, k in columns.items():
        result[name] = _difference(full_a[k], full_b[k], b[:, k] - a[:, k])
        observed = float(full_b[k] - full_a[k])
        result[name]["p"] = _randomization_p(observed, as_b[:, k] - as_a[:, k], exact)
    result["CCC"] = _difference(full_a.mean(), full_b.mean(), b.mean(axis=1) - a.mean(axis=1))
    observed = float(full_b.mean() - full_a.mean())
    swapped = as_b.mean(axis=1) - as_a.mean(axis=1)
    result["CCC"]["p"] = _randomization_p(observed, swapped, exact)
    return result


def _difference(full_a: float, full_b: float, diff: np.ndarray) -> dict[str, float]:
    """A's and B's figure on the whole test, B - A and its interval from replicates ``diff``."""
    low, high = _percentile_interval(diff)
    return {
        "a": float(full_a),
        "b": float(full_b),
        "diff": float(full_b - full_a),
        "ci95": [low, high],
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


# Student's t, 97.5 % quantile, for 1-9 degrees of freedom (cv has few folds).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157)
_Z975 = 1.959964


def _t975(dof: int) -> float:
    """Student's t 97.5 % quantile: tabulated to 9 degrees of freedom, beyond that the
    Cornish-Fisher expansion in 1/dof (within 3e-4 of the exact quantile from 10 on)."""
    if dof < 10:
        return _T975[dof - 1]
    z = _Z975
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
    )
    return z + sum(term / dof**power for power, term in enumerate(terms, 1))
