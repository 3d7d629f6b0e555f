"""Shared fixtures: the ``python -m ser`` runner and a small synthetic ShEMO corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ser.data.synthetic import write_corpus

SerRunner = Callable[..., subprocess.CompletedProcess]


def run_ser(
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
