"""Files a run leaves behind: test_metrics.json, predictions.csv, confusion_matrix.png.

Every file is written under a temporary name and renamed, so a crash never leaves a half-written
result that looks whole.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist

from ser.evaluation.metrics import confusion_figure

log = logging.getLogger(__name__)


class PredictionRow(NamedTuple):
    """One scored item: its id, its true class ("" when unknown) and a probability per class."""

    utt_id: str
    label: str
    probs: list[float]


def gather_rows(rows: list[PredictionRow]) -> list[PredictionRow]:
    """All ranks' rows on every rank (a no-op without DDP), sorted by id for a stable file."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[list[PredictionRow] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part or []]
    return sorted(rows, key=lambda row: row.utt_id)


def write_predictions_csv(
    path: str | Path, rows: Sequence[PredictionRow], class_names: Sequence[str], id_column: str
) -> None:
    """CSV: id, label (when known), pred, one ``prob_<class>`` column per class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_label = any(row.label for row in rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = [id_column, *(["label"] if with_label else []), "pred"]
        writer.writerow(header + [f"prob_{name}" for name in class_names])
        for row in rows:
            best = max(range(len(row.probs)), key=row.probs.__getitem__)
            label = [row.label] if with_label else []
            writer.writerow(
                [row.utt_id, *label, class_names[best], *(f"{p:.6f}" for p in row.probs)]
            )
    tmp.replace(path)


def write_test_results(
    run_dir: str | Path,
    metrics: dict[str, float],
    rows: Sequence[PredictionRow],
    class_names: Sequence[str],
    confusion: torch.Tensor,
) -> None:
    """Write the three test files into ``run_dir`` and log where they are."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "test_metrics.json", metrics)
    write_predictions_csv(run_dir / "predictions.csv", rows, class_names, id_column="utt_id")
    figure = confusion_figure(confusion, class_names, "test confusion matrix")
    tmp = run_dir / "confusion_matrix.tmp.png"
    figure.savefig(tmp, dpi=120)
    tmp.replace(run_dir / "confusion_matrix.png")
    log.info("test results written to %s", run_dir)


def _write_json(path: Path, values: dict[str, float]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
