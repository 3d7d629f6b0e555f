"""Real speech, real weights: ser's recipes against a logistic-regression probe, on the same folds.

    python benchmarks/real_speech.py --source WEIGHTS/whisper-base --data configs/data/emodb.yaml \
        --root EmoDB --work /tmp/real_speech \
        [--finetune configs/experiments/whisper_base_small_data.yaml --finetune_folds 0 1]

Ways, each on every fold of the data config's protocol (EmoDB: leave one speaker out, 10 folds):

- reference: each hidden state's mean over the clip's frames (ser's own extraction, as a
  statistics feature store computes it, from the audio cache ser's probe read, as its loader read
  it: the speech spans with ``trim_silence``, the probe's default; the level as recorded; no state
  normalisation), averaged over the layers, then scikit-learn's StandardScaler +
  LogisticRegression(C=0.1) trained on the fold's train split (the simple probe every recipe
  must beat);
- reference, normalized states: the same regression on the means of layer-normalized states
  (``normalize_states``: the features ser's probe recipe learns from, so the fair comparison
  for its head);
- reference, normalized states, balanced classes: the same with each class weighted by its
  inverse training frequency (``class_weight="balanced"``, as the probe recipe's loss weighs
  them): the fair comparison on a corpus whose classes are imbalanced;
- probe: ``python -m ser cv`` with ``--probe`` (default: the probe recipe);
- each ``--finetune`` config: ``python -m ser cv --fold_index k`` for the ``--finetune_folds``
  (a CPU affords a few folds; the table says which).

Prints UA / WA / macro-F1 mean ± std over folds and wall time per way, next to the reference on
the same folds, and writes the table to ``WORK/real_speech.md``. Never run in CI: without the
weights or the corpus it says what is missing and exits 0. Reruns reuse finished folds (``cv``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The regressions: on raw layer means, on those of layer-normalized states, and on those with
# each class weighted by its inverse training frequency (as the probe recipe's loss weighs them).
REFERENCES = (
    ("reference (LogReg C=0.1)", False, None),
    ("reference, normalized states (LogReg C=0.1)", True, None),
    ("reference, normalized states, balanced classes (LogReg C=0.1)", True, "balanced"),
)
METRICS = ("UA", "WA", "F1")


def run_cv(args: argparse.Namespace, config: str, cv_dir: Path, fold: int | None) -> float:
    """``python -m ser cv`` of one recipe (all folds, or fold ``fold``); its wall seconds."""
    command = [
        sys.executable, "-m", "ser", "cv", "--cv_dir", str(cv_dir),
        "-c", str(REPO / "configs/trainer/default.yaml"), "-c", args.data, "-c", config,
        "--data.root", args.root, "--model.backbone.init_args.source", args.source,
        "--data.loader.cache_dir", str(args.work / "cache"),
    ]  # fmt: skip
    if fold is not None:
        command += ["--fold_index", str(fold)]
    started = time.perf_counter()
    log_path = args.work / f"{cv_dir.name}.log"
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):  # 1: some folds failed, the others count; else cv refused to run
        from ser.commands.cv import last_error

        raise SystemExit(
            f"real_speech: ser cv stopped before running {cv_dir} (exit {code}; {log_path}): "
            f"{last_error(log_path)} (folds of other settings there: use another --work)"
        )
    return time.perf_counter() - started


def fold_names(cv_dir: Path) -> list[str]:
    plan = json.loads((cv_dir / "cv_plan.json").read_text(encoding="utf-8"))
    return [fold["name"] for fold in plan["folds"]]


def ser_scores(cv_dir: Path, folds: list[str]) -> dict[str, dict[str, float]]:
    """``{fold: {UA, WA, F1}}`` of the folds that finished (``test_metrics.json``)."""
    scores = {}
    for name in folds:
        path = cv_dir / name / "test_metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text(encoding="utf-8"))
            scores[name] = {m: float(metrics[f"test/{m}"]) for m in METRICS}
    return scores


def probe_cache(fold_dir: Path):
    """The audio cache a probe fold read, opened as its loader read it (its ``trim_silence``): the
    fold's saved data settings say which of the caches in the folder is its own (an older format's
    beside it, another corpus's) and how."""
    import yaml

    from ser.commands.cv import build_datamodule

    config = yaml.safe_load((fold_dir / "config.yaml").read_text(encoding="utf-8"))
    data = build_datamodule(config["data"])
    data.setup("fit")
    return data.cache


def layer_averaged_means(
    source: str, cache, work: Path, normalize_states: bool
) -> dict[str, np.ndarray]:
    """``{utt_id: (H,)}`` of every utterance of ``cache`` (an ``AudioCache``, ``probe_cache``):
    each hidden state's mean over the frames, averaged over the states (each layer-normalized
    first with ``normalize_states``)."""
    import contextlib

    import torch

    from ser.features.extract import audio_batches, extract
    from ser.models import HFBackbone

    backbone = HFBackbone(  # the audio as recorded, as a plain extractor-and-encoder probe has it
        source=source,
        freeze="all",
        layer_weighting=True,
        normalize_states=normalize_states,
        input_level_db=None,
    )
    total = sum(cache.num_samples(utt_id) for utt_id in cache.utt_ids)
    batches = audio_batches(cache, None, batch_size=8)
    features = {}
    steps = extract(backbone, batches, "statistics", torch.device("cpu"), contextlib.nullcontext(),
                    work, total)  # fmt: skip
    for utt_ids, arrays, _ in steps:  # and the clips' lengths, which the means do not need
        for utt_id, array in zip(utt_ids, arrays, strict=True):  # (2, L', H): mean, std
            features[utt_id] = array[0].astype(np.float32).mean(axis=0)  # (H,)
    return features


def split_rows(fold_dir: Path, part: str) -> tuple[list[str], list[str]]:
    """Utterance ids and labels of one part of a fold's exact split (``splits/<part>.csv``)."""
    import csv

    with open(fold_dir / "splits" / f"{part}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["utt_id"] for row in rows], [row["label"] for row in rows]


def reference_scores(
    cv_dir: Path, folds: list[str], means: dict[str, np.ndarray], class_weight: str | None = None
) -> dict[str, dict[str, float]]:
    """The logistic-regression reference on each fold's split, from the layer-averaged means
    (``class_weight``: scikit-learn's, None or "balanced")."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(utt_ids: list[str]) -> np.ndarray:
        return np.stack([means[utt_id] for utt_id in utt_ids])  # (N, H)

    scores = {}
    for name in folds:
        train_ids, train_labels = split_rows(cv_dir / name, "train")
        test_ids, test_labels = split_rows(cv_dir / name, "test")
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, class_weight=class_weight)
        )
        probe.fit(features(train_ids), train_labels)
        predicted = probe.predict(features(test_ids))
        scores[name] = {
            "UA": balanced_accuracy_score(test_labels, predicted),
            "WA": float(np.mean(np.array(test_labels) == predicted)),
            "F1": f1_score(test_labels, predicted, average="macro"),
        }
    return scores


def row(way: str, scores: dict[str, dict[str, float]], seconds: float, note: str) -> str:
    cells = []
    for metric in METRICS:
        values = np.array([fold[metric] for fold in scores.values()])
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        cells.append(f"{values.mean():.3f} ± {spread:.3f}")
    return f"| {way} | {len(scores)} | {' | '.join(cells)} | {seconds:.0f} | {note} |"


def table(ways: list[tuple[str, dict, float, str]], title: str) -> str:
    lines = [f"### {title}", "", "| way | folds | UA | WA | macro-F1 | wall s | note |"]
    lines.append("|---|---|---|---|---|---|---|")
    lines += [row(*way) for way in ways]
    return "\n".join(lines)


def missing_inputs(args: argparse.Namespace) -> list[str]:
    missing = []
    if not (Path(args.source) / "config.json").is_file():
        missing.append(f"--source {args.source}: no pretrained model folder (config.json)")
    if not Path(args.root).is_dir():
        missing.append(f"--root {args.root}: no corpus folder")
    return missing


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="pretrained encoder folder")
    parser.add_argument("--data", required=True, help="data config with a k-fold split")
    parser.add_argument("--root", required=True, help="the corpus folder (--data.root)")
    parser.add_argument("--work", type=Path, required=True, help="cv runs, cache, the table")
    parser.add_argument(
        "--probe", default=str(REPO / "configs/experiments/shemo_wav2vec2_probe.yaml")
    )
    parser.add_argument("--finetune", nargs="*", default=[], help="fine-tuning configs")
    parser.add_argument("--finetune_folds", type=int, nargs="*", default=[0, 1])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str | None:
    args = parse(argv)
    if missing := missing_inputs(args):
        print("real_speech: skipped, " + "; ".join(missing))
        return None
    args.work.mkdir(parents=True, exist_ok=True)
    probe_dir = args.work / "probe"
    probe_seconds = run_cv(args, args.probe, probe_dir, None)
    folds = fold_names(probe_dir)
    probe = ser_scores(probe_dir, folds)
    references, means = [], {}
    cache = probe_cache(probe_dir / folds[0])
    heard = "speech spans" if cache.trim_silence else "whole clips"
    for way, normalize_states, class_weight in REFERENCES:
        started = time.perf_counter()
        note = f"{heard}, encoder pass included"
        if normalize_states in means:  # one encoder pass per kind of state
            note = f"{heard}, the pass above"
        else:
            means[normalize_states] = layer_averaged_means(
                args.source, cache, args.work, normalize_states
            )
        scores = reference_scores(probe_dir, list(probe), means[normalize_states], class_weight)
        references.append((way, scores, time.perf_counter() - started, note))
    ways = [
        *references,
        (f"ser probe ({Path(args.probe).name})", probe, probe_seconds, "store build included"),
    ]
    sections = [table(ways, "All folds")]
    for config in args.finetune:
        cv_dir = args.work / Path(config).stem
        seconds = sum(run_cv(args, config, cv_dir, k) for k in args.finetune_folds)
        tuned = ser_scores(cv_dir, [folds[k] for k in args.finetune_folds])
        ways_here = [
            *(
                (way, {name: scores[name] for name in tuned if name in scores}, 0.0, "same folds")
                for way, scores, _, _ in references
            ),
            ("ser probe", {name: probe[name] for name in tuned if name in probe}, 0.0, ""),
            (f"ser fine-tune ({Path(config).name})", tuned, seconds, ""),
        ]
        sections.append(table(ways_here, f"Folds {sorted(tuned)}: {Path(config).name}"))
    header = (
        f"Real-speech benchmark, {datetime.date.today()}, {platform.machine()} "
        f"{platform.processor() or ''}; source {args.source}; data {args.data} at {args.root}"
    )
    text = header + "\n\n" + "\n\n".join(sections) + "\n"
    (args.work / "real_speech.md").write_text(text, encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
