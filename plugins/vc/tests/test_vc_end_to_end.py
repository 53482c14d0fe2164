"""End to end on the synthetic corpus: train a vocoder, resume it, convert, evaluate, refuse bad input."""

from __future__ import annotations

import json

import pytest
import soundfile

from audiossl.cli.main import main
from audiossl.errors import ConfigError
from audiossl.train.logging import read_records


@pytest.fixture(scope="module")
def mel_gl_run(vc_checkpoint, vc_corpus, tmp_path_factory):
    """A mel-GL vocoder trained for a few steps through the CLI (4 steps, then resumed to 6)."""
    run = tmp_path_factory.mktemp("vocoder") / "mel-gl"
    common = ["vc", "train-vocoder", "--model", str(vc_checkpoint), "--data", str(vc_corpus), "--out", str(run)]
    common += ["--kind", "mel-gl", "--batch-size", "4", "--segment-frames", "8", "--checkpoint-every", "2"]
    assert main([*common, "--steps", "4"]) == 0
    assert main([*common, "--steps", "6"]) == 2  # the dir has checkpoints: refuse without --resume
    assert main([*common, "--steps", "6", "--resume"]) == 0
    return run


def test_training_writes_checkpoints_logs_and_resumes(mel_gl_run):
    assert sorted(p.name for p in mel_gl_run.glob("ckpt-*.pt")) == ["ckpt-00000004.pt", "ckpt-00000006.pt"]
    assert (mel_gl_run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["step"] for r in read_records(mel_gl_run / "train.jsonl")] == [4, 6]  # log_every 10: steps 4 (end), 6
    lines = [json.loads(line) for line in (mel_gl_run / "train.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines if line["kind"] == "event"] == ["start", "finish", "resume", "finish"]


def test_convert_writes_a_wav_of_the_source_length(mel_gl_run, vc_checkpoint, vc_corpus, tmp_path, capsys):
    source = vc_corpus / "wav" / "spk01-0001.wav"
    out, png = tmp_path / "out.wav", tmp_path / "out.png"
    args = ["vc", "convert", str(source), "--target", str(vc_corpus), "--target-speaker", "spk02"]
    args += ["--model", str(vc_checkpoint), "--vocoder", str(mel_gl_run), "-o", str(out), "--min-seconds", "1"]
    assert main([*args, "--k", "2", "--plot", str(png)]) == 0
    info, source_info = soundfile.info(out), soundfile.info(source)
    assert info.samplerate == 16000 and info.channels == 1
    assert 0 <= source_info.frames - info.frames < 2 * 320  # whole feature frames of 320 samples
    data, _ = soundfile.read(out)
    assert data.std() > 1e-3  # not silence
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".out.wav*"))  # no temporary left behind


def test_convert_refuses_too_little_target_speech(mel_gl_run, vc_checkpoint, vc_corpus, tmp_path, capsys):
    target = vc_corpus / "wav" / "spk02-0001.wav"
    args = ["vc", "convert", str(vc_corpus / "wav" / "spk01-0001.wav"), "--target", str(target)]
    args += ["--model", str(vc_checkpoint), "--vocoder", str(mel_gl_run), "-o", str(tmp_path / "x.wav")]
    assert main(args) == 2  # default minimum: 5 s of speech
    err = capsys.readouterr().err
    assert "too little target speech" in err and str(target) in err
    assert not (tmp_path / "x.wav").exists()


def test_converter_refuses_a_layer_the_vocoder_does_not_render(mel_gl_run, vc_checkpoint):
    from audiossl_vc.convert import Converter

    assert Converter.load(vc_checkpoint, mel_gl_run, layer="1").vocoder.spec.layers == (1,)  # -1 of 2 layers
    with pytest.raises(ConfigError, match="renders layer 1"):
        Converter.load(vc_checkpoint, mel_gl_run, layer="0")


def test_evaluate_cross_speaker_pairs(mel_gl_run, vc_checkpoint, vc_corpus, tmp_path):
    from audiossl_vc.evaluate import CONDITIONS, evaluate_conversions

    report = evaluate_conversions(vc_checkpoint, mel_gl_run, vc_corpus, tmp_path / "eval", pairs=2, min_seconds=1.0)
    assert len(report.pairs) == 2
    for pair in report.pairs:
        assert pair["source_speaker"] != pair["target_speaker"]
    for condition in CONDITIONS:
        numbers = report.similarity[condition]
        assert -1.0 <= numbers["to_target"] <= 1.0 and -1.0 <= numbers["to_source"] <= 1.0
        assert numbers["gain"] == pytest.approx(numbers["to_target"] - numbers["to_source"])
        assert 0.0 <= numbers["target_wins"] <= 1.0
    assert report.content is None and any("not measured" in note for note in report.notes)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["similarity"] == report.similarity
    converted = (tmp_path / "eval" / "converted" / "utt2spk").read_text().split()
    assert converted[1] == report.pairs[0]["target_speaker"]
    assert "cos->target" in report.to_text()


def test_plugin_is_discovered_with_its_commands():
    from audiossl.downstream.plugin import discover_plugins
    from audiossl_vc.cli import app
    from audiossl_vc.plugin import PLUGIN

    plugins, _ = discover_plugins(strict=False, warn=False)
    assert plugins["vc"].cli is app and plugins["vc"].distribution == "audiossl-vc"
    assert plugins["vc"] == PLUGIN and PLUGIN.task_factory is None
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert names == {"train-vocoder", "convert", "evaluate"}


def test_evaluate_with_trained_sv_and_asr_runs(mel_gl_run, vc_checkpoint, vc_corpus, tmp_path):
    """The other plugins' public APIs: a 2-step sv run gives the embeddings, a 2-step asr run the WER."""
    pytest.importorskip("audiossl_sv", reason="the sv plugin (plugins/sv) is not installed")
    pytest.importorskip("audiossl_asr", reason="the asr plugin (plugins/asr) is not installed")
    from audiossl_vc.evaluate import evaluate_conversions

    for task in ("sv", "asr"):
        args = [task, "train", str(vc_corpus), "-u", str(vc_checkpoint), "-o", str(tmp_path / task)]
        assert main([*args, "--max-steps", "2", "--device", "cpu"]) == 0
    report = evaluate_conversions(
        vc_checkpoint, mel_gl_run, vc_corpus, tmp_path / "eval", pairs=2, min_seconds=1.0,
        sv_run=tmp_path / "sv", asr_run=tmp_path / "asr",
    )  # fmt: skip
    assert report.embedding.startswith("trained sv run")
    assert set(report.content) == {f"{m}_{c}" for m in ("wer", "cer") for c in ("converted", "resynthesis", "sources")}
    assert all(value >= 0.0 for value in report.content.values())
    assert (tmp_path / "eval" / "asr" / "converted" / "hyp.txt").is_file()
    assert [note for note in report.notes if "not measured" in note or "frozen" in note] == []  # both measured
    assert "converted" in report.pitch and report.pitch["converted"]["frames"] > 0  # pitch scored for mel-gl too


def test_pools_from_another_data_dir_leave_out_the_references(vc_corpus, tmp_path):
    from audiossl.data.kaldi import DataDir
    from audiossl.errors import DataError
    from audiossl_vc.evaluate import _pool_source

    data = DataDir.load(vc_corpus)
    splits = {"spk01": (["spk01-0001"], ["spk01-0004"])}  # (pool, held-out references)
    own = _pool_source(data, vc_corpus, splits, "spk01", None)
    assert [u for u, _ in own.items] == splits["spk01"][0]
    other = _pool_source(data, vc_corpus, splits, "spk01", vc_corpus)  # all but the held-out reference
    assert [u for u, _ in other.items] == ["spk01-0001", "spk01-0002", "spk01-0003"]
    with pytest.raises(DataError, match="no utterance here"):
        _pool_source(data, vc_corpus, {"nobody": ([], ["x"])}, "nobody", vc_corpus)
