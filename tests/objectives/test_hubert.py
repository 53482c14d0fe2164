"""HuBERT: the loss equals a per-frame loop, it decreases, targets follow crops and token rates, HuBERTopic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from objective_helpers import decreased, inputs_for, tiny_encoder

from audiossl.cluster.labels import write_labels
from audiossl.data.dataset import Batch
from audiossl.errors import ConfigError, DataError
from audiossl.objectives import create_objective
from audiossl.objectives.hubert import IGNORE, HubertObjective, token_rate
from audiossl.objectives.topic import TopicConfig, ensure_topics, fit_topics, read_topics, topics_dir
from audiossl.train.config import DataConfig, PretrainConfig, frontend_settings
from audiossl.train.inputs import InputPipeline
from audiossl.train.targets import fitted_topics, target_sources

K = 6


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two spin against each other on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hubert(family: str, kind: str = "frame", **config) -> HubertObjective:
    encoder = tiny_encoder(family, kind)
    config = {
        "num_clusters": K,
        "code_dim": 16,
        "mask": {"kind": "span", "start_prob": 0.2, "span_length": 3},
        **config,
    }
    return create_objective("hubert", encoder, config)


def random_targets(token_lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, K, (len(token_lengths), int(token_lengths.max())), generator=generator)  # (B, S)
    valid = torch.arange(targets.shape[1]) < token_lengths.unsqueeze(1)
    return targets.masked_fill(~valid, IGNORE)


def test_loss_equals_a_per_frame_loop() -> None:
    objective = hubert("conformer", unmasked_weight=0.5).eval()
    features, lengths = inputs_for(objective.encoder, [20, 14, 9])
    token_lengths = objective.encoder.token_lengths(lengths)
    targets = random_targets(token_lengths)
    mask = objective.sample_mask(token_lengths, int(token_lengths.max()), torch.Generator().manual_seed(3))
    assert mask.any() and (~mask).any()
    out = objective.loss_with_mask(features, lengths, mask, targets)

    hidden = objective.encoder(features, lengths, mask=mask).last
    sums = {"masked": [0.0, 0, 0], "unmasked": [0.0, 0, 0]}  # loss sum, hits, frames
    for b in range(len(lengths)):
        for s in range(int(token_lengths[b])):
            projected = objective.projection(hidden[b, s])
            logits = torch.stack(
                [F.cosine_similarity(projected, objective.codewords[k], dim=0) / 0.1 for k in range(K)]
            )
            loss = -torch.log_softmax(logits, dim=0)[targets[b, s]]
            entry = sums["masked" if mask[b, s] else "unmasked"]
            entry[0] += float(loss.detach())
            entry[1] += int(logits.argmax() == targets[b, s])
            entry[2] += 1
    masked = sums["masked"][0] / sums["masked"][2]
    unmasked = sums["unmasked"][0] / sums["unmasked"][2]
    assert float(out.parts["masked"].detach()) == pytest.approx(masked, rel=1e-4)
    assert float(out.parts["unmasked"].detach()) == pytest.approx(unmasked, rel=1e-4)
    assert float(out.total.detach()) == pytest.approx(masked + 0.5 * unmasked, rel=1e-4)
    assert out.metrics["masked_accuracy"] == pytest.approx(sums["masked"][1] / sums["masked"][2])
    assert out.metrics["unmasked_accuracy"] == pytest.approx(sums["unmasked"][1] / sums["unmasked"][2])


def test_padding_and_ignored_targets_do_not_count() -> None:
    objective = hubert("ast").eval()
    features, lengths = inputs_for(objective.encoder, [16, 10])
    token_lengths = objective.encoder.token_lengths(lengths)
    targets = random_targets(token_lengths)
    mask = objective.sample_mask(token_lengths, int(token_lengths.max()), torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = objective.loss_with_mask(features, lengths, mask, targets)
    # Garbage in the padded target positions changes nothing: they are IGNORE'd by lengths too.
    noisy = targets.clone()
    noisy[1, int(token_lengths[1]) :] = 0
    with torch.no_grad():
        second = objective.loss_with_mask(features, lengths, mask, noisy)
    assert float(first.total) == pytest.approx(float(second.total), rel=1e-6)


@pytest.mark.parametrize("family", ["ast", "conformer", "mamba"])
def test_loss_decreases_on_tiny_data(family: str) -> None:
    objective = hubert(family)
    features, lengths = inputs_for(objective.encoder, [24, 18, 12], seed=1)
    token_lengths = objective.encoder.token_lengths(lengths)
    # Learnable targets: the cluster of a frame is a function of its input (the sign pattern of 3 bins).
    stacked = features[:, : 2 * int(token_lengths.max())].reshape(3, -1, 2, features.shape[-1])[:, :, 0, :3]
    targets = ((stacked > 0).long() * torch.tensor([1, 2, 3])).sum(-1) % K  # (B, S)
    valid = torch.arange(targets.shape[1]) < token_lengths.unsqueeze(1)
    targets = targets.masked_fill(~valid, IGNORE)
    optimizer = torch.optim.Adam(objective.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = objective(features, lengths, targets=targets, generator=torch.Generator().manual_seed(0))
        assert math.isfinite(float(out.total.detach()))
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(float(out.total.detach()))
    assert decreased(losses, 0.7), losses


def test_patch_tokens_and_missing_labels_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="frequency patches"):
        hubert("ast", "patch")
    with pytest.raises(ConfigError, match="objective.config.labels"):
        create_objective("hubert", tiny_encoder("ast", "frame"))


def pipeline(max_utt_seconds: float | None = None) -> InputPipeline:
    data = DataConfig(frontend_config={"num_mel_bins": 32}, normalize="utterance", max_utt_seconds=max_utt_seconds)
    return InputPipeline(data, frontend_settings(PretrainConfig(data=data)))


def with_targets(objective: HubertObjective, inputs: InputPipeline, batch: Batch) -> Batch:
    """The batch with the objective's declared targets attached by the data layer, as the trainer does."""
    sources = target_sources(objective, inputs, max_seconds=10.0)
    return batch.with_targets(sources, max_seconds=inputs.config.max_utt_seconds, sample_rate=inputs.config.sample_rate)


def test_targets_follow_token_rate_and_crop_offsets(tmp_path) -> None:
    rate_in = 100.0  # MFCC labels at 10 ms; the encoder stacks 2 frames per token: 50 tokens/s
    labels = {"a": torch.arange(198) % K, "b": torch.arange(92) % K}  # 2 s and 15000 samples of audio
    write_labels(tmp_path / "labels", labels, rate_in, info={"n_clusters": K})
    objective = create_objective(
        "hubert", tiny_encoder("conformer", "frame"), {"labels": str(tmp_path / "labels"), "code_dim": 8}
    )
    assert objective.num_clusters == K  # read from the label dir
    inputs = pipeline(max_utt_seconds=1.0)
    assert token_rate(inputs, objective.encoder, 16000) == 50.0
    # "a" is cropped to 1 s starting 0.5 s in; "b" is whole (shorter than the window).
    batch = Batch(
        ["a", "b"],
        torch.randn(2, 16000),
        torch.tensor([16000, 15000]),
        {},
        torch.tensor([0.5, 0.0], dtype=torch.float64),
    )
    kwargs = objective.batch_inputs(with_targets(objective, inputs, batch), inputs)
    token_lengths = objective.encoder.token_lengths(kwargs["lengths"])
    targets = kwargs["targets"]
    assert targets.shape == (2, int(token_lengths.max()))
    a = labels["a"][::2]  # 100 Hz -> 50 Hz keeps every second label
    start = 25  # 0.5 s at 50 tokens/s
    assert torch.equal(targets[0, : int(token_lengths[0])], a[start : start + int(token_lengths[0])])
    b = labels["b"][::2][: int(token_lengths[1])]
    assert torch.equal(targets[1, : int(token_lengths[1])], b)
    assert (targets[1, int(token_lengths[1]) :] == IGNORE).all()
    out = objective(**kwargs)
    assert math.isfinite(float(out.total.detach()))


def test_misaligned_labels_name_the_utterance(tmp_path) -> None:
    # Labels made at 50 Hz but recorded as 100 Hz: half as many as the encoder's tokens need.
    write_labels(
        tmp_path / "labels",
        {"utt-ok": torch.zeros(99, dtype=torch.long), "utt-bad": torch.zeros(25, dtype=torch.long)},
        100.0,
    )
    objective = create_objective(
        "hubert", tiny_encoder("ast", "frame"), {"labels": str(tmp_path / "labels"), "num_clusters": K}
    )
    batch = Batch(["utt-ok", "utt-bad"], torch.randn(2, 16000), torch.tensor([16000, 16000]), {}, None)
    with pytest.raises(DataError, match="utt-bad"):
        objective.batch_inputs(with_targets(objective, pipeline(), batch), pipeline())
    # A crop 0.5 s into a 1 s utterance whose labels cover only 0.25 s.
    cropped = Batch(["utt-bad"], torch.randn(1, 8000), torch.tensor([8000]), {}, torch.tensor([0.5]))
    with pytest.raises(
        DataError, match="labels of utterance 'utt-bad' cover 0.24 s but its crop needs them up to 0.98 s"
    ):
        objective.batch_inputs(with_targets(objective, pipeline(max_utt_seconds=0.5), cropped), pipeline())
    with pytest.raises(DataError, match="no labels for utterance 'utt-new'"):
        new = Batch(["utt-new"], torch.randn(1, 8000), torch.tensor([8000]), {}, None)
        objective.batch_inputs(with_targets(objective, pipeline(), new), pipeline())


def two_topic_bags(per_group: int = 20, seed: int = 0) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Label sequences of two groups drawing mostly from clusters 0-4 or 5-9."""
    rng = np.random.default_rng(seed)
    labels, groups = {}, []
    for i in range(2 * per_group):
        group = i % 2
        probs = np.full(10, 0.02)
        probs[group * 5 : group * 5 + 5] = 0.18
        labels[f"utt{i:03d}"] = torch.from_numpy(rng.choice(10, size=80, p=probs / probs.sum()))
        groups.append(group)
    return labels, groups


def test_lda_separates_two_label_distributions(tmp_path) -> None:
    labels, groups = two_topic_bags()
    config = TopicConfig(num_topics=2, max_iter=30)
    topics = fit_topics(labels, 10, config)
    dominant = [topics.dominant[utt] for utt in sorted(labels)]
    agreement = np.mean(np.array(dominant) == np.array(groups))
    assert max(agreement, 1 - agreement) == 1.0  # every utterance in its group's topic (up to renaming)
    stored, path = ensure_topics(tmp_path, labels, 10, config)
    assert path == topics_dir(tmp_path, config) and (path / "utt2topic").is_file()
    assert read_topics(path).dominant == topics.dominant == stored.dominant


@pytest.mark.parametrize("target", ["dominant", "distribution"])
def test_topic_loss_is_part_of_total_and_decreases(tmp_path, target: str) -> None:
    labels, _ = two_topic_bags(per_group=4)
    sizes = [20, 16, 12, 20, 16, 12, 20, 16]
    labels = {utt: values[: 2 * n] for (utt, values), n in zip(sorted(labels.items()), sizes, strict=True)}
    write_labels(tmp_path / "labels", labels, 100.0, info={"n_clusters": 10})
    topic = {"num_topics": 2, "weight": 0.5, "target": target, "max_iter": 20}
    objective = create_objective(
        "hubert",
        tiny_encoder("conformer", "frame"),
        {
            "labels": str(tmp_path / "labels"),
            "code_dim": 8,
            "topic": topic,
            "mask": {"kind": "span", "start_prob": 0.2, "span_length": 3},
        },
    )
    ids = sorted(labels)
    topics = fitted_topics(objective.target_specs()["topics"])[0].targets(ids, target)
    assert (tmp_path / "labels" / "topics-2" / "info.json").is_file()
    features, lengths = inputs_for(objective.encoder, [2 * n for n in sizes], seed=2)
    token_lengths = objective.encoder.token_lengths(lengths)
    targets = torch.full((len(ids), int(token_lengths.max())), IGNORE)
    for b, utt in enumerate(ids):
        targets[b, : int(token_lengths[b])] = labels[utt][::2][: int(token_lengths[b])]
    # The lowest reachable loss: 0 for hard targets, the targets' entropy for soft ones.
    floor = 0.0 if target == "dominant" else float(-(topics * topics.clamp_min(1e-12).log()).sum(-1).mean())
    optimizer = torch.optim.Adam(objective.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        out = objective(features, lengths, targets=targets, topics=topics, generator=torch.Generator().manual_seed(0))
        expected = out.parts["masked"] + 0.5 * out.parts["topic"]
        assert float(out.total.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        history.append(float(out.parts["topic"].detach()) - floor)
    assert "topic_accuracy" in out.metrics
    assert decreased(history, 0.7), history
