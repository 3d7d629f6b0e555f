"""Speech regions (energy and Silero VAD) and how long regions are cut into model windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.data.synthetic.voice import PROSODY, make_speaker, synthesize
from ser.inference.vad import EnergyVAD, SileroVAD, make_vad
from ser.models.windows import cut_regions, window_spans

RATE = 16_000


def bursts(spans: list[tuple[float, float]], total: float) -> np.ndarray:
    """Tone bursts (220 Hz with a vibrato) at ``spans`` seconds in faint noise."""
    rng = np.random.default_rng(0)
    wave = 1e-4 * rng.standard_normal(int(total * RATE))
    t = np.arange(len(wave)) / RATE
    for start, end in spans:
        part = slice(int(start * RATE), int(end * RATE))
        wave[part] += 0.3 * np.sin(2 * np.pi * 220 * t[part] + 3 * np.sin(2 * np.pi * 5 * t[part]))
    return wave.astype(np.float32)


def test_long_regions_are_cut_into_equal_pieces_within_a_window():
    pieces = cut_regions([(0, 100), (200, 250)], window=40)
    assert pieces == [(0, 33), (33, 67), (67, 100), (200, 225), (225, 250)]  # no 10-sample scrap
    assert all(b - a <= 40 for a, b in pieces)


def test_window_spans_reach_the_end():
    assert window_spans(100, 40, 20) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert window_spans(30, 40, 20) == [(0, 30)]


def test_energy_vad_finds_bursts_and_bridges_short_pauses():
    truth = [(1.0, 2.5), (3.5, 4.0), (4.2, 6.0)]  # a 0.2 s pause: one region
    regions = [(a / RATE, b / RATE) for a, b in EnergyVAD()(bursts(truth, 7.0))]
    assert len(regions) == 2
    assert np.allclose(regions, [(1.0, 2.5), (3.5, 6.0)], atol=0.06)


def test_energy_vad_ignores_silence_and_short_clicks():
    wave = bursts([(1.0, 1.1)], 3.0)  # 0.1 s < min_speech_seconds
    assert EnergyVAD()(wave) == []
    assert EnergyVAD()(np.zeros(RATE, dtype=np.float32)) == []


def voices(spans: list[tuple[float, float]], total: float) -> np.ndarray:
    """Synthetic speech (the test corpus' voice) at ``spans`` seconds, silence elsewhere."""
    rng = np.random.default_rng(0)
    speaker = make_speaker("female", rng)
    wave = np.zeros(int(total * RATE), dtype=np.float32)
    for (start, end), emotion in zip(spans, ("neutral", "anger", "sadness"), strict=False):
        voice = synthesize(speaker, PROSODY[emotion], end - start, RATE, rng)  # (T,)
        wave[int(start * RATE) : int(start * RATE) + len(voice)] = voice
    return wave


def test_silero_runs_from_the_model_in_the_wheel():
    import silero_vad

    assert (Path(silero_vad.__file__).parent / "data" / "silero_vad.jit").is_file()
    assert SileroVAD()(np.zeros(2 * RATE, dtype=np.float32)) == []  # no network, no speech


def test_silero_finds_each_utterance_where_it_is():
    truth = [(1.0, 3.0), (4.5, 6.0)]
    regions = [(a / RATE, b / RATE) for a, b in SileroVAD()(voices(truth, 7.0))]
    assert len(regions) == len(truth)
    assert np.allclose(regions, truth, atol=0.3)


def test_unknown_vad_is_refused():
    with pytest.raises(ValueError, match="silero or energy"):
        make_vad("webrtc")
