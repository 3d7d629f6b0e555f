"""Cross-validation through the real CLI: folds are ordinary runs, the summary is their mean."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_process import REPO, ser
from corpus_fixtures import write_iemocap

from ser.commands import cv
from ser.commands.cv import (
    changed_folds,
    compared,
    differences,
    fold_settings,
    keep_checkpoints,
    last_error,
    main,
    parse_fit_config,
    plan_folds,
    same_error,
)
from ser.data.corpora.iemocap import scan as iemocap_scan
from ser.data.splits import SpeakerKFold
from ser.evaluation import results
from ser.evaluation.cv_summary import fold_status
from ser.models.checkpoint import RESUME_KEY, model_only

DEMO = ["-c", str(REPO / "configs/demo.yaml")]


# Each fold is a fresh `ser fit` process (~10 s of start-up and 1 epoch on 2 cores).
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, shemo_corpus):
    """A 2-fold cv of the demo model as a probe from a feature store (1 epoch) on the shared
    synthetic ShEMO."""
    work = tmp_path_factory.mktemp("cv")
    fit_args = [
        *DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
        "--data.loader.cache_dir", str(work / "cache"), "--data.split", "KFold",
        "--data.split.num_folds", "2", "--data.split.val_fraction", "0.25",
        "--trainer.max_epochs", "1", "--data.loader.batch_size", "4",
        "--data.loader.num_workers", "0", "--model.backbone.init_args.freeze", "all",
        "--model.head.init_args.standardize", "true", "--model.feature_store", "statistics",
    ]  # fmt: skip
    ran = ser("cv", "--cv_dir", str(work / "cv"), "--checkpoints", "model", *fit_args, cwd=work)
    return {"work": work, "cv_dir": work / "cv", "fit_args": fit_args, "stderr": ran.stderr}


@slow
def test_summary_is_the_mean_of_the_folds_own_metrics(cv_run):
    cv_dir = cv_run["cv_dir"]
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    folds = [json.loads((cv_dir / f"fold_{i}" / "test_metrics.json").read_text()) for i in (0, 1)]
    assert summary["folds_used"] == ["fold_0", "fold_1"] and not summary["missing"]
    for key in ("test/WA", "test/UA", "test/F1", "test/recall/anger"):
        values = [fold[key] for fold in folds]
        assert summary["mean"][key] == pytest.approx(statistics.fmean(values))
        assert summary["std"][key] == pytest.approx(statistics.stdev(values))
    # The summed confusion matrix counts every test utterance of both folds once.
    tested = 0
    for i in (0, 1):
        with open(cv_dir / f"fold_{i}" / "predictions.csv", newline="") as f:
            tested += sum(1 for _ in csv.DictReader(f))
    assert sum(map(sum, summary["confusion"]["matrix"])) == tested == 48
    assert (cv_dir / "cv_confusion_matrix.png").stat().st_size > 0
    assert "mean ± std" in (cv_dir / "cv_summary.md").read_text()


@slow
def test_folds_share_one_feature_store_extraction(cv_run):
    cv_dir = cv_run["cv_dir"]
    (store,) = (cv_run["work"] / "cache").glob("*/features/*")
    assert f"Feature store {store} (built in " in (cv_dir / "fold_0.log").read_text()
    assert f"Feature store {store} (reused)" in (cv_dir / "fold_1.log").read_text()


@slow
def test_missing_fold_is_named_and_left_out(cv_run, tmp_path):
    cv_dir = tmp_path / "cv"
    shutil.copytree(cv_run["cv_dir"], cv_dir)
    shutil.rmtree(cv_dir / "fold_1")
    (cv_dir / "fold_1.exit").unlink()
    result = ser("cv-summary", str(cv_dir), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "fold_1 missing" in result.stderr
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["missing"] == {"fold_1": "missing"}
    fold_0 = json.loads((cv_dir / "fold_0" / "test_metrics.json").read_text())
    assert summary["mean"]["test/UA"] == fold_0["test/UA"]
    assert "fold_1: missing" in (cv_dir / "cv_summary.md").read_text()


@slow
def test_rerun_skips_finished_folds_and_reruns_a_failed_one(cv_run):
    cv_dir = cv_run["cv_dir"]
    finished = (cv_dir / "fold_0" / "test_metrics.json").stat().st_mtime_ns
    (cv_dir / "fold_1" / "test_metrics.json").unlink()  # as if fold 1 died before its test
    result = ser("cv", "--cv_dir", str(cv_dir), *cv_run["fit_args"], cwd=cv_run["work"])
    assert "fold_0: finished earlier, skipped" in result.stderr
    assert (cv_dir / "fold_0" / "test_metrics.json").stat().st_mtime_ns == finished
    assert (cv_dir / "fold_1" / "test_metrics.json").is_file()
    assert list(cv_dir.glob("fold_1.incomplete-*"))  # the dead try is kept, not overwritten


def test_a_failed_fold_is_reported_and_the_same_error_twice_stops_the_rest(shemo_corpus, tmp_path):
    missing = tmp_path / "weights"  # every fold fails on the same bad source, in a second
    fit_args = [
        *DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
        "--data.split", "KFold", "--data.split.num_folds", "3",
        "--model.backbone.init_args.model_type", "null",
        "--model.backbone.init_args.source", str(missing),
    ]  # fmt: skip
    cv_dir = tmp_path / "cv"
    result = ser("cv", "--cv_dir", str(cv_dir), *fit_args, cwd=tmp_path, check=False)
    assert result.returncode == 1
    for fold in ("fold_0", "fold_1"):
        (line,) = [line for line in result.stderr.splitlines() if f"{fold}: failed" in line]
        assert f"(see {cv_dir / fold}.log): error: HFBackbone source '{missing}'" in line
    assert "fold_0 and fold_1 failed with the same error; the other 1 run(s)" in result.stderr
    assert not (cv_dir / "fold_2.log").exists()  # not run
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert set(summary["missing"]) == {"fold_0", "fold_1", "fold_2"}


def test_a_fits_saved_config_plans_folds_but_a_checkpoint_to_resume_is_refused(
    demo_run, tmp_path, capsys
):
    """``ser cv -c RUN/config.yaml`` (fit's ckpt_path, weights_only, test_after_fit in it)
    plans the folds; a ckpt_path, which every fold would resume, stops cv before any runs."""
    saved = ["-c", str(demo_run["run_dir"] / "config.yaml"), "--data.split", "KFold",
             "--data.split.num_folds", "2"]  # fmt: skip
    assert [fold.name for fold in plan_folds(saved, None)] == ["fold_0", "fold_1"]
    resumed = [*saved, "--ckpt_path", str(demo_run["run_dir"] / "checkpoints" / "last.ckpt")]
    with pytest.raises(SystemExit) as stop:
        main(["--cv_dir", str(tmp_path / "cv"), *resumed])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert f"error: --ckpt_path {resumed[-1]}: every fold would resume that one run" in error
    assert "--model.init_from CKPT" in error and not (tmp_path / "cv").exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--trainer.fast_dev_run", "a fold run so writes no test results"),
        ("--trainer.logger", "each fold's results go to its run directory"),
    ],
)
def test_trainer_flags_that_leave_a_fold_without_results_are_refused(
    option, expected, demo_run, tmp_path, capsys
):
    value = "true" if option.endswith("fast_dev_run") else "false"
    options = ["-c", str(demo_run["run_dir"] / "config.yaml"), "--data.split", "KFold",
               "--data.split.num_folds", "2", option, value]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main(["--cv_dir", str(tmp_path / "cv"), *options])
    assert stop.value.code == 2
    assert f"error: {option} {value}: {expected}" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_finished_folds_keep_their_checkpoints_as_the_model_alone(cv_run):
    """``--checkpoints model``: each fold's last.ckpt loses the optimizer state it was saved with
    once the fold's results are written."""
    for fold in ("fold_0", "fold_1"):
        assert f"{fold}: checkpoints kept as the model alone" in cv_run["stderr"]
        folder = cv_run["cv_dir"] / fold / "checkpoints"
        assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
        for path in folder.iterdir():
            assert RESUME_KEY not in torch.load(path, map_location="cpu", weights_only=True)


def test_keep_checkpoints_rewrites_or_removes_them(demo_run, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(demo_run["ckpt"].parent, folder)
    best = (folder / "best.ckpt").read_bytes()
    full = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    keep_checkpoints(folder, "all", "fold_0")
    assert RESUME_KEY in torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    keep_checkpoints(folder, "model", "fold_0")
    lean = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(lean) == set(model_only(full))
    for key, tensor in full["state_dict"].items():
        assert torch.equal(lean["state_dict"][key], tensor), key
    assert (folder / "best.ckpt").read_bytes() == best  # the model alone already: untouched
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no .tmp
    keep_checkpoints(folder, "none", "fold_0")
    assert not folder.exists()


def test_last_error_finds_the_user_error_or_the_exception_line(tmp_path):
    log = tmp_path / "fold.log"
    lines = ["Epoch 1", "Traceback (most recent call last):", "  File x",
             "torch.OutOfMemoryError: CUDA out of memory", "Exception ignored in: <x>"]  # fmt: skip
    log.write_text("\n".join(lines) + "\n")
    assert last_error(log) == "torch.OutOfMemoryError: CUDA out of memory"
    log.write_text("error: --data.root: no such folder\n(run with --debug)\n")
    assert last_error(log) == "error: --data.root: no such folder"
    log.write_text("Killed\n")
    assert last_error(log) == ""
    # A DDP fold: torch.distributed puts the rank before each line of a process's traceback.
    ranked = ["Traceback (most recent call last):", "  File x", "RuntimeError: no batch here"]
    log.write_text("".join(f"[rank1]: {line}\n" for line in ranked))
    assert last_error(log) == "RuntimeError: no batch here"


def test_errors_that_differ_by_a_fold_number_are_one_error():
    """Two folds failing with "the val part would be empty (fold 0 of 3 ...)" and "(fold 1 of 3
    ...)" fail alike: the rest are not run."""
    assert same_error("error: the val part would be empty (fold 0 of 3)",
                      "error: the val part would be empty (fold 1 of 3)")  # fmt: skip
    assert not same_error("error: no such folder a", "error: no such folder b")


def test_a_rerun_with_other_settings_stops_naming_the_difference(cv_run):
    cv_dir = cv_run["cv_dir"]
    plan = (cv_dir / "cv_plan.json").read_text()
    result = ser("cv", "--cv_dir", str(cv_dir), *cv_run["fit_args"], "--trainer.max_epochs", "2",
                 cwd=cv_run["work"], check=False)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "were made with other settings" in result.stderr
    assert (
        "config.trainer.max_epochs: 1 -> 2" in result.stderr and "--rerun changed" in result.stderr
    )
    assert (cv_dir / "cv_plan.json").read_text() == plan  # nothing was touched


def test_an_option_added_since_a_fold_ran_is_read_as_what_the_fold_ran_with(cv_run, tmp_path):
    """Folds recorded before options existed (here: without ``model.head_weight_decay``,
    default null, ``model.layer_lr_decay``, default 1.0, and ``data.loader.trim_silence``, whose
    default true is not what ser did before it: whole clips) are read as today's ser reads them
    with what they ran with: the same settings as today's at the old behaviour; an option set
    otherwise is a difference, named with the value the fold ran with."""
    cv_dir = tmp_path / "cv"
    shutil.copytree(cv_run["cv_dir"], cv_dir)
    for fold in ("fold_0", "fold_1"):
        recorded = cv_dir / f"{fold}.settings.json"
        settings = json.loads(recorded.read_text())
        assert settings["config"]["model"].pop("layer_lr_decay") == 1.0
        assert settings["config"]["model"].pop("head_weight_decay") is None
        assert settings["config"]["data"]["init_args"]["loader"].pop("trim_silence") is True
        recorded.write_text(json.dumps(settings))

    def settings_of(fit_args):
        config = parse_fit_config(fit_args)
        return {f.name: fold_settings(config, f) for f in plan_folds(fit_args, None, config)}

    whole = [*cv_run["fit_args"], "--data.loader.trim_silence", "false"]
    assert changed_folds(cv_dir, settings_of(whole)) == {}
    assert changed_folds(cv_dir, settings_of(cv_run["fit_args"])) == {
        fold: ["config.data.init_args.loader.trim_silence: False -> True"]
        for fold in ("fold_0", "fold_1")
    }
    lower = settings_of([*whole, "--model.layer_lr_decay", "0.5"])
    assert changed_folds(cv_dir, lower) == {
        fold: ["config.model.layer_lr_decay: 1.0 -> 0.5"] for fold in ("fold_0", "fold_1")
    }


def test_how_checkpoints_are_stored_is_no_change_of_settings():
    """A fold made before best.ckpt was saved as the model alone is the same fold."""

    def settings(weights_only: bool, monitor: str = "val/UA") -> dict:
        best = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": monitor, "save_weights_only": weights_only}}  # fmt: skip
        return {"config": {"trainer": {"callbacks": [best]}}, "fold_args": []}

    assert differences(compared(settings(False)), compared(settings(True))) == []
    # Another monitor is another fold, named by the one field inside the list of callbacks.
    assert differences(compared(settings(False)), compared(settings(True, "val/WA"))) == [
        "config.trainer.callbacks.0.init_args.monitor: val/UA -> val/WA"
    ]


def test_the_same_config_files_by_another_path_are_the_same_settings(cv_run, tmp_path):
    demo = tmp_path / "elsewhere" / "demo.yaml"  # as from another checkout
    demo.parent.mkdir()
    shutil.copy(REPO / "configs/demo.yaml", demo)
    fit_args = ["-c", str(demo), *cv_run["fit_args"][len(DEMO) :]]
    result = ser("cv", "--cv_dir", str(cv_run["cv_dir"]), *fit_args, cwd=cv_run["work"])
    assert result.stderr.count("finished earlier, skipped") == 2


@slow
def test_rerun_changed_runs_the_changed_folds_again(cv_run, tmp_path):
    cv_dir = tmp_path / "cv"
    shutil.copytree(cv_run["cv_dir"], cv_dir)
    args = [*cv_run["fit_args"], "--trainer.max_epochs", "2"]
    ser("cv", "--cv_dir", str(cv_dir), *args, "--rerun", "changed", cwd=cv_run["work"])
    for fold in ("fold_0", "fold_1"):
        settings = json.loads((cv_dir / f"{fold}.settings.json").read_text())
        assert settings["config"]["trainer"]["max_epochs"] == 2
        assert list(cv_dir.glob(f"{fold}.changed-*"))  # the old run is kept aside
    again = ser("cv", "--cv_dir", str(cv_dir), *args, cwd=cv_run["work"])  # same: all skipped
    assert again.stderr.count("finished earlier, skipped") == 2


def test_iemocap_folds_are_its_sessions(tmp_path):
    root = write_iemocap(tmp_path / "IEMOCAP")
    iemocap = [*DEMO, "-c", str(REPO / "configs/data/iemocap.yaml"), "--data.root", str(root)]
    folds = plan_folds(iemocap, None)
    sessions = sorted({row.session for row in iemocap_scan(root)})
    assert [fold.name for fold in folds] == sessions and len(sessions) > 1
    assert folds[1].args == ["--data.init_args.split.init_args.test_session", sessions[1]]


def test_iemocap_folds_rotate_a_validation_session(tmp_path):
    """With --data.split.val_session every fold validates on the session after its test one; a
    fixed one was tested in a fold that failed and never trained or tested in the others."""
    root = write_iemocap(tmp_path / "IEMOCAP")
    iemocap = [*DEMO, "-c", str(REPO / "configs/data/iemocap.yaml"), "--data.root", str(root)]
    folds = plan_folds([*iemocap, "--data.split.val_session", "Session4"], None)
    option = "--data.init_args.split.init_args."
    assert [fold.args for fold in folds] == [
        [f"{option}test_session", f"Session{s}", f"{option}val_session", f"Session{s % 5 + 1}"]
        for s in range(1, 6)
    ]


def test_more_speaker_folds_than_speakers_are_refused_before_any_fold_runs(shemo_corpus, tmp_path):
    shemo = [*DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
             "--data.split", "SpeakerKFold", "--data.split.num_folds", "5"]  # fmt: skip
    with pytest.raises(ValueError, match=r"num_folds=5 but the rows hold 4 speakers"):
        plan_folds(shemo, None)
    result = ser("cv", "--cv_dir", str(tmp_path / "cv"), *shemo, cwd=tmp_path, check=False)
    assert result.returncode == 1 and "give at most 4" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "cv").exists()


@dataclass(frozen=True)
class ByActor(SpeakerKFold):
    """A user's own k-fold protocol (tests that cv asks the split, not its name)."""


def test_k_fold_folds_come_from_the_split_object(shemo_corpus):
    shemo = [*DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus)]
    # A user's split whose name does not say "kfold" still has its folds.
    folds = plan_folds([*shemo, "--data.split", f"{__name__}.ByActor",
                        "--data.split.num_folds", "3"], None)  # fmt: skip
    assert [fold.name for fold in folds] == ["fold_0", "fold_1", "fold_2"]
    assert folds[2].args == ["--data.init_args.split.init_args.fold", "2"]


def test_seeds_of_one_split_and_no_protocol(shemo_corpus, tmp_path):
    shemo = [*DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus)]
    folds = plan_folds(shemo, [1, 2])
    assert [fold.name for fold in folds] == ["seed_1", "seed_2"]
    assert "--data.init_args.loader.seed" in folds[0].args
    with pytest.raises(ValueError, match=r"has no folds.*--seeds"):
        plan_folds(shemo, None)
    result = ser("cv", "--cv_dir", str(tmp_path / "cv"), *shemo[:-1], str(tmp_path / "nowhere"),
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 1 and "ShEMO root" in result.stderr  # as fit's, no parse hint
    assert "Traceback" not in result.stderr and "--help lists the options" not in result.stderr


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(ended.stdout)


def test_a_fold_another_live_process_runs_is_left_to_it(tmp_path, caplog, monkeypatch):
    ran = []
    monkeypatch.setattr(cv, "_run_claimed_fold", lambda *args: ran.append(args[1].name))
    folds = [cv.Fold("fold_0", []), cv.Fold("fold_1", [])]
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0" / "events").write_text("being written")
    held = tmp_path / "fold_0.running"
    held.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this test's process: alive
    assert cv.run_folds(tmp_path, folds, [], {"fold_0": {}, "fold_1": {}}) == []  # not failed
    assert ran == ["fold_1"]  # fold_0 not started twice ...
    assert (tmp_path / "fold_0" / "events").read_text() == "being written"  # ... nor moved aside
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fold_0")]
    assert f"running in another process (host {socket.gethostname()}, pid {os.getpid()}" in message
    assert f"delete {held}" in message
    assert held.exists() and not (tmp_path / "fold_1.running").exists()  # released when done
    assert fold_status(tmp_path, "fold_0") == f"running (see {tmp_path / 'fold_0.log'})"
    # A run on another host cannot be checked from here: held while it keeps its file fresh.
    held.write_text("node17 4242\n")
    assert cv.claim_fold(tmp_path, "fold_0") is None


def test_a_fold_whose_run_is_gone_is_taken_over(tmp_path, monkeypatch):
    held = tmp_path / "fold_0.running"
    mine = f"{socket.gethostname()} {os.getpid()}\n"
    held.write_text(f"{socket.gethostname()} {dead_pid()}\n")  # killed on this host
    assert cv.claim_fold(tmp_path, "fold_0") == held and held.read_text() == mine
    held.write_text("node17 4242\n")  # another host's, silent for longer than STALE_SECONDS
    silent = time.time() - cv.STALE_SECONDS - 1
    os.utime(held, (silent, silent))
    assert cv.claim_fold(tmp_path, "fold_0") == held and held.read_text() == mine
    # A live holder's file stays fresh however long its run takes.
    monkeypatch.setattr(cv, "HEARTBEAT_SECONDS", 0.05)
    with cv.heartbeat(held):
        os.utime(held, (silent, silent))
        time.sleep(0.5)
        assert time.time() - held.stat().st_mtime < 1


def test_two_processes_taking_over_a_gone_runs_fold_run_it_once(tmp_path, monkeypatch, caplog):
    """Both found the gone run's file; the first removed it and made its own before the second
    removed "the gone run's" file: the second finds the first's file, leaves it, and skips."""
    held = tmp_path / "fold_0.running"
    held.write_text(f"{socket.gethostname()} {dead_pid()}\n")
    first = f"{socket.gethostname()} {os.getppid()}\n"  # alive: the process that ran pytest
    is_gone = cv.process_is_gone
    taken_over = []

    def first_takes_over_meanwhile(host: str, pid: int) -> bool:
        if not taken_over:  # between the second's read and its removal
            held.unlink()
            held.write_text(first)
            taken_over.append(True)
        return is_gone(host, pid)

    monkeypatch.setattr(cv, "process_is_gone", first_takes_over_meanwhile)
    assert cv.claim_fold(tmp_path, "fold_0") is None
    assert held.read_text() == first and sorted(tmp_path.iterdir()) == [held]
    assert "fold_0: running in another process" in caplog.text


def test_only_a_gone_runs_unchanged_file_is_removed(tmp_path):
    held = tmp_path / "fold_0.running"
    held.write_text("node17 4242\n")
    cv.remove_if_unchanged(held, "node17 4242\n")
    assert not held.exists()
    cv.remove_if_unchanged(held, "node17 4242\n")  # already gone: nothing to do
    held.write_text("node3 77\n")  # made by a process that took the fold over
    cv.remove_if_unchanged(held, "node17 4242\n")
    assert held.read_text() == "node3 77\n" and list(tmp_path.iterdir()) == [held]


def test_a_fold_whose_cv_died_after_its_test_is_checked_against_the_settings(
    shemo_corpus, tmp_path, monkeypatch
):
    """The fold's test wrote its results and cv was killed before recording the settings that
    made them: a rerun with other settings took the fold as finished with no settings to compare
    and averaged two settings in silence. cv records them before it starts the fold."""
    fold = cv.Fold("fold_0", [])
    fit_args = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]
    fit_args += ["--data.root", str(shemo_corpus)]

    def settings(epochs: int) -> dict:
        config = cv.parse_fit_config([*fit_args, "--trainer.max_epochs", str(epochs)])
        return fold_settings(config, fold)

    def killed_after_the_test(command, **kwargs):
        (tmp_path / "fold_0").mkdir()
        (tmp_path / "fold_0" / "test_metrics.json").write_text("{}")
        raise KeyboardInterrupt  # cv stopped before the fold's process returned

    one_epoch, two_epochs = settings(1), settings(2)
    monkeypatch.setattr(cv.subprocess, "run", killed_after_the_test)
    with pytest.raises(KeyboardInterrupt):
        cv.run_fold(tmp_path, fold, fit_args, one_epoch)
    changed = changed_folds(tmp_path, {"fold_0": two_epochs})
    assert changed == {"fold_0": ["config.trainer.max_epochs: 1 -> 2"]}


def test_a_test_stopped_while_writing_its_files_leaves_no_test_metrics(tmp_path, monkeypatch):
    """cv takes a fold with ``test_metrics.json`` as finished: it is the test's last file."""

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results, "confusion_figure", disk_full)
    rows = [
        results.PredictionRow("u1", "anger", [0.9, 0.1]),
        results.PredictionRow("u2", "sad", [0.2, 0.8]),
    ]
    with pytest.raises(OSError, match="No space left"):
        results.write_test_results(tmp_path, {"test/UA": 1.0}, rows, ["anger", "sad"], torch.eye(2))
    assert (tmp_path / "predictions.csv").is_file()
    assert not (tmp_path / "test_metrics.json").exists()


def test_a_folds_earlier_try_keeps_its_log_and_exit_status(tmp_path, monkeypatch):
    """The rerun moves the earlier try's run aside for the post-mortem: its log and exit status
    go with it (the rerun's log overwrote it)."""
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0.log").write_text("Traceback ... CUDA out of memory\n")
    (tmp_path / "fold_0.exit").write_text("1\n")

    def fit(command, stdout, **kwargs):
        stdout.write("the second try\n")
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(cv.subprocess, "run", fit)
    cv.run_fold(tmp_path, cv.Fold("fold_0", []), [], {})
    (aside,) = tmp_path.glob("fold_0.incomplete-*")
    assert (aside / "fold_0.log").read_text() == "Traceback ... CUDA out of memory\n"
    assert (aside / "fold_0.exit").read_text() == "1\n"
    assert (tmp_path / "fold_0.log").read_text() == "the second try\n"


@slow
def test_stopping_cv_stops_the_fold_run_it_started(shemo_corpus, tmp_path):
    cv_dir = tmp_path / "cv"
    fit_args = [*DEMO, "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root",
                str(shemo_corpus), "--data.split", "KFold", "--data.split.num_folds", "2",
                "--trainer.max_epochs", "50", "--data.loader.num_workers", "0"]  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-m", "ser", "cv", "--cv_dir", str(cv_dir),
                               *fit_args], cwd=tmp_path)  # fmt: skip
    deadline = time.time() + 120
    while not (fits := fold_runs(cv_dir)) and time.time() < deadline:
        time.sleep(0.5)
    assert fits, "cv started no fold run in 120 s"
    parent.terminate()  # SIGTERM, as a scheduler stops a job
    assert parent.wait(timeout=60) != 0
    time.sleep(1)
    assert not fold_runs(cv_dir)  # the fit went with it
    assert not (cv_dir / "fold_0.running").exists()  # released: a rerun takes the fold


def fold_runs(cv_dir: Path) -> list[int]:
    """Pids of the ``ser fit`` processes writing under ``cv_dir`` (Linux: read from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"fit" in args and str(cv_dir).encode() in args:
                pids.append(int(cmdline.parent.name))
    return pids
