"""End to end: a test leaves a protocol card and intervals; `ser compare` pairs two tests."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from cli_process import REPO

TEST_ARGS = ["--data.loader.num_workers", "0", "--data.loader.batch_size", "4"]


@pytest.fixture(scope="module")
def retest(demo_run, ser_cli):
    """``ser test`` of the demo checkpoint on the demo's data: a second run on the same split."""
    work = demo_run["work"]
    ser_cli(
        "test", "--ckpt_path", str(demo_run["ckpt"]), "-c", str(REPO / "configs/demo.yaml"),
        "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(demo_run["corpus"]),
        "--data.loader.cache_dir", str(work / "cache"), *TEST_ARGS,
        "--trainer.logger.init_args.save_dir", str(work / "retest"), cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "retest" / "demo").iterdir()
    return run_dir


def test_a_test_writes_its_protocol_card_and_intervals(demo_run):
    run_dir = demo_run["run_dir"]
    card = json.loads((run_dir / "protocol.json").read_text())
    assert card["reader"] == "ShEMODataModule" and card["split"]["kind"] == "Stratified"
    # Every test speaker of a stratified split also speaks in train: said plainly.
    test_speakers = card["parts"]["test"]["speakers"]
    assert card["speaker_overlap"]["train-test"]["count"] == test_speakers >= 2
    expected = f"speaker-dependent: {test_speakers} of 4 speakers in train and test"
    assert expected in card["summary"]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    for name in ("WA", "UA", "F1"):
        low, high = metrics[f"test/{name}_ci95_lo"], metrics[f"test/{name}_ci95_hi"]
        assert 0.0 <= low <= metrics[f"test/{name}"] <= high <= 1.0 and low < high


def test_compare_of_the_same_model_finds_no_difference(demo_run, retest, ser_cli, tmp_path):
    result = ser_cli(
        "compare",
        str(demo_run["run_dir"]),
        str(retest),
        "--output",
        str(tmp_path / "new" / "c.md"),
        cwd=tmp_path,
    )  # fmt: skip  (a folder that does not exist yet: made, as predict's and export's are)
    assert "| run |" in result.stdout and "McNemar" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("verdict: cannot tell at 0.05")
    pooled = json.loads((tmp_path / "new" / "c.json").read_text())["pooled"]
    assert pooled["UA"]["diff"] == 0 and pooled["UA"]["p"] == 1.0
    assert pooled["resampled"].startswith("by speaker (")


def with_predictions(run_dir, out, right: bool):
    """A copy of ``run_dir`` whose model is always right (or always wrong)."""
    shutil.copytree(run_dir, out)
    with (run_dir / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    classes = [name[5:] for name in rows[0] if name.startswith("prob_")]
    with (out / "predictions.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            wrong = classes[(classes.index(row["label"]) + 1) % len(classes)]
            writer.writerow({**row, "pred": row["label"] if right else wrong})
    return out


def test_compare_finds_the_better_model(retest, ser_cli, tmp_path):
    worst = with_predictions(retest, tmp_path / "worst", right=False)
    best = with_predictions(retest, tmp_path / "best", right=True)
    result = ser_cli("compare", str(worst), str(best), cwd=tmp_path)
    assert "| run | " in result.stdout and "| UA | 0.0000 | 1.0000 | +1.0000 |" in result.stdout
    # 3 test speakers: swapping the models on any subset of them, p cannot go below 2 / 2^3.
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith(
        "verdict: cannot tell at 0.05: with so few speakers no p is below 0.2500; test on more "
        "speakers (UA 0.0000 -> 1.0000"
    )
    assert "resampled by speaker (3, fewer than 10: a rough interval)" in verdict
    assert "p = 0.2500" in verdict and "McNemar p = 0.0312" in verdict


def test_compare_refuses_another_split(demo_run, ser_cli, tmp_path):
    # Another split of the checkpoint's corpus: AllTest (another seed's split is refused, its
    # test part holding utterances the checkpoint trained on).
    work = demo_run["work"]
    ser_cli(
        "test", "--ckpt_path", str(demo_run["ckpt"]), "-c", str(REPO / "configs/demo.yaml"),
        "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(demo_run["corpus"]),
        "--data.loader.cache_dir", str(work / "cache"), *TEST_ARGS, "--data.split", "AllTest",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "other"), cwd=work,
    )  # fmt: skip
    (other,) = (tmp_path / "other" / "demo").iterdir()
    result = ser_cli("compare", str(demo_run["run_dir"]), str(other), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "error: compare: run: the splits differ (split hash" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the error and the --debug hint
