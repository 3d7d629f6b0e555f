"""``python -m ser synth``: write a synthetic corpus in the ShEMO or IEMOCAP layout
(``ser.data.synthetic``) and log what it holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ser.commands.parsing import ShortArgumentParser
from ser.data.synthetic import write_corpus

log = logging.getLogger(__name__)

# Demo defaults: ~10 speakers; 60 files each keeps the demo corpus quick to write.
DEFAULT_SPEAKERS = {"shemo": 10, "iemocap": 10}
DEFAULT_PER_SPEAKER = {"shemo": 60, "iemocap": 40}


def main(argv: Sequence[str] | None = None) -> int:
    """``synth``: write a synthetic corpus and log a summary (counts, speakers, durations)."""
    parser = ShortArgumentParser(
        prog="python -m ser synth",
        description="Write a synthetic emotional-speech corpus in the real ShEMO/IEMOCAP layout.",
    )
    parser.add_argument("--layout", choices=["shemo", "iemocap"], required=True)
    parser.add_argument("--out", required=True, help="corpus root to create")
    parser.add_argument("--speakers", type=int, default=None,
                        help="speakers (default 10; IEMOCAP: even, at most 10)")  # fmt: skip
    parser.add_argument("--per-speaker", type=int, default=None,
                        help="files per speaker (default: shemo 60, iemocap 40)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the corpus folders if --out is not empty")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = write_corpus(
        args.layout,
        args.out,
        num_speakers=args.speakers or DEFAULT_SPEAKERS[args.layout],
        utterances_per_speaker=args.per_speaker or DEFAULT_PER_SPEAKER[args.layout],
        seed=args.seed,
        overwrite=args.overwrite,
    )
    seconds = time.perf_counter() - started
    log.info(
        "wrote %d %s files (%d speakers) to %s in %.1f s",
        summary["files"], args.layout, summary["speakers"], summary["out"], seconds,
    )  # fmt: skip
    log.info("per code: %s", summary["per_code"])
    log.info("sample rates: %s", summary["sample_rates"])
    log.info("durations: %s", summary["duration"])
    return 0
