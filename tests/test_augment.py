"""Training-time augmentation (ser.training.augment): what each transform does to a batch, and
that ``ser fit`` applies it to training batches only, with mixup's loss over both labels."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from cli_process import REPO, TINY_RUN
from models_tiny import TINY

from ser.data.dataset import Batch
from ser.models import HFBackbone
from ser.models.checkpoint import load_checkpoint
from ser.training.augment import (
    Augmentation,
    add_noise,
    band_limit,
    change_speed,
    fft_length,
    mu_law,
    pink_noise,
    reverberate,
)
from ser.training.module import SERModule

RATE = 16_000


def sine(freq: float, seconds: float) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(seconds * RATE)) / RATE)


def peak_frequency(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(spectrum.argmax()) * RATE / len(wave)


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_change_speed_scales_pitch_and_length_of_each_row(speed: float) -> None:
    long, short = sine(440, 1.0), sine(440, 0.5)
    waves = torch.stack([long, torch.cat([short, torch.zeros(len(long) - len(short))])])
    lengths = torch.tensor([len(long), len(short)])
    out, out_lengths = change_speed(waves, lengths, speed)
    assert out_lengths.tolist() == [math.ceil(RATE / speed), math.ceil(RATE * 0.5 / speed)]
    assert out.shape[-1] == out_lengths[0]
    for row, length in zip(out, out_lengths.tolist(), strict=True):
        assert peak_frequency(row[:length]) == pytest.approx(440 * speed, abs=3)
    assert out[1, out_lengths[1] :].abs().max() == 0  # padding stays silent


@pytest.mark.parametrize("colours", [("white",), ("pink",), ("white", "pink")])
def test_add_noise_meets_the_snr_on_valid_samples_only(colours: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    waves = torch.zeros(2, RATE)
    waves[0] = 0.5 * sine(300, 1.0)
    waves[1, : RATE // 4] = 0.1 * sine(300, 0.25)
    lengths = torch.tensor([RATE, RATE // 4])
    noisy = add_noise(waves, lengths, (10.0, 10.0), colours)
    for row in range(2):
        n = int(lengths[row])
        signal, noise = waves[row, :n], noisy[row, :n] - waves[row, :n]
        snr = 10 * math.log10(float(signal.square().mean() / noise.square().mean()))
        assert snr == pytest.approx(10.0, abs=0.3)
    assert noisy[1, RATE // 4 :].abs().max() == 0


def test_fft_lengths_are_the_smallest_with_no_prime_factor_above_5() -> None:
    def smooth(n: int) -> bool:
        for prime in (2, 3, 5):
            while n % prime == 0:
                n //= prime
        return n == 1

    for samples in range(1, 3000):
        assert fft_length(samples) == next(n for n in itertools.count(samples) if smooth(n))
    assert fft_length(32011) == 32400  # 7 x 17 x 269 samples


def test_pink_noise_falls_3_db_an_octave() -> None:
    torch.manual_seed(0)
    pink = pink_noise(torch.randn(4, 4 * RATE))
    power = torch.fft.rfft(pink).abs().square().mean(0)
    frequencies = torch.fft.rfftfreq(4 * RATE, 1 / RATE)

    def band(low: float) -> float:  # mean power per Hz over an octave
        return float(power[(frequencies >= low) & (frequencies < 2 * low)].mean())

    for low in (125.0, 500.0, 2000.0):
        assert 10 * math.log10(band(low) / band(2 * low)) == pytest.approx(3.0, abs=0.5)


def test_reverberate_sets_the_rooms_decay_and_direct_to_reverberant_ratio() -> None:
    """An impulse comes out as the room's response: its direct sound, then a tail with the drawn
    energy ratio that decays 60 dB over RT60; a short row keeps its power and silent padding."""
    torch.manual_seed(0)
    waves = torch.zeros(2, RATE)
    waves[0, 0] = 1.0  # an impulse
    waves[1, : RATE // 4] = 0.1 * sine(300, 0.25)
    lengths = torch.tensor([RATE, RATE // 4])
    wet = reverberate(waves, lengths, rt60=(0.6, 0.6), drr_db=(5.0, 5.0))
    response = wet[0] / wet[0, 0]
    drr = 10 * math.log10(1.0 / float(response[1:].square().sum()))
    assert drr == pytest.approx(5.0, abs=1e-3)
    early = response[1 : RATE // 10].square().mean()  # 0-0.1 s
    late = response[RATE // 2 : 6 * RATE // 10].square().mean()  # 0.5-0.6 s
    assert 10 * math.log10(float(early / late)) == pytest.approx(50.0, abs=5.0)  # 60 dB / 0.6 s
    assert response[6 * RATE // 10 + 1 :].abs().max() < 1e-6  # nothing after the room (FFT)
    n = RATE // 4
    assert float(wet[1, :n].square().mean()) == pytest.approx(
        float(waves[1, :n].square().mean()), rel=1e-4
    )
    assert wet[1, n:].abs().max() == 0
    assert not torch.allclose(wet[1, :n], waves[1, :n], atol=1e-3)


def test_band_limit_keeps_each_rows_band_and_keeps_padding_silent() -> None:
    tones = 0.1 * (sine(100, 1.0) + sine(1000, 1.0) + sine(5000, 1.0))
    waves = torch.stack([tones, torch.cat([tones[: RATE // 2], torch.zeros(RATE // 2)])])
    lengths = torch.tensor([RATE, RATE // 2])
    low = torch.tensor([[300.0], [0.0]])  # row 1: no high-pass
    high = torch.tensor([[3400.0], [3400.0]])
    cut = band_limit(waves, lengths, low, high)
    for row, length in zip(cut, lengths.tolist(), strict=True):
        spectrum = torch.fft.rfft(row[:length]).abs()
        bin_of = {f: int(f * length / RATE) for f in (100, 1000, 5000)}
        assert spectrum[bin_of[5000]] < 0.01 * spectrum[bin_of[1000]]
    assert torch.allclose(cut[0], 0.1 * sine(1000, 1.0), atol=1e-3)  # 100 Hz gone too
    spectrum = torch.fft.rfft(cut[1, : RATE // 2]).abs()
    assert spectrum[50] > 0.5 * spectrum[500]  # 100 Hz kept where no high-pass was drawn
    assert cut[1, RATE // 2 :].abs().max() == 0


def test_mu_law_codes_each_valid_sample_as_an_8_bit_g711_line_and_keeps_padding_silent() -> None:
    torch.manual_seed(0)
    waves = torch.cat([0.3 * torch.randn(2, 800).clamp(-3, 3), torch.zeros(2, 200)], dim=1)
    waves[0, 800:] = 0.05 * torch.randn(200)  # row 0 is 1000 samples long
    lengths = torch.tensor([1000, 800])
    coded = mu_law(waves, lengths)
    reference = AF.mu_law_decoding(AF.mu_law_encoding(waves.clamp(-1, 1), 256), 256)
    torch.testing.assert_close(coded[0], reference[0])
    torch.testing.assert_close(coded[1, :800], reference[1, :800])
    assert coded[1, 800:].abs().max() == 0
    error = (coded[0] - waves[0].clamp(-1, 1)).square().mean()
    assert 20 < 10 * math.log10(float(waves[0].square().mean() / error)) < 45  # 8 bits' SNR


def test_each_transform_changes_the_share_of_rows_its_probability_asks_for() -> None:
    torch.manual_seed(0)
    random.seed(0)
    waves = 0.1 * sine(300, 0.25).repeat(400, 1)  # (400, T)
    lengths = torch.full((400,), waves.shape[-1])
    for settings in (
        {"noise_snr_db": (10.0, 10.0), "noise_probability": 0.25},
        {"reverb_rt60": (0.3, 0.3), "reverb_probability": 0.75},
        {"lowpass_hz": (200.0, 200.0), "lowpass_probability": 0.5},
        {"highpass_hz": (400.0, 400.0), "highpass_probability": 0.3},
        {"mu_law_probability": 0.6},
    ):
        out, _ = Augmentation(**settings)(waves, lengths)
        changed = (out - waves).abs().amax(-1) > 1e-4  # (400,)
        share = next(v for k, v in settings.items() if k.endswith("probability"))
        assert float(changed.float().mean()) == pytest.approx(share, abs=0.07)


def test_mixup_mixes_each_row_with_a_partner_and_keeps_its_own_label_larger() -> None:
    random.seed(1)
    torch.manual_seed(1)
    waves = torch.randn(6, 100)
    lengths = torch.tensor([100, 80, 60, 100, 40, 20])
    mixed, mixed_lengths, partner, share = Augmentation(mixup_alpha=0.4).mixup(waves, lengths)
    assert 0.5 <= share <= 1.0
    assert torch.allclose(mixed, share * waves + (1 - share) * waves[partner])
    assert sorted(partner.tolist()) == list(range(6))
    assert mixed_lengths.tolist() == torch.maximum(lengths, lengths[partner]).tolist()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"speeds": (0.955,)}, "steps of 0.01"),
        ({"speeds": (3.0,)}, r"factors in \[0.5, 2\]"),
        ({"noise_snr_db": (30.0, 10.0)}, r"\[low, high\] in dB"),
        ({"noise_colours": ("brown",)}, "noise_colours=.*expected some of white, pink"),
        ({"reverb_rt60": (0.0, 0.5)}, r"reverb_rt60=.*0 < low <= high <= 2"),
        ({"reverb_drr_db": (10.0, 0.0)}, r"reverb_drr_db=.*\[low, high\] in dB"),
        ({"noise_probability": 1.5}, "noise_probability=1.5; expected 0 to 1"),
        ({"reverb_probability": -0.1}, "reverb_probability=-0.1; expected 0 to 1"),
        ({"lowpass_hz": (3400.0, 9000.0)}, r"lowpass_hz=.*0 < low <= high <= 8000"),
        ({"highpass_hz": (-10.0, 300.0)}, r"highpass_hz=.*0 <= low <= high <= 8000"),
        (
            {"highpass_hz": (100.0, 4000.0), "lowpass_hz": (3400.0, 8000.0)},
            r"highpass_hz=\(100.0, 4000.0\) reaches lowpass_hz=\(3400.0, 8000.0\)",
        ),
        ({"highpass_probability": 2.0}, "highpass_probability=2.0; expected 0 to 1"),
        ({"mu_law_probability": -0.5}, "mu_law_probability=-0.5; expected 0 to 1"),
        ({"mixup_alpha": -1.0}, ">= 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Augmentation(**settings)


def test_fit_with_augmentation_records_it_in_the_checkpoint(
    tmp_path, ser_cli, shemo_corpus
) -> None:
    """A tiny fit with every transform on: it trains, its checkpoint records the settings (as
    plain values, so it loads as data)."""
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), *TINY_RUN,
        "--model.augmentation.speeds", "[0.9, 1.1]", "--model.augmentation.noise_snr_db",
        "[5, 20]", "--model.augmentation.noise_colours", "[white, pink]",
        "--model.augmentation.reverb_rt60", "[0.2, 0.8]", "--model.augmentation.mixup_alpha",
        "0.4", "--model.augmentation.noise_probability", "0.5", "--model.augmentation.lowpass_hz",
        "[3400, 8000]", "--model.augmentation.highpass_hz", "[50, 400]",
        "--model.augmentation.mu_law_probability", "0.5", cwd=tmp_path,
    )  # fmt: skip
    (ckpt,) = (tmp_path / "logs").glob("demo/*/checkpoints/last.ckpt")
    saved = load_checkpoint(ckpt, "--ckpt_path")["hyper_parameters"]["augmentation"]
    assert saved == {
        "speeds": [0.9, 1.1], "noise_snr_db": [5.0, 20.0], "noise_colours": ["white", "pink"],
        "noise_probability": 0.5, "reverb_rt60": [0.2, 0.8], "reverb_drr_db": [-5.0, 10.0],
        "reverb_probability": 1.0, "lowpass_hz": [3400.0, 8000.0], "lowpass_probability": 1.0,
        "highpass_hz": [50.0, 400.0], "highpass_probability": 1.0, "mu_law_probability": 0.5,
        "mixup_alpha": 0.4,
    }  # fmt: skip


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_mixup_loss_weighs_both_labels_and_eval_is_untouched(monkeypatch) -> None:
    model_type, config = TINY["wav2vec2-group"]
    backbone = HFBackbone(model_type=model_type, config=config, freeze="none")
    module = SERModule(backbone, ["a", "b", "c"], augmentation=Augmentation(mixup_alpha=1.0))
    logits = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    seen = []
    pooled = torch.zeros(3, 1)  # what the head gets: the fixed logits stand for its output
    monkeypatch.setattr(module, "encode", lambda waves, lengths: seen.append(waves) or pooled)
    monkeypatch.setattr(module.head, "forward", lambda pooled: logits)
    partner, share = torch.tensor([1, 2, 0]), 0.7

    def fixed_mixup(self, waves, lengths):
        return share * waves + (1 - share) * waves[partner], lengths, partner, share

    monkeypatch.setattr(Augmentation, "mixup", fixed_mixup)
    waves, labels = torch.randn(3, 800), torch.tensor([0, 1, 2])
    batch = Batch(waves, torch.full((3,), 800), labels, ["x", "y", "z"])
    loss, *_ = module.model_step(batch, "val")
    assert torch.equal(seen[-1], waves)  # validation sees the recordings as they are
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels)))
    loss, *_ = module.model_step(batch, "train")
    assert torch.allclose(seen[-1], share * waves + (1 - share) * waves[partner])
    expected = share * F.cross_entropy(logits, labels) + (1 - share) * F.cross_entropy(
        logits, labels[partner]
    )
    assert float(loss) == pytest.approx(float(expected))


def test_mixup_with_a_feature_store_is_refused() -> None:
    """A store holds each utterance's encoding alone; the other augmentations are stored copies
    (tests/test_feature_store.py)."""
    model_type, config = TINY["wav2vec2-group"]
    backbone = HFBackbone(model_type=model_type, config=config, freeze="all")
    mixup = Augmentation(mixup_alpha=0.4)
    with pytest.raises(ValueError, match=r"mixup_alpha.*feature_store none for mixup"):
        SERModule(backbone, ["a", "b"], feature_store="frames", augmentation=mixup)
    with pytest.raises(ValueError, match="feature_store_views=0; expected 1 or more"):
        SERModule(backbone, ["a", "b"], feature_store="frames", feature_store_views=0)
    SERModule(backbone, ["a", "b"], feature_store="frames", augmentation=Augmentation())
