"""Run directories: each run gets its own, made atomically; a resumed fit continues in its own.

Lightning picks ``version_N`` by listing the folder when the logger first needs it, so two runs
started together take the same number (and, with the config saver allowed to overwrite, mix their
files). Here the folder is claimed with ``mkdir`` before anything is instantiated: ``mkdir``
either creates it or fails, so two processes never get the same one.

The logger's ``save_dir``, ``name`` and ``version`` are then set to that folder, which also puts
``checkpoints/`` there (ModelCheckpoint follows the logger). Paths are absolute and resolved, so a
resumed run (``--ckpt_path <run>/checkpoints/last.ckpt``) that points its logger at ``<run>``
gives ModelCheckpoint the same ``dirpath`` string it saved, and its best score and ``best.ckpt``
carry on instead of being forgotten.

Only global rank 0 claims a folder. It leaves the folder in ``SER_RUN_DIR`` for the ranks
Lightning starts as its own child processes (DDP on one machine); ranks started by torchrun or
SLURM keep Lightning's own naming, which Lightning replaces by rank 0's through its broadcasts of
``log_dir`` and the checkpoint folder.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

_VERSION = re.compile(r"version_(\d+)$")
RUN_DIR_ENV = "SER_RUN_DIR"


def new_run_dir(save_dir: str | Path, name: str) -> Path:
    """Claim ``save_dir/name/version_N`` (N one above the highest there) and return it."""
    parent = Path(os.path.realpath(save_dir)) / name
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := _VERSION.match(p.name))]
    number = max(taken, default=-1) + 1
    while True:
        run_dir = parent / f"version_{number}"
        try:
            run_dir.mkdir()
        except FileExistsError:  # another run claimed it between listing and mkdir
            number += 1
            continue
        return run_dir


def claim_named_run_dir(run_dir: Path, ckpt_path: str | None) -> bool:
    """Claim the run directory a fit's logger ``version`` names, with ``mkdir`` (of two runs
    started with one name, one gets it); return whether the fit resumes the run there.

    A directory that is there already is another run's (maybe running now) unless this fit
    resumes it: from one of its checkpoints (``ckpt_path``), or from the checkpoint Lightning
    saves before SLURM requeues a job (``hpc_ckpt_<n>.ckpt``, restored by itself).

    Raises:
        ValueError: the directory is there and this fit does not resume it.
    """
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
        return False
    except FileExistsError:
        pass
    here = Path(os.path.realpath(run_dir))
    if (ckpt_path and run_dir_of_checkpoint(ckpt_path) == here) or any(
        run_dir.glob("hpc_ckpt_*.ckpt")
    ):
        return True
    raise ValueError(
        f"--trainer.logger.init_args.version {run_dir.name}: {run_dir} is there already (another "
        f"run's, maybe running now); resume it with --ckpt_path "
        f"{run_dir / 'checkpoints' / 'last.ckpt'}, or name another version"
    )


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """``<run>`` for a checkpoint at ``<run>/checkpoints/*.ckpt`` of a ``ser fit`` run, or None."""
    ckpt = Path(os.path.realpath(ckpt_path))
    run_dir = ckpt.parent.parent
    if ckpt.parent.name == "checkpoints" and (run_dir / "config.yaml").is_file():
        return run_dir
    return None


def place_logger(config: Any, subcommand: str | None, ckpt_path: str | None) -> Path | None:
    """Point the parsed ``trainer.logger`` config at this run's directory; return the directory.

    A logger ``version`` named by the user (not ``version_N``) is used as given, except by a
    validate or test when that directory holds files (another run's). A fit resumed
    from a checkpoint of a run directory continues there; every other run with a
    logger that has ``save_dir`` and ``version`` (TensorBoard, CSV) claims a new one under
    ``--trainer.default_root_dir`` when given, else under the logger's ``save_dir``. A fit
    without a logger (``--trainer.logger false``) that saves checkpoints claims
    ``<default_root_dir or lightning_logs>/version_N`` as its ``default_root_dir``, where
    Lightning puts its config and checkpoints (else they would land in the working directory,
    shared by every such run); other runs without such a logger have no run directory: None.

    Args:
        config: the subcommand's parsed config (a jsonargparse Namespace); changed in place.
        subcommand: fit, validate, test, predict (None: parsed without a subcommand, as fit).
        ckpt_path: the run's ``--ckpt_path``, if any.
    """
    init_args = _logger_init_args(config.trainer.logger)
    checkpoints_only = (
        config.trainer.logger is False
        and subcommand == "fit"  # not a parse alone (build_cli(run=False), cv's plan)
        and config.trainer.get("enable_checkpointing") is not False
    )
    if init_args is None and not checkpoints_only:
        return None
    named_version = init_args is not None and isinstance(init_args.version, str)
    if named_version and not _VERSION.fullmatch(init_args.version):
        # A version the user named (a SLURM job id, so that a requeued job resumes there) is
        # used as given; only version_N names are ser's to choose. A fit claims it (one that is
        # there already only to resume it). A validate or test does not write into a run that
        # is there already (the fit of a `ser cv` fold whose config.yaml it was given): it
        # claims a version_N beside it.
        named = Path(init_args.save_dir, init_args.name or "", init_args.version)
        if subcommand in (None, "fit") or not (named.is_dir() and any(named.iterdir())):
            if rank_zero_only.rank == 0:
                resumes = subcommand == "fit" and claim_named_run_dir(named, ckpt_path)
                log.info("run directory: %s%s", named, " (resumed)" if resumes else "")
            return named
    resumed = run_dir_of_checkpoint(ckpt_path) if ckpt_path and subcommand == "fit" else None
    if rank_zero_only.rank != 0:  # a DDP rank: rank 0's folder when it left one, else none
        if RUN_DIR_ENV not in os.environ:
            return None
        run_dir = Path(os.environ[RUN_DIR_ENV])
    elif resumed is not None:
        run_dir = resumed
    elif init_args is None:  # checkpoints_only
        run_dir = new_run_dir(config.trainer.default_root_dir or "lightning_logs", "")
    else:
        root = config.trainer.default_root_dir or init_args.save_dir or "lightning_logs"
        run_dir = new_run_dir(root, init_args.name or "")
    os.environ[RUN_DIR_ENV] = str(run_dir)  # for the DDP ranks Lightning starts as children
    if init_args is None:
        config.trainer.default_root_dir = str(run_dir)
    else:
        init_args.save_dir = str(run_dir.parent.parent)
        init_args.name = run_dir.parent.name
        init_args.version = run_dir.name
    if rank_zero_only.rank == 0:
        log.info("run directory: %s%s", run_dir, " (resumed)" if resumed else "")
    return run_dir


def removable_if_unused(run_dir: Path | None) -> Path | None:
    """``run_dir`` if it is this process' to remove should the run fail before writing to it.

    That is a folder empty now, on global rank 0 (a DDP child never removes rank 0's folder):
    one ``place_logger`` just claimed; a resumed run's folder holds its checkpoints.
    """
    if run_dir is None or rank_zero_only.rank != 0 or not run_dir.is_dir():
        return None
    return None if any(run_dir.iterdir()) else run_dir


def remove_if_unused(run_dir: Path | None) -> None:
    """Remove ``run_dir`` (of ``removable_if_unused``) if the run wrote nothing into it but
    TensorBoard files without a record: a fit that failed on a missing corpus, or on a split
    found wrong once the logger had opened its file, leaves no empty ``version_N`` behind."""
    if run_dir is None or not run_dir.is_dir():
        return
    files = list(run_dir.iterdir())
    if all(_is_empty_event_file(path) for path in files):
        for path in files:
            path.unlink()
        run_dir.rmdir()


def _is_empty_event_file(path: Path) -> bool:
    """A TensorBoard event file holding only its header (no scalar, figure, text or graph)."""
    if not (path.is_file() and path.name.startswith("events.out.tfevents.")):
        return False
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return all(
        event.WhichOneof("what") == "file_version" for event in EventFileLoader(str(path)).Load()
    )


def _logger_init_args(logger: Any) -> Any:
    """The ``init_args`` of a single logger config that has ``save_dir`` and ``version``."""
    init_args = getattr(logger, "init_args", None)
    if init_args is None or not {"save_dir", "version"} <= set(vars(init_args)):
        return None
    return init_args


def config_file_name(run_dir: Path) -> str:
    """``config.yaml`` for a new run; ``config.resume-K.yaml`` for its K-th resume."""
    if not (run_dir / "config.yaml").exists():
        return "config.yaml"
    number = 1
    while (run_dir / f"config.resume-{number}.yaml").exists():
        number += 1
    return f"config.resume-{number}.yaml"
