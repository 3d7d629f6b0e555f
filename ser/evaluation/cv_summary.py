"""The summary of a cross-validation directory: per fold, mean ± std, summed confusion matrix.

Reads what each fold's run left behind (``test_metrics.json``, ``predictions.csv``) and the plan
``cv_plan.json`` written by ``ser.commands.cv``, so a fold that failed or never ran is named
rather than left out unnoticed. The std is the sample standard deviation over folds (n - 1), as
papers reporting "mean ± std over folds" use; the interval is the 95 % t interval of the mean over
folds. Folds are averaged only when their protocol cards agree in kind (``protocol.json``, one
per fold and one for the whole directory, with every fold's split hash). A dimensional (or
multitask) model's CCC, Pearson r and MAE per dimension and its mean CCC get the same mean ± std
and interval; the confusion matrix needs classes. Runs of folds x seeds (``<fold>-seed_<s>``):
every run is listed, each fold's seeds are averaged first (the fold is the independent unit) and
the mean ± std and interval are over those fold means; ``seed_std`` is the std across a fold's
seeds, averaged over folds; the confusion matrix sums every run. A class's recall is averaged
over the folds whose test holds the class (``recall_folds`` counts them): a fold without it has
no recall of it, not a recall of 0.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ser.evaluation.metrics import confusion_figure
from ser.evaluation.protocol import CARD_FILE, folds_card, read_card
from ser.evaluation.stats import fold_interval

log = logging.getLogger(__name__)

PLAN_FILE = "cv_plan.json"
SEED_RUN = re.compile(r"(?P<fold>.+)-seed_(?P<seed>-?\d+)")  # a run of a plan of folds x seeds
MAIN_METRICS = ("test/WA", "test/UA", "test/F1")
PER_CLASS = "test/recall/"  # a fold whose test lacks the class has none
# Dimensional metrics (ser.evaluation.dimensional): test/CCC (the mean), test/<score>/<dimension>.
DIMENSIONAL_SCORES = ("CCC", "pearson", "MAE")


def fold_status(cv_dir: Path, name: str) -> str:
    """ "done" (test results written), "running (see LOG)" (a cv process holds it), "failed
    (exit N, see LOG)" or "missing"."""
    if (cv_dir / name / "test_metrics.json").is_file():
        return "done"
    if running_file(cv_dir, name).is_file():
        return f"running (see {cv_dir / f'{name}.log'})"
    exit_file = cv_dir / f"{name}.exit"
    if exit_file.is_file():
        code = exit_file.read_text(encoding="utf-8").strip()
        return f"failed (exit {code}, see {cv_dir / f'{name}.log'})"
    return "missing"


def seed_run_name(fold: str, seed: int) -> str:
    """The run of fold ``fold`` with seed ``seed`` in a plan of folds x seeds."""
    return f"{fold}-seed_{seed}"


def running_file(cv_dir: Path, name: str) -> Path:
    """Held by the cv process running ``name`` (its host and pid; ``ser.commands.cv``)."""
    return cv_dir / f"{name}.running"


def settings_file(cv_dir: Path, name: str) -> Path:
    """The resolved settings that made the finished run ``name`` (written by ``cv``)."""
    return cv_dir / f"{name}.settings.json"


def recorded_seed(cv_dir: Path, name: str) -> int | None:
    """The ``seed_everything`` run ``name`` was made with, None where it was not recorded."""
    path = settings_file(cv_dir, name)
    if not path.is_file():
        return None
    seed = json.loads(path.read_text(encoding="utf-8"))["config"].get("seed_everything")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def fold_of_run(name: str) -> str | None:
    """The fold of a ``<fold>-seed_<s>`` run; None for a run that is one fold or one seed."""
    match = SEED_RUN.fullmatch(name)
    return match["fold"] if match else None


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
    runs = {name: _read_json(cv_dir / name / "test_metrics.json") for name in done}
    # A fold's own bootstrap bounds are not averaged: the interval over folds replaces them.
    found = [key for key in _shared_metrics(runs) if key != "test/loss" and "_ci95_" not in key]
    keys = [key for key in MAIN_METRICS if key in found] + sorted(set(found) - set(MAIN_METRICS))
    seeded = bool(names) and all(fold_of_run(name) for name in names)
    # Folds x seeds: the fold is the independent unit, so its seeds are averaged first.
    folds = _seed_means(runs, keys) if seeded else runs
    summary: dict[str, Any] = {
        "folds_planned": names,
        "folds_used": done,
        "missing": missing,
        "mean": {key: statistics.fmean(_values(folds, key)) for key in keys},
        "std": {key: _std(_values(folds, key)) for key in keys},
        "ci95": {
            key: list(fold_interval(_values(folds, key))) for key in keys if _with_interval(key)
        },
        "recall_folds": {
            key: len(_values(folds, key)) for key in keys if key.startswith(PER_CLASS)
        },
        "protocol": card,
        "per_fold": runs,
    }
    if seeded:
        summary["seed_averaged"] = folds
        summary["seed_std"] = _seed_std(runs, keys)
    classes, matrix = _summed_confusion([cv_dir / name / "predictions.csv" for name in done])
    summary["confusion"] = {"classes": classes, "matrix": matrix.tolist()}
    _write(cv_dir / "cv_summary.json", json.dumps(summary, indent=2) + "\n")
    _write(cv_dir / "cv_summary.md", _markdown(summary))
    if classes:
        figure = confusion_figure(matrix, classes, f"test confusion, summed over {_runs(summary)}")
        figure.savefig(cv_dir / "cv_confusion_matrix.tmp.png", dpi=120)
        (cv_dir / "cv_confusion_matrix.tmp.png").replace(cv_dir / "cv_confusion_matrix.png")
    _log_headline(summary, cv_dir)
    return summary


def _shared_metrics(runs: dict[str, dict[str, float]]) -> list[str]:
    """The metrics every run has, in the first run's order. Runs tested by different versions
    of ser (a cv resumed or rerun after an upgrade) can differ: a metric some lack is left out
    of the means, and named."""
    every = {key: None for r in runs.values() for key in r}  # in the runs' order
    shared = [k for k in every if all(k in r for r in runs.values()) or k.startswith(PER_CLASS)]
    partial = sorted(set(every) - set(shared))
    if partial:
        lacking = sorted(name for name, r in runs.items() if not set(partial) <= set(r))
        log.warning(
            "cv: %s not in every run's test_metrics.json (lacking in %s: tested by another "
            "version of ser?); left out of the means",
            ", ".join(partial),
            ", ".join(lacking),
        )
    return shared


def _values(runs: Any, key: str) -> list[float]:
    """``key``'s value in each of ``runs`` (a dict or list of metric dicts) that has it."""
    return [run[key] for run in (runs.values() if isinstance(runs, dict) else runs) if key in run]


def _seed_means(runs: dict[str, dict[str, float]], keys: list[str]) -> dict[str, dict[str, float]]:
    """Each fold's mean over its finished seeds: fold -> metric -> mean."""
    return {
        fold: {key: statistics.fmean(_values(seeds, key)) for key in keys if _values(seeds, key)}
        for fold, seeds in _by_fold(runs).items()
    }


def _seed_std(runs: dict[str, dict[str, float]], keys: list[str]) -> dict[str, float | None]:
    """Per metric, the mean over folds of the sample std across the fold's seeds (folds with at
    least two finished seeds; None where no fold has two)."""
    spread = [seeds for seeds in _by_fold(runs).values() if len(seeds) > 1]
    return {
        key: statistics.fmean(_std(_values(seeds, key)) for seeds in spread) if spread else None
        for key in keys
    }


def _by_fold(runs: dict[str, dict[str, float]]) -> dict[str, list[dict[str, float]]]:
    grouped: dict[str, list[dict[str, float]]] = {}
    for name, metrics in runs.items():
        grouped.setdefault(fold_of_run(name) or name, []).append(metrics)
    return grouped


def _shape(summary: dict[str, Any]) -> str:
    """``2 folds x 3 seeds`` of a plan of folds x seeds."""
    planned = summary["folds_planned"]
    folds = len({fold_of_run(name) for name in planned})
    return f"{folds} folds x {len(planned) // folds} seeds"


def _runs(summary: dict[str, Any]) -> str:
    """``2 folds``, or ``4 runs (2 folds x 2 seeds)`` where the runs are folds x seeds."""
    used = len(summary["folds_used"])
    return f"{used} runs ({_shape(summary)})" if "seed_averaged" in summary else f"{used} folds"


def _log_headline(summary: dict[str, Any], cv_dir: Path) -> None:
    means = ", ".join(
        f"{key[5:]} {summary['mean'][key]:.3f} ± {summary['std'][key]:.3f} "
        f"[{summary['ci95'][key][0]:.3f}, {summary['ci95'][key][1]:.3f}]"
        for key in summary["mean"]
        if key in MAIN_METRICS or key.startswith("test/CCC")  # the headline figures
    )
    used, planned = len(summary["folds_used"]), len(summary["folds_planned"])
    means = means or "no results to average"  # every fold failed
    if "seed_averaged" not in summary:
        log.info("cv: %d of %d folds: %s; summary in %s", used, planned, means, cv_dir)
        return
    spread = summary["seed_std"].get("test/UA")
    log.info(
        "cv: %d of %d runs (%s), over folds of seed means: %s; seed std of UA %s; summary in %s",
        used, planned, _shape(summary), means, "n/a" if spread is None else f"{spread:.3f}", cv_dir,
    )  # fmt: skip


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
    runs, mean, std = summary["per_fold"], summary["mean"], summary["std"]
    keys = list(mean)
    header = ["fold", *(key.removeprefix("test/") for key in keys)]
    planned = len(summary["folds_planned"])
    seeded = "seed_averaged" in summary
    title = f"{len(runs)} of {planned} runs ({_shape(summary)})" if seeded else None
    lines = [
        f"# Cross-validation: {title or f'{len(runs)} of {planned} folds'}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    rows = dict(runs)
    if seeded:  # each fold's mean over its seeds: what the mean ± std is taken over
        counts = Counter(fold_of_run(name) for name in runs)
        rows |= {f"{f}: mean of {counts[f]} seeds": v for f, v in summary["seed_averaged"].items()}
    for name, values in rows.items():
        cells = (f"{values[k]:.4f}" if k in values else "—" for k in keys)  # no such class
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    label = "**mean ± std over folds of seed means**" if seeded else "**mean ± std**"
    lines.append(f"| {label} | " + " | ".join(f"{mean[k]:.4f} ± {std[k]:.4f}" for k in keys))
    lines[-1] += " |"
    ci95 = summary["ci95"]
    lines.append(
        "| 95 % interval over folds | "
        + " | ".join(f"[{ci95[k][0]:.4f}, {ci95[k][1]:.4f}]" if k in ci95 else "" for k in keys)
        + " |"
    )
    if seeded:
        spread = summary["seed_std"]
        lines.append(
            "| seed std (std over a fold's seeds, mean over folds) | "
            + " | ".join("n/a" if spread[k] is None else f"{spread[k]:.4f}" for k in keys)
            + " |"
        )
    lines += ["", summary["protocol"]["summary"]]
    if summary["missing"]:
        lines += ["", "Not in the means:", ""]
        lines += [f"- {name}: {status}" for name, status in summary["missing"].items()]
    return "\n".join(lines + _confusion_lines(summary)) + "\n"


def _confusion_lines(summary: dict[str, Any]) -> list[str]:
    classes, matrix = summary["confusion"]["classes"], summary["confusion"]["matrix"]
    if not classes:
        return []
    where = (
        f"all {_runs(summary)}: each test utterance once per seed"
        if "seed_averaged" in summary
        else "folds"
    )
    return [
        "",
        f"Confusion matrix summed over {where} (rows true, columns predicted):",
        "",
        "| true \\ pred | " + " | ".join(classes) + " |",
        "|" + "---|" * (len(classes) + 1),
        *(
            f"| {name} | " + " | ".join(str(n) for n in row) + " |"
            for name, row in zip(classes, matrix, strict=True)
        ),
    ]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
