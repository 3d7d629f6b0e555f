"""Run ``python -m ser`` in its own process, as a user would (shared by the end-to-end tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]
TINY_RUN = [
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "3",
    "--trainer.log_every_n_steps", "1",
    "--data.loader.batch_size", "4",
    "--data.loader.num_workers", "0",
]  # fmt: skip


def ser(
    *args: str, cwd: Path, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m ser ARGS`` in its own process; a failure shows the end of its stderr.

    ``tests/`` joins ``PYTHONPATH`` so configs can name callbacks defined in test modules
    (``test_curriculum.KillAt``); the ``ser`` already on the path stays first.
    """
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), tests]))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ser", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"ser {args[0]} hung for {timeout} s (a DDP deadlock?)") from err
    if check and result.returncode != 0:
        raise AssertionError(f"ser {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result
