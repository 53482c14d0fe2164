"""The pyannote embedding adapter: same numbers as audiossl.Embedder, masks, NaN rows, pyannote's wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audiossl_diarization.embedding import AudiosslSpeakerEmbedding, _LayerFrames, load_embedding

import audiossl
from audiossl.errors import ConfigError, DataError
from audiossl.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

RATE = 16000


@pytest.fixture(scope="module")
def waveforms() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(3, 1, 2 * RATE, generator=generator)  # (B, 1, T)


@pytest.mark.parametrize(("layer", "pooling"), [(None, "mean"), (0, "stats")])
def test_masked_chunks_equal_the_embedder(checkpoint, waveforms, layer, pooling):
    adapter = load_embedding(checkpoint, layer=layer, pooling=pooling)
    embedder = audiossl.Embedder(checkpoint, device="cpu")
    frames = 100  # segmentation frames per 2 s chunk: each covers exactly 320 samples
    masks = torch.zeros(3, frames)
    masks[0, :50] = 1.0  # first second
    masks[1, 20:40] = 1.0  # samples 6400..12800
    masks[1, 70:] = 1.0  # and 22400..32000, joined
    masks[2, :1] = 1.0  # 320 samples: fewer than the encoder needs
    out = adapter(waveforms, weights=masks)  # (3, D)
    signal = waveforms[:, 0]
    gathered = [signal[0, :16000], torch.cat([signal[1, 6400:12800], signal[1, 22400:]])]
    expected = embedder.embed(gathered, sample_rate=RATE, layers=layer, pooling=pooling).features  # (2, D)
    assert out.shape == (3, adapter.dimension) == (3, expected.shape[1])
    torch.testing.assert_close(out[:2], expected, atol=1e-5, rtol=1e-5)
    assert 320 < adapter.min_num_samples and torch.isnan(out[2]).all()
    # no mask: the whole chunk; and a row alone equals the row in the batch
    whole = adapter(waveforms)
    torch.testing.assert_close(
        whole,
        embedder.embed(list(signal), sample_rate=RATE, layers=layer, pooling=pooling).features,
        atol=1e-5,
        rtol=1e-5,
    )
    torch.testing.assert_close(adapter(waveforms[1:2], weights=masks[1:2])[0], out[1], atol=1e-5, rtol=1e-5)


def test_min_num_samples_is_the_first_length_with_a_frame(checkpoint):
    adapter = load_embedding(checkpoint)
    model = audiossl.load(checkpoint, device="cpu")
    n = adapter.min_num_samples
    for count, frames in ((n, 1), (n - 1, 0)):
        try:
            got = int(model(torch.randn(1, count), torch.tensor([count])).without_prefix().lengths[0])
        except Exception:
            got = 0
        assert (got >= 1) == (frames == 1)
    with pytest.raises(ValueError, match="too few"):
        adapter(torch.randn(1, 1, n - 1))


def test_pyannote_wrappers_accept_it(checkpoint, waveforms):
    from pyannote.audio import Inference
    from pyannote.audio.pipelines.speaker_verification import PretrainedSpeakerEmbedding

    adapter = load_embedding(checkpoint, layer=-1)
    wrapper = PretrainedSpeakerEmbedding(adapter)  # what SpeakerDiarization(embedding=adapter) builds
    assert (wrapper.sample_rate, wrapper.dimension, wrapper.metric) == (RATE, adapter.dimension, "cosine")
    assert wrapper.min_num_samples == adapter.min_num_samples  # pyannote's own search finds our limit
    masks = torch.ones(3, 50)
    masks[0, 25:] = 0.0
    np.testing.assert_allclose(wrapper(waveforms, masks=masks), adapter(waveforms, weights=masks).numpy(), atol=1e-6)
    file = {"waveform": waveforms[0], "sample_rate": RATE}
    whole = Inference(adapter, window="whole")(file)
    np.testing.assert_allclose(whole, adapter(waveforms[:1])[0].numpy(), atol=1e-5)
    sliding = Inference(adapter, window="sliding", duration=1.0, step=0.5)(file)
    assert sliding.data.shape == (3, adapter.dimension)  # chunks at 0, 0.5 and 1 s
    np.testing.assert_allclose(sliding.data[2], adapter(waveforms[:1, :, RATE:])[0].numpy(), atol=1e-5)


def test_head_and_center(checkpoint, waveforms):
    class MeanHead(torch.nn.Module):
        """A stand-in speaker head: a fixed projection of the mean frame (the sv head has this interface)."""

        def __init__(self, dim: int):
            super().__init__()
            self.proj = torch.nn.Linear(dim, 4)

        def embed(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            valid = (torch.arange(hidden.shape[1]) < lengths[:, None]).unsqueeze(-1)
            return self.proj((hidden * valid).sum(1) / lengths[:, None])

    model = audiossl.load(checkpoint, device="cpu")
    head = MeanHead(model.dim)
    adapter = AudiosslSpeakerEmbedding(_LayerFrames(model, None), RATE, head=head)
    plain = load_embedding(checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(adapter(waveforms), head.proj(plain(waveforms)), atol=1e-5, rtol=1e-5)
    center = np.arange(plain.dimension, dtype=np.float32)
    centered = load_embedding(checkpoint, center=center)
    torch.testing.assert_close(centered(waveforms), plain(waveforms) - torch.from_numpy(center))
    with pytest.raises(ConfigError, match="center has 3 values"):
        load_embedding(checkpoint, center=np.zeros(3))


def test_bad_inputs(checkpoint, tmp_path):
    state = load_checkpoint(latest_checkpoint(checkpoint))
    state["encoder"]["family"] = "perceiver"
    save_checkpoint(state, tmp_path / "unknown.pt")
    with pytest.raises(DataError, match="unknown encoder architecture 'perceiver'"):
        load_embedding(tmp_path / "unknown.pt")
    with pytest.raises(ConfigError, match="layer 5 does not exist"):
        load_embedding(checkpoint, layer=5)
    with pytest.raises(ConfigError, match="exactly one"):
        load_embedding(checkpoint, sv_run=tmp_path)
    with pytest.raises(ConfigError, match="pooling"):
        load_embedding(checkpoint, pooling="max")


def test_sv_run_gives_the_sv_plugins_embeddings(source_dir, checkpoint, tmp_path):
    sv_task = pytest.importorskip("audiossl_sv.task", reason="the sv plugin (plugins/sv) is not installed")
    from audiossl_sv.evaluation import embed_data_dir

    from audiossl.data.kaldi import DataDir
    from audiossl.data.wav_scp import load_utterance
    from audiossl.downstream.trainer import DownstreamConfig, load_downstream, train_downstream

    task = sv_task.SVTask(hidden_dim=16, attention_dim=8, embedding_dim=8, margin_warmup_steps=2, top_n=3)
    config = DownstreamConfig(max_steps=2, device="cpu", batch_seconds=8.0, max_utt_seconds=1.0, log_every=1)
    train_downstream(task, str(checkpoint), source_dir, tmp_path / "sv", config)
    adapter = load_embedding(sv_run=tmp_path / "sv")
    trained = load_downstream(tmp_path / "sv", device="cpu")
    data = DataDir.load(source_dir)
    expected = embed_data_dir(trained.upstream, data, head=trained.head)
    assert adapter.dimension == 8
    for utt in data.utterance_ids[:3]:
        waveform, _ = load_utterance(data, utt)
        got = adapter(waveform[None, None])[0].numpy()
        np.testing.assert_allclose(got, expected[utt], atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="layer can only be chosen"):
        load_embedding(sv_run=tmp_path / "sv", layer=0)
