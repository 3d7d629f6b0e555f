"""``python -m ser export``: a checkpoint as an ONNX file, verified against PyTorch on export,
or as a checkpoint of the model alone (``export_checkpoint``), checked against the original.

The graph takes ``waves (B, T)`` float32 at 16 kHz and ``lengths (B,)`` int64 and gives
``probs (B, C)``, with batch and time dynamic; a dimensional model's values follow as K more
columns (B, C + K). Class names, dimensions, window and sample rate are in the model's metadata,
so ``EmotionRecognizer.from_onnx`` needs nothing else.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ser.audio import TARGET_SAMPLE_RATE
from ser.models.checkpoint import load_checkpoint, model_only
from ser.models.network import EmotionModel, load_model

OPSET = 18


class ExportError(ValueError):
    """The model cannot be exported faithfully (the reason is in the message)."""


def verification_batch(window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two padded items of other lengths than the trace's: a window and 60 % of one."""
    lengths = torch.tensor([window, int(0.6 * window)])  # (2,)
    generator = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(2, window, generator=generator)  # (2, T)
    waves[1, lengths[1] :] = 0.0
    return waves, lengths


def export_onnx(
    model: EmotionModel,
    classes: Sequence[str],
    window_seconds: float,
    output: str | Path,
    tolerance: float = 1e-4,
    timeline_window_seconds: float | None = None,
    trim_silence: bool = False,
) -> float:
    """Write ``output`` and return the max abs difference to PyTorch on a fresh batch. The
    file records ``window_seconds``, ``timeline_window_seconds`` (None: the window) and
    ``trim_silence`` (the model trained on speech spans) as ``EmotionRecognizer.from_onnx``'s
    defaults.

    Raises ``ExportError`` when the exporter fails or onnxruntime disagrees by more than
    ``tolerance`` (a graph that baked in the example's shapes).
    """
    family = type(getattr(model.backbone, "family", model.backbone)).__name__
    model = model.eval()
    window = round(window_seconds * TARGET_SAMPLE_RATE)
    longest = longest_window(model)
    if longest is not None and window > longest:
        raise ExportError(
            f"{family}: the window ({window_seconds} s) is longer than the "
            f"{longest / TARGET_SAMPLE_RATE:.2f} s the encoder takes in one pass; a graph "
            "cannot cut a row into windows: export a model with a shorter window"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")  # a graph that fails the check is not left
    try:
        _trace(model, family, window, tmp)
        windows = {
            "window_seconds": window_seconds,
            "timeline_window_seconds": window_seconds
            if timeline_window_seconds is None
            else timeline_window_seconds,
        }
        meta = {**windows, "trim_silence": "true" if trim_silence else "false"}
        _add_metadata(tmp, classes, model.dimensions, meta, longest)
        diff = _verify(model, family, window, tmp, tolerance)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    return diff


def _trace(model: EmotionModel, family: str, window: int, path: Path) -> None:
    example = (0.1 * torch.randn(2, window // 2), torch.tensor([window // 2, window // 3]))
    try:
        with warnings.catch_warnings():
            # The tracer warns of every Python value it fixes; _verify finds those that matter
            # (a graph that only works at the export's shapes).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The exporter cautions at every advanced index that negative indices would export
            # wrongly; a wrong graph is what _verify refuses, whatever the cause.
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator")
            torch.onnx.export(
                model,
                example,
                str(path),
                input_names=["waves", "lengths"],
                output_names=["probs"],
                dynamic_axes={"waves": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as err:
        raise ExportError(f"{family}: ONNX export failed ({err})") from err


def longest_window(model: EmotionModel) -> int | None:
    """The most samples a row of the graph may hold (AST's window, Whisper's 30 s; None: any):
    the encoder cuts longer items into windows in Python, which a traced graph does not keep."""
    return getattr(getattr(model.backbone, "family", None), "window_samples", None)


def _add_metadata(
    path: Path,
    classes: Sequence[str],
    dimensions: Sequence[str],
    defaults: dict[str, float | str],
    longest: int | None,
) -> None:
    import onnx

    proto = onnx.load(str(path))
    meta = {
        "class_names": json.dumps(list(classes)),
        "dimensions": json.dumps(list(dimensions)),
        **{key: str(value) for key, value in defaults.items()},
        "sample_rate": str(TARGET_SAMPLE_RATE),
    }
    if longest is not None:
        meta["longest_window_seconds"] = str(longest / TARGET_SAMPLE_RATE)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _verify(model: EmotionModel, family: str, window: int, path: Path, tolerance: float) -> float:
    import onnxruntime

    waves, lengths = verification_batch(window)
    with torch.inference_mode():
        expected = model(waves, lengths).numpy()  # (2, C)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        got = session.run(["probs"], {"waves": waves.numpy(), "lengths": lengths.numpy()})[0]
    except Exception as err:  # onnxruntime raises its own Fail/RuntimeException types
        raise ExportError(
            f"{family}: the exported graph fails in onnxruntime on a batch of other lengths than "
            f"the export's (a shape-dependent step was fixed at export): {str(err)[:300]}"
        ) from err
    diff = float(np.abs(got - expected).max())
    if not diff <= tolerance:
        raise ExportError(
            f"{family}: onnxruntime differs from PyTorch by {diff:.3g} (> {tolerance}) on a batch "
            "of other lengths than the export's: the graph fixed a shape-dependent step"
        )
    return diff


CHECKPOINT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_checkpoint(
    ckpt_path: str | Path, output: str | Path, dtype: torch.dtype | str = torch.float32
) -> float:
    """Write the model of ``ckpt_path`` alone to ``output`` (``model_only``: no optimizer, schedule
    or loop state, the weights as ``dtype``: a torch dtype or its name, as ``--dtype`` takes it)
    and return the max abs difference of its outputs to the original's on a fresh batch (0 in
    float32; the rounding's effect in half precision).

    The file is written beside ``output`` and renamed onto it once it loads and is checked.
    Raises ``ExportError`` when a weight does not fit in ``dtype`` (float16 ends at 65504).
    """
    names = {value: name for name, value in CHECKPOINT_DTYPES.items()}
    if dtype not in CHECKPOINT_DTYPES and dtype not in names:
        raise ValueError(f"dtype={dtype!r}; expected float32, float16 or bfloat16")
    dtype = CHECKPOINT_DTYPES.get(dtype, dtype)
    # A damaged or foreign file is refused here, weights holding NaN/inf included: any that does
    # not fit in dtype is an overflow of the cast.
    original, _, defaults = load_model(ckpt_path)
    lean = model_only(load_checkpoint(ckpt_path, "--ckpt_path"), dtype)
    overflow = [
        key
        for key, tensor in lean["state_dict"].items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if overflow:
        raise ExportError(
            f"--dtype {str(dtype).removeprefix('torch.')}: the weights {', '.join(overflow[:3])} "
            "exceed its range; export as bfloat16 or float32"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        torch.save(lean, tmp)
        exported, _, _ = load_model(tmp)
        waves, lengths = verification_batch(round(defaults.item * TARGET_SAMPLE_RATE))
        with torch.inference_mode():
            diff = float((exported(waves, lengths) - original(waves, lengths)).abs().max())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    return diff
