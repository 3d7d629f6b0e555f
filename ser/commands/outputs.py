"""Where a command may write its output: checked before any work, so nothing is lost.

An output is never one of the command's inputs (``export --output m.ckpt`` of ``m.ckpt`` would
destroy the checkpoint), replaces an existing file only when asked, and goes into a folder that
can be written, so an hour of scoring never ends in "permission denied". A file written bit by
bit (predict's rows) is staged beside it and renamed when whole (``StagedOutput``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType


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
    if path.exists() and not path.is_file():  # a device or pipe: renaming onto it replaces it
        raise ValueError(f"--output {output} is not a regular file; give a file name")
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


class StagedOutput:
    """A text file written into a temporary file beside ``path``, renamed onto it when whole.

    ``with StagedOutput(path) as out: out.write(...)``. Each write is flushed, so what is written
    is on disk as it comes and a full disk is found at the write that did not fit; the block's
    end syncs the file and renames it onto ``path`` (the same folder, so the rename is atomic).
    An error anywhere, a write's or the caller's, removes the temporary file and leaves ``path``
    as it was; a write error names ``path``.

    Args:
        path: the file to write (``--output``, checked by ``check_output``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._naming_path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        self.tmp = Path(name)
        self.file = open(fd, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed on exit)

    def write(self, text: str) -> int:
        with self._naming_path():
            count = self.file.write(text)
            self.file.flush()
        return count

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                with self._naming_path():
                    os.fsync(self.file.fileno())
                    self.file.close()
                    self.tmp.replace(self.path)
        finally:
            if self.tmp.exists():  # not renamed: an error, the caller's or the commit's
                self._discard()

    def _discard(self) -> None:
        # Flushing what a full disk refused fails again; the first error is the one reported.
        with suppress(OSError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    @contextmanager
    def _naming_path(self) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            raise OSError(
                f"--output {self.path}: cannot write it ({err.strerror or err}); nothing was "
                "written there and no partial file is left"
            ) from None
