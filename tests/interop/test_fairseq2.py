"""fairseq2 wav2vec2 checkpoints, and fairseq1 ones through fairseq2's converter.

fairseq2 checkpoints are written by fairseq2's own writers (model.yaml by its metadata dumper,
weights by its tensor file dumper, in its trainer's layout) and compared with fairseq2's model.
fairseq (1) is not installed, so a fairseq1 checkpoint is built from a transformers Wav2Vec2Model
with fairseq1's parameter names (the inverse of transformers' fairseq conversion) and fairseq1's
config; the import then runs fairseq2's code and must agree with transformers' code.
"""

from __future__ import annotations

import argparse
import re

import numpy
import pytest
import torch
import transformers
import yaml
from fairseq2.checkpoint.model_metadata import StandardModelMetadataDumper
from fairseq2.file_system import LocalFileSystem
from fairseq2.io import TensorFileDumpOptions, _TorchTensorFileDumper
from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2Config, create_wav2vec2_model
from fairseq2.nn import BatchLayout
from fairseq2.utils.structured import StandardValueConverter
from fairseq2.utils.yaml import RuamelYamlDumper
from interop_helpers import assert_batch_equals_alone, assert_valid_close, perturb, waveforms
from test_transformers import TINY as HF_TINY

from audiossl.errors import DataError
from audiossl.interop import detect_format, import_model
from audiossl.interop.fairseq1 import parse_conv_layers


def tiny_config(pre_norm: bool) -> Wav2Vec2Config:
    config = Wav2Vec2Config(final_dim=16, quantized_dim=16, num_codebook_entries=8)
    encoder = config.encoder_config
    encoder.model_dim, encoder.feature_dim, encoder.ffn_inner_dim = 32, 16, 48
    encoder.num_encoder_layers, encoder.num_encoder_attn_heads = 2, 2
    encoder.feature_extractor_layer_descs = [(16, 10, 5), (16, 3, 2), (16, 2, 2)]
    encoder.pos_conv_kernel_size, encoder.num_pos_conv_groups = 8, 4
    encoder.dropout_p = encoder.attn_dropout_p = encoder.layer_drop_p = 0.0
    if pre_norm:  # large_lv60k-style
        encoder.norm_order = TransformerNormOrder.PRE
        encoder.layer_norm_features = False
        encoder.feature_extractor_bias = encoder.feature_extractor_layer_norm_convs = True
    return config


def save_fairseq2_checkpoint(directory, pre_norm: bool):
    """A fairseq2 trainer-layout checkpoint: model.yaml + step_<N>/model/pp_00/tp_00/sdp_00.pt."""
    config = tiny_config(pre_norm)
    torch.manual_seed(0)
    peer = perturb(create_wav2vec2_model(config))
    file_system = LocalFileSystem()
    StandardModelMetadataDumper(file_system, RuamelYamlDumper(file_system), StandardValueConverter()).dump(
        directory, "wav2vec2", config
    )
    dumper = _TorchTensorFileDumper(file_system)
    for step in (5, 10):  # the newest step is imported
        weights = directory / f"step_{step}" / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
        weights.parent.mkdir(parents=True)
        state = peer.state_dict() if step == 10 else {k: torch.zeros_like(v) for k, v in peer.state_dict().items()}
        dumper.dump(state, weights, TensorFileDumpOptions(pickle_protocol=2))
    return peer


def fairseq2_reference(peer, audio: torch.Tensor, lengths: torch.Tensor):
    """fairseq2's own forward (frontend, then encoder with a layer hook)."""
    layers = []
    handle = peer.encoder.register_layer_hook(lambda index, output, layout, count: layers.append(output) or True)
    layout = BatchLayout(tuple(audio.shape), lengths.tolist())
    with torch.no_grad():
        seqs, layout = peer.encoder_frontend(audio, layout)
        last = peer.encoder(seqs, layout)
    handle.remove()
    return last, layers


@pytest.mark.parametrize("pre_norm", [False, True], ids=["base", "large_lv60k"])
def test_fairseq2_checkpoint_same_hidden_states(tmp_path, pre_norm):
    peer = save_fairseq2_checkpoint(tmp_path, pre_norm)
    assert detect_format(tmp_path) == "fairseq2"
    model = import_model(tmp_path)
    assert (model.dim, model.num_layers, model.frame_rate) == (32, 2, 800.0)
    audio, lengths = waveforms(2, 4000), torch.tensor([4000, 4000])
    with torch.no_grad():
        ours = model(audio, lengths)
    last, layers = fairseq2_reference(peer, audio, lengths)
    assert ours.lengths.tolist() == [199, 199]
    for mine, theirs in zip(ours.layers, layers, strict=True):
        assert_valid_close(mine, theirs, ours.lengths)
    assert_valid_close(ours.last, last, ours.lengths)
    step_dir = import_model(tmp_path / "step_10", format="fairseq2")  # a step directory works too
    with torch.no_grad():
        assert torch.equal(step_dir(audio, lengths).last, ours.last)


def test_fairseq2_padding(tmp_path):
    peer = save_fairseq2_checkpoint(tmp_path, pre_norm=True)
    model = import_model(tmp_path)
    assert not model.padding_leaks
    model.exact_padding = False  # layer-norm convolutions: fairseq2's padded batch is exact
    audio, lengths = waveforms(3, 4000, seed=6), torch.tensor([4000, 3100, 1000])
    together = assert_batch_equals_alone(model, audio, lengths)
    last, _ = fairseq2_reference(peer, audio, lengths)
    assert_valid_close(together.last, last, together.lengths)


def test_fairseq2_group_norm_padding_runs_items_alone(tmp_path):
    save_fairseq2_checkpoint(tmp_path, pre_norm=False)
    model = import_model(tmp_path)
    assert model.padding_leaks
    audio, lengths = waveforms(2, 4000, seed=9), torch.tensor([4000, 1300])
    assert_batch_equals_alone(model, audio, lengths)
    model.exact_padding = False
    with pytest.raises(AssertionError, match="batch vs alone"):
        assert_batch_equals_alone(model, audio, lengths)


def hf_to_fairseq1(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers Wav2Vec2Model weights under fairseq1's wav2vec2 names (slow, explicit)."""
    rules = [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
        (r"feature_extractor\.conv_layers\.0\.layer_norm\.(weight|bias)$", None),  # group or layer norm, below
        (r"feature_projection\.layer_norm\.", "layer_norm."),
        (r"feature_projection\.projection\.", "post_extract_proj."),
        (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
        (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
        (r"encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias)", r"encoder.pos_conv.0.\1"),
        (r"encoder\.layers\.(\d+)\.attention\.out_proj\.", r"encoder.layers.\1.self_attn.out_proj."),
        (r"encoder\.layers\.(\d+)\.attention\.([qkv])_proj\.", r"encoder.layers.\1.self_attn.\2_proj."),
        (r"encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
        (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
        (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
        (r"masked_spec_embed", "mask_emb"),
    ]
    converted = {}
    for key, tensor in state.items():
        match = re.match(r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)$", key)
        if match:
            layer, name = match.groups()
            group_norm = tensor.ndim == 1 and f"feature_extractor.conv_layers.1.layer_norm.{name}" not in state
            new = f"feature_extractor.conv_layers.{layer}.2.{name}" if group_norm else None
            converted[new or f"feature_extractor.conv_layers.{layer}.2.1.{name}"] = tensor
            continue
        for pattern, replacement in rules:
            if replacement is not None and re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        converted[key] = tensor
    # pretraining-only parts a fairseq1 file also holds (the import ignores them)
    converted.update({"quantizer.vars": torch.zeros(1, 16, 8), "project_q.weight": torch.zeros(16, 16)})
    return converted


def fairseq1_model_settings(pre_norm: bool) -> dict:
    return {
        "_name": "wav2vec2",
        "extractor_mode": "layer_norm" if pre_norm else "default",
        "conv_feature_layers": "[(16, 10, 5)] + [(16, 3, 2)] * 1 + [(16,2,2)]",
        "conv_bias": pre_norm,
        "encoder_layers": 2,
        "encoder_embed_dim": 32,
        "encoder_ffn_embed_dim": 48,
        "encoder_attention_heads": 2,
        "conv_pos": 8,
        "conv_pos_groups": 4,
        "layer_norm_first": pre_norm,
        "final_dim": 16,
        "latent_vars": 8,
        "latent_groups": 2,
    }


@pytest.mark.parametrize("pre_norm", [False, True], ids=["base", "large_lv60k"])
@pytest.mark.parametrize("style", ["cfg", "args"])
def test_fairseq1_checkpoint_matches_transformers(tmp_path, pre_norm, style):
    extra = dict(feat_extract_norm="layer" if pre_norm else "group", do_stable_layer_norm=pre_norm, conv_bias=pre_norm)
    torch.manual_seed(0)
    peer = perturb(transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**HF_TINY, **extra)))
    settings = fairseq1_model_settings(pre_norm)
    if style == "cfg":  # fairseq >= 0.10 stores a plain dict
        state = {"cfg": {"model": settings, "task": {"normalize": pre_norm, "sample_rate": 16000}}}
    else:  # older fairseq stores an argparse.Namespace, and numpy values in its training state
        state = {"args": argparse.Namespace(arch="wav2vec2", normalize=pre_norm, sample_rate=16000, **settings)}
        state["extra_state"] = {"val_loss": numpy.float64(3.25), "epoch_losses": numpy.array([4.0, 3.5])}
    state["model"] = hf_to_fairseq1(peer.state_dict())
    path = tmp_path / "checkpoint_best.pt"
    torch.save(state, path)
    assert detect_format(path) == "fairseq2"
    model = import_model(path)
    assert model.normalize_waveform == pre_norm
    audio, lengths = waveforms(2, 4000, seed=7), torch.tensor([4000, 4000])
    with torch.no_grad():
        ours = model(audio, lengths)
        if pre_norm:  # fairseq's task.normalize: zero mean, unit variance per utterance
            audio = (audio - audio.mean(1, keepdim=True)) / torch.sqrt(
                audio.var(1, unbiased=False, keepdim=True) + 1e-7
            )
        reference = peer(audio, output_hidden_states=True)
    assert_valid_close(ours.layers[0], reference.hidden_states[1], ours.lengths)
    assert_valid_close(ours.last, reference.last_hidden_state, ours.lengths)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["base", "large_lv60k"])
def test_fairseq1_fine_tuned_checkpoint_keeps_the_encoder(tmp_path, pre_norm):
    """A CTC fine-tuned fairseq1 file (w2v_encoder.*) goes through fairseq2's ASR converter."""
    extra = dict(feat_extract_norm="layer" if pre_norm else "group", do_stable_layer_norm=pre_norm, conv_bias=pre_norm)
    torch.manual_seed(0)
    peer = perturb(transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**HF_TINY, **extra, vocab_size=7)))
    encoder_weights = hf_to_fairseq1(
        {k[len("wav2vec2.") :]: v for k, v in peer.state_dict().items() if "lm_head" not in k}
    )
    weights = {
        f"w2v_encoder.w2v_model.{k}": v
        for k, v in encoder_weights.items()
        if not k.startswith(("quantizer", "project_q"))
    }
    weights["w2v_encoder.proj.weight"], weights["w2v_encoder.proj.bias"] = peer.lm_head.weight, peer.lm_head.bias
    settings = {"_name": "wav2vec_ctc", "w2v_args": {"model": fairseq1_model_settings(pre_norm), "task": {}}}
    path = tmp_path / "checkpoint_ctc.pt"
    torch.save({"cfg": {"model": settings, "task": {"normalize": False}}, "model": weights}, path)
    assert detect_format(path) == "fairseq2"
    model = import_model(path)
    audio, lengths = waveforms(2, 4000, seed=8), torch.tensor([4000, 4000])
    with torch.no_grad():
        ours = model(audio, lengths)
        reference = peer.wav2vec2(audio, output_hidden_states=True)
    assert_valid_close(ours.layers[0], reference.hidden_states[1], ours.lengths)
    assert_valid_close(ours.last, reference.last_hidden_state, ours.lengths)


def test_fairseq1_missing_keys_are_named(tmp_path):
    torch.manual_seed(0)
    peer = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**HF_TINY, feat_extract_norm="group"))
    weights = hf_to_fairseq1(peer.state_dict())
    del weights["encoder.layers.1.fc2.weight"]
    path = tmp_path / "broken.pt"
    torch.save({"cfg": {"model": fairseq1_model_settings(False), "task": {}}, "model": weights}, path)
    with pytest.raises(DataError, match=r"missing keys \(1\): encoder\.layers\.1\.ffn\.output_proj\.weight"):
        import_model(path)


def test_fairseq1_other_architecture_is_named(tmp_path):
    path = tmp_path / "hubert.pt"
    torch.save({"cfg": {"model": {"_name": "hubert"}, "task": {}}, "model": {"mask_emb": torch.zeros(4)}}, path)
    with pytest.raises(
        DataError, match="only fairseq1 wav2vec2 pretraining checkpoints are supported, this model is 'hubert'"
    ):
        import_model(path)


def test_conv_layers_are_parsed_not_evaluated():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(DataError, match="cannot parse"):
        parse_conv_layers("__import__('os').getcwd()")


def tiny_card(checkpoint: str, pre_norm: bool = False) -> dict:
    """A fairseq2 model card: a preset (model_arch) with the tiny sizes as model_config overrides."""
    encoder = StandardValueConverter().unstructure(tiny_config(pre_norm).encoder_config)
    overrides = {"encoder_config": {k: v for k, v in encoder.items() if k not in ("max_seq_len", "use_fbank")}}
    overrides.update(final_dim=16, quantized_dim=16, num_codebook_entries=8)
    arch = "large_lv60k" if pre_norm else "base"
    return {
        "name": "tiny",
        "model_family": "wav2vec2",
        "model_arch": arch,
        "model_config": overrides,
        "checkpoint": checkpoint,
    }


def test_model_card_with_fairseq2_and_fairseq1_weights(tmp_path):
    torch.manual_seed(0)
    peer = perturb(create_wav2vec2_model(tiny_config(False)))
    torch.save(peer.state_dict(), tmp_path / "fairseq2.pt")
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(tiny_card(f"file://{tmp_path / 'fairseq2.pt'}")))
    assert detect_format(tmp_path / "card.yaml") == "fairseq2"
    model = import_model(tmp_path / "card.yaml")
    audio, lengths = waveforms(1, 4000, seed=10), torch.tensor([4000])
    with torch.no_grad():
        ours = model(audio, lengths)
    last, _ = fairseq2_reference(peer, audio, lengths)
    assert_valid_close(ours.last, last, ours.lengths)

    hf = perturb(transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**HF_TINY, feat_extract_norm="group")))
    torch.save({"model": hf_to_fairseq1(hf.state_dict())}, tmp_path / "fairseq1.pt")
    (tmp_path / "card1.yaml").write_text(yaml.safe_dump(tiny_card("fairseq1.pt")))  # relative to the card
    with torch.no_grad():
        ours = import_model(tmp_path / "card1.yaml")(audio, lengths)
        expected = hf(audio).last_hidden_state
    assert_valid_close(ours.last, expected, ours.lengths)


def test_model_card_errors(tmp_path):
    card = tiny_card("https://example.org/w.pt")
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(DataError, match="not a local file"):
        import_model(tmp_path / "remote.yaml")
    card.update(model_arch="huge", checkpoint="w.pt")
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(DataError, match="unknown fairseq2 wav2vec2 model_arch 'huge'"):
        import_model(tmp_path / "arch.yaml")
