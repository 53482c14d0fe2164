"""ImportedEncoder.forward, written once: normalisation, items alone when padding leaks, padding zeroed."""

from __future__ import annotations

import pytest
import torch

from audiossl.interop import ImportedEncoder
from audiossl.models import SpeechEncoder


class LeakyPeer(ImportedEncoder):
    """A peer whose output depends on the padded length (a mean over the whole input): frames of 4 samples."""

    sample_rate, dim, num_layers, frame_rate = 16, 2, 1, 4.0

    def __init__(self, *, padding_leaks: bool, normalize_waveform: bool = False):
        super().__init__()
        self.padding_leaks = padding_leaks
        self.normalize_waveform = normalize_waveform
        self.calls: list[int] = []

    def run(self, waveforms, lengths):
        self.calls.append(waveforms.shape[0])
        frames = waveforms.unfold(1, 4, 4)  # (B, S, 4)
        hidden = torch.stack([frames.mean(-1), frames.mean(-1) + waveforms.mean(1, keepdim=True)], dim=-1)  # (B, S, 2)
        return hidden, [hidden * 2], torch.div(lengths, 4, rounding_mode="floor")


def test_an_imported_encoder_is_a_speech_encoder_and_needs_only_run():
    assert issubclass(ImportedEncoder, SpeechEncoder)
    with pytest.raises(TypeError, match="run"):
        ImportedEncoder()  # abstract: a format must say how to run its peer


@pytest.mark.parametrize("normalize", [False, True])
def test_leaky_peers_run_items_alone_and_padding_is_zero(normalize):
    waveforms = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    waveforms[1, 8:] = 0.0
    lengths = torch.tensor([16, 8])
    model = LeakyPeer(padding_leaks=True, normalize_waveform=normalize)
    out = model(waveforms, lengths)
    assert model.calls == [1, 1] and out.lengths.tolist() == [4, 2]
    alone = model(waveforms[1:, :8], lengths[1:])
    torch.testing.assert_close(out.last[1, :2], alone.last[0])
    torch.testing.assert_close(out.layers[0][1, :2], alone.layers[0][0])
    assert torch.equal(out.last[1, 2:], torch.zeros(2, 2)) and bool(out.padding_mask[1, 2:].all())
    if normalize:
        assert float(out.last[0, :, 0].mean()) == pytest.approx(0.0, abs=1e-5)  # zero-mean input, per item


def test_exact_padding_off_runs_the_batch_once():
    model = LeakyPeer(padding_leaks=True)
    model.exact_padding = False
    model(torch.randn(2, 16), torch.tensor([16, 8]))
    assert model.calls == [2]
