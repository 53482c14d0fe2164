"""torchaudio wav2vec2 / HuBERT / WavLM models import with torchaudio's own hidden states."""

from __future__ import annotations

import pytest
import torch
import torchaudio.models
from interop_helpers import assert_batch_equals_alone, assert_valid_close, perturb, waveforms

from audiossl.errors import DataError
from audiossl.interop import detect_format, import_model
from audiossl.interop.torchaudio import FORMAT_KEY, save_torchaudio_checkpoint

TINY = dict(
    extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    extractor_conv_bias=False,
    encoder_embed_dim=32,
    encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=8,
    encoder_pos_conv_groups=4,
    encoder_num_layers=2,
    encoder_num_heads=2,
    encoder_attention_dropout=0.0,
    encoder_ff_interm_features=48,
    encoder_ff_interm_dropout=0.0,
    encoder_dropout=0.0,
    encoder_layer_drop=0.0,
    aux_num_out=None,
)
# builder, extractor mode, layer_norm_first (pre-norm), extra arguments
VARIANTS = {
    "wav2vec2-base": ("wav2vec2_model", "group_norm", False, {}),
    "wav2vec2-lv60": ("wav2vec2_model", "layer_norm", True, {}),
    "wavlm-base": ("wavlm_model", "group_norm", False, dict(encoder_num_buckets=16, encoder_max_distance=40)),
    "wavlm-large": ("wavlm_model", "layer_norm", True, dict(encoder_num_buckets=16, encoder_max_distance=40)),
}


def save_peer(variant: str, path):
    builder, mode, pre_norm, extra = VARIANTS[variant]
    kwargs = dict(TINY, extractor_mode=mode, encoder_layer_norm_first=pre_norm, **extra)
    torch.manual_seed(0)
    peer = perturb(getattr(torchaudio.models, builder)(**kwargs))
    save_torchaudio_checkpoint(path, peer.state_dict(), builder, kwargs)
    return peer


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_hidden_states_as_torchaudio(tmp_path, variant):
    path = tmp_path / "model.pt"
    peer = save_peer(variant, path)
    assert detect_format(path) == "torchaudio"
    model = import_model(path)
    assert (model.dim, model.num_layers, model.sample_rate, model.frame_rate) == (32, 2, 16000, 800.0)
    audio, lengths = waveforms(2, 4000), torch.tensor([4000, 4000])
    with torch.no_grad():
        ours = model(audio, lengths)
        reference_layers, _ = peer.extract_features(audio)  # torchaudio's WavLM takes no lengths
        reference_last, _ = peer(audio)  # the encoder's output (final norm included)
    assert ours.lengths.tolist() == [199, 199]
    assert reference_last.shape[1] == 199
    assert len(ours.layers) == 2
    for mine, theirs in zip(ours.layers, reference_layers, strict=True):
        assert_valid_close(mine, theirs, ours.lengths)
    assert_valid_close(ours.last, reference_last, ours.lengths)


def test_layer_norm_models_pad_exactly(tmp_path):
    path = tmp_path / "model.pt"
    peer = save_peer("wav2vec2-lv60", path)
    model = import_model(path)
    model.exact_padding = False
    lengths = torch.tensor([4000, 2300, 900])
    batch = waveforms(3, 4000, seed=3)
    together = assert_batch_equals_alone(model, batch, lengths)
    with torch.no_grad():
        reference, _ = peer.extract_features(batch, lengths)
    assert_valid_close(together.layers[1], reference[1], together.lengths)


@pytest.mark.parametrize("variant", ["wavlm-base", "wavlm-large"])
def test_wavlm_padded_batch_equals_items_alone(tmp_path, variant):
    """torchaudio's WavLM cannot mask padding; the import runs such batches item by item."""
    path = tmp_path / "model.pt"
    save_peer(variant, path)
    model = import_model(path)
    assert not model.takes_lengths
    together = assert_batch_equals_alone(model, waveforms(2, 4000, seed=5), torch.tensor([4000, 1900]))
    assert together.lengths.tolist() == [199, 94]


def test_group_norm_models_run_items_alone(tmp_path):
    path = tmp_path / "model.pt"
    save_peer("wav2vec2-base", path)
    model = import_model(path)
    lengths = torch.tensor([4000, 1700])
    batch = waveforms(2, 4000, seed=4)
    assert_batch_equals_alone(model, batch, lengths)
    model.exact_padding = False  # torchaudio batched: the group norm sees the padding
    with pytest.raises(AssertionError, match="batch vs alone"):
        assert_batch_equals_alone(model, batch, lengths)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path = tmp_path / "model.pt"
    peer = save_peer("wav2vec2-base", tmp_path / "ok.pt")
    state = peer.state_dict()
    state.pop("encoder.transformer.layers.0.attention.k_proj.weight")
    state["encoder.transformer.layers.7.attention.k_proj.weight"] = torch.zeros(1)
    kwargs = dict(TINY, extractor_mode="group_norm", encoder_layer_norm_first=False)
    save_torchaudio_checkpoint(path, state, "wav2vec2_model", kwargs)
    with pytest.raises(DataError) as error:
        import_model(path)
    assert "missing keys (1): encoder.transformer.layers.0.attention.k_proj.weight" in str(error.value)
    assert "unexpected keys (1): encoder.transformer.layers.7.attention.k_proj.weight" in str(error.value)


def test_plain_state_dict_is_not_guessed(tmp_path):
    """A bare torchaudio state dict says nothing of its architecture: a clear error, not a guess."""
    path = tmp_path / "bare.pt"
    torch.save({"feature_extractor.conv_layers.0.conv.weight": torch.zeros(2)}, path)
    with pytest.raises(DataError, match=r"not a checkpoint format .* top-level keys: feature_extractor"):
        import_model(path)
    with pytest.raises(DataError, match=f"needs keys '{FORMAT_KEY}' and 'state_dict'"):
        import_model(path, format="torchaudio")


def test_unknown_builder_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({FORMAT_KEY: "conformer", "state_dict": {}}, path)
    with pytest.raises(DataError, match="unknown torchaudio builder 'conformer'"):
        import_model(path)
