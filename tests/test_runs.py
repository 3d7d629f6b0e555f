"""Run directories: one per run, claimed atomically; a resumed fit continues in its own, with its
best score; ``--trainer.default_root_dir`` works; runs without a logger write nothing; the console
says where things went."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.commands.cli import build_cli
from ser.commands.runs import RUN_DIR_ENV, new_run_dir, place_logger

REPO = Path(__file__).parents[1]
DEMO = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]
TINY_RUN = [
    "--trainer.limit_train_batches", "2",
    "--data.loader.batch_size", "4",
    "--data.loader.num_workers", "0",
]  # fmt: skip


def test_run_dirs_claimed_at_the_same_moment_are_distinct(tmp_path):
    barrier, claimed = threading.Barrier(8), []

    def claim() -> None:
        barrier.wait()  # all list the folder before any creates its version
        claimed.append(new_run_dir(tmp_path, "demo"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == sorted(
        f"version_{i}" for i in range(8)
    )


def test_a_named_version_is_used_as_given_but_a_test_never_writes_into_another_run(
    tmp_path, monkeypatch, caplog
):
    """A ``ser cv`` fold's saved config names its version (``fold_0-seed_0``): a fit with it
    claims it, and one that is there already only to resume it (a requeued SLURM job's
    ``hpc_ckpt``, or ``--ckpt_path`` of its checkpoint), never beside another run (two runs
    started with one name mixed their checkpoints and results); a test given that config claims
    a ``version_N`` beside it instead of overwriting the fold's results; a named version not yet
    there is used by both."""
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)  # place_logger leaves the claimed one there

    def config(version: str) -> Namespace:
        logger = Namespace(init_args=Namespace(save_dir=str(tmp_path), name="", version=version))
        return Namespace(trainer=Namespace(logger=logger, default_root_dir=None))

    with caplog.at_level(logging.INFO, logger="ser"):
        fold = place_logger(config("fold_0-seed_0"), "fit", None)
    assert fold == tmp_path / "fold_0-seed_0" and fold.is_dir()
    assert caplog.text.endswith(f"run directory: {fold}\n")  # said as for a version_N ser chose
    (fold / "config.yaml").write_text("{}")
    (fold / "test_metrics.json").write_text("{}")
    with pytest.raises(ValueError, match=r"fold_0-seed_0 is there already .* --ckpt_path"):
        place_logger(config(fold.name), "fit", None)  # a second run with the name, later
    barrier, claimed, refused = threading.Barrier(4), [], []

    def claim() -> None:  # or at once
        barrier.wait()
        try:
            claimed.append(place_logger(config("together"), "fit", None))
        except ValueError:
            refused.append(True)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert claimed == [tmp_path / "together"] and len(refused) == 3
    (fold / "checkpoints").mkdir()
    (fold / "checkpoints" / "last.ckpt").write_bytes(b"")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ser"):
        assert place_logger(config(fold.name), "fit", str(fold / "checkpoints/last.ckpt")) == fold
    assert "(resumed)" in caplog.text
    requeued = config("slurm-4242")
    (tmp_path / "slurm-4242").mkdir()
    (tmp_path / "slurm-4242" / "hpc_ckpt_1.ckpt").write_bytes(b"")
    assert place_logger(requeued, "fit", None) == tmp_path / "slurm-4242"
    retest = config(fold.name)
    assert place_logger(retest, "test", None) == tmp_path / "version_0"
    assert retest.trainer.logger.init_args.version == "version_0"
    assert place_logger(config("retest"), "test", None) == tmp_path / "retest"


def test_two_runs_started_together_get_their_own_directories(tmp_path):
    args = [*DEMO, "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    first, second = build_cli(args, run=False), build_cli(args, run=False)  # neither has fit yet
    assert first.trainer.log_dir != second.trainer.log_dir
    assert Path(first.trainer.log_dir).is_dir() and Path(second.trainer.log_dir).is_dir()


def test_config_overrides_keep_their_types(tmp_path):
    override = "--model.backbone.init_args.config.hidden_dropout"
    args = [*DEMO, "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    cli = build_cli([*args, override, "0.1"], run=False)
    assert cli.model.backbone.family.model.config.hidden_dropout == 0.1


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, shemo_corpus, ser_cli):
    """A 2-epoch fit under ``--trainer.default_root_dir``, its own process."""
    work = tmp_path_factory.mktemp("runs")
    data = ["--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(work / "cache")]
    result = ser_cli(
        "fit", *DEMO, *data, *TINY_RUN, "--trainer.max_epochs", "2",
        "--trainer.default_root_dir", str(work / "root"), cwd=work,
    )  # fmt: skip
    return {"work": work, "data": data, "stderr": result.stderr}


def test_default_root_dir_holds_the_run_and_the_console_says_where(fitted):
    work = fitted["work"]
    run_dir = work / "root" / "demo" / "version_0"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert not (work / "lightning_logs").exists()
    err = fitted["stderr"]
    assert f"[ser] run directory: {run_dir}" in err
    assert "[ser] train: 36 utterances, per class {'anger': 6," in err  # split sizes per class
    assert "[ser] Built audio cache" in err
    assert f"[ser] best checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'} (val/UA" in err


def _best_checkpoint_state(checkpoint: dict) -> dict:
    (state,) = [
        v
        for k, v in checkpoint["callbacks"].items()
        if k.startswith("ModelCheckpoint") and v.get("best_model_path", "").endswith("best.ckpt")
    ]
    return state


def test_test_without_logger_writes_nothing_into_the_working_directory(fitted, tmp_path, ser_cli):
    ckpt = fitted["work"] / "root" / "demo" / "version_0" / "checkpoints" / "best.ckpt"
    result = ser_cli(
        "test", "--ckpt_path", str(ckpt), "-c", str(REPO / "configs/data/shemo.yaml"),
        *fitted["data"], "--data.loader.num_workers", "0", "--trainer.logger", "false",
        cwd=tmp_path,
    )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    assert "test files not written" in result.stderr


def test_resume_continues_in_the_same_run_with_its_best_score(fitted, ser_cli):
    """Runs after the other tests of ``fitted``: it adds an epoch to its run."""
    work = fitted["work"]
    run_dir = work / "root" / "demo" / "version_0"
    result = ser_cli(
        "fit", *DEMO, *fitted["data"], *TINY_RUN, "--trainer.max_epochs", "3",
        "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--model.head_lr", "0.5",
        cwd=work,
    )  # fmt: skip
    assert [p.name for p in (work / "root" / "demo").iterdir()] == ["version_0"]
    assert f"[ser] run directory: {run_dir} (resumed)" in result.stderr
    # The model continues as the checkpoint has it: a setting changed for the resume is said
    # to be unused, not dropped in silence (the configs' own settings match: not named).
    (unused,) = [line for line in result.stderr.splitlines() if "not used:" in line]
    assert unused.endswith("not used: model.head_lr 0.5 (checkpoint: 0.003); start a new fit "
                           "to change them")  # fmt: skip
    # One more epoch than the checkpoint's schedule planned: the learning rate, at 0 at the end
    # of its cosine, is said to rise again (4 optimizer steps then, 6 now, no warmup).
    assert (
        "[ser] the learning-rate schedule spans 6 optimizer steps (0 of warmup) here, 4 (0) in the "
        "checkpoint: at its step 4 the learning rate goes from 0.00 to 0.25 of its peak"
    ) in result.stderr
    assert "dirpath has changed" not in result.stderr
    assert (run_dir / "config.yaml").is_file() and (run_dir / "config.resume-1.yaml").is_file()

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    scores = [event.value for event in events.Scalars("val/UA")]
    assert len(scores) == 3  # the resumed epoch logged beside the first two
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["lr_schedule"] == {"steps": 6, "warmup_steps": 0}
    state = _best_checkpoint_state(last)
    assert float(state["best_model_score"]) == pytest.approx(max(scores))
    assert state["best_model_path"] == str(run_dir / "checkpoints" / "best.ckpt")
    best = torch.load(state["best_model_path"], map_location="cpu", weights_only=False)
    assert best["epoch"] == scores.index(max(scores))


def test_a_killed_run_that_draws_at_random_resumes_to_the_uninterrupted_weights(
    shemo_corpus, tmp_path, ser_cli
):
    """Speed perturbation, noise and dropout draw in every step. The random state is seeded at
    the start of a run, not saved in checkpoints: a resumed run drew epoch 0's draws again in
    the epoch it resumed at and ended with other weights (and another score) than the run it
    continues. Each training batch now draws from its own seed (run seed, epoch, batch, rank)."""
    data = ["--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(tmp_path / "cache")]
    draws = [
        "--model.augmentation.speeds", "[0.9, 1.0, 1.1]",
        "--model.augmentation.noise_snr_db", "[5, 20]",
        "--model.backbone.init_args.config.hidden_dropout", "0.1",
        "--trainer.max_epochs", "2", "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
    ]  # fmt: skip

    def ser_fit(*args: str, check: bool = True):
        return ser_cli("fit", *DEMO, *data, *TINY_RUN, *draws, *args, cwd=tmp_path, check=check)

    ser_fit()  # version_0: uninterrupted
    killed = ser_fit(
        "--trainer.callbacks+=test_curriculum.KillAt",
        "--trainer.callbacks.epoch=1", "--trainer.callbacks.batch=1", check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    runs = tmp_path / "logs" / "demo"
    ser_fit("--ckpt_path", str(runs / "version_1" / "checkpoints" / "last.ckpt"))

    def weights(version: int) -> dict:
        path = runs / f"version_{version}" / "checkpoints" / "last.ckpt"
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]

    uninterrupted, resumed = weights(0), weights(1)
    assert resumed.keys() == uninterrupted.keys()
    differ = [key for key, value in uninterrupted.items() if not torch.equal(resumed[key], value)]
    assert not differ
