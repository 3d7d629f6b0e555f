"""Whisper's encoder on the clip's own length vs padded to its 30 s window (EmoBox's way).

    python benchmarks/whisper_input.py --seconds 2 4 8 --repeats 3

A random-init Whisper encoder the size of whisper-small's (``--config`` overrides it, e.g. a
tiny one), in eval mode without gradients, one clip at a time as a feature store extracts them:
seconds per clip with ``whisper.pad_to_window`` off (the default) and on, per clip length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ser.models import HFBackbone
from ser.models.backbones.whisper import WhisperOptions

WHISPER_SMALL = {
    "d_model": 768,
    "encoder_layers": 12,
    "encoder_attention_heads": 12,
    "encoder_ffn_dim": 3072,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
}
# The decoder is dropped by HFBackbone: as small as the config allows, to build fast.
DECODER = {"decoder_layers": 1, "decoder_ffn_dim": 8, "max_target_positions": 8, "vocab_size": 16}


def seconds_per_clip(backbone: HFBackbone, samples: int, repeats: int) -> float:
    """Median seconds of one forward pass over a clip of ``samples`` (after a warm-up)."""
    wave = torch.randn(1, samples) * 0.1
    lengths = torch.tensor([samples])
    times = []
    with torch.no_grad():
        backbone(wave, lengths)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            backbone(wave, lengths)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="{}", help="JSON overrides of whisper-small's size")
    args = parser.parse_args(argv)
    config = {**WHISPER_SMALL, **DECODER, **json.loads(args.config)}
    config["decoder_attention_heads"] = config["encoder_attention_heads"]
    config.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    ways = {
        padded: HFBackbone(
            model_type="whisper", config=config, whisper=WhisperOptions(pad_to_window=padded)
        )
        for padded in (False, True)
    }
    window = ways[True].family.window_frames * ways[True].family.hop_length / 16_000
    print(f"| clip (s) | clip's own length (s) | padded to the {window:g} s window (s) | ratio |")
    print("|---|---|---|---|")
    for seconds in args.seconds:
        own, padded = (
            seconds_per_clip(ways[p].eval(), int(seconds * 16_000), args.repeats)
            for p in (False, True)
        )
        print(f"| {seconds:g} | {own:.3f} | {padded:.3f} | {padded / own:.1f}x |")


if __name__ == "__main__":
    main()
