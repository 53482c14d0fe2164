"""Published checkpoints converted into audiossl's wav2vec2 family: every block equals the peer's own output.

Each peer is a tiny random model built locally with the peer's own code (transformers, torchaudio,
fairseq2), perturbed off its initial values, saved in the peer's own format, then converted by
:func:`audiossl.interop.convert.convert_checkpoint`. The reference is the peer's forward on each
item alone (forward hooks on its blocks); ours runs the padded batch, so the comparison also
checks that a padded batch equals each item alone (group-norm CNNs included).
"""

from __future__ import annotations

import pytest
import torch
import torchaudio.models
import transformers
from interop_helpers import TOLERANCE, perturb, waveforms

from audiossl.encoders.wav2vec2 import Wav2Vec2Encoder
from audiossl.errors import DataError
from audiossl.interop.convert import convert_checkpoint
from audiossl.interop.torchaudio import save_torchaudio_checkpoint

LENGTHS = torch.tensor([4000, 2300, 3100])  # samples: a padded batch of unequal items

HF_TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
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
# config class, model class, CNN norm, stable (pre-LN) layer norm
HF_VARIANTS = {
    "wav2vec2-base": ("Wav2Vec2Config", "Wav2Vec2Model", "group", False),
    "wav2vec2-lv60": ("Wav2Vec2Config", "Wav2Vec2Model", "layer", True),
    "hubert-base": ("HubertConfig", "HubertModel", "group", False),
    "hubert-large": ("HubertConfig", "HubertModel", "layer", True),
    "wavlm-base": ("WavLMConfig", "WavLMModel", "group", False),
    "wavlm-large": ("WavLMConfig", "WavLMModel", "layer", True),
}


def block_outputs(blocks, run) -> list[torch.Tensor]:
    """The output of every block while ``run()`` runs (forward hooks on the peer's own modules)."""
    outputs: list[torch.Tensor] = []
    handles = [
        b.register_forward_hook(lambda m, i, o: outputs.append(o[0] if isinstance(o, tuple) else o)) for b in blocks
    ]
    try:
        with torch.no_grad():
            last = run()
    finally:
        for handle in handles:
            handle.remove()
    return [last, *outputs]


def assert_parity(encoder: Wav2Vec2Encoder, audio: torch.Tensor, lengths: torch.Tensor, reference) -> None:
    """Ours on the padded batch vs ``reference(item waveform (1, T)) -> [last, block outputs...]`` per item."""
    with torch.no_grad():
        ours = encoder(audio, lengths)
    for b, n in enumerate(lengths.tolist()):
        expected = reference(audio[b : b + 1, :n])
        frames = int(ours.lengths[b])
        assert len(expected) == 1 + encoder.num_layers
        assert expected[0].shape[1] == frames
        for name, mine, theirs in zip(
            ["last", *range(encoder.num_layers)], [ours.last, *ours.layers], expected, strict=True
        ):
            difference = (mine[b, :frames] - theirs[0]).abs().max().item()
            assert difference <= TOLERANCE, f"item {b}, {name}: max difference {difference}"


def save_hf(variant: str, directory, **extra):
    config_name, model_name, norm, stable = HF_VARIANTS[variant]
    settings = dict(HF_TINY, feat_extract_norm=norm, do_stable_layer_norm=stable, conv_bias=norm == "layer")
    if variant.startswith("wavlm"):
        settings.update(num_buckets=16, max_bucket_distance=40)  # 199 frames reach the logarithmic buckets
    settings.update(extra)
    torch.manual_seed(0)
    peer = perturb(getattr(transformers, model_name)(getattr(transformers, config_name)(**settings)))
    peer.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=False).save_pretrained(directory)
    return peer


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_transformers_every_layer_equals_the_peer(tmp_path, variant):
    peer = save_hf(variant, tmp_path)
    converted = convert_checkpoint(tmp_path)
    encoder = converted.encoder
    assert isinstance(encoder, Wav2Vec2Encoder) and converted.source == "transformers"
    _, _, norm, stable = HF_VARIANTS[variant]
    assert encoder.config.input.frontend_options["mode"] == ("layer_norm" if norm == "layer" else "group_norm")
    assert encoder.config.layer_norm_first is stable
    assert encoder.config.relative_position_bias is variant.startswith("wavlm")
    assert torch.equal(encoder.embedding.mask_embedding, peer.masked_spec_embed)

    def reference(item):
        return block_outputs(peer.encoder.layers, lambda: peer(item).last_hidden_state)

    assert_parity(encoder, waveforms(3, 4000), LENGTHS, reference)


def test_transformers_masked_frames_equal_the_peer_masking(tmp_path):
    """The mask embedding replaces the same frames as transformers' ``mask_time_indices``."""
    peer = save_hf("wavlm-base", tmp_path)
    encoder = convert_checkpoint(tmp_path).encoder
    audio = waveforms(1, 4000)
    frames = int(encoder.token_lengths(torch.tensor([4000]))[0])
    mask = torch.zeros(1, frames, dtype=torch.bool)
    mask[0, 20:40] = mask[0, 120:125] = True
    with torch.no_grad():
        ours = encoder(audio, torch.tensor([4000]), mask=mask).last
        theirs = peer(audio, mask_time_indices=mask).last_hidden_state
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_hubert_without_feature_layer_norm(tmp_path):
    peer = save_hf("hubert-base", tmp_path, feat_proj_layer_norm=False)
    encoder = convert_checkpoint(tmp_path).encoder
    assert encoder.config.feature_norm is False

    def reference(item):
        return block_outputs(peer.encoder.layers, lambda: peer(item).last_hidden_state)

    assert_parity(encoder, waveforms(3, 4000, seed=1), LENGTHS, reference)


TA_TINY = dict(
    extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    encoder_embed_dim=32,
    encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=8,
    encoder_pos_conv_groups=4,
    encoder_num_layers=2,
    encoder_num_heads=4,
    encoder_attention_dropout=0.0,
    encoder_ff_interm_features=48,
    encoder_ff_interm_dropout=0.0,
    encoder_dropout=0.0,
    encoder_layer_drop=0.0,
    aux_num_out=None,
)
# builder, extractor mode, conv bias, layer_norm_first, extra
TA_VARIANTS = {
    "wav2vec2-base": ("wav2vec2_model", "group_norm", False, False, {}),
    "wav2vec2-lv60": ("wav2vec2_model", "layer_norm", True, True, {}),
    "wavlm-base": ("wavlm_model", "group_norm", False, False, dict(encoder_num_buckets=16, encoder_max_distance=40)),
    "wavlm-large": ("wavlm_model", "layer_norm", True, True, dict(encoder_num_buckets=16, encoder_max_distance=40)),
}


@pytest.mark.parametrize("variant", list(TA_VARIANTS))
def test_torchaudio_every_layer_equals_the_peer(tmp_path, variant):
    builder, mode, bias, pre_norm, extra = TA_VARIANTS[variant]
    kwargs = dict(TA_TINY, extractor_mode=mode, extractor_conv_bias=bias, encoder_layer_norm_first=pre_norm, **extra)
    torch.manual_seed(0)
    peer = perturb(getattr(torchaudio.models, builder)(**kwargs))
    save_torchaudio_checkpoint(tmp_path / "model.pt", peer.state_dict(), builder, kwargs)
    converted = convert_checkpoint(tmp_path / "model.pt")
    assert converted.fresh == ("embedding.mask_embedding",)  # torchaudio's encoders have none

    def reference(item):
        # torchaudio's forward = its encoder's output (final norm included); blocks hooked
        return block_outputs(peer.encoder.transformer.layers, lambda: peer(item)[0])

    assert_parity(converted.encoder, waveforms(3, 4000, seed=2), LENGTHS, reference)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_fairseq2_every_layer_equals_the_peer(tmp_path, pre_norm):
    from fairseq2.nn import BatchLayout
    from test_fairseq2 import save_fairseq2_checkpoint

    peer = save_fairseq2_checkpoint(tmp_path, pre_norm)
    converted = convert_checkpoint(tmp_path)
    assert converted.config.layer_norm_first is pre_norm

    def reference(item):
        outputs: list[torch.Tensor] = []
        handle = peer.encoder.register_layer_hook(lambda i, output, layout, count: outputs.append(output) or True)
        try:
            with torch.no_grad():
                seqs, layout = peer.encoder_frontend(item, BatchLayout(tuple(item.shape), [item.shape[1]]))
                last = peer.encoder(seqs, layout)
        finally:
            handle.remove()
        return [last, *outputs]

    assert_parity(converted.encoder, waveforms(3, 4000, seed=3), LENGTHS, reference)


def test_unconvertible_sources_are_named(tmp_path):
    config = transformers.Wav2Vec2ConformerConfig(**HF_TINY, feat_extract_norm="layer", conv_depthwise_kernel_size=3)
    transformers.Wav2Vec2ConformerModel(config).save_pretrained(tmp_path)
    with pytest.raises(DataError, match="wav2vec2-conformer.*does not convert"):
        convert_checkpoint(tmp_path)
