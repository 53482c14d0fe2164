"""Distillation (DistilHuBERT): the loss against a per-token loop, frame alignment against a loop, the
student gets gradients and the teacher none (not a parameter, not in the state dict), teacher
loading through the training room's loader, initialisation from the teacher, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from objective_helpers import tiny_encoder

from audiossl.audio.frontends import frontend_config
from audiossl.data.dataset import Batch
from audiossl.errors import ConfigError
from audiossl.models import PretrainedEncoder
from audiossl.models.config import EncoderSection, ModelConfig
from audiossl.objectives import create_objective, distill
from audiossl.objectives.distill import DistillConfig, align_frames, distill_loss
from audiossl.train.config import DataConfig
from audiossl.train.inputs import InputPipeline

RATE = 16000


def pipeline(rate: int = RATE) -> InputPipeline:
    config = DataConfig(sample_rate=rate, frontend="fbank", frontend_config={"num_mel_bins": 32}, normalize="utterance")
    return InputPipeline(config, frontend_config("fbank", {"num_mel_bins": 32, "sample_rate": rate}))


def tiny_teacher(family: str = "conformer", rate: int = RATE, seed: int = 5) -> PretrainedEncoder:
    """A 2-block teacher with its own front-end, as audiossl.load returns it."""
    inputs = pipeline(rate)
    config = ModelConfig(data=inputs.config, encoder=EncoderSection(family=family))
    return PretrainedEncoder(inputs, tiny_encoder(family, "frame", seed=seed), config).eval()


@pytest.fixture
def teacher_at(tmp_path: Path):
    """A teacher path served by an installed loader (as the training room installs audiossl.load)."""
    loaded: dict[str, PretrainedEncoder] = {}

    def install(teacher: PretrainedEncoder) -> str:
        path = tmp_path / f"teacher{len(loaded)}"
        path.mkdir()
        loaded[str(path)] = teacher
        return str(path)

    previous = distill._TEACHER_LOADER
    distill.set_teacher_loader(lambda path: loaded[str(path)])
    yield install
    distill.set_teacher_loader(previous)


def student(teacher_path: str, layers=(1, 2), family: str = "conformer", **changes):
    torch.manual_seed(0)
    settings = {"teacher": teacher_path, "teacher_layers": list(layers), **changes}
    return create_objective("distill", tiny_encoder(family, "frame", seed=1), settings)


def batch(lengths=(8000, 5000)) -> Batch:
    generator = torch.Generator().manual_seed(0)
    waves = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        t = torch.arange(length) / RATE
        waves[row, :length] = torch.sin(2 * math.pi * (150 + 90 * row) * t) + 0.1 * torch.randn(
            length, generator=generator
        )
    return Batch([f"u{row}" for row in range(len(lengths))], waves, torch.tensor(lengths))


def test_loss_equals_a_per_token_loop():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randn(2, 5, 3, 4, generator=generator)  # (B, S, K, D)
    targets = torch.randn(2, 5, 3, 4, generator=generator)
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    total, l1, cosine = distill_loss(predictions, targets, valid, cosine_weight=0.7)
    per_head = [[] for _ in range(3)]
    for b in range(2):
        for s in range(5):
            if not valid[b, s]:
                continue
            for k in range(3):
                p, t = predictions[b, s, k], targets[b, s, k]
                cos = float(p @ t) / (float(p.norm()) * float(t.norm()))
                l1_term = float((p - t).abs().sum()) / 4
                per_head[k].append(l1_term - 0.7 * math.log(1.0 / (1.0 + math.exp(-cos))))
    want = sum(sum(values) / len(values) for values in per_head)
    assert float(total) == pytest.approx(want, rel=1e-5)
    assert l1.shape == cosine.shape == (3,)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.5, 1.6])
def test_frame_alignment_equals_a_loop(ratio: float):
    teacher = torch.randn(2, 9, 3)
    lengths = torch.tensor([9, 4])
    got = align_frames(teacher, lengths, tokens=7, ratio=ratio)
    for b in range(2):
        for i in range(7):
            index = min(math.floor((i + 0.5) * ratio), int(lengths[b]) - 1)
            assert torch.equal(got[b, i], teacher[b, index])


def test_student_gets_gradients_and_the_teacher_none(teacher_at):
    teacher = tiny_teacher()
    model = student(teacher_at(teacher))
    model.train()
    assert not model.has_token_mask
    assert not any(key.startswith(("teacher", "_teacher")) for key in model.state_dict())
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    kwargs = model.batch_inputs(batch(), pipeline(), torch.Generator().manual_seed(0))
    assert kwargs["targets"].shape[2:] == (2, teacher.dim)
    out = model(**kwargs, step=0)
    out.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    for module in (model.encoder, model.heads):
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters())
    assert {"cosine_layer1", "cosine_layer2", "l1_layer1", "l1_layer2"} <= set(out.metrics)  # logged per layer


def test_targets_are_the_chosen_teacher_layers(teacher_at):
    teacher = tiny_teacher()
    model = student(teacher_at(teacher), layers=(2,), init_from_teacher=False)
    audio = batch()
    targets = model.batch_inputs(audio, pipeline())["targets"]  # (B, S, 1, D)
    with torch.no_grad():
        layers = teacher(audio.waveforms, audio.lengths).layers
    count = int(model.encoder.token_lengths(pipeline()(audio.waveforms, audio.lengths)[1])[1])
    torch.testing.assert_close(targets[1, :count, 0], layers[1][1, :count])


def test_a_teacher_at_another_rate_is_fed_resampled_audio(teacher_at):
    teacher = tiny_teacher(rate=8000)
    model = student(teacher_at(teacher), init_from_teacher=False)
    kwargs = model.batch_inputs(batch(), pipeline(), None)
    tokens = int(model.encoder.token_lengths(kwargs["lengths"]).max())
    assert kwargs["targets"].shape[:2] == (2, tokens)  # aligned to the student's 16 kHz tokens
    assert torch.isfinite(model(**kwargs).total)


def test_the_student_starts_from_the_teachers_first_blocks(teacher_at):
    teacher = tiny_teacher()
    model = create_objective(
        "distill",
        tiny_encoder("conformer", "frame", seed=1),
        {"teacher": teacher_at(teacher), "teacher_layers": [2]},
    )
    theirs = teacher.encoder.state_dict()
    for name, value in model.encoder.state_dict().items():
        if name in theirs and theirs[name].shape == value.shape:
            assert torch.equal(value, theirs[name]), name
    assert model.initialised_from_teacher


def test_the_training_room_installs_audiossl_load_as_the_loader():
    import audiossl.train.unit  # noqa: F401  (installs the loader)

    assert distill._TEACHER_LOADER is not None


def test_bad_teachers_and_configs_are_errors(teacher_at, tmp_path: Path):
    with pytest.raises(ConfigError, match="teacher"):
        create_objective("distill", tiny_encoder("conformer", "frame"), {})
    with pytest.raises(ConfigError, match="not found"):
        student(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="2 blocks"):
        student(teacher_at(tiny_teacher()), layers=(3,))
    with pytest.raises(ConfigError, match="teacher_layers"):
        DistillConfig(teacher_layers=[])
    with pytest.raises(ConfigError, match="repeat"):
        DistillConfig(teacher_layers=[2, 2])
    with pytest.raises(ConfigError, match="frequency patches"):
        create_objective(
            "distill", tiny_encoder("ast", "patch"), {"teacher": teacher_at(tiny_teacher()), "teacher_layers": [1]}
        )


def test_loss_decreases_on_a_fixed_batch(teacher_at):
    model = student(teacher_at(tiny_teacher()), init_from_teacher=False)
    kwargs = model.batch_inputs(batch((4000, 3000)), pipeline())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(**kwargs)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(float(out.total.detach()))
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]
