"""The loader settings every corpus datamodule shares: one typed config group, ``loader:``.

A dataclass argument is a nested, typed group in jsonargparse: ``--data.loader.batch_size 16`` on
the command line, ``loader: {batch_size: 16}`` in YAML, and a link source
(``data.init_args.loader.max_seconds`` sets the backbone's segment length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LoaderSettings:
    """How a datamodule caches, crops and batches its split.

    Args:
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length in seconds (random crop; the paper's 5 s segments);
            the CLI links it to the backbone's segment length.
        eval_max_seconds: evaluation uses the whole utterance up to this cap (None: no cap).
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (None: ``~/.cache/ser``).
        seed: seed of the split and of the batch order.
    """

    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 2
    max_seconds: float = 5.0
    eval_max_seconds: float | None = 30.0
    min_seconds: float = 0.1
    on_bad_file: Literal["skip", "fail"] = "skip"
    cache_dir: str | None = None
    seed: int = 0
