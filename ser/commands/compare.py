"""``python -m ser compare A B``: is B better than A on the same test utterances?

Prints a markdown table of B - A per fold and pooled and a verdict; the statistics and checks are
``ser.evaluation.compare``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ser.commands.parsing import ShortArgumentParser
from ser.evaluation.compare import compare, markdown

log = logging.getLogger(__name__)


def main(argv: Sequence[str]) -> int:
    """Compare two run or cv directories; write the table (and json) where asked."""
    parser = ShortArgumentParser(
        prog="python -m ser compare",
        description="B - A on the same test split: paired bootstrap interval, paired "
        "randomization test (by speaker), McNemar's test.",
    )
    parser.add_argument("a", type=Path, help="run directory or cv directory of model A")
    parser.add_argument("b", type=Path, help="run directory or cv directory of model B")
    parser.add_argument("--output", type=Path, help="also write the table here (.md) and .json")
    options = parser.parse_args(list(argv))
    result = compare(options.a, options.b)
    text = markdown(result)
    print(text, end="")  # the command's output, for a terminal or a pipe
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(text, encoding="utf-8")
        json_path = options.output.with_suffix(".json")
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        log.info("comparison written to %s and %s", options.output, json_path)
    return 0
