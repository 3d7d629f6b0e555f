"""Bootstrap intervals, paired bootstrap and McNemar against scipy/numpy/torchmetrics."""

import tracemalloc

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from ser.evaluation import stats
from ser.evaluation.metrics import EmotionMetrics


def noisy_predictions(labels: np.ndarray, accuracy: float, classes: int, seed: int) -> np.ndarray:
    """Each label kept with probability ``accuracy``, else a uniformly drawn class."""
    rng = np.random.default_rng(seed)
    keep = rng.random(len(labels)) < accuracy
    return np.where(keep, labels, rng.integers(0, classes, len(labels)))


def test_scores_equal_torchmetrics_with_a_class_never_seen():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)  # class 4 of 5 never appears nor is predicted
    preds = noisy_predictions(labels, 0.6, 4, seed=1)
    preds[:3] = 3  # and some class confusions
    metrics = EmotionMetrics([f"c{i}" for i in range(5)], "test")
    logits = torch.nn.functional.one_hot(torch.tensor(preds), 5).float()  # (N, 5)
    metrics.update(logits, torch.tensor(labels))
    expected = metrics.compute()
    found = stats.scores(stats.confusion_of(labels, preds, 5))
    for name in stats.METRICS:
        assert float(found[name]) == pytest.approx(expected[f"test/{name}"], abs=1e-6)


def test_utterance_interval_matches_scipy_bootstrap():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 800)
    preds = noisy_predictions(labels, 0.7, 3, seed=3)
    ours = stats.intervals(labels, preds, 3, groups=None)["WA"]
    correct = (labels == preds).astype(float)
    theirs = scipy_stats.bootstrap(
        (correct,), np.mean, n_resamples=4000, method="percentile", random_state=4
    ).confidence_interval
    assert ours[0] == pytest.approx(theirs.low, abs=0.01)
    assert ours[1] == pytest.approx(theirs.high, abs=0.01)
    assert ours[0] < correct.mean() < ours[1]


def test_speaker_bootstrap_is_wider_when_speakers_differ():
    # Speakers of very different accuracy: resampling utterances alone hides that spread.
    labels = np.zeros(400, dtype=int)
    speakers = np.repeat([f"s{i}" for i in range(8)], 50)
    preds = np.concatenate([noisy_predictions(labels[:50], a, 2, i) for i, a in enumerate(
        [0.2, 0.9, 0.3, 0.95, 0.5, 0.8, 0.4, 0.99])])  # fmt: skip
    by_utt = stats.intervals(labels, preds, 2, groups=None)["WA"]
    by_speaker = stats.intervals(labels, preds, 2, groups=list(speakers))["WA"]
    assert by_speaker[1] - by_speaker[0] > 2 * (by_utt[1] - by_utt[0])


def test_identical_predictions_give_p_one():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 200)
    preds = noisy_predictions(labels, 0.5, 4, seed=6)
    paired = stats.paired_comparison(labels, preds, preds.copy(), 4, groups=None)
    for name in stats.METRICS:
        assert paired[name]["diff"] == 0 and paired[name]["p"] == 1.0
    assert stats.mcnemar_exact(labels == preds, labels == preds)["p"] == 1.0


def test_a_known_difference_is_found():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 600)
    weak, strong = noisy_predictions(labels, 0.5, 4, 8), noisy_predictions(labels, 0.8, 4, 9)
    paired = stats.paired_comparison(labels, weak, strong, 4, groups=None)
    expected_wa = (strong == labels).mean() - (weak == labels).mean()
    assert paired["WA"]["diff"] == pytest.approx(expected_wa)
    for name in stats.METRICS:
        low, high = paired[name]["ci95"]
        assert 0 < low < paired[name]["diff"] < high and paired[name]["p"] < 0.01
    assert stats.mcnemar_exact(weak == labels, strong == labels)["p"] < 1e-6


@pytest.mark.parametrize(("only_a", "only_b"), [(3, 11), (10, 10), (0, 7), (25, 12)])
def test_mcnemar_equals_scipy_binomial_test(only_a, only_b):
    correct_a = np.array([True] * only_a + [False] * only_b + [True] * 5 + [False] * 4)
    correct_b = np.array([False] * only_a + [True] * only_b + [True] * 5 + [False] * 4)
    found = stats.mcnemar_exact(correct_a, correct_b)
    expected = scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert (found["only_a"], found["only_b"]) == (only_a, only_b)
    assert found["p"] == pytest.approx(expected, rel=1e-9)


def test_relabelling_the_classes_changes_nothing():
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 5, 300)
    a, b = noisy_predictions(labels, 0.5, 5, 11), noisy_predictions(labels, 0.6, 5, 12)
    perm = rng.permutation(5)
    plain = stats.paired_comparison(labels, a, b, 5, groups=None)
    relabelled = stats.paired_comparison(perm[labels], perm[a], perm[b], 5, groups=None)
    for name in stats.METRICS:
        for key in ("a", "b", "diff", "p"):
            assert relabelled[name][key] == pytest.approx(plain[name][key])
        assert relabelled[name]["ci95"] == pytest.approx(plain[name]["ci95"])


def test_equal_models_are_rarely_called_different():
    # Two independent draws of one predictor: about 5 % of tests may reject at 0.05, not more.
    rejected_bootstrap = rejected_mcnemar = 0
    for seed in range(60):
        labels = np.random.default_rng(seed).integers(0, 3, 150)
        a = noisy_predictions(labels, 0.6, 3, 1000 + seed)
        b = noisy_predictions(labels, 0.6, 3, 2000 + seed)
        rejected_bootstrap += stats.paired_comparison(labels, a, b, 3, None)["WA"]["p"] < 0.05
        rejected_mcnemar += stats.mcnemar_exact(a == labels, b == labels)["p"] < 0.05
    assert rejected_bootstrap <= 8 and rejected_mcnemar <= 8


def test_fold_interval_is_the_t_interval():
    values = [0.61, 0.66, 0.58, 0.70, 0.64]
    low, high = stats.fold_interval(values)
    expected = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert (low, high) == pytest.approx(expected, abs=1e-3)


def lin_ccc(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Lin's CCC per column (population moments: np.var, as the AVEC scripts compute it)."""
    shift = (values.mean(axis=0) - targets.mean(axis=0)) ** 2
    covariance = ((values - values.mean(axis=0)) * (targets - targets.mean(axis=0))).mean(axis=0)
    return 2 * covariance / (values.var(axis=0) + targets.var(axis=0) + shift)


def drawn_counts(groups: list[str] | None, n: int, replicates: int) -> np.ndarray:
    """(R, N): how often each utterance is in each bootstrap replicate, drawn as the module
    documents it (whole speakers, or utterances, with replacement; ``stats.SEED``), at once."""
    if groups is None:
        index, count = np.arange(n), n
    else:
        index, count = np.unique(groups, return_inverse=True)[1], len(set(groups))
    rng = np.random.default_rng(stats.SEED)
    draws = rng.integers(0, count, size=(replicates, count))
    return np.stack([np.bincount(row, minlength=count) for row in draws])[:, index]


def test_replicate_ccc_is_lins_on_the_drawn_utterances():
    rng = np.random.default_rng(11)
    targets = rng.uniform(1, 5, (40, 2))  # (N, K)
    values = 0.8 * targets + rng.normal(0.5, 0.7, targets.shape)  # scaled and shifted
    speakers = [f"s{i % 8}" for i in range(40)]
    found = stats.replicate_concordance(targets, values, speakers, replicates=3)  # (R, K)
    for replicate, counts in zip(found, drawn_counts(speakers, 40, 3), strict=True):
        drawn = np.repeat(np.arange(40), counts)  # the replicate's utterances, repeats included
        assert replicate == pytest.approx(lin_ccc(values[drawn], targets[drawn]))


@pytest.mark.parametrize("speakers", [None, 37])
def test_replicates_drawn_a_chunk_at_a_time_are_the_replicates_drawn_at_once(speakers):
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 4, 3001)
    preds = noisy_predictions(labels, 0.6, 4, seed=13)
    groups = None if speakers is None else [f"s{i % speakers}" for i in range(3001)]
    counts = drawn_counts(groups, 3001, stats.REPLICATES)  # (R, N) at once
    confusion = counts @ stats.confusion_cells(labels, preds, 4)  # (R, C*C)
    expected = stats.scores(confusion.reshape(-1, 4, 4))
    found = stats.intervals(labels, preds, 4, groups)
    for name in stats.METRICS:
        assert found[name] == pytest.approx(np.percentile(expected[name], [2.5, 97.5]))


def test_intervals_and_comparisons_of_a_large_test_do_not_hold_every_replicate(tmp_path):
    """Every replicate's weights, R x N (2000 x 100 000 utterances: 1.6 GB as int64, twice
    over), were held at once; they are drawn a chunk at a time and summed by unit."""
    n = 20_000
    rng = np.random.default_rng(14)
    labels = rng.integers(0, 6, n)
    a, b = noisy_predictions(labels, 0.6, 6, seed=15), noisy_predictions(labels, 0.62, 6, seed=16)
    targets = rng.uniform(1, 5, (n, 2))
    tracemalloc.start()
    try:
        stats.intervals(labels, a, 6, groups=None)
        stats.paired_comparison(labels, a, b, 6, groups=None)
        stats.paired_concordance(targets, targets + 0.1, targets - 0.2, ["x", "y"], groups=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20  # a chunk of 100 replicates x 20 000 utterances: 16 MB


def test_few_speakers_give_no_verdict_the_randomization_test_cannot_back():
    """Two equally good models on a test of few speakers: the percentile p of a speaker
    bootstrap rejected in 20 % (3 speakers) to 42 % (2) of such tests at 0.05. Swapping the
    models' predictions on every subset of speakers cannot go below 2 / 2^G."""
    rejected = {3: 0, 6: 0}
    for speakers in rejected:
        for seed in range(100):
            rng = np.random.default_rng(seed)
            groups = [f"s{i % speakers}" for i in range(10 * speakers)]
            labels = rng.integers(0, 3, len(groups))
            skill = rng.uniform(0.3, 0.9, speakers)[[int(g[1:]) for g in groups]]
            a = np.where(rng.random(len(groups)) < skill, labels, rng.integers(0, 3, len(groups)))
            b = np.where(rng.random(len(groups)) < skill, labels, rng.integers(0, 3, len(groups)))
            p = stats.paired_comparison(labels, a, b, 3, groups)["UA"]["p"]
            assert p >= 2 / 2**speakers - 1e-12
            rejected[speakers] += p < 0.05
    assert rejected[3] == 0 and rejected[6] <= 8


def test_the_randomization_p_of_ccc_swaps_whole_speakers():
    rng = np.random.default_rng(12)
    targets = rng.uniform(1, 5, (24, 2))
    close, far = targets + rng.normal(0, 0.3, (24, 2)), targets + rng.normal(0, 2.0, (24, 2))
    groups = [f"s{i % 3}" for i in range(24)]
    three = stats.paired_concordance(targets, far, close, ["arousal", "valence"], groups)
    assert three["CCC"]["diff"] > 0.3 and three["CCC"]["p"] == pytest.approx(0.25)  # 2 / 2^3
    many = stats.paired_concordance(targets, far, close, ["arousal", "valence"], None)
    assert many["CCC"]["p"] < 0.01 and many["CCC/arousal"]["diff"] == three["CCC/arousal"]["diff"]
    assert three["CCC/arousal"]["b"] == pytest.approx(lin_ccc(close, targets)[0])


@pytest.mark.parametrize("folds", [2, 5, 10, 11, 12, 25, 61, 200])
def test_fold_interval_is_the_t_interval_for_any_number_of_folds(folds):
    """Not a table's nearest row (2.228 for 11 degrees of freedom) nor 1.96 past 60."""
    values = list(np.random.default_rng(folds).uniform(0.5, 0.9, folds))
    expected = scipy_stats.t.interval(
        0.95, folds - 1, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert stats.fold_interval(values) == pytest.approx(expected, rel=1e-4)
