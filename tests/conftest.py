"""Shared fixtures: the ``python -m ser`` runner and a small synthetic ShEMO corpus."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ser.data.synthetic import write_corpus

SerRunner = Callable[..., subprocess.CompletedProcess]


def run_ser(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m ser ARGS`` in its own process; a failure shows the end of its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "ser", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ser {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def ser_cli() -> SerRunner:
    """The runner of ``python -m ser`` subcommands (``ser_cli("fit", ..., cwd=...)``)."""
    return run_ser


@pytest.fixture(scope="session")
def shemo_corpus(tmp_path_factory) -> Path:
    """48 files of a synthetic ShEMO (4 speakers x 12), shared by the end-to-end tests."""
    corpus = tmp_path_factory.mktemp("corpus") / "ShEMO"
    write_corpus("shemo", corpus, num_speakers=4, utterances_per_speaker=12, seed=1)
    return corpus
