"""``python -m ser cache list|clean``: what the audio cache folder holds, and removing old parts.

Each audio cache folder holds the feature stores computed from it (``features/``, see
``ser.features``); they count in its size and go with it. A finished cache records its last
use in its folder's modification time (``AudioCache`` touches it on every open), so
``clean --older_than DAYS`` removes the caches no run has used for that long. Unfinished builds
are removed when they will never finish: this host's builds whose process is gone, and any
build (another host's too) that has written nothing for ``--stale_hours``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ser.data.cache import default_cache_dir, tmp_build_is_dead, tmp_owner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One folder of the cache: a finished cache or an unfinished build."""

    path: Path
    finished: bool
    size_bytes: int
    idle_seconds: float  # since last use (finished) or last write (unfinished)
    description: str


def entries(cache_dir: Path) -> list[Entry]:
    """The folders of ``cache_dir``, finished caches first, each with its size and idle time."""
    found = []
    for folder in (
        sorted(p for p in cache_dir.iterdir() if p.is_dir()) if cache_dir.is_dir() else []
    ):
        files = [p for p in folder.iterdir() if p.is_file()]
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())  # stores too
        last = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in files)])
        owner = tmp_owner(folder)
        if owner is None:
            description = _describe_finished(folder)
        else:
            state = "killed" if tmp_build_is_dead(folder) else "running or stalled"
            description = f"unfinished build of {owner[0]} pid {owner[1]} ({state})"
        found.append(Entry(folder, owner is None, size, time.time() - last, description))
    return sorted(found, key=lambda e: (not e.finished, e.path.name))


def _describe_finished(folder: Path) -> str:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "incomplete folder (no readable meta.json)"
    hours = meta.get("total_samples", 0) / meta.get("sample_rate", 1) / 3600
    text = f"{meta.get('num_utterances', '?')} utterances, {hours:.2f} h of audio"
    stores = [p.parent for p in folder.glob("features/*/meta.json")]
    if stores:
        store_bytes = sum(f.stat().st_size for store in stores for f in store.iterdir())
        text += f", {len(stores)} feature stores ({_size(store_bytes)})"
    return text


def to_remove(
    found: list[Entry], older_than_days: float, stale_hours: float, remove_all: bool
) -> list[Entry]:
    """The entries ``clean`` removes (see the module docstring)."""
    chosen = []
    for entry in found:
        if entry.finished:
            old = entry.idle_seconds > older_than_days * 86400
        else:
            old = tmp_build_is_dead(entry.path) or entry.idle_seconds > stale_hours * 3600
        if old or remove_all:
            chosen.append(entry)
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ser cache list|clean [options]``."""
    parser = argparse.ArgumentParser(prog="python -m ser cache", description=__doc__)
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
    if args.action == "list":
        _print_list(args.cache_dir, found)
        return
    chosen = to_remove(found, args.older_than, args.stale_hours, args.all)
    for entry in chosen:
        verb = "would remove" if args.dry_run else "removing"
        log.info("%s %s: %s, %s", verb, entry.path, entry.description, _size(entry.size_bytes))
        if not args.dry_run:
            shutil.rmtree(entry.path, ignore_errors=True)
    freed = sum(e.size_bytes for e in chosen)
    log.info("%d of %d folders, %s", len(chosen), len(found), _size(freed))


def _print_list(cache_dir: Path, found: list[Entry]) -> None:
    # The command's answer, on stdout (log lines go to stderr).
    total = _size(sum(e.size_bytes for e in found))
    lines = [f"audio cache {cache_dir}: {len(found)} folders, {total}"]
    for entry in found:
        idle = f"unused for {entry.idle_seconds / 86400:.1f} d"
        lines.append(
            f"  {entry.path.name}  {_size(entry.size_bytes):>9}  {idle}  {entry.description}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"
