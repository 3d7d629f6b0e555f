"""Where a command may write its output: checked before any work, so nothing is lost.

An output is never one of the command's inputs (``export --output m.ckpt`` of ``m.ckpt`` would
destroy the checkpoint), replaces an existing file only when asked, and goes into a folder that
can be written, so an hour of scoring never ends in "permission denied".
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path


def check_output(output: str | Path, inputs: Iterable[str | Path], overwrite: bool) -> Path:
    """``output`` resolved; ``ValueError`` or ``OSError`` with one line if it must not be written.

    Args:
        output: the file the command will write (``--output``).
        inputs: every file the command reads (checkpoint, audio files); compared resolved, so
            ``a.wav``, ``./a.wav`` and a symlink to it are one file.
        overwrite: whether an existing ``output`` may be replaced (``--overwrite true``).
    """
    path = Path(output).resolve()
    for given in inputs:
        if Path(given).resolve() == path:
            raise ValueError(
                f"--output {output} is the input {given}: writing it would destroy the input; "
                "choose another --output"
            )
    if path.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name inside it")
    if path.exists() and not overwrite:
        raise ValueError(f"--output {output} exists; pass --overwrite true to replace it")
    _check_writable(output, path.parent)
    return path


def _check_writable(output: str | Path, folder: Path) -> None:
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # "/" always exists
    if not existing.is_dir():
        raise ValueError(f"--output {output}: {existing} is a file, not a folder")
    try:  # a real file: os.access misses ACLs and network file systems' own rules
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(
            f"--output {output}: cannot write in {existing} ({err.strerror or err}); "
            "choose a writable --output"
        ) from None
