"""``python -m ser``: what the console shows, how user errors end, and the light subcommands.

- Our own log lines (run directory, split sizes, cache status, result files) are shown at INFO.
- Warnings a user cannot act on are silenced here, each with the reason.
- A user error (a clear message raised by ``ser`` itself: bad corpus root, bad file name, bad
  checkpoint, unwritable cache) prints one ``error:`` line and exits with status 1; ``--debug`` or
  ``SER_DEBUG=1`` shows the traceback. Unexpected errors keep theirs.
- ``synth``, ``cache`` and the top-level ``--help`` never import Lightning or transformers.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from ser.commands.table import COMMANDS, LIGHTNING, usage

log = logging.getLogger("ser")

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # ser/
# Raised on purpose by our code with a message meant for the user.
_USER_ERROR_TYPES = (ValueError, OSError)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ser`` and ``python -m ser``; ``argv`` defaults to the command line."""
    words = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in words or os.environ.get("SER_DEBUG", "") not in ("", "0")
    words = [w for w in words if w != "--debug"]
    if argv is None:
        sys.argv[1:] = words  # LightningCLI reads the command line itself
    setup_console()
    try:
        _dispatch(words, from_command_line=argv is None)
    except Exception as err:
        if debug or not is_user_error(err):
            raise
        sys.stderr.write(f"error: {err}\n(run with --debug or SER_DEBUG=1 for the traceback)\n")
        sys.exit(1)


def _dispatch(words: list[str], from_command_line: bool) -> None:
    if not words or words[0] in ("-h", "--help"):
        print(usage())
        return
    if words[0] not in COMMANDS:
        raise SystemExit(f"ser: unknown command {words[0]!r}\n\n{usage()}")
    module = importlib.import_module(COMMANDS[words[0]][0])
    if words[0] in LIGHTNING:  # LightningCLI reads the subcommand itself (from sys.argv if None)
        quiet_lightning()
        module.main(None if from_command_line else words)
    elif code := module.main(words[1:]):  # a command may end with an exit status (cv)
        sys.exit(code)


def setup_console() -> None:
    """Show ``ser``'s INFO lines on stderr and silence the noise listed in ``_silence_noise``."""
    # Progress bars written into a file or a pipe (a cv fold's log, a cluster job's stderr) are a
    # line of carriage returns: transformers' "Loading weights" and the hub's download bars are
    # off there (before huggingface_hub reads this at import), unless the user set it.
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[ser] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    _silence_noise()


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr`` (tests and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it: the property wins
        pass


def _silence_noise() -> None:
    # Lightning 2.6 calls torch's deprecated LeafSpec check on every step: not ours to change.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # best.ckpt and last.ckpt are two ModelCheckpoints by design, best first, so
    # test(ckpt_path="best") takes the right one (configs/trainer/default.yaml).
    warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")
    # A frozen encoder runs in eval mode on purpose (HFBackbone.train); the INFO line of the
    # backbone says so.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start")


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips ("💡 Tip: ... litlogger"): nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Filter Lightning's console handlers (they exist once ``lightning.pytorch`` is imported)."""
    for handler in logging.getLogger("lightning.pytorch").handlers:
        handler.addFilter(_NoTips())


def is_user_error(err: BaseException) -> bool:
    """True for an error our own code raised with a message for the user.

    That is an error of a type we use for bad input (ValueError, OSError) whose
    ``raise`` is in a ``ser`` source file, or Lightning's ``MisconfigurationException`` (trainer
    settings that do not go together, said for the user); the same types raised inside a
    library stay unexpected (a traceback helps there), as does anything else.
    """
    if _is_trainer_misconfiguration(err):
        return True
    if not isinstance(err, _USER_ERROR_TYPES) or err.__traceback__ is None:
        return False
    last = traceback.extract_tb(err.__traceback__)[-1]
    return Path(last.filename).resolve().is_relative_to(_PACKAGE_DIR)


def _is_trainer_misconfiguration(err: BaseException) -> bool:
    """Lightning's own error for trainer settings that do not go together (looked up only where
    Lightning is imported already: the light commands never import it)."""
    exceptions = sys.modules.get("lightning.fabric.utilities.exceptions")
    return exceptions is not None and isinstance(err, exceptions.MisconfigurationException)
