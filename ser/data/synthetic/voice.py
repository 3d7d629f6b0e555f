"""A small source-filter voice synthesiser whose prosody depends on the emotion.

Speech-like enough for the demo and tests, cheap enough to write a few hundred files in seconds:
a glottal-pulse source (Rosenberg-like flow pulse, differentiated) follows a time-varying F0
contour; syllables get an attack/decay envelope and a short fricative before the vowel; every
vowel goes through four formant resonances and a spectral tilt, applied in the FFT domain (no
scipy needed). Emotions change pitch level/range/contour, tempo, energy, stress contrast, voice
quality (jitter, shimmer, breathiness, tremor, tilt) the way acted speech does; speakers change
base pitch (female higher), formants, loudness, tempo, timbre and expressiveness, which overlap
the emotions for any single feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

CONTROL_RATE = 200  # Hz: F0 and shimmer contours are drawn at this rate, then interpolated


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice.

    Args:
        gender: "F" or "M".
        f0: habitual pitch in Hz.
        formant_scale: vocal-tract factor (shorter tract -> higher formants; ~1.17 female).
        gain_db: recording-level offset in dB.
        rate: speaking-rate factor.
        tilt: timbre offset of the spectral slope in dB/octave.
        breath: habitual breathiness added to the emotion's.
        expressiveness: factor on pitch range, stress and tremor.
    """

    gender: str
    f0: float
    formant_scale: float
    gain_db: float
    rate: float
    tilt: float
    breath: float
    expressiveness: float


def make_speaker(gender: str, rng: np.random.Generator) -> Speaker:
    """Draw a speaker; female voices are higher in pitch and formants."""
    female = gender == "F"
    return Speaker(
        gender=gender,
        f0=float(rng.normal(205.0, 22.0) if female else rng.normal(118.0, 14.0)),
        formant_scale=float((1.17 if female else 1.0) * rng.uniform(0.95, 1.05)),
        gain_db=float(rng.uniform(-5.0, 5.0)),
        rate=float(np.exp(rng.normal(0.0, 0.1))),
        tilt=float(rng.normal(0.0, 1.5)),
        breath=float(rng.uniform(0.0, 0.05)),
        expressiveness=float(np.exp(rng.normal(0.0, 0.15))),
    )


@dataclass(frozen=True)
class Prosody:
    """How an emotion is spoken, relative to the speaker's habits.

    Args:
        f0_scale: factor on the speaker's pitch.
        f0_range: accent height in semitones.
        slope: pitch drift over the utterance in semitones (declination < 0, rise > 0).
        peak: where in the syllable the accent peaks (0 falling ... 1 rising).
        rate: syllables per second.
        tilt: spectral slope in dB/octave above 500 Hz (flat = bright/pressed, steep = soft).
        open_quotient: fraction of the glottal cycle that is open (pressed < 0.5 < breathy).
        breath: aspiration noise relative to the voiced source.
        jitter: relative F0 perturbation.
        shimmer: relative amplitude perturbation.
        tremor: semitones of 5-8 Hz pitch/loudness modulation.
        gain_db: loudness relative to neutral.
        stress_db: loudness contrast of stressed syllables.
        attack: syllable onset time in seconds.
        pause: mean pause between phrases in seconds.
        f1_scale: first-formant factor (open mouth with high arousal).
        f2_scale: second-formant factor (smiling raises it).
    """

    f0_scale: float
    f0_range: float
    slope: float
    peak: float
    rate: float
    tilt: float
    open_quotient: float
    breath: float
    jitter: float
    shimmer: float
    tremor: float
    gain_db: float
    stress_db: float
    attack: float
    pause: float
    f1_scale: float = 1.0
    f2_scale: float = 1.0


# Directions follow acted-speech studies: anger loud, bright/pressed, fast, high with falling
# accents; sadness low, flat, slow, soft and breathy; happiness high with wide bouncy accents and
# a smile (F2 up); fear high, fast, breathy, jittery with tremor; surprise very wide and rising,
# open mouth (F1 up). Numbers are exaggerated a little so a tiny model learns them in minutes.
# fmt: off
_TABLE = {  # the fields of Prosody, in order
    #          f0  range slope peak rate tilt oq breath jitter shim trem gain stress atk pause F1 F2
    "neutral":   (1.0,  2, -2, .5, 4.5,  -9, .55, .04, .005, .03,  0,  0, 3, .03,  .3,  1,    1),
    "anger":     (1.35, 5, -3, .2, 6.0,  -2, .35, .02, .010, .05,  0,  6, 9, .006, .15, 1.15, 1),
    "sadness":   (0.85, 1, -3, .4, 2.8, -16, .75, .35, .012, .06,  0, -6, 1, .09,  .6,  .9,   1),
    "happiness": (1.25, 7,  0, .5, 5.2,  -5, .50, .04, .006, .03,  0,  3, 5, .02,  .2,  1.05, 1.15),
    "fear":      (1.4,  3,  0, .5, 5.8, -11, .65, .25, .040, .10, 1.5, -1, 2, .03, .3,  1,    1),
    "surprise":  (1.3,  10, 8, .9, 3.8,  -4, .50, .12, .008, .04,  0,  3, 5, .015, .3,  1.3,  .9),
    "excitement": (1.3, 8,  0, .5, 5.8,  -4, .45, .03, .008, .04,  0,  5, 6, .012, .18, 1.1,  1.12),
    "frustration": (1.08, 3, -3, .3, 4.8, -6, .50, .08, .012, .05, 0,  3, 5, .015, .25, 1.05, 1),
    "disgust":   (0.95, 3, -4, .3, 3.8,  -8, .55, .10, .015, .05,  0,  0, 3, .04,  .4,  1,    1),
}
# fmt: on
PROSODY: dict[str, Prosody] = {name: Prosody(*map(float, row)) for name, row in _TABLE.items()}
PROSODY["other"] = PROSODY["neutral"]

# Male adult formants (Hz) of five vowels, roughly Peterson & Barney; scaled per speaker.
_VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],
        [530, 1840, 2480, 3500],
        [270, 2290, 3010, 3700],
        [570, 840, 2410, 3400],
        [300, 870, 2240, 3300],
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])


def vary(prosody: Prosody, speaker: Speaker, rng: np.random.Generator) -> Prosody:
    """This utterance's prosody: the emotion's, shaped by the speaker, with random spread."""

    def spread(value: float, sigma: float = 0.15) -> float:
        return float(value * np.exp(rng.normal(0.0, sigma)))

    expr = speaker.expressiveness
    return replace(
        prosody,
        f0_scale=spread(prosody.f0_scale, 0.05),
        f0_range=spread(prosody.f0_range * expr),
        slope=prosody.slope * expr + float(rng.normal(0.0, 1.0)),
        rate=spread(prosody.rate * speaker.rate, 0.1),
        tilt=prosody.tilt + speaker.tilt + float(rng.normal(0.0, 1.0)),
        breath=spread(prosody.breath) + speaker.breath,
        jitter=spread(prosody.jitter),
        tremor=spread(prosody.tremor * expr),
        gain_db=prosody.gain_db + speaker.gain_db + float(rng.normal(0.0, 2.5)),
        stress_db=spread(prosody.stress_db * expr),
        pause=spread(prosody.pause, 0.3),
    )


@dataclass(frozen=True)
class _Syllable:
    start: float  # seconds, consonant onset
    consonant: float  # seconds of fricative before the vowel
    vowel: float  # seconds of voicing
    vowel_index: int
    stressed: bool


def _plan(duration: float, rate: float, pause: float, rng: np.random.Generator) -> list[_Syllable]:
    """Syllables in phrases separated by pauses, filling ``duration`` (a length set beforehand,
    so the length of a file says nothing about its emotion)."""
    t, end, syllables = float(rng.uniform(0.05, 0.25)), duration - 0.1, []
    while t < end:
        for position in range(int(rng.integers(3, 9))):
            length = float(np.exp(rng.normal(0.0, 0.25)) / rate)
            if t + length > end and syllables:
                return syllables
            consonant = min(max(0.3 * length, 0.02), 0.09)
            stressed = position % int(rng.integers(2, 4)) == 0
            syllables.append(
                _Syllable(t, consonant, length - consonant, int(rng.integers(5)), stressed)
            )
            t += length
        t += float(pause * np.exp(rng.normal(0.0, 0.3)))
    return syllables


def _f0_contour(
    syllables: list[_Syllable], p: Prosody, f0: float, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """F0 in Hz at CONTROL_RATE: declination/rise, syllable accents, tremor and jitter."""
    tc = np.arange(int(duration * CONTROL_RATE) + 2) / CONTROL_RATE  # (Tc,)
    semitones = p.slope * tc / duration  # (Tc,)
    for syl in syllables:
        height = p.f0_range * (rng.uniform(0.6, 1.0) if syl.stressed else rng.uniform(0.0, 0.3))
        centre = syl.start + syl.consonant + p.peak * syl.vowel
        semitones += height * np.exp(-(((tc - centre) / (0.35 * syl.vowel + 0.02)) ** 2))
    tremor_hz = rng.uniform(5.0, 8.0)
    semitones += p.tremor * np.sin(2 * np.pi * tremor_hz * tc + rng.uniform(0, 2 * np.pi))
    semitones += rng.normal(0.0, 17.3 * p.jitter, tc.shape)  # 12*log2(1+j) ~ 17.3 j
    return f0 * p.f0_scale * 2.0 ** (semitones / 12.0)


def _glottal_source(f0: np.ndarray, open_quotient: float, sample_rate: int) -> np.ndarray:
    """Differentiated Rosenberg flow pulses, one per F0 period (F0 given per sample).

    The flow derivative over one cycle is tabulated once and looked up by phase: an abrupt
    closure, so harmonics fall at about -6 dB/octave before the tilt is applied.
    """
    table_size = 4096
    cycle = np.arange(table_size) / table_size  # (K,) phase in the cycle
    rise = 0.6 * open_quotient
    fall = open_quotient - rise
    slope = np.where(cycle < rise, 0.5 * np.pi / rise * np.sin(np.pi * cycle / rise), 0.0)
    closing = (cycle >= rise) & (cycle < open_quotient)
    slope = np.where(
        closing, -0.5 * np.pi / fall * np.sin(0.5 * np.pi * (cycle - rise) / fall), slope
    )
    phase = np.cumsum(f0 / sample_rate)  # (T,) cycles elapsed
    index = ((phase % 1.0) * table_size).astype(np.int64)  # (T,)
    return slope[index] * (f0 / 100.0)  # (T,) d(flow)/d(sample), scaled to a unit-ish level


def _spectral_envelope(freqs: np.ndarray, formants: np.ndarray, tilt: float) -> np.ndarray:
    """Cascade of second-order resonances (unit gain at DC) times a dB/octave tilt."""
    gain = (1.0 + (freqs / 500.0) ** 2) ** (tilt / (2 * 6.02))
    for centre, bandwidth in zip(formants, _BANDWIDTHS, strict=True):
        gain = gain * centre**2 / np.sqrt((centre**2 - freqs**2) ** 2 + (bandwidth * freqs) ** 2)
    return gain


def _envelope(n: int, attack: int, decay: int) -> np.ndarray:
    """Raised-cosine attack and decay over ``n`` samples."""
    env = np.ones(n)
    attack, decay = min(attack, n // 2), min(decay, n // 2)
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(attack, 1))
    env[n - decay :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(decay) / max(decay, 1))
    return env


def synthesize(
    speaker: Speaker, prosody: Prosody, duration: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One utterance of ``duration`` seconds as float64 in [-1, 1] at ``sample_rate``."""
    return render(speaker, vary(prosody, speaker, rng), duration, sample_rate, rng)


def render(
    speaker: Speaker, p: Prosody, duration: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """``synthesize`` with this utterance's prosody ``p`` already drawn (``vary``)."""
    n = round(duration * sample_rate)
    syllables = _plan(duration, p.rate, p.pause, rng)
    t = np.arange(n) / sample_rate  # (T,)
    tc = np.arange(int(duration * CONTROL_RATE) + 2) / CONTROL_RATE  # (Tc,)
    f0 = np.interp(t, tc, _f0_contour(syllables, p, speaker.f0, duration, rng))  # (T,)
    shimmer = np.interp(t, tc, rng.normal(0.0, p.shimmer, tc.shape))  # (T,)
    tremor_amp = 1.0 + 0.1 * (f0 / np.median(f0) - 1.0) * (p.tremor > 0.1)  # loudness follows F0
    voiced = _glottal_source(f0, p.open_quotient, sample_rate) * (1 + shimmer) * tremor_amp
    aspiration = rng.standard_normal(n, dtype=np.float32) * p.breath  # (T,)
    source = voiced + aspiration * np.std(voiced) * 3.0  # (T,)
    out = np.zeros(n + sample_rate // 20)
    margin = sample_rate // 50
    for syl in syllables:
        s0 = int(syl.start * sample_rate)
        nc, nv = int(syl.consonant * sample_rate), int(syl.vowel * sample_rate)
        stress = 10 ** ((p.stress_db if syl.stressed else 0.0) / 20)
        cons = _fricative(nc, sample_rate, rng) * _envelope(nc, nc // 3, nc // 3) * 0.15 * stress
        out[s0 : s0 + nc] += cons[: len(out[s0 : s0 + nc])]
        v0 = s0 + nc
        # A clip's only syllable may run past its end (a short clip spoken slowly): cut there.
        seg = source[v0 : v0 + nv]
        if not len(seg):
            continue
        seg = seg * _envelope(len(seg), int(p.attack * sample_rate), len(seg) // 4) * stress
        formants = _VOWELS[syl.vowel_index] * speaker.formant_scale
        formants = formants * np.array([p.f1_scale, p.f2_scale, 1.0, 1.0])
        size = _fast_size(len(seg) + margin)
        freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
        spectrum = np.fft.rfft(seg, size) * _spectral_envelope(freqs, formants, p.tilt)
        shaped = np.fft.irfft(spectrum, size)[: len(seg) + margin]  # the tail rings out
        out[v0 : v0 + len(shaped)] += shaped[: len(out) - v0]
    return _level(out[:n], p.gain_db, rng)


def _fricative(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise shaped like a fricative (a band around 2.5-6 kHz), unit RMS."""
    size = _fast_size(n)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    centre = rng.uniform(2500.0, 6000.0)
    shape = np.exp(-(((freqs - centre) / 2000.0) ** 2))
    noise = np.fft.irfft(np.fft.rfft(rng.normal(0.0, 1.0, size)) * shape, size)[:n]
    return noise / (np.std(noise) + 1e-12)


def _fast_size(n: int) -> int:
    # numpy's FFT is several times slower on sizes with large prime factors
    return 1 << max(int(n - 1).bit_length(), 4)


def _level(wave: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """Set the active-speech level to -26 dBFS + gain, add a quiet noise floor, avoid clipping."""
    active = wave[np.abs(wave) > 1e-4 * np.abs(wave).max()]
    rms = math.sqrt(float(np.mean(active**2))) if active.size else 1.0
    wave = wave * (10 ** ((-26.0 + gain_db) / 20) / max(rms, 1e-12))
    wave = wave + rng.standard_normal(len(wave), dtype=np.float32) * 10 ** (-70 / 20)
    peak = float(np.abs(wave).max())
    return wave * (0.95 / peak) if peak > 0.95 else wave
