"""The SpeechT5 bundle: speech decoder incremental == teacher-forced, padding invariance, mel target vs librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from audiossl.data.text import CharTokenizer
from audiossl.encoders import create_encoder
from audiossl.models.speecht5 import SpeechT5Backbone, SpeechT5BackboneConfig, decoder_mel_inputs
from audiossl.models.speecht5.nets import LOG_FLOOR, MelTargetConfig, SpeechPrenetConfig
from audiossl.testing.configs import tiny_encoder_config

DIM = 32


def backbone(reduction: int = 2, seed: int = 0) -> SpeechT5Backbone:
    torch.manual_seed(seed)
    speech = SpeechPrenetConfig(
        hidden_dim=16, speaker_dim=8, reduction=reduction, postnet_channels=16, dropout_at_inference=False
    )
    config = SpeechT5BackboneConfig(decoder_layers=2, decoder_heads=4, speech=speech, num_speakers=3, dropout=0.1)
    model = SpeechT5Backbone(config, DIM, CharTokenizer(list("abc ")))
    with torch.no_grad():  # a non-trivial refiner and stop head
        for parameter in model.speech_postnet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.parametrize("reduction", [1, 2, 3])
def test_speech_steps_equal_teacher_forcing(reduction: int) -> None:
    model = backbone(reduction)
    memory, memory_lengths = torch.randn(2, 7, DIM), torch.tensor([7, 5])
    frames = 4 * reduction
    mels = torch.randn(2, frames, 80)
    speakers = torch.tensor([0, 2])
    full = model.decode_speech(mels, torch.tensor([frames, frames]), memory, memory_lengths, speakers)
    cache = model.decoder.init_cache(memory, memory_lengths)
    inputs = decoder_mel_inputs(mels, reduction)  # what teacher forcing reads at every step
    stepped, stops = [], []
    for step in range(inputs.shape[1]):
        out, stop, cache = model.speech_step(inputs[:, step], cache, speakers)
        stepped.append(out)
        stops.append(stop)
    torch.testing.assert_close(torch.cat(stepped, dim=1), full.before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(stops, dim=1), full.stop_logits, atol=1e-5, rtol=1e-5)


def test_decoder_mel_inputs_read_the_last_frame_of_the_previous_group() -> None:
    mels = torch.arange(7.0).view(1, 7, 1).expand(1, 7, 2)
    inputs = decoder_mel_inputs(mels, 3)  # groups [0 1 2] [3 4 5] [6 . .]
    assert inputs[0, :, 0].tolist() == [0.0, 2.0, 5.0]  # go frame (zeros), then frames 2 and 5


def test_speech_decoding_padded_batch_equals_each_item_alone() -> None:
    model = backbone(2)
    frame_lengths, memory_lengths = [9, 4, 6], [5, 8, 3]
    mels = torch.randn(3, 10, 80)
    memory = torch.randn(3, 8, DIM)
    for b, (f, s) in enumerate(zip(frame_lengths, memory_lengths, strict=True)):
        mels[b, f:] = 100.0
        memory[b, s:] = 100.0
    speakers = torch.tensor([1, 0, 2])
    batch = model.decode_speech(mels, torch.tensor(frame_lengths), memory, torch.tensor(memory_lengths), speakers)
    for b, (f, s) in enumerate(zip(frame_lengths, memory_lengths, strict=True)):
        alone = model.decode_speech(
            mels[b : b + 1, :f], torch.tensor([f]), memory[b : b + 1, :s], torch.tensor([s]), speakers[b : b + 1]
        )
        for name in ("before", "after", "stop_logits"):
            torch.testing.assert_close(getattr(batch, name)[b, :f], getattr(alone, name)[0, :f], atol=1e-5, rtol=1e-5)


def test_text_encoder_path_padded_batch_equals_each_item_alone() -> None:
    model = backbone()
    torch.manual_seed(1)
    encoder = create_encoder("speecht5", config=tiny_encoder_config("speecht5", "frame")).eval()
    tokens = torch.randint(5, 9, (2, 6))
    tokens[1, 3:] = 0
    batch = model.encode_text(encoder, tokens, torch.tensor([6, 3]))
    alone = model.encode_text(encoder, tokens[1:, :3], torch.tensor([3]))
    torch.testing.assert_close(batch.last[1, :3], alone.last[0], atol=1e-5, rtol=1e-5)
    assert torch.all(batch.last[1, 3:] == 0)


def test_mel_target_matches_librosa_and_is_padding_invariant() -> None:
    torch.manual_seed(2)
    model = backbone()
    waves = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 5000])
    waves[1, 5000:] = 0.0
    mels, frames = model.mel(waves, lengths)
    assert frames.tolist() == [50, 31]
    config = MelTargetConfig()
    for b in range(2):
        y = waves[b, : int(lengths[b])].double().numpy()
        reference = librosa.feature.melspectrogram(
            y=y,
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            power=1.0,
            norm="slaney",
            htk=False,
            center=True,
            pad_mode="constant",
        )
        reference = np.log(np.maximum(reference, LOG_FLOOR)).T[: int(frames[b])]
        np.testing.assert_allclose(mels[b, : int(frames[b])].numpy(), reference, atol=2e-3, rtol=1e-3)
    assert torch.all(mels[1, 31:] == 0)


def test_generation_stops_on_the_stop_logit() -> None:
    model = backbone(2)
    memory, memory_lengths = torch.randn(2, 5, DIM), torch.tensor([5, 3])
    with torch.no_grad():
        model.speech_postnet.stop.bias.fill_(100.0)
        model.speech_postnet.stop.weight.zero_()
    mels, lengths = model.generate_speech(memory, memory_lengths, max_frames=12)
    assert lengths.tolist() == [1, 1]
    _, lengths = model.generate_speech(memory, memory_lengths, max_frames=12, min_frames=3)
    assert lengths.tolist() == [4, 4]  # the first frame allowed to stop, in the second step's pair
    with torch.no_grad():
        model.speech_postnet.stop.bias.fill_(-100.0)
    mels, lengths = model.generate_speech(memory, memory_lengths, max_frames=12)
    assert lengths.tolist() == [12, 12] and mels.shape == (2, 12, 80)


def test_tokenizer_travels_in_the_state_dict_and_a_different_one_is_refused() -> None:
    from audiossl.errors import ConfigError

    state = backbone().state_dict()
    assert state["_extra_state"]["tokenizer"] == {"kind": "char", "symbols": list("abc ")}
    other = SpeechT5Backbone(backbone().config, DIM, CharTokenizer(list("abd ")))
    with pytest.raises(ConfigError, match="tokenizer differs"):
        other.load_state_dict(state)
