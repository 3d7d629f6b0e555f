"""Is model B better than model A on the same test utterances? Per fold and pooled.

A side is a run directory (``predictions.csv``, ``protocol.json``) or a cv directory (its finished
folds). Folds are paired by name and must have the same split hash on both sides, the same
utterances and labels; anything else is refused, since a difference between other test sets says
nothing about the models. The statistics are ``ser.evaluation.stats``: B - A with the paired
bootstrap's interval and the paired randomization test's p (both by speaker where the split names
speakers) of WA/UA/F1 and McNemar's exact test on accuracy where the models predict classes, of
the CCC per dimension and of their mean where they predict dimensions (``predictions.csv``'s
``pred_<dimension>`` columns); multitask: both. Where the speakers are too few for any p below
the level (2 / 2^G: 5 speakers or fewer at 0.05), the verdict says it cannot tell.
Runs of folds x seeds (``<fold>-seed_<s>``) pair by run name too; pooled, each utterance is in
one run per seed, so the bootstrap draws it (or its speaker) with all its predictions and
McNemar, which needs independent pairs, is given per run only. A cv run without ``--seeds``
(``fold_k``) pairs with ``fold_k-seed_<s>`` of the other side, ``s`` its recorded
``seed_everything``: the same fold with the same seed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.evaluation import stats
from ser.evaluation.cv_summary import fold_of_run, recorded_seed, seed_run_name
from ser.evaluation.protocol import UNKNOWN_SPEAKERS, read_card, read_split_rows

LEVEL = 0.05
VERDICT_METRIC = "UA"
VERDICT_DIMENSIONAL_METRIC = "CCC"  # the mean over dimensions


@dataclass(frozen=True)
class Fold:
    """One side's test of one fold: utterances in id order, their labels, predictions, speakers,
    and per dimension the true and predicted values (N, K) (K = 0: no dimensions)."""

    split_hash: str
    classes: list[str]
    utt_ids: list[str]
    labels: list[str]
    preds: list[str]
    speakers: list[str]
    dimensions: list[str]
    targets: np.ndarray
    values: np.ndarray


def read_side(path: Path) -> dict[str, Fold]:
    """``{fold name: Fold}`` of a run directory (one fold, ``run``) or a cv directory."""
    if (path / "cv_plan.json").is_file():
        plan = json.loads((path / "cv_plan.json").read_text(encoding="utf-8"))
        names = [fold["name"] for fold in plan["folds"]]
        return {name: read_fold(path / name) for name in names if _tested(path / name)}
    if _tested(path):
        return {"run": read_fold(path)}
    raise ValueError(
        f"compare: {path} is neither a tested run directory (predictions.csv, "
        "test_metrics.json) nor a cv directory (cv_plan.json)"
    )


def seeded_names(path: Path, side: dict[str, Fold]) -> dict[str, Fold]:
    """A cv directory's runs of one fold (``fold_k``) renamed ``fold_k-seed_<s>`` with the seed
    recorded for them; other runs, and runs without a recorded seed, keep their names."""
    renamed = {}
    for name, fold in side.items():
        seed = None if fold_of_run(name) else recorded_seed(path, name)
        renamed[name if seed is None else seed_run_name(name, seed)] = fold
    return renamed


def _repeats(names: list[str]) -> bool:
    """Whether the runs test utterances more than once: several seeds of one fold."""
    return len(names) > len({fold_of_run(name) or name for name in names})


def _tested(run_dir: Path) -> bool:
    return (run_dir / "predictions.csv").is_file() and (run_dir / "test_metrics.json").is_file()


def read_fold(run_dir: Path) -> Fold:
    """The test of one run directory, with the speakers of its protocol card's split."""
    card = read_card(run_dir)
    if card is None:
        raise ValueError(
            f"compare: {run_dir} has no protocol.json, so its split cannot be checked; run its "
            "test again (python -m ser test) with this version of ser"
        )
    with (run_dir / "predictions.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        classes = [c[5:] for c in reader.fieldnames or [] if c.startswith("prob_")]
        dimensions = [c[5:] for c in reader.fieldnames or [] if c.startswith("pred_")]
        rows = sorted(reader, key=lambda row: row["utt_id"])
    test = read_split_rows(run_dir / card["splits_dir"])["test"]
    speaker = {row["utt_id"]: row["speaker"] for row in test}
    path = run_dir / "predictions.csv"
    return Fold(
        card["split_hash"],
        classes,
        [row["utt_id"] for row in rows],
        [row["label"] for row in rows],
        [row["pred"] if classes else "" for row in rows],
        [speaker.get(row["utt_id"], "") for row in rows],
        dimensions,
        _numbers(path, rows, dimensions),
        _numbers(path, rows, [f"pred_{name}" for name in dimensions]),
    )


def _numbers(path: Path, rows: list[dict[str, str]], columns: list[str]) -> np.ndarray:
    """(N, len(columns)) of numeric columns; a missing column or a non-number is named."""
    try:
        values = [[float(row[column]) for column in columns] for row in rows]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"compare: {path}: the columns {', '.join(columns)} must each hold a number on every "
            f"row ({error!r}); is it the predictions.csv of a ser test?"
        ) from None
    return np.array(values, dtype=np.float64).reshape(len(rows), len(columns))


def _check_pair(name: str, a: Fold, b: Fold) -> None:
    if a.split_hash != b.split_hash:
        raise ValueError(
            f"compare: {name}: the splits differ (split hash {a.split_hash} against "
            f"{b.split_hash}), so the two results are not on the same test utterances"
        )
    same_tasks = a.classes == b.classes and a.dimensions == b.dimensions
    same_truth = a.labels == b.labels and np.array_equal(a.targets, b.targets)
    if not same_tasks or a.utt_ids != b.utt_ids or not same_truth:
        raise ValueError(
            f"compare: {name}: same split hash, but the predictions differ in classes, "
            "dimensions, utterances, labels or true values; is one predictions.csv from another "
            "test, or from a model of another task?"
        )


def _class_arrays(folds: list[Fold]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as class indices (N,)."""
    classes = folds[0].classes
    labels = np.array([classes.index(x) for fold in folds for x in fold.labels])
    preds = np.array([classes.index(x) for fold in folds for x in fold.preds])
    return labels, preds


def _groups(folds: list[Fold], repeats: bool) -> tuple[list[str] | None, str]:
    """Each prediction's resampling unit (None: each its own) and how to say it: the speaker
    where every one is known; else the utterance, drawn with its predictions of every seed
    where the runs are folds x seeds (the same utterance tested once per seed)."""
    speakers = [s for fold in folds for s in fold.speakers]
    if not UNKNOWN_SPEAKERS & set(speakers):
        return speakers, stats.resampling_unit(speakers)
    if repeats:
        utterances = [u for fold in folds for u in fold.utt_ids]
        return utterances, "by utterance, with its predictions of every seed"
    return None, "by utterance"


def paired(a: list[Fold], b: list[Fold], repeats: bool = False) -> dict[str, Any]:
    """Paired bootstrap of every metric (and McNemar on accuracy), over the pooled folds.

    ``repeats``: the folds are runs of folds x seeds, so each utterance is in several of them;
    the bootstrap draws it with all its predictions, and McNemar (which needs independent pairs)
    is left to each run.
    """
    groups, unit = _groups(a, repeats)
    utterances = sum(len(fold.utt_ids) for fold in a)
    result: dict[str, Any] = {
        "utterances": utterances,
        "resampled": unit,
        "smallest_p": stats.smallest_p(groups, utterances),
    }
    if a[0].classes:
        labels, preds_a = _class_arrays(a)
        _, preds_b = _class_arrays(b)
        result.update(stats.paired_comparison(labels, preds_a, preds_b, len(a[0].classes), groups))
        if not repeats:
            result["McNemar"] = stats.mcnemar_exact(preds_a == labels, preds_b == labels)
    if a[0].dimensions:
        targets = np.concatenate([fold.targets for fold in a])  # (N, K)
        values_a = np.concatenate([fold.values for fold in a])  # (N, K)
        values_b = np.concatenate([fold.values for fold in b])  # (N, K)
        result.update(
            stats.paired_concordance(targets, values_a, values_b, a[0].dimensions, groups)
        )
    return result


def compare(path_a: Path, path_b: Path) -> dict[str, Any]:
    """``{"folds": {name: result}, "pooled": result}`` of B minus A (see ``paired``)."""
    side_a, side_b = read_side(path_a), read_side(path_b)
    if set(side_a) != set(side_b):  # perhaps one cv without --seeds, one with
        side_a, side_b = seeded_names(path_a, side_a), seeded_names(path_b, side_b)
    if set(side_a) != set(side_b):
        raise ValueError(
            f"compare: the finished runs differ: {sorted(side_a)} in {path_a}, "
            f"{sorted(side_b)} in {path_b}; compare the same folds with the same seeds"
        )
    if not side_a:
        raise ValueError(f"compare: no finished fold in {path_a}")
    for name in side_a:
        _check_pair(name, side_a[name], side_b[name])
    names = list(side_a)
    result = {"a": str(path_a), "b": str(path_b)}
    result["folds"] = {name: paired([side_a[name]], [side_b[name]]) for name in names}
    result["pooled"] = paired(
        [side_a[n] for n in names], [side_b[n] for n in names], _repeats(names)
    )
    return result


def _metrics(part: dict[str, Any]) -> list[str]:
    """The metrics of one comparison: WA/UA/F1, then ``CCC/<dimension>`` and ``CCC``."""
    return [name for name in part if name in stats.METRICS or name.startswith("CCC")]


def markdown(result: dict[str, Any]) -> str:
    """A table of B - A per fold (and pooled where there are several) and the verdict lines."""
    lines = [
        f"A: {result['a']}  \nB: {result['b']}",
        "",
        "| fold | n | metric | A | B | B − A | 95 % CI | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    parts = dict(result["folds"])
    if len(parts) > 1:
        parts["pooled"] = result["pooled"]
    for name, part in parts.items():
        for metric in _metrics(part):
            m = part[metric]
            low, high = m["ci95"]
            lines.append(
                f"| {name} | {part['utterances']} | {metric} | {m['a']:.4f} | {m['b']:.4f} | "
                f"{m['diff']:+.4f} | [{low:+.4f}, {high:+.4f}] | {m['p']:.4f} |"
            )
        if "McNemar" in part:
            mc = part["McNemar"]
            lines.append(
                f"| {name} | {part['utterances']} | McNemar (accuracy) | only A right: "
                f"{mc['only_a']} | only B right: {mc['only_b']} | | | {mc['p']:.4f} |"
            )
    return "\n".join([*lines, "", *verdicts(result)]) + "\n"


def verdicts(result: dict[str, Any]) -> list[str]:
    """One line per task on the pooled UA (classes) and mean CCC (dimensions): which model is
    better, or that the test cannot tell."""
    pooled = result["pooled"]
    folds = len(result["folds"])
    seeded = _repeats(list(result["folds"]))
    where = f"{pooled['utterances']} test utterances" + (f" of {folds} folds" if folds > 1 else "")
    if seeded:
        where = f"{pooled['utterances']} predictions of {folds} runs (folds x seeds)"
    lines = []
    for metric in (VERDICT_METRIC, VERDICT_DIMENSIONAL_METRIC):
        if metric not in pooled:
            continue
        m = pooled[metric]
        low, high = m["ci95"]
        figures = (
            f"{metric} {m['a']:.4f} -> {m['b']:.4f}, B − A {m['diff']:+.4f} "
            f"[{low:+.4f}, {high:+.4f}], p = {m['p']:.4f}, resampled {pooled['resampled']}; "
        )
        if metric == VERDICT_METRIC and seeded:
            figures += "McNemar per run only (each seed tests the utterances again); "
        elif metric == VERDICT_METRIC:
            figures += f"McNemar p = {pooled['McNemar']['p']:.4f}; "
        figures += where
        if m["p"] >= LEVEL and pooled["smallest_p"] >= LEVEL:
            lines.append(
                f"verdict: cannot tell at {LEVEL}: with so few speakers no p is below "
                f"{pooled['smallest_p']:.4f}; test on more speakers ({figures})"
            )
        elif m["p"] >= LEVEL:
            lines.append(f"verdict: no significant difference at {LEVEL} ({figures})")
        else:
            better = "B" if m["diff"] > 0 else "A"
            lines.append(f"verdict: {better} is better at {LEVEL} ({figures})")
    return lines
