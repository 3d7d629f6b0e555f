"""Dimensional results of several runs: cv summaries and `ser compare` of CCC, on written files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ser.commands.compare import main as compare_main
from ser.data.splits import KFold
from ser.data.utterance import Utterance, write_csv
from ser.evaluation import protocol
from ser.evaluation.compare import compare
from ser.evaluation.cv_summary import summarise
from ser.evaluation.results import PredictionRow, write_predictions_csv

DIMENSIONS = ("arousal", "valence")
CLASSES = ("anger", "neutral")
CORPUS = [
    Utterance(f"s{s:02d}_{i:02d}", f"/c/s{s}_{i}.wav", f"s{s:02d}", CLASSES[i % 2], 1.0, 16_000)
    for s in range(12)
    for i in range(8)
]


def ccc(values: np.ndarray, targets: np.ndarray) -> float:
    """Lin's CCC with population moments (np.var, as the AVEC scripts), the test's."""
    covariance = np.cov(values, targets, ddof=0)
    shift = (values.mean() - targets.mean()) ** 2
    return 2 * covariance[0, 1] / (covariance[0, 0] + covariance[1, 1] + shift)


def truth(utt_ids: list[str]) -> np.ndarray:
    """(N, K) ratings on a 1-5 scale, fixed per utterance."""
    return np.random.default_rng(0).uniform(1, 5, (len(CORPUS), len(DIMENSIONS)))[
        [[u.utt_id for u in CORPUS].index(utt_id) for utt_id in utt_ids]
    ]


def write_fold(run_dir: Path, fold: int, noise: float, multitask: bool = False) -> np.ndarray:
    """A tested run of fold ``fold`` of a 2-fold split: its split, protocol card,
    predictions.csv (the truth plus ``noise`` sd) and test_metrics.json; returns the metrics
    as a vector in ``METRIC_KEYS`` order."""
    parts = KFold(2, fold)(CORPUS, seed=0)
    for part, part_rows in parts.items():
        write_csv(run_dir / "splits" / f"{part}.csv", part_rows)
    made = {"reader": "TestData", "classes": list(CLASSES), "merge": {}, "label_map": {}}
    made["split"] = {"kind": "KFold", "settings": {}, "seed": 0, "speaker_independent": False}
    (run_dir / "splits" / "split.json").write_text(json.dumps(made))
    test_ids = [row.utt_id for row in parts["test"]]
    protocol.write_card(run_dir, set(test_ids))
    targets = truth(test_ids)  # (N, K)
    values = targets + np.random.default_rng(fold + int(noise * 100)).normal(
        0, noise, targets.shape
    )
    labels = [row.label for row in parts["test"]]
    probs = [[0.9, 0.1] if label == "anger" else [0.2, 0.8] for label in labels]
    rows = [
        PredictionRow(utt_id, label, p if multitask else [], list(v), list(t))
        for utt_id, label, p, v, t in zip(test_ids, labels, probs, values, targets, strict=True)
    ]
    write_predictions_csv(
        run_dir / "predictions.csv", rows, CLASSES if multitask else (), "utt_id", DIMENSIONS
    )
    metrics = {f"test/CCC/{d}": ccc(values[:, k], targets[:, k]) for k, d in enumerate(DIMENSIONS)}
    metrics |= {f"test/MAE/{d}": float(np.abs(values[:, k] - targets[:, k]).mean())
                for k, d in enumerate(DIMENSIONS)}  # fmt: skip
    metrics["test/CCC"] = float(np.mean([metrics[f"test/CCC/{d}"] for d in DIMENSIONS]))
    metrics["test/loss"] = 1 - metrics["test/CCC"]
    if multitask:
        metrics |= {"test/UA": 1.0, "test/WA": 1.0, "test/F1": 1.0, "test/UA_ci95_lo": 1.0}
    (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
    return metrics


def write_cv(cv_dir: Path, noise: float, multitask: bool = False) -> list[dict[str, float]]:
    """A cv directory of two tested folds; returns each fold's metrics."""
    plan = {"folds": [{"name": "fold_0"}, {"name": "fold_1"}]}
    cv_dir.mkdir(parents=True)
    (cv_dir / "cv_plan.json").write_text(json.dumps(plan))
    return [write_fold(cv_dir / f"fold_{k}", k, noise, multitask) for k in range(2)]


DIMENSIONAL_KEYS = ["test/CCC", *(f"test/{s}/{d}" for s in ("CCC", "MAE") for d in DIMENSIONS)]


@pytest.mark.parametrize("multitask", [False, True])
def test_cv_summary_gives_mean_std_and_interval_of_each_dimension(tmp_path, caplog, multitask):
    folds = write_cv(tmp_path / "cv", noise=0.8, multitask=multitask)
    with caplog.at_level(logging.INFO, logger="ser.evaluation.cv_summary"):
        summary = summarise(tmp_path / "cv")
    for key in DIMENSIONAL_KEYS:
        values = np.array([fold[key] for fold in folds])
        half = 12.706205 * values.std(ddof=1) / np.sqrt(2)  # t(0.975, 1 dof) of 2 folds
        assert summary["mean"][key] == pytest.approx(values.mean())
        assert summary["std"][key] == pytest.approx(values.std(ddof=1))
        assert summary["ci95"][key] == pytest.approx([values.mean() - half, values.mean() + half])
    assert values.std() > 0  # the folds differ, so the interval has a width
    assert "test/loss" not in summary["mean"] and "test/UA_ci95_lo" not in summary["mean"]
    assert ("test/UA" in summary["ci95"]) == multitask
    assert summary["confusion"]["classes"] == (list(CLASSES) if multitask else [])
    assert (tmp_path / "cv" / "cv_confusion_matrix.png").is_file() == multitask
    table = (tmp_path / "cv" / "cv_summary.md").read_text()
    mean = summary["mean"]["test/CCC/valence"]
    assert "| CCC/valence |" in table and f"{mean:.4f} ± " in table
    line = next(r.getMessage() for r in caplog.records if "2 of 2 folds: " in r.getMessage())
    ccc_mean = summary["mean"]["test/CCC"]
    assert f"CCC {ccc_mean:.3f} ± " in line and "CCC/arousal " in line and "MAE" not in line
    assert ("UA 1.000 ± 0.000" in line) == multitask


def test_compare_finds_a_better_ccc_per_dimension_and_pooled(tmp_path, capsys):
    write_cv(tmp_path / "a", noise=1.2)
    write_cv(tmp_path / "b", noise=0.3)
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    result = compare(tmp_path / "a", tmp_path / "b")
    assert set(result["folds"]) == {"fold_0", "fold_1"} and "UA" not in result["pooled"]
    pooled = result["pooled"]
    assert pooled["utterances"] == len(CORPUS) and pooled["resampled"] == "by speaker (12)"
    rows = {side: _pooled_rows(tmp_path / side) for side in "ab"}
    for k, name in enumerate(DIMENSIONS):
        m = pooled[f"CCC/{name}"]
        expected = [ccc(rows[side][1][:, k], rows[side][0][:, k]) for side in "ab"]
        assert [m["a"], m["b"]] == pytest.approx(expected)
        assert m["diff"] > 0.2 and 0 < m["ci95"][0] < m["diff"] < m["ci95"][1] and m["p"] < 0.01
    assert pooled["CCC"]["diff"] == pytest.approx(
        np.mean([pooled[f"CCC/{d}"]["diff"] for d in DIMENSIONS])
    )
    assert "| fold_0 | 48 | CCC/arousal |" in out and "| pooled | 96 | CCC |" in out
    assert "McNemar" not in out
    assert out.strip().splitlines()[-1].startswith("verdict: B is better at 0.05 (CCC ")


def _pooled_rows(cv_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both folds' true and predicted values (N, K), as compare pools them."""
    found = [np.genfromtxt(cv_dir / f"fold_{k}" / "predictions.csv", delimiter=",", names=True,
                           dtype=None, encoding="utf-8") for k in range(2)]  # fmt: skip
    targets = np.concatenate([np.stack([f[d] for d in DIMENSIONS], axis=1) for f in found])
    values = np.concatenate([np.stack([f[f"pred_{d}"] for d in DIMENSIONS], axis=1) for f in found])
    return targets, values


@pytest.mark.parametrize("multitask", [False, True])
def test_compare_of_identical_predictions_gives_p_one(tmp_path, multitask):
    write_cv(tmp_path / "a", noise=0.8, multitask=multitask)
    write_cv(tmp_path / "b", noise=0.8, multitask=multitask)
    result = compare(tmp_path / "a", tmp_path / "b")
    metrics = ["CCC", *(f"CCC/{d}" for d in DIMENSIONS)] + (["UA", "WA", "F1"] if multitask else [])
    for part in [*result["folds"].values(), result["pooled"]]:
        for metric in metrics:
            assert part[metric]["diff"] == 0 and part[metric]["p"] == 1.0
        assert ("McNemar" in part) == multitask


def test_a_multitask_comparison_has_a_verdict_per_task(tmp_path, capsys):
    write_cv(tmp_path / "a", noise=1.2, multitask=True)
    write_cv(tmp_path / "b", noise=0.3, multitask=True)
    compare_main([str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "c.md")])
    last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert last[0].startswith("verdict: no significant difference at 0.05 (UA 1.0000 -> 1.0000")
    assert last[1].startswith("verdict: B is better at 0.05 (CCC ")
    assert "CCC/valence" in json.loads((tmp_path / "c.json").read_text())["pooled"]


def test_compare_refuses_a_run_of_another_task(tmp_path):
    write_fold(tmp_path / "a", 0, noise=0.5)
    write_fold(tmp_path / "b", 0, noise=0.5, multitask=True)
    with pytest.raises(ValueError, match="run: same split hash, but the predictions differ in "):
        compare(tmp_path / "a", tmp_path / "b")


def test_a_predictions_file_without_the_true_values_is_named(tmp_path):
    write_fold(tmp_path / "a", 0, noise=0.5)
    write_fold(tmp_path / "b", 0, noise=0.5)
    path = tmp_path / "b" / "predictions.csv"
    path.write_text(path.read_text().replace("valence,pred_valence", "rating,pred_valence"))
    with pytest.raises(ValueError, match=rf"compare: {path}: the columns arousal, valence must"):
        compare(tmp_path / "a", tmp_path / "b")
