"""Run ``python -m ser`` in its own process, as a user would (shared by the CLI tests)."""

from __future__ import annotations

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


def ser(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "ser", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ser {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result
