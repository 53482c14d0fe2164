"""DINO: EMA teacher without gradients, the loss against a loop over view pairs, centering and
sharpening, multi-crop views, learning on tiny data, exact resume of teacher and centre."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from objective_helpers import tiny_encoder

from audiossl.audio.frontends import frontend_config
from audiossl.data.dataset import Batch
from audiossl.data.kaldi import DataDir
from audiossl.encoders import create_encoder
from audiossl.errors import ConfigError
from audiossl.objectives import create_objective
from audiossl.objectives.dino import (
    AttentiveStatsPooling,
    DinoConfig,
    DinoObjective,
    MeanPooling,
    dino_loss,
    random_crops,
    teacher_probabilities,
)
from audiossl.train.config import DataConfig
from audiossl.train.inputs import InputPipeline
from audiossl.train.targets import init_objective, target_sources

RATE = 16000
SMALL = {"head_hidden_dim": 32, "bottleneck_dim": 8, "num_prototypes": 64}


def objective(family: str = "conformer", **changes) -> DinoObjective:
    settings = {**SMALL, "global_seconds": 0.3, "local_seconds": 0.15, "local_crops": 2, "corrupt": None, **changes}
    torch.manual_seed(0)
    return create_objective("dino", tiny_encoder(family, "frame"), settings)


def pipeline() -> InputPipeline:
    config = DataConfig(sample_rate=RATE, frontend="fbank", frontend_config={"num_mel_bins": 32}, normalize="utterance")
    return InputPipeline(config, frontend_config("fbank", {"num_mel_bins": 32, "sample_rate": RATE}))


def batch(lengths=(8000, 4000, 2000), seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        t = torch.arange(length) / RATE
        waves[row, :length] = torch.sin(2 * math.pi * (150 + 60 * row) * t) + 0.1 * torch.randn(
            length, generator=generator
        )
    return Batch([f"utt{row}" for row in range(len(lengths))], waves, torch.tensor(lengths))


def views(model: DinoObjective, seed: int = 0) -> dict:
    inputs = pipeline()
    with_targets = batch().with_targets(target_sources(model, inputs, max_seconds=1.0), sample_rate=RATE)
    return model.batch_inputs(with_targets, inputs, torch.Generator().manual_seed(seed))


def test_teacher_is_an_ema_of_the_student_and_gets_no_gradient():
    model = objective()
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    assert all(not p.requires_grad for p in model.teacher.parameters())
    out = model(**views(model), step=0)
    out.total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    optimizer.step()
    before = [t.detach().clone() for t, _ in model.teacher_parameters()]
    momentum = model.momentum_at(1)
    assert momentum == pytest.approx(model.config.momentum)
    model.on_step_end(1)
    for (teacher, student), old in zip(model.teacher_parameters(), before, strict=True):
        assert torch.equal(teacher, old * momentum + (1 - momentum) * student.detach())
    moved = sum(float((t - o).abs().sum()) for (t, _), o in zip(model.teacher_parameters(), before, strict=True))
    assert moved > 0
    assert model.momentum_at(model.config.momentum_steps + 1) == pytest.approx(1.0)


def test_loss_equals_a_loop_over_view_pairs():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 3, 16, generator=generator)  # 2 global + 3 local views
    teacher = torch.randn(2, 3, 16, generator=generator).softmax(-1)
    loss, _ = dino_loss(student, teacher, 0.1)
    terms = []
    for g in range(2):
        for v in range(5):
            if v == g:
                continue
            for b in range(3):
                terms.append(-sum(teacher[g, b, k] * F.log_softmax(student[v, b] / 0.1, dim=0)[k] for k in range(16)))
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_objective_loss_follows_the_view_order():
    """The forward loss equals the pairwise loss rebuilt view by view from the student and teacher modules."""
    model = objective(local_crops=1).eval()  # eval: no centre update, no dropout
    model.center.normal_(generator=torch.Generator().manual_seed(1))
    inputs = views(model)
    out = model(**inputs, step=0)
    batch_size = 3
    g_feat, g_len = inputs["global_features"], inputs["global_lengths"]
    l_feat, l_len = inputs["local_features"], inputs["local_lengths"]
    with torch.no_grad():
        student = [model.head(model.embed(g_feat[i * 3 : i * 3 + 3], g_len[i * 3 : i * 3 + 3])) for i in range(2)]
        student.append(model.head(model.embed(l_feat, l_len)))
        teacher = [
            model.teacher["head"](model.embed(g_feat[i * 3 : i * 3 + 3], g_len[i * 3 : i * 3 + 3], teacher=True))
            for i in range(2)
        ]
    terms = []
    for g in range(2):
        target = ((teacher[g] - model.center) / model.config.teacher_temperature).softmax(-1)
        for v in range(3):
            if v != g:
                terms.append(-(target * (student[v] / 0.1).log_softmax(-1)).sum(-1).mean())
    torch.testing.assert_close(out.parts["dino"], torch.stack(terms).mean(), rtol=1e-4, atol=1e-5)
    assert batch_size == g_feat.shape[0] // 2
    assert out.metrics["teacher_entropy"] <= math.log(64) + 1e-4


def test_centering_flattens_a_constant_teacher_and_sharpening_peaks_it():
    model = objective(center_momentum=0.9)
    collapsed = torch.zeros(4, 64)
    collapsed[:, 3] = 1.0  # every output on one prototype
    before = teacher_probabilities(collapsed, model.center, 0.04)
    assert float(before[0, 3]) > 0.99
    for _ in range(300):
        model.update_center(collapsed)
    torch.testing.assert_close(model.center, collapsed[0], rtol=0, atol=1e-6)
    after = teacher_probabilities(collapsed, model.center, 0.04)
    torch.testing.assert_close(after, torch.full_like(after, 1 / 64), rtol=1e-4, atol=1e-6)
    logits = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)) * 0.1

    def entropy(p):
        return float(-(p * p.log()).sum(-1).mean())

    zero = torch.zeros(64)
    assert entropy(teacher_probabilities(logits, zero, 0.04)) < entropy(teacher_probabilities(logits, zero, 0.07))
    assert model.teacher_temperature(0) == 0.04 and model.teacher_temperature(10**6) == 0.07


def test_multi_crop_views_have_the_right_lengths():
    model = objective(global_crops=2, local_crops=3, global_seconds=0.3, local_seconds=0.15)
    inputs = views(model)
    expected = lambda samples: pipeline().output_lengths(torch.tensor(samples))  # noqa: E731
    # utterances of 8000, 4000, 2000 samples; global crop 4800, local crop 2400 samples
    torch.testing.assert_close(inputs["global_lengths"], expected([4800, 4000, 2000] * 2))
    torch.testing.assert_close(inputs["local_lengths"], expected([2400, 2400, 2000] * 3))


def test_random_crops_are_windows_of_the_utterance_with_zero_padding():
    waves = torch.arange(1, 31, dtype=torch.float32).view(3, 10)
    waves[1, 6:] = 0
    lengths = torch.tensor([10, 6, 3])
    crops, crop_lengths = random_crops(waves, lengths, 4, torch.Generator().manual_seed(0))
    assert crop_lengths.tolist() == [4, 4, 3] and crops.shape == (3, 4)
    for row in range(3):
        n = int(crop_lengths[row])
        window = crops[row, :n]
        start = int(window[0] - waves[row, 0])
        assert torch.equal(window, waves[row, start : start + n]) and start + n <= int(lengths[row])
        assert torch.all(crops[row, n:] == 0)


@pytest.mark.parametrize("pool", [MeanPooling, AttentiveStatsPooling])
def test_pooling_ignores_padding(pool):
    torch.manual_seed(0)
    module = pool(8)
    hidden = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 3])
    garbage = hidden.clone()
    garbage[1, 3:] = 1e3
    torch.testing.assert_close(module(hidden, lengths), module(garbage, lengths))
    torch.testing.assert_close(module(hidden[1:, :3], lengths[1:]), module(hidden, lengths)[1:])


def test_training_a_few_steps_reduces_the_loss():
    model = objective(
        teacher_warmup_steps=0, teacher_temperature_final=0.04, global_seconds=0.15, local_seconds=0.08, local_crops=1
    )
    inputs = model.batch_inputs(batch((3000, 2400, 2000)), pipeline(), torch.Generator().manual_seed(0))
    model.eval()  # fixed views, no dropout; the centre stays (eval) so losses are comparable
    with torch.no_grad():
        first = float(model(**inputs, step=0).total)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for step in range(12):
        loss = model(**inputs, step=step).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.on_step_end(step + 1)
    with torch.no_grad():
        assert float(model(**inputs, step=12).total) < 0.8 * first


def test_corrupted_views_are_deterministic_per_generator():
    model = objective(corrupt={"noise_prob": 1.0, "reverb_prob": 1.0, "noise_kinds": ("white",)})
    a, b, c = views(model, 0), views(model, 0), views(model, 1)
    assert torch.equal(a["global_features"], b["global_features"])
    assert not torch.allclose(a["global_features"], c["global_features"])


def test_bad_configs_are_errors():
    with pytest.raises(ConfigError, match="two views"):
        DinoConfig(global_crops=1, local_crops=0)
    with pytest.raises(ConfigError, match="dino_weight"):
        DinoConfig(dino_weight=0.0)
    with pytest.raises(ConfigError, match="momentum"):
        DinoConfig(momentum=1.2)


# ----------------------------------------------------------------------------- through the trainer


def write_data(root: Path, count: int = 6) -> Path:
    rng = np.random.default_rng(0)
    data = DataDir(utt2dur={})
    for i in range(count):
        utt = f"spk{i % 2}-utt{i}"
        samples = int(RATE * (0.4 + 0.1 * i))
        t = np.arange(samples) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (120 + 80 * (i % 2)) * t) + 0.05 * rng.standard_normal(samples)
        path = root / f"{utt}.wav"
        soundfile.write(path, wave.astype(np.float32), RATE)
        data.wav_scp[utt], data.utt2spk[utt], data.utt2dur[utt] = str(path), f"spk{i % 2}", samples / RATE
    data.save(root / "data")
    return root / "data"


def tiny_run_config(**objective_changes):
    from audiossl.train.config import config_from_dict

    return config_from_dict(
        {
            "data": {
                "sample_rate": RATE,
                "max_seconds_per_batch": 2.0,
                "max_utt_seconds": 1.0,
                "num_workers": 0,
                "frontend": "fbank",
                "frontend_config": {"num_mel_bins": 32},
                "normalize": "utterance",
            },
            "encoder": {
                "family": "ast",
                "preset": "tiny",
                "overrides": {
                    "dim": 32,
                    "num_layers": 2,
                    "num_heads": 4,
                    "input": {"kind": "frame", "frame_stack": 2, "num_bins": 32, "conv_pos_kernel": 8},
                },
            },
            "objective": {
                "name": "dino",
                "config": {
                    **SMALL,
                    "global_seconds": 0.3,
                    "local_seconds": 0.15,
                    "local_crops": 2,
                    "corrupt": {"noise_prob": 0.5, "reverb_prob": 0.5, "noise_kinds": ["white", "pink"]},
                    "momentum": 0.9,
                    "momentum_steps": 4,
                    "teacher_warmup_steps": 2,
                    **objective_changes,
                },
            },
            "optim": {"lr": 3.0e-3, "warmup_steps": 1},
            "run": {"max_steps": 4, "device": "cpu", "log_every": 1, "checkpoint_every": 2, "tensorboard": False},
        }
    )


def test_resume_restores_teacher_and_centre_exactly_and_load_pretrained_takes_the_student(tmp_path):
    from audiossl.train import load_pretrained, pretrain
    from audiossl.train.checkpoint import checkpoint_path, load_checkpoint

    data = write_data(tmp_path)
    config = tiny_run_config()
    pretrain(config, [data], tmp_path / "straight")

    def stop_at_two(trainer):
        if trainer.step == 2:
            trainer.request_stop("test")

    pretrain(config, [data], tmp_path / "resumed", callbacks=[stop_at_two])
    pretrain(config, [data], tmp_path / "resumed", resume=True)
    straight = load_checkpoint(checkpoint_path(tmp_path / "straight", 4))["model"]
    resumed = load_checkpoint(checkpoint_path(tmp_path / "resumed", 4))["model"]
    assert any(key.startswith("teacher.") for key in straight) and "center" in straight
    assert float(straight["center"].abs().sum()) > 0
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    # The teacher is not the student: the EMA lags behind.
    assert not torch.equal(straight["teacher.head.prototypes"], straight["head.prototypes"])
    # load_pretrained gives the student encoder.
    model = load_pretrained(tmp_path / "straight")
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, straight[f"encoder.{key}"])
    # The cluster-aware iteration: pseudo-speakers from the run (CLI), then a model started from its weights.
    from audiossl.cli.main import main

    out = tmp_path / "pseudo"
    assert main(["dino", "cluster", str(tmp_path / "straight"), "--data", str(data), "--k", "2", "-o", str(out)]) == 0
    table = (out / "utt2pseudo").read_text().split()
    assert len(table) == 12 and set(table[1::2]) <= {"0", "1"}
    changes = {"cluster": {"labels": str(out / "utt2pseudo")}, "dino_weight": 0.0}
    config = tiny_run_config(**changes)
    from audiossl.train.config import encoder_config, objective_config

    encoder = create_encoder("ast", config=encoder_config(config))
    second = create_objective("dino", encoder, objective_config(config))
    init_objective(second, tmp_path / "straight")  # run.init_from
    for key, value in second.state_dict().items():
        if not key.startswith("cluster."):
            assert torch.equal(value, straight[key]), key


def test_dino_objective_copies_do_not_share_storage():
    model = objective()
    twin = copy.deepcopy(model)
    twin.teacher["head"].prototypes.data.add_(1.0)
    assert not torch.equal(twin.teacher["head"].prototypes, model.teacher["head"].prototypes)
    assert model.teacher["head"].prototypes.data_ptr() != model.head.prototypes.data_ptr()


def test_cluster_option_adds_a_gated_pseudo_speaker_loss(tmp_path):
    (tmp_path / "utt2pseudo").write_text("utt0 0\nutt1 1\nutt2 0\n")
    cluster = {"labels": str(tmp_path / "utt2pseudo"), "gate_every": 2, "gate_after": 0, "scale": 5.0}
    model = objective(cluster=cluster, dino_weight=0.0).train()
    inputs = views(model)
    assert inputs["rows"].tolist() == [0, 1, 2]
    out = model(**inputs, step=0)
    assert set(out.parts) == {"classification"} and out.metrics["kept_fraction"] == 1.0
    out.total.backward()
    assert model.cluster.weight.grad is not None and model.head.prototypes.grad is None
    assert bool(model.cluster.seen.all())
    model.on_step_end(1)
    assert float(model.cluster.gate) == torch.finfo(torch.float64).max  # not yet due
    model.on_step_end(2)
    assert float(model.cluster.gate) <= float(model.cluster.losses.max())
    both = objective(cluster=cluster, dino_weight=1.0)
    assert set(both(**views(both), step=0).parts) == {"dino", "classification"}
