"""``python -m ser cache list|clean``: list the audio cache folder, or remove the parts no run
uses any more (which ones: ``ser.data.cache_admin``)."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ser.commands.parsing import ShortArgumentParser
from ser.data.cache import default_cache_dir
from ser.data.cache_admin import Entry, entries, foreign_folders, format_size, to_remove

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ser cache list|clean [options]``."""
    parser = ShortArgumentParser(
        prog="python -m ser cache",
        description="List the decoded-audio cache (list), or remove what no run has used for a "
        "while and unfinished builds that will never finish (clean).",
    )
    parser.add_argument("action", choices=["list", "clean"])
    parser.add_argument("--cache_dir", type=Path, default=default_cache_dir(), help="%(default)s")
    parser.add_argument(
        "--older_than", type=float, default=30.0, help="clean: days a cache went unused"
    )
    parser.add_argument(
        "--stale_hours", type=float, default=24.0, help="clean: hours an unfinished build is idle"
    )
    parser.add_argument("--all", action="store_true", help="clean: remove every cache")
    parser.add_argument("--dry_run", action="store_true", help="clean: only say what would go")
    args = parser.parse_args(argv)
    found = entries(args.cache_dir)
    foreign = foreign_folders(args.cache_dir)
    if args.action == "list":
        _print_list(args.cache_dir, found, foreign)
        return
    if foreign:
        log.warning(_left_alone(foreign, args.cache_dir))
    chosen = to_remove(found, args.older_than, args.stale_hours, args.all)
    running = [entry for entry in found if entry.state == "running"]
    if args.all and running:
        log.info("left alone: %d builds running now (%s)", len(running), running[0].path)
    removed, failed = [], []
    for entry in chosen:
        verb = "would remove" if args.dry_run else "removing"
        size = format_size(entry.size_bytes)
        log.info("%s %s: %s, %s", verb, entry.path, entry.description, size)
        if args.dry_run:
            removed.append(entry)
            continue
        error = _remove(entry.path)
        if error is None:
            removed.append(entry)
        else:
            log.warning("could not remove %s: %s", entry.path, error)
            failed.append(entry)
    freed = sum(e.size_bytes for e in removed)
    verb = "would free" if args.dry_run else "freed"
    log.info("%d of %d folders, %s %s", len(removed), len(found), verb, format_size(freed))
    if failed:
        raise SystemExit(1)


def _remove(folder: Path) -> str | None:
    """Remove ``folder``; None when it is gone, else the first error (a read-only disk)."""
    errors: list[str] = []

    def note(function: object, path: str, exc_info: tuple) -> None:
        errors.append(f"{path}: {exc_info[1]}")

    shutil.rmtree(folder, onerror=note)  # onexc from Python 3.12 on; onerror works in 3.10+
    if not folder.exists():
        return None
    return errors[0] if errors else "still there"


def _left_alone(foreign: list[Path], cache_dir: Path) -> str:
    names = ", ".join(folder.name for folder in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
    return (
        f"left alone: {len(foreign)} folders ser did not write ({names}); is --cache_dir "
        f"{cache_dir} the audio cache folder?"
    )


def _print_list(cache_dir: Path, found: list[Entry], foreign: list[Path]) -> None:
    # The command's answer, on stdout (log lines go to stderr).
    total = format_size(sum(e.size_bytes for e in found))
    lines = [f"audio cache {cache_dir}: {len(found)} folders, {total}"]
    for entry in found:
        idle = f"unused for {entry.idle_seconds / 86400:.1f} d"
        size = format_size(entry.size_bytes)
        lines.append(f"  {entry.path.name}  {size:>9}  {idle}  {entry.description}")
    if foreign:
        lines.append(_left_alone(foreign, cache_dir))
    sys.stdout.write("\n".join(lines) + "\n")
