"""The commands of ``python -m ser`` and the module that runs each (``console`` dispatches).

Only the chosen command's module is imported: ``predict``, ``export``, ``synth`` and ``cache``
start without Lightning. A new command is one line in ``COMMANDS`` and a ``main(argv)`` in its
module.
"""

from __future__ import annotations

# name -> (module with main(argv), one line of help); fit/validate/test: ser.commands.cli.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("ser.commands.cli", "train a model (LightningCLI; -c configs/...)"),
    "validate": ("ser.commands.cli", "validate a checkpoint on the validation split"),
    "test": ("ser.commands.cli", "test a checkpoint; writes test_metrics.json, predictions.csv"),
    "predict": ("ser.commands.predict", "score audio files with a checkpoint or ONNX file (CSV)"),
    "export": ("ser.commands.export", "export a checkpoint to ONNX, verified against PyTorch"),
    "cv": ("ser.commands.cv", "every fold of the data's protocol as its own run, then mean ± std"),
    "cv-summary": ("ser.commands.cv_summary", "summarise the finished folds of a cv directory"),
    "compare": ("ser.commands.compare", "is B better than A? bootstrap, randomization, McNemar"),
    "synth": ("ser.commands.synth", "write a synthetic corpus in the ShEMO/IEMOCAP layout"),
    "cache": ("ser.commands.cache", "list or clean the decoded-audio cache (cache list|clean)"),
}
LIGHTNING = ("fit", "validate", "test")


def usage() -> str:
    lines = ["usage: python -m ser [--debug] <command> [options]  (python -m ser <command> --help)"]
    lines += ["", "Speech emotion recognition with pretrained speech transformers.", ""]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "  --debug    show the full traceback of errors (also: SER_DEBUG=1)"]
    return "\n".join(lines)
