"""Is model B better than model A on the same test utterances? Per fold and pooled.

A side is a run directory (``predictions.csv``, ``protocol.json``) or a cv directory (its finished
folds). Folds are paired by name and must have the same split hash on both sides, the same
utterances and labels; anything else is refused, since a difference between other test sets says
nothing about the models. The statistics are ``ser.evaluation.stats``: the paired bootstrap (by
speaker where the split names speakers) and McNemar's exact test on accuracy.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.evaluation import stats
from ser.evaluation.protocol import UNKNOWN_SPEAKERS, read_card, read_split_rows

LEVEL = 0.05
VERDICT_METRIC = "UA"


@dataclass(frozen=True)
class Fold:
    """One side's test of one fold: utterances in id order, their labels, predictions, speakers."""

    split_hash: str
    classes: list[str]
    utt_ids: list[str]
    labels: list[str]
    preds: list[str]
    speakers: list[str]


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
        rows = sorted(reader, key=lambda row: row["utt_id"])
    test = read_split_rows(run_dir / card["splits_dir"])["test"]
    speaker = {row["utt_id"]: row["speaker"] for row in test}
    return Fold(
        card["split_hash"],
        classes,
        [row["utt_id"] for row in rows],
        [row["label"] for row in rows],
        [row["pred"] for row in rows],
        [speaker.get(row["utt_id"], "") for row in rows],
    )


def _check_pair(name: str, a: Fold, b: Fold) -> None:
    if a.split_hash != b.split_hash:
        raise ValueError(
            f"compare: {name}: the splits differ (split hash {a.split_hash} against "
            f"{b.split_hash}), so the two results are not on the same test utterances"
        )
    if a.classes != b.classes or a.utt_ids != b.utt_ids or a.labels != b.labels:
        raise ValueError(
            f"compare: {name}: same split hash, but the predictions differ in classes, "
            "utterances or labels; is one predictions.csv from another test?"
        )


def _arrays(folds: list[Fold]) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
    """Labels, predictions (as class indices) and speakers (None where any is unknown)."""
    classes = folds[0].classes
    labels = np.array([classes.index(x) for fold in folds for x in fold.labels])
    preds = np.array([classes.index(x) for fold in folds for x in fold.preds])
    speakers = [s for fold in folds for s in fold.speakers]
    return labels, preds, speakers, None if UNKNOWN_SPEAKERS & set(speakers) else speakers


def _unit(groups: list[str] | None) -> str:
    if not groups:
        return "by utterance"
    count = len(set(groups))
    rough = (
        f", fewer than {stats.FEW_CLUSTERS}: a rough interval" if count < stats.FEW_CLUSTERS else ""
    )
    return f"by speaker ({count}{rough})"


def paired(a: list[Fold], b: list[Fold]) -> dict[str, Any]:
    """Paired bootstrap of every metric and McNemar on accuracy, over the pooled ``folds``."""
    labels, preds_a, _, groups = _arrays(a)
    _, preds_b, _, _ = _arrays(b)
    result: dict[str, Any] = {
        "utterances": len(labels),
        "resampled": _unit(groups),
        **stats.paired_bootstrap(labels, preds_a, preds_b, len(a[0].classes), groups),
    }
    result["McNemar"] = stats.mcnemar_exact(preds_a == labels, preds_b == labels)
    return result


def compare(path_a: Path, path_b: Path) -> dict[str, Any]:
    """``{"folds": {name: result}, "pooled": result}`` of B minus A (see ``paired``)."""
    side_a, side_b = read_side(path_a), read_side(path_b)
    if set(side_a) != set(side_b):
        raise ValueError(
            f"compare: the finished folds differ: {sorted(side_a)} in {path_a}, "
            f"{sorted(side_b)} in {path_b}"
        )
    if not side_a:
        raise ValueError(f"compare: no finished fold in {path_a}")
    for name in side_a:
        _check_pair(name, side_a[name], side_b[name])
    names = list(side_a)
    result = {"a": str(path_a), "b": str(path_b)}
    result["folds"] = {name: paired([side_a[name]], [side_b[name]]) for name in names}
    result["pooled"] = paired([side_a[n] for n in names], [side_b[n] for n in names])
    return result


def markdown(result: dict[str, Any]) -> str:
    """A table of B - A per fold (and pooled where there are several) and the verdict line."""
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
        for metric in stats.METRICS:
            m = part[metric]
            low, high = m["ci95"]
            lines.append(
                f"| {name} | {part['utterances']} | {metric} | {m['a']:.4f} | {m['b']:.4f} | "
                f"{m['diff']:+.4f} | [{low:+.4f}, {high:+.4f}] | {m['p']:.4f} |"
            )
        mc = part["McNemar"]
        lines.append(
            f"| {name} | {part['utterances']} | McNemar (accuracy) | only A right: {mc['only_a']} "
            f"| only B right: {mc['only_b']} | | | {mc['p']:.4f} |"
        )
    return "\n".join([*lines, "", verdict(result)]) + "\n"


def verdict(result: dict[str, Any]) -> str:
    """One line on the pooled UA: which model is better, or that the test cannot tell."""
    pooled = result["pooled"]
    m = pooled[VERDICT_METRIC]
    low, high = m["ci95"]
    folds = len(result["folds"])
    where = f"{pooled['utterances']} test utterances" + (f" of {folds} folds" if folds > 1 else "")
    figures = (
        f"{VERDICT_METRIC} {m['a']:.4f} -> {m['b']:.4f}, B − A {m['diff']:+.4f} "
        f"[{low:+.4f}, {high:+.4f}], p = {m['p']:.4f}, resampled {pooled['resampled']}; "
        f"McNemar p = {pooled['McNemar']['p']:.4f}; {where}"
    )
    if m["p"] >= LEVEL:
        return f"verdict: no significant difference at {LEVEL} ({figures})"
    better = "B" if m["diff"] > 0 else "A"
    return f"verdict: {better} is better at {LEVEL} ({figures})"
