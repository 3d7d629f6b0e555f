"""The summary of a cross-validation directory: per fold, mean ± std, summed confusion matrix.

Reads what each fold's run left behind (``test_metrics.json``, ``predictions.csv``) and the plan
``cv_plan.json`` written by ``ser.commands.cv``, so a fold that failed or never ran is named
rather than left out unnoticed. The std is the sample standard deviation over folds (n - 1), as
papers reporting "mean ± std over folds" use; the interval is the 95 % t interval of the mean over
folds. Folds are averaged only when their protocol cards agree in kind (``protocol.json``, one
per fold and one for the whole directory, with every fold's split hash). A dimensional (or
multitask) model's CCC, Pearson r and MAE per dimension and its mean CCC get the same mean ± std
and interval; the confusion matrix needs classes.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ser.evaluation.metrics import confusion_figure
from ser.evaluation.protocol import CARD_FILE, folds_card, read_card
from ser.evaluation.stats import fold_interval

log = logging.getLogger(__name__)

PLAN_FILE = "cv_plan.json"
MAIN_METRICS = ("test/WA", "test/UA", "test/F1")
# Dimensional metrics (ser.evaluation.dimensional): test/CCC (the mean), test/<score>/<dimension>.
DIMENSIONAL_SCORES = ("CCC", "pearson", "MAE")


def fold_status(cv_dir: Path, name: str) -> str:
    """ "done" (test results written), "failed (exit N, see LOG)" or "missing"."""
    if (cv_dir / name / "test_metrics.json").is_file():
        return "done"
    exit_file = cv_dir / f"{name}.exit"
    if exit_file.is_file():
        code = exit_file.read_text(encoding="utf-8").strip()
        return f"failed (exit {code}, see {cv_dir / f'{name}.log'})"
    return "missing"


def summarise(cv_dir: Path) -> dict[str, Any]:
    """Write ``cv_summary.json``/``.md`` and ``cv_confusion_matrix.png``; return the json."""
    plan_path = cv_dir / PLAN_FILE
    if not plan_path.is_file():
        raise SystemExit(
            f"cv-summary: {plan_path} not found; give the --cv_dir of a `python -m ser cv` run"
        )
    names = [fold["name"] for fold in json.loads(plan_path.read_text(encoding="utf-8"))["folds"]]
    statuses = {name: fold_status(cv_dir, name) for name in names}
    done = [name for name in names if statuses[name] == "done"]
    missing = {name: status for name, status in statuses.items() if status != "done"}
    for name, status in missing.items():
        log.warning("cv: %s %s; left out of the means", name, status)
    card = folds_card({name: read_card(cv_dir / name) for name in done})
    _write(cv_dir / CARD_FILE, json.dumps(card, indent=2) + "\n")
    log.info("cv %s", card["summary"])
    folds = {name: _read_json(cv_dir / name / "test_metrics.json") for name in done}
    # A fold's own bootstrap bounds are not averaged: the interval over folds replaces them.
    found = [
        key for key in next(iter(folds.values()), {}) if key != "test/loss" and "_ci95_" not in key
    ]
    keys = [key for key in MAIN_METRICS if key in found] + sorted(set(found) - set(MAIN_METRICS))
    summary: dict[str, Any] = {
        "folds_planned": names,
        "folds_used": done,
        "missing": missing,
        "mean": {key: statistics.fmean(f[key] for f in folds.values()) for key in keys},
        "std": {key: _std([f[key] for f in folds.values()]) for key in keys},
        "ci95": {
            key: list(fold_interval([f[key] for f in folds.values()]))
            for key in keys
            if _with_interval(key)
        },
        "protocol": card,
        "per_fold": folds,
    }
    classes, matrix = _summed_confusion([cv_dir / name / "predictions.csv" for name in done])
    summary["confusion"] = {"classes": classes, "matrix": matrix.tolist()}
    _write(cv_dir / "cv_summary.json", json.dumps(summary, indent=2) + "\n")
    _write(cv_dir / "cv_summary.md", _markdown(summary))
    if classes:
        title = f"test confusion, summed over {len(done)} folds"
        figure = confusion_figure(matrix, classes, title)
        figure.savefig(cv_dir / "cv_confusion_matrix.tmp.png", dpi=120)
        (cv_dir / "cv_confusion_matrix.tmp.png").replace(cv_dir / "cv_confusion_matrix.png")
    means = ", ".join(
        f"{key[5:]} {summary['mean'][key]:.3f} ± {summary['std'][key]:.3f} "
        f"[{summary['ci95'][key][0]:.3f}, {summary['ci95'][key][1]:.3f}]"
        for key in summary["mean"]
        if key in MAIN_METRICS or key.startswith("test/CCC")  # the headline figures
    )
    log.info("cv: %d of %d folds: %s; summary in %s", len(done), len(names), means, cv_dir)
    return summary


def _with_interval(key: str) -> bool:
    """WA, UA, F1 and the dimensional scores get an interval over folds."""
    return key in MAIN_METRICS or key.removeprefix("test/").split("/")[0] in DIMENSIONAL_SCORES


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _read_json(path: Path) -> dict[str, float]:
    return json.loads(path.read_text(encoding="utf-8"))


def _summed_confusion(paths: list[Path]) -> tuple[list[str], torch.Tensor]:
    """Class names (from the ``prob_<class>`` columns) and the (C, C) counts of all files (none
    of either for a dimensional model)."""
    classes: list[str] = []
    matrix = torch.zeros(0, 0, dtype=torch.long)
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            names = [c[5:] for c in reader.fieldnames or [] if c.startswith("prob_")]
            if not classes:
                classes, matrix = names, torch.zeros(len(names), len(names), dtype=torch.long)
            if names != classes:
                raise SystemExit(f"cv-summary: {path} has classes {names}, other folds {classes}")
            for row in reader if classes else ():  # a dimensional model has no classes
                matrix[classes.index(row["label"]), classes.index(row["pred"])] += 1
    return classes, matrix


def _markdown(summary: dict[str, Any]) -> str:
    folds, mean, std = summary["per_fold"], summary["mean"], summary["std"]
    keys = list(mean)
    header = ["fold", *(key.removeprefix("test/") for key in keys)]
    lines = [
        f"# Cross-validation: {len(folds)} of {len(summary['folds_planned'])} folds",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, values in folds.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[k]:.4f}" for k in keys) + " |")
    lines.append("| **mean ± std** | " + " | ".join(f"{mean[k]:.4f} ± {std[k]:.4f}" for k in keys))
    lines[-1] += " |"
    ci95 = summary["ci95"]
    lines.append(
        "| 95 % interval over folds | "
        + " | ".join(f"[{ci95[k][0]:.4f}, {ci95[k][1]:.4f}]" if k in ci95 else "" for k in keys)
        + " |"
    )
    lines += ["", summary["protocol"]["summary"]]
    if summary["missing"]:
        lines += ["", "Not in the means:", ""]
        lines += [f"- {name}: {status}" for name, status in summary["missing"].items()]
    classes, matrix = summary["confusion"]["classes"], summary["confusion"]["matrix"]
    if classes:
        lines += ["", "Confusion matrix summed over folds (rows true, columns predicted):", ""]
        lines += ["| true \\ pred | " + " | ".join(classes) + " |"]
        lines += ["|" + "---|" * (len(classes) + 1)]
        lines += [
            f"| {name} | " + " | ".join(str(n) for n in row) + " |"
            for name, row in zip(classes, matrix, strict=True)
        ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str]) -> int:
    """``cv-summary DIR``: summarise the finished folds; exit 1 when a fold is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m ser cv-summary",
        description="Gather the finished folds of a cv directory into cv_summary.json/.md/.png.",
    )
    parser.add_argument("cv_dir", help="the --cv_dir of `python -m ser cv`")
    options = parser.parse_args(list(argv))
    return 1 if summarise(Path(options.cv_dir))["missing"] else 0
