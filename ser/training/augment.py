"""Training-time augmentation of padded waveform batches, batched on the model's device.

Small acted corpora (EmoDB: ~400 training clips) are memorised within a few epochs: a linear
probe of a frozen encoder reaches a training loss near 0, and fine-tuning that starts from it gets
almost no gradient. Augmentation keeps the training loss away from 0 (measured in
docs/real_speech.md). Everything here runs on the whole padded batch in a few kernels, with no
host-device sync: factors are drawn on the host with Python's RNG (seeded by ``seed_everything``),
per-utterance values on the device.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF

from ser.models.backbones.frames import lengths_to_mask


@dataclass(frozen=True)
class Augmentation:
    """What ``--model.augmentation.*`` does to each training batch (never to val/test/predict).

    Attributes:
        speeds: speed-perturbation factors (Kaldi's 0.9, 1.0, 1.1): each batch is resampled to
            play at one factor drawn uniformly, which changes tempo and pitch together; (1.0,)
            is off.
        noise_snr_db: ``(low, high)``: white noise added to each utterance's valid samples at an
            SNR drawn uniformly in this range (dB); None is off.
        mixup_alpha: mixup of utterance pairs (Zhang et al. 2018): each batch is mixed with a
            permutation of itself with weight ``lam ~ Beta(alpha, alpha)`` (the larger share is
            the utterance's own) and the loss mixes the two labels alike; 0 is off.
    """

    speeds: tuple[float, ...] = (1.0,)
    noise_snr_db: tuple[float, float] | None = None
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
        if self.mixup_alpha < 0:
            raise ValueError(f"augmentation.mixup_alpha={self.mixup_alpha}; expected >= 0")

    def __call__(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speed perturbation, then noise: waves (B, T), lengths (B,) -> (B, T'), (B,)."""
        speed = random.choice(self.speeds)
        if speed != 1.0:
            waves, lengths = change_speed(waves, lengths, speed)
        if self.noise_snr_db is not None:
            waves = add_noise(waves, lengths, self.noise_snr_db)
        return waves, lengths

    def mixup(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Mixed waves (B, T) and lengths (B,), each row's partner (B,), its own share."""
        share = random.betavariate(self.mixup_alpha, self.mixup_alpha)
        share = max(share, 1.0 - share)  # the utterance's own label stays the larger part
        partner = torch.randperm(len(waves), device=waves.device)  # (B,)
        mixed = share * waves + (1.0 - share) * waves[partner]  # (B, T)
        return mixed, torch.maximum(lengths, lengths[partner]), partner, share


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
    waves: torch.Tensor, lengths: torch.Tensor, snr_db: tuple[float, float]
) -> torch.Tensor:
    """White noise on each row's valid samples at an SNR drawn uniformly in ``snr_db``."""
    mask = lengths_to_mask(lengths, waves.shape[-1]).to(waves.dtype)  # (B, T)
    power = (waves.square() * mask).sum(-1) / lengths.clamp(min=1)  # (B,)
    low, high = snr_db
    snr = low + (high - low) * torch.rand(len(waves), device=waves.device)  # (B,) dB
    scale = torch.sqrt(power / 10.0 ** (snr / 10.0))  # (B,) noise std
    return waves + torch.randn_like(waves) * scale[:, None] * mask
