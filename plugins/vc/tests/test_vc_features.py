"""Layer specs, time-major patch frames, the feature hop, and target pools."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from audiossl.encoders import EncoderOutput
from audiossl.errors import ConfigError, DataError
from audiossl.train import load_pretrained
from audiossl_vc.features import LayerSelector, LayerSpec, encode_layers, feature_dim, frame_hop, time_major_layers
from audiossl_vc.pool import build_pool, speech_seconds, target_source


def test_layer_spec_parsing():
    assert LayerSpec.parse("1", 4) == LayerSpec((1,), "single")
    assert LayerSpec.parse(-1, 4) == LayerSpec((3,), "single")
    assert LayerSpec.parse("0, 2", 4) == LayerSpec((0, 2), "mean")
    assert LayerSpec.parse("mix", 3) == LayerSpec((0, 1, 2), "mix")
    assert str(LayerSpec.parse("mix", 3)) == "mix" and str(LayerSpec.parse("0,2", 4)) == "0,2"
    with pytest.raises(ConfigError, match="out of range"):
        LayerSpec.parse("4", 4)
    with pytest.raises(ConfigError, match="index"):
        LayerSpec.parse("last", 4)


def test_selector_mean_and_learned_mix():
    stacked = torch.randn(2, 1, 5, 3)  # (K, B, N, D)
    torch.testing.assert_close(LayerSelector(LayerSpec((0, 1), "mean"))(stacked), (stacked[0] + stacked[1]) / 2)
    mix = LayerSelector(LayerSpec((0, 1), "mix"))
    assert [p.shape for p in mix.parameters()] == [torch.Size([2])]
    assert not list(LayerSelector(LayerSpec((1,), "single")).parameters())


def test_patch_tokens_become_concatenated_time_steps():
    batch, time_steps, freq, dim = 2, 3, 4, 5
    layer = torch.randn(batch, time_steps * freq, dim)  # time-major tokens s = t * Fp + f
    output = EncoderOutput(
        last=layer, layers=[layer], lengths=torch.tensor([12, 8]), padding_mask=torch.zeros(batch, 12, dtype=torch.bool)
    )
    frames, lengths = time_major_layers(output, freq)
    assert frames[0].shape == (batch, time_steps, freq * dim) and lengths.tolist() == [3, 2]
    for t in range(time_steps):
        expected = torch.cat([layer[:, t * freq + f] for f in range(freq)], dim=-1)  # loop reference
        torch.testing.assert_close(frames[0][:, t], expected)


def test_hop_times_frames_covers_the_waveform(vc_checkpoint):
    model = load_pretrained(vc_checkpoint)
    hop = frame_hop(model)
    assert hop == 320  # 10 ms fbank frames stacked in pairs at 16 kHz
    waves = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9000])
    stacked, frames = encode_layers(model, waves, lengths, (0, 1))
    assert stacked.shape[0] == 2 and stacked.shape[-1] == feature_dim(model) == 32
    for samples, count in zip(lengths.tolist(), frames.tolist(), strict=True):
        assert 0 <= samples - count * hop < 2 * hop
    alone, _ = encode_layers(model, waves[1:, :9000], lengths[1:], (0, 1))
    torch.testing.assert_close(stacked[:, 1, : int(frames[1])], alone[:, 0], rtol=1e-4, atol=1e-4)
    assert stacked[:, 1, int(frames[1]) :].abs().sum() == 0


def test_speech_seconds_ignores_silence():
    rate = 8000
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)
    wave = torch.tensor(np.concatenate([np.zeros(rate), tone, np.zeros(2 * rate)]), dtype=torch.float32)
    assert speech_seconds(wave, rate) == pytest.approx(1.0, abs=0.1)
    assert speech_seconds(torch.zeros(rate), rate) == 0.0


def test_target_sources(vc_corpus, tmp_path):
    by_dir = target_source(vc_corpus / "wav")
    assert len(by_dir.items) == 8
    files = sorted((vc_corpus / "wav").glob("spk01-*.wav"))
    assert len(target_source(files, exclude=[str(files[0])]).items) == 3
    by_speaker = target_source(vc_corpus, speaker="spk02")
    assert [u for u, _ in by_speaker.items] == [f"spk02-000{i}" for i in range(1, 5)]
    with pytest.raises(DataError, match="needs a speaker"):
        target_source(vc_corpus)
    with pytest.raises(DataError, match="no utterance of speaker"):
        target_source(vc_corpus, speaker="nobody")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        target_source(tmp_path / "empty")


def test_pool_frames_and_too_little_speech(vc_checkpoint, vc_corpus, tmp_path):
    model = load_pretrained(vc_checkpoint)
    spec = LayerSpec.parse("-1", model.encoder.num_layers)
    source = target_source(vc_corpus, speaker="spk01")
    pool = build_pool(model, spec, source, min_seconds=1.0)
    expected = 0
    for index in range(len(source.items)):
        samples = source.load(index, model.sample_rate).shape[0]
        expected += ((samples - 400) // 160 + 1) // 2  # Kaldi fbank frames (25 ms / 10 ms), stacked in pairs
    assert pool.features.shape == (expected, 32)
    assert 0 < pool.speech_seconds <= pool.total_seconds
    with pytest.raises(DataError, match="too little target speech") as error:
        build_pool(model, spec, source, min_seconds=1000.0)
    assert str(vc_corpus / "utt2spk") in str(error.value)
    quiet = tmp_path / "quiet.wav"
    soundfile.write(quiet, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=r"0\.0 s of speech") as error:
        build_pool(model, spec, target_source(quiet), min_seconds=0.5)
    assert str(quiet) in str(error.value)
