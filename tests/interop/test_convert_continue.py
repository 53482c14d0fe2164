"""run.init_from with a published checkpoint: continued pretraining of a converted model, and its errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_convert import save_hf

from audiossl.encoders import create_encoder
from audiossl.errors import ConfigError, DataError
from audiossl.interop.convert import convert_checkpoint
from audiossl.objectives import create_objective
from audiossl.testing.configs import tiny_encoder_config
from audiossl.train import load_pretrained, pretrain
from audiossl.train.config import config_from_dict
from audiossl.train.logging import read_records
from audiossl.train.targets import init_objective

SMALL_WAV2VEC2 = {
    "quantizer": {"groups": 2, "entries": 16, "code_dim": 32},
    "project_dim": 32,
    "num_negatives": 10,
    "mask": {"kind": "span", "start_prob": 0.1, "span_length": 3, "min_spans": 1},
}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=4))
    return out


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny Hugging Face WavLM base (group-norm CNN, post-LN, gated relative bias) saved in its own format.

    Its CNN hops 80 samples (200 frames a second), so that a few training steps stay cheap."""
    directory = tmp_path_factory.mktemp("hf-wavlm")
    save_hf("wavlm-base", directory, conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4))
    return directory


def run_config(published, encoder_section: dict, **run) -> object:
    return config_from_dict(
        {
            "data": {
                "sample_rate": 16000,
                "frontend": "none",
                "normalize": "none",
                "max_seconds_per_batch": 4.0,
                "max_utt_seconds": 1.0,
                "min_utt_seconds": 0.3,
                "num_workers": 0,
            },
            "encoder": encoder_section,
            "objective": {"name": "wav2vec2", "config": SMALL_WAV2VEC2},
            "optim": {"lr": 2e-3, "warmup_steps": 2, "schedule": "constant"},
            "run": {
                "max_steps": 12,
                "log_every": 1,
                "device": "cpu",
                "tensorboard": False,
                "seed": 0,
                "init_from": str(published),
                **run,
            },
        }
    )


def test_continued_pretraining_starts_from_the_converted_model_and_lowers_its_loss(published, synth_dir, tmp_path):
    converted = convert_checkpoint(published)
    config = run_config(published, converted.encoder_section())  # the section the docs tell users to paste
    result = pretrain(config, [synth_dir], tmp_path / "run")
    assert result.step == 12
    losses = [record["loss"] for record in read_records(tmp_path / "run" / "train.jsonl")]
    assert all(math.isfinite(loss) for loss in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, f"loss did not go down: first steps {first:.3f}, last steps {last:.3f}"
    # the run's own checkpoints rebuild the converted architecture without the published files
    trained = load_pretrained(tmp_path / "run").encoder
    start = converted.encoder.state_dict()
    changed = [name for name, value in trained.state_dict().items() if not torch.equal(value, start[name])]
    assert changed and trained.config.relative_position_bias


def test_init_from_loads_the_converted_weights_into_the_encoder_and_its_copies(published):
    converted = convert_checkpoint(published)
    torch.manual_seed(1)
    encoder = create_encoder("wav2vec2", config=converted.config)
    objective = create_objective("data2vec", encoder, {})  # an EMA teacher: a copy of the encoder
    heads_before = {
        k: v.clone() for k, v in objective.state_dict().items() if not k.startswith(("encoder.", "teacher."))
    }
    assert init_objective(objective, published, sample_rate=16000) == published
    for name, value in converted.encoder.state_dict().items():
        assert torch.equal(objective.encoder.state_dict()[name], value), name
        assert torch.equal(objective.teacher.state_dict()[name], value), name
    for name, value in heads_before.items():
        assert torch.equal(objective.state_dict()[name], value), name


def test_init_from_names_a_family_that_does_not_fit(published):
    encoder = create_encoder("conformer", config=tiny_encoder_config("conformer", "waveform"))
    objective = create_objective("wav2vec2", encoder, SMALL_WAV2VEC2)
    with pytest.raises(ConfigError, match=r"'wav2vec2' encoder family.*ConformerEncoder(.|\n)*family: wav2vec2"):
        init_objective(objective, published)


def test_init_from_names_every_architecture_difference(published):
    converted = convert_checkpoint(published)
    other = dataclasses.replace(converted.config, num_heads=2, relative_position_bias=False, dropout=0.3)
    objective = create_objective("wav2vec2", create_encoder("wav2vec2", config=other), SMALL_WAV2VEC2)
    with pytest.raises(ConfigError) as error:
        init_objective(objective, published)
    message = error.value.message
    assert "encoder.overrides.num_heads: this run has 2, the checkpoint has 4" in message
    assert "encoder.overrides.relative_position_bias: this run has False, the checkpoint has True" in message
    assert "dropout" not in message.split("Use this encoder section")[0]  # a training choice, not compared


def test_init_from_refuses_another_sample_rate(published):
    converted = convert_checkpoint(published)
    objective = create_objective("wav2vec2", create_encoder("wav2vec2", config=converted.config), SMALL_WAV2VEC2)
    with pytest.raises(ConfigError, match="16000 Hz audio; this run reads 8000 Hz"):
        init_objective(objective, published, sample_rate=8000)


def test_init_from_refuses_what_is_neither_audiossl_nor_published(tmp_path):
    encoder = create_encoder("wav2vec2", config=tiny_encoder_config("wav2vec2", "waveform"))
    objective = create_objective("wav2vec2", encoder, SMALL_WAV2VEC2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="neither an audiossl checkpoint or run dir.*nor a published checkpoint"):
        init_objective(objective, tmp_path / "notes")
    with pytest.raises(DataError, match="no such file"):
        init_objective(objective, tmp_path / "missing")


def test_cli_prints_the_mismatch_without_a_traceback(published, synth_dir, tmp_path, capsys):
    from audiossl.cli.main import main

    args = ["pretrain", "--config", "hubert-wav2vec2-base", "--data", str(synth_dir), "--out", str(tmp_path / "r")]
    args += [
        "--set",
        f"run.init_from={published}",
        "--set",
        "encoder.preset=tiny",
        "--set",
        "objective.config.labels=x",
    ]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
