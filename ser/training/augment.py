"""Training-time augmentation of padded waveform batches, batched on the model's device.

Small acted corpora (EmoDB: ~400 training clips) are memorised within a few epochs: a linear
probe of a frozen encoder reaches a training loss near 0, and fine-tuning that starts from it gets
almost no gradient. Augmentation keeps the training loss away from 0 (measured in
docs/real_speech.md). Such corpora are also recorded clean, close to the microphone; rooms and
noise teach a model the audio it will be used on. Everything here runs on the whole padded
batch in a few kernels, with no host-device sync: factors are drawn on the host with Python's RNG
(seeded by ``seed_everything``), per-utterance values on the device.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF

from ser.audio import TARGET_SAMPLE_RATE as SAMPLE_RATE
from ser.models.backbones.frames import lengths_to_mask

NOISE_COLOURS = ("white", "pink")


@dataclass(frozen=True)
class Augmentation:
    """What ``--model.augmentation.*`` does to each training batch (never to val/test/predict).

    Attributes:
        speeds: speed-perturbation factors (Kaldi's 0.9, 1.0, 1.1): each batch is resampled to
            play at one factor drawn uniformly, which changes tempo and pitch together; (1.0,)
            is off.
        noise_snr_db: ``(low, high)``: stationary noise added to each utterance's valid samples
            at an SNR drawn uniformly in this range (dB); None is off.
        noise_colours: the noise's spectrum, drawn per utterance among these: ``white`` (flat) or
            ``pink`` (power 1/f, the slope of most room, fan and traffic noise).
        noise_probability: the share of utterances that get noise (drawn per utterance); the
            rest stay as they are.
        reverb_rt60: ``(low, high)``: each utterance played in a synthetic room (the direct sound,
            then exponentially decaying noise) whose reverberation time (-60 dB, seconds) is
            drawn uniformly in this range, before the noise; None is off. A corpus recorded in a
            studio (EmoDB: an anechoic room) has none, and a model trained on it alone loses
            most of its accuracy in an ordinary room (docs/real_speech.md).
        reverb_drr_db: ``(low, high)``: the room's direct-to-reverberant energy ratio (dB), drawn
            uniformly per utterance: about +10 for a talker close to the microphone, 0 at a metre
            or two, below 0 farther.
        reverb_probability: the share of utterances played in a room (drawn per utterance).
        lowpass_hz: ``(low, high)``: each utterance cut above a frequency drawn uniformly in this
            range (Hz), after the noise, as a channel passes it: a telephone line stops at 3.4
            kHz, many codecs at 4-7 kHz; None is off.
        lowpass_probability: the share of utterances cut (drawn per utterance).
        highpass_hz: ``(low, high)``: each utterance cut below a frequency drawn uniformly in this
            range (Hz), with the low-pass (one filter where both are drawn): a narrow-band
            telephone line passes from 300 Hz, a wide-band one from 50 Hz; None is off.
        highpass_probability: the share of utterances cut below (drawn per utterance, apart
            from the low-pass's).
        mu_law_probability: the share of utterances coded last as an 8-bit mu-law telephone
            line carries them (G.711: about 38 dB of quantisation SNR at speech level, worse
            on quiet passages), drawn per utterance; 0 is off.
        mixup_alpha: mixup of utterance pairs (Zhang et al. 2018): each batch is mixed with a
            permutation of itself with weight ``lam ~ Beta(alpha, alpha)`` (the larger share is
            the utterance's own) and the loss mixes the two labels alike; 0 is off.
    """

    speeds: tuple[float, ...] = (1.0,)
    noise_snr_db: tuple[float, float] | None = None
    noise_colours: tuple[str, ...] = ("white",)
    noise_probability: float = 1.0
    reverb_rt60: tuple[float, float] | None = None
    reverb_drr_db: tuple[float, float] = (-5.0, 10.0)
    reverb_probability: float = 1.0
    lowpass_hz: tuple[float, float] | None = None
    lowpass_probability: float = 1.0
    highpass_hz: tuple[float, float] | None = None
    highpass_probability: float = 1.0
    mu_law_probability: float = 0.0
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"augmentation.speeds={self.speeds}; expected factors in [0.5, 2]")
        if any(abs(s * 100 - round(s * 100)) > 1e-6 for s in self.speeds):
            raise ValueError(f"augmentation.speeds={self.speeds}; expected steps of 0.01")
        if self.noise_snr_db is not None and (
            len(self.noise_snr_db) != 2 or self.noise_snr_db[0] > self.noise_snr_db[1]
        ):
            raise ValueError(
                f"augmentation.noise_snr_db={self.noise_snr_db}; expected [low, high] in dB"
            )
        if not self.noise_colours or not set(self.noise_colours) <= set(NOISE_COLOURS):
            raise ValueError(
                f"augmentation.noise_colours={self.noise_colours}; expected some of "
                f"{', '.join(NOISE_COLOURS)}"
            )
        if self.reverb_rt60 is not None and (
            len(self.reverb_rt60) != 2 or not 0 < self.reverb_rt60[0] <= self.reverb_rt60[1] <= 2
        ):
            raise ValueError(
                f"augmentation.reverb_rt60={self.reverb_rt60}; expected [low, high] seconds, "
                "0 < low <= high <= 2"
            )
        if len(self.reverb_drr_db) != 2 or self.reverb_drr_db[0] > self.reverb_drr_db[1]:
            raise ValueError(
                f"augmentation.reverb_drr_db={self.reverb_drr_db}; expected [low, high] in dB"
            )
        if self.lowpass_hz is not None and (
            len(self.lowpass_hz) != 2
            or not 0 < self.lowpass_hz[0] <= self.lowpass_hz[1] <= SAMPLE_RATE / 2
        ):
            raise ValueError(
                f"augmentation.lowpass_hz={self.lowpass_hz}; expected [low, high] Hz, "
                f"0 < low <= high <= {SAMPLE_RATE // 2}"
            )
        if self.highpass_hz is not None and (
            len(self.highpass_hz) != 2
            or not 0 <= self.highpass_hz[0] <= self.highpass_hz[1] <= SAMPLE_RATE / 2
        ):
            raise ValueError(
                f"augmentation.highpass_hz={self.highpass_hz}; expected [low, high] Hz, "
                f"0 <= low <= high <= {SAMPLE_RATE // 2}"
            )
        if (
            self.highpass_hz is not None
            and self.lowpass_hz is not None
            and self.highpass_hz[1] >= self.lowpass_hz[0]
        ):
            raise ValueError(
                f"augmentation.highpass_hz={self.highpass_hz} reaches "
                f"lowpass_hz={self.lowpass_hz}: an utterance cut by both would keep no band; "
                "expected every high-pass cutoff below every low-pass cutoff"
            )
        probabilities = (
            "noise_probability", "reverb_probability", "lowpass_probability",
            "highpass_probability", "mu_law_probability",
        )  # fmt: skip
        for name in probabilities:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augmentation.{name}={getattr(self, name)}; expected 0 to 1")
        if self.mixup_alpha < 0:
            raise ValueError(f"augmentation.mixup_alpha={self.mixup_alpha}; expected >= 0")

    def __call__(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speed perturbation, the room, noise, then the channel (its band, then its coding):
        waves (B, T), lengths (B,) -> (B, T'), (B,)."""
        speed = random.choice(self.speeds)
        if speed != 1.0:
            waves, lengths = change_speed(waves, lengths, speed)
        if self.reverb_rt60 is not None:
            wet = reverberate(waves, lengths, self.reverb_rt60, self.reverb_drr_db)
            waves = in_share(wet, waves, self.reverb_probability)
        if self.noise_snr_db is not None:
            noisy = add_noise(waves, lengths, self.noise_snr_db, self.noise_colours)
            waves = in_share(noisy, waves, self.noise_probability)
        if self.lowpass_hz is not None or self.highpass_hz is not None:
            waves = self._band(waves, lengths)
        if self.mu_law_probability > 0:
            waves = in_share(mu_law(waves, lengths), waves, self.mu_law_probability)
        return waves, lengths

    def _band(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The low- and high-pass, each in its share of the rows, as one filter a row."""
        batch, device = len(waves), waves.device
        low = torch.zeros(batch, 1, device=device)  # (B, 1) Hz: nothing cut below
        high = torch.full((batch, 1), SAMPLE_RATE / 2, device=device)  # nothing cut above
        if self.lowpass_hz is not None:
            cutoff = drawn(self.lowpass_hz, batch, 1, device=device)
            high = in_share(cutoff, high, self.lowpass_probability)
        if self.highpass_hz is not None:
            cutoff = drawn(self.highpass_hz, batch, 1, device=device)
            low = in_share(cutoff, low, self.highpass_probability)
        narrowed = (low > 0) | (high < SAMPLE_RATE / 2)  # (B, 1): rows with a band to cut
        return torch.where(narrowed, band_limit(waves, lengths, low, high), waves)

    def mixup(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Mixed waves (B, T) and lengths (B,), each row's partner (B,), its own share."""
        share = random.betavariate(self.mixup_alpha, self.mixup_alpha)
        share = max(share, 1.0 - share)  # the utterance's own label stays the larger part
        partner = torch.randperm(len(waves), device=waves.device)  # (B,)
        mixed = share * waves + (1.0 - share) * waves[partner]  # (B, T)
        return mixed, torch.maximum(lengths, lengths[partner]), partner, share


def in_share(changed: torch.Tensor, waves: torch.Tensor, probability: float) -> torch.Tensor:
    """``changed`` in a share ``probability`` of the rows (drawn per row), ``waves`` in the rest:
    (B, T), (B, T) -> (B, T)."""
    rows = torch.rand(len(waves), 1, device=waves.device) < probability  # (B, 1)
    return torch.where(rows, changed, waves)


def drawn(bounds: tuple[float, float], *shape: int, device: torch.device) -> torch.Tensor:
    """Values of ``shape`` drawn uniformly between ``bounds`` (low, high) on ``device``."""
    low, high = bounds
    return low + (high - low) * torch.rand(*shape, device=device)


def plain_values(augmentation: Augmentation) -> dict:
    """The settings as a checkpoint and hparams.yaml keep them: lists, not tuples."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(augmentation).items()}


def change_speed(
    waves: torch.Tensor, lengths: torch.Tensor, speed: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Waves (B, T) played ``speed`` times as fast (resampled by 100/(100*speed)); new lengths."""
    orig, new = round(speed * 100), 100
    divisor = math.gcd(orig, new)
    orig, new = orig // divisor, new // divisor
    resampled = AF.resample(waves, orig, new)  # (B, ceil(T * new / orig))
    new_lengths = torch.clamp((lengths * new + orig - 1) // orig, max=resampled.shape[-1])  # (B,)
    # The filter spreads the last samples of a short row into its padding: zero it again.
    resampled = resampled * lengths_to_mask(new_lengths, resampled.shape[-1])
    return resampled, new_lengths


def add_noise(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    snr_db: tuple[float, float],
    colours: tuple[str, ...] = ("white",),
) -> torch.Tensor:
    """Noise of one of ``colours`` (per row) on each row's valid samples at an SNR drawn
    uniformly in ``snr_db``."""
    mask = lengths_to_mask(lengths, waves.shape[-1]).to(waves.dtype)  # (B, T)
    power = valid_power(waves, lengths, mask)  # (B,)
    snr = drawn(snr_db, len(waves), device=waves.device)  # (B,) dB
    scale = torch.sqrt(power / 10.0 ** (snr / 10.0))  # (B,) noise std
    noise = torch.randn_like(waves)  # (B, T) white, unit variance
    if "pink" in colours:
        pink = pink_noise(noise)  # (B, T)
        noise = in_share(pink, noise, 0.5) if "white" in colours else pink
    noise = noise * valid_power(noise, lengths, mask).clamp(min=1e-20).rsqrt()[:, None]  # unit
    return waves + noise * scale[:, None] * mask


def fft_length(samples: int) -> int:
    """The smallest length >= ``samples`` with no prime factor above 5: an FFT of a length with
    a large prime factor (a padded batch's or an utterance's, 32011 = 7 x 17 x 269) is 5x slower."""
    best = 1 << max(0, samples - 1).bit_length()
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            length = threes
            while length < samples:
                length *= 2
            best = min(best, length)
            threes *= 3
        fives *= 5
    return best


def pink_noise(white: torch.Tensor) -> torch.Tensor:
    """Rows (B, T) of white noise shaped to power 1/f (no DC)."""
    samples, size = white.shape[-1], fft_length(white.shape[-1])
    frequencies = torch.fft.rfftfreq(size, 1.0 / SAMPLE_RATE, device=white.device)
    amplitude = torch.where(frequencies > 0, frequencies, torch.inf).rsqrt()  # power 1/f
    return torch.fft.irfft(torch.fft.rfft(white, size) * amplitude, size)[:, :samples]  # (B, T)


def reverberate(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    rt60: tuple[float, float],
    drr_db: tuple[float, float],
) -> torch.Tensor:
    """Each row convolved with its own synthetic room impulse response: the direct sound, then
    noise decaying 60 dB in a time drawn in ``rt60`` (s), the tail's energy set by a
    direct-to-reverberant ratio drawn in ``drr_db``; each row's power over its valid samples kept,
    the tail cut at its length."""
    batch, device = len(waves), waves.device
    times = torch.arange(max(2, round(rt60[1] * SAMPLE_RATE)), device=device) / SAMPLE_RATE  # (L,)
    decay = drawn(rt60, batch, 1, device=device)  # (B, 1) s
    tail = torch.randn(batch, len(times), device=device) * 10.0 ** (-3.0 * times / decay)
    tail[:, 0] = 0.0
    drr = drawn(drr_db, batch, 1, device=device)  # (B, 1) dB
    tail = tail * torch.rsqrt(tail.square().sum(-1, keepdim=True) * 10.0 ** (drr / 10.0))
    tail[:, 0] = 1.0  # the direct sound
    mask = lengths_to_mask(lengths, waves.shape[-1]).to(waves.dtype)  # (B, T)
    size = fft_length(waves.shape[-1] + len(times) - 1)  # a linear convolution
    spectrum = torch.fft.rfft(waves, size) * torch.fft.rfft(tail.to(waves.dtype), size)
    wet = torch.fft.irfft(spectrum, size)[:, : waves.shape[-1]] * mask  # (B, T)
    gain = valid_power(waves, lengths, mask) / valid_power(wet, lengths, mask).clamp(min=1e-20)
    return wet * gain.sqrt()[:, None]


def band_limit(
    waves: torch.Tensor, lengths: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor
) -> torch.Tensor:
    """Each row (B, T) with its spectrum outside ``[low_hz, high_hz]`` (B, 1) removed; the padding
    stays 0."""
    samples, size = waves.shape[-1], fft_length(waves.shape[-1])
    frequencies = torch.fft.rfftfreq(size, 1.0 / SAMPLE_RATE, device=waves.device)
    band = (frequencies >= low_hz) & (frequencies <= high_hz)  # (B, N // 2 + 1)
    cut = torch.fft.irfft(torch.fft.rfft(waves, size) * band, size)[:, :samples]  # (B, T)
    return cut * lengths_to_mask(lengths, samples).to(waves.dtype)


def mu_law(waves: torch.Tensor, lengths: torch.Tensor, channels: int = 256) -> torch.Tensor:
    """Each row's valid samples coded and decoded as ``channels``-level mu-law (G.711 is 256:
    8 bits), as ``torchaudio.functional.mu_law_encoding`` then ``mu_law_decoding`` do, clipped
    to [-1, 1] first; the padding stays 0."""
    mu = channels - 1.0
    clipped = waves.clamp(-1.0, 1.0)
    compressed = torch.sign(clipped) * torch.log1p(mu * clipped.abs()) / math.log1p(mu)
    levels = torch.floor((compressed + 1.0) / 2.0 * mu + 0.5)  # 0 .. mu
    decoded = levels / mu * 2.0 - 1.0
    expanded = torch.sign(decoded) * torch.expm1(decoded.abs() * math.log1p(mu)) / mu
    return expanded * lengths_to_mask(lengths, waves.shape[-1]).to(waves.dtype)


def valid_power(waves: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's mean power over its valid samples: (B, T) -> (B,)."""
    return (waves.square() * mask).sum(-1) / lengths.clamp(min=1)
