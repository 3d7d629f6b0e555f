"""What the audio cache folder holds, and which parts to remove (``python -m ser cache``).

Each audio cache folder holds the feature stores computed from it (``features/``, see
``ser.features``); they count in its size and go with it. A finished cache records its last
use in its folder's modification time (``AudioCache`` touches it on every open), so
``clean --older_than DAYS`` removes the caches no run has used for that long. Unfinished builds
are removed when they will never finish: this host's builds whose process is gone, and any
build (another host's too) that has written nothing for ``--stale_hours``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ser.data.cache import tmp_build_is_dead, tmp_owner


@dataclass(frozen=True)
class Entry:
    """One folder of the cache: a finished cache or an unfinished build."""

    path: Path
    finished: bool
    size_bytes: int
    idle_seconds: float  # since last use (finished) or last write (unfinished)
    description: str


# A finished cache's folder name: the first 16 hex digits of its key (``AudioCache.build``).
FINISHED_NAME = re.compile(r"[0-9a-f]{16}")


def is_cache_folder(folder: Path) -> bool:
    """Whether ``folder``'s name is one ser gives a finished cache or a build in progress."""
    return FINISHED_NAME.fullmatch(folder.name) is not None or tmp_owner(folder) is not None


def _folders(cache_dir: Path) -> list[Path]:
    """The folders in ``cache_dir``, sorted (none when it is missing)."""
    return sorted(p for p in cache_dir.iterdir() if p.is_dir()) if cache_dir.is_dir() else []


def foreign_folders(cache_dir: Path) -> list[Path]:
    """The folders of ``cache_dir`` ser did not write (never listed as caches nor removed: a
    ``--cache_dir`` given by mistake may be a corpus or a results folder)."""
    return [folder for folder in _folders(cache_dir) if not is_cache_folder(folder)]


def entries(cache_dir: Path) -> list[Entry]:
    """The cache folders of ``cache_dir``, finished caches first, each with its size and idle
    time."""
    found = []
    for folder in filter(is_cache_folder, _folders(cache_dir)):
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
        text += f", {len(stores)} feature stores ({format_size(store_bytes)})"
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


def format_size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"
