"""Hugging Face Wav2Vec2 / HuBERT / WavLM directories import with transformers' own hidden states."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from interop_helpers import assert_batch_equals_alone, assert_valid_close, perturb, waveforms

from audiossl.errors import DataError
from audiossl.interop import detect_format, import_model

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    conv_dim=(16, 16, 16),
    conv_kernel=(10, 3, 2),
    conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
)

# (config class, model class, extra config): group-norm post-norm (base) and layer-norm pre-norm (large-lv60k) variants.
VARIANTS = {
    "wav2vec2-base": ("Wav2Vec2Config", "Wav2Vec2Model", dict(feat_extract_norm="group", do_stable_layer_norm=False)),
    "wav2vec2-lv60": ("Wav2Vec2Config", "Wav2Vec2Model", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "hubert-base": ("HubertConfig", "HubertModel", dict(feat_extract_norm="group", do_stable_layer_norm=False)),
    "wavlm-large": ("WavLMConfig", "WavLMModel", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "conformer": ("Wav2Vec2ConformerConfig", "Wav2Vec2ConformerModel", dict(feat_extract_norm="layer")),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel", {}),  # layer-norm convolutions, no field
    "unispeech-sat": ("UniSpeechSatConfig", "UniSpeechSatModel", dict(feat_extract_norm="group")),
}


def save_peer(variant: str, directory, *, safe: bool = True, extractor: bool = True):
    config_name, model_name, extra = VARIANTS[variant]
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**TINY, **extra, conv_bias=extra.get("feat_extract_norm") != "group")
    if variant == "conformer":
        config.conv_depthwise_kernel_size = 3
    peer = perturb(getattr(transformers, model_name)(config))
    peer.save_pretrained(directory, safe_serialization=safe)
    if extractor:
        layer_norm = extra.get("feat_extract_norm") != "group"
        transformers.Wav2Vec2FeatureExtractor(
            sampling_rate=16000, do_normalize=layer_norm, return_attention_mask=layer_norm
        ).save_pretrained(directory)
    return peer


def peer_hidden_states(peer, directory, audio: list[torch.Tensor]):
    """transformers end to end: its feature extractor, then its model with all hidden states."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(directory, local_files_only=True)
    inputs = extractor([a.numpy() for a in audio], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        return peer(**inputs, output_hidden_states=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_hidden_states_as_transformers(tmp_path, variant):
    peer = save_peer(variant, tmp_path, safe=variant != "hubert-base")  # hubert: pytorch_model.bin
    assert detect_format(tmp_path) == "transformers"
    model = import_model(tmp_path)
    assert (model.dim, model.num_layers, model.sample_rate, model.frame_rate) == (32, 2, 16000, 800.0)
    audio = waveforms(2, 4000)
    lengths = torch.tensor([4000, 4000])
    with torch.no_grad():
        ours = model(audio, lengths)
    reference = peer_hidden_states(peer, tmp_path, list(audio))
    stable = VARIANTS[variant][2].get("do_stable_layer_norm", False) or variant == "conformer"
    assert len(ours.layers) == 2
    assert_valid_close(ours.last, reference.last_hidden_state, ours.lengths)
    assert_valid_close(ours.layers[0], reference.hidden_states[1], ours.lengths)
    # transformers' last hidden state of stable-layer-norm models has the final norm; ours keeps the raw block output.
    final = peer.encoder.layer_norm(ours.layers[1]) if stable else ours.layers[1]
    assert_valid_close(final, reference.hidden_states[2], ours.lengths)
    assert ours.lengths.tolist() == [199, 199]


@pytest.mark.parametrize("variant", ["wav2vec2-lv60", "wavlm-large"])
def test_padded_batch_matches_transformers_with_attention_mask(tmp_path, variant):
    """Layer-norm feature extractors support padding exactly: transformers' own padded batch agrees."""
    peer = save_peer(variant, tmp_path)
    model = import_model(tmp_path)
    audio = waveforms(3, 4000, seed=1)
    lengths = torch.tensor([4000, 2500, 1200])
    batch = audio.clone()
    for b, length in enumerate(lengths.tolist()):
        batch[b, length:] = 0
    model.exact_padding = False  # layer norm needs no per-item run
    together = assert_batch_equals_alone(model, batch, lengths)
    reference = peer_hidden_states(peer, tmp_path, [audio[b, :n] for b, n in enumerate(lengths.tolist())])
    assert_valid_close(together.layers[0], reference.hidden_states[1], together.lengths)
    assert_valid_close(together.last, reference.last_hidden_state, together.lengths)


@pytest.mark.parametrize("variant", ["wav2vec2-base", "conformer", "data2vec-audio"])
def test_leaky_padding_needs_items_alone(tmp_path, variant):
    """Group norm over time (wav2vec2-base), conformer convolutions and data2vec's stacked positional
    convolutions all let padding reach valid frames in transformers: batched is not exact, item by item is."""
    save_peer(variant, tmp_path)
    model = import_model(tmp_path)
    assert model.padding_leaks
    lengths = torch.tensor([4000, 1500])
    batch = waveforms(2, 4000, seed=2)
    batch[1, 1500:] = 0
    assert_batch_equals_alone(model, batch, lengths)  # exact_padding on (the default)
    model.exact_padding = False
    with pytest.raises(AssertionError, match="batch vs alone"):
        assert_batch_equals_alone(model, batch, lengths)


def test_input_normalisation_follows_preprocessor_config(tmp_path):
    save_peer("wav2vec2-lv60", tmp_path)
    model = import_model(tmp_path)
    assert model.normalize_waveform
    louder = import_model(tmp_path)
    audio = waveforms(1, 3000)
    with torch.no_grad():
        a, b = model(audio, torch.tensor([3000])), louder(5 * audio + 0.3, torch.tensor([3000]))
    assert torch.allclose(a.last, b.last, atol=1e-4)  # gain and offset are normalised away


def test_classification_head_directory_keeps_the_base_model(tmp_path):
    config_name, _, extra = VARIANTS["wav2vec2-base"]
    config = getattr(transformers, config_name)(**TINY, **extra, vocab_size=7)
    torch.manual_seed(0)
    ctc = perturb(transformers.Wav2Vec2ForCTC(config))
    ctc.save_pretrained(tmp_path)
    model = import_model(tmp_path, format="transformers")
    audio = waveforms(1, 3000)
    with torch.no_grad():
        expected = ctc.wav2vec2(audio).last_hidden_state
        assert_valid_close(model(audio, torch.tensor([3000])).last, expected, torch.tensor([expected.shape[1]]))


def test_missing_weights_are_named(tmp_path):
    save_peer("wav2vec2-base", tmp_path, extractor=False)
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "model.safetensors")
    del weights["encoder.layers.1.feed_forward.output_dense.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(DataError, match=r"missing keys \(1\): encoder\.layers\.1\.feed_forward\.output_dense\.weight"):
        import_model(tmp_path)


def test_unknown_model_type_lists_what_was_found(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "architectures": ["WhisperModel"]}))
    with pytest.raises(
        DataError, match=r"unsupported Hugging Face model_type 'whisper' \(architectures: WhisperModel\)"
    ):
        import_model(tmp_path)
