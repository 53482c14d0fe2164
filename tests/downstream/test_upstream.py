"""Upstream modes and specs: frozen encoders get no gradient, the layer mix does; fine-tuning after freeze_steps."""

from __future__ import annotations

import pytest
import torch

from audiossl.downstream import FbankBaseline, load_upstream, mean_pool
from audiossl.errors import ConfigError, DataError
from audiossl.train import load_pretrained


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 9000])
    waveforms = 0.1 * torch.randn(2, 16000, generator=generator)  # (B, T)
    waveforms[1, 9000:] = 0.0
    return waveforms, lengths


def _encoder_grads(upstream) -> list[torch.Tensor | None]:
    return [p.grad for p in upstream.encoder.parameters()]


def test_frozen_encoder_gets_no_gradient_but_layer_weights_do(pretrained):
    upstream = load_upstream(str(pretrained), "frozen")
    upstream.train()
    assert not upstream.encoder.training, "a frozen encoder stays in eval mode"
    assert upstream.encoder_parameters() == []
    hidden, lengths = upstream(*_batch())
    # A fixed random direction, not hidden.square().mean(): the layer mix layer-normalises each layer,
    # so at equal weights the squared norm is the same for every layer and its gradient vanishes.
    direction = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(1))
    (hidden * direction).sum().backward()
    assert all(grad is None for grad in _encoder_grads(upstream))
    assert upstream.featurizer.logits.grad is not None and bool(upstream.featurizer.logits.grad.abs().sum() > 0)
    assert upstream.num_layers == 2 and upstream.dim == 32 and hidden.shape[-1] == 32


def test_output_drops_cls_tokens_and_ignores_padding(pretrained):
    upstream = load_upstream(str(pretrained), "frozen").eval()
    waveforms, lengths = _batch()
    padded = waveforms.clone()
    padded[1, 9000:] = 5.0  # garbage past the length must not matter
    with torch.no_grad():
        hidden, out_lengths = upstream(padded, lengths)
        alone, alone_lengths = upstream(waveforms[1:, :9000], lengths[1:])
    model = load_pretrained(pretrained)
    tokens = model.encoder.token_lengths(model.inputs.output_lengths(lengths))  # input tokens, no cls
    assert model.encoder.num_prefix_tokens == 2
    assert out_lengths.tolist() == tokens.tolist()
    assert int(alone_lengths[0]) == int(out_lengths[1])
    torch.testing.assert_close(hidden[1, : int(out_lengths[1])], alone[0], rtol=1e-4, atol=1e-4)
    assert upstream.frame_rate == pytest.approx(50.0, abs=0.2)  # 10 ms fbank frames, stacked in pairs


def test_finetune_freezes_the_encoder_for_freeze_steps_then_trains_it(pretrained):
    upstream = load_upstream(str(pretrained), "finetune", freeze_steps=3)
    upstream.train()
    upstream.set_step(2)
    assert upstream.encoder_frozen and not upstream.encoder.training
    hidden, _ = upstream(*_batch())
    hidden.square().mean().backward()
    assert all(grad is None for grad in _encoder_grads(upstream))
    assert upstream.featurizer.logits.grad is not None
    upstream.set_step(3)
    assert not upstream.encoder_frozen and upstream.encoder.training
    hidden, _ = upstream(*_batch())
    hidden.square().mean().backward()
    grads = [grad for grad in _encoder_grads(upstream) if grad is not None]
    assert grads and any(bool(grad.abs().sum() > 0) for grad in grads)
    assert len(upstream.encoder_parameters()) == len(list(upstream.encoder.parameters()))


def test_random_spec_keeps_architecture_but_not_weights(pretrained):
    trained = load_upstream(str(pretrained))
    random = load_upstream(f"random:{pretrained}", seed=1)
    assert random.spec.startswith("random:") and (random.dim, random.num_layers) == (trained.dim, trained.num_layers)
    pairs = zip(trained.encoder.encoder.parameters(), random.encoder.encoder.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    # The input pipeline (statistics included) is the trained one.
    assert trained.encoder.inputs.state_dict().keys() == random.encoder.inputs.state_dict().keys()


def test_fbank_baseline_is_normalised_kaldi_fbank():
    import torchaudio

    upstream = load_upstream("fbank")
    assert (upstream.dim, upstream.num_layers, upstream.sample_rate, upstream.featurizer) == (80, 1, 16000, None)
    assert upstream.frame_rate == pytest.approx(100.0)
    waveforms, lengths = _batch()
    with torch.no_grad():
        hidden, out_lengths = upstream(waveforms, lengths)
    # Reference: torchaudio's Kaldi fbank of the second item alone (int16 scale), then mean/variance per bin.
    reference = torchaudio.compliance.kaldi.fbank(
        waveforms[1:, :9000] * 32768, num_mel_bins=80, sample_frequency=16000, dither=0.0
    )  # (F, 80)
    reference = (reference - reference.mean(0)) / reference.std(0, unbiased=False)
    assert int(out_lengths[1]) == reference.shape[0]
    torch.testing.assert_close(hidden[1, : reference.shape[0]], reference, rtol=1e-3, atol=2e-3)
    assert FbankBaseline(8000).dim == 80 and load_upstream("fbank:8000").dim == 64
    # Utterance CMVN leaves nothing for mean pooling: every bin's mean over valid frames is zero.
    pooled = mean_pool(hidden, out_lengths)
    torch.testing.assert_close(pooled, torch.zeros_like(pooled), rtol=0, atol=1e-4)


def test_fbank_raw_keeps_the_log_energies():
    import torchaudio

    upstream = load_upstream("fbank-raw:8000:40")
    assert (upstream.dim, upstream.sample_rate) == (40, 8000)
    waveforms, lengths = _batch()
    with torch.no_grad():
        hidden, out_lengths = upstream(waveforms[:, :8000], torch.tensor([8000, 4000]))
    reference = torchaudio.compliance.kaldi.fbank(
        waveforms[1:, :4000], num_mel_bins=40, sample_frequency=8000, dither=0.0
    )  # (F, 40), of waveforms in [-1, 1] as ours (not int16-scaled)
    assert int(out_lengths[1]) == reference.shape[0]
    torch.testing.assert_close(hidden[1, : reference.shape[0]], reference, rtol=1e-3, atol=2e-3)


def test_bad_specs_are_user_errors(tmp_path):
    with pytest.raises(DataError, match="upstream not found"):
        load_upstream(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="fbank"):
        load_upstream("fbank:fast")
    with pytest.raises(ConfigError, match="mode"):
        load_upstream("fbank", mode="thawed")
