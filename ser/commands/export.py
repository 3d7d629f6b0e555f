"""``python -m ser export``: a ``ser fit`` checkpoint to ONNX (checked against PyTorch), or to a
checkpoint of the model alone for sharing (``--output model.ckpt``, checked against the original).

The output is checked first (never one of the inputs; replaced only with ``--overwrite true``);
the exports themselves are ``ser.inference.export.export_onnx`` and ``export_checkpoint``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ser.commands.outputs import check_output
from ser.commands.parsing import ShortArgumentParser
from ser.inference.export import CHECKPOINT_DTYPES, export_checkpoint, export_onnx
from ser.models.network import load_model

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ShortArgumentParser(
        prog="python -m ser export",
        description="Export a `ser fit` checkpoint to ONNX (waves, lengths -> probs) and check "
        "it against PyTorch with onnxruntime, or (an --output ending in .ckpt) to a checkpoint of "
        "the model alone, without the optimizer and schedule state a fit resumes from.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `ser fit`")
    parser.add_argument(
        "--output",
        default="model.onnx",
        help="the file to write: .onnx (an ONNX graph) or .ckpt (the model's checkpoint)",
    )
    parser.add_argument(
        "--dtype",
        choices=list(CHECKPOINT_DTYPES),
        default="float32",
        help="the weights' type in a .ckpt output (float16/bfloat16: half the size, rounded)",
    )
    parser.add_argument(
        "--overwrite",
        choices=["true", "false"],
        default="false",
        help="replace an existing --output",
    )
    args = parser.parse_args(argv)
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".onnx", ".ckpt"):
        parser.error(f"--output {args.output}: expected a file name ending in .onnx or .ckpt")
    if suffix == ".onnx" and args.dtype != "float32":
        parser.error(f"--dtype {args.dtype}: applies to a .ckpt output (an ONNX graph is float32)")
    # A bad checkpoint, output or model (ExportError): one error line (ser.commands.console).
    check_output(args.output, [args.ckpt_path], args.overwrite == "true")
    if suffix == ".ckpt":
        diff = export_checkpoint(args.ckpt_path, args.output, args.dtype)
        log.info(
            "wrote %s (%.1f MB; %s: %.1f MB): the model alone, weights %s, no optimizer or "
            "schedule state; its outputs differ from the checkpoint's by at most %.2e",
            args.output,
            Path(args.output).stat().st_size / 1e6,
            args.ckpt_path,
            Path(args.ckpt_path).stat().st_size / 1e6,
            args.dtype,
            diff,
        )
        return
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
