"""audiossl.load and Embedder: same result alone or batched, layers and pooling against a manual forward, bad input."""

from __future__ import annotations

import logging
import re
import sys
import types
import warnings

import numpy as np
import pytest
import soundfile
import torch

import audiossl
from audiossl.embed import Embedder, length_batches, load
from audiossl.embed import loading as loading_module
from audiossl.errors import AudioError, ConfigError, DataError
from audiossl.testing.configs import encoder_cases
from audiossl.train.checkpoint import load_checkpoint, save_checkpoint

RATE = 16000


def waveforms(seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(round(s * RATE), generator=generator) for s in seconds]


def manual(model, waveform: torch.Tensor):
    """The model run on one utterance alone, without the embedder: EncoderOutput without prefix tokens."""
    with torch.no_grad():
        return model(waveform.unsqueeze(0), torch.tensor([waveform.shape[0]])).without_prefix()


@pytest.mark.parametrize(("family", "kind"), encoder_cases())
def test_alone_equals_batched_for_every_encoder(family, kind, checkpoints):
    model = load(checkpoints[(family, kind)], device="cpu")
    embedder = Embedder(model, device="cpu", max_batch_seconds=1.2)
    audio = waveforms([0.25, 0.55, 0.3, 0.4])
    batched = embedder.embed(audio, sample_rate=RATE, layers="all")
    assert len(length_batches([w.shape[0] for w in audio], round(1.2 * RATE))) < len(audio)  # some really were padded
    for i, waveform in enumerate(audio):
        alone = embedder.embed([waveform], sample_rate=RATE, layers="all").features[0]
        assert batched.features[i].shape == alone.shape == (model.num_layers, int(batched.lengths[i]), model.dim)
        assert torch.allclose(batched.features[i], alone, atol=1e-5, rtol=0)


def test_layers_and_pooling_match_a_manual_forward(checkpoints):
    model = load(checkpoints[("ast", "patch")], device="cpu")  # AST: two cls tokens to strip
    assert model.encoder.num_prefix_tokens == 2
    embedder = Embedder(model, device="cpu", max_batch_seconds=100.0)
    audio = waveforms([0.9, 0.5, 0.7], seed=3)
    last = embedder.embed(audio, sample_rate=RATE)
    one = embedder.embed(audio, sample_rate=RATE, layers=-2)
    several = embedder.embed(audio, sample_rate=RATE, layers=[1, 0])
    mean = embedder.embed(audio, sample_rate=RATE, layers=0, pooling="mean")
    stats = embedder.embed(audio, sample_rate=RATE, layers="all", pooling="stats")
    assert several.layers == [1, 0] and one.layers == [0] and last.layers is None
    assert mean.features.shape == (3, model.dim) and stats.features.shape == (3, model.num_layers, 2 * model.dim)
    for i, waveform in enumerate(audio):
        reference = manual(model, waveform)
        frames = int(reference.lengths[0])
        assert last.lengths[i] == frames and last.features[i].shape == (frames, model.dim)
        torch.testing.assert_close(last.features[i], reference.last[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(one.features[i], reference.layers[0][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(several.features[i], torch.stack([reference.layers[1][0], reference.layers[0][0]]))
        layer0 = reference.layers[0][0].double().numpy()
        np.testing.assert_allclose(mean.features[i].numpy(), layer0.mean(axis=0), atol=1e-5)
        for layer in range(model.num_layers):
            hidden = reference.layers[layer][0].double().numpy()
            expected = np.concatenate([hidden.mean(axis=0), hidden.std(axis=0)])
            np.testing.assert_allclose(stats.features[i, layer].numpy(), expected, atol=1e-5)


def test_paths_and_arrays_and_rate_mismatch(ast_checkpoint, tmp_path, caplog):
    model = load(ast_checkpoint, device="cpu")
    audio = waveforms([0.6], seed=5)[0]
    path = tmp_path / "a.wav"
    soundfile.write(path, audio.numpy(), RATE, subtype="FLOAT")
    embedder = Embedder(model, device="cpu")
    from_tensor = embedder.embed(audio, sample_rate=RATE, pooling="mean").features
    from_path = embedder.embed(str(path), pooling="mean").features
    from_numpy = embedder.embed([audio.numpy()], sample_rate=RATE, pooling="mean").features
    torch.testing.assert_close(from_path, from_tensor)
    torch.testing.assert_close(from_numpy, from_tensor)
    with pytest.raises(ConfigError, match="sample_rate"):
        embedder.embed(audio)

    slow = audio[::2].clone()  # 8 kHz
    with caplog.at_level(logging.WARNING, logger="audiossl.embed.embedder"):
        resampled = embedder.embed(slow, sample_rate=8000)
    assert re.search(r"not at the model.s 16000 Hz \(e\.g\. input 0 at 8000 Hz\); resampling", caplog.text)
    assert "on_rate_mismatch='error'" in caplog.text
    assert resampled.features[0].shape[0] == embedder.embed(audio, sample_rate=RATE).features[0].shape[0]
    strict = Embedder(model, device="cpu", on_rate_mismatch="error")
    with pytest.raises(AudioError, match=r"8000 Hz.*on_rate_mismatch='resample'"):
        strict.embed(slow, sample_rate=8000)
    caplog.clear()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")  # the right rate warns about nothing
        strict.embed(audio, sample_rate=RATE)
    assert not caplog.records


def test_bad_layers_pooling_and_waveforms(ast_checkpoint):
    embedder = Embedder(load(ast_checkpoint, device="cpu"), device="cpu")
    audio = waveforms([0.5])
    with pytest.raises(ConfigError, match="layer 5 does not exist: the model has 2 layers"):
        embedder.embed(audio, sample_rate=RATE, layers=5)
    with pytest.raises(ConfigError, match="unknown pooling 'max'"):
        embedder.embed(audio, sample_rate=RATE, pooling="max")
    with pytest.raises(AudioError, match="NaN"):
        embedder.embed(torch.tensor([0.0, float("nan")] * 4000), sample_rate=RATE)
    with pytest.raises(AudioError, match="mono"):
        embedder.embed([torch.zeros(2, 8000)], sample_rate=RATE)


def test_bf16_autocast_stays_close(ast_checkpoint):
    model = load(ast_checkpoint, device="cpu")
    audio = waveforms([0.8, 0.4], seed=7)
    full = Embedder(model, device="cpu").embed(audio, sample_rate=RATE, pooling="mean").features
    half = Embedder(model, device="cpu", dtype=torch.bfloat16).embed(audio, sample_rate=RATE, pooling="mean")
    assert half.features.dtype == torch.float32  # returned as float32 whatever ran inside
    assert not torch.equal(half.features, full)  # bf16 really ran
    torch.testing.assert_close(half.features, full, atol=0.1, rtol=0.05)


def test_length_batches_pack_sorted_and_cover_every_index():
    lengths = [5, 30, 10, 10, 2, 31, 8]
    batches = length_batches(lengths, max_samples=40)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 40
    assert batches[0] == [5]  # longest first; 31 + 30 padded to 62 > 40
    assert length_batches([100], max_samples=10) == [[0]]  # too long alone still runs


def test_load_gives_properties_and_top_level_exports(ast_checkpoint):
    model = audiossl.load(ast_checkpoint, device="cpu")
    assert isinstance(audiossl.Embedder(model, device="cpu"), Embedder)
    assert not model.training and model.sample_rate == RATE and model.dim == 32 and model.num_layers == 2
    assert model.frame_rate == pytest.approx(50.0, abs=0.2)  # 10 ms fbank frames stacked by 2


def test_load_names_missing_keys_and_unknown_architectures(ast_checkpoint, tmp_path):
    state = load_checkpoint(ast_checkpoint)
    del state["model"]["encoder.norm.weight"]
    save_checkpoint(state, tmp_path / "missing.pt")
    with pytest.raises(DataError, match=r"encoder\.norm\.weight|norm\.weight"):
        load(tmp_path / "missing.pt", device="cpu")
    state = load_checkpoint(ast_checkpoint)
    state["encoder"]["family"] = "perceiver"
    save_checkpoint(state, tmp_path / "unknown.pt")
    with pytest.raises(DataError, match="unknown encoder architecture 'perceiver'; known: .*ast"):
        load(tmp_path / "unknown.pt", device="cpu")
    state = load_checkpoint(ast_checkpoint)
    del state["inputs"]
    save_checkpoint(state, tmp_path / "noinputs.pt")
    with pytest.raises(DataError, match=r"lacks the entries \['inputs'\]"):
        load(tmp_path / "noinputs.pt", device="cpu")


def test_foreign_checkpoints_go_to_interop_or_fail_clearly(tmp_path, monkeypatch):
    foreign = tmp_path / "model.bin"
    torch.save({"weight": torch.zeros(2)}, foreign)
    monkeypatch.setattr(loading_module, "_interop_available", lambda: False)
    with pytest.raises(DataError, match="not an audiossl checkpoint: expected a run dir"):
        load(foreign, device="cpu")
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "absent.pt", device="cpu")

    seen = []
    fake = types.ModuleType("audiossl.interop")
    fake.import_model = lambda path: seen.append(path) or torch.nn.Linear(2, 2)
    monkeypatch.setitem(sys.modules, "audiossl.interop", fake)
    monkeypatch.setattr(loading_module, "_interop_available", lambda: True)
    assert isinstance(load(foreign, device="cpu"), torch.nn.Linear)
    assert seen == [foreign]


def test_imported_torchaudio_checkpoint_loads_and_embeds(tmp_path):
    import torchaudio.models

    from audiossl.interop.torchaudio import save_torchaudio_checkpoint

    kwargs = dict(
        extractor_mode="layer_norm",
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
        encoder_layer_norm_first=True,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    torch.manual_seed(0)
    peer = torchaudio.models.wav2vec2_model(**kwargs).eval()
    save_torchaudio_checkpoint(tmp_path / "w2v.pt", peer.state_dict(), "wav2vec2_model", kwargs)
    model = load(tmp_path / "w2v.pt", device="cpu")  # not an audiossl checkpoint: imported
    embedder = Embedder(model, device="cpu")
    audio = waveforms([0.3, 0.2], seed=9)
    result = embedder.embed(audio, sample_rate=RATE, layers=1)
    for i, waveform in enumerate(audio):
        with torch.no_grad():
            reference, _ = peer.extract_features(waveform.unsqueeze(0))
        torch.testing.assert_close(result.features[i], reference[1][0], atol=1e-4, rtol=0)


def test_real_recordings_by_path(fsdd_recordings, ast_checkpoint, caplog):
    paths = sorted(fsdd_recordings.glob("*_jackson_*.wav"))[:3]  # 8 kHz: resampled to the model's 16 kHz
    embedder = Embedder(str(ast_checkpoint), device="cpu")
    with caplog.at_level(logging.WARNING, logger="audiossl.embed.embedder"):
        batched = embedder.embed(paths, pooling="stats")
    expected = r"3 input\(s\) are not at the model's 16000 Hz \(e\.g\. .*_jackson_.*\.wav at 8000 Hz"
    assert re.search(expected, caplog.text)
    assert batched.features.shape == (3, 64) and bool(torch.isfinite(batched.features).all())
    for i, path in enumerate(paths):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="audiossl.embed.embedder"):
            alone = embedder.embed(path, pooling="stats").features[0]
        assert str(path) in caplog.text
        torch.testing.assert_close(batched.features[i], alone, atol=1e-5, rtol=0)
        samples, rate = soundfile.read(path)
        fbank_frames = 1 + (2 * len(samples) - 400) // 160  # 25 ms / 10 ms Kaldi frames of the resampled audio
        assert rate == 8000 and int(batched.lengths[i]) == fbank_frames // 2  # tokens stack two frames
