"""``python -m ser cv-summary DIR``: gather the finished folds of a cv directory
(``ser.evaluation.cv_summary``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ser.commands.parsing import ShortArgumentParser
from ser.evaluation.cv_summary import summarise


def main(argv: Sequence[str]) -> int:
    """``cv-summary DIR``: summarise the finished folds; exit 1 when a fold is missing."""
    parser = ShortArgumentParser(
        prog="python -m ser cv-summary",
        description="Gather the finished folds of a cv directory into cv_summary.json/.md/.png.",
    )
    parser.add_argument("cv_dir", help="the --cv_dir of `python -m ser cv`")
    options = parser.parse_args(list(argv))
    return 1 if summarise(Path(options.cv_dir))["missing"] else 0
