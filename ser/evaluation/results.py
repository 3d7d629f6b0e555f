"""Files a test leaves: test_metrics.json, predictions.csv, confusion_matrix.png, protocol.json.

``test_metrics.json`` holds, beside each of WA, UA and F1, its 95 % bootstrap interval
(``test/UA_ci95_lo``, ``test/UA_ci95_hi``: flat numbers, so the file stays ``{name: number}``),
resampled by speaker where the split names speakers (``ser.evaluation.stats``).

Every file is written under a temporary name and renamed, so a crash never leaves a half-written
result that looks whole.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from ser.evaluation import stats
from ser.evaluation.metrics import confusion_figure
from ser.evaluation.protocol import UNKNOWN_SPEAKERS, read_split_rows, write_card

log = logging.getLogger(__name__)


class PredictionRow(NamedTuple):
    """One scored item: its id, its true class ("" when unknown), a probability per class (none
    in the dimensional task), and a predicted and a true value per dimension (none in the
    categorical one)."""

    utt_id: str
    label: str
    probs: list[float]
    values: Sequence[float] = ()
    targets: Sequence[float] = ()


def gather_rows(rows: list[PredictionRow]) -> list[PredictionRow]:
    """All ranks' rows on every rank (a no-op without DDP), sorted by id for a stable file."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[list[PredictionRow] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part or []]
    return sorted(rows, key=lambda row: row.utt_id)


def write_predictions_csv(
    path: str | Path,
    rows: Sequence[PredictionRow],
    class_names: Sequence[str],
    id_column: str,
    dimensions: Sequence[str] = (),
) -> None:
    """CSV: id, label (when known), pred and one ``prob_<class>`` column per class (when there
    are classes), then per dimension its true value (``<dimension>``) and ``pred_<dimension>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_label = any(row.label for row in rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = [id_column, *(["label"] if with_label else [])]
        header += ["pred", *(f"prob_{name}" for name in class_names)] if class_names else []
        header += [column for name in dimensions for column in (name, f"pred_{name}")]
        writer.writerow(header)
        for row in rows:
            label = [row.label] if with_label else []
            scores = []
            if class_names:
                best = max(range(len(row.probs)), key=row.probs.__getitem__)
                scores = [class_names[best], *(f"{p:.6f}" for p in row.probs)]
            pairs = zip(row.targets, row.values, strict=True)
            values = [f"{value:.6f}" for pair in pairs for value in pair]
            writer.writerow([row.utt_id, *label, *scores, *values])
    tmp.replace(path)


def write_test_results(
    run_dir: str | Path,
    metrics: dict[str, float],
    rows: Sequence[PredictionRow],
    class_names: Sequence[str],
    confusion: torch.Tensor | None,
    dimensions: Sequence[str] = (),
    tested: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Write the test files and the protocol card into ``run_dir``; log the card and intervals.

    Args:
        run_dir: the run directory (its ``splits/`` give the card and the speakers).
        metrics: ``test/WA`` ... as computed by the module.
        rows: every scored test utterance.
        class_names: the class of each probability index (none: a dimensional model).
        confusion: (C, C) test counts, rows true (None: a dimensional model).
        dimensions: the dimension of each predicted value.
        tested: which model was scored (checkpoint file, epoch, step), kept in the card.

    Returns:
        ``metrics`` with the intervals added: what ``test_metrics.json`` holds.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    card = write_card(run_dir, {row.utt_id for row in rows}, tested)  # a leak stops any result
    speakers = None
    if card is not None:
        test = read_split_rows(run_dir / card["splits_dir"])["test"]
        speakers = {row["utt_id"]: row["speaker"] for row in test}
    if class_names:
        metrics = {**metrics, **_intervals(rows, class_names, speakers)}
    predictions = run_dir / "predictions.csv"
    write_predictions_csv(predictions, rows, class_names, id_column="utt_id", dimensions=dimensions)
    if confusion is not None:
        figure = confusion_figure(confusion, class_names, "test confusion matrix")
        tmp = run_dir / "confusion_matrix.tmp.png"
        figure.savefig(tmp, dpi=120)
        tmp.replace(run_dir / "confusion_matrix.png")
    # Last: a run with test_metrics.json has every test file (ser cv takes it as finished).
    _write_json(run_dir / "test_metrics.json", metrics)
    log.info("test results written to %s", run_dir)
    return metrics


def _intervals(
    rows: Sequence[PredictionRow], class_names: Sequence[str], speakers: dict[str, str] | None
) -> dict[str, float]:
    """``test/<metric>_ci95_lo/_hi`` of the rows, by speaker where every row's speaker is known."""
    labelled = [row for row in rows if row.label]
    if not labelled:
        return {}
    labels = np.array([class_names.index(row.label) for row in labelled])
    preds = np.array([int(np.argmax(row.probs)) for row in labelled])
    groups = [speakers.get(row.utt_id, "") for row in labelled] if speakers else None
    if groups is not None and UNKNOWN_SPEAKERS & set(groups):
        groups = None
    found = stats.intervals(labels, preds, len(class_names), groups)
    point = stats.scores(stats.confusion_of(labels, preds, len(class_names)))
    unit = stats.resampling_unit(groups)
    log.info("test metrics, 95 %% bootstrap interval (%s, %d utterances):", unit, len(labels))
    for name, (low, high) in found.items():
        log.info("  %-3s %.4f  [%.4f, %.4f]", name, float(point[name]), low, high)
    return {
        f"test/{name}_ci95_{end}": value
        for name, bounds in found.items()
        for end, value in zip(("lo", "hi"), bounds, strict=True)
    }


def _write_json(path: Path, values: dict[str, float]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
