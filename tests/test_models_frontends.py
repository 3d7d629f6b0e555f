"""AST fbank and position embeddings, Whisper log-mel and length handling, windows of long items."""

from __future__ import annotations

import pytest
import torch
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel, WhisperFeatureExtractor

from ser.models import HFBackbone
from ser.models.backbones.ast import num_fbank_frames, resize_position_embeddings
from ser.models.backbones.whisper import WhisperOptions


def tiny(name: str, segment_seconds: float = SEGMENT_SECONDS) -> HFBackbone:
    """A tiny backbone that hears the waveform as given (``input_level_db`` None): the front
    ends here are compared with HF's extractors, and a long clip's windows with the clip cut."""
    model_type, config = TINY[name]
    torch.manual_seed(0)
    return HFBackbone(
        model_type=model_type, config=config, segment_seconds=segment_seconds, input_level_db=None
    ).eval()


def test_ast_fbank_matches_the_hf_feature_extractor():
    model_type, config = TINY["ast"]
    backbone = HFBackbone(model_type=model_type, config={**config, "num_mel_bins": 128})
    wave = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    ours = backbone.family.fbank(wave[None], torch.tensor([16000]))[0]  # (98, 128)
    extractor = ASTFeatureExtractor(max_length=200)
    reference = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values[0]
    assert ours.shape == (num_fbank_frames(16000), 128) == (98, 128)
    torch.testing.assert_close(ours, reference[:98], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lengths", [[16000, 7000, 300], [350, 200], [9000, 9000]])
def test_ast_fbank_of_a_padded_batch_equals_each_item_alone(lengths):
    family = tiny("ast").family
    waves, lengths = padded_batch(lengths)
    batch = family.fbank(waves, lengths)  # (B, n, M)
    for row, length in enumerate(lengths.tolist()):
        alone = family.fbank(waves[row : row + 1, :length], lengths[row : row + 1])[0]  # (n_b, M)
        torch.testing.assert_close(batch[row, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)
        assert (batch[row, alone.shape[0] :] == family.pad_value).all()  # masked past its end


def test_ast_frames_per_window_follow_segment_seconds_and_the_table_is_kept():
    assert num_fbank_frames(5 * 16000) == 498  # "about 500" for the paper's 5 s segments
    backbone = tiny("ast", segment_seconds=1.0)
    assert backbone.family.window_frames == 98
    # The position table stays the checkpoint's (random init: 1024 frames, as AudioSet's):
    # 32 mel bins, patch 8, stride 8: 4 frequency x 128 time patches, plus cls and dist.
    assert backbone.family.model.config.max_length == 1024
    assert backbone.family.model.embeddings.position_embeddings.shape == (1, 2 + 4 * 128, 32)


def test_position_embedding_resize_keeps_values_when_sizes_are_equal():
    table = torch.randn(1, 2 + 3 * 7, 5)
    torch.testing.assert_close(resize_position_embeddings(table, 3, 7), table, atol=0, rtol=0)


def test_position_embedding_resize_interpolates_time_and_keeps_special_tokens():
    time_ramp = torch.linspace(0, 1, 10)[None, :, None].expand(3, 10, 4)  # (F, T, H)
    table = torch.cat([torch.full((1, 2, 4), 7.0), time_ramp.reshape(1, 30, 4)], dim=1)
    resized = resize_position_embeddings(table, 3, 4)
    assert resized.shape == (1, 2 + 3 * 4, 4)
    assert torch.equal(resized[:, :2], table[:, :2])
    grid = resized[0, 2:].reshape(3, 4, 4)  # (F, T, H)
    assert torch.all(grid[:, 1:] > grid[:, :-1])  # still increasing along time
    assert torch.equal(grid[0], grid[2])  # frequency rows untouched
    with pytest.raises(ValueError, match="rows"):
        resize_position_embeddings(table, 4, 4)


def test_ast_checkpoint_with_a_shorter_table_than_the_window_is_stretched_on_load(tmp_path):
    _, config = TINY["ast"]
    short = ASTModel(ASTConfig(**config, max_length=48))  # 6 time patches
    short.save_pretrained(tmp_path)
    loaded = HFBackbone(source=str(tmp_path), segment_seconds=1.0).eval()  # 98 frames, 12 patches
    assert loaded.family.model.config.max_length == 98
    table = loaded.family.model.embeddings.position_embeddings
    assert table.shape == (1, 2 + 4 * 12, 32)
    stretched = resize_position_embeddings(short.embeddings.position_embeddings, 4, 12)
    torch.testing.assert_close(table, stretched)
    waves, lengths = padded_batch([16000, 4000])
    hidden, frame_lengths = loaded(waves, lengths)
    assert frame_lengths.tolist() == [2 + 12 * 4, 2 + 2 * 4]  # 98 frames -> 12, 23 frames -> 2
    assert hidden.shape == (2, 50, 32)
    assert torch.isfinite(hidden).all()


def test_ast_checkpoint_table_round_trips_unchanged(tmp_path):
    backbone = tiny("ast")  # 48-frame windows on a 1024-frame table
    backbone.save_pretrained(tmp_path)
    reference = ASTModel.from_pretrained(tmp_path)  # HF's own class reads what we wrote
    assert reference.config.max_length == 1024
    torch.testing.assert_close(
        reference.embeddings.position_embeddings,
        backbone.family.model.embeddings.position_embeddings,
        atol=0,
        rtol=0,
    )


def test_ast_short_batch_runs_at_its_own_length_with_the_tokens_of_a_full_window():
    backbone = tiny("ast")  # 48-frame windows: 4 frequency x 6 time patches of 8 frames
    family = backbone.family
    shapes = []
    family.feature_encoder.register_forward_pre_hook(lambda _, args: shapes.append(args[0].shape))
    waves, lengths = padded_batch([4000, 3000])  # 23 and 17 frames: 2 whole time patches each
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
    assert shapes == [(2, 16, 32)]  # the input holds 2 patches' 16 frames, not 48
    assert frame_lengths.tolist() == [2 + 2 * 4, 2 + 2 * 4]
    # HF's own ASTModel, same weights, on the extractor's input padded to the checkpoint's 1024
    # frames (the HF recipe's input), the padding masked out.
    reference = ASTModel(family.model.config).eval()
    reference.load_state_dict(family.model.state_dict())  # same keys: checkpoints unchanged
    items = [wave[:length].numpy() for wave, length in zip(waves, lengths, strict=True)]
    inputs = family.feature_extractor()(items, sampling_rate=16000, return_tensors="pt")
    assert inputs.input_values.shape == (2, 1024, 32)
    grid_mask = torch.zeros(2, 4, 128, dtype=torch.long)  # (N, F, T), frequency-major
    grid_mask[:, :, :2] = 1
    mask = torch.cat([torch.ones(2, 2, dtype=torch.long), grid_mask.flatten(1)], dim=1)
    with torch.no_grad():
        full = reference(inputs.input_values, attention_mask=mask).last_hidden_state  # (2, 514, H)
    grid = full[:, 2:].reshape(2, 4, 128, 32)[:, :, :2].transpose(1, 2).reshape(2, 8, 32)
    expected = torch.cat([full[:, :2], grid], dim=1)  # time-major, as the backbone returns
    torch.testing.assert_close(hidden, expected, atol=1e-4, rtol=1e-4)


def test_ast_batch_input_is_its_longest_window_in_whole_patches():
    family = tiny("ast").family  # 48 frames per window, patch 8, time stride 8
    assert family.window_plan([4000, 3000]).input_frames == 16  # 23, 17 frames -> 2 patches
    assert family.window_plan([7000, 100]).input_frames == 40  # 42 frames -> 5 whole patches
    plan = family.window_plan([19200, 100])  # 118 frames -> windows of 48, 48, 22; 1 frame
    assert plan.owners == [0, 0, 0, 1]
    assert plan.frames == [48, 48, 22, 1]
    assert plan.patches == [6, 6, 2, 1]
    assert plan.input_frames == 48


def test_ast_long_item_is_encoded_in_windows():
    backbone = tiny("ast")  # 48 frames per window, 4 frequency patches, 6 time patches
    waves, lengths = padded_batch([19200, 3000])  # 118 frames -> windows of 48, 48, 22 frames
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
        window_samples = 400 + 47 * 160  # exactly the first window's 48 frames
        first, first_lengths = backbone(waves[:1, :window_samples], torch.tensor([window_samples]))
    # each window: cls + dist + valid time patches x 4 frequency patches; 22 frames -> 2 patches
    assert frame_lengths[0] == 3 * 2 + (6 + 6 + 2) * 4
    assert first_lengths[0] == 2 + 6 * 4
    torch.testing.assert_close(hidden[0, : first_lengths[0]], first[0], atol=1e-5, rtol=1e-5)


def test_whisper_log_mel_matches_the_hf_feature_extractor():
    backbone = tiny("whisper")
    wave = 0.1 * torch.randn(12345, generator=torch.Generator().manual_seed(0))
    ours = backbone.family.log_mel(wave[None], torch.tensor([12345]))[0][0]
    extractor = WhisperFeatureExtractor(feature_size=16)
    reference = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
    assert ours.shape == (16, 12345 // 160)
    torch.testing.assert_close(ours, reference[0, :, : ours.shape[1]], atol=1e-4, rtol=1e-4)


def test_ast_fbank_as_a_convolution_equals_kaldi():
    """The real-arithmetic Kaldi fbank that ONNX export runs (``kaldi.fbank`` uses rfft; the
    tests above compare it with the HF extractor)."""
    family = tiny("ast").family
    wave = 0.1 * torch.randn(12345, generator=torch.Generator().manual_seed(0))
    expected = family.kaldi_fbank(wave)  # (75, M)
    got = family.fbank_by_convolution(wave)
    assert got.shape == expected.shape == (num_fbank_frames(12345), 32)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_whisper_stft_as_a_convolution_equals_torch_stft():
    """The real-arithmetic STFT that ONNX export runs (``torch.stft`` is complex)."""
    family = tiny("whisper").family
    waves, _ = padded_batch([16000, 7000, 500])
    expected = torch.stft(waves, 400, 160, window=torch.hann_window(400), return_complex=True)
    power = expected.abs() ** 2  # (B, 201, T // 160 + 1)
    got = family.dft_power(waves)
    assert got.shape == power.shape
    torch.testing.assert_close(got, power, atol=1e-6 * float(power.max()), rtol=1e-4)


@pytest.mark.parametrize("pad_to_window", [False, True])
def test_whisper_log_mel_of_a_padded_batch_equals_each_item_alone(pad_to_window):
    family = tiny_whisper(pad_to_window).family
    waves, lengths = padded_batch([16000, 7000, 100])
    batch, mel_lengths = family.log_mel(waves, lengths)  # (B, n_mels, n), (B,)
    for row, length in enumerate(lengths.tolist()):
        alone, (frames,) = family.log_mel(waves[row : row + 1, :length], lengths[row : row + 1])
        assert mel_lengths[row] == frames == max(1, length // 160)
        torch.testing.assert_close(batch[row, :, : alone.shape[2]], alone[0], atol=1e-5, rtol=1e-5)
        if not pad_to_window:  # zeros past its frames, as the extractor's padding gives them
            assert (batch[row, :, frames:] == 0).all()


def test_whisper_encoder_equals_hf_forward_on_a_full_window():
    backbone = tiny("whisper")  # 50 positions = 100 mel frames = 1 s per window
    waves = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden, frame_lengths = backbone.eval()(waves, torch.tensor([16000, 16000]))
        mels, _ = backbone.family.log_mel(waves, torch.tensor([16000, 16000]))  # (2, 16, 100)
        reference = backbone.family.model(mels).last_hidden_state  # what HF accepts: a window
    assert frame_lengths.tolist() == [50, 50]
    torch.testing.assert_close(hidden, reference, atol=1e-5, rtol=1e-5)


def test_whisper_runs_on_the_clip_length_and_windows_long_clips():
    backbone = tiny("whisper")  # 50 positions = 100 mel frames = 1 s per window
    waves, lengths = padded_batch([40000, 8000])
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
        first, first_lengths = backbone(waves[:1, :16000], torch.tensor([16000]))
    assert frame_lengths.tolist() == [50 + 50 + 25, 25]  # 2.5 s in windows; 0.5 s never padded
    assert hidden.shape[1] == 125
    assert first_lengths.tolist() == [50]
    torch.testing.assert_close(hidden[0, :50], first[0], atol=1e-5, rtol=1e-5)


def tiny_whisper(pad_to_window: bool, **config) -> HFBackbone:
    """The tiny Whisper (50 positions = 100 mel frames = 1 s per window), clip or window mode,
    hearing the waveform as given (as ``tiny``)."""
    model_type, tiny_config = TINY["whisper"]
    torch.manual_seed(0)
    return HFBackbone(
        model_type=model_type,
        config={**tiny_config, **config},
        whisper=WhisperOptions(pad_to_window=pad_to_window),
        input_level_db=None,
    ).eval()


def test_whisper_pad_to_window_equals_hf_extractor_and_encoder_cut_to_the_clip():
    backbone = tiny_whisper(pad_to_window=True)
    wave = 0.1 * torch.randn(12345, generator=torch.Generator().manual_seed(0))  # 77 mel frames
    # HF's recipe (EmoBox's): zeros to the whole window, log-mel, WhisperEncoder.forward unmasked.
    extractor = WhisperFeatureExtractor(feature_size=16, chunk_length=1)  # pads to 16000 samples
    features = extractor(
        wave.numpy(), sampling_rate=16000, padding="max_length", return_tensors="pt"
    ).input_features  # (1, 16, 100)
    assert features.shape == (1, 16, 100)
    with torch.no_grad():
        reference = backbone.family.model(features).last_hidden_state  # (1, 50, H)
        hidden, frame_lengths = backbone(wave[None], torch.tensor([12345]))
    assert frame_lengths.tolist() == [39]  # 77 mel frames -> 39 after conv2's stride 2
    torch.testing.assert_close(hidden[0], reference[0, :39], atol=1e-5, rtol=1e-5)


def test_whisper_pad_to_window_keeps_the_clip_frames_and_attends_to_the_padding():
    waves, lengths = padded_batch([24000, 6000])  # 1.5 s: windows of 1 s and 0.5 s
    with torch.no_grad():
        clip, clip_lengths = tiny_whisper(pad_to_window=False)(waves, lengths)
        padded, padded_lengths = tiny_whisper(pad_to_window=True)(waves, lengths)
    assert padded_lengths.tolist() == clip_lengths.tolist() == [50 + 25, 19]
    assert padded.shape == clip.shape
    # A full window is the same input in both modes; a shorter one sees the padding.
    torch.testing.assert_close(padded[0, :50], clip[0, :50], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded[0, 50:75], clip[0, 50:75], atol=1e-3)
    assert not torch.allclose(padded[1, :19], clip[1, :19], atol=1e-3)


def test_whisper_pad_to_window_batch_items_equal_the_items_alone():
    backbone = tiny_whisper(pad_to_window=True)
    waves, lengths = padded_batch([24000, 6000])
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
        for row, length in enumerate(lengths.tolist()):
            alone, alone_lengths = backbone(waves[row : row + 1, :length], lengths[row : row + 1])
            assert alone_lengths[0] == frame_lengths[row]
            count = int(frame_lengths[row])
            torch.testing.assert_close(hidden[row, :count], alone[0], atol=1e-5, rtol=1e-5)
            assert (hidden[row, count:] == 0).all()


def test_whisper_pad_to_window_spec_augment_masks_only_the_clip_frames():
    spec_augment = {"apply_spec_augment": True, "mask_time_prob": 0.5, "mask_time_length": 2}
    backbone = tiny_whisper(pad_to_window=True, **spec_augment)
    inputs = []
    backbone.family.model.conv1.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    waves, lengths = padded_batch([6000])  # 37 mel frames of a 100-frame window
    with torch.no_grad():
        backbone(waves, lengths)  # eval: no SpecAugment
        backbone.train()(waves, lengths)
    evaluated, trained = inputs  # (1, 16, 100) each
    zeroed = (trained[0] == 0).all(dim=0)  # (100,)
    assert zeroed[:37].any()
    assert not zeroed[37:].any()
    torch.testing.assert_close(trained[..., 37:], evaluated[..., 37:], atol=0, rtol=0)


def test_whisper_pad_to_window_is_an_input_setting_and_whisper_only():
    assert tiny_whisper(pad_to_window=False).family.input_settings() == {"pad_to_window": False}
    assert tiny_whisper(pad_to_window=True).family.input_settings() == {"pad_to_window": True}
    model_type, config = TINY["wav2vec2-layer"]
    assert HFBackbone(model_type=model_type, config=config).family.input_settings() == {}
    with pytest.raises(ValueError, match=r"whisper options \(.*\) are for Whisper models only"):
        HFBackbone(model_type=model_type, config=config, whisper=WhisperOptions(pad_to_window=True))


def test_ast_window_is_an_input_setting():
    """A feature store keys on it: AST's windows (segment_seconds) change its outputs."""
    model_type, config = TINY["ast"]
    one, two = (
        HFBackbone(model_type=model_type, config=config, segment_seconds=seconds).family
        for seconds in (1.0, 2.0)
    )
    assert one.input_settings() == {"window_frames": 98}
    assert two.input_settings() == {"window_frames": 198}
