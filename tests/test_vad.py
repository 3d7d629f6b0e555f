"""Speech regions (energy and Silero VAD) and how long regions are cut into model windows."""

from __future__ import annotations

import itertools
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ser.data.synthetic.voice import PROSODY, make_speaker, synthesize
from ser.models.windows import plan_timeline, window_spans
from ser.vad import (
    EDGE_CONTEXT_SECONDS,
    EnergyVAD,
    SileroVAD,
    make_vad,
    speech_span,
)

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


def test_timeline_windows_are_whole_windows_at_most_a_hop_apart_from_end_to_end():
    plan = plan_timeline([(0, 100), (200, 250), (300, 330)], window=40, hop=20)
    assert plan.windows == [(0, 40), (20, 60), (40, 80), (60, 100),  # every 20: 4 windows
                            (200, 240), (210, 250),  # 10 apart: the fewest within the hop
                            (300, 330)]  # shorter than a window: itself  # fmt: skip
    assert plan.steps == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100),
                          (200, 210), (210, 240), (240, 250), (300, 330)]  # fmt: skip
    assert plan.covering == [(0, 1), (0, 2), (1, 3), (2, 4), (3, 4), (4, 5), (4, 6), (5, 6), (6, 7)]
    assert plan.region == [0, 0, 0, 0, 0, 1, 1, 1, 2]
    assert plan_timeline([(5, 5)], window=40, hop=20).windows == []  # an empty region: none
    with pytest.raises(ValueError, match="hop 50 and window 40"):
        plan_timeline([(0, 100)], window=40, hop=50)


@pytest.mark.parametrize(("window", "hop"), [(40, 20), (40, 15), (30, 30), (1000, 500)])
def test_timeline_steps_are_covered_by_exactly_the_windows_that_hold_them(window, hop):
    regions = [(0, 100), (150, 160), (200, 263)]
    plan = plan_timeline(regions, window, hop)
    # The steps tile each region; windows are whole windows (a shorter region: itself), at most
    # a hop apart, from its start to its end.
    for index, (start, stop) in enumerate(regions):
        steps = [s for s, r in zip(plan.steps, plan.region, strict=True) if r == index]
        assert steps[0][0] == start and steps[-1][1] == stop
        assert all(a[1] == b[0] for a, b in itertools.pairwise(steps))
        windows = [w for w in plan.windows if start <= w[0] and w[1] <= stop]
        assert windows[0][0] == start and windows[-1][1] == stop
        assert all(b - a == min(window, stop - start) for a, b in windows)
        assert all(b[0] - a[0] <= hop for a, b in itertools.pairwise(windows))
    for (a, b), (first, stop) in zip(plan.steps, plan.covering, strict=True):
        holding = [i for i, (x, y) in enumerate(plan.windows) if x <= a and b <= y]
        assert holding == list(range(first, stop)) and holding
    # A region no longer than a window is one window: the 10-sample one.
    assert (150, 160) in plan.windows


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


def test_silero_loads_without_a_warning_outside_the_cli_too():
    """silero-vad loads its TorchScript model with ``torch.jit.load``, which torch 2.14 deprecates
    (a FutureWarning nobody using ser can act on): silent from Python, not only from the CLI."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # New threads load their own copies of the model, at once (the cache's reader threads):
        # silencing the warnings swaps the process's filters, so each load must have them alone.
        readers = [
            threading.Thread(target=SileroVAD(), args=(np.zeros(RATE, dtype=np.float32),))
            for _ in range(8)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    assert [str(w.message) for w in caught] == []


def test_silero_finds_each_utterance_where_it_is():
    truth = [(1.0, 3.0), (4.5, 6.0)]
    regions = [(a / RATE, b / RATE) for a, b in SileroVAD()(voices(truth, 7.0))]
    assert len(regions) == len(truth)
    assert np.allclose(regions, truth, atol=0.3)


def test_silero_in_parallel_threads_finds_what_it_finds_alone():
    """The model keeps state across one recording's frames: threads reading files in parallel
    (``EmotionRecognizer``'s) each use their own copy, so no recording's regions mix."""
    waves = [voices([(0.5 + k / 4, 2.0 + k / 3)], 3.0 + k / 2) for k in range(6)]
    alone = [SileroVAD()(wave) for wave in waves]
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(SileroVAD(), waves)) == alone
    assert all(len(regions) == 1 for regions in alone)


@pytest.mark.parametrize("gain_db", [-20.0, -30.0])
def test_speech_is_found_where_it_is_whatever_the_recording_level(gain_db):
    """A recording 20-30 dB quieter (a far microphone, a low gain) keeps its speech: the models
    hear every input at one level (``input_level_db``), so the detectors that choose what they
    hear must not depend on the level either. A recording at the quiet end of a corpus (here
    -40 dBFS, 20 dB below EmoDB's clips) taken 20 dB lower lost all but its loudest syllables."""
    wave = voices([(1.0, 3.0), (4.5, 6.0)], 7.0)
    wave *= 10 ** (-40 / 20) / np.sqrt(np.mean(wave**2))  # -40 dBFS over the recording
    quiet = (wave * 10 ** (gain_db / 20)).astype(np.float32)
    for vad in (SileroVAD(), EnergyVAD()):
        heard, heard_quiet = np.array(vad(wave)) / RATE, np.array(vad(quiet)) / RATE
        assert heard.shape == heard_quiet.shape == (2, 2)
        assert np.allclose(heard_quiet, heard, atol=0.1)
        assert np.allclose(
            np.array(speech_span(quiet, vad)) / RATE, np.array(speech_span(wave, vad)) / RATE,
            atol=0.1,
        )  # fmt: skip


def test_a_recording_is_trimmed_only_where_neither_detector_hears_speech():
    """The span runs from the first speech either detector hears to the last; the VAD is asked
    only about the edges the level threshold would cut, with 0.5 s of the loud part beside them."""
    wave = np.arange(80_000, dtype=np.float32)  # each sample holds its own position
    asked = []

    def vad_hearing(*spans):
        def vad(part):  # spans in the recording -> spans in the part it is given
            asked.append((int(part[0]), int(part[-1]) + 1))
            first, end = int(part[0]), int(part[-1]) + 1
            return [(max(a, first) - first, min(b, end) - first)
                    for a, b in spans if a < end and b > first]  # fmt: skip

        return vad

    def level_hearing(*spans):
        return lambda part: list(spans)

    context = round(EDGE_CONTEXT_SECONDS * RATE)  # 8_000
    level = level_hearing((20_000, 30_000), (40_000, 60_000))
    assert speech_span(wave, vad_hearing((12_000, 25_000)), level) == (12_000, 60_000)
    assert asked == [(0, 20_000 + context), (60_000 - context, 80_000)]
    assert speech_span(wave, vad_hearing((50_000, 71_000)), level) == (20_000, 71_000)
    asked.clear()
    assert speech_span(wave, vad_hearing((0, 70_000)), level_hearing((0, 80_000))) == (0, 80_000)
    assert asked == []  # loud from end to end: nothing to cut, the VAD is not run
    assert speech_span(wave, vad_hearing(), level_hearing()) is None
    assert speech_span(wave, vad_hearing((4_000, 9_000)), level_hearing()) == (4_000, 9_000)


def test_unknown_vad_is_refused():
    with pytest.raises(ValueError, match="silero or energy"):
        make_vad("webrtc")


@pytest.mark.parametrize("gain_db", [-5.0, -10.0, -15.0])
def test_the_span_of_a_quiet_recording_does_not_depend_on_how_quiet(gain_db):
    """Below -30 dBFS a recording is heard raised to it, as a whole: its edges were raised on
    their own level, so a quieter copy heard its first syllables quieter and lost them."""
    wave = voices([(1.0, 2.2), (2.6, 4.0), (4.4, 5.5)], 7.0)
    wave *= 10 ** (-45 / 20) / np.sqrt(np.mean(wave**2))  # -45 dBFS over the recording
    quiet = (wave * 10 ** (gain_db / 20)).astype(np.float32)
    assert speech_span(quiet, SileroVAD()) == speech_span(wave, SileroVAD())
