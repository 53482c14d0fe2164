"""TTS and speech-to-speech VC started from a real (tiny) speecht5 pretraining run (--init)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table
from audiossl.downstream.trainer import load_downstream
from audiossl.models.speecht5 import load_speecht5
from audiossl_speecht5.s2s import S2STask
from audiossl_speecht5.tts import load_tts

SHRINK = [
    "encoder.overrides.dim=32",
    "encoder.overrides.num_layers=2",
    "encoder.overrides.num_heads=4",
    "encoder.overrides.ffn_dim=64",
    "encoder.overrides.input.num_bins=32",
    "encoder.overrides.input.conv_pos_kernel=8",
    "encoder.overrides.input.conv_pos_groups=4",
    "data.frontend_config.num_mel_bins=32",
    "data.num_workers=0",
    "data.max_seconds_per_batch=4",
    "objective.config.code_dim=16",
    "objective.config.mask.span_length=3",
    "objective.config.mask.min_spans=1",
    "objective.config.backbone.decoder_layers=1",
    "objective.config.backbone.speech.hidden_dim=16",
    "objective.config.backbone.speech.postnet_channels=16",
    "objective.config.backbone.speech.speaker_dim=8",
    "objective.config.vq_entries=16",
    "objective.config.text_batch_size=3",
    "run.max_steps=2",
    "run.log_every=1",
    "run.device=cpu",
    "run.tensorboard=false",
]


@pytest.fixture(scope="module")
def speecht5_run(corpus, tmp_path_factory) -> Path:
    """Two steps (one speech, one text batch) of speecht5-tiny shrunk to width 32, on the corpus and its text."""
    from audiossl.cluster.kmeans import KMeansConfig
    from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir

    out = tmp_path_factory.mktemp("speecht5")
    kmeans = KMeansConfig(n_clusters=8, batch_size=256, n_init=1, max_iter=2)
    fit_kmeans_dir([corpus], out / "kmeans", FitConfig(kmeans=kmeans), progress=False)
    label_with_kmeans_dir(out / "kmeans", corpus, out / "labels", progress=False)
    lines = [line.split(maxsplit=1)[1] for line in (corpus / "text").read_text().splitlines()]
    (out / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sets = [s for item in [*SHRINK, f"objective.config.labels={out / 'labels'}"] for s in ("--set", item)]
    args = ["pretrain", "--config", "speecht5-tiny", "--data", str(corpus), "--out", str(out / "run")]
    assert main([*args, "--text", str(out / "corpus.txt"), *sets]) == 0
    return out / "run"


def test_tts_starts_from_the_pretrained_text_encoder_and_decoder(speecht5_run, corpus, tmp_path) -> None:
    run = tmp_path / "tts"
    code = main(["tts", "train", str(corpus), "--out", str(run), "--init", str(speecht5_run), "--max-steps", "1",
                 "--device", "cpu", "--batch-seconds", "8", "--checkpoint-every", "1"])  # fmt: skip
    assert code == 0
    pretrained = load_speecht5(speecht5_run)
    description, model = load_tts(run)
    assert description.tokenizer == pretrained.tokenizer.state()
    # one step moved the weights a little from the pretrained ones, and the speaker table is new
    before = pretrained.backbone.speech_postnet.frames.weight.detach()
    after = model.backbone.speech_postnet.frames.weight.detach()
    assert before.shape == after.shape and 0 < float((before - after).abs().max()) < 0.1
    assert model.backbone.speakers.num_embeddings == 2
    word = next(iter(read_table(corpus / "text").values())).split()[0]
    assert main(["tts", "synthesize", str(run), word, "--speaker", "spk02", "-o", str(tmp_path / "w.wav"),
                 "--max-frames", "8"]) == 0  # fmt: skip


def test_s2s_starts_from_the_pretrained_speech_decoder(speecht5_run, corpus, tmp_path) -> None:
    run = tmp_path / "s2s"
    code = main(["s2s", "train", str(corpus), "--out", str(run), "-u", str(speecht5_run), "--init", str(speecht5_run),
                 "--max-steps", "1", "--device", "cpu", "--batch-seconds", "8", "--lr", "1e-9"])  # fmt: skip
    assert code == 0
    model = load_downstream(run, task=S2STask(init=str(speecht5_run.resolve())), device="cpu")
    pretrained = load_speecht5(speecht5_run).backbone
    for name in ("decoder.blocks.0.self_attention.query.weight", "speech_prenet.projection.weight"):
        assert torch.allclose(model.head.state_dict()[name], pretrained.state_dict()[name], atol=1e-6)
