"""Hugging Face AST directories import with transformers' ASTFeatureExtractor + ASTModel outputs."""

from __future__ import annotations

import pytest
import soundfile
import torch
import torchaudio
import transformers
from interop_helpers import assert_batch_equals_alone, assert_valid_close, perturb, waveforms

from audiossl.interop import import_model

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    max_length=128,
    num_mel_bins=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def save_peer(directory, *, classifier: bool = False, max_length: int = 128):
    config = transformers.ASTConfig(**dict(TINY, max_length=max_length), num_labels=3)
    torch.manual_seed(0)
    peer = perturb(transformers.ASTForAudioClassification(config) if classifier else transformers.ASTModel(config))
    peer.save_pretrained(directory)
    transformers.ASTFeatureExtractor(max_length=max_length, mean=-5.0, std=3.0).save_pretrained(directory)
    return peer.audio_spectrogram_transformer if classifier else peer


def reference(peer, directory, audio: list[torch.Tensor]):
    extractor = transformers.ASTFeatureExtractor.from_pretrained(directory, local_files_only=True)
    inputs = extractor([a.numpy() for a in audio], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return peer(**inputs, output_hidden_states=True)


@pytest.mark.parametrize("classifier", [False, True], ids=["ASTModel", "ASTForAudioClassification"])
def test_same_hidden_states_as_transformers(tmp_path, classifier):
    peer = save_peer(tmp_path, classifier=classifier)
    model = import_model(tmp_path)
    assert (model.dim, model.num_layers, model.sample_rate, model.num_prefix_tokens) == (32, 2, 16000, 2)
    assert model.grid == (12, 12) and model.frame_rate == 10.0
    audio = [0.3 * a for a in waveforms(2, 16000)]  # 1 s: 98 fbank frames, padded to 128 by the extractor
    with torch.no_grad():
        ours = model(torch.stack(audio), torch.tensor([16000, 16000]))
    expected = reference(peer, tmp_path, audio)
    assert ours.lengths.tolist() == [2 + 12 * 12] * 2
    assert_valid_close(ours.last, expected.last_hidden_state, ours.lengths)
    assert len(ours.layers) == 2
    assert_valid_close(ours.layers[0], expected.hidden_states[1], ours.lengths)
    # transformers' last hidden state has the final layernorm; ours is the raw output of the last block.
    assert_valid_close(peer.layernorm(ours.layers[1]), expected.hidden_states[2], ours.lengths)


def test_padded_batch_and_truncation(tmp_path):
    """Each item's fbank is computed on its own samples; audio past max_length frames is cut as transformers does."""
    peer = save_peer(tmp_path, max_length=64)
    model = import_model(tmp_path)
    lengths = torch.tensor([16000, 9000, 5000])  # 1 s is past 64 frames (0.64 s): cut
    batch = 0.3 * waveforms(3, 16000, seed=1)
    together = assert_batch_equals_alone(model, batch, lengths)
    expected = reference(peer, tmp_path, [batch[b, :n] for b, n in enumerate(lengths.tolist())])
    assert_valid_close(together.last, expected.last_hidden_state, together.lengths)


def test_real_recordings_match_transformers(tmp_path, fsdd_recordings):
    """Real speech (FSDD, 8 kHz resampled to 16 kHz) through a full-size grid (1024 frames)."""
    peer = save_peer(tmp_path, max_length=1024)
    model = import_model(tmp_path)
    files = sorted(fsdd_recordings.glob("*.wav"))[:2]
    audio = []
    for file in files:
        samples, rate = soundfile.read(file, dtype="float32")
        audio.append(torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000))
    lengths = torch.tensor([len(a) for a in audio])
    batch = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    with torch.no_grad():
        ours = model(batch, lengths)
    expected = reference(peer, tmp_path, audio)
    assert ours.last.shape == (2, 2 + 12 * 101, 32)
    assert_valid_close(ours.last, expected.last_hidden_state, ours.lengths)
    assert_valid_close(ours.layers[0], expected.hidden_states[1], ours.lengths)
