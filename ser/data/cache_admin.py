"""What the audio cache folder holds, and which parts to remove (``python -m ser cache``).

Each audio cache folder holds the feature stores computed from it (``features/``, see
``ser.features``); they count in its size and go with it. A finished cache records its last
use in its folder's modification time (``AudioCache`` touches it on every open), so
``clean --older_than DAYS`` removes the caches no run has used for that long. Unfinished builds
(of caches and of feature stores inside them) are removed when they will never finish: builds
whose builder is gone (its lock is free; without locks, this host's builds whose process is
gone), and any build not running that has written nothing for ``--stale_hours``. A running
build, or a cache a feature store is being built from, is never removed, not even by ``--all``.
A folder that vanishes while it is read (a build that finished meanwhile) is left out.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ser.data.cache import build_state, tmp_owner


@dataclass(frozen=True)
class Entry:
    """One folder of the cache: a finished cache or an unfinished build."""

    path: Path
    finished: bool
    size_bytes: int
    idle_seconds: float  # since last use (finished) or last write (unfinished)
    description: str
    # An unfinished build's ``build_state`` ("running", "killed", None: cannot be told).
    state: str | None = None


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
    """The cache folders of ``cache_dir`` and the unfinished feature-store builds inside them,
    finished caches first, each with its size and idle time."""
    found = []
    for folder in filter(is_cache_folder, _folders(cache_dir)):
        builds = [p for p in _folders(folder / "features") if tmp_owner(p) is not None]
        for path in [folder, *builds]:
            try:
                found.append(_entry(path, skip=builds if path == folder else []))
            except FileNotFoundError:  # finished or removed while read: not there any more
                continue
    return sorted(found, key=lambda e: (not e.finished, str(e.path)))


def _entry(folder: Path, skip: list[Path]) -> Entry:
    """``folder`` as an entry; its size leaves out the folders ``skip`` (entries of their own)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    inside = [p for p in folder.rglob("*") if not any(p.is_relative_to(s) for s in skip)]
    size = sum(p.stat().st_size for p in inside if p.is_file())  # feature stores too
    last = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in files)])
    owner, state = tmp_owner(folder), build_state(folder)
    if owner is None:
        description = _describe_finished(folder)
    else:
        what = "feature store" if folder.parent.name == "features" else "build"
        description = f"unfinished {what} of {owner[0]} pid {owner[1]} "
        description += f"({state or 'running or stalled'})"
    return Entry(folder, owner is None, size, time.time() - last, description, state)


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
    running = [entry.path for entry in found if entry.state == "running"]
    chosen = []
    for entry in found:
        if entry.finished:
            if any(path.is_relative_to(entry.path) for path in running):
                continue  # a feature store is being built from it now
            old = entry.idle_seconds > older_than_days * 86400
        else:
            if entry.state == "running":
                continue
            old = entry.state == "killed" or entry.idle_seconds > stale_hours * 3600
        if old or remove_all:
            chosen.append(entry)
    return chosen


def format_size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"
