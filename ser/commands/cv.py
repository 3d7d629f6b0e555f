"""Cross-validation: every fold of a protocol as an ordinary run, then one summary.

``python -m ser cv --cv_dir DIR <fit arguments>`` reads the fit configuration, asks the data's
split for its folds (``SplitStrategy.folds``: k-fold and speaker k-fold their ``num_folds``,
leave-one-session-out the corpus' sessions), each fold with each of ``--seeds`` where given
(``<fold>-seed_<s>``; otherwise ``--seeds`` of one split, ``seed_<s>``) and runs each as
``python -m ser fit ... --test_after_fit true`` in its own process, so one fold's crash loses
nothing of the others. Each fold is a normal run directory ``DIR/<fold>``; the plan of folds is
``DIR/cv_plan.json``, each fold's output ``DIR/<fold>.log``, and the resolved settings of each
fold's run ``DIR/<fold>.settings.json`` (written before it starts). A rerun skips finished folds
(those with ``test_metrics.json``, the test's last file) made with the same settings; a finished
fold made with other settings stops the rerun with the difference named (``--rerun changed``
runs it again, the old run moved aside; the config files' paths are not settings, their contents
are; an option added to ser since the fold ran is read at its default, or at what ser did before
it where that differs: ``BEFORE_THEY_EXISTED``); an unfinished fold directory is moved aside and
run again. Two runs in a row that fail with the same error line, up to its numbers, stop the
others (a setting, not a fold, is wrong: every fold would fail alike); they are left missing for
the rerun after the fix.

Two cv processes never run one fold at once (a whole cv beside ``--fold_index`` array tasks, a
task submitted twice): the process that runs a fold holds ``DIR/<fold>.running`` (host and pid,
touched every ``HEARTBEAT_SECONDS``); another cv skips the fold while it is held, and takes it
over from a process of its own host that is gone or from one silent for ``STALE_SECONDS``.
Stopping cv (SIGTERM, as a scheduler does, or Ctrl-C) stops the fold run it started.

``python -m ser cv-summary DIR`` (also run by ``cv`` at the end) writes ``cv_summary.json``,
``cv_summary.md`` and ``cv_confusion_matrix.png`` (``ser.evaluation.cv_summary``); folds that
failed or are missing are named there and left out of the means, never averaged in silently.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, ArgumentParser

from ser.commands.parsing import ShortArgumentParser
from ser.data.cache import process_is_gone
from ser.data.datamodule import SERDataModule
from ser.evaluation.cv_summary import (
    PLAN_FILE,
    fold_status,
    running_file,
    seed_run_name,
    settings_file,
    summarise,
)

log = logging.getLogger(__name__)
# The line a traceback ends with: "RuntimeError: ...", "torch.OutOfMemoryError: ...".
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)")
# What torch.distributed puts before each line of a DDP process's traceback.
RANK_PREFIX = re.compile(r"^\[rank\d+\]: ")
# Options whose default is not what ser did before they existed, with what it did: a fold
# recorded without one ran with this value (before data.loader.trim_silence, clips were whole).
BEFORE_THEY_EXISTED: dict[str, Any] = {"data.init_args.loader.trim_silence": False}
# Callback options that say how a run stores its checkpoints, not what it learns or scores: a
# fold made with another value is the same fold (best.ckpt is saved as the model alone since
# 2026-12-07, ``save_weights_only: true`` in the trainer configs).
STORAGE_ONLY: dict[str, tuple[str, ...]] = {
    "lightning.pytorch.callbacks.ModelCheckpoint": ("save_weights_only",)
}
# The process running a fold touches its <fold>.running file this often; one untouched for
# STALE_SECONDS is a dead run's (another host's, which no pid check can see).
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0
# run_fold's outcome for a fold another live process is running (not a failure of this cv).
RUNNING_ELSEWHERE = "running in another process"


@dataclass(frozen=True)
class Fold:
    """One run of the protocol: its directory name and the fit arguments that make it."""

    name: str
    args: list[str]


def main(argv: Sequence[str]) -> int:
    """``cv``: run the missing folds, then summarise; exit 1 when a fold failed."""
    parser = ShortArgumentParser(
        prog="python -m ser cv",
        description="Run every fold of the data's protocol (fit + test), then summarise. "
        "Other arguments are those of `python -m ser fit`.",
    )
    parser.add_argument("--cv_dir", required=True, help="parent directory of the fold runs")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run every fold with each of these seeds (<fold>-seed_<s>), or, where the split "
        "has no folds, a run per seed (seed_<s>), each drawing the split anew unless "
        "--data.loader.split_seed holds it",
    )
    parser.add_argument(
        "--fold_index",
        type=int,
        help="run only this run of the plan (a SLURM array task): an index into the flat plan "
        "of cv_plan.json, folds x seeds fold by fold",
    )
    parser.add_argument(
        "--checkpoints",
        choices=["all", "model", "none"],
        default="all",
        help="what a finished fold keeps in its checkpoints/: all (as fit leaves them), model "
        "(each file as the model alone, no optimizer state: a third of last.ckpt), none (its "
        "results only)",
    )
    parser.add_argument(
        "--rerun",
        choices=["missing", "changed"],
        default="missing",
        help="missing: run folds without results; changed: also rerun finished folds whose "
        "settings differ from these",
    )
    options, fit_args = parser.parse_known_args(list(argv))
    cv_dir = Path(options.cv_dir)
    # A corpus missing or malformed, or data without folds: a user error (one line, exit 1, as
    # fit's), not a parse error.
    config = parse_fit_config(fit_args)
    folds = plan_folds(fit_args, options.seeds, config)
    if config.get("ckpt_path"):  # a resumed run's config.resume-K.yaml holds one
        parser.error(
            f"--ckpt_path {config['ckpt_path']}: every fold would resume that one run (its "
            "weights, epoch and optimizer state, trained on other folds' test data); "
            "--model.init_from CKPT starts each fold's model from a trained one"
        )
    if config["trainer"].get("fast_dev_run"):
        parser.error(
            "--trainer.fast_dev_run true: a fold run so writes no test results to summarise; "
            "smoke-test these options with `python -m ser fit` instead"
        )
    if config["trainer"].get("logger") is False:
        parser.error(
            "--trainer.logger false: each fold's results go to its run directory, CV_DIR/fold_k, "
            "which cv names through the logger; leave the logger on"
        )
    settings = {fold.name: fold_settings(config, fold) for fold in folds}
    changed = changed_folds(cv_dir, settings)
    if changed and options.rerun != "changed":
        name, differences = next(iter(changed.items()))
        parser.error(
            f"{len(changed)} finished fold(s) {sorted(changed)} were made with other settings "
            f"({name}: {'; '.join(differences)}): --rerun changed runs them again (the old runs "
            "are moved aside), or use another --cv_dir"
        )
    for name in changed:
        move_aside(cv_dir / name, "changed")
    write_plan(cv_dir, folds, fit_args)
    if options.fold_index is not None and options.fold_index not in range(len(folds)):
        parser.error(f"--fold_index {options.fold_index}: folds are 0..{len(folds) - 1}")
    with stopped_by_sigterm():
        if options.fold_index is not None:
            fold = folds[options.fold_index]
            finished = run_fold(cv_dir, fold, fit_args, settings[fold.name], options.checkpoints)
            return 0 if finished is None else 1
        failed = run_folds(cv_dir, folds, fit_args, settings, options.checkpoints)
    summary = summarise(cv_dir)
    if failed:
        log.error("folds %s failed; see their logs in %s", failed, cv_dir)
    return 1 if failed or summary["missing"] else 0


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (a scheduler's stop) ends cv as Ctrl-C does, by an exception: the fold run it
    started is killed with it (``subprocess.run``) and the fold's ``.running`` file released,
    where Python's default would leave the run going on alone. Outside the main thread (no
    signal handlers there): unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def plan_folds(
    fit_args: Sequence[str], seeds: Sequence[int] | None, config: dict[str, Any] | None = None
) -> list[Fold]:
    """The runs of the protocol the fit configuration (``config``: ``fit_args`` parsed)
    describes: its folds, each fold with each of ``seeds`` (``<fold>-seed_<s>``), or the seeds of
    one split where the split has no folds."""
    data = (config or parse_fit_config(fit_args))["data"]
    seed_paths = {
        key: _key_path(data.get("init_args") or {}, key) for key in ("seed", "split_seed")
    }
    try:
        datamodule = build_datamodule(data)
    except ValueError:  # no one split (a curriculum): seeds of the whole run, as ever
        if not seeds:
            raise
        return [Fold(f"seed_{s}", _seed_args(s, seed_paths["seed"])) for s in seeds]
    folds = datamodule.splitter.folds(datamodule.labelled_rows())
    if not folds and seeds:
        return [Fold(f"seed_{s}", _seed_args(s, seed_paths["seed"])) for s in seeds]
    if not folds:
        raise ValueError(
            f"cv: the data's split ({datamodule.splitter}) has no folds: use a k-fold split "
            "(--data.split KFold or SpeakerKFold, --data.split.num_folds N), leave-one-session-"
            "out (BySession), or --seeds S1 S2 ... for several runs of one split"
        )
    if not seeds:
        return [Fold(name, _split_args(settings)) for name, settings in folds.items()]
    # Each seed moves the training (weights, batches, crops), never the fold's test set.
    split_seed = [
        f"--data.init_args.{seed_paths['split_seed']}",
        str(datamodule.loader.seed_of_split),
    ]
    return [
        Fold(
            seed_run_name(name, s),
            [*_split_args(settings), *_seed_args(s, seed_paths["seed"]), *split_seed],
        )
        for name, settings in folds.items()
        for s in seeds
    ]


def _seed_args(seed: int, loader_seed_path: str | None) -> list[str]:
    """``--seed_everything S`` and the loader group's seed ``S``."""
    return ["--seed_everything", str(seed), f"--data.init_args.{loader_seed_path}", str(seed)]


def _split_args(settings: dict[str, Any]) -> list[str]:
    """``--data.init_args.split.init_args.<key> <value>`` for each setting of one fold."""
    return [
        arg
        for key, value in settings.items()
        for arg in (f"--data.init_args.split.init_args.{key}", str(value))
    ]


def build_datamodule(data: dict[str, Any]) -> SERDataModule:
    """The configuration's datamodule, built so its split can list the folds of its rows."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SERDataModule, "data", required=True)
    try:
        return parser.instantiate(parser.parse_object({"data": data})).data
    except ArgumentError as err:  # e.g. a curriculum: several corpora, no one split
        raise ValueError(
            f"cv: {data.get('class_path')} is not a corpus with one split ({err})"
        ) from err


def parse_fit_config(fit_args: Sequence[str]) -> dict[str, Any]:
    """The fit configuration as a plain dict, parsed like ``fit`` but with nothing built."""
    from ser.commands.cli import SERCLI, build_cli, check_monitored_metrics

    class ConfigOnly(SERCLI):  # a plan needs the settings: no run directory, no model
        def before_instantiate_classes(self) -> None:
            check_monitored_metrics(self.config)  # what every fold would fail on, said once

        def instantiate_classes(self) -> None:
            pass

    with warnings.catch_warnings():  # that args are given while sys.argv has cv's own words
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = build_cli([*fit_args], run=False, cli_class=ConfigOnly, prog="python -m ser cv")
        return cli.config.as_dict()


def _key_path(tree: dict[str, Any], key: str) -> str | None:
    """The dotted path of ``key`` in a nested config (split settings may sit in a group), the
    shallowest where it is found at several depths: a curriculum's own ``loader.seed``, not the
    one inside its first stage's settings."""
    level = [("", tree)]
    while level:
        for prefix, node in level:
            if key in node:
                return prefix + key
        level = [
            (f"{prefix}{name}.", value)
            for prefix, node in level
            for name, value in node.items()
            if isinstance(value, dict)
        ]
    return None


def write_plan(cv_dir: Path, folds: Sequence[Fold], fit_args: Sequence[str]) -> None:
    """``cv_plan.json``: which folds make the protocol, so a summary can name missing ones."""
    cv_dir.mkdir(parents=True, exist_ok=True)
    plan = {"fit_args": list(fit_args), "folds": [asdict(fold) for fold in folds]}
    tmp = cv_dir / f"{PLAN_FILE}.{os.getpid()}.tmp"  # array tasks write the same plan at once
    tmp.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    tmp.replace(cv_dir / PLAN_FILE)


def fold_settings(config: dict[str, Any], fold: Fold) -> dict[str, Any]:
    """What makes a fold's result: the resolved fit configuration and the fold's own arguments,
    as plain JSON (config files are read, so editing one changes it)."""
    return as_json({"config": config, "fold_args": fold.args})


def as_json(tree: Any) -> Any:
    """``tree`` as it reads back from JSON (paths and other objects as strings)."""
    return json.loads(json.dumps(tree, default=str))


def changed_folds(cv_dir: Path, settings: dict[str, dict]) -> dict[str, list[str]]:
    """Finished folds whose recorded settings differ from ``settings``: name -> differences."""
    changed = {}
    for name, wanted in settings.items():
        recorded = settings_file(cv_dir, name)
        if fold_status(cv_dir, name) == "done" and recorded.is_file():
            had, now = compared(json.loads(recorded.read_text(encoding="utf-8"))), compared(wanted)
            found = differences(had, now)
            if found and not set(_flatten(had)) - set(_flatten(now)):  # options only added since
                found = differences(read_as_today(had), now)
            if found:
                changed[name] = found
    return changed


def read_as_today(settings: dict[str, Any]) -> dict[str, Any]:
    """Recorded settings as today's ``fit`` reads them: an option added to ser since the fold ran
    takes what the fold ran with: its value in ``BEFORE_THEY_EXISTED``, else its default."""
    recorded = as_json(settings["config"])  # a copy to fill in
    for key, value in BEFORE_THEY_EXISTED.items():
        *parents, name = key.split(".")
        group = recorded
        for parent in parents:
            group = group.get(parent) if isinstance(group, dict) else None
        if isinstance(group, dict):
            group.setdefault(name, value)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.json"  # JSON is YAML
        config.write_text(json.dumps(recorded), encoding="utf-8")
        parsed = parse_fit_config(["--config", str(config)])
    return compared({**settings, "config": as_json(parsed)})


def compared(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the config files' paths (their contents are in the settings, so the
    same files named by another path, another checkout, relative or absolute, change nothing) and
    without how the checkpoints are stored (``STORAGE_ONLY``)."""
    config = {key: value for key, value in settings["config"].items() if key != "config"}
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and isinstance(trainer.get("callbacks"), list):
        callbacks = [_without_storage(callback) for callback in trainer["callbacks"]]
        config["trainer"] = {**trainer, "callbacks": callbacks}
    return {**settings, "config": config}


def _without_storage(callback: Any) -> Any:
    if not isinstance(callback, dict) or not isinstance(callback.get("init_args"), dict):
        return callback
    storage = STORAGE_ONLY.get(callback.get("class_path"), ())
    init_args = {k: v for k, v in callback["init_args"].items() if k not in storage}
    return {**callback, "init_args": init_args}


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> list[str]:
    """``key: old -> new`` for the first ``limit`` dotted keys that differ; none: the same.

    A key unset on one side and null on the other is no difference: an option added to ser since
    a fold ran (``model.head_weight_decay``, fit's ``ckpt_path``), at its null default, did not
    change that fold.
    """
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = sorted(
        k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k)
    )
    shown = [f"{k}: {flat_old.get(k, '(unset)')} -> {flat_new.get(k, '(unset)')}" for k in keys]
    return shown[:limit] + ([f"{len(keys) - limit} more"] if len(keys) > limit else [])


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of ``tree``; a list of configs (the callbacks) by index, so a difference
    names the one field that differs (``trainer.callbacks.0.init_args.monitor``), not the list."""
    if isinstance(tree, list) and tree and all(isinstance(item, dict) for item in tree):
        tree = {str(index): item for index, item in enumerate(tree)}
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def move_aside(run_dir: Path, why: str) -> None:
    """Keep an earlier try of a fold for the post-mortem, its log and exit status
    (``DIR/<fold>.log`` and ``.exit``) moved in with it; the fold then runs anew."""
    if run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        for suffix in (".log", ".exit"):
            kept = run_dir.with_name(run_dir.name + suffix)
            if kept.is_file():
                kept.rename(aside / kept.name)
        log.warning("%s: %s earlier try moved to %s", run_dir.name, why, aside)


def claim_fold(cv_dir: Path, name: str) -> Path | None:
    """``DIR/<name>.running``, made by this process (its host and pid in it), or None while
    another live process holds it (logged, with the file to delete if that process is gone).
    A holder of this host whose process is gone, or one silent for ``STALE_SECONDS``, is a killed
    run's: taken over."""
    marker = running_file(cv_dir, name)
    for _ in range(2):  # the second try after removing a dead holder's file
        try:
            with marker.open("x", encoding="utf-8") as out:  # atomic: one process makes it
                out.write(f"{socket.gethostname()} {os.getpid()}\n")
            return marker
        except FileExistsError:
            pass
        try:
            content = marker.read_text(encoding="utf-8")
            silent = time.time() - marker.stat().st_mtime
        except FileNotFoundError:  # its run ended between the two calls
            continue
        holder = content.split()
        host, pid = (holder[0], holder[1]) if len(holder) == 2 else ("?", "?")
        gone = pid.isdigit() and process_is_gone(host, int(pid))
        if not gone and silent < STALE_SECONDS:
            log.warning("%s: running in another process (host %s, pid %s, alive %.0f s ago): "
                        "skipped here; if that run is gone, delete %s and run cv again",
                        name, host, pid, silent, marker)  # fmt: skip
            return None
        log.warning("%s: its run on host %s, pid %s is gone; running it here", name, host, pid)
        remove_if_unchanged(marker, content)
    log.warning("%s: %s keeps changing hands: skipped here", name, marker)
    return None


def remove_if_unchanged(marker: Path, content: str) -> None:
    """Remove ``marker`` if it still holds ``content`` (a gone run's). Another process may have
    taken it over since it was read (removed it and made its own): moved aside first and read
    again, a new holder's file goes back (unless yet another was made meanwhile), never deleted."""
    aside = marker.with_name(f"{marker.name}.{socket.gethostname()}-{os.getpid()}")
    try:
        marker.rename(aside)
    except FileNotFoundError:  # the other process removed it first
        return
    if aside.read_text(encoding="utf-8") != content:
        with suppress(FileExistsError):
            os.link(aside, marker)
    aside.unlink()


@contextmanager
def heartbeat(marker: Path) -> Iterator[None]:
    """Touch ``marker`` every ``HEARTBEAT_SECONDS`` while the block runs: its holder is alive."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            with suppress(OSError):  # a folder gone or read-only: the run itself goes on
                marker.touch()

    beating = threading.Thread(target=beat, name=f"heartbeat {marker.name}", daemon=True)
    beating.start()
    try:
        yield
    finally:
        done.set()
        beating.join()


def last_error(log_path: Path) -> str:
    """A failed fold's last ``error:`` line (a user error) or exception line, '' if none (a DDP
    process's ``[rank1]: `` before it dropped)."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in (RANK_PREFIX.sub("", line) for line in reversed(lines)):
        if line.startswith("error: ") or EXCEPTION_LINE.match(line):
            return line
    return ""


def run_folds(
    cv_dir: Path,
    folds: Sequence[Fold],
    fit_args: Sequence[str],
    settings: dict[str, dict],
    checkpoints: str = "all",
) -> list[str]:
    """Run ``folds`` in order (``checkpoints``: what each keeps, ``keep_checkpoints``); the names
    of those that failed.

    When two runs in a row fail with the same error line (up to its numbers: "fold 0 of 3" and
    "fold 1 of 3" are one error), the rest are not run: the error is in the settings they share,
    not in a fold.
    """
    failed: list[str] = []
    previous: str | None = None  # the error line of the run before, None if it finished
    for index, fold in enumerate(folds):
        error = run_fold(cv_dir, fold, fit_args, settings[fold.name], checkpoints)
        if error is None or error == RUNNING_ELSEWHERE:  # the other process reports on it
            previous = None
            continue
        failed.append(fold.name)
        if error and previous and same_error(error, previous) and index + 1 < len(folds):
            log.error("%s and %s failed with the same error; the other %d run(s) of the plan "
                      "are not run: fix the setting and run cv again (finished folds are kept)",
                      failed[-2], fold.name, len(folds) - index - 1)  # fmt: skip
            break
        previous = error
    return failed


def same_error(first: str, second: str) -> bool:
    """Whether two error lines say the same up to their numbers (a fold's index, a size)."""
    return re.sub(r"\d+", "#", first) == re.sub(r"\d+", "#", second)


def run_fold(
    cv_dir: Path, fold: Fold, fit_args: Sequence[str], settings: dict, checkpoints: str = "all"
) -> str | None:
    """Fit and test one fold in its own process unless it already finished; a fold that
    finishes (or finished earlier) keeps ``checkpoints`` of its checkpoint files
    (``keep_checkpoints``).

    Returns None if it finished, ``RUNNING_ELSEWHERE`` if another live process runs it now,
    else its error line (``last_error``; '' if it has none).

    ``settings`` (``fold_settings``) are recorded beside the fold before it runs.
    """
    if fold_status(cv_dir, fold.name) == "done":
        log.info("%s: finished earlier, skipped", fold.name)
        keep_checkpoints(cv_dir / fold.name / "checkpoints", checkpoints, fold.name)
        return None
    running = claim_fold(cv_dir, fold.name)
    if running is None:
        return RUNNING_ELSEWHERE
    try:
        if fold_status(cv_dir, fold.name) == "done":  # finished while this cv looked
            log.info("%s: finished by another process, skipped", fold.name)
            return None
        with heartbeat(running):
            error = _run_claimed_fold(cv_dir, fold, fit_args, settings)
        if error is None:
            keep_checkpoints(cv_dir / fold.name / "checkpoints", checkpoints, fold.name)
        return error
    finally:
        running.unlink(missing_ok=True)


def keep_checkpoints(folder: Path, keep: str, name: str) -> None:
    """Keep ``all`` of a finished fold's checkpoint files, each as the ``model`` alone
    (``ser.models.checkpoint.model_only``, replaced as fit saves it: ``DurableCheckpointIO``), or
    ``none``.

    Nothing of cv reads them once the fold's test is written; they serve ``ser test``, predict
    or a further fit of that fold's model.
    """
    if keep == "all" or not folder.is_dir():
        return
    before = sum(path.stat().st_size for path in folder.glob("*.ckpt"))
    if keep == "none":
        shutil.rmtree(folder)
        log.info("%s: checkpoints removed (%.1f MB; --checkpoints none)", name, before / 1e6)
        return
    from ser.models.checkpoint import RESUME_KEY, load_checkpoint, model_only
    from ser.training.checkpoint_io import DurableCheckpointIO

    for path in sorted(folder.glob("*.ckpt")):
        checkpoint = load_checkpoint(path, "checkpoint")
        if RESUME_KEY not in checkpoint:
            continue  # best.ckpt: the model alone already
        DurableCheckpointIO().save_checkpoint(model_only(checkpoint), path)
    after = sum(path.stat().st_size for path in folder.glob("*.ckpt"))
    log.info("%s: checkpoints kept as the model alone (%.1f MB -> %.1f MB; --checkpoints model)",
             name, before / 1e6, after / 1e6)  # fmt: skip


def _run_claimed_fold(
    cv_dir: Path, fold: Fold, fit_args: Sequence[str], settings: dict
) -> str | None:
    """``run_fold`` once this process holds the fold."""
    move_aside(cv_dir / fold.name, "incomplete")  # an earlier try died: start anew
    command = [
        sys.executable, "-m", "ser", "fit", *fit_args, *fold.args,
        "--trainer.logger.init_args.save_dir", str(cv_dir),
        "--trainer.logger.init_args.name", "",
        "--trainer.logger.init_args.version", fold.name,
        "--test_after_fit", "true",
    ]  # fmt: skip
    log_path = cv_dir / f"{fold.name}.log"
    # Recorded before the run: a cv stopped after the fold's test still left what made it.
    settings_file(cv_dir, fold.name).write_text(json.dumps(settings, indent=1), encoding="utf-8")
    log.info("%s: running (output in %s)", fold.name, log_path)
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    (cv_dir / f"{fold.name}.exit").write_text(f"{code}\n", encoding="utf-8")
    seconds = time.perf_counter() - started
    if code != 0 or fold_status(cv_dir, fold.name) != "done":
        why = last_error(log_path)
        status = f"exit {code}" if code else "exit 0 without test results"
        log.error("%s: failed (%s) after %.0f s (see %s)%s", fold.name, status, seconds,
                  log_path, f": {why}" if why else "")  # fmt: skip
        return why
    log.info("%s: done in %.0f s", fold.name, seconds)
    return None
