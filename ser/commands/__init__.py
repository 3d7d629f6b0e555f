"""Commands: ``python -m ser`` and its subcommands, console output, run directories; no logic."""
