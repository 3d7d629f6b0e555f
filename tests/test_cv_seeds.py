"""Cross-validation folds x seeds: the plan, the summary over folds of seed means, compare."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from cli_process import REPO

from ser.commands.cv import plan_folds
from ser.data.splits import SpeakerKFold
from ser.data.utterance import Utterance, write_csv
from ser.evaluation import protocol
from ser.evaluation.compare import compare, markdown
from ser.evaluation.cv_summary import summarise

DEMO = ["-c", str(REPO / "configs/demo.yaml")]
# Test UA of each run: the seeds of fold_0 and of fold_1 differ by 0.1 within the fold.
UA = {"fold_0-seed_0": 0.6, "fold_0-seed_1": 0.7, "fold_1-seed_0": 0.8, "fold_1-seed_1": 0.9}


def test_a_speaker_k_fold_with_two_seeds_plans_every_fold_with_every_seed(shemo_corpus):
    shemo = [*DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
             "--data.split", "SpeakerKFold", "--data.split.num_folds", "2",
             "--data.loader.seed", "5"]  # fmt: skip
    runs = plan_folds(shemo, [0, 1])
    assert [run.name for run in runs] == list(UA)
    # The seed moves the training; the split keeps the configuration's seed (5) in every run.
    assert runs[3].args == [
        "--data.init_args.split.init_args.fold", "1",
        "--seed_everything", "1", "--data.init_args.loader.seed", "1",
        "--data.init_args.loader.split_seed", "5",
    ]  # fmt: skip
    assert [run.name for run in plan_folds(shemo, None)] == ["fold_0", "fold_1"]


def test_seeds_of_a_curriculum_stay_seeds_of_the_whole_run():
    curriculum = [*DEMO, "-c", str(REPO / "configs/demo_curriculum.yaml")]  # no one split
    runs = plan_folds(curriculum, [0, 1])
    assert [run.name for run in runs] == ["seed_0", "seed_1"]
    # The curriculum's own loader, not the first stage's (a stage with loader settings of its
    # own is refused: every seed but the default failed).
    assert runs[1].args == ["--seed_everything", "1", "--data.init_args.loader.seed", "1"]


def utterances() -> list[Utterance]:
    """4 speakers x 6 utterances, anger and neutral alternating."""
    return [
        Utterance(
            f"s{s}_{i}", f"/c/s{s}_{i}.wav", f"s{s}", ("anger", "neutral")[i % 2], 1.0, 16_000
        )
        for s in range(4)
        for i in range(6)
    ]


def write_run(run_dir: Path, fold: int, ua: float, right: bool) -> None:
    """A tested run of speaker fold ``fold`` whose model is always right (or always wrong)."""
    parts = SpeakerKFold(2, fold)(utterances(), seed=0)
    for part, rows in parts.items():
        write_csv(run_dir / "splits" / f"{part}.csv", rows)
    made = {"reader": "TestData", "classes": ["anger", "neutral"], "merge": {}, "label_map": {}}
    made["split"] = {"kind": "SpeakerKFold", "settings": {}, "seed": 0, "speaker_independent": True}
    (run_dir / "splits" / "split.json").write_text(json.dumps(made))
    protocol.write_card(run_dir, {row.utt_id for row in parts["test"]})
    metrics = {"test/WA": ua, "test/UA": ua, "test/F1": ua - 0.1, "test/UA_ci95_lo": 0.0}
    (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
    lines = ["utt_id,label,pred,prob_anger,prob_neutral"]
    for row in parts["test"]:
        wrong = "neutral" if row.label == "anger" else "anger"
        lines.append(f"{row.utt_id},{row.label},{row.label if right else wrong},0.5,0.5")
    (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n")


def write_cv(cv_dir: Path, right: bool = True, runs: dict[str, float] = UA) -> Path:
    """A cv directory of ``runs`` (test UA by name; default 2 speaker folds x 2 seeds, as
    ``python -m ser cv --seeds 0 1`` leaves), each run's settings recording its seed (0 where
    its name has none)."""
    cv_dir.mkdir()
    (cv_dir / "cv_plan.json").write_text(json.dumps({"folds": [{"name": n} for n in runs]}))
    for name, ua in runs.items():
        write_run(cv_dir / name, int(name[5]), ua, right)
        seed = int(name.split("seed_")[1]) if "seed_" in name else 0
        settings = {"config": {"seed_everything": seed}}
        (cv_dir / f"{name}.settings.json").write_text(json.dumps(settings))
    return cv_dir


def test_the_summary_is_over_folds_of_seed_means_with_the_seed_spread(tmp_path):
    summary = summarise(write_cv(tmp_path / "cv"))
    assert list(summary["per_fold"]) == list(UA)  # every run listed
    assert summary["seed_averaged"]["fold_0"]["test/UA"] == pytest.approx(0.65)
    assert summary["mean"]["test/UA"] == pytest.approx(0.75)
    # The std is over the 2 fold means, not the 4 runs (which would give 0.129).
    assert summary["std"]["test/UA"] == pytest.approx(statistics.stdev([0.65, 0.85]))
    low, high = summary["ci95"]["test/UA"]
    assert high - low == pytest.approx(2 * 12.706 * 0.1, rel=1e-3)  # t(1) x std / sqrt(2 folds)
    assert summary["seed_std"]["test/UA"] == pytest.approx(statistics.stdev([0.6, 0.7]))
    assert sum(map(sum, summary["confusion"]["matrix"])) == 4 * 12  # every run's test counted
    table = (tmp_path / "cv" / "cv_summary.md").read_text()
    assert table.startswith("# Cross-validation: 4 of 4 runs (2 folds x 2 seeds)")
    assert "| fold_1: mean of 2 seeds | 0.8500 |" in table
    assert "| seed std (std over a fold's seeds, mean over folds) | 0.0707 |" in table
    # Each fold's seeds test the same utterances: 4 runs, 2 split hashes.
    assert summary["protocol"]["summary"].startswith("protocol of 4 runs of 2 splits: ")
    assert "summed over all 4 runs (2 folds x 2 seeds): each test utterance once per seed" in table


@pytest.mark.parametrize("runs_with_it", [["fold_0-seed_0"], ["fold_1-seed_1"]])
def test_a_metric_some_runs_lack_is_left_out_and_named(tmp_path, caplog, runs_with_it):
    """Runs tested by different versions of ser (test/NLL is newer than the other runs): the
    summary of what all have, the rest named, whichever run comes first."""
    cv_dir = write_cv(tmp_path / "cv")
    for name in runs_with_it:
        path = cv_dir / name / "test_metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "test/NLL": 0.5}))
    summary = summarise(cv_dir)
    assert "test/NLL" not in summary["mean"] and summary["mean"]["test/UA"] == pytest.approx(0.75)
    assert "test/NLL not in every run's test_metrics.json" in caplog.text
    assert "lacking in" in caplog.text and "fold_1-seed_0" in caplog.text


def test_a_fold_with_a_missing_seed_averages_what_finished_and_names_the_run(tmp_path):
    cv_dir = write_cv(tmp_path / "cv")
    (cv_dir / "fold_1-seed_1" / "test_metrics.json").unlink()
    summary = summarise(cv_dir)
    assert summary["missing"] == {"fold_1-seed_1": "missing"}
    assert summary["seed_averaged"]["fold_1"]["test/UA"] == pytest.approx(0.8)
    assert summary["mean"]["test/UA"] == pytest.approx((0.65 + 0.8) / 2)
    # Only fold_0 has two seeds to spread.
    assert summary["seed_std"]["test/UA"] == pytest.approx(statistics.stdev([0.6, 0.7]))
    table = (cv_dir / "cv_summary.md").read_text()
    assert "- fold_1-seed_1: missing" in table and "| fold_1: mean of 1 seeds |" in table


def test_compare_pairs_folds_x_seeds_by_run_and_pools_without_mcnemar(tmp_path):
    worst, best = write_cv(tmp_path / "a", right=False), write_cv(tmp_path / "b", right=True)
    result = compare(worst, best)
    assert list(result["folds"]) == list(UA)
    assert result["folds"]["fold_0-seed_1"]["McNemar"]["only_b"] == 12  # per run: as ever
    pooled = result["pooled"]
    assert pooled["utterances"] == 4 * 12 and pooled["UA"]["diff"] == 1.0
    assert "McNemar" not in pooled and pooled["resampled"].startswith("by speaker (4")
    verdict = markdown(result).strip().splitlines()[-1]
    assert verdict.startswith("verdict: cannot tell at 0.05: with so few speakers no p is below")
    assert "resampled by speaker (4, fewer than 10" in verdict
    assert "McNemar per run only" in verdict and "48 predictions of 4 runs" in verdict


def test_without_speakers_compare_draws_each_utterance_with_its_seeds(tmp_path):
    sides = [write_cv(tmp_path / side, right=side == "b") for side in "ab"]
    for test_csv in (tmp_path).glob("*/*/splits/test.csv"):
        with test_csv.open(newline="") as f:
            rows = list(csv.DictReader(f))
        with test_csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "speaker": "unknown"} for row in rows)
    pooled = compare(*sides)["pooled"]
    assert pooled["resampled"] == "by utterance, with its predictions of every seed"


def test_a_cv_without_seeds_pairs_with_the_runs_of_its_recorded_seed(tmp_path):
    plain = write_cv(tmp_path / "plain", right=False, runs={"fold_0": 0.5, "fold_1": 0.5})
    seeded = write_cv(tmp_path / "seeded", runs={"fold_0-seed_0": 0.9, "fold_1-seed_0": 0.9})
    result = compare(plain, seeded)
    assert list(result["folds"]) == ["fold_0-seed_0", "fold_1-seed_0"]
    pooled = result["pooled"]
    assert pooled["UA"]["diff"] == 1.0
    assert pooled["McNemar"]["only_b"] == 24  # one seed: each utterance tested once
    assert "24 test utterances of 2 folds" in markdown(result)
    (plain / "fold_1.settings.json").write_text(json.dumps({"config": {"seed_everything": 3}}))
    with pytest.raises(ValueError, match=r"fold_1-seed_3.*compare the same folds with the same"):
        compare(plain, seeded)


def test_a_class_recall_is_averaged_over_the_folds_whose_test_holds_it(tmp_path):
    """A leave-one-speaker-out fold whose speaker never says "neutral" has no recall of it (a
    recall of 0 pulled the mean down); the other folds' recalls make its mean."""
    cv_dir = write_cv(tmp_path / "cv")
    recalls = {"fold_0-seed_0": 0.5, "fold_0-seed_1": None, "fold_1-seed_0": 0.9,
               "fold_1-seed_1": None}  # fmt: skip
    for name, recall in recalls.items():
        path = cv_dir / name / "test_metrics.json"
        metrics = {**json.loads(path.read_text()), "test/recall/anger": 0.4}
        if recall is not None:
            metrics["test/recall/neutral"] = recall
        path.write_text(json.dumps(metrics))
    summary = summarise(cv_dir)
    assert summary["seed_averaged"]["fold_0"]["test/recall/neutral"] == 0.5
    assert summary["mean"]["test/recall/neutral"] == pytest.approx(0.7)  # fold means 0.5, 0.9
    assert summary["recall_folds"] == {"test/recall/anger": 2, "test/recall/neutral": 2}
    table = (cv_dir / "cv_summary.md").read_text().splitlines()
    row = next(line for line in table if line.startswith("| fold_0-seed_1 |"))
    assert row.endswith("| 0.4000 | — |")  # no neutral in this run's test
