"""SpeechT5 joint pretraining end to end on synthetic speech: CLI with --text, alternation, exact resume, loading."""

from __future__ import annotations

import pytest
import torch

from audiossl.cli.main import main
from audiossl.engine.logging import read_records
from audiossl.models import load_pretrained
from audiossl.models.speecht5 import load_speecht5
from audiossl.nn.beam_search import BeamSearchConfig, beam_search
from audiossl.train import pretrain, resolve_config
from audiossl.train.checkpoint import checkpoint_path, load_checkpoint

SHRINK = [
    "encoder.overrides.dim=32",
    "encoder.overrides.num_layers=2",
    "encoder.overrides.num_heads=4",
    "encoder.overrides.ffn_dim=64",
    "encoder.overrides.dropout=0.1",
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
    "run.max_steps=6",
    "run.checkpoint_every=2",
    "run.log_every=1",
    "run.device=cpu",
    "run.tensorboard=false",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Synthetic speech, its k-means labels (MFCC, k=8) and a text file of its transcripts."""
    from audiossl.cluster.kmeans import KMeansConfig
    from audiossl.cluster.pipeline import FitConfig, fit_kmeans_dir, label_with_kmeans_dir
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("speecht5")
    synthesize_corpus(out / "data", SynthConfig(speakers=2, utts_per_speaker=2))
    kmeans = KMeansConfig(n_clusters=8, batch_size=256, n_init=1, max_iter=2)
    fit_kmeans_dir([out / "data"], out / "kmeans", FitConfig(kmeans=kmeans), progress=False)
    label_with_kmeans_dir(out / "kmeans", out / "data", out / "labels", progress=False)
    lines = [line.split(maxsplit=1)[1] for line in (out / "data" / "text").read_text().splitlines()]
    (out / "corpus.txt").write_text("\n".join(lines * 2) + "\n", encoding="utf-8")
    return out


def config(corpus, *extra: str):
    return resolve_config(
        "speecht5-tiny",
        [
            *SHRINK,
            f"objective.config.labels={corpus / 'labels'}",
            f"objective.config.text={corpus / 'corpus.txt'}",
            *extra,
        ],
    )


def test_cli_pretrains_with_text_and_the_model_loads(corpus, tmp_path) -> None:
    run = tmp_path / "run"
    args = ["pretrain", "--config", "speecht5-tiny", "--data", str(corpus / "data"), "--out", str(run)]
    sets = [s for item in SHRINK + [f"objective.config.labels={corpus / 'labels'}"] for s in ("--set", item)]
    assert main([*args, "--text", str(corpus / "corpus.txt"), *sets]) == 0
    records = read_records(run / "train.jsonl", "train")
    assert [r["step"] for r in records] == list(range(1, 7))
    # 1:1 alternation: odd steps are speech batches, even steps text batches.
    assert all({"cluster", "mel", "stop"} <= set(r["parts"]) for r in records[0::2])
    assert all("text" in r["parts"] and "mel" not in r["parts"] for r in records[1::2])
    assert all("code_perplexity" in r["metrics"] for r in records)

    model = load_speecht5(run)
    tokenizer = model.tokenizer
    assert tokenizer is not None and tokenizer.decode(tokenizer.encode("one two")) == "one two"
    waveforms = torch.randn(2, 16000) * 0.1
    out = model.encode_speech(waveforms, torch.tensor([16000, 9000]))
    assert out.last.shape[0] == 2 and out.last.shape[2] == 32
    text = model.encode_text(torch.tensor([tokenizer.encode("one two")]), torch.tensor([7]))
    assert text.last.shape == (1, 7, 32)
    hyps = beam_search(
        model.backbone,
        out.last[0, : out.lengths[0]],
        sos=1,
        eos=2,
        config=BeamSearchConfig(beam_size=2, ctc_weight=0.0, max_length=5),
    )
    assert hyps and len(hyps[0].tokens) <= 5
    mels, lengths = model.backbone.generate_speech(out.last[:1], out.lengths[:1], max_frames=8)
    assert mels.shape[2] == 80 and 1 <= int(lengths[0]) <= 8
    # The encoder alone, like every other family's (plugins, extract, Embedder).
    assert load_pretrained(run).encoder.dim == 32


def stop_at(step: int):
    def callback(trainer) -> None:
        if trainer.step == step:
            trainer.request_stop()

    return callback


def test_stop_and_resume_equals_the_uninterrupted_joint_run(corpus, tmp_path) -> None:
    settings = config(corpus, "objective.config.speech_batches=2", "objective.config.text_batches=1")
    straight = pretrain(settings, [corpus / "data"], tmp_path / "straight")
    assert straight.step == 6
    first = pretrain(settings, [corpus / "data"], tmp_path / "split", callbacks=[stop_at(4)])
    assert first.stopped_by == "request" and first.step == 4
    second = pretrain(settings, [corpus / "data"], tmp_path / "split", resume=True)
    assert second.step == 6
    expected = load_checkpoint(checkpoint_path(tmp_path / "straight", 6))["model"]
    got = load_checkpoint(checkpoint_path(tmp_path / "split", 6))["model"]
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)
    initial = load_checkpoint(checkpoint_path(tmp_path / "straight", 2))["model"]
    assert not torch.equal(initial["backbone.embedding.weight"], expected["backbone.embedding.weight"])
    # 2:1 alternation: steps 3 and 6 were text batches.
    kinds = ["text" in r["parts"] for r in read_records(tmp_path / "straight" / "train.jsonl", "train")]
    assert kinds == [False, False, True, False, False, True]


def test_bad_text_corpus_exits_2_naming_the_line(corpus, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("fine line\nnot \x00 fine\n", encoding="utf-8")
    args = ["pretrain", "--config", "speecht5-tiny", "--data", str(corpus / "data"), "--out", str(tmp_path / "run")]
    sets = [s for item in SHRINK + [f"objective.config.labels={corpus / 'labels'}"] for s in ("--set", item)]
    assert main([*args, "--text", str(bad), *sets]) == 2
    assert f"{bad}:2: control or unassigned characters" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
