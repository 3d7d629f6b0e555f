"""``python -m ser <command>``: the list of commands and the dispatch to the module that runs each.

Only the chosen command's module is imported: ``predict`` and ``export`` start without Lightning.
A new command is one line in ``COMMANDS`` and a ``main(argv)`` in its module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module with main(argv), one line of help); fit/validate/test are ser.cli's LightningCLI.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("ser.cli", "train a model (LightningCLI; -c configs/...)"),
    "validate": ("ser.cli", "validate a checkpoint on the validation split"),
    "test": ("ser.cli", "test a checkpoint; writes test_metrics.json, predictions.csv"),
    "predict": ("ser.predict", "score audio files with a checkpoint or ONNX file (CSV)"),
    "export": ("ser.export", "export a checkpoint to ONNX, verified against PyTorch"),
    "synth": ("ser.data.synthetic", "write a synthetic corpus in the ShEMO/IEMOCAP layout"),
}
LIGHTNING = ("fit", "validate", "test")


def usage() -> str:
    lines = ["usage: python -m ser <command> [options]   (python -m ser <command> --help)", ""]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``ser`` and ``python -m ser``; ``argv`` defaults to the command line."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] in ("-h", "--help"):
        print(usage())
        return
    if words[0] not in COMMANDS:
        raise SystemExit(f"ser: unknown command {words[0]!r}\n\n{usage()}")
    module = importlib.import_module(COMMANDS[words[0]][0])
    if words[0] in LIGHTNING:  # LightningCLI reads the subcommand itself (from sys.argv if None)
        module.main(None if argv is None else words)
    else:
        module.main(words[1:])
