"""HFBackbone over every family: shapes, padding invariance, masks, normalisation, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch
from transformers import Wav2Vec2FeatureExtractor

from ser.models import (
    AttentiveStatisticsPooling,
    HFBackbone,
    LinearHead,
    MeanPooling,
    MLPHead,
)
from ser.models.backbones.frames import normalize_valid, scale_to_level
from ser.models.backbones.hf import DEFAULT_INPUT_LEVEL_DB
from ser.models.backbones.wav2vec2 import ValidFramesGroupNorm

LENGTHS = [8000, 5000, 2500]
# WavLM's own attention mixes a float position bias with a bool padding mask inside torch.
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")


def tiny(name: str, **kwargs) -> HFBackbone:
    model_type, config = TINY[name]
    torch.manual_seed(0)
    return HFBackbone(
        model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS, **kwargs
    ).eval()


@pytest.mark.parametrize("name", list(TINY))
def test_every_family_with_every_pooling_and_head(name):
    backbone = tiny(name)
    waves, lengths = padded_batch(LENGTHS)
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
    assert hidden.shape == (3, int(frame_lengths.max()), backbone.output_size)
    assert frame_lengths.dtype == torch.int64
    assert frame_lengths.tolist() == sorted(frame_lengths.tolist(), reverse=True)
    assert frame_lengths[-1] > 0
    assert torch.all(hidden[1, frame_lengths[1] :] == 0)  # nothing past an item's frames
    for pooling_cls in (MeanPooling, AttentiveStatisticsPooling):
        for head_cls in (LinearHead, MLPHead):
            pooling = pooling_cls(backbone.output_size)
            head = head_cls(pooling.output_size, 6)
            logits = head(pooling(hidden, frame_lengths))
            assert logits.shape == (3, 6)
            assert torch.isfinite(logits).all()


def assert_padded_items_equal_items_alone(backbone: HFBackbone) -> None:
    """Each item of a padded batch gets the states it gets alone (its batch-mates' lengths, the
    padding they give it, change nothing)."""
    waves, lengths = padded_batch(LENGTHS, seed=1)
    hidden, frame_lengths = backbone(waves, lengths)
    for row, length in enumerate(LENGTHS):
        alone, alone_lengths = backbone(waves[row : row + 1, :length], lengths[row : row + 1])
        assert alone_lengths[0] == frame_lengths[row]
        torch.testing.assert_close(
            hidden[row, : frame_lengths[row]], alone[0], atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize("name", list(TINY))
def test_padded_batch_equals_items_alone(name):
    with torch.no_grad():
        assert_padded_items_equal_items_alone(tiny(name))


@pytest.mark.parametrize("return_attention_mask", [False, True])
def test_a_group_norm_encoder_encodes_each_item_as_alone_whatever_its_preprocessor_says(
    tmp_path, return_attention_mask
):
    """wav2vec2-base / HuBERT-base style: the CNN's group norm takes each item's statistics over
    its own frames, and the layers never attend to padding (HF's batched use, no mask and the
    norm over the padded row, gave an item other states beside longer ones)."""
    tiny("wav2vec2-group").save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    settings = {**json.loads(path.read_text()), "return_attention_mask": return_attention_mask}
    path.write_text(json.dumps(settings))
    backbone = HFBackbone(source=str(tmp_path)).eval()
    with torch.no_grad():
        assert_padded_items_equal_items_alone(backbone)


def test_a_group_norm_cnn_that_trains_encodes_each_item_as_alone_and_learns():
    """With the CNN trainable (gradients through the group norm) the same holds."""
    backbone = tiny("wav2vec2-group", freeze="none")
    assert_padded_items_equal_items_alone(backbone)
    waves, lengths = padded_batch(LENGTHS, seed=1)
    hidden, _ = backbone(waves, lengths)
    hidden.sum().backward()
    norm = backbone.family.model.feature_extractor.conv_layers[0].layer_norm
    assert norm.weight.grad is not None and torch.isfinite(norm.weight.grad).all()


@pytest.mark.parametrize("groups", [16, 4])
def test_valid_frames_group_norm_is_torchs_group_norm_of_each_item_alone(groups):
    torch.manual_seed(0)
    torch_norm = torch.nn.GroupNorm(groups, 16)
    torch.nn.init.normal_(torch_norm.weight)
    torch.nn.init.normal_(torch_norm.bias)
    norm = ValidFramesGroupNorm(torch_norm)
    assert norm.weight is torch_norm.weight  # the checkpoint's parameters, not copies
    frames = torch.randn(3, 16, 50) * 3 + 1
    frame_lengths = torch.tensor([50, 31, 7])
    norm.frame_lengths = frame_lengths
    out = norm(frames.clone())
    for row, length in enumerate(frame_lengths.tolist()):
        expected = torch_norm(frames[row : row + 1, :, :length])
        torch.testing.assert_close(out[row : row + 1, :, :length], expected, atol=1e-5, rtol=1e-5)
    norm.frame_lengths = None  # outside ser's forward: torch's own
    torch.testing.assert_close(norm(frames), torch_norm(frames))


def test_valid_frames_group_norm_runs_in_float32_under_autocast():
    """As autocast runs torch's group norm: half-precision frames, float32 statistics and output."""
    torch.manual_seed(0)
    norm = ValidFramesGroupNorm(torch.nn.GroupNorm(16, 16))
    frames = torch.randn(2, 16, 40)
    norm.frame_lengths = torch.tensor([40, 25])
    expected = norm(frames.bfloat16().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(frames.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_wav2vec2_frame_lengths_follow_the_conv_arithmetic():
    backbone = tiny("wav2vec2-layer")
    waves, lengths = padded_batch(LENGTHS)
    _, frame_lengths = backbone(waves, lengths)
    # conv (kernel, stride) = (10, 5), (4, 4), (4, 4): floor((L - k) / s) + 1 per layer
    expected = []
    for length in LENGTHS:
        for kernel, stride in ((10, 5), (4, 4), (4, 4)):
            length = (length - kernel) // stride + 1
        expected.append(length)
    assert frame_lengths.tolist() == expected


def _captured_inputs(backbone: HFBackbone, waves, lengths) -> dict:
    seen = {}

    def hook(module, args, kwargs):
        seen["input_values"] = args[0] if args else kwargs["input_values"]
        seen["attention_mask"] = kwargs.get("attention_mask")

    handle = backbone.family.model.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        backbone(waves, lengths)
    handle.remove()
    return seen


def test_group_norm_model_gets_the_sample_mask_and_zeroed_normalised_padding():
    waves, lengths = padded_batch([4000, 2000])
    waves[1, 2000:] = 0.7  # garbage in the padding must not reach the model
    waves[1, :2000] += 3.0  # DC offset removed by per-utterance normalisation
    seen = _captured_inputs(tiny("wav2vec2-group"), waves, lengths)
    assert seen["attention_mask"].tolist()[1] == [1] * 2000 + [0] * 2000
    item = seen["input_values"][1]
    assert torch.all(item[2000:] == 0)
    assert abs(item[:2000].mean().item()) < 1e-4
    assert abs(item[:2000].std(unbiased=False).item() - 1) < 1e-3


def test_layer_norm_model_gets_the_sample_mask():
    waves, lengths = padded_batch([4000, 2000])
    seen = _captured_inputs(tiny("wav2vec2-layer"), waves, lengths)
    assert seen["attention_mask"].tolist()[1] == [1] * 2000 + [0] * 2000


def test_normalisation_matches_the_hf_extractor_on_valid_samples():
    waves, lengths = padded_batch([3000, 1200], seed=3)
    waves[1, :1200] = waves[1, :1200] * 5 + 2
    mask = torch.arange(3000)[None] < lengths[:, None]
    ours = normalize_valid(waves, mask)
    reference = Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
        [waves[1, :1200].numpy()], [np.ones(1200, dtype=np.int32)]
    )[0]
    np.testing.assert_allclose(ours[1, :1200].numpy(), reference, atol=1e-5)
    assert torch.all(ours[1, 1200:] == 0)


def test_scale_to_level_sets_each_utterances_rms_over_its_valid_samples():
    lengths = [3000, 1200, 2000]
    waves, _ = padded_batch(lengths, seed=4)
    waves[1, :1200] = waves[1, :1200] * 30.0 + 0.5  # a loud one, with a DC offset
    waves[2, :2000] = 1e-5 * waves[2, :2000].sign()  # near-silence: -100 dBFS
    scaled = scale_to_level(waves, torch.tensor(lengths), -20.0, max_gain_db=30.0)
    rms = [rms_of(scaled[row, :length]) for row, length in enumerate(lengths)]
    np.testing.assert_allclose(rms[:2], [0.1, 0.1], rtol=1e-4)  # -20 dBFS
    np.testing.assert_allclose(rms[2], 1e-5 * 10 ** (30 / 20), rtol=1e-3)  # raised 30 dB, no more
    assert abs(float(scaled[1, :1200].mean())) < 1e-6  # the offset is not level
    assert torch.all(scaled[1, 1200:] == 0) and torch.all(scaled[2, 2000:] == 0)
    centred = waves[0] - waves[0].mean()
    torch.testing.assert_close(scaled[0], centred * (0.1 / rms_of(centred)))  # one gain
    silent = scale_to_level(torch.zeros(1, 100), torch.tensor([100]), -20.0, 30.0)
    assert torch.all(silent == 0)


def rms_of(wave: torch.Tensor) -> float:
    return float(wave.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", ["hubert", "ast", "whisper"])
def test_the_encoder_hears_a_quieter_recording_as_the_same_with_input_level_db(name):
    backbone = tiny(name)
    assert backbone.input_level_db == DEFAULT_INPUT_LEVEL_DB
    if name == "hubert":  # HuBERT-base's extractor does not standardize its input
        backbone.family.do_normalize = False
    waves, lengths = padded_batch(LENGTHS, seed=2)
    quieter = waves * 10 ** (-26 / 20)  # 26 dB down: within the gain it may add back
    with torch.no_grad():
        hidden, _ = backbone(waves, lengths)
        torch.testing.assert_close(backbone(quieter, lengths)[0], hidden, atol=1e-4, rtol=1e-4)
        backbone.input_level_db = None  # as recorded: the level changes what it hears
        assert not torch.allclose(backbone(quieter, lengths)[0], hidden, atol=1e-2)


def test_the_input_level_is_a_setting_of_the_outputs_a_feature_store_keys_on():
    assert tiny("whisper").output_settings()["input_level_db"] == DEFAULT_INPUT_LEVEL_DB
    assert tiny("whisper", input_level_db=None).output_settings()["input_level_db"] is None


@pytest.mark.parametrize("name", list(TINY))
def test_save_pretrained_then_load_by_local_path_gives_same_outputs(name, tmp_path):
    backbone = tiny(name)
    backbone.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file()
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = HFBackbone(source=str(tmp_path), segment_seconds=SEGMENT_SECONDS).eval()
    waves, lengths = padded_batch(LENGTHS, seed=2)
    with torch.no_grad():
        expected, expected_lengths = backbone(waves, lengths)
        hidden, frame_lengths = loaded(waves, lengths)
    assert torch.equal(frame_lengths, expected_lengths)
    torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=1e-5)


def test_a_folder_source_may_start_with_home_and_is_named_when_its_weights_are_missing(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    tiny("wav2vec2-group").save_pretrained(tmp_path / "model")
    preprocessor = tmp_path / "model" / "preprocessor_config.json"
    preprocessor.write_text(
        json.dumps({**json.loads(preprocessor.read_text()), "do_normalize": False})
    )
    assert HFBackbone(source="~/model").family.do_normalize is False  # the folder's own setting
    (tmp_path / "model" / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"source '~/model': .*model\.safetensors"):
        HFBackbone(source="~/model")


def test_checkpoint_preprocessor_config_decides_normalisation_and_is_kept(tmp_path):
    tiny("wav2vec2-group").save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    settings = json.loads(path.read_text())
    assert settings["do_normalize"] is True
    assert settings["return_attention_mask"] is False
    settings.update(do_normalize=False, return_attention_mask=True)
    path.write_text(json.dumps(settings))
    family = HFBackbone(source=str(tmp_path)).family
    assert family.do_normalize is False
    assert family.preprocessor_settings()["return_attention_mask"] is True  # saved as it came
    path.unlink()  # no preprocessor config: the family default (group norm: HF gives no mask)
    settings = HFBackbone(source=str(tmp_path)).family.preprocessor_settings()
    assert settings["return_attention_mask"] is False


def test_preprocessor_settings_override_the_sources_and_are_what_the_family_reads(tmp_path):
    tiny("wav2vec2-group").save_pretrained(tmp_path)
    family = HFBackbone(source=str(tmp_path), preprocessor={"do_normalize": False}).family
    assert family.preprocessor_settings() == {"do_normalize": False, "return_attention_mask": False}
    model_type, config = TINY["whisper"]
    whisper = HFBackbone(model_type=model_type, config=config, preprocessor={"hop_length": 80})
    assert whisper.family.preprocessor_settings() == {"n_fft": 400, "hop_length": 80}


@pytest.mark.parametrize("name", ["wav2vec2-layer", "ast", "whisper"])
def test_layers_picks_the_hidden_states_to_probe_or_mix(name):
    waves, lengths = padded_batch(LENGTHS)
    with torch.no_grad():
        every, _ = tiny(name, layer_weighting=True).hidden_states(waves, lengths)
        (first,), _ = tiny(name, layers=[1]).hidden_states(waves, lengths)
        probed, _ = tiny(name, layers=[1])(waves, lengths)  # one layer, no weighting: that layer
        mixer = tiny(name, layers=[0, 2], layer_weighting=True)
        picked, _ = mixer.hidden_states(waves, lengths)
    assert len(every) == 3 and mixer.layer_weights.shape == (2,)
    torch.testing.assert_close(first, every[1])
    torch.testing.assert_close(probed, every[1] * (probed != 0))  # zeros past each item's end
    for state, index in zip(picked, [0, 2], strict=True):
        torch.testing.assert_close(state, every[index])
    assert tiny(name).layers == [2] and tiny(name, layer_weighting=True).layers == [0, 1, 2]


@pytest.mark.parametrize("name", ["wav2vec2-layer", "whisper"])
def test_normalize_states_layer_norms_each_state_before_the_mix(name):
    waves, lengths = padded_batch(LENGTHS)
    with torch.no_grad():
        raw, frame_lengths = tiny(name, layer_weighting=True).hidden_states(waves, lengths)
        normalized, _ = tiny(name, layer_weighting=True, normalize_states=True).hidden_states(
            waves, lengths
        )
    for before, after in zip(raw, normalized, strict=True):
        torch.testing.assert_close(
            after, torch.nn.functional.layer_norm(before, (before.shape[-1],))
        )
        valid = after[0, : frame_lengths[0]]  # (T', H) of the first item
        torch.testing.assert_close(valid.mean(-1), torch.zeros(len(valid)), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            valid.std(-1, correction=0), torch.ones(len(valid)), atol=1e-2, rtol=0
        )
    assert tiny(name).output_settings()["normalize_states"] is False


def test_layers_are_checked_against_the_model():
    with pytest.raises(ValueError, match=r"layers=\[3\], but the hidden states of this 2-layer"):
        tiny("wav2vec2-layer", layers=[3])
    with pytest.raises(ValueError, match="increasing, distinct"):
        tiny("wav2vec2-layer", layers=[2, 1], layer_weighting=True)
    with pytest.raises(ValueError, match="set layer_weighting true to mix them, or give one"):
        tiny("wav2vec2-layer", layers=[1, 2])


@pytest.mark.parametrize("name", ["wav2vec2-layer", "ast", "whisper"])
def test_layer_weighting_mixes_all_hidden_states(name):
    backbone = tiny(name, layer_weighting=True)
    num_layers = len(backbone.family.layers)
    assert backbone.layer_weights.shape == (num_layers + 1,)
    waves, lengths = padded_batch(LENGTHS)
    hidden, frame_lengths = backbone(waves, lengths)
    MeanPooling(backbone.output_size)(hidden, frame_lengths).sum().backward()
    assert backbone.layer_weights.grad is not None
    assert backbone.layer_weights.grad.abs().sum() > 0
    last, _ = tiny(name)(waves, lengths)
    assert not torch.allclose(hidden, last)  # a mix, not the last state


@pytest.mark.parametrize("name", list(TINY))
def test_encoders_never_run_cudnn_attention(name):
    # cuDNN's SDPA re-plans for every new batch length: 5x slower steps on an H100.
    backbone = tiny(name)
    seen = []
    layer = backbone.family.layers[0]
    layer.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    with torch.no_grad():
        backbone(*padded_batch(LENGTHS))
    assert seen == [False]
    assert torch.backends.cuda.cudnn_sdp_enabled()  # only inside the encoder


def test_bad_arguments_say_what_is_expected(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        HFBackbone()
    with pytest.raises(ValueError, match="exactly one of"):
        HFBackbone(source=str(tmp_path), model_type="wav2vec2")
    with pytest.raises(
        FileNotFoundError, match=r"the folder has no config\.json; expected a folder"
    ):
        HFBackbone(source=str(tmp_path))
    for missing in (str(tmp_path / "nowhere"), "./nowhere", "~/nowhere/at/all", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"source '{missing}': no such folder"):
            HFBackbone(source=missing)
    with pytest.raises(ValueError, match="unknown model_type 'bert2'"):
        HFBackbone(model_type="bert2")
    with pytest.raises(ValueError, match="not supported"):
        HFBackbone(
            model_type="bert",
            config={
                "num_hidden_layers": 1,
                "hidden_size": 8,
                "num_attention_heads": 1,
                "intermediate_size": 8,
            },
        )
    model_type, config = TINY["wav2vec2-layer"]
    with pytest.raises(ValueError, match="freeze_layers=3 but the model has 2 layers"):
        HFBackbone(model_type=model_type, config=config, freeze_layers=3)
    with pytest.raises(ValueError, match="freeze='encoder'"):
        HFBackbone(model_type=model_type, config=config, freeze="encoder")
    # AST's position table is a pretrained source's own; a model built from a config (a trained
    # checkpoint's, rebuilt without its source) keeps the one it trained with.
    ast_type, ast_config = TINY["ast"]
    HFBackbone(model_type=ast_type, config=ast_config).save_pretrained(tmp_path / "ast")
    with pytest.raises(ValueError, match="segment_seconds"):
        HFBackbone(source=str(tmp_path / "ast"), config={"max_length": 100})
    rebuilt = HFBackbone(model_type=ast_type, config={**ast_config, "max_length": 1000})
    assert rebuilt.family.model.config.max_length == 1000  # more than the 5 s window's 498


def test_compile_compiles_each_layer_with_dynamic_shapes(monkeypatch):
    calls = []

    def record(function, **kwargs):
        calls.append(kwargs)
        return function  # run eagerly: this test checks the wiring, the slow one the compiler

    monkeypatch.setattr(torch, "compile", record)
    backbone = tiny("wav2vec2-layer", compile=True)
    assert calls == [{"dynamic": True}] * len(backbone.family.layers)
    assert set(backbone.state_dict()) == set(tiny("wav2vec2-layer").state_dict())  # same keys


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wav2vec2-layer", "ast"])
def test_compiled_backbone_gives_the_eager_outputs_and_gradients(name):
    eager, compiled = tiny(name), tiny(name, compile=True)  # same seed: same weights
    for sizes in ([8000, 5000], [7000, 3000, 2000]):  # a second shape: no recompile error
        waves, lengths = padded_batch(sizes)
        expected, _ = eager(waves, lengths)
        got, _ = compiled(waves, lengths)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        # A random projection: a plain sum of layer-normed states has (almost) no gradient.
        projection = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
        (got * projection).sum().backward()
        (expected * projection).sum().backward()
    compared = 0
    for (key, param), reference in zip(
        compiled.named_parameters(), eager.parameters(), strict=True
    ):
        # The same parameters get a gradient (not e.g. masked_spec_embed, unused without masking).
        assert (param.grad is None) == (reference.grad is None), key
        if param.grad is not None:
            torch.testing.assert_close(param.grad, reference.grad, atol=1e-3, rtol=1e-3, msg=key)
            compared += 1
    assert compared > len(list(eager.parameters())) // 2


@pytest.mark.parametrize("all_hidden_states", [True, False])
def test_ast_encodes_as_ast_model_does_with_its_mask_built_on_the_device(all_hidden_states):
    """``_encode`` runs ASTModel's embeddings, layers and norm itself (ASTModel's forward asks
    whether the mask is all True, a device wait every step): the same states, masked alike."""
    family = tiny("ast").family.eval()
    torch.manual_seed(0)
    time_patches = family.time_patches
    config = family.model.config
    frames = config.patch_size + (time_patches - 1) * config.time_stride
    inputs = torch.randn(2, frames, config.num_mel_bins)
    valid = torch.tensor([time_patches, max(1, time_patches // 2)])
    with torch.no_grad():
        ours = family._encode(inputs, valid, time_patches, all_hidden_states)
        index = torch.arange(time_patches)
        mask = (index[None] < valid[:, None]).repeat(1, family.freq_patches)
        mask = torch.cat([torch.ones(2, 2, dtype=torch.bool), mask], dim=1).long()
        out = family.model(inputs, attention_mask=mask, output_hidden_states=all_hidden_states)
    theirs = out.hidden_states if all_hidden_states else [out.last_hidden_state]
    assert len(ours) == len(theirs)
    for mine, hf in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, family._time_major(hf))
