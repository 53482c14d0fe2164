"""Cluster-aware iteration: loss-gate, label correction, pseudo-speaker clustering, the gated AAM head,
embedding extraction, and the pseudo-label table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from audiossl.cluster.speakers import (
    ClusterConfig,
    PseudoSpeakerHead,
    cluster_speakers,
    correct_labels,
    extract_embeddings,
    label_pseudo_speakers,
    loss_gate,
    read_pseudo_labels,
    write_pseudo_labels,
)
from audiossl.data.kaldi import DataDir
from audiossl.encoders.base import EncoderOutput
from audiossl.errors import ConfigError, DataError


def test_loss_gate_keeps_the_low_loss_component_of_a_mixture():
    rng = np.random.default_rng(0)
    clean = rng.normal(1.0, 0.3, 700)  # correctly labelled: low loss
    noisy = rng.normal(4.0, 0.8, 300)  # wrong pseudo-labels: high loss
    losses = torch.from_numpy(np.concatenate([clean, noisy]))
    truth = torch.cat([torch.ones(700, dtype=torch.bool), torch.zeros(300, dtype=torch.bool)])
    threshold, reliable = loss_gate(losses)
    assert float((reliable == truth).float().mean()) > 0.98
    assert 1.9 < threshold < 3.0  # between the components, where their weighted densities cross
    assert torch.equal(reliable, losses <= threshold)  # monotone in the loss


def test_loss_gate_of_constant_losses_keeps_everything():
    threshold, reliable = loss_gate(torch.full((10,), 2.0))
    assert math.isinf(threshold) and bool(reliable.all())


def test_label_correction_changes_only_unreliable_confident_samples():
    labels = torch.tensor([0, 1, 2, 0, 1])
    probabilities = torch.tensor(
        [
            [0.05, 0.95, 0.00],  # reliable and confident: kept
            [0.97, 0.02, 0.01],  # unreliable and confident: corrected to 0
            [0.50, 0.30, 0.20],  # unreliable, not confident: kept
            [0.01, 0.01, 0.98],  # unreliable, confident: corrected to 2
            [0.00, 0.99, 0.01],  # unreliable, confident, already right: unchanged
        ]
    )
    unreliable = torch.tensor([False, True, True, True, True])
    new, changed = correct_labels(labels, probabilities, unreliable, threshold=0.9)
    assert new.tolist() == [0, 0, 2, 2, 1]
    assert changed.tolist() == [False, True, False, True, False]


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_clustering_recovers_separable_speakers(method):
    generator = torch.Generator().manual_seed(0)
    centres = torch.linalg.qr(torch.randn(16, 5, generator=generator))[0].T * 3  # 5 orthogonal directions
    truth = torch.arange(5).repeat_interleave(20)
    scale = torch.rand(100, 1, generator=generator) + 0.5  # cosine clustering ignores the norm
    points = (centres[truth] + 0.3 * torch.randn(100, 16, generator=generator)) * scale
    labels = cluster_speakers(points, 5, method=method, seed=0)
    assert adjusted_rand_score(truth.numpy(), labels.numpy()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="num_speakers"):
        cluster_speakers(points, 101)


def test_pseudo_label_table_round_trip_and_errors(tmp_path):
    write_pseudo_labels(tmp_path / "utt2pseudo", ["b", "a"], torch.tensor([3, 1]))
    assert (tmp_path / "utt2pseudo").read_text() == "a 1\nb 3\n"
    assert read_pseudo_labels(tmp_path / "utt2pseudo") == {"a": 1, "b": 3}
    (tmp_path / "bad").write_text("a 1\nb x\n")
    with pytest.raises(DataError, match="not an integer") as error:
        read_pseudo_labels(tmp_path / "bad")
    assert error.value.line == 2


def head(gate: float | None = None, threshold: float = 0.9) -> PseudoSpeakerHead:
    torch.manual_seed(0)
    config = ClusterConfig(labels="unused", margin=0.2, scale=10.0, correction_threshold=threshold)
    module = PseudoSpeakerHead(config, 4, {"u0": 0, "u1": 1, "u2": 2, "u3": 0})
    if gate is not None:
        module.gate.fill_(gate)
    return module


def reference_loss(module: PseudoSpeakerHead, embedding: torch.Tensor, label: int) -> torch.Tensor:
    """AAM-softmax of one embedding (D,), written out with angles."""
    cosines = F.normalize(embedding, dim=0) @ F.normalize(module.weight.detach(), dim=1).T  # (C,)
    logits = cosines.clone()
    logits[label] = math.cos(math.acos(float(cosines[label])) + module.config.margin)
    logits = logits * module.config.scale
    return -logits.log_softmax(0)[label]


def test_gated_head_matches_a_loop_and_keeps_its_state():
    module = head()
    embeddings = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))  # 2 views of 3 utterances
    rows = module.rows(["u2", "u0", "u3"])
    assert rows.tolist() == [2, 0, 3]
    total, metrics = module(embeddings, rows)
    per_sample = [
        torch.stack([reference_loss(module, embeddings[v, b], int(module.labels[rows[b]])) for v in range(2)]).mean()
        for b in range(3)
    ]
    torch.testing.assert_close(total, torch.stack(per_sample).mean(), rtol=1e-5, atol=1e-5)  # no gate yet
    torch.testing.assert_close(module.losses[rows], torch.stack(per_sample).detach(), rtol=1e-5, atol=1e-5)
    assert module.seen.tolist() == [True, False, True, True]
    assert float(metrics["kept_fraction"]) == 1.0
    with pytest.raises(DataError, match="no pseudo-label"):
        module.rows(["u9"])
    assert module.rows(["u9"], strict=False).tolist() == [-1]


@pytest.mark.parametrize("persist", [False, True])
def test_gate_leaves_out_high_losses_and_correction_relabels_confident_ones(persist):
    module = head()
    module.config.persist_corrections = persist
    embeddings = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(2))
    rows = module.rows(["u0", "u1", "u2", "u3"])
    labels = module.labels.clone()
    with torch.no_grad():
        losses = torch.stack([reference_loss(module, embeddings[0, b], int(labels[b])) for b in range(4)])
    order = losses.argsort()
    module.gate.fill_(float(losses[order[1]]))  # two samples pass the gate
    module.config.correction_threshold = 1.0  # no correction possible
    total, metrics = module(embeddings, rows)
    torch.testing.assert_close(total, losses[order[:2]].mean(), rtol=1e-5, atol=1e-5)
    assert float(metrics["kept_fraction"]) == 0.5
    torch.testing.assert_close(module.losses, losses)  # the gate's data: losses against the clustered labels
    # With correction, gated-out samples whose top class is confident enough train with that class.
    module.config.correction_threshold = 0.3
    probabilities = (module.cosines(embeddings[0]) * module.config.scale).softmax(-1).detach()
    confident, predicted = probabilities.max(-1)
    gated_out = torch.zeros(4, dtype=torch.bool)
    gated_out[order[2:]] = True
    rescued = gated_out & (confident > 0.3)
    targets = torch.where(rescued, predicted, labels)
    kept = [b for b in range(4) if rescued[b] or not gated_out[b]]
    with torch.no_grad():
        expected = torch.stack([reference_loss(module, embeddings[0, b], int(targets[b])) for b in kept]).mean()
    total, _ = module(embeddings, rows)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)
    assert bool(rescued.any()) and not bool(rescued.all())
    assert torch.equal(module.labels, targets if persist else labels)  # written back only when asked


def test_refit_gate_uses_the_seen_losses():
    module = head()
    module.losses.copy_(torch.tensor([0.1, 0.2, 5.0, 0.15]))
    module.seen.copy_(torch.tensor([True, True, True, True]))
    threshold = module.refit_gate()
    assert threshold == pytest.approx(loss_gate(module.losses)[0])
    assert float(module.gate) == pytest.approx(threshold) and threshold < 5.0
    assert not bool(module.seen.any())  # the next fit uses the next window's losses only
    assert module.refit_gate() == threshold  # nothing seen since: the gate stays


# ----------------------------------------------------------------------------- embeddings from a model


class MeanOfSamples(torch.nn.Module):
    """A stand-in encoder: token t of an utterance = (sample_2t, sample_2t+1, 1); prefix-free."""

    sample_rate = 8000

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        tokens = waveforms[:, : waveforms.shape[1] // 2 * 2].reshape(len(waveforms), -1, 2)  # (B, S, 2)
        tokens = torch.cat([tokens, torch.ones_like(tokens[..., :1])], dim=-1)  # (B, S, 3)
        token_lengths = lengths // 2
        padding = torch.arange(tokens.shape[1]).unsqueeze(0) >= token_lengths.unsqueeze(1)
        tokens = tokens.masked_fill(padding.unsqueeze(-1), 50.0)  # leaks would show
        return EncoderOutput(last=tokens, layers=[tokens], lengths=token_lengths, padding_mask=padding)


def write_dir(root, durations: list[float]) -> DataDir:
    rng = np.random.default_rng(0)
    data = DataDir()
    for i, seconds in enumerate(durations):
        utt = f"s{i % 2}-u{i}"
        path = root / f"{utt}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)
        data.wav_scp[utt], data.utt2spk[utt] = str(path), f"s{i % 2}"
    data.save(root / "data")
    return data


def test_extract_embeddings_means_valid_tokens_of_each_utterance(tmp_path):
    write_dir(tmp_path, [0.1, 0.3, 0.2, 0.05])
    ids, embeddings = extract_embeddings(MeanOfSamples(), tmp_path / "data", batch_seconds=0.5)
    assert ids == sorted(ids) and embeddings.shape == (4, 3)
    for utt, row in zip(ids, embeddings, strict=True):
        wave, _ = soundfile.read(tmp_path / f"{utt}.wav", dtype="float32")
        pairs = torch.from_numpy(wave[: len(wave) // 2 * 2]).view(-1, 2)
        torch.testing.assert_close(row[:2], pairs.mean(0), rtol=1e-5, atol=1e-6)
        assert float(row[2]) == pytest.approx(1.0)


def test_label_pseudo_speakers_writes_table_and_report(tmp_path):
    write_dir(tmp_path, [0.1, 0.3, 0.2, 0.05, 0.15, 0.25])
    report = label_pseudo_speakers(MeanOfSamples(), tmp_path / "data", 2, tmp_path / "out")
    table = read_pseudo_labels(tmp_path / "out" / "utt2pseudo")
    assert len(table) == 6 and set(table.values()) <= {0, 1}
    assert sum(report["cluster_sizes"]) == 6 and "ari_vs_utt2spk" in report
    assert (tmp_path / "out" / "report.json").is_file()
