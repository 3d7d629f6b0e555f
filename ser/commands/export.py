"""``python -m ser export``: a ``ser fit`` checkpoint to ONNX, checked against PyTorch.

The output is checked first (never one of the inputs; replaced only with ``--overwrite true``);
the export itself is ``ser.inference.export.export_onnx``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ser.commands.outputs import check_output
from ser.commands.parsing import ShortArgumentParser
from ser.inference.export import export_onnx
from ser.models.network import load_model

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ShortArgumentParser(
        prog="python -m ser export",
        description="Export a `ser fit` checkpoint to ONNX (waves, lengths -> probs) and check "
        "it against PyTorch with onnxruntime.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `ser fit`")
    parser.add_argument("--output", default="model.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--overwrite",
        choices=["true", "false"],
        default="false",
        help="replace an existing --output",
    )
    args = parser.parse_args(argv)
    # A bad checkpoint, output or model (ExportError): one error line (ser.commands.console).
    check_output(args.output, [args.ckpt_path], args.overwrite == "true")
    model, classes, defaults = load_model(args.ckpt_path)
    diff = export_onnx(model, classes, defaults.item, args.output,
                       timeline_window_seconds=defaults.timeline,
                       trim_silence=defaults.trim_silence)  # fmt: skip
    outputs = [f"classes {classes}"] if classes else []
    outputs += [f"dimensions {model.dimensions}"] if model.dimensions else []
    log.info(
        "wrote %s (%s); onnxruntime vs PyTorch max abs difference %.2e",
        args.output,
        ", ".join(outputs),
        diff,
    )
